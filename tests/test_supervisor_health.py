"""
Tests for the supervisor's health checks (L{pycm.backends.supervisor.healthmonitor}
and how the engine uses it), on the memory backend and a L{Clock}.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet.defer import Deferred, fail
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from pycm.backends.memory import MemoryBackend, SimulatedRuntime
from pycm.backends.supervisor.healthmonitor import ANSWER_GRACE
from pycm.backends.supervisor.records import Record
from pycm.capabilities import HEALTH_OPTIONS
from pycm.errors import BackendError, BadRequest
from pycm.health import HealthCheck, HealthResult, HealthStatus, OnFailure
from pycm.interfaces import IRun, IRuntime, IRuntimeStats
from pycm.model import Action, Container, RestartPolicy, State, WaitCondition
from pycm.testing import advanceClock
from tests.test_supervisor import SupervisorTestCase, spec


def check(cmd: str | None, **kw: Any) -> HealthCheck:
    return HealthCheck(cmd, **kw)


class HealthTestCase(SupervisorTestCase):
    """A memory backend on a clock, and helpers for health checks."""

    def runChecked(self, name: str, cmd: str, *command: str, **kw: Any) -> Container:
        """Create and start C{name} (C{command}) with the health check C{cmd}."""
        checkArgs = {k: kw.pop(k) for k in list(kw) if k in HealthCheck.__annotations__}
        return self.run_(spec(name, *command, healthcheck=check(cmd, **checkArgs), **kw))

    def advance(self, seconds: float) -> None:
        """Let C{seconds} pass, one scheduled call at a time."""
        advanceClock(self.clock, seconds)

    def done(self, d: Deferred[Any]) -> Any:
        """C{d}'s result, once what is due now has run."""
        self.clock.advance(0)
        return self.successResultOf(d)

    def health(self, name: str) -> Any:
        return self.inspect(name).health

    def statuses(self, name: str) -> list[str | None]:
        return [
            e.status
            for e in self.recorder.events
            if e.name == name and e.action == Action.HEALTH_STATUS
        ]

    def record(self, name: str) -> Record:
        return self.backend._records[name]

    def restartWaits(self, name: str) -> list[float]:
        """
        The waits, from then on, between each C{die} of C{name} and the
        C{start} after it (the list grows as time passes).
        """
        waits: list[float] = []
        died: list[float] = []

        def observe(event: Any) -> None:
            if event.name != name:
                return
            if event.action == Action.DIE:
                died.append(self.clock.seconds())
            elif event.action == Action.START and died:
                waits.append(round(self.clock.seconds() - died.pop(), 3))

        self.backend.addObserver(observe)
        return waits


