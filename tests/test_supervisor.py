"""
Tests for L{pycm.backends.supervisor.backend}: the edges of the lifecycle engine,
on a fake clock with simulated runs.
"""

from __future__ import annotations

import signal
from typing import Any

from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from pycm.backends.memory import MemoryBackend, MemoryRecordStore, SimulatedRuntime
from pycm.backends.supervisor.records import Record
from pycm.backends.supervisor.recovery import RECLAIMED_ERROR
from pycm.backends.supervisor.restartpolicy import MAX_BACKOFF, nextBackoff
from pycm.backends.supervisor.runs import SHUTDOWN_KILL_WAIT, SHUTDOWN_TIMEOUT
from pycm.capabilities import Capabilities
from pycm.errors import BackendError, BadRequest, Conflict, NotFound
from pycm.interfaces import IRun, IRunObserver
from pycm.model import (
    Action,
    Container,
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
        """
        C{on-failure:0} sets no limit, as Docker and Swarm read it (and as
        the docker and swarm backends pass it on): restarted after every
        failure.
        """
        self.run_(spec("web", "exit", "2", restartPolicy=RestartPolicy.parse("on-failure:0")))
        advanceClock(self.clock, 10)
        self.assertGreater(self.inspect("web").restartCount, 3)
        self.assertEqual(RestartPolicy("on-failure", 0), RestartPolicy("on-failure"))

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
