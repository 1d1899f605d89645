"""
An C{apply} carried out on an L{IContainerBackend} (L{Applier}): the
backend listed once, the plan made (L{pycm.services.plan}), then every
service started as soon as its dependencies met their conditions, the
independent ones at once; progress as L{ProgressEvent}s.  A service that
fails stops its dependents from starting; the others settle, then the
apply fails with L{ApplyFailed} saying which failed, why, and which were
not started.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import attrs
from twisted.internet.defer import (
    CancelledError,
    Deferred,
    fail,
    gatherResults,
    maybeDeferred,
    succeed,
)
from twisted.logger import Logger
from twisted.python.failure import Failure

from pycm.capabilities import ISpecCheck
from pycm.errors import BackendError, BadRequest, PycmError
from pycm.interfaces import IContainerBackend
from pycm.model import Container, ProgressEvent, WaitCondition
from pycm.services.definition import HEALTHCHECK_KEYS, Condition, ServiceSet
from pycm.services.plan import Plan, Step, StepAction, makePlan

#: The C{action} of an apply's progress events.
PROGRESS_ACTION = "apply"


class ApplyFailed(BackendError):
    """
    A service of an apply failed; the message says which, why, and what
    was not started.

    @ivar failed: the names of the services that failed.
    @ivar notStarted: the names of those not started, in start order.
    """

    def __init__(self, message: str, failed: Sequence[str] = (),
                 notStarted: Sequence[str] = ()) -> None:  # fmt: skip
        super().__init__(message)
        self.failed = tuple(failed)
        self.notStarted = tuple(notStarted)


@attrs.frozen
class ApplyProgress(ProgressEvent):
    """
    An apply's progress event, with its client's C{--progress-id} as
    C{apply} (none if C{""}), so that each client shows its own apply's
    progress only.
    """

    apply: str = ""

    def toJSON(self) -> dict[str, Any]:
        value = super().toJSON()
        if self.apply:
            value["apply"] = self.apply
        return value


class NotStarted(Exception):
    """A service was not started: a dependency of it failed."""


def refuseUnsupported(backend: IContainerBackend, services: ServiceSet) -> None:
    """
    @raise BadRequest: naming the first service (and its keys) that sets
        what C{backend} cannot honour (C{replicas} where it cannot scale, a
        health check where it has none).
    """
    for name in services.order:
        refused = backend.capabilities.unsupported(services.services[name].spec)
        if refused:
            keys = sorted({_documentKey(option) for option in refused})
            raise BadRequest(
                f"service {name}: the {backend.name} backend cannot honour {', '.join(keys)}"
            )


def refuseOnHost(backend: IContainerBackend, plan: Plan) -> None:
    """
    @raise BadRequest: naming each service the plan creates (or
        recreates), and its key, that the backend's host refuses (a user it
        does not have, more CPUs than it has), if the backend can tell
        (L{ISpecCheck}); before anything changes.
    """
    checker = ISpecCheck(backend, None)
    if checker is None:
        return
    refused = []
    for step in plan.steps:
        if step.spec is None:
            continue
        for option, why in sorted(checker.refusals(step.spec).items()):
            key = _documentKey(option)
            # The backend says it as run's option; the file has the key.
            why = re.sub(rf" \(--{re.escape(option)} [^)]*\)", "", why)
            refused.append(f"service {step.name}, key {key}: {why.replace('--' + option, key)}")
    if refused:
        raise BadRequest("; ".join(refused) + "; nothing was changed")


def _documentKey(option: str) -> str:
    """The key of the services file that stands for C{run}'s C{option}."""
    for key, healthOption in HEALTHCHECK_KEYS.items():
        if option == healthOption:
            return f"healthcheck.{key}"
    return {"label": "labels"}.get(option, option.replace("-", "_"))


@attrs.frozen
class ApplyResult:
    """What an apply did (or, dry, would do): the reply's object."""

    plan: Plan
    dryRun: bool
    containers: dict[str, Container | None]

    def toJSON(self) -> dict[str, Any]:
        return {
            "project": self.plan.project,
            "dry_run": self.dryRun,
            "services": [
                step.toJSON(self.containers.get(step.name), done=not self.dryRun)
                for step in self.plan.steps
            ],
        }