class HealthStatusTests(HealthTestCase):
    """How checks make a container's health, by Docker's rules."""

    def test_startingUntilTheFirstCheck(self) -> None:
        """
        A started container is C{starting}; the first check runs one
        interval after the start, and a pass makes it C{healthy} with a
        C{health_status} event carrying the status.
        """
        self.advance(100)
        c = self.runChecked("web", "true", interval=10)
        self.assertEqual((c.health.status, c.health.log), (HealthStatus.STARTING, ()))
        self.advance(9.9)
        self.assertEqual(self.health("web").log, ())
        self.advance(0.1)
        health = self.health("web")
        self.assertEqual(health.status, HealthStatus.HEALTHY)
        self.assertEqual(health.log, (HealthResult(110, 110, 0, ""),))
        event = self.recorder.events[-1]
        self.assertEqual((event.action, event.status), (Action.HEALTH_STATUS, "healthy"))
        self.assertEqual(event.toJSON()["status"], "healthy")
        self.assertEqual(
            self.recorder.actions("web"), [Action.CREATE, Action.START, Action.HEALTH_STATUS]
        )

    def test_createdAndUnchecked(self) -> None:
        """
        A created container with a check is C{starting}; one without a
        check, or with C{--no-healthcheck}, has no health.
        """
        c = self.successResultOf(self.backend.create(spec("a", healthcheck=check("true"))))
        self.assertEqual(c.health.status, HealthStatus.STARTING)
        self.assertEqual(c.healthcheck, check("true"))
        plain = self.run_(spec("b"))
        off = self.run_(spec("c", healthcheck=check(None)))
        self.assertEqual((plain.health, plain.healthcheck), (None, None))
        self.assertEqual((off.health, off.healthcheck), (None, check(None)))
        self.assertIsNone(off.detail()["healthcheck"]["cmd"])
        self.assertIsNone(off.summary()["health"])
        self.advance(100)
        self.assertIsNone(self.health("c"))
        self.assertEqual(self.statuses("c"), [])

    def test_failingStreak(self) -> None:
        """
        Failures grow the streak; C{retries} of them in a row make it
        C{unhealthy} (one event), and a pass makes it C{healthy} again
        with no streak.
        """
        path = self.mktemp()
        self.runChecked("web", f"test -e {path}", interval=1, retries=3)
        self.advance(2)
        self.assertEqual(
            (self.health("web").status, self.health("web").failingStreak), ("starting", 2)
        )
        self.advance(1)
        self.assertEqual(
            (self.health("web").status, self.health("web").failingStreak), ("unhealthy", 3)
        )
        self.assertEqual(self.health("web").log[-1].exitCode, 1)
        self.advance(3)
        self.assertEqual(self.health("web").failingStreak, 6)
        self.assertEqual(len(self.health("web").log), 5)
        with open(path, "w"):
            pass
        self.advance(1)
        self.assertEqual(
            (self.health("web").status, self.health("web").failingStreak), ("healthy", 0)
        )
        os.remove(path)
        self.advance(3)
        self.assertEqual(self.statuses("web"), ["unhealthy", "healthy", "unhealthy"])

    def test_startPeriod(self) -> None:
        """
        Failures of checks started within the start period (measured from
        the run's start) do not count; later ones do.
        """
        self.runChecked("web", "false", interval=1, retries=1, startPeriod=2.5)
        self.advance(2)
        health = self.health("web")
        self.assertEqual((health.status, health.failingStreak, len(health.log)), ("starting", 0, 2))
        self.advance(1)
        self.assertEqual(self.health("web").status, HealthStatus.UNHEALTHY)

    def test_passInStartPeriod(self) -> None:
        """
        A pass within the start period makes it healthy at once; the start
        period no longer holds failures back after that.
        """
        path = self.mktemp()
        with open(path, "w"):
            pass
        self.runChecked("web", f"test -e {path}", interval=1, retries=1, startPeriod=60)
        self.advance(1)
        self.assertEqual(self.health("web").status, HealthStatus.HEALTHY)
        os.remove(path)
        self.advance(1)
        self.assertEqual(self.health("web").status, HealthStatus.UNHEALTHY)

    def test_noOverlap(self) -> None:
        """
        A check that takes longer than the interval is never overlapped:
        the next one starts one interval after it ended.
        """
        self.runChecked("web", "sleep 3; exit 0", interval=1, timeout=10)
        self.advance(1)
        self.assertTrue(self.record("web").healthMonitor.checking)
        self.advance(8)
        times = [(r.start, r.end) for r in self.health("web").log]
        self.assertEqual(times, [(1, 4), (5, 8)])

    def test_timeout(self) -> None:
        """A check longer than its timeout counts as failed: exit code -1, saying so."""
        self.runChecked("web", "sleep 5", interval=1, timeout=2, retries=1)
        self.advance(3)
        result = self.health("web").log[-1]
        self.assertEqual((result.start, result.end, result.exitCode), (1, 3, -1))
        self.assertEqual(result.output, "health check timed out after 2s")
        self.assertEqual(self.health("web").status, HealthStatus.UNHEALTHY)

    def test_startingAgainAtEachRun(self) -> None:
        """
        A new run (here a client restart) makes the health C{starting}
        again with no streak; the log of the last run is kept.
        """
        self.runChecked("web", "false", interval=1, retries=1)
        self.advance(1)
        self.assertEqual(self.health("web").status, HealthStatus.UNHEALTHY)
        c = self.done(self.backend.restart("web", 1))
        self.assertEqual((c.health.status, c.health.failingStreak), ("starting", 0))
        self.assertEqual(len(c.health.log), 1)

    def test_keptWhileStopped(self) -> None:
        """
        A stopped container keeps its last health (as Docker's inspect
        shows it) and is not checked.
        """
        self.runChecked("web", "true", interval=1)
        self.advance(1)
        self.done(self.backend.stop("web", 1))
        self.assertIsNone(self.record("web").healthMonitor)
        self.advance(10)
        health = self.health("web")
        self.assertEqual((health.status, len(health.log)), ("healthy", 1))

    def test_noChecksWhileStopping(self) -> None:
        """Checks stop as soon as the stop signal is sent, not at the exit."""
        self.run_(spec("web", "ignore-term", healthcheck=check("true", interval=1)))
        d = self.backend.stop("web", 5)
        self.advance(4)
        self.assertNoResult(d)
        self.assertEqual(self.health("web").log, ())
        self.advance(1)
        self.done(d)

    def test_stopCancelsCheckInFlight(self) -> None:
        """A check in flight when the run stops is cancelled, never reported."""
        self.runChecked("web", "sleep 5", interval=1, timeout=10)
        self.advance(2)
        self.assertTrue(self.record("web").healthMonitor.checking)
        self.done(self.backend.stop("web", 1))
        self.advance(0)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.health("web").log, ())

    def test_exitStopsChecks(self) -> None:
        """A run that ends on its own stops its checks."""
        self.runChecked("web", "sleep 5; exit 0", "sleep", "2", interval=1, timeout=10)
        self.advance(1.5)
        self.advance(0.5)
        self.assertIsNone(self.record("web").healthMonitor)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_removeStopsChecks(self) -> None:
        """C{rm --force} stops the checks at once."""
        self.runChecked("web", "true", interval=1)
        record = self.record("web")
        self.done(self.backend.remove("web", True))
        self.assertIsNone(record.healthMonitor)
        self.advance(0)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_closeStopsChecks(self) -> None:
        """Closing the backend stops every container's checks."""
        self.runChecked("web", "sleep 5", interval=1, timeout=10)
        self.advance(2)
        d = self.backend.close()
        self.advance(0)
        self.done(d)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_inMemoryOnly(self) -> None:
        """
        Health is not saved: a daemon that opens shows C{starting} (for a
        container with a check) until the first check of its new run.
        """
        self.runChecked("web", "true", interval=1, restartPolicy=RestartPolicy("always"))
        self.advance(1)
        self.assertNotIn("health", self.store.load()[0])
        self.done(self.backend.close())
        second = self.makeBackend()
        c = self.inspect("web", second)
        self.assertEqual((c.state, c.health.status, c.health.log), ("running", "starting", ()))
        self.advance(1)
        self.assertEqual(self.inspect("web", second).health.status, HealthStatus.HEALTHY)


