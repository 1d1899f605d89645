"""
C{stats} of many running containers, read and encoded a slice at a time
(L{pycm.backends.supervisor.usage}, L{pycm.daemon.handlers.observing}),
over the memory backend on a clock.
"""

from __future__ import annotations

import itertools
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from pycm.backends.supervisor.usage import USAGE_SLICE
from pycm.daemon.handlers.observing import STATS_PER_SLICE, encodeStats
from pycm.errors import NotFound
from pycm.model import State
from pycm.slicedwork import SlicedWork
from pycm.stats import ContainerStats, CpuSampler
from pycm.testing.server import FakeServer


class Turns:
    """Zero-delay calls run when told (L{turn}), as the reactor's turns."""

    def __init__(self) -> None:
        self.calls: list[Any] = []

    def callLater(self, delay: float, f: Any, *args: Any, **kwargs: Any) -> Any:
        self.calls.append((f, args, kwargs))

    def turn(self) -> None:
        """Run the calls made before this turn (not those they make)."""
        calls, self.calls = self.calls, []
        for f, args, kwargs in calls:
            f(*args, **kwargs)


class SlicedUsageTests(SynchronousTestCase):
    """The supervisor reads the usage of many running containers a slice a turn."""

    def setUp(self) -> None:
        self.server = FakeServer()
        self.conn = self.server.connect()
        backend: Any = self.server.backend
        # The usage slices' own turns, and a timer that says each slice
        # used the whole budget: one slice a turn.
        self.turns = Turns()
        ticks = itertools.count()
        backend._statsSlices = SlicedWork(self.turns, timer=lambda: float(next(ticks)))
        runtime = backend._runtime
        self.reads: list[int] = []
        usage = runtime.usage

        def recorded(runs: list[Any]) -> Any:
            self.reads.append(len(runs))
            return usage(runs)

        self.patch(runtime, "usage", recorded)

    def runMany(self, count: int) -> None:
        for i in range(count):
            self.conn.ok(f"run c{i:03d}")

    def test_aSliceATurn(self) -> None:
        """
        More than L{USAGE_SLICE} running: L{USAGE_SLICE} are read a turn,
        the other connections served between turns.
        """
        self.runMany(2 * USAGE_SLICE + 20)
        d = self.server.backend.stats([])
        self.assertEqual(self.reads, [USAGE_SLICE])
        self.assertNoResult(d)
        self.assertEqual(self.conn.ok("ping"), "pong")
        self.turns.turn()
        self.assertEqual(self.reads, [USAGE_SLICE, USAGE_SLICE])
        self.assertNoResult(d)
        self.turns.turn()
        self.assertEqual(self.reads, [USAGE_SLICE, USAGE_SLICE, 20])
        rows = self.successResultOf(d)
        self.assertEqual(len(rows), 2 * USAGE_SLICE + 20)
        self.assertTrue(all(row.memory is not None for row in rows))

    def test_fewAtOnce(self) -> None:
        """No more than L{USAGE_SLICE} running: read at once."""
        self.runMany(USAGE_SLICE)
        self.conn.ok("create idle")
        rows = self.successResultOf(self.server.backend.stats([]))
        self.assertEqual(self.reads, [USAGE_SLICE])
        self.assertEqual(len(rows), USAGE_SLICE)

    def test_stoppedMeanwhile(self) -> None:
        """A container that stopped while the slices before its own were read is idle."""
        self.runMany(USAGE_SLICE + 1)
        d = self.server.backend.stats([])
        self.assertEqual(self.reads, [USAGE_SLICE])
        last = f"c{USAGE_SLICE:03d}"
        self.conn.ok(f"stop {last}")
        self.server.clock.advance(60)
        self.turns.turn()
        [row] = [row for row in self.successResultOf(d) if row.name == last]
        self.assertEqual((row.state, row.memory, row.cpuPercent), (State.EXITED, None, None))
        self.assertEqual(self.reads, [USAGE_SLICE])

    def test_removedMeanwhile(self) -> None:
        """A container removed while the slices before its own were read is left out."""
        self.runMany(USAGE_SLICE + 1)
        d = self.server.backend.stats([])
        last = f"c{USAGE_SLICE:03d}"
        self.conn.ok(f"rm --force {last}")
        self.turns.turn()
        names = [row.name for row in self.successResultOf(d)]
        self.assertEqual(len(names), USAGE_SLICE)
        self.assertNotIn(last, names)

    def test_oneOfManyListsNoOther(self) -> None:
        """
        A C{stats} of one container among many running does not go through
        the others' records (the CPU sampler's forgetting of ended runs
        included): it costs the same with 20 or 2,000 running.
        """
        self.runMany(USAGE_SLICE + 1)
        byName = self.server.backend._book.byName
        listings = []
        values = byName.values

        def counted() -> Any:
            listings.append(len(byName))
            return values()

        self.patch(byName, "values", counted)
        for _ in range(3 * CpuSampler.FORGET_FROM):
            [row] = self.successResultOf(self.server.backend.stats(["c000"]))
            self.assertEqual(row.name, "c000")
            self.server.clock.advance(1)
        self.assertEqual(listings, [])

    def test_unknownName(self) -> None:
        """A name with no container fails at once, nothing read."""
        self.runMany(2)
        self.failureResultOf(self.server.backend.stats(["c000", "nosuch"]), NotFound)
        self.assertEqual(self.reads, [])

    def test_request(self) -> None:
        """The C{stats} request answers with every one, sorted by name."""
        self.runMany(USAGE_SLICE + 5)
        self.conn.send("stats\n")
        self.turns.turn()
        self.server.clock.advance(0)  # the encoding's turn
        [(kind, rows)] = self.conn.replies()
        self.assertEqual(kind, "OK")
        names = [row["name"] for row in rows]
        self.assertEqual(names, sorted(f"c{i:03d}" for i in range(USAGE_SLICE + 5)))


class EncodeStatsTests(SynchronousTestCase):
    """L{encodeStats}."""

    def test_slices(self) -> None:
        """Sorted by name, L{STATS_PER_SLICE} rows encoded a slice."""
        rows = [
            ContainerStats(name, State.RUNNING, 1.0, 2, None, 1, 0, 0)
            for name in (f"n{i:04d}" for i in reversed(range(2 * STATS_PER_SLICE + 1)))
        ]
        job = encodeStats(rows)
        yields = 0
        try:
            while True:
                next(job)
                yields += 1
        except StopIteration as stop:
            reply = stop.value
        self.assertEqual(yields, 2)
        self.assertEqual(len(reply.items), 2 * STATS_PER_SLICE + 1)
        self.assertIn(b'"n0000"', reply.items[0])
