"""
Tests for L{pycm.backends.supervisor.backend}: the edges of the lifecycle engine,
on a fake clock with simulated runs.
"""

from __future__ import annotations

import json
import signal
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test
from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.logger import Logger, formatEvent
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from pycm.backends.memory import MemoryBackend, MemoryRecordStore, SimulatedRuntime
from pycm.backends.supervisor.records import Record
from pycm.backends.supervisor.recordwriter import RETRY_INTERVAL, RecordWriter
from pycm.backends.supervisor.recovery import LOST_ERROR, RECLAIMED_ERROR, STARTING_ERROR
from pycm.backends.supervisor.restartpolicy import MAX_BACKOFF, flagsReadAtOpen, nextBackoff
from pycm.backends.supervisor.runs import SHUTDOWN_ERROR, SHUTDOWN_KILL_WAIT, SHUTDOWN_TIMEOUT
from pycm.capabilities import Capabilities
from pycm.errors import BackendError, BadRequest, Conflict, NotFound, Unavailable
from pycm.health import HealthCheck, OnFailure
from pycm.interfaces import IRecordStore, IRun, IRunObserver, IRuntimeSweep
from pycm.model import (
    Action,
    Container,
    ContainerEvent,
    ContainerSpec,
    RestartPolicy,
    State,
    WaitCondition,
)
from pycm.testing import EventRecorder, advanceClock
from pycm.units import MAX_STOP_TIMEOUT


def spec(name: str, *command: str, **kw: Any) -> ContainerSpec:
    return ContainerSpec(name, command=command or None, **kw)


