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
from pycm.backends.process.output import OutputPacer
from pycm.backends.process.reaping import ReapedProcess
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
    def __init__(self) -> None:
        self.ended: Deferred[None] = Deferred()

    def processEnded(self, reason: Failure) -> None:
        self.ended.callback(None)


class RealChildrenTests(TestCase):
    """
    The tick told for real children, on the real reactor, against the start
    time C{/proc} gives them once they run.
    """

    def spawnMany(self, make: Any, count: int) -> Deferred[Any]:
        told = []
        ended = []
        for _ in range(count):
            protocol = Ended()
            process = make(protocol)
            told.append((process.pid, process.spawnTicks))
            ended.append(protocol.ended)
        asked = [(ticks, procfs.startTime(pid)) for pid, ticks in told]
        for pid, _ in told:
            os.kill(pid, 9)
        known = [(ticks, start) for ticks, start in asked if ticks is not None]
        # About one spawn in fifteen is near a tick's edge; nearly all are told.
        self.assertGreater(len(known), count // 2)
        for ticks, start in known:
            self.assertEqual(ticks, start)
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

    def test_twistedSpawn(self) -> None:
        """Twisted's own spawn (L{ReapedProcess}: the launcher and the helper)."""

        def make(protocol: ProcessProtocol) -> ReapedProcess:
            return ReapedProcess(
                reactor, "/bin/sleep", ["sleep", "60"], {}, None, protocol, childFDs={1: "r"}
            )

        return self.spawnMany(make, 50)


class RunStartTimeTests(SynchronousTestCase):
    """A run's start time, as L{RunProtocol} saves it."""

    def protocol(self) -> RunProtocol:
        clock = Clock()
        return RunProtocol(
            RecordingObserver(),
            clock=clock,
            pacer=OutputPacer(clock),
            sweepMarked=lambda runId, notBefore, name: Deferred(),
            killCgroup=lambda group: None,
            releaseCgroup=lambda group: True,
            proc=self.mktemp(),  # no /proc entry for the pid
            bootId="boot-1",
        )

    def test_fromTheSpawnClock(self) -> None:
        """
        The tick the spawn told is the start time, without reading C{/proc}
        (which waits for the child's C{execve}).
        """
        transport = FakeProcessTransport(4242)
        transport.spawnTicks = 1234  # type: ignore[attr-defined]
        protocol = self.protocol()
        protocol.makeConnection(transport)  # type: ignore[arg-type]
        assert protocol.run is not None
        self.assertEqual(protocol.run.startTime, ["boot-1", 1234])

    def test_fromProc(self) -> None:
        """Without a tick from the spawn, C{/proc} is asked: here, no such process."""
        protocol = self.protocol()
        protocol.makeConnection(FakeProcessTransport(4242))  # type: ignore[arg-type]
        assert protocol.run is not None
        self.assertIsNone(protocol.run.startTime)
