"""
Tests for L{pycm.backends.process.logfiles}: rotating per-container log files.
"""

from __future__ import annotations

import errno
import os

from twisted.logger import Logger
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from pycm.backends.process.logfiles import (
    PYCM_STREAM,
    FileLogStore,
    encodeRecord,
)
from pycm.backends.process.logreading import decodeRecord, openSnapshot, reversedBlocks
from pycm.interfaces import ILogStore
from pycm.model import LogLine


def lines(count: int, stream: str = "stdout", start: int = 0) -> list[LogLine]:
    """C{count} numbered log lines."""
    return [
        LogLine(time=1000.0 + i, stream=stream, line=f"line {i}")
        for i in range(start, start + count)
    ]


class RecordTests(SynchronousTestCase):
    """The on-disk record format."""

    def test_roundTrip(self) -> None:
        """
        Text with newlines, quotes, non-ASCII and lone surrogates (invalid
        UTF-8 kept by surrogateescape) comes back exactly, from one ASCII
        record line.
        """
        for text in [
            "",
            "plain",
            'quote " and \\ backslash',
            "new\nline\r\x00nul",
            "héllo ✓ 😀",
            b"bad \xff\xfe utf-8".decode("utf-8", "surrogateescape"),
        ]:
            line = LogLine(time=1764421200.123456, stream="stderr", line=text)
            record = encodeRecord(line)
            self.assertTrue(record.endswith(b"\n"))
            self.assertEqual(record.count(b"\n"), 1)
            record.decode("ascii")
            self.assertEqual(decodeRecord(record[:-1]), line)

    def test_damaged(self) -> None:
        """A torn or foreign record decodes to None instead of raising."""
        record = encodeRecord(LogLine(time=1.0, stream="stdout", line="x"))
        for bad in [record[:10], b"not json", b'{"time":1}', b"[1,2]", b"\xff"]:
            self.assertIsNone(decodeRecord(bad))

    def test_reversedBlocks(self) -> None:
        """
        Lines come back last first across block boundaries, with blank lines
        skipped and an unterminated last line included; a missing file is
        not opened.
        """
        path = self.mktemp()
        content = b"".join(b"%d\n" % i for i in range(1000)) + b"\n\npartial"
        with open(path, "wb") as f:
            f.write(content)
        for block in (1, 2, 7, 64, 100_000):
            [log] = openSnapshot([path + ".missing", path])
            with log.file:
                got = [line for lines in reversedBlocks(log, blockSize=block) for line in lines]
            self.assertEqual(got[0], b"partial")
            self.assertEqual(got[1:], [b"%d" % i for i in reversed(range(1000))])