class SupervisorTestCase(SynchronousTestCase):
    """A memory backend on a L{Clock}, with an event recorder."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.store = MemoryRecordStore()
        self.runtime = SimulatedRuntime(self.clock)
        self.backend = self.makeBackend()
        self.recorder = EventRecorder()
        self.backend.addObserver(self.recorder)

    def makeBackend(self, runtime: SimulatedRuntime | None = None) -> MemoryBackend:
        backend = MemoryBackend(self.clock, runtime=runtime or self.runtime, recordStore=self.store)
        self.successResultOf(backend.open())
        return backend

    def run_(self, s: ContainerSpec, backend: MemoryBackend | None = None) -> Container:
        backend = backend or self.backend
        self.successResultOf(backend.create(s))
        return self.successResultOf(backend.start(s.name))

    def inspect(self, name: str, backend: MemoryBackend | None = None) -> Container:
        return self.successResultOf((backend or self.backend).inspect(name))

    def startTimes(self, name: str) -> list[float]:
        return [e.time for e in self.recorder.events if e.name == name and e.action == "start"]


class BackoffTests(SupervisorTestCase):
    """Restart delays and C{restart_count}."""

    def test_nextBackoff(self) -> None:
        """Delays start at 0.1 s, double, stop at 60 s, reset after a 10 s run."""
        delays = []
        previous = 0.0
        for _ in range(12):
            previous = nextBackoff(previous, 0.0)
            delays.append(previous)
        self.assertEqual(delays[:4], [0.1, 0.2, 0.4, 0.8])
        self.assertEqual(delays[-1], MAX_BACKOFF)
        self.assertEqual(nextBackoff(MAX_BACKOFF, 10.0), 0.1)
        self.assertEqual(nextBackoff(0.4, 9.9), 0.8)

    def test_delaysDouble(self) -> None:
        """
        A run failing at once is restarted after 0.1, 0.2, 0.4... s, in
        state C{restarting} meanwhile, C{restart_count} counting restarts.
        """
        self.run_(spec("web", "exit", "1", restartPolicy=RestartPolicy("on-failure")))
        self.clock.advance(0)
        self.assertEqual(self.inspect("web").state, State.RESTARTING)
        for _ in range(12):
            advanceClock(self.clock, 61)
        times = self.startTimes("web")
        gaps = [round(b - a, 6) for a, b in zip(times, times[1:])]
        self.assertEqual(gaps[:5], [0.1, 0.2, 0.4, 0.8, 1.6])
        self.assertEqual(gaps[-1], 60.0)
        self.assertEqual(self.inspect("web").restartCount, len(times) - 1)
        restarts = self.recorder.actions("web").count(Action.RESTART)
        self.assertEqual(restarts, len(times) - 1)

    def test_resetAfterLongRun(self) -> None:
        """A run that lasted 10 s resets the delay to 0.1 s; 9 s does not."""
        self.run_(spec("long", "sleep", "10", restartPolicy=RestartPolicy("always")))
        self.run_(spec("short", "sleep", "9", restartPolicy=RestartPolicy("always")))
        advanceClock(self.clock, 60)
        longTimes = self.startTimes("long")
        self.assertEqual({round(b - a, 6) for a, b in zip(longTimes, longTimes[1:])}, {10.1})
        shortTimes = self.startTimes("short")
        gaps = [round(b - a, 6) for a, b in zip(shortTimes, shortTimes[1:])]
        self.assertEqual(gaps[:3], [9.1, 9.2, 9.4])

    def test_onFailureMax(self) -> None:
        """C{on-failure:3} restarts exactly 3 times."""
        self.run_(spec("web", "exit", "2", restartPolicy=RestartPolicy("on-failure", 3)))
        advanceClock(self.clock, 100)
        container = self.inspect("web")
        self.assertEqual((container.state, container.restartCount), (State.EXITED, 3))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_onFailureZero(self) -> None:
        """C{on-failure:0} means at most 0 restarts."""
        self.run_(spec("web", "exit", "2", restartPolicy=RestartPolicy("on-failure", 0)))
        advanceClock(self.clock, 10)
        self.assertEqual(self.inspect("web").restartCount, 0)
        self.assertEqual(self.inspect("web").state, State.EXITED)

    def test_stopRestarting(self) -> None:
        """C{stop} of a C{restarting} container cancels the pending restart."""
        self.run_(spec("web", "exit", "1", restartPolicy=RestartPolicy("always")))
        self.clock.advance(0)
        self.assertEqual(self.inspect("web").state, State.RESTARTING)
        container = self.successResultOf(self.backend.stop("web", None))
        self.assertEqual(container.state, State.EXITED)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.recorder.actions("web")[-2:], [Action.DIE, Action.STOP])

    def test_startRestarting(self) -> None:
        """A client C{start} of a C{restarting} container starts it now."""
        self.run_(spec("web", "exit", "1", restartPolicy=RestartPolicy("always")))
        self.clock.advance(0)
        container = self.successResultOf(self.backend.start("web"))
        self.assertEqual((container.state, container.restartCount), (State.RUNNING, 0))

    def test_failedAutomaticRestart(self) -> None:
        """An automatic restart that cannot start leaves the container C{dead}."""
        self.run_(spec("web", "exit", "1", restartPolicy=RestartPolicy("always")))
        self.clock.advance(0)
        self.patch(self.runtime, "spawn", lambda c, o, **kw: fail(BackendError("no more")))
        advanceClock(self.clock, 1)
        container = self.inspect("web")
        self.assertEqual((container.state, container.error), (State.DEAD, "no more"))
        self.assertEqual(self.clock.getDelayedCalls(), [])


class LifecycleTests(SupervisorTestCase):
    """Operations and their edge cases."""

    def test_killIgnoredSignal(self) -> None:
        """C{kill} emits C{kill} even if the run ignores the signal."""
        self.run_(spec("web"))
        container = self.successResultOf(self.backend.kill("web", signal.SIGUSR1))
        self.clock.advance(1)
        self.assertEqual(container.state, State.RUNNING)
        self.assertEqual(self.inspect("web").state, State.RUNNING)
        self.assertEqual(self.recorder.actions("web")[-1], Action.KILL)

    def test_startQueuedBehindStop(self) -> None:
        """A C{start} called during a slow C{stop} runs after it completes."""
        self.run_(spec("web", "ignore-term"))
        stopping = self.backend.stop("web", 5)
        starting = self.backend.start("web")
        self.assertNoResult(starting)
        self.assertEqual(self.inspect("web").state, State.STOPPING)
        self.clock.advance(5)
        self.clock.advance(0)
        self.assertEqual(self.successResultOf(stopping).exitCode, -signal.SIGKILL)
        self.assertEqual(self.successResultOf(starting).state, State.RUNNING)

    def test_removeForceDuringStop(self) -> None:
        """C{remove --force} during a slow C{stop} kills at once."""
        self.run_(spec("web", "ignore-term"))
        stopping = self.backend.stop("web", 30)
        removing = self.backend.remove("web", True)
        self.clock.advance(0)
        self.assertEqual(self.successResultOf(stopping).exitCode, -signal.SIGKILL)
        self.assertIsNone(self.successResultOf(removing))
        self.assertEqual(
            self.recorder.actions("web"),
            ["create", "start", "kill", "die", "stop", "destroy"],
        )
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_secondStopShortensTimeout(self) -> None:
        """A second C{stop} with a shorter timeout brings the SIGKILL forward."""
        self.run_(spec("web", "ignore-term"))
        first = self.backend.stop("web", 30)
        self.successResultOf(self.backend.kill("web", signal.SIGTERM))
        self.clock.advance(10)
        self.assertNoResult(first)
        self.clock.advance(20)
        self.assertEqual(self.successResultOf(first).exitCode, -signal.SIGKILL)

    def test_removeRestartingNeedsForce(self) -> None:
        """A C{restarting} container is removed only with force."""
        self.run_(spec("web", "exit", "1", restartPolicy=RestartPolicy("always")))
        self.clock.advance(0)
        self.failureResultOf(self.backend.remove("web", False), Conflict)
        self.successResultOf(self.backend.remove("web", True))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_badStopSignal(self) -> None:
        """An unknown stop signal is refused with L{BadRequest}."""
        self.failureResultOf(self.backend.create(spec("web", stopSignal="SIGNOPE")), BadRequest)

    def test_stopSignalNormalised(self) -> None:
        """Stop signals are kept by name: C{INT} and C{2} become C{SIGINT}."""
        for name, value in (("a1", "INT"), ("a2", "2")):
            c = self.successResultOf(self.backend.create(spec(name, stopSignal=value)))
            self.assertEqual(c.stopSignal, "SIGINT")

    def test_unsupportedOption(self) -> None:
        """An option outside the runtime's capabilities is refused, named."""
        self.runtime.capabilities = Capabilities(options=frozenset({"env"}))
        f = self.failureResultOf(self.backend.create(spec("web", memory=1024)), BadRequest)
        self.assertIn("--memory", str(f.value))

    def test_waitCancelLeavesNothing(self) -> None:
        """A cancelled wait is forgotten by its record."""
        self.successResultOf(self.backend.create(spec("web")))
        d = self.backend.wait("web", WaitCondition.NEXT_EXIT)
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertEqual(self.backend._records["web"].waiters, [])

    def test_waitRunningRemoved(self) -> None:
        """A C{running} waiter fails with C{NotFound} if the container is removed."""
        self.successResultOf(self.backend.create(spec("web")))
        d = self.backend.wait("web", WaitCondition.RUNNING)
        self.successResultOf(self.backend.remove("web", False))
        self.failureResultOf(d, NotFound)

    def test_logDecoding(self) -> None:
        """Output that is not UTF-8 is decoded with replacement characters."""
        self.successResultOf(self.backend.create(spec("web")))
        record = self.backend._records["web"]
        self.successResultOf(self.backend.start("web"))
        seen: list[Any] = []
        follow = self.successResultOf(self.backend.follow("web", None, seen.append))
        assert record.observer is not None
        record.observer.output("stderr", [b"caf\xe9"])
        self.assertEqual([(x.stream, x.line) for x in seen], [("stderr", "caf\ufffd")])
        self.assertEqual(follow.backlog, [])
        self.assertEqual(self.successResultOf(self.backend.logs("web", None)), seen)

    def test_batchOfLines(self) -> None:
        """
        A batch of lines is stored and followed line by line, in order,
        each decoded on its own (a sequence cut at the end of one line does
        not swallow the next).
        """
        self.successResultOf(self.backend.create(spec("web")))
        record = self.backend._records["web"]
        self.successResultOf(self.backend.start("web"))
        seen: list[Any] = []
        self.successResultOf(self.backend.follow("web", None, seen.append))
        assert record.observer is not None
        record.observer.output("stdout", [b"\xe2\x82", b"", b"caf\xc3\xa9", b"\xff\xfe x"])
        expected = ["\ufffd", "", "caf\u00e9", "\ufffd\ufffd x"]
        self.assertEqual([x.line for x in seen], expected)
        self.assertEqual(len({x.time for x in seen}), 1)
        logs = self.successResultOf(self.backend.logs("web", None))
        self.assertEqual([(x.stream, x.line) for x in logs], [("stdout", t) for t in expected])

    def test_followAcrossAutomaticRestart(self) -> None:
        """A follow goes on across automatic restarts and ends at the last exit."""
        policy = RestartPolicy("on-failure", 2)
        self.run_(spec("web", "fail", "oops", restartPolicy=policy))
        seen: list[Any] = []
        follow = self.successResultOf(self.backend.follow("web", None, seen.append))
        advanceClock(self.clock, 0.15)
        self.assertNoResult(follow.ended)
        advanceClock(self.clock, 1)
        self.successResultOf(follow.ended)
        self.assertEqual([x.line for x in seen], ["oops"] * 3)

    def test_exitBeforeSpawnFires(self) -> None:
        """A run that exits before its spawn Deferred fires is still handled."""

        @implementer(IRun)
        class Run:
            pid = 7
            startTime = None

            def signal(self, signum: int) -> None:
                pass

        def spawn(container: Container, observer: IRunObserver, runId: str) -> Deferred[IRun]:
            observer.exited(5)
            return succeed(Run())

        self.patch(self.runtime, "spawn", spawn)
        self.successResultOf(self.backend.create(spec("web")))
        container = self.successResultOf(self.backend.start("web"))
        self.assertEqual(container.state, State.RUNNING)
        self.assertEqual(self.inspect("web").exitCode, 5)
        self.assertEqual(self.recorder.actions("web"), ["create", "start", "die"])