class Applier:
    """
    Applies services to C{backend}, reporting progress to C{report} (the
    daemon's event log), with times from C{now} (the daemon's clock's
    C{seconds}).
    """

    log = Logger()

    def __init__(
        self,
        backend: IContainerBackend,
        now: Callable[[], float],
        report: Callable[[ProgressEvent], None] = lambda event: None,
        salt: Callable[[], str] | None = None,
        progressId: str = "",
    ) -> None:
        self.backend = backend
        self.now = now
        self.report = report
        self.salt = salt
        #: What each progress event carries as C{apply} (its client's C{--progress-id}).
        self.progressId = progressId

    def progress(self, name: str, detail: str) -> None:
        self.report(ApplyProgress(name, PROGRESS_ACTION, detail, self.now(),
                                  apply=self.progressId))

    def apply(
        self, services: ServiceSet, prune: bool = False, dryRun: bool = False
    ) -> Deferred[ApplyResult]:
        """
        Make the backend's containers match C{services}.

        @return: a Deferred firing with the L{ApplyResult} once every
            service is up (running, healthy if it has a health check, exited
            0 if a dependent wants it completed); failing, before anything
            changed (a dry run too), with L{BadRequest} (a service the
            backend, or its host, cannot honour) or L{pycm.errors.Conflict}
            (a name held by another project's container), or, after the
            others settled, with L{ApplyFailed}.
        """
        try:
            refuseUnsupported(self.backend, services)
        except PycmError:
            return fail()
        listed = self.backend.list()

        def planned(containers: list[Container]) -> Deferred[ApplyResult] | ApplyResult:
            plan = makePlan(services, containers, prune, self.salt)
            refuseOnHost(self.backend, plan)
            if dryRun:
                return ApplyResult(plan, True, {})
            return _Run(self, services, plan).run()

        return listed.addCallback(planned)


_log = Logger()


class _Deliveries:
    """
    Hands results to their waiters in a loop, in the order given, rather
    than in nested calls: a failure handed down a chain of dependents
    (each C{not started} because the one before was not) would otherwise
    go one call deeper a service, past Python's recursion limit at about
    seventy, and the apply would never answer.
    """

    def __init__(self) -> None:
        self._queue: deque[tuple[Deferred[Any], Any]] = deque()
        self._handing = False

    def hand(self, d: Deferred[Any], result: Any) -> None:
        """Fire C{d} with C{result} (a L{Failure}: its errback), now or once the loop gets to it."""
        self._queue.append((d, result))
        if self._handing:
            return
        self._handing = True
        try:
            while self._queue:
                waiter, value = self._queue.popleft()
                try:
                    if isinstance(value, Failure):
                        waiter.errback(value)
                    else:
                        waiter.callback(value)
                except Exception:
                    # One waiter's fault (fired already) must not hold up the rest.
                    _log.failure("handing an apply's result to a waiter failed")
        finally:
            self._handing = False


class _Once:
    """A result many may wait for: each L{when} is a Deferred of its own."""

    def __init__(self, deliveries: _Deliveries) -> None:
        self.result: Any = None
        self.done = False
        self._deliveries = deliveries
        self._waiting: list[Deferred[Any]] = []

    def fire(self, result: Any) -> None:
        self.result, self.done = result, True
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            self._deliveries.hand(d, result)

    def when(self) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        if self.done:
            self._deliveries.hand(d, self.result)
        else:
            self._waiting.append(d)
        return d