class FileLogStoreTests(SynchronousTestCase):
    """L{FileLogStore} keeps, rotates, tails and removes logs."""

    def setUp(self) -> None:
        self.dir = self.mktemp()

    def store(self, **kwargs: int) -> FileLogStore:
        store = FileLogStore(self.dir, **kwargs)
        self.addCleanup(store.close)
        return store

    def test_interface(self) -> None:
        """It provides ILogStore."""
        self.assertTrue(verifyObject(ILogStore, self.store()))

    def test_appendTail(self) -> None:
        """Appended lines come back from tail, oldest first, per container."""
        store = self.store()
        written = lines(5)
        for line in written:
            store.append("web", line)
        store.append("db", LogLine(time=1.0, stream="stderr", line="other"))
        self.assertEqual(store.tail("web", None), written)
        self.assertEqual(store.tail("web", 2), written[-2:])
        self.assertEqual(store.tail("web", 100), written)
        self.assertEqual(store.tail("web", 0), [])
        self.assertEqual(store.tail("db", 10), [LogLine(1.0, "stderr", "other")])
        self.assertEqual(store.tail("none", 10), [])

    def test_survivesReopen(self) -> None:
        """A new store on the same directory reads what the old one wrote."""
        store = self.store()
        for line in lines(3):
            store.append("web", line)
        store.close()
        self.assertEqual(self.store().tail("web", None), lines(3))

    def test_rotation(self) -> None:
        """
        Files rotate before they would exceed maxSize; only maxFiles are
        kept, and tail reads across them in order, losing only the oldest.
        """
        recordSize = len(encodeRecord(lines(1, start=99)[0]))
        store = self.store(maxSize=recordSize * 10, maxFiles=3)
        written = lines(95)
        for line in written:
            store.append("web", line)
        files = sorted(os.listdir(self.dir))
        self.assertEqual(files, ["web.log", "web.log.1", "web.log.2"])
        for name in files:
            self.assertLessEqual(os.path.getsize(os.path.join(self.dir, name)), recordSize * 10)
        kept = store.tail("web", None)
        self.assertEqual(kept, written[-len(kept) :])
        # The two full older files and the current one (records vary in size).
        self.assertGreater(len(kept), 20)
        self.assertLessEqual(len(kept), 30)
        self.assertEqual(store.tail("web", 12), written[-12:])

    def test_appendLinesSameAsAppend(self) -> None:
        """
        A batch of lines writes the very bytes one append per line would
        (one record per line, same time and stream), and reads back as them.
        """
        texts = ["", "plain", 'q " \\ b', "new\nline", "héllo ✓ 😀", "\ufffd"]
        one, batch = self.store(), FileLogStore(self.dir + "-batch")
        self.addCleanup(batch.close)
        for text in texts:
            one.append("web", LogLine(1764421200.25, "stderr", text))
        batch.appendLines("web", 1764421200.25, "stderr", texts)
        batch.appendLines("web", 1.0, "stdout", [])
        with open(os.path.join(self.dir, "web.log"), "rb") as f:
            expected = f.read()
        with open(os.path.join(self.dir + "-batch", "web.log"), "rb") as f:
            self.assertEqual(f.read(), expected)
        self.assertEqual(
            batch.tail("web", None), [LogLine(1764421200.25, "stderr", t) for t in texts]
        )

    def test_appendLinesRotates(self) -> None:
        """
        A batch that would not fit in the current file is written record by
        record, rotating where one would not fit: no file grows over
        maxSize, and every line is kept in order.
        """
        recordSize = len(encodeRecord(LogLine(1000.0, "stdout", "line 0")))
        store = self.store(maxSize=recordSize * 10, maxFiles=5)
        texts = [f"line {i}" for i in range(7)]
        for _ in range(4):
            store.appendLines("web", 1000.0, "stdout", texts)
        for name in os.listdir(self.dir):
            self.assertLessEqual(os.path.getsize(os.path.join(self.dir, name)), recordSize * 10)
        self.assertEqual([x.line for x in store.tail("web", None)], texts * 4)

    def test_oneFile(self) -> None:
        """With maxFiles=1 a full file is simply started afresh."""
        recordSize = len(encodeRecord(lines(1)[0]))
        store = self.store(maxSize=recordSize * 4, maxFiles=1)
        for line in lines(10):
            store.append("web", line)
        self.assertEqual(os.listdir(self.dir), ["web.log"])
        self.assertEqual(store.tail("web", None), lines(10)[8:])

    def test_recordBiggerThanFile(self) -> None:
        """A record bigger than maxSize is still kept, in a file of its own."""
        store = self.store(maxSize=100, maxFiles=2)
        big = LogLine(time=1.0, stream="stdout", line="x" * 1000)
        store.append("web", lines(1)[0])
        store.append("web", big)
        self.assertEqual(store.tail("web", None), [lines(1)[0], big])

    def test_tornRecordSkipped(self) -> None:
        """
        A record torn by a crash mid-write is skipped by tail, and the next
        write starts on a fresh line so it is not glued to the torn one.
        """
        store = self.store()
        store.append("web", lines(1)[0])
        store.close()
        with open(os.path.join(self.dir, "web.log"), "ab") as f:
            f.write(encodeRecord(lines(1, start=1)[0])[:15])
        store = self.store()
        store.append("web", lines(1, start=2)[0])
        self.assertEqual(store.tail("web", None), [lines(1)[0], lines(1, start=2)[0]])

    def test_remove(self) -> None:
        """remove deletes every file of that container and no other's."""
        store = self.store(maxSize=200, maxFiles=3)
        for line in lines(20):
            store.append("web", line)
            store.append("web.log", line)
        store.remove("web")
        self.assertEqual(store.tail("web", None), [])
        self.assertTrue(all(n.startswith("web.log.log") for n in os.listdir(self.dir)))
        self.assertNotEqual(store.tail("web.log", None), [])
        store.remove("never-existed")

    def test_removeLeftoverFiles(self) -> None:
        """remove also deletes files kept under a larger maxFiles earlier."""
        big = self.store(maxSize=100, maxFiles=5)
        for line in lines(20):
            big.append("web", line)
        big.close()
        self.store(maxSize=100, maxFiles=2).remove("web")
        self.assertEqual(os.listdir(self.dir), [])

    def test_manyContainersFewDescriptors(self) -> None:
        """
        Writing to more containers than maxOpen keeps at most maxOpen files
        open, and every line still lands in the right file.
        """
        store = self.store(maxOpen=4)
        before = len(os.listdir("/proc/self/fd"))
        for round_ in range(3):
            for i in range(20):
                store.append(f"c{i}", LogLine(float(round_), "stdout", f"{i}-{round_}"))
        self.assertLessEqual(len(os.listdir("/proc/self/fd")), before + 4)
        self.assertEqual([line.line for line in store.tail("c7", None)], ["7-0", "7-1", "7-2"])

    def test_tailIsLazy(self) -> None:
        """
        tail of a few lines reads only the end of a big file: it does not
        get slower or hungrier with the file size (it reads ~one block).
        """
        store = self.store(maxSize=50 * 1024 * 1024)
        path = os.path.join(self.dir, "web.log")
        with open(path, "wb") as f:
            chunk = b"".join(encodeRecord(line) for line in lines(10_000))
            for _ in range(30):
                f.write(chunk)
        reads = []
        realOpen = open

        class Counting:
            def __init__(self, f):
                self.f = f

            def __enter__(self):
                return self

            def __exit__(self, *a):
                self.f.close()

            def seek(self, *a):
                return self.f.seek(*a)

            def read(self, n):
                reads.append(n)
                return self.f.read(n)

        import pycm.backends.process.logfiles as module

        module.open = lambda p, m: Counting(realOpen(p, m))  # type: ignore[attr-defined]
        self.addCleanup(delattr, module, "open")
        got = store.tail("web", 10)
        self.assertEqual([line.line for line in got], [f"line {i}" for i in range(9990, 10000)])
        self.assertLessEqual(sum(reads), 64 * 1024)

    def test_tailAllIsBounded(self) -> None:
        """
        tail of all lines reads at most C{tailBudget} bytes of records from
        the end, across rotated files, keeping the newest lines in order.
        """
        store = self.store(maxSize=64 * 1024, maxFiles=5, tailBudget=16 * 1024)
        written = lines(5_000)
        for line in written:
            store.append("web", line)
        got = store.tail("web", None)
        self.assertTrue(0 < len(got) < len(written))
        self.assertEqual(got, written[-len(got) :])
        size = sum(len(encodeRecord(line)) for line in got)
        self.assertLessEqual(size, 16 * 1024)
        self.assertGreater(size, 16 * 1024 - 2 * len(encodeRecord(written[-1])))

    def test_badArguments(self) -> None:
        """Sizes and counts must be positive."""
        self.assertRaises(ValueError, FileLogStore, self.dir, maxSize=0)
        self.assertRaises(ValueError, FileLogStore, self.dir, maxFiles=0)