@implementer(IRecordStore)
class CheckingStore(MemoryRecordStore):
    """A record store that can fail its writes."""

    broken = False

    def save(self, name: str, record: dict[str, Any]) -> None:
        if self.broken:
            raise OSError("disk full")
        super().save(name, record)

    def delete(self, name: str) -> None:
        if self.broken:
            raise OSError("disk full")
        super().delete(name)


class DurabilityTests(SupervisorTestCase):
    """Records are saved before events and replies; they survive restarts."""

    def setUp(self) -> None:
        super().setUp()
        self.store = CheckingStore()
        self.backend = self.makeBackend()
        self.backend.addObserver(self.recorder)

    def savedState(self, name: str) -> str | None:
        for data in self.store.load():
            if data["name"] == name:
                return data["state"]
        return None

    def test_savedBeforeEvents(self) -> None:
        """Each event finds the record already saved in its new state."""
        seen: list[tuple[str, str | None]] = []

        def observer(event: ContainerEvent) -> None:
            seen.append((event.action, self.savedState(event.name)))

        self.backend.addObserver(observer)
        self.run_(spec("web", "exit", "1", restartPolicy=RestartPolicy("on-failure", 1)))
        advanceClock(self.clock, 1)
        self.successResultOf(self.backend.remove("web", False))
        self.assertEqual(
            seen,
            [
                ("create", "created"),
                ("start", "running"),
                ("die", "restarting"),
                ("start", "running"),
                ("restart", "running"),
                ("die", "exited"),
                ("destroy", None),
            ],
        )

    def test_savedBeforeReplies(self) -> None:
        """A stop's reply fires after its exited state is saved."""
        self.run_(spec("web"))
        states: list[str | None] = []
        d = self.backend.stop("web", None)
        d.addCallback(lambda c: states.append(self.savedState("web")))
        self.clock.advance(0)
        self.assertEqual(states, ["exited"])

    def test_saveFailure(self) -> None:
        """A create whose record cannot be saved fails and takes no name."""
        self.store.broken = True
        self.failureResultOf(self.backend.create(spec("web")), BackendError)
        self.store.broken = False
        self.successResultOf(self.backend.create(spec("web")))

    def test_recordRoundTrip(self) -> None:
        """L{Record.toDict} and L{Record.fromDict} are inverses."""
        self.run_(
            spec(
                "web",
                "sleep",
                "5",
                env={"A": "b"},
                labels={"x": "y"},
                restartPolicy=RestartPolicy("on-failure", 4),
                memory=10,
                cpus=0.25,
                workdir="/w",
            )
        )
        record = self.backend._records["web"]
        again = Record.fromDict(record.toDict())
        self.assertEqual(again.toContainer(), record.toContainer())

    def test_damagedRecordQuarantined(self) -> None:
        """
        A record with missing fields is put aside (named by the backend's
        C{quarantined}); L{open} succeeds and serves the other records.
        """
        self.successResultOf(self.backend.create(ContainerSpec(name="good")))
        self.store.records["web"] = '{"name": "web"}'
        backend = MemoryBackend(self.clock, recordStore=self.store)
        self.successResultOf(backend.open())
        self.assertEqual([c.name for c in self.successResultOf(backend.list())], ["good"])
        self.assertEqual([q["name"] for q in backend.quarantined], ["web"])
        self.assertIn("corrupt container record", backend.quarantined[0]["reason"])
        self.assertNotIn("web", self.store.records)

    def test_wrongTypedFieldsQuarantined(self) -> None:
        """
        A record with one field of the wrong type or out of range is put
        aside like bad JSON, its reason naming the field; L{open} succeeds,
        and C{list} and C{inspect} serve the rest.
        """
        damages: dict[str, tuple[str, Any]] = {
            "env": ("env", {"A": 1}),
            "labels": ("labels", ["x"]),
            "signal": ("stopSignal", "SIGFOO"),
            "created": ("created", "yesterday"),
            "started": ("started", 1e300),
            "command": ("command", ["sleep", 1000]),
            "timeout": ("stopTimeout", -5),
            "memory": ("memory", -1),
            "cpus": ("cpus", "2"),
            "pid": ("pid", True),
            "count": ("restartCount", -1),
            "policy": ("restartPolicy", "sometimes"),
            "image": ("image", None),
            "workdir": ("workdir", 7),
        }
        for name in [*damages, "good"]:
            self.run_(spec(name, restartPolicy=RestartPolicy("always"), env={"A": "1"}))
        for name, (field, value) in damages.items():
            record = json.loads(self.store.records[name])
            record[field] = value
            self.store.records[name] = json.dumps(record)
        backend = MemoryBackend(self.clock, runtime=SimulatedRuntime(self.clock),
                                recordStore=self.store)  # fmt: skip
        self.successResultOf(backend.open())
        reasons = {q["name"]: q["reason"] for q in backend.quarantined}
        self.assertEqual(sorted(reasons), sorted(damages))
        for name, (field, _) in damages.items():
            self.assertIn(f"field {field!r}", reasons[name])
        self.assertEqual([c.name for c in self.successResultOf(backend.list())], ["good"])
        self.assertEqual(self.inspect("good", backend).state, State.RUNNING)

    def test_duplicateIdQuarantined(self) -> None:
        """
        A record with the id of another (a copy of a running one that a
        dead daemon left) is put aside, naming the field and the other
        record; the run of the one served, whose id, run id and pid the
        copy holds, is reclaimed for the one served only (not stopped
        twice, nor found lost).
        """
        run = self.run_(spec("web", "sleep", "infinity"))
        copy = json.loads(self.store.records["web"])
        copy["name"] = "xweb"
        self.store.records["xweb"] = json.dumps(copy)
        reclaimed: list[str] = []
        reclaim = self.runtime.reclaim

        def recordingReclaim(container: Container, pid: int | None, startTime: Any) -> Any:
            if pid is not None:
                reclaimed.append(container.name)
            return reclaim(container, pid, startTime)

        self.patch(self.runtime, "reclaim", recordingReclaim)
        second = MemoryBackend(self.clock, runtime=self.runtime, recordStore=self.store)
        opened = second.open()
        advanceClock(self.clock, 15)
        self.successResultOf(opened)
        self.assertEqual(reclaimed, ["web"])
        [quarantined] = second.quarantined
        self.assertEqual(quarantined["name"], "xweb")
        self.assertIn("field 'id' is also the id of 'web'", quarantined["reason"])
        self.assertNotIn(run.pid, self.runtime.runs)
        web = self.inspect("web", second)
        self.assertEqual((web.state, web.error), (State.EXITED, RECLAIMED_ERROR))

    def test_badStopSignalAtClose(self) -> None:
        """
        A container whose stop signal is not one (a record from before the
        checks) is sent SIGTERM at close, which goes on to stop and save
        every other container: no process is left, close succeeds.
        """
        self.run_(spec("aa", "sleep", "infinity"))
        self.run_(spec("bb", "sleep", "infinity"))
        self.backend._records["aa"].stopSignal = "SIGFOO"
        closed = self.backend.close()
        advanceClock(self.clock, 1)
        self.successResultOf(closed)
        self.assertEqual(self.runtime.runs, {})
        for name in ("aa", "bb"):
            saved = json.loads(self.store.records[name])
            self.assertEqual((saved["state"], saved["exitCode"]), ("exited", -signal.SIGTERM))

    def test_badStopSignalKill(self) -> None:
        """C{kill} of a container whose stop signal is not one still signals it."""
        self.run_(spec("aa", "sleep", "infinity"))
        self.backend._records["aa"].stopSignal = "SIGFOO"
        self.successResultOf(self.backend.kill("aa", signal.SIGTERM))
        advanceClock(self.clock, 1)
        self.assertEqual(self.inspect("aa").exitCode, -signal.SIGTERM)
        self.assertEqual(self.inspect("aa").state, State.EXITED)

    def test_quarantinedRunStopped(self) -> None:
        """
        A running container whose record is damaged while its daemon is
        dead (here: the command is missing) is put aside, and the run it
        left is still stopped: what can be read of the record (pid, start
        time, run id, id) goes to the runtime's reclaim.
        """
        pid = self.run_(spec("web", "sleep", "infinity")).pid
        self.run_(spec("good", "sleep", "infinity"))
        damaged = json.loads(self.store.records["web"])
        del damaged["command"]
        self.store.records["web"] = json.dumps(damaged)
        # The first backend died: it is never closed.
        second = MemoryBackend(self.clock, runtime=self.runtime, recordStore=self.store)
        opened = second.open()
        advanceClock(self.clock, 15)
        self.successResultOf(opened)
        self.assertEqual([q["name"] for q in second.quarantined], ["web"])
        self.assertNotIn(pid, self.runtime.runs)
        self.assertEqual([c.name for c in self.successResultOf(second.list())], ["good"])

    def policies(self) -> None:
        """Create one container per interesting case, all running."""
        for name, policy in (
            ("always", "always"),
            ("always-stopped", "always"),
            ("unless", "unless-stopped"),
            ("unless-stopped", "unless-stopped"),
            ("onfailure", "on-failure"),
            ("no", "no"),
        ):
            self.run_(spec(name, restartPolicy=RestartPolicy.parse(policy)))
        self.successResultOf(
            self.backend.create(spec("created", restartPolicy=RestartPolicy("always")))
        )
        for name in ("always-stopped", "unless-stopped"):
            d = self.backend.stop(name, None)
            self.clock.advance(0)
            self.successResultOf(d)

    def states(self, backend: MemoryBackend) -> dict[str, str]:
        return {c.name: c.state for c in self.successResultOf(backend.list())}

    def test_closeThenOpen(self) -> None:
        """
        C{close} stops every running container, not as a client stop: the
        next C{open} brings back C{always}, C{unless-stopped} (unless a
        client stopped it) and interrupted C{on-failure} ones.
        """
        self.policies()
        closing = self.backend.close()
        self.clock.advance(0)
        self.successResultOf(closing)
        self.assertEqual(set(self.states(self.backend).values()), {"exited", "created"})
        self.assertEqual(self.inspect("no").error, SHUTDOWN_ERROR)
        self.assertIsNone(self.inspect("always-stopped").error)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        second = self.makeBackend(SimulatedRuntime(self.clock))
        self.assertEqual(
            self.states(second),
            {
                "always": "running",
                "always-stopped": "running",
                "unless": "running",
                "unless-stopped": "exited",
                "onfailure": "running",
                "no": "exited",
                "created": "created",
            },
        )

    def test_closeStopsInParallel(self) -> None:
        """C{close} stops containers in parallel, each with its stop timeout."""
        self.run_(spec("a", "ignore-term", stopTimeout=5))
        self.run_(spec("b", "ignore-term", stopTimeout=5))
        closing = self.backend.close()
        self.clock.advance(4.9)
        self.assertNoResult(closing)
        self.clock.advance(0.1)
        self.clock.advance(0)
        self.successResultOf(closing)
        self.assertEqual(self.inspect("a").exitCode, -signal.SIGKILL)

    def test_daemonDiedProcessesSurvived(self) -> None:
        """
        After a daemon died, C{open} stops the runs it left (C{exited}, with
        an C{error} saying so) and applies restart policies.
        """
        self.policies()
        second = MemoryBackend(self.clock, runtime=self.runtime, recordStore=self.store)
        opening = second.open()  # same runtime: the runs survived
        self.clock.advance(0)
        self.successResultOf(opening)
        self.assertEqual(self.states(second)["always"], "running")
        self.assertEqual(self.states(second)["no"], "exited")
        self.assertEqual(self.inspect("no", second).error, RECLAIMED_ERROR)
        self.assertEqual(self.inspect("unless-stopped", second).state, "exited")
        self.assertEqual(
            self.runtime.runs.keys(), {c.pid for c in self.successResultOf(second.list()) if c.pid}
        )

    def test_daemonDiedProcessesGone(self) -> None:
        """Runs a dead daemon left that are gone are C{dead}: lost."""
        self.policies()
        second = self.makeBackend(SimulatedRuntime(self.clock))
        container = self.inspect("no", second)
        self.assertEqual((container.state, container.error), (State.DEAD, LOST_ERROR))
        self.assertEqual(self.states(second)["unless"], "running")