class HealthWaitTests(HealthTestCase):
    """C{wait --for=healthy} and C{--for=unhealthy}."""

    def test_healthy(self) -> None:
        """C{healthy} fires when it turns healthy, and at once if it is."""
        self.runChecked("web", "true", interval=1)
        d = self.backend.wait("web", WaitCondition.HEALTHY)
        self.assertNoResult(d)
        self.advance(1)
        self.assertEqual(self.done(d).health.status, HealthStatus.HEALTHY)
        again = self.successResultOf(self.backend.wait("web", WaitCondition.HEALTHY))
        self.assertEqual(again.health.status, HealthStatus.HEALTHY)

    def test_noHealthCheck(self) -> None:
        """Either condition on a container without a check: L{BadRequest}."""
        self.run_(spec("a"))
        self.run_(spec("b", healthcheck=check(None)))
        for name in ("a", "b"):
            for condition in WaitCondition.HEALTH:
                error = self.failureResultOf(self.backend.wait(name, condition), BadRequest)
                self.assertEqual(str(error.value), f"container {name} has no health check")

    def test_healthyFailsWhenUnhealthy(self) -> None:
        """
        C{healthy} fails, saying why, if it turns unhealthy first; at once
        if it runs and is unhealthy.
        """
        self.runChecked("web", "false", interval=1, retries=2)
        d = self.backend.wait("web", WaitCondition.HEALTHY)
        unhealthy = self.backend.wait("web", WaitCondition.UNHEALTHY)
        self.advance(2)
        error = self.failureResultOf(d, BackendError)
        self.assertEqual(
            str(error.value),
            "container web is unhealthy: its health check failed 2 times in a row",
        )
        self.assertEqual(self.successResultOf(unhealthy).health.status, "unhealthy")
        error = self.failureResultOf(self.backend.wait("web", WaitCondition.HEALTHY))
        self.assertEqual(
            str(error.value),
            "container web is unhealthy: its health check failed 2 times in a row",
        )

    def test_healthyFailsOnExit(self) -> None:
        """C{healthy} fails if it exits and will not be restarted first, and at once after."""
        self.runChecked("web", "true", "exit", "3", interval=1)
        d = self.backend.wait("web", WaitCondition.HEALTHY)
        self.advance(0)
        error = self.failureResultOf(d, BackendError)
        self.assertEqual(str(error.value), "container web exited with 3 before it was healthy")
        self.failureResultOf(self.backend.wait("web", WaitCondition.HEALTHY), BackendError)

    def test_healthyFailsWhenDead(self) -> None:
        """C{healthy} fails if its restart cannot be started (it is dead)."""
        self.successResultOf(
            self.backend.create(spec("web", "unstartable", healthcheck=check("true")))
        )
        d = self.backend.wait("web", WaitCondition.HEALTHY)
        self.failureResultOf(self.backend.start("web"), BackendError)
        self.assertIn("is dead before it was healthy", str(self.failureResultOf(d).value))

    def test_healthyFailsOnRemoval(self) -> None:
        """C{healthy} fails with L{BackendError} if it is removed first."""
        self.runChecked("web", "true", interval=1)
        d = self.backend.wait("web", WaitCondition.HEALTHY)
        self.done(self.backend.remove("web", True))
        error = self.failureResultOf(d, BackendError)
        self.assertEqual(str(error.value), "container web was removed before it was healthy")

    def test_healthyAcrossAutomaticRestart(self) -> None:
        """C{healthy} keeps waiting while the restart policy restarts it."""
        self.runChecked(
            "web", "true", "delay", "2", "exit", "1", interval=1.5,
            restartPolicy=RestartPolicy("on-failure", 1),
        )  # fmt: skip
        d = self.backend.wait("web", WaitCondition.HEALTHY)
        self.advance(1.5)
        self.assertEqual(self.done(d).restartCount, 0)

    def test_healthyAcrossClientRestart(self) -> None:
        """A client restart's exit does not end a C{healthy} wait."""
        self.runChecked("web", "true", interval=1)
        d = self.backend.wait("web", WaitCondition.HEALTHY)
        self.done(self.backend.restart("web", 1))
        self.assertNoResult(d)
        self.advance(1)
        self.done(d)

    def test_healthyFailsWhenRestartStopped(self) -> None:
        """A client stop of a container waiting to be restarted ends C{healthy}."""
        self.runChecked(
            "web", "true", "exit", "1", interval=1, restartPolicy=RestartPolicy("always")
        )
        d = self.backend.wait("web", WaitCondition.HEALTHY)
        self.advance(0)
        self.assertEqual(self.inspect("web").state, State.RESTARTING)
        self.assertNoResult(d)
        self.done(self.backend.stop("web", 1))
        self.failureResultOf(d, BackendError)

    def test_healthyWaitsForStart(self) -> None:
        """C{healthy} on a created container waits for it to be started."""
        self.successResultOf(
            self.backend.create(spec("web", healthcheck=check("true", interval=1)))
        )
        d = self.backend.wait("web", WaitCondition.HEALTHY)
        self.advance(5)
        self.assertNoResult(d)
        self.successResultOf(self.backend.start("web"))
        self.advance(1)
        self.done(d)

    def test_unhealthyAcrossRuns(self) -> None:
        """
        C{unhealthy} waits across runs, and holds at once for a stopped
        container whose last health is unhealthy.
        """
        self.runChecked("web", "false", interval=2, retries=1)
        d = self.backend.wait("web", WaitCondition.UNHEALTHY)
        self.advance(1.5)
        self.done(self.backend.stop("web", 1))
        self.assertNoResult(d)
        self.successResultOf(self.backend.start("web"))
        self.advance(2)
        self.done(d)
        self.done(self.backend.stop("web", 1))
        self.successResultOf(self.backend.wait("web", WaitCondition.UNHEALTHY))

    def test_cancel(self) -> None:
        """Cancelling a health wait leaves nothing behind."""
        self.runChecked("web", "true", interval=1)
        d = self.backend.wait("web", WaitCondition.HEALTHY)
        d.cancel()
        self.failureResultOf(d)
        self.assertEqual(self.record("web").waiters, [])


