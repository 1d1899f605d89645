"""
L{MarkJournal}'s file (C{STATE/ended-runs}): what a short write leaves, what
is read back, the checks every state file gets; and the C{mark-sweep-delay}
option.
"""

from __future__ import annotations

import os

from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from pycm.backends.process import markjournal, reclaim
from pycm.backends.process import runtime as runtimeModule
from pycm.backends.process.backend import ProcessBackend, makeBackend
from pycm.backends.process.cgroups import NO_CGROUPS
from pycm.backends.process.markjournal import JOURNAL_NAME, MarkJournal
from pycm.backends.process.reclaim import MARK_LATER_DELAY
from pycm.backends.process.runtime import ProcessRuntime
from pycm.errors import BadRequest
from pycm.statedir import NotRegularFile, UnsafeStateDir

RUN_1 = "1" * 32
RUN_2 = "2" * 32
RUN_3 = "3" * 32


class JournalFileTests(SynchronousTestCase):
    """The journal's records, as written and as read back."""

    def setUp(self) -> None:
        self.dir = self.mktemp()
        os.mkdir(self.dir)
        self.path = os.path.join(self.dir, JOURNAL_NAME)

    def open(self) -> MarkJournal:
        journal = MarkJournal(self.path)
        self.addCleanup(journal.close)
        return journal

    def test_shortWriteLeavesNextReadable(self) -> None:
        """
        A write cut short on a full disk (part of a record, no newline after
        it) says no, and the next id written is still read back whole.  (A
        fake write: a short write needs a disk that fills up mid-write.)
        """
        journal = self.open()
        self.assertTrue(journal.add(RUN_1))

        def short(fd: int, data: bytes) -> int:
            return os.write(fd, data[:12])

        self.patch(markjournal, "_write", short)
        self.assertFalse(journal.add(RUN_2))
        self.patch(markjournal, "_write", os.write)
        self.assertTrue(journal.add(RUN_3))
        self.assertEqual(MarkJournal(self.path).left, [RUN_1, RUN_3])

    def test_unterminatedLastLineIgnored(self) -> None:
        """Only whole lines are read: a last one with no newline after it is not."""
        with open(self.path, "w") as f:
            f.write(f"{RUN_1}\n\n{RUN_2}\n{RUN_1}\n{RUN_3}")
        self.assertEqual(self.open().left, [RUN_1, RUN_2])

    def test_manyIdsReadOnce(self) -> None:
        """Many ids, repeated, are each read once, in order."""
        ids = [f"{n:032x}" for n in range(2000)]
        with open(self.path, "w") as f:
            f.write("".join(f"\n{i}\n" for i in ids + ids))
        self.assertEqual(self.open().left, ids)

    def test_hugeFileReadBounded(self) -> None:
        """
        A 3 GB journal (sparse: its damage is mostly zeros) is read only up
        to L{markjournal.MAX_READ} bytes, with a warning giving its size: the
        ids in its first bytes are read, one past the bound is not, and
        C{clear} empties the whole file.
        """
        with open(self.path, "wb") as f:
            f.write(f"\n{RUN_1}\n".encode())
            f.seek(markjournal.MAX_READ + 100)
            f.write(f"\n{RUN_2}\n".encode())
            f.truncate(3 * 1024**3)
        reads: list[int] = []

        def read(fd: int, count: int) -> bytes:
            reads.append(count)
            return realRead(fd, count)

        realRead = os.read
        self.patch(markjournal.os, "read", read)
        logged: list[dict] = []
        globalLogPublisher.addObserver(logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, logged.append)
        journal = self.open()
        self.assertEqual(journal.left, [RUN_1])
        self.assertLessEqual(sum(reads), markjournal.MAX_READ)
        [warning] = [e for e in logged if e.get("log_namespace", "").endswith("MarkJournal")]
        self.assertEqual(warning["size"], 3 * 1024**3)
        journal.clear()
        self.assertEqual(os.path.getsize(self.path), 0)

    def test_hardLinkRefused(self) -> None:
        """
        A hard link where the journal goes is refused (as any state file
        with two names): its other file is never emptied by C{clear}.
        """
        victim = os.path.join(self.dir, "victim")
        with open(victim, "w") as f:
            f.write("precious\n")
        os.link(victim, self.path)
        self.assertRaises(UnsafeStateDir, MarkJournal, self.path)
        with open(victim) as f:
            self.assertEqual(f.read(), "precious\n")

    def test_fifoRefusesBackend(self) -> None:
        """
        A FIFO where the journal goes stops the backend from opening (it
        is named, with the fix), as for every state file.
        """
        os.mkfifo(self.path)
        runtime = ProcessRuntime(Clock(), launcher=None, native=False)
        self.assertRaises(NotRegularFile, runtime.useJournal, self.path)
        error = self.assertRaises(
            UnsafeStateDir, ProcessBackend, Clock(), self.dir, runtime=runtime
        )
        self.assertIn(self.path, str(error))
        self.assertIn("mv ", str(error))

    def test_missingDirectoryOnlyWarns(self) -> None:
        """A journal that cannot be made (not a refusal): none is used."""
        runtime = ProcessRuntime(Clock(), launcher=None, native=False)
        runtime.useJournal(os.path.join(self.dir, "missing", JOURNAL_NAME))
        self.assertIsNone(runtime.markSweep.journal)


