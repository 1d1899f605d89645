"""
C{wait}: until one of pycm's containers runs, stops, exits next, is
removed or turns healthy or unhealthy, from the engine's own wait and the
events (L{ContainerWaits}).
"""

from __future__ import annotations

from typing import Any

import attrs
from twisted.internet import defer
from twisted.internet.defer import Deferred

from pycm.backends.docker.containers import EngineView
from pycm.backends.docker.engine import EngineError
from pycm.backends.docker.interfaces import IDockerEngine
from pycm.backends.docker.journal import EventJournal, untilEvent
from pycm.backends.docker.lookup import ContainerLookup
from pycm.backends.docker.translate import mapEngineError, mapExitCode
from pycm.errors import BackendError, BadRequest, NotFound
from pycm.health import HealthStatus
from pycm.model import Action, Container, State, WaitCondition


class ContainerWaits:
    """
    Waits on one engine (C{POST /containers/ID/wait}), reporting the
    container as it was when it exited, with the exit code its die event
    told (so C{wait} agrees with C{stop} and the events).

    @ivar pollInterval: how often a C{wait --for=running} looks again,
        besides the events.
    """

    def __init__(
        self,
        engine: IDockerEngine,
        view: EngineView,
        journal: EventJournal,
        lookup: ContainerLookup,
        pollInterval: float,
    ) -> None:
        self.engine = engine
        self.view = view
        self.journal = journal
        self.lookup = lookup
        self.pollInterval = pollInterval

    @defer.inlineCallbacks
    def wait(self, name: str, condition: str, mark: int) -> Any:
        """
        Wait for C{condition} of C{name}, counting the events after C{mark}
        (taken when the wait was asked for).

        @return: Deferred firing with the L{Container}; cancelling it stops
            the waiting.
        """
        if condition not in WaitCondition.ALL:
            raise BadRequest(f"unknown wait condition {condition!r}")
        data = yield self.lookup.resolve(name)
        cid = data["Id"]
        before = self.view.container(data)
        alive = before.state in State.ALIVE
        if condition in WaitCondition.HEALTH:
            healthy = yield self._health(name, cid, before, condition, mark)
            return healthy
        if condition == WaitCondition.RUNNING:
            running = yield self._running(name, cid, before)
            return running
        if condition == WaitCondition.NOT_RUNNING and not alive:
            return before
        engineWait: Deferred[Any] = self.engine.request(
            "POST", f"/containers/{cid}/wait", {"condition": condition}, timeout=0
        )
        if condition == WaitCondition.NEXT_EXIT:
            # The engine waits for the exit after it got the request: one
            # that came sooner (a kill sent meanwhile got there first)
            # would leave it waiting for ever.  Its die event ends the wait.
            engineWait = untilEvent(engineWait, self.journal.eventAfter(mark, name, Action.DIE))
        try:
            _, result = yield engineWait
        except EngineError as e:
            raise mapEngineError(e.status, e.message, name=name) from None
        # The signals sent as of now: the destroy event forgets them.
        signals = set(self.view.signals.get(name))
        if condition == WaitCondition.REMOVED:
            yield self.journal.awaitEvent(mark, name, Action.DESTROY)
            return self._exitedAs(before, cid, result, signals)
        yield self.journal.awaitEvent(mark, name, Action.DIE)
        after = yield self.lookup.inspect(cid, name, quiet=True)
        if after is None:
            raise NotFound(name)
        container = self.view.container(after)
        if container.state in State.ALIVE or container.state == State.RESTARTING:
            # Restarted by its policy already: report it as it was at exit.
            container = self._exitedAs(container, cid, result, signals)
        return container

    def _exitedAs(
        self, container: Container, cid: str, result: Any, signals: set[int]
    ) -> Container:
        """
        C{container} as it was when the engine's wait saw it exit: with the
        exit code its die event reported, else from the wait's own status
        and C{signals}.
        """
        code = result.get("StatusCode") if isinstance(result, dict) else None
        sent = signals | self.view.signals.get(container.name)
        exited = attrs.evolve(
            container, state=State.EXITED, pid=None, exitCode=mapExitCode(code, sent, False)
        )
        exits = self.view.exits
        if cid in exits and exits[cid] is not None:
            exited = attrs.evolve(exited, exitCode=exits[cid])
        return exited

    @defer.inlineCallbacks
    def _running(self, name: str, cid: str, before: Container) -> Any:
        """Until C{name} runs, looking on each start event and every L{pollInterval}."""
        if before.state in State.ALIVE:
            return before
        while True:
            yield self.journal.awaitEvent(
                self.journal.mark(), name, Action.START, Action.DESTROY, grace=self.pollInterval
            )
            data = yield self.lookup.inspect(cid, name, quiet=True)
            if data is None:
                raise NotFound(name)
            container = self.view.container(data)
            if container.state in State.ALIVE:
                return container

    @defer.inlineCallbacks
    def _health(
        self, name: str, cid: str, container: Container, condition: str, mark: int
    ) -> Any:
        """
        Until C{name}'s health check finds it C{condition}, looking on each
        health, start, die and destroy event and every L{pollInterval}
        (see L{pycm.interfaces.IContainerBackend.wait}).
        """
        while True:
            if container.health is None:
                raise BadRequest(f"container {name} has no health check: --for={condition}")
            status = container.health.status
            if condition == WaitCondition.HEALTHY:
                if status == HealthStatus.HEALTHY and container.state in State.ALIVE:
                    return container
                # A pycm restart's exit is not the end.
                why = None if self.view.inFlight.restarts[name] else _notHealthy(container)
                if why is not None:
                    raise BackendError(f"container {name} {why} before it was healthy")
            elif status == HealthStatus.UNHEALTHY:
                return container
            yield self.journal.awaitEvent(
                mark, name, Action.HEALTH_STATUS, Action.START, Action.DIE, Action.DESTROY,
                grace=self.pollInterval,
            )  # fmt: skip
            mark = self.journal.mark()
            data = yield self.lookup.inspect(cid, name, quiet=True)
            if data is None:
                if condition == WaitCondition.HEALTHY:
                    raise BackendError(f"container {name} was removed before it was healthy")
                raise NotFound(name)
            container = self.view.container(data)


def _notHealthy(container: Container) -> str | None:
    """
    Why C{container} will not turn healthy (it is unhealthy, or ended and
    will not be restarted), or None if it still may.
    """
    health = container.health
    if container.state in (State.EXITED, State.DEAD):
        if container.state == State.DEAD:
            return f"is dead ({container.error or 'it could not run'})"
        return f"exited with code {container.exitCode}"
    if health is None or health.status != HealthStatus.UNHEALTHY:
        return None
    if container.state not in State.ALIVE:
        return None
    last = health.log[-1] if health.log else None
    detail = ""
    if last is not None:
        output = " ".join(last.output.split())[:200]
        detail = f" (last check: exit code {last.exitCode}{': ' + output if output else ''})"
    return f"turned unhealthy: its check failed {health.failingStreak} times in a row{detail}"
