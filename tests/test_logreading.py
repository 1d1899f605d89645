"""
Tests for reading the process backend's log files for C{logs}
(L{pycm.backends.process.logreading}, L{FileLogStore.readNewest}) and the
supervisor's reads of them a slice at a time (L{LogReads}): what is read
of a big file, and when.
"""

from __future__ import annotations

import io
import os
from collections.abc import Generator
from typing import Any

from twisted.internet.defer import CancelledError
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from pycm.backends.memory import MemoryBackend
from pycm.backends.process import logreading
from pycm.backends.process.logfiles import FileLogStore, encodeRecord
from pycm.backends.process.logreading import BLOCK, LogFile, newestLines, recordTime
from pycm.backends.supervisor.logreads import ISlicedLogStore, LogReads
from pycm.model import ContainerSpec, LogLine
from pycm.slicedwork import runAtOnce


class CountingFile(io.BytesIO):
    """A file in memory that counts the bytes read from it."""

    bytesRead = 0

    def read(self, size: int | None = -1, /) -> bytes:
        data = super().read(size)
        self.bytesRead += len(data)
        return data


def records(count: int, start: float = 1_700_000_000.0) -> list[LogLine]:
    return [LogLine(start + i, "stdout", f"line {i} " + "x" * 100) for i in range(count)]


def bigFile(lines: list[LogLine]) -> tuple[LogFile, CountingFile]:
    data = b"".join(encodeRecord(line) for line in lines)
    f = CountingFile(data)
    return LogFile(f, len(data)), f  # type: ignore[arg-type]


def slices(job: Generator[None, None, Any]) -> tuple[int, Any]:
    """Run C{job} to its end: how many times it yielded, and its result."""
    count = 0
    while True:
        try:
            next(job)
        except StopIteration as stop:
            return count, stop.value
        count += 1


