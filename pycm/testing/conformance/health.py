"""
The backend conformance suite, health checks: C{--health-*}, the
container's C{health}, C{health_status} events, C{--health-on-failure},
C{wait --for=healthy|unhealthy}, C{--no-healthcheck} and C{--user}.

A backend whose capabilities lack an option must refuse it (L{BadRequest}
naming it): each test then checks that instead of skipping.  The checks
are short shell lines every backend runs its own way (C{true}, C{false},
C{sleep S}); a fixture may give others (C{healthCommand(kind, seconds)},
kind C{pass}, C{fail} or C{slow}), and its way to switch a running
container's check between passing and failing (C{healthSwitch(testCase,
backend)}: the check and a C{turn(name, passing)}; by default
L{hostFileSwitch}, for backends whose checks see the host's files).
Checks run every L{BackendHealthTests.healthInterval} seconds: real
backends really wait.
"""

from __future__ import annotations

import os
import signal as _signal
from collections.abc import Generator
from typing import Any

from twisted.internet.defer import Deferred, inlineCallbacks, maybeDeferred

from pycm.errors import BackendError, BadRequest
from pycm.health import HealthCheck, HealthStatus, OnFailure
from pycm.model import Action, Container, ContainerSpec, RestartPolicy, State, WaitCondition
from pycm.testing.conformance.base import BackendTestsBase
from pycm.testing.healthswitch import Switch, hostFileSwitch

__all__ = ["BackendHealthTests", "hostFileSwitch"]