class FakeDisk:
    """
    A write function for L{FileLogStore} on a disk with C{room} bytes left
    (None: no limit): it writes what fits for real and then fails as a full
    filesystem does, with a short write, then C{OSError(ENOSPC)}.  A real
    full filesystem is used by the end-to-end test (tests.test_diskfull_e2e);
    this one makes the unit tests exact and fast.
    """

    def __init__(self, room: int | None = None, error: int = errno.ENOSPC) -> None:
        self.room = room
        self.error = error
        self.failures = 0

    def write(self, fd: int, data: bytes) -> int:
        if self.room is None:
            return os.write(fd, data)
        if self.room == 0:
            self.failures += 1
            raise OSError(self.error, os.strerror(self.error))
        written = os.write(fd, data[: self.room])
        self.room -= written
        return written


class DiskFullTests(SynchronousTestCase):
    """
    L{FileLogStore} on a full disk: one descriptor per container whatever
    happens, lines dropped and counted, one log line per episode, a marker
    in the log, and writing resumes by itself.
    """

    def setUp(self) -> None:
        self.dir = self.mktemp()
        self.disk = FakeDisk()
        self.logged: list[dict] = []
        self.store = FileLogStore(self.dir, write=self.disk.write)
        self.store.log = Logger(observer=self.logged.append)
        self.addCleanup(self.store.close)

    def messages(self) -> list[str]:
        from twisted.logger import formatEvent

        return [formatEvent(event) for event in self.logged]

    def fds(self) -> int:
        return len(os.listdir("/proc/self/fd"))

    def test_oneDescriptorWhileFull(self) -> None:
        """
        Thousands of lines on a full disk, to a file whose last record is
        torn (the state that made every write reopen the file and leak its
        descriptor), keep one descriptor open for the container, and never
        raise.
        """
        path = os.path.join(self.dir, "web.log")
        with open(path, "wb") as f:
            f.write(encodeRecord(lines(1)[0])[:10])
        before = self.fds()
        self.disk.room = 0
        for line in lines(5_000, start=1):
            self.store.append("web", line)
        self.assertLessEqual(self.fds(), before + 1)
        self.assertEqual(self.store.dropped("web"), 5_000)

    def test_loggedOncePerEpisode(self) -> None:
        """
        The daemon's log says "disk full" once when lines start being
        dropped and once, with the count, when they are written again;
        never once per line.
        """
        self.store.append("web", lines(1)[0])
        self.disk.room = 0
        for line in lines(1_000, start=1):
            self.store.append("web", line)
        self.assertEqual(len(self.logged), 1)
        self.assertIn("disk full", self.messages()[0])
        self.assertIn("web", self.messages()[0])
        self.disk.room = None
        self.store.append("web", lines(1, start=1001)[0])
        self.assertEqual(len(self.logged), 2)
        self.assertIn("1000 lines were dropped (disk full)", self.messages()[1])
        self.assertEqual(self.store.dropped("web"), 0)

    def test_markerWhenSpaceReturns(self) -> None:
        """
        When space returns, the next line is written after a line of the
        daemon's own saying how many were dropped, where they were dropped.
        """
        self.store.append("web", lines(1)[0])
        self.disk.room = 0
        for line in lines(3, start=1):
            self.store.append("web", line)
        self.disk.room = None
        self.store.append("web", lines(1, start=4)[0])
        got = self.store.tail("web", None)
        self.assertEqual(
            got,
            [
                lines(1)[0],
                LogLine(1001.0, PYCM_STREAM, "[pycm: 3 lines dropped: disk full]"),
                lines(1, start=4)[0],
            ],
        )
        self.store.close()
        reopened = FileLogStore(self.dir)
        self.addCleanup(reopened.close)
        self.assertEqual(reopened.tail("web", None), got)

    def test_tailWhileFull(self) -> None:
        """
        While lines are being dropped, C{logs} ends with the marker and the
        count so far (C{--tail=N} counts it as one of the N lines).
        """
        for line in lines(5):
            self.store.append("web", line)
        self.disk.room = 0
        for line in lines(7, start=5):
            self.store.append("web", line)
        marker = LogLine(1005.0, PYCM_STREAM, "[pycm: 7 lines dropped: disk full]")
        self.assertEqual(self.store.tail("web", None), [*lines(5), marker])
        self.assertEqual(self.store.tail("web", 3), [*lines(5)[-2:], marker])
        self.assertEqual(self.store.tail("web", 1), [marker])
        self.assertEqual(self.store.tail("web", 0), [])
        self.assertEqual(self.store.tail("other", None), [])

    def test_shortWrite(self) -> None:
        """
        A record cut short by the last bytes of the disk is left torn and
        skipped; the marker and the next lines start on a fresh line.
        """
        self.store.append("web", lines(1)[0])
        self.disk.room = 20
        self.store.append("web", lines(1, start=1)[0])
        self.store.append("web", lines(1, start=2)[0])
        self.assertEqual(self.store.dropped("web"), 2)
        self.disk.room = None
        self.store.append("web", lines(1, start=3)[0])
        marker = LogLine(1001.0, PYCM_STREAM, "[pycm: 2 lines dropped: disk full]")
        self.assertEqual(self.store.tail("web", None), [lines(1)[0], marker, lines(1, start=3)[0]])

    def test_markerCutShort(self) -> None:
        """
        Room for only part of the marker: the episode goes on (no count is
        lost or told twice) until the whole marker fits.
        """
        self.store.append("web", lines(1)[0])
        self.disk.room = 0
        self.store.append("web", lines(1, start=1)[0])
        self.disk.room = 10
        self.store.append("web", lines(1, start=2)[0])
        self.assertEqual(self.store.dropped("web"), 2)
        self.disk.room = None
        self.store.append("web", lines(1, start=3)[0])
        self.assertEqual(
            [line.line for line in self.store.tail("web", None)],
            ["line 0", "[pycm: 2 lines dropped: disk full]", "line 3"],
        )

    def test_otherErrors(self) -> None:
        """Another write error is dropped and counted the same, and named."""
        self.disk.error = errno.EIO
        self.disk.room = 0
        self.store.append("web", lines(1)[0])
        self.assertEqual(
            self.store.tail("web", None)[-1].line,
            f"[pycm: 1 lines dropped: {os.strerror(errno.EIO)}]",
        )

    def test_removeEndsEpisode(self) -> None:
        """Removing a container forgets its count, saying how many were lost."""
        self.disk.room = 0
        self.store.append("web", lines(1)[0])
        self.store.remove("web")
        self.assertEqual(self.store.dropped("web"), 0)
        self.assertEqual(self.store.tail("web", None), [])
        self.assertIn("1 lines of its log had been dropped", self.messages()[-1])

    def test_closeMarksTheGap(self) -> None:
        """Closing the store writes the marker where there is room."""
        self.store.append("web", lines(1)[0])
        self.disk.room = 0
        self.store.append("web", lines(1, start=1)[0])
        self.disk.room = None
        self.store.close()
        self.assertEqual(
            [line.line for line in FileLogStore(self.dir).tail("web", None)],
            ["line 0", "[pycm: 1 lines dropped: disk full]"],
        )

    def test_batchCutShort(self) -> None:
        """
        A batch the disk takes only part of: the records written whole are
        kept, the one cut is skipped, the rest are counted as dropped; the
        marker and the next lines start on a fresh line.
        """
        self.store.append("web", lines(1)[0])
        recordSize = len(encodeRecord(LogLine(2000.0, "stdout", "b 0")))
        self.disk.room = recordSize * 2 + 5
        self.store.appendLines("web", 2000.0, "stdout", [f"b {i}" for i in range(5)])
        self.assertEqual(self.store.dropped("web"), 3)
        self.assertEqual(len(self.logged), 1)
        self.store.appendLines("web", 2001.0, "stdout", ["c 0", "c 1"])
        self.assertEqual(self.store.dropped("web"), 5)
        self.disk.room = None
        self.store.appendLines("web", 2002.0, "stdout", ["d 0", "d 1"])
        self.assertEqual(
            [line.line for line in self.store.tail("web", None)],
            ["line 0", "b 0", "b 1", "[pycm: 5 lines dropped: disk full]", "d 0", "d 1"],
        )
        self.assertEqual(self.store.dropped("web"), 0)
        self.assertEqual(len(self.logged), 2)

    def test_batchOnFullDisk(self) -> None:
        """
        Batches on a full disk keep one descriptor, raise nothing, count
        every line, and try one write per batch (not one per line).
        """
        before = self.fds()
        self.disk.room = 0
        for i in range(100):
            self.store.appendLines("web", 3000.0 + i, "stdout", [f"{i}-{j}" for j in range(50)])
        self.assertEqual(self.store.dropped("web"), 5_000)
        self.assertLessEqual(self.fds(), before + 1)
        self.assertEqual(self.disk.failures, 100)