@implementer(IRuntime, IRuntimeStats)
class _NoHealthRuntime:
    """A runtime that cannot run health checks (a wrapped simulated one)."""

    def __init__(self, clock: Clock) -> None:
        self._inner = SimulatedRuntime(clock)
        self.defaultImage = self._inner.defaultImage
        self.defaultCommand = self._inner.defaultCommand
        self.images = self._inner.images
        self.capabilities = self._inner.capabilities

    def spawn(self, *args: Any, **kw: Any) -> Any:
        return self._inner.spawn(*args, **kw)

    def reclaim(self, *args: Any) -> Any:
        return self._inner.reclaim(*args)

    def usage(self, runs: Any) -> Any:
        return self._inner.usage(runs)


class _BrokenProbeRuntime(SimulatedRuntime):
    """A simulated runtime whose probe fails, or never answers."""

    answer: str = "fail"

    def probe(self, container: Container, run: IRun, timeout: float) -> Deferred[HealthResult]:
        if self.answer == "fail":
            return fail(RuntimeError("no exec today"))
        return Deferred()


class RuntimeSeamTests(HealthTestCase):
    """What the supervisor does with what the runtime can and cannot do."""

    def test_noHealthRuntime(self) -> None:
        """
        A runtime without L{pycm.interfaces.IRuntimeHealth}: the options
        are left out of the capabilities, and refused by name.
        """
        backend = MemoryBackend(self.clock, runtime=_NoHealthRuntime(self.clock))  # type: ignore[arg-type]
        self.assertFalse(backend.capabilities.options & HEALTH_OPTIONS)
        self.assertIn("user", backend.capabilities.options)
        error = self.failureResultOf(
            backend.create(spec("web", healthcheck=check("true"))), BadRequest
        )
        self.assertEqual(str(error.value), "the memory backend does not support --health-cmd")

    def test_probeFails(self) -> None:
        """A probe that fails (a runtime's bug) is a failed check, saying so."""
        self.backend = MemoryBackend(self.clock, runtime=_BrokenProbeRuntime(self.clock))
        self.successResultOf(self.backend.open())
        self.runChecked("web", "true", interval=1, retries=1)
        self.advance(1)
        result = self.health("web").log[-1]
        self.assertEqual(result.exitCode, -1)
        self.assertEqual(result.output, "the health check could not be run: no exec today")

    def test_probeNeverAnswers(self) -> None:
        """A probe that never answers is given up after its timeout and a grace."""
        runtime = _BrokenProbeRuntime(self.clock)
        runtime.answer = "never"
        self.backend = MemoryBackend(self.clock, runtime=runtime)
        self.successResultOf(self.backend.open())
        self.runChecked("web", "true", interval=1, timeout=2)
        self.advance(1 + 2 + ANSWER_GRACE)
        result = self.health("web").log[-1]
        self.assertEqual((result.start, result.end, result.exitCode), (1, 8, -1))
        self.assertIn("did not end within 7s", result.output)

    def test_user(self) -> None:
        """C{--user} is kept, saved and shown."""
        c = self.run_(spec("web", user="1000:1000"))
        self.assertEqual(c.detail()["user"], "1000:1000")
        self.assertEqual(self.store.load()[0]["user"], "1000:1000")
        self.done(self.backend.close())
        second = self.makeBackend()
        self.assertEqual(self.inspect("web", second).user, "1000:1000")