#: The health checks the state machine's containers have.
HEALTH_CHECKS = [
    None,
    HealthCheck(None),
    HealthCheck("true", interval=1),
    HealthCheck("false", interval=0.5, retries=2, onFailure=OnFailure.RESTART),
    HealthCheck("false", interval=0.5, retries=1, onFailure=OnFailure.STOP),
    HealthCheck("exit 2", interval=0.5, retries=1, startPeriod=1, onFailure=OnFailure.KILL),
    HealthCheck("sleep 3", interval=1, timeout=2),
]


class SupervisorStateMachine(RuleBasedStateMachine):
    """
    Random sequences of operations and clock advances on a memory backend:
    the engine's invariants hold after each step, and every operation's
    Deferred eventually fires with a result or an expected error.
    """

    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock()
        self.store = MemoryRecordStore()
        self.backend = MemoryBackend(self.clock, recordStore=self.store)
        self.backend.open()
        self.names: set[str] = set()
        self.pending: list[Deferred[Any]] = []
        self.unexpected: list[Any] = []

    def track(self, d: Deferred[Any]) -> None:
        def check(f: Any) -> None:
            if not f.check(NotFound, Conflict, BackendError):
                self.unexpected.append(f)

        d.addErrback(check)
        self.pending.append(d)

    names_ = st.sampled_from(["a", "b", "c"])

    @rule(
        name=names_,
        command=st.sampled_from(
            [("sleep", "infinity"), ("exit", "0"), ("exit", "3"), ("sleep", "2"),
             ("ignore-term",), ("unstartable",), ("echo", "hi")]
        ),
        policy=st.sampled_from(["no", "on-failure:2", "always", "unless-stopped"]),
        healthcheck=st.sampled_from(HEALTH_CHECKS),
    )  # fmt: skip
    def create(
        self, name: str, command: tuple[str, ...], policy: str, healthcheck: HealthCheck | None
    ) -> None:
        s = spec(
            name,
            *command,
            restartPolicy=RestartPolicy.parse(policy),
            stopTimeout=3,
            healthcheck=healthcheck,
        )
        self.track(self.backend.create(s))
        self.names.add(name)

    @rule(name=names_)
    def start(self, name: str) -> None:
        self.track(self.backend.start(name))

    @rule(name=names_, timeout=st.sampled_from([None, 0, 1]))
    def stop(self, name: str, timeout: float | None) -> None:
        self.track(self.backend.stop(name, timeout))

    @rule(name=names_)
    def restart(self, name: str) -> None:
        self.track(self.backend.restart(name, 1))

    @rule(name=names_, signum=st.sampled_from([signal.SIGTERM, signal.SIGKILL, signal.SIGUSR1]))
    def kill(self, name: str, signum: int) -> None:
        self.track(self.backend.kill(name, signum))

    @rule(name=names_, force=st.booleans())
    def remove(self, name: str, force: bool) -> None:
        self.track(self.backend.remove(name, force))

    @rule(name=names_, condition=st.sampled_from(WaitCondition.ALL))
    def wait(self, name: str, condition: str) -> None:
        d = self.backend.wait(name, condition)
        # BadRequest: a health condition without a health check;
        # BackendError: healthy, and it ended or turned unhealthy first.
        d.addErrback(lambda f: f.trap(NotFound, CancelledError, BadRequest, BackendError))
        self.clock.callLater(50, d.cancel)

    @rule(seconds=st.sampled_from([0, 0.05, 0.5, 3, 20]))
    def advance(self, seconds: float) -> None:
        advanceClock(self.clock, seconds)

    @invariant()
    def consistent(self) -> None:
        assert not self.unexpected, self.unexpected
        saved = {d["name"]: d for d in self.store.load()}
        records = self.backend._records
        assert saved.keys() == records.keys(), (saved.keys(), records.keys())
        for name, record in records.items():
            expected = record.toDict()
            if record.state == State.STOPPING and not flagsReadAtOpen(record):
                # A stop's intent is saved with the exit where no successor reads it.
                for key in ("state", "manuallyStopped"):
                    expected[key] = saved[name][key]
                assert saved[name]["state"] in State.ALIVE, name
            assert saved[name] == expected, name
            alive = record.state in State.ALIVE
            assert alive == (record.run is not None), record
            restarting = record.pendingRestart is not None and record.pendingRestart.active()
            assert (record.state == State.RESTARTING) == restarting or record.lock.locked, record
            if record.killTimer is not None and record.killTimer.active():
                assert record.state == State.STOPPING, record
            assert (record.health is None) == (not record.checksHealth), record
            if record.healthMonitor is not None:
                assert record.state == State.RUNNING and record.run is not None, record
                assert not record.healthMonitor.stopped, record

    def teardown(self) -> None:
        for name in sorted(self.names):
            self.track(self.backend.stop(name, None))
        advanceClock(self.clock, 120)
        for d in self.pending:
            assert d.called, d
        assert not self.unexpected, self.unexpected
        for record in self.backend._records.values():
            assert record.state not in State.ALIVE, record
            assert record.state != State.RESTARTING, record
            assert record.healthMonitor is None, record