class _Run:
    """One apply's execution of its plan."""

    def __init__(self, applier: Applier, services: ServiceSet, plan: Plan) -> None:
        self.applier = applier
        self.backend = applier.backend
        self.services = services
        self.plan = plan
        self.steps = plan.byName()
        self.deliveries = _Deliveries()
        self.started = {name: _Once(self.deliveries) for name in services.order}
        self.conditions: dict[tuple[str, str], _Once] = {}
        self.containers: dict[str, Container | None] = {}
        self.failures: dict[str, str] = {}
        self.notStarted: set[str] = set()
        #: The backend waits in flight (for health, for an exit).
        self.waits: set[Deferred[Container]] = set()
        #: Its caller went away (L{abandon}): nothing more is started.
        self.abandoned = False

    def run(self) -> Deferred[ApplyResult]:
        """
        @return: a Deferred of the outcome; cancelling it abandons the run
            (L{abandon}) and fails it with C{CancelledError} at once.
        """
        removals = [step for step in self.plan.steps if step.action == StepAction.REMOVE]
        removed = gatherResults([self._remove(step) for step in removals], consumeErrors=True)
        d = removed.addCallback(lambda _: self._startAll())
        d.addCallback(self._finish)

        def cancelled(outcome: Deferred[ApplyResult]) -> None:
            outcome.errback(CancelledError())
            self.abandon()

        outcome: Deferred[ApplyResult] = Deferred(cancelled)

        def settled(result: Any) -> None:
            if outcome.called:
                return
            if isinstance(result, Failure):
                outcome.errback(result)
            else:
                outcome.callback(result)
            # Else abandoned: its caller already has CancelledError.

        d.addBoth(settled)
        return outcome

    def abandon(self) -> None:
        """
        Stop where it is, as when its client went away: the services
        already made stay as they are, no other is started, and the waits
        for health or an exit are cancelled (so the project's next apply
        need not wait for them).
        """
        self.abandoned = True
        for wait in list(self.waits):
            wait.cancel()

    def _startAll(self) -> Deferred[Any]:
        for name in self.services.order:
            self._launch(name)
        ups = [self._condition(name, self.services.ownCondition(name)).addErrback(lambda _: None)
               for name in self.services.order]  # fmt: skip
        return gatherResults(ups)

    def _finish(self, _: object) -> ApplyResult:
        result = ApplyResult(self.plan, False, self.containers)
        if not self.failures:
            return result
        reasons = "; ".join(f"{name}: {why}" for name, why in self.failures.items())
        message = f"apply of {self.plan.project} failed: {reasons}"
        ordered = [name for name in self.services.order if name in self.notStarted]
        if ordered:
            message += "; not started: " + ", ".join(ordered)
        raise ApplyFailed(message, list(self.failures), ordered)

    # each service

    def _launch(self, name: str) -> None:
        dependencies = self.services.services[name].dependsOn
        waits = []
        for dependency, condition in dependencies.items():
            if condition != Condition.STARTED and not self._met(dependency, condition):
                self.applier.progress(name, f"waiting for {dependency} {_said(condition)}")
            waits.append(self._condition(dependency, condition))
        ready: Deferred[Any] = gatherResults(waits, consumeErrors=True)

        def proceed(_: object) -> Deferred[Container]:
            if self.abandoned:
                return blocked(Failure(NotStarted(name)))
            return self._do(self.steps[name])

        def blocked(failure: Failure) -> Deferred[Container]:
            self.notStarted.add(name)
            return fail(NotStarted(name))

        done: Deferred[Any] = ready.addCallbacks(proceed, blocked)
        done.addCallbacks(self._up, self._failed, callbackArgs=(name,), errbackArgs=(name,))
        done.addBoth(self.started[name].fire)

    def _met(self, name: str, condition: str) -> bool:
        once = self.conditions.get((name, condition))
        return once is not None and once.done and not isinstance(once.result, Failure)

    def _up(self, container: Container, name: str) -> Container:
        self.containers[name] = container
        return container

    def _failed(self, failure: Failure, name: str) -> Failure:
        if failure.check(NotStarted):
            self.applier.progress(name, "not started")
        elif self.abandoned and failure.check(CancelledError):
            self.failures[name] = "not waited for: the apply was abandoned"
            self.applier.progress(name, "not waited for (apply abandoned)")
        else:
            self.failures[name] = _why(failure)
            self.applier.progress(name, "failed: " + self.failures[name])
            # Not why: a backend's reason may quote the command or the env.
            self.applier.log.warn(
                "apply of {project}: {service} failed ({code})",
                project=self.plan.project, service=name, code=_code(failure),
            )
        return failure

    def _condition(self, name: str, condition: str) -> Deferred[Container]:
        """A Deferred of C{name}'s container once it meets C{condition}."""
        key = (name, condition)
        once = self.conditions.get(key)
        if once is None:
            once = self.conditions[key] = _Once(self.deliveries)
            d = self.started[name].when()
            if condition == Condition.HEALTHY:
                d.addCallback(lambda _: self._waitHealthy(name))
            elif condition == Condition.COMPLETED_SUCCESSFULLY:
                d.addCallback(lambda _: self._waitCompleted(name))
            d.addBoth(once.fire)
        return once.when()

    def _wait(self, name: str, condition: str) -> Deferred[Container]:
        """The backend's wait, cancelled if the run is abandoned."""
        d = self.backend.wait(name, condition)
        self.waits.add(d)

        def settled(result: Any) -> Any:
            self.waits.discard(d)
            return result

        return d.addBoth(settled)

    def _waitHealthy(self, name: str) -> Deferred[Container]:
        d = self._wait(name, WaitCondition.HEALTHY)

        def healthy(container: Container) -> Container:
            self.applier.progress(name, "healthy")
            return self._up(container, name)

        return d.addCallbacks(healthy, self._failed, errbackArgs=(name,))

    def _waitCompleted(self, name: str) -> Deferred[Container]:
        d = self._wait(name, WaitCondition.NOT_RUNNING)

        def ended(container: Container) -> Container:
            self._up(container, name)
            if container.exitCode != 0:
                raise BackendError(f"exited {container.exitCode} (completed_successfully wanted)")
            self.applier.progress(name, "completed")
            return container

        return d.addCallback(ended).addErrback(self._failed, name)

    # the steps

    def _do(self, step: Step) -> Deferred[Container]:
        progress = self.applier.progress
        if step.action == StepAction.KEEP:
            progress(step.name, "kept")
            assert step.current is not None
            return succeed(step.current)
        if step.action == StepAction.START:
            progress(step.name, "starting")
            return self.backend.start(step.name)
        assert step.spec is not None
        if step.action == StepAction.CREATE:
            progress(step.name, "creating")
            return self._createAndStart(step)
        progress(step.name, f"recreating ({', '.join(step.changes)} changed)")
        removed = self.backend.remove(step.name, True)

        def kept(failure: Failure) -> Failure:
            return _explained(failure, "its old container was kept")

        def replace(_: object) -> Deferred[Container]:
            d = self._createAndStart(step)
            return d.addErrback(_explained, "its old container was removed")

        return removed.addCallbacks(replace, kept)

    def _createAndStart(self, step: Step) -> Deferred[Container]:
        assert step.spec is not None
        d = self.backend.create(step.spec)
        return d.addCallback(lambda _: self.backend.start(step.name))

    def _remove(self, step: Step) -> Deferred[None]:
        d = maybeDeferred(self.backend.remove, step.name, True)

        def removed(_: object) -> None:
            self.applier.progress(step.name, "removed")

        def failed(failure: Failure) -> None:
            self.failures[step.name] = _why(failure) + " (while removing it)"

        return d.addCallbacks(removed, failed)


def _said(condition: str) -> str:
    """C{to be healthy}, C{to complete successfully}: what a dependent waits for."""
    if condition == Condition.COMPLETED_SUCCESSFULLY:
        return "to complete successfully"
    return f"to be {condition}"


def _why(failure: Failure) -> str:
    error = failure.value
    if isinstance(error, PycmError):
        return error.message
    return f"{type(error).__name__}: {error}"


def _code(failure: Failure) -> str:
    error = failure.value
    return error.code if isinstance(error, PycmError) else type(error).__name__


def _explained(failure: Failure, note: str) -> Failure:
    return Failure(BackendError(f"{_why(failure)} ({note})"))
