"""
Tests for L{pycm.backends.process.spawnclock}: a child's start time from
the boot clock read around its spawn, held to what C{/proc} says of real
children, and used by a run instead of reading C{/proc}.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from pycm.backends.process import procfs, spawnclock
from pycm.backends.process.childfds import HandedOnProcess
from pycm.backends.process.output import OutputPacer
from pycm.backends.process.run import RunProtocol
from pycm.backends.process.spawn import SpawnedProcess, Spawner
from pycm.backends.process.spawnclock import MARGIN, TICK_NS, tickBetween
from tests.test_process import FakeProcessTransport, RecordingObserver

reactor: Any = _reactor


class TickBetweenTests(SynchronousTestCase):
    """L{tickBetween}."""

    def test_oneTick(self) -> None:
        """Two readings well inside one tick: that tick."""
        start = 7 * TICK_NS + 2 * MARGIN
        self.assertEqual(tickBetween(start, start + 1_000_000), 7)

    def test_twoTicks(self) -> None:
        """Readings on either side of a tick's edge: unknown."""
        self.assertIsNone(tickBetween(8 * TICK_NS - TICK_NS // 2, 8 * TICK_NS + TICK_NS // 2))

    def test_nearAnEdge(self) -> None:
        """
        A reading within L{MARGIN} of an edge counts as the next (or the
        previous) tick too: unknown.
        """
        self.assertIsNone(tickBetween(9 * TICK_NS - MARGIN // 2, 9 * TICK_NS - MARGIN // 4))
        self.assertIsNone(tickBetween(9 * TICK_NS + MARGIN // 4, 9 * TICK_NS + MARGIN // 2))
        self.assertEqual(tickBetween(9 * TICK_NS + MARGIN, 10 * TICK_NS - MARGIN - 1), 9)

    def test_noClock(self) -> None:
        """A reading missing (no boot clock), or going back: unknown."""
        self.assertIsNone(tickBetween(None, 5))
        self.assertIsNone(tickBetween(5, None))
        self.assertIsNone(tickBetween(3 * TICK_NS + 2 * MARGIN, 3 * TICK_NS + MARGIN))

    def test_noBootClock(self) -> None:
        """A system without C{CLOCK_BOOTTIME}: no reading."""
        self.patch(spawnclock, "_BOOTTIME", None)
        self.assertIsNone(spawnclock.bootNanoseconds())


class Ended(ProcessProtocol):
    """C{ended} fires when the process ended."""

    def __init__(self) -> None:
        self.ended: Deferred[None] = Deferred()

    def processEnded(self, reason: Failure) -> None:
        self.ended.callback(None)


def killIfThere(pid: int) -> None:
    """SIGKILL C{pid}, unless it is gone."""
    try:
        os.kill(pid, 9)
    except ProcessLookupError:
        pass


class TimedSpawnTests(SynchronousTestCase):
    """L{spawnclock.timedSpawn}."""

    def test_readingsAround(self) -> None:
        """The clock is read just before and just after the spawn."""
        readings = iter([7 * TICK_NS + 2 * MARGIN, 7 * TICK_NS + 3 * MARGIN])
        self.patch(spawnclock, "bootNanoseconds", lambda: next(readings))
        self.assertEqual(spawnclock.timedSpawn(lambda: 4242), (4242, 7))

    def test_straddling(self) -> None:
        """A spawn across a tick's edge: the pid, and no start time."""
        readings = iter([8 * TICK_NS - 2 * MARGIN, 8 * TICK_NS + 2 * MARGIN])
        self.patch(spawnclock, "bootNanoseconds", lambda: next(readings))
        self.assertEqual(spawnclock.timedSpawn(lambda: 4242), (4242, None))


class RealChildrenTests(TestCase):
    """
    The tick told for real children, on the real reactor, against the start
    time C{/proc} gives them once they run.
    """

    def spawnMany(self, make: Any, count: int) -> Deferred[Any]:
        told: list[tuple[int, int | None]] = []
        ended = []
        # Killed at the end, or by the clean-up if an assertion failed first
        # (never after they were reaped: their pids may be reused then).
        self.addCleanup(lambda: [killIfThere(pid) for pid, _ in told])
        for _ in range(count):
            protocol = Ended()
            process = make(protocol)
            told.append((process.pid, process.spawnTicks))
            ended.append(protocol.ended)
        asked = [(ticks, procfs.startTime(pid)) for pid, ticks in told]
        known = [(ticks, start) for ticks, start in asked if ticks is not None]
        # A spawn near a tick's edge is not told; on an idle machine, one
        # in fifteen.  Each one told must be right.
        self.assertTrue(known)
        for ticks, start in known:
            self.assertEqual(ticks, start)
        for pid, _ in told:
            killIfThere(pid)
        del told[:]
        return gatherResults(ended)

    def test_spawnedProcess(self) -> None:
        """C{posix_spawn} of the command itself (L{SpawnedProcess})."""
        spawner = Spawner(reactor)
        self.addCleanup(spawner.close)

        def make(protocol: ProcessProtocol) -> SpawnedProcess:
            return SpawnedProcess(
                reactor, "/bin/sleep", ["sleep", "60"], {}, protocol, {0: spawner.nullFD(), 1: "r"},
                workdir="/", join=None, home=None, homeDirectory=spawner.homeDirectory(),
                ignoredSignals=[],
            )  # fmt: skip

        return self.spawnMany(make, 100)

    def test_handedOn(self) -> None:
        """C{posix_spawnp} as Twisted does it (L{HandedOnProcess}: the launcher, the helper)."""

        def make(protocol: ProcessProtocol) -> HandedOnProcess:
            return HandedOnProcess(
                reactor, "/bin/sleep", ["sleep", "60"], {}, None, protocol, childFDs={1: "r"}
            )

        return self.spawnMany(make, 50)


class RunStartTimeTests(SynchronousTestCase):
    """A run's start time, as L{RunProtocol} saves it."""

    def protocol(self) -> RunProtocol:
        """A run's protocol whose C{/proc} says pid 4242 started at tick 77."""
        proc = self.mktemp()
        os.makedirs(os.path.join(proc, "4242"))
        fields = ["S", "1", "4242", "4242"] + ["0"] * 15 + ["77"] + ["0"] * 20
        with open(os.path.join(proc, "4242", "stat"), "w") as f:
            f.write("4242 (sleep) " + " ".join(fields))
        clock = Clock()
        return RunProtocol(
            RecordingObserver(),
            clock=clock,
            pacer=OutputPacer(clock),
            sweepMarked=lambda runId, notBefore, name: Deferred(),
            killCgroup=lambda group: None,
            releaseCgroup=lambda group: True,
            proc=proc,
            bootId="boot-1",
        )

    def test_fromTheSpawnClock(self) -> None:
        """
        The tick the spawn told is the start time: C{/proc} is not read
        (it would wait for the child's C{execve}).
        """
        transport = FakeProcessTransport(4242)
        transport.spawnTicks = 1234  # type: ignore[attr-defined]
        protocol = self.protocol()
        protocol.makeConnection(transport)  # type: ignore[arg-type]
        assert protocol.run is not None
        self.assertEqual(protocol.run.startTime, ["boot-1", 1234])

    def test_fromProc(self) -> None:
        """Without a tick from the spawn, C{/proc} tells the start time."""
        protocol = self.protocol()
        protocol.makeConnection(FakeProcessTransport(4242))  # type: ignore[arg-type]
        assert protocol.run is not None
        self.assertEqual(protocol.run.startTime, ["boot-1", 77])