class NewestLinesTests(SynchronousTestCase):
    """L{newestLines} on files in memory."""

    def setUp(self) -> None:
        self.lines = records(50_000)
        self.log, self.file = bigFile(self.lines)

    def test_tailReadsTheEnd(self) -> None:
        """C{--tail=N} reads a block or two from the end of a file of megabytes."""
        self.assertGreater(self.log.size, 5 * 2**20)
        count, lines = slices(newestLines([self.log], 10, None, 8 * 2**20))
        self.assertEqual(lines, self.lines[-10:])
        self.assertLessEqual(self.file.bytesRead, 2 * BLOCK)
        self.assertEqual(count, 0)

    def test_budgetBoundsTheScan(self) -> None:
        """
        A C{--since} that matches nothing reads the budget's worth and no
        more, a block a slice.
        """
        budget = 1 * 2**20
        count, lines = slices(newestLines([self.log], None, 2e9, budget))
        self.assertEqual(lines, [])
        self.assertLessEqual(self.file.bytesRead, budget + BLOCK)
        self.assertEqual(count, -(-self.file.bytesRead // BLOCK) - 1)

    def test_sinceDecodesOnlyWhatMatches(self) -> None:
        """
        With C{--since}, a record's time is read from its start: only the
        lines at or after it are decoded.
        """
        decoded: list[bytes] = []
        decode = logreading.decodeRecord
        self.patch(logreading, "decodeRecord", lambda r: decoded.append(r) or decode(r))
        since = self.lines[-30].time
        _, lines = slices(newestLines([self.log], None, since, 8 * 2**20))
        self.assertEqual(lines, self.lines[-30:])
        self.assertEqual(len(decoded), 30)

    def test_sinceAndTail(self) -> None:
        """C{--since} and C{--tail}: the newest C{tail} of those since."""
        since = self.lines[-30].time
        _, lines = slices(newestLines([self.log], 5, since, 8 * 2**20))
        self.assertEqual(lines, self.lines[-5:])

    def test_filesInOrder(self) -> None:
        """The newest file first, then the older ones; damaged records skipped."""
        old, _ = bigFile(self.lines[:3])
        data = b"damaged\n" + b"".join(encodeRecord(line) for line in self.lines[3:6])
        new = LogFile(io.BytesIO(data), len(data))  # type: ignore[arg-type]
        self.assertEqual(runAtOnce(newestLines([new, old], None, None, 2**20)), self.lines[:6])
        self.assertEqual(runAtOnce(newestLines([new, old], 4, None, 2**20)), self.lines[2:6])

    def test_recordTime(self) -> None:
        """L{recordTime} reads the time a record starts with, None if it does not."""
        self.assertEqual(recordTime(encodeRecord(self.lines[0])[:-1]), self.lines[0].time)
        self.assertIsNone(recordTime(b'{"stream":"x","time":1}'))
        self.assertIsNone(recordTime(b'{"time":"x",'))


class ReadNewestTests(SynchronousTestCase):
    """L{FileLogStore.readNewest}: the files of one moment."""

    def setUp(self) -> None:
        self.store = FileLogStore(self.mktemp(), maxSize=20_000, maxFiles=3)
        self.addCleanup(self.store.close)
        self.lines = records(200)

    def test_provides(self) -> None:
        """The store says it can be read a slice at a time."""
        self.assertTrue(ISlicedLogStore.providedBy(self.store))

    def test_linesOfTheMoment(self) -> None:
        """
        What is written (and rotated) after the call is not read: no line
        is missing or read twice.
        """
        for line in self.lines[:100]:
            self.store.append("web", line)
        job = self.store.readNewest("web", None)
        for line in self.lines[100:]:
            self.store.append("web", line)
        kept = runAtOnce(job)
        self.assertEqual(kept, self.lines[100 - len(kept) : 100])
        self.assertGreater(len(kept), 100 // 3)

    def test_closedWithTheJob(self) -> None:
        """A job closed (its request cancelled) closes its files."""
        for line in self.lines:
            self.store.append("web", line)
        before = len(os.listdir("/proc/self/fd"))
        job = self.store.readNewest("web", None)
        self.assertGreater(len(os.listdir("/proc/self/fd")), before)
        job.close()
        self.assertEqual(len(os.listdir("/proc/self/fd")), before)


class LogReadsTests(SynchronousTestCase):
    """L{LogReads} on a L{FileLogStore}."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.store = FileLogStore(self.mktemp())
        self.addCleanup(self.store.close)
        self.reads = LogReads(self.clock, self.store)
        self.lines = records(5_000)
        self.store.appendLines("web", 1.0, "stdout", [line.line for line in self.lines])

    def test_bigLogInSlices(self) -> None:
        """A big C{--tail=all} is not read at once, but over later turns."""
        d = self.reads.logs("web", None, None)
        self.assertNoResult(d)
        self.clock.advance(0)
        self.assertEqual(
            [line.line for line in self.successResultOf(d)], [line.line for line in self.lines]
        )

    def test_smallLogAtOnce(self) -> None:
        """A tail of one block is read at once."""
        d = self.reads.logs("web", 2, None)
        self.assertEqual(len(self.successResultOf(d)), 2)

    def test_cancel(self) -> None:
        """Cancelling the read stops it."""
        d = self.reads.logs("web", None, None)
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.clock.advance(0)
        self.assertEqual(self.clock.getDelayedCalls(), [])


class FollowBacklogTests(SynchronousTestCase):
    """
    C{logs --follow} on a supervisor (the memory backend's simulated runs)
    whose log store is a L{FileLogStore}: the backlog is read a slice at
    a time, and no line is lost or sent twice meanwhile.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.store = FileLogStore(self.mktemp())
        self.backend = MemoryBackend(self.clock, logStore=self.store)
        self.successResultOf(self.backend.open())
        self.addCleanup(self.store.close)
        web = self.successResultOf(
            self.backend.createAndStart(ContainerSpec("web", command=("sleep", "1000")))
        )
        self.run = self.backend.runtime.runs[web.pid]  # type: ignore[index]
        self.store.appendLines("web", 1.0, "stdout", [f"old {i}" for i in range(5_000)])

    def test_linesDuringTheBacklog(self) -> None:
        """
        A line written while the backlog is read ends the backlog; the
        observer gets only the lines written after it is read.
        """
        seen: list[str] = []
        d = self.backend.follow("web", None, lambda line: seen.append(line.line))
        self.assertNoResult(d)
        self.run.write("stdout", "during")
        self.clock.advance(0)
        follow = self.successResultOf(d)
        backlog = [line.line for line in follow.backlog]
        self.assertEqual(backlog[-2:], ["old 4999", "during"])
        self.assertEqual(backlog.count("during"), 1)
        self.assertEqual(seen, [])
        self.run.write("stdout", "after")
        self.assertEqual(seen, ["after"])
        follow.cancel()

    def test_cancelledFollow(self) -> None:
        """A follow cancelled while its backlog is read follows nothing."""
        seen: list[str] = []
        d = self.backend.follow("web", None, lambda line: seen.append(line.line))
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.run.write("stdout", "after")
        self.clock.advance(0)
        self.assertEqual(seen, [])