class SupervisorStateMachineTests(SynchronousTestCase):
    """Runs L{SupervisorStateMachine}."""

    def test_stateMachine(self) -> None:
        """No sequence of operations breaks the engine's invariants."""
        run_state_machine_as_test(
            SupervisorStateMachine,
            settings=settings(max_examples=150, stateful_step_count=40, deadline=None),
        )


@implementer(IRuntimeSweep)
class _SlowRuntime(SimulatedRuntime):
    """A simulated runtime whose spawns fire only when the test says so."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock)
        self.pending: list[tuple[Deferred[IRun], IRun]] = []
        self.swept: list[dict[str, Container]] = []
        self.found: list[str] = []
        self.runIds: list[str | None] = []

    def spawn(
        self, container: Container, observer: IRunObserver, runId: str | None = None
    ) -> Deferred[IRun]:
        self.runIds.append(runId)
        run = self.successResultOf(super().spawn(container, observer))
        d: Deferred[IRun] = Deferred()
        self.pending.append((d, run))
        return d

    def successResultOf(self, d: Deferred[IRun]) -> IRun:
        result: list[IRun] = []
        d.addCallback(result.append)
        return result[0]

    def fire(self) -> None:
        pending, self.pending = self.pending, []
        for d, run in pending:
            d.callback(run)

    def sweep(self, runs: dict[str, Container]) -> Deferred[list[str]]:
        self.swept.append(dict(runs))
        return succeed([r for r in self.found if r in runs])


class ShutdownTests(SupervisorTestCase):
    """A daemon stopping or dying while containers are being started."""

    def setUp(self) -> None:
        super().setUp()
        self.runtime = _SlowRuntime(self.clock)
        self.backend = self.makeBackend()

    def test_closeWaitsForStartsInFlight(self) -> None:
        """
        A start in flight when close begins completes, and close then
        stops what it started: nothing is left running unmanaged.
        """
        self.successResultOf(self.backend.create(spec("web", "sleep", "infinity")))
        started = self.backend.start("web")
        closed = self.backend.close()
        self.assertNoResult(closed)
        self.runtime.fire()
        self.successResultOf(started)
        advanceClock(self.clock, 1)
        self.successResultOf(closed)
        self.assertEqual(self.runtime.runs, {})
        container = self.inspect("web")
        self.assertEqual((container.state, container.error), (State.EXITED, "daemon shut down"))

    def test_closingRefusesStarts(self) -> None:
        """While closing, create, start and restart fail with Unavailable."""
        self.successResultOf(self.backend.create(spec("web", "sleep", "infinity")))
        self.backend.start("web")
        self.backend.close()
        self.failureResultOf(self.backend.create(spec("db")), Unavailable)
        self.failureResultOf(self.backend.start("web"), Unavailable)
        self.failureResultOf(self.backend.restart("web", None), Unavailable)
        self.runtime.fire()

    def test_runIdSavedBeforeSpawn(self) -> None:
        """
        The run id is saved with the record before the runtime is asked to
        spawn, and given to the runtime: a daemon that dies mid-start
        leaves a marker.
        """
        self.successResultOf(self.backend.create(spec("web", "sleep", "infinity")))
        self.backend.start("web")
        [runId] = self.runtime.runIds
        self.assertIsNotNone(runId)
        [saved] = [r for r in self.store.load() if r["name"] == "web"]
        self.assertEqual((saved["state"], saved["runId"]), (State.CREATED, runId))
        self.runtime.fire()

    def test_openSweepsRunsOfAStartInterrupted(self) -> None:
        """
        On open, the runtime is asked once for every record's run id; a
        record left C{created} whose run was found says so in C{error}.
        """
        self.successResultOf(self.backend.create(spec("web", "sleep", "infinity")))
        self.backend.start("web")  # the daemon "dies" before it fires
        [runId] = self.runtime.runIds
        assert runId is not None
        runtime = _SlowRuntime(self.clock)
        runtime.found = [runId]
        backend = self.makeBackend(runtime)
        [swept] = runtime.swept
        self.assertEqual(list(swept), [runId])
        container = self.inspect("web", backend)
        self.assertEqual(container.state, State.CREATED)
        self.assertEqual(container.error, STARTING_ERROR)


class SaveFailureTests(SupervisorTestCase):
    """
    A state store that cannot be written (a full disk): what stops or
    removes a container is done at once and kept in memory until it can be
    written, saying so (C{saved} False); what starts one is refused.
    """

    def setUp(self) -> None:
        super().setUp()
        self.store = CheckingStore()
        self.backend = self.makeBackend()
        self.backend.addObserver(self.recorder)
        self.logged: list[dict[str, Any]] = []
        self.patch(RecordWriter, "log", Logger(observer=self.logged.append))

    def saved(self, name: str) -> dict[str, Any] | None:
        found = [r for r in self.store.load() if r["name"] == name]
        return found[0] if found else None

    def test_stopWhenNotSaved(self) -> None:
        """
        A client stop on a full disk stops the container and replies with
        it, C{saved} False; the record is written by the retry once the
        store works again, and the container is then C{saved}.
        """
        self.run_(spec("web", "sleep", "infinity"))
        self.store.broken = True
        d = self.backend.stop("web", 1)
        advanceClock(self.clock, 1)
        container = self.successResultOf(d)
        self.assertEqual((container.state, container.saved), (State.EXITED, False))
        self.assertEqual(container.summary()["saved"], False)
        self.assertFalse(self.inspect("web").saved)
        self.assertNotEqual(self.saved("web")["state"], State.EXITED)  # type: ignore[index]
        self.store.broken = False
        self.clock.advance(RETRY_INTERVAL)
        self.assertEqual(self.saved("web")["state"], State.EXITED)  # type: ignore[index]
        self.assertTrue(self.inspect("web").saved)
        self.assertNotIn("saved", self.inspect("web").summary())
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_killWhenNotSaved(self) -> None:
        """
        C{kill} of an C{always} container on a full disk kills it and
        disables its policy at once (it is not restarted), C{saved} False.
        """
        self.run_(spec("web", "sleep", "infinity", restartPolicy=RestartPolicy("always")))
        self.store.broken = True
        container = self.successResultOf(self.backend.kill("web", signal.SIGKILL))
        self.assertFalse(container.saved)
        advanceClock(self.clock, 5)
        self.assertEqual(self.inspect("web").state, State.EXITED)
        self.store.broken = False
        advanceClock(self.clock, RETRY_INTERVAL)
        record = self.saved("web")
        assert record is not None
        self.assertEqual((record["state"], record["manuallyStopped"]), (State.EXITED, True))

    def test_removeWhenNotSaved(self) -> None:
        """
        C{rm --force} on a full disk removes the container at once (it is
        gone from C{list}, C{destroy} is emitted) and fires with it,
        C{saved} False; its record is deleted once the store works again.
        """
        self.run_(spec("web", "sleep", "infinity"))
        self.store.broken = True
        d = self.backend.remove("web", True)
        advanceClock(self.clock, 1)
        removed = self.successResultOf(d)
        assert isinstance(removed, Container)
        self.assertFalse(removed.saved)
        self.assertEqual(self.successResultOf(self.backend.list()), [])
        self.assertEqual(self.recorder.actions("web")[-1], "destroy")
        self.assertIsNotNone(self.saved("web"))
        self.store.broken = False
        advanceClock(self.clock, RETRY_INTERVAL)
        self.assertIsNone(self.saved("web"))

    def test_removeSavedFiresWithNone(self) -> None:
        """A removal that is on disk fires with None, as before."""
        self.successResultOf(self.backend.create(spec("web")))
        self.assertIsNone(self.successResultOf(self.backend.remove("web", False)))

    def test_createAfterUnsavedRemove(self) -> None:
        """
        A new container of the name of one whose removal waits is refused
        while the disk is full; once it is created, the removal that waited
        never deletes it.
        """
        self.successResultOf(self.backend.create(spec("web")))
        self.store.broken = True
        self.successResultOf(self.backend.remove("web", False))
        self.failureResultOf(self.backend.create(spec("web")), BackendError)
        self.store.broken = False
        created = self.successResultOf(self.backend.create(spec("web", "sleep", "1")))
        self.assertTrue(created.saved)
        self.clock.advance(RETRY_INTERVAL)
        self.assertEqual(self.saved("web")["command"], ["sleep", "1"])  # type: ignore[index]

    def test_startFailsWhenNotSaved(self) -> None:
        """A client start that cannot save its run id fails, nothing spawned."""
        self.successResultOf(self.backend.create(spec("web", "sleep", "infinity")))
        self.store.broken = True
        self.failureResultOf(self.backend.start("web"), BackendError)
        self.assertEqual(self.runtime.runs, {})

    def test_loggedOncePerEpisode(self) -> None:
        """
        The daemon's log says once that records cannot be written and once
        that they are again, with the count, however many changes waited.
        """
        for name in ("a", "b", "c"):
            self.run_(spec(name, "sleep", "infinity"))
        self.store.broken = True
        for name in ("a", "b", "c"):
            self.successResultOf(self.backend.kill(name, signal.SIGKILL))
        advanceClock(self.clock, 5)
        self.assertEqual(len(self.logged), 1)
        self.assertIn("disk full", formatEvent(self.logged[0]))
        self.store.broken = False
        self.clock.advance(RETRY_INTERVAL)
        self.assertEqual(len(self.logged), 2)
        self.assertIn("changes of 3 containers had waited", formatEvent(self.logged[1]))

    def test_closeWritesWhatWaits(self) -> None:
        """Closing writes what waits when it can, and leaves no timer."""
        self.run_(spec("web", "sleep", "infinity"))
        self.store.broken = True
        self.successResultOf(self.backend.kill("web", signal.SIGKILL))
        advanceClock(self.clock, 1)
        self.store.broken = False
        self.successResultOf(self.backend.close())
        self.assertTrue(self.saved("web")["manuallyStopped"])  # type: ignore[index]
        self.assertEqual(self.clock.getDelayedCalls(), [])


class KillPolicyTests(SupervisorTestCase):
    """Which signals of C{kill} count as a client stop (Docker's rule)."""

    def test_otherSignalKeepsPolicy(self) -> None:
        """
        C{kill --signal=HUP} of an C{always} container that dies of it is
        restarted: only SIGKILL and the stop signal disable the policy.
        """
        self.run_(spec("web", "sleep", "infinity", restartPolicy=RestartPolicy("always")))
        self.successResultOf(self.backend.kill("web", signal.SIGHUP))
        advanceClock(self.clock, 1)
        self.assertEqual(self.inspect("web").state, State.RUNNING)
        self.assertEqual(self.inspect("web").restartCount, 1)

    def test_stopSignalAndKillDisablePolicy(self) -> None:
        """SIGKILL, or the container's stop signal, disables the policy."""
        for name, signum in (("a", signal.SIGKILL), ("b", signal.SIGTERM), ("c", signal.SIGINT)):
            self.run_(
                spec(
                    name,
                    "sleep",
                    "infinity",
                    restartPolicy=RestartPolicy("always"),
                    stopSignal="SIGINT" if name == "c" else None,
                )
            )
            self.successResultOf(self.backend.kill(name, signum))
        advanceClock(self.clock, 1)
        for name in "abc":
            self.assertEqual(self.inspect(name).state, State.EXITED, name)


class SnapshotTests(SupervisorTestCase):
    """
    C{list} and C{inspect} hand out one frozen snapshot per record until
    the record changes (what keeps C{list} of 1,000 containers fast).
    """

    def test_sameUntilChanged(self) -> None:
        """Unchanged, the same value; after any change, a new, right one."""
        self.run_(spec("web", "sleep", "100"))
        first = self.inspect("web")
        self.assertIs(self.inspect("web"), first)
        self.assertIs(self.successResultOf(self.backend.list())[0], first)
        self.successResultOf(self.backend.kill("web", signal.SIGKILL))
        self.clock.advance(1)
        after = self.inspect("web")
        self.assertIsNot(after, first)
        self.assertEqual((first.state, after.state), (State.RUNNING, State.EXITED))
        self.assertEqual(after.exitCode, -9)

    def test_everyFieldChangeSeen(self) -> None:
        """Setting any field of a record makes a new snapshot."""
        record = Record(name="web", id="1", backend="memory", image="memory",
                        command=("sleep", "1"), created=0.0)
        before = record.toContainer()
        record.restartCount = 3
        self.assertEqual(record.toContainer().restartCount, 3)
        record.labels = {"a": "b"}
        self.assertEqual(record.toContainer().labels, {"a": "b"})
        self.assertEqual(before.restartCount, 0)

    def test_summaryIsACopy(self) -> None:
        """The summary is made once, and each caller gets its own dict."""
        self.run_(spec("web", "sleep", "100", labels={"k": "v"}))
        container = self.inspect("web")
        mine = container.summary()
        mine["extra"] = True
        self.assertNotIn("extra", container.summary())
        self.assertEqual(container.summary(), container.summary())
        self.assertIn("env", container.detail())
        self.assertNotIn("env", container.summary())


class StopBoundTests(SupervisorTestCase):
    """
    No client can make the daemon's shutdown, or its next start, wait
    without bound: stop timeouts are bounded, and so is the shutdown.
    """

    def test_stopTimeoutBounded(self) -> None:
        """A stop timeout over L{MAX_STOP_TIMEOUT} is refused at create."""
        huge = spec("hang", "ignore-term", stopTimeout=1e308)
        self.failureResultOf(self.backend.create(huge), BadRequest)
        self.failureResultOf(
            self.backend.createAndStart(spec("hang", stopTimeout=MAX_STOP_TIMEOUT + 1)),
            BadRequest,
        )
        self.successResultOf(self.backend.create(spec("ok", stopTimeout=MAX_STOP_TIMEOUT)))

    def test_shutdownBounded(self) -> None:
        """
        The shutdown gives a container its stop timeout only up to the
        shutdown timeout, then SIGKILL (a client's longer stop already
        waiting too), and completes.
        """
        self.run_(spec("hang", "ignore-term", stopTimeout=MAX_STOP_TIMEOUT))
        self.run_(spec("slow", "ignore-term", stopTimeout=MAX_STOP_TIMEOUT))
        stopping = self.backend.stop("slow", MAX_STOP_TIMEOUT)
        closing = self.backend.close()
        self.clock.advance(SHUTDOWN_TIMEOUT - 0.1)
        self.assertNoResult(closing)
        self.clock.advance(0.1)
        self.clock.advance(0)
        self.successResultOf(closing)
        self.successResultOf(stopping)
        self.assertEqual(self.inspect("hang").exitCode, -signal.SIGKILL)
        self.assertEqual(self.inspect("slow").exitCode, -signal.SIGKILL)

    def test_shutdownGoesOnWithoutUnkillable(self) -> None:
        """
        A run that outlives SIGKILL (uninterruptible sleep) holds the
        shutdown only L{SHUTDOWN_KILL_WAIT} more seconds: it completes, the
        record left alive (with its pid) for the next daemon to reclaim.
        """
        self.backend.shutdownTimeout = 2.0
        hang = self.run_(spec("hang", "ignore-term"))
        assert hang.pid is not None
        self.runtime.runs[hang.pid].signal = lambda signum: None  # type: ignore[method-assign]
        closing = self.backend.close()
        self.clock.advance(2.0 + SHUTDOWN_KILL_WAIT - 0.1)
        self.assertNoResult(closing)
        self.clock.advance(0.1)
        self.successResultOf(closing)
        [saved] = self.store.load()
        # Saved as running: no successor reads a stop's intent for "no".
        self.assertEqual((saved["state"], saved["pid"]), (State.RUNNING, hang.pid))

    def test_reclaimedBySignal(self) -> None:
        """
        A run the runtime says ended by SIGKILL (its reclaim fires with the
        signal's number) gets the exit code -9, as pycm shows a signalled
        exit, and an error saying so; one the runtime only saw gone after
        its stop signal keeps no exit code (how it ended is not known).
        """
        from twisted.internet.defer import succeed

        for result, exitCode, error in [
            (9, -9, f"{RECLAIMED_ERROR} by SIGKILL after its stop timeout"),
            (True, None, RECLAIMED_ERROR),
        ]:
            store = MemoryRecordStore()
            runtime = SimulatedRuntime(self.clock)
            first = MemoryBackend(self.clock, runtime=runtime, recordStore=store)
            self.successResultOf(first.open())
            self.run_(spec("web", "sleep 1000"), first)
            # The runtime's word on how the run it stopped ended.
            self.patch(runtime, "reclaim", lambda *args, result=result: succeed(result))
            second = MemoryBackend(self.clock, runtime=runtime, recordStore=store)
            self.successResultOf(second.open())
            web = self.inspect("web", second)
            self.assertEqual((web.state, web.exitCode, web.error),
                             (State.EXITED, exitCode, error))

    def test_reclaimBounded(self) -> None:
        """
        A run a dead daemon left, whose record (saved before stop timeouts
        were bounded) says 1e308 seconds, is given the shutdown timeout at
        most, then SIGKILL: the next daemon's open completes.
        """
        self.run_(spec("hang", "ignore-term"))
        [record] = self.store.load()
        self.store.save("hang", dict(record, stopTimeout=1e308))
        second = MemoryBackend(self.clock, runtime=self.runtime, recordStore=self.store)
        opening = second.open()
        self.clock.advance(SHUTDOWN_TIMEOUT - 0.1)
        self.assertNoResult(opening)
        self.clock.advance(0.1)
        self.clock.advance(0)
        self.successResultOf(opening)
        self.assertEqual(self.inspect("hang", second).error, RECLAIMED_ERROR)
        self.assertEqual(self.runtime.runs, {})