class BackendHealthTests(BackendTestsBase):
    """The health checks of a backend, or its refusal of them."""

    #: Seconds between checks.
    healthInterval = 0.2

    # hooks

    def healthCommand(self, kind: str, seconds: float = 0) -> str:
        """
        The check that passes (C{pass}), fails (C{fail}), or takes
        C{seconds} then passes (C{slow}), as the fixture says it.
        """
        hook = getattr(self.fixture, "healthCommand", None)
        if hook is not None:
            return str(hook(kind, seconds))
        return {"pass": "true", "fail": "false", "slow": f"sleep {seconds:g}"}[kind]

    def healthSwitch(self) -> tuple[str, Switch]:
        """The fixture's switched check (default: L{hostFileSwitch})."""
        hook = getattr(self.fixture, "healthSwitch", None) or hostFileSwitch
        command, turn = hook(self, self.backend)
        return str(command), turn

    def healthUser(self) -> str:
        """A C{--user} the backend can run containers as (the tests' own ids)."""
        return getattr(self.fixture, "healthUser", None) or f"{os.getuid()}:{os.getgid()}"

    # helpers

    def checked(
        self, what: str, cmd: str | None, command: tuple[str, ...] | None = None, **kw: Any
    ) -> ContainerSpec:
        """A spec running C{command} (default: the long one), checked by C{cmd}."""
        fields = {k: kw.pop(k) for k in list(kw) if k in HealthCheck.__annotations__}
        fields.setdefault("interval", self.healthInterval)
        check = HealthCheck(cmd, **fields)
        return self.spec(what, command or self.fixture.longCommand, healthcheck=check, **kw)

    @inlineCallbacks
    def refused(self, spec: ContainerSpec, *options: str) -> Generator[Deferred[Any], Any, bool]:
        """
        True (after checking the refusal) if the backend lacks one of
        C{options} (C{health-cmd} if none is given): C{create} fails with
        L{BadRequest} naming it, and nothing is created.
        """
        missing = [o for o in options or ("health-cmd",) if o not in self.capabilities]
        if not missing:
            return False
        error = yield self.assertFails(self.backend.create(spec), BadRequest)
        self.assertIn(f"--{missing[0]}", str(error))
        listed = yield self.settle(self.backend.list())
        self.assertNotIn(spec.name, [c.name for c in listed])
        return True

    @property
    def capabilities(self) -> frozenset[str]:
        return self.backend.capabilities.options

    @inlineCallbacks
    def runChecked(self, spec: ContainerSpec) -> Generator[Deferred[Any], Any, Container]:
        container = yield self.runContainer(spec)
        return container

    def statuses(self, name: str) -> list[str | None]:
        """The statuses of C{name}'s C{health_status} events, in order."""
        return [
            e.status
            for e in self.recorder.events
            if e.name == name and e.action == Action.HEALTH_STATUS
        ]

    def statusesReach(self, name: str, count: int) -> Deferred[Any]:
        return self.eventsUntil(lambda _: len(self.statuses(name)) >= count)

    # tests

    @inlineCallbacks
    def test_healthy(self) -> Generator[Deferred[Any], Any, None]:
        """
        A passing check makes a started container C{healthy}: C{wait
        --for=healthy} fires, C{health_status} is emitted after C{start},
        the log holds the check's exit code 0; C{inspect} shows the check.
        """
        spec = self.checked("healthy", self.healthCommand("pass"), retries=2)
        if (yield self.refused(spec)):
            return
        started = yield self.runChecked(spec)
        self.assertIn(started.health.status, (HealthStatus.STARTING, HealthStatus.HEALTHY))
        container = yield self.waitFor(spec.name, WaitCondition.HEALTHY)
        self.assertEqual(container.health.status, HealthStatus.HEALTHY)
        self.assertEqual(container.health.failingStreak, 0)
        yield self.statusesReach(spec.name, 1)
        self.assertEqual(self.statuses(spec.name)[0], HealthStatus.HEALTHY)
        actions = self.recorder.actions(spec.name)
        self.assertLess(actions.index(Action.START), actions.index(Action.HEALTH_STATUS))
        inspected = yield self.settle(self.backend.inspect(spec.name))
        self.assertEqual(inspected.healthcheck, spec.healthcheck)
        self.assertTrue(inspected.health.log)
        self.assertEqual(inspected.health.log[-1].exitCode, 0)
        self.assertEqual(inspected.summary()["health"]["status"], HealthStatus.HEALTHY)

    @inlineCallbacks
    def test_unhealthy(self) -> Generator[Deferred[Any], Any, None]:
        """
        A failing check makes it C{unhealthy} after C{retries} failures in
        a row (one C{health_status}: never C{healthy} on the way); C{wait
        --for=unhealthy} fires and C{--for=healthy} then fails.
        """
        spec = self.checked("unhealthy", self.healthCommand("fail"), retries=2)
        if (yield self.refused(spec)):
            return
        yield self.runChecked(spec)
        container = yield self.waitFor(spec.name, WaitCondition.UNHEALTHY)
        self.assertEqual(container.health.status, HealthStatus.UNHEALTHY)
        self.assertGreaterEqual(container.health.failingStreak, 2)
        self.assertTrue(all(r.exitCode != 0 for r in container.health.log))
        self.assertEqual(container.state, State.RUNNING)
        yield self.statusesReach(spec.name, 1)
        self.assertEqual(self.statuses(spec.name), [HealthStatus.UNHEALTHY])
        yield self.assertFails(self.backend.wait(spec.name, WaitCondition.HEALTHY), BackendError)

    @inlineCallbacks
    def test_statusEventsInOrder(self) -> Generator[Deferred[Any], Any, None]:
        """
        A check that passes, then fails, then passes again: C{healthy},
        C{unhealthy}, C{healthy}, one C{health_status} for each change.
        """
        command, turn = self.healthSwitch()
        # The start period holds back the failures before the first pass.
        spec = self.checked("switched", command, retries=1, startPeriod=60)
        if (yield self.refused(spec)):
            return
        yield self.runChecked(spec)
        yield self.settle(maybeDeferred(turn, spec.name, True))
        yield self.waitFor(spec.name, WaitCondition.HEALTHY)
        yield self.settle(maybeDeferred(turn, spec.name, False))
        yield self.waitFor(spec.name, WaitCondition.UNHEALTHY)
        yield self.settle(maybeDeferred(turn, spec.name, True))
        yield self.statusesReach(spec.name, 3)
        self.assertEqual(self.statuses(spec.name), ["healthy", "unhealthy", "healthy"])
        container = yield self.waitFor(spec.name, WaitCondition.HEALTHY)
        self.assertEqual(container.health.failingStreak, 0)

    @inlineCallbacks
    def test_startPeriod(self) -> Generator[Deferred[Any], Any, None]:
        """Failures within the start period do not count; later ones do."""
        spec = self.checked("startperiod", self.healthCommand("fail"), retries=1, startPeriod=3)
        if (yield self.refused(spec)):
            return
        yield self.runChecked(spec)
        yield self.sleep(1.5)
        container = yield self.settle(self.backend.inspect(spec.name))
        self.assertEqual(container.health.status, HealthStatus.STARTING)
        self.assertEqual(container.health.failingStreak, 0)
        self.assertTrue(container.health.log)
        container = yield self.waitFor(spec.name, WaitCondition.UNHEALTHY)
        self.assertEqual(container.health.status, HealthStatus.UNHEALTHY)

    @inlineCallbacks
    def test_noOverlap(self) -> Generator[Deferred[Any], Any, None]:
        """A check slower than the interval: the next starts after it ended."""
        spec = self.checked("overlap", self.healthCommand("slow", 1), timeout=10)
        if (yield self.refused(spec)):
            return
        yield self.runChecked(spec)
        container = yield self.waitFor(spec.name, WaitCondition.HEALTHY)
        for _ in range(100):
            if len(container.health.log) >= 2:
                break
            yield self.sleep(0.5)
            container = yield self.settle(self.backend.inspect(spec.name))
        log = container.health.log
        self.assertGreaterEqual(len(log), 2)
        for before, after in zip(log, log[1:]):
            self.assertGreaterEqual(after.start, before.end)
            self.assertGreaterEqual(before.end - before.start, 0.9)

    @inlineCallbacks
    def test_timeout(self) -> Generator[Deferred[Any], Any, None]:
        """A check longer than its timeout fails with exit code -1, saying so."""
        spec = self.checked("timeout", self.healthCommand("slow", 5), timeout=0.5, retries=1)
        if (yield self.refused(spec)):
            return
        yield self.runChecked(spec)
        container = yield self.waitFor(spec.name, WaitCondition.UNHEALTHY)
        result = container.health.log[-1]
        self.assertEqual(result.exitCode, -1)
        self.assertTrue(result.output)
        self.assertLess(result.end - result.start, 4)

    @inlineCallbacks
    def test_onFailureStop(self) -> Generator[Deferred[Any], Any, None]:
        """C{--health-on-failure=stop} stops it as a client would: not restarted."""
        spec = self.checked(
            "stop", self.healthCommand("fail"), retries=1, onFailure=OnFailure.STOP,
            restartPolicy=RestartPolicy("always"),
        )  # fmt: skip
        if (yield self.refused(spec, "health-cmd", "health-on-failure")):
            return
        yield self.runChecked(spec)
        expected = [Action.CREATE, Action.START, Action.HEALTH_STATUS, Action.DIE, Action.STOP]
        yield self.assertActions(spec.name, expected)
        yield self.sleep(1)
        container = yield self.settle(self.backend.inspect(spec.name))
        self.assertEqual(container.state, State.EXITED)
        self.assertEqual(container.health.status, HealthStatus.UNHEALTHY)

    @inlineCallbacks
    def test_onFailureKill(self) -> Generator[Deferred[Any], Any, None]:
        """C{--health-on-failure=kill} sends SIGKILL (a C{kill} event)."""
        spec = self.checked("kill", self.healthCommand("fail"), retries=1, onFailure=OnFailure.KILL)
        if (yield self.refused(spec, "health-cmd", "health-on-failure")):
            return
        yield self.runChecked(spec)
        expected = [Action.CREATE, Action.START, Action.HEALTH_STATUS, Action.KILL, Action.DIE]
        yield self.assertActions(spec.name, expected)
        container = yield self.waitFor(spec.name, WaitCondition.NOT_RUNNING)
        self.assertEqual(container.state, State.EXITED)
        self.assertIn(container.exitCode, self.fixture.signalledExitCodes(_signal.SIGKILL))

    @inlineCallbacks
    def test_onFailureRestart(self) -> Generator[Deferred[Any], Any, None]:
        """
        C{--health-on-failure=restart} restarts it as the restart policy
        restarts a crash (C{die}, then after the backoff C{start},
        C{restart}; no C{stop}: no client stopped it), counted in
        C{restart_count}, its health C{starting} again.
        """
        spec = self.checked(
            "restart", self.healthCommand("fail"), retries=1, onFailure=OnFailure.RESTART,
            interval=1,
        )  # fmt: skip
        if (yield self.refused(spec, "health-cmd", "health-on-failure")):
            return
        yield self.runChecked(spec)
        expected = [Action.CREATE, Action.START, Action.HEALTH_STATUS]
        expected += [Action.DIE, Action.START, Action.RESTART]
        yield self.eventsUntil(lambda _: len(self.recorder.actions(spec.name)) >= len(expected))
        self.assertEqual(self.recorder.actions(spec.name)[: len(expected)], expected)
        container = yield self.settle(self.backend.inspect(spec.name))
        self.assertGreaterEqual(container.restartCount, 1)

    @inlineCallbacks
    def test_waitHealthyFailsOnExit(self) -> Generator[Deferred[Any], Any, None]:
        """C{wait --for=healthy} fails if it exits (not to be restarted) first."""
        spec = self.checked(
            "exits", self.healthCommand("pass"), self.fixture.exitCommand(3), interval=30
        )
        if (yield self.refused(spec)):
            return
        yield self.runChecked(spec)
        yield self.assertFails(self.backend.wait(spec.name, WaitCondition.HEALTHY), BackendError)

    @inlineCallbacks
    def test_waitWithoutHealthCheck(self) -> Generator[Deferred[Any], Any, None]:
        """Waiting for C{healthy} or C{unhealthy} without a check: L{BadRequest}."""
        spec = self.spec("nocheck", self.fixture.longCommand)
        yield self.runContainer(spec)
        for condition in (WaitCondition.HEALTHY, WaitCondition.UNHEALTHY):
            yield self.assertFails(self.backend.wait(spec.name, condition), BadRequest)
        container = yield self.settle(self.backend.inspect(spec.name))
        self.assertIsNone(container.health)
        self.assertIsNone(container.summary()["health"])

    @inlineCallbacks
    def test_noHealthcheck(self) -> Generator[Deferred[Any], Any, None]:
        """C{--no-healthcheck}: no health, C{healthcheck} with no command."""
        spec = self.checked("disabled", None)
        if (yield self.refused(spec, "no-healthcheck")):
            return
        yield self.runChecked(spec)
        yield self.sleep(3 * self.healthInterval)
        container = yield self.settle(self.backend.inspect(spec.name))
        self.assertIsNone(container.health)
        self.assertIsNone(container.detail()["healthcheck"]["cmd"])
        self.assertEqual(self.statuses(spec.name), [])

    @inlineCallbacks
    def test_user(self) -> Generator[Deferred[Any], Any, None]:
        """C{--user} is shown by C{inspect} (or refused by name)."""
        spec = self.spec("user", self.fixture.longCommand, user=self.healthUser())
        if (yield self.refused(spec, "user")):
            return
        yield self.runContainer(spec)
        container = yield self.settle(self.backend.inspect(spec.name))
        self.assertEqual(container.user, spec.user)
        self.assertEqual(container.detail()["user"], spec.user)