class RecordTests(SynchronousTestCase):
    """A record's health check and user, saved and loaded."""

    def record(self, **kw: Any) -> Record:
        return Record("web", "id1", "memory", "memory", ("sleep", "1"), 1.0, **kw)

    def test_roundTrip(self) -> None:
        """C{healthcheck} and C{user} survive L{Record.toDict}/L{Record.fromDict}."""
        hc = HealthCheck("pg_isready", 2.0, 3.0, 4, 5.0, OnFailure.KILL)
        loaded = Record.fromDict(self.record(healthcheck=hc, user="pg").toDict())
        self.assertEqual((loaded.healthcheck, loaded.user), (hc, "pg"))
        self.assertEqual(loaded.health.status, HealthStatus.STARTING)

    def test_olderRecords(self) -> None:
        """A record saved before health checks loads: no check, no user, no health."""
        data = self.record().toDict()
        del data["healthcheck"], data["user"]
        loaded = Record.fromDict(data)
        self.assertEqual((loaded.healthcheck, loaded.user, loaded.health), (None, None, None))

    def test_damaged(self) -> None:
        """A damaged health check or user is refused, naming the field."""
        for field, value in (
            ("healthcheck", {"cmd": 3}),
            ("healthcheck", dict(HealthCheck("x").toJSON(), interval=0)),
            ("healthcheck", "true"),
            ("user", ""),
            ("user", 1000),
        ):
            data = dict(self.record().toDict(), **{field: value})
            error = self.assertRaises(BackendError, Record.fromDict, data)
            self.assertIn(repr(field), str(error))