class StartLookTests(SynchronousTestCase):
    """L{ProcessRuntime.sweep}, the next daemon's look for the journal's ids."""

    def test_failedStartLookRetried(self) -> None:
        """
        When the look at start fails, the journal's ids stay in it and are
        looked for again later, then the journal is emptied.
        """
        os.mkdir(self.mktemp())
        path = os.path.join(os.path.dirname(self.mktemp()), JOURNAL_NAME)
        with open(path, "w") as f:
            f.write(f"{RUN_1}\n")

        def failing(runIds: set[str], notBefore: int | None, proc: str) -> dict:
            raise OSError(24, "Too many open files")

        looked: list[set[str]] = []

        def later(runIds: set[str], notBefore: int | None, proc: str, skip: object) -> dict:
            looked.append(set(runIds))
            return {}

        self.patch(reclaim, "killMarked", failing)
        self.patch(runtimeModule, "killMarked", later)
        clock = Clock()
        runtime = ProcessRuntime(clock, launcher=None, native=False, cgroups=NO_CGROUPS)
        runtime.useJournal(path)
        self.addCleanup(runtime.close)
        self.assertRaises(OSError, runtime.sweep, {})
        with open(path) as f:
            self.assertEqual(f.read().split(), [RUN_1])
        clock.advance(MARK_LATER_DELAY)
        self.assertEqual(looked, [{RUN_1}])
        self.assertEqual(os.path.getsize(path), 0)


class DelayOptionTests(SynchronousTestCase):
    """The process backend's C{mark-sweep-delay} option."""

    def test_default(self) -> None:
        """Without it, the later look waits L{MARK_LATER_DELAY}."""
        backend = makeBackend(Clock(), self.mktemp(), {"cgroups": "off"})
        self.addCleanup(backend.store.close)
        self.assertEqual(backend.runtime.markSweep.laterDelay, MARK_LATER_DELAY)

    def test_set(self) -> None:
        """C{mark-sweep-delay=SECONDS} sets how long the later look waits."""
        backend = makeBackend(Clock(), self.mktemp(), {"cgroups": "off", "mark-sweep-delay": "2.5"})
        self.addCleanup(backend.store.close)
        self.assertEqual(backend.runtime.markSweep.laterDelay, 2.5)

    def test_badRefused(self) -> None:
        """A value that is not seconds from 0 to a day is refused, named."""
        for value in ("soon", "-1", "nan", "inf", "86401"):
            error = self.assertRaises(
                BadRequest,
                makeBackend,
                Clock(),
                self.mktemp(),
                {"cgroups": "off", "mark-sweep-delay": value},
            )
            self.assertIn("mark-sweep-delay", str(error))
