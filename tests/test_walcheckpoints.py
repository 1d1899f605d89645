"""
Tests for L{pycm.walcheckpoints}: the state databases' log is checkpointed
in a thread, never in a commit on the reactor, and what a failing
checkpoint does.  Integration tests, most of them: a real database, the
running reactor and a real thread (what is tested is that the work leaves
the reactor's thread); L{CatchUpTests} alone uses a fake connection.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading

from twisted.internet import reactor
from twisted.internet.task import Clock
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.trial.unittest import TestCase

from pycm import store
from pycm.store import SQLiteStore
from pycm.walcheckpoints import BACKSTOP_PAGES, CATCH_UP, LOG_SIZE_LIMIT, ThreadedCheckpoints
from tests.test_store import childEnv

#: The filler of a record of most of a page (4 KiB).
FILLER = "x" * 3000


def logPages(path: str) -> int:
    """The pages in C{path}'s log (its C{-wal} file), 0 without one."""
    try:
        size = os.path.getsize(path + "-wal")
    except FileNotFoundError:
        return 0
    return size // 4096


class ThreadedCheckpointTests(TestCase):
    """A store told to L{SQLiteStore.checkpointInThread}."""

    def setUp(self) -> None:
        directory = self.mktemp()
        os.makedirs(directory)
        self.path = os.path.join(directory, "state.db")
        self.store = SQLiteStore(self.path)
        self.addCleanup(self.store.close)
        self.saved = 0

    def checkpoints(self, every: int) -> ThreadedCheckpoints:
        self.store.checkpointInThread(reactor)
        checkpoints = self.store._checkpoints
        assert checkpoints is not None
        checkpoints.every = every
        return checkpoints

    def save(self, count: int) -> None:
        # Each save changes its record (SQLite writes no page for an
        # unchanged one): a page or two more in the log.
        for i in range(count):
            name = f"c{i % 50}"
            self.store.save(name, {"name": name, "n": self.saved, "blob": FILLER})
            self.saved += 1

    def test_noneInACommit(self) -> None:
        """
        Commits on the reactor never checkpoint (below the backstop): the
        log grows past SQLite's 1,000 pages when no thread does it.
        """
        self.checkpoints(every=10**9)
        self.save(1200)
        self.assertGreater(logPages(self.path), 1000)
        self.assertLess(logPages(self.path), BACKSTOP_PAGES)

    def test_withoutThreadsSQLiteDoesIt(self) -> None:
        """Not told to, the store leaves checkpoints to SQLite (the log stays short)."""
        self.save(1200)
        self.assertLess(logPages(self.path), 1100)

    async def test_checkpointedInAThread(self) -> None:
        """
        Every C{every} commits a checkpoint runs in another thread; the log
        then starts over, so it stays short however much is written.
        """
        checkpoints = self.checkpoints(every=100)
        threads: list[int] = []
        checkpoint = checkpoints._checkpoint

        def watched() -> tuple[int, int, int]:
            threads.append(threading.get_ident())
            return checkpoint()

        checkpoints._checkpoint = watched  # type: ignore[method-assign]
        for _ in range(12):
            self.save(100)
            running = checkpoints.running
            assert running is not None
            await running
        self.assertEqual(checkpoints.done, 12)
        self.assertEqual(len(threads), 12)
        self.assertNotIn(threading.get_ident(), threads)
        self.assertLess(logPages(self.path), 400)
        self.assertEqual(len(self.store.load()), 50)

    async def test_failureSaidOnce(self) -> None:
        """
        A checkpoint that fails is said once an episode (as a warning
        naming the file) and tried again C{every} commits later; its
        success is said too.  Nothing written is lost.
        """
        checkpoints = self.checkpoints(every=10)
        said: list[tuple[LogLevel, str]] = []

        def observer(event: dict[str, object]) -> None:
            if event.get("log_namespace") == "pycm.walcheckpoints.ThreadedCheckpoints":
                said.append((event["log_level"], formatEvent(event)))  # type: ignore[arg-type]

        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        checkpoint = checkpoints._checkpoint
        failing = [True]

        def sometimes() -> tuple[int, int, int]:
            if failing[0]:
                raise sqlite3.OperationalError("disk I/O error")
            return checkpoint()

        checkpoints._checkpoint = sometimes  # type: ignore[method-assign]
        for _ in range(3):
            self.save(10)
            await checkpoints.running  # type: ignore[misc]
        failing[0] = False
        self.save(10)
        await checkpoints.running  # type: ignore[misc]
        self.assertEqual([level for level, _ in said], [LogLevel.warn, LogLevel.info])
        self.assertIn(self.path, said[0][1])
        self.assertIn("disk I/O error", said[0][1])
        self.assertEqual(checkpoints.done, 1)
        self.assertEqual(len(self.store.load()), 10)

    def test_closeWaitsForTheThread(self) -> None:
        """
        Closing the store while a checkpoint runs waits for it: the thread
        is gone, and the database closed whole (no log left).
        """
        checkpoints = self.checkpoints(every=10)
        started = threading.Event()
        release = threading.Event()
        checkpoint = checkpoints._checkpoint

        finished: list[str] = []

        def slow() -> tuple[int, int, int]:
            started.set()
            release.wait(10)
            result = checkpoint()
            finished.append("checkpoint")
            return result

        checkpoints._checkpoint = slow  # type: ignore[method-assign]
        self.save(10)
        self.assertTrue(started.wait(10))
        pool = checkpoints._pool
        assert pool is not None
        # Whenever it comes, close must have waited for it.
        threading.Timer(0.05, release.set).start()
        self.store.close()
        self.assertEqual(finished, ["checkpoint"])
        self.assertFalse([thread for thread in pool.threads if thread.is_alive()])
        self.assertEqual(logPages(self.path), 0)
        self.assertFalse(os.path.exists(self.path + "-wal"))

    async def test_movedAsideNoNewDatabase(self) -> None:
        """
        The database moved aside while the daemon runs: a checkpoint makes
        no new, empty one at its path (beside which SQLite would delete the
        live log), and works on the moved files, which keep every commit.
        """
        checkpoints = self.checkpoints(every=5)
        self.save(3)
        os.rename(self.path, self.path + ".aside")
        self.save(2)
        await checkpoints.running  # type: ignore[misc]
        self.assertFalse(os.path.exists(self.path))
        self.assertTrue(os.path.exists(self.path + "-wal"))
        self.assertEqual(checkpoints.done, 1)
        self.store.close()
        os.rename(self.path + ".aside", self.path)
        again = SQLiteStore(self.path)
        self.addCleanup(again.close)
        # c0 and c1 saved again after the move (3, 4), c2 before it (2).
        self.assertEqual(sorted(record["n"] for record in again.load()), [2, 3, 4])

    def test_noSecondConnection(self) -> None:
        """
        A second connection that cannot be opened leaves SQLite's own
        checkpoints in place, and says so once, naming the file.
        """
        said: list[str] = []

        def observer(event: dict[str, object]) -> None:
            if event.get("log_namespace") == "pycm.store.SQLiteStore":
                said.append(formatEvent(event))

        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)

        def refused(path: str) -> sqlite3.Connection:
            raise sqlite3.OperationalError("unable to open database file")

        self.patch(store, "openBeside", refused)
        self.store.checkpointInThread(reactor)
        self.assertIsNone(self.store._checkpoints)
        self.assertEqual(len(said), 1)
        self.assertIn(self.path, said[0])
        self.save(1200)
        self.assertLess(logPages(self.path), 1100)

    async def test_logFileCutBack(self) -> None:
        """
        A log file that grew (checkpoints that failed) is cut back to
        L{LOG_SIZE_LIMIT} once it starts over.
        """
        checkpoints = self.checkpoints(every=10**9)
        self.save(LOG_SIZE_LIMIT // 4096 + 500)
        self.assertGreater(os.path.getsize(self.path + "-wal"), LOG_SIZE_LIMIT)
        checkpoints.every = 1
        for _ in range(3):
            self.save(1)
            await checkpoints.running  # type: ignore[misc]
        self.assertLessEqual(os.path.getsize(self.path + "-wal"), LOG_SIZE_LIMIT)

    def test_noneOnAClock(self) -> None:
        """On a reactor with no threads (a test's clock) SQLite keeps doing it."""
        self.store.checkpointInThread(Clock())
        self.assertIsNone(self.store._checkpoints)

    def test_noneInExclusiveMode(self) -> None:
        """
        A store in exclusive locking mode (a full disk at start) keeps
        SQLite's own: no other connection could open the database.
        """
        self.store._exclusive = True
        self.store.checkpointInThread(reactor)
        self.assertIsNone(self.store._checkpoints)


#: A process that checkpoints in a thread and ends without closing its store.
UNCLOSED = """
import os, sys
from twisted.internet import reactor
from pycm.store import SQLiteStore
store = SQLiteStore(os.path.join(sys.argv[1], "state.db"))
store.checkpointInThread(reactor)
store._checkpoints.every = 5
def checkpointed(_):
    print("checkpointed", flush=True)
    reactor.stop()
def write():
    for i in range(5):
        store.save(f"c{i}", {"n": i})
    store._checkpoints.running.addCallback(checkpointed)
reactor.callWhenRunning(write)
reactor.run()
"""


class ProcessEndTests(TestCase):
    """The checkpoint thread and the end of the daemon's process."""

    def test_unclosedStoreDoesNotHoldTheProcess(self) -> None:
        """
        A process that never closed its store (an unexpected exit) ends all
        the same: the checkpoint thread does not keep it alive.
        """
        directory = self.mktemp()
        os.makedirs(directory)
        child = subprocess.run(
            [sys.executable, "-c", UNCLOSED, directory],
            env=childEnv(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        self.assertEqual((child.returncode, child.stdout), (0, "checkpointed\n"), child.stderr)


class FakeCheckpointing:
    """A connection whose checkpoints report C{results} in turn."""

    def __init__(self, results: list[tuple[int, int, int]]) -> None:
        self.results = results
        self.calls = 0

    def execute(self, sql: str) -> FakeCheckpointing:
        assert sql == "PRAGMA wal_checkpoint(PASSIVE)", sql
        self.calls += 1
        return self

    def fetchone(self) -> tuple[int, int, int]:
        return self.results[self.calls - 1]

    def close(self) -> None:
        pass


class CatchUpTests(TestCase):
    """
    How far one checkpoint goes: the commits made while it copied are
    copied by another, until one finds nothing new (only then can the next
    commit start the log over, which under a steady stream of commits would
    otherwise grow to the backstop).
    """

    def checkpoint(self, results: list[tuple[int, int, int]]) -> int:
        fake = FakeCheckpointing(results)
        checkpoints = ThreadedCheckpoints(reactor, "unused.db", fake)  # type: ignore[arg-type]
        self.assertEqual(checkpoints._checkpoint(), results[fake.calls - 1])
        return fake.calls

    def test_untilNothingNew(self) -> None:
        """Again while the log grew during the last one; done when it did not."""
        self.assertEqual(self.checkpoint([(0, 200, 200), (0, 230, 230), (0, 230, 230)]), 3)

    def test_notWhileAReaderHoldsFrames(self) -> None:
        """A checkpoint that could not copy everything (a reader) is not repeated."""
        self.assertEqual(self.checkpoint([(0, 200, 150), (0, 260, 260)]), 1)

    def test_notWhenBusy(self) -> None:
        """Nor one that found another checkpoint running."""
        self.assertEqual(self.checkpoint([(1, -1, -1), (0, 260, 260)]), 1)

    def test_bounded(self) -> None:
        """A log that grows during every one is left after L{CATCH_UP} of them."""
        results = [(0, 100 * i, 100 * i) for i in range(1, CATCH_UP + 2)]
        self.assertEqual(self.checkpoint(results), CATCH_UP)


class NotStartedTests(TestCase):
    """What a checkpointer that never ran leaves."""

    def test_closeWithoutAThread(self) -> None:
        """Closed before any checkpoint, it never started a thread."""
        checkpoints = ThreadedCheckpoints(
            reactor, "unused.db", FakeCheckpointing([]), every=5  # type: ignore[arg-type]
        )
        checkpoints.close()
        for _ in range(10):
            checkpoints.committed()
        self.assertIsNone(checkpoints.running)
        self.assertIsNone(checkpoints._pool)