class SimulatedCheckTests(SynchronousTestCase):
    """The memory runtime's simulated health checks."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.runtime = SimulatedRuntime(self.clock)
        self.run = self.successResultOf(
            self.runtime.spawn(
                Container("web", "id", "memory", "memory", (), "running", 0.0), _Silent()
            )
        )

    def probe(self, cmd: str, timeout: float = 30) -> Deferred[HealthResult]:
        container = Container(
            "web", "id", "memory", "memory", (), "running", 0.0, healthcheck=HealthCheck(cmd)
        )
        return self.runtime.probe(container, self.run, timeout)

    def result(self, cmd: str) -> tuple[int, str]:
        r = self.successResultOf(self.probe(cmd))
        return r.exitCode, r.output

    def test_commands(self) -> None:
        """C{true}, C{false}, C{exit N}, C{echo}, C{test -e}, unknown words."""
        self.assertEqual(self.result("true"), (0, ""))
        self.assertEqual(self.result("false"), (1, ""))
        self.assertEqual(self.result("exit 3"), (3, ""))
        self.assertEqual(self.result("echo up; exit 2; echo never"), (2, "up"))
        self.assertEqual(self.result("false; true"), (0, ""))
        self.assertEqual(self.result("false && echo no; echo yes"), (0, "yes"))
        self.assertEqual(self.result("true && exit 4"), (4, ""))
        self.assertEqual(
            self.result("sleep soon"), (127, "sleep: not a simulated health check command")
        )
        self.assertEqual(self.result(f"test -e {os.curdir}"), (0, ""))
        self.assertEqual(self.result(f"test -e {self.mktemp()}"), (1, ""))
        self.assertEqual(
            self.result("curl -f localhost"), (127, "curl: not a simulated health check command")
        )

    def test_outputCapped(self) -> None:
        """The output is capped at 4 KiB."""
        self.assertEqual(len(self.result("echo " + "x" * 5000)[1]), 4096)

    def test_sleep(self) -> None:
        """C{sleep S} takes S seconds of the clock; cancelling drops it."""
        d = self.probe("sleep 2; exit 1")
        self.clock.advance(1.9)
        self.assertNoResult(d)
        self.clock.advance(0.1)
        self.assertEqual(self.successResultOf(d), HealthResult(0, 2, 1, ""))
        d = self.probe("sleep 2")
        d.cancel()
        self.failureResultOf(d)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_timeout(self) -> None:
        """A check longer than its timeout ends at the timeout with -1."""
        d = self.probe("sleep infinity", timeout=0.5)
        self.clock.advance(0.5)
        self.assertEqual(
            self.successResultOf(d), HealthResult(0, 0.5, -1, "health check timed out after 500ms")
        )

    def test_notRunning(self) -> None:
        """A run that ended cannot be checked: -1."""
        self.run.signal(9)
        self.clock.advance(0)
        self.assertEqual(self.result("true"), (-1, "the container is not running"))


class _Silent:
    def output(self, stream: str, lines: list[bytes]) -> None:
        pass

    def exited(self, exitCode: int | None) -> None:
        pass
