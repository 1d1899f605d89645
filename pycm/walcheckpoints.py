"""
Checkpoints of a WAL-mode SQLite database in a thread of their own, so
that no commit on the reactor pays for one.

In WAL mode a commit appends its pages to the log (C{-wal}); a checkpoint
copies the log back into the database, with two fsyncs, so that the log
can start over.  SQLite does one itself, inside the commit that takes the
log past 1,000 pages: on the daemon's reactor that is one commit every
few hundred taking milliseconds (tens of them on a busy disk) while every
client waits.  L{ThreadedCheckpoints} runs them on a connection of their
own, in a thread, every L{CHECKPOINT_EVERY} commits, and leaves SQLite's
own as a backstop for a log that grows past L{BACKSTOP_PAGES} pages all
the same (checkpoints that keep failing).  A checkpoint changes nothing
that is durable: a commit is in the log when it returns, copied back or
not, and SQLite reads the newest of each page from either.
"""

from __future__ import annotations

import sqlite3
from threading import Thread
from typing import Any
from urllib.parse import quote

from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

#: A checkpoint is started after this many commits (one at a time).
CHECKPOINT_EVERY = 200
#: At most this many checkpoints in a row to copy the whole log.
CATCH_UP = 8
#: SQLite's own checkpoint (on the reactor) only past this many log pages.
BACKSTOP_PAGES = 4_000
#: The log file is cut back to this many bytes when it starts over.
LOG_SIZE_LIMIT = 4 * 1024 * 1024


class _CheckpointThread(Thread):
    """
    A thread that never keeps the process alive when the store was not
    closed: a checkpoint cut short by the process's end is one SQLite
    recovers from, as from a C{kill -9}.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.daemon = True


class _CheckpointPool(ThreadPool):
    """A pool of L{_CheckpointThread}s."""

    threadFactory = _CheckpointThread


def openBeside(path: str) -> sqlite3.Connection:
    """
    A second connection to the database at C{path}, opened next to the
    store's own, before anything could move it: read-write but never
    creating a file (C{mode=rw}: a path that no longer holds the database
    is an error, never a new empty one, beside which SQLite would delete
    the live log), and its log opened at once, so that it keeps working
    on the files the store has open.  For the pool's thread only, after.
    """
    db = sqlite3.connect(
        f"file:{quote(path)}?mode=rw",
        uri=True,
        timeout=0,
        isolation_level=None,
        check_same_thread=False,
    )
    try:
        db.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except BaseException:
        db.close()
        raise
    return db


class ThreadedCheckpoints:
    """
    Checkpoints a database in a thread, on a connection of its own
    (L{openBeside}), every C{every} commits the store says it made
    (L{committed}); at most one at a time.

    @ivar done: how many checkpoints completed (whole or not).
    @ivar running: the checkpoint in progress (fires when it is over), or None.
    """

    log = Logger()

    def __init__(
        self, reactor: Any, path: str, db: sqlite3.Connection, every: int = CHECKPOINT_EVERY
    ) -> None:
        self._reactor = reactor
        self.path = path
        self.every = every
        self.done = 0
        self._commits = 0
        self.running: Deferred[Any] | None = None
        self._pool: ThreadPool | None = None
        self._closed = False
        self._failing = False
        #: Used in the pool's one thread only, once L{committed} starts it.
        self._db: sqlite3.Connection | None = db

    def attach(self, db: sqlite3.Connection) -> None:
        """
        Leave SQLite's own checkpoints on C{db} (the store's) as a backstop,
        and have its log file cut back when it starts over after growing.
        """
        db.execute(f"PRAGMA wal_autocheckpoint={BACKSTOP_PAGES}")
        db.execute(f"PRAGMA journal_size_limit={LOG_SIZE_LIMIT}")

    def committed(self) -> None:
        """The store committed a transaction: a checkpoint is due every C{every}."""
        self._commits += 1
        if self._commits < self.every or self.running is not None or self._closed:
            return
        self._commits = 0
        if self._pool is None:
            self._pool = _CheckpointPool(0, 1, name=f"checkpoints of {self.path}")
            self._pool.start()
        running = deferToThreadPool(self._reactor, self._pool, self._checkpoint)
        self.running = running
        running.addCallbacks(self._checkpointed, self._failed)

    def _checkpoint(self) -> tuple[int, int, int]:
        """
        In the pool's thread: passive checkpoints (they never wait on the
        writer) until one finds nothing new to copy, L{CATCH_UP} at most.
        Only then can the next commit start the log over: each copies what
        was committed during the one before, less each time.
        """
        if self._db is None:
            raise sqlite3.ProgrammingError("the checkpoints' connection is closed")
        last = -1
        for _ in range(CATCH_UP):
            busy, pages, copied = self._db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            if busy or copied < pages or pages == last:
                break  # a reader holds the rest, or the log is all copied
            last = pages
        return busy, pages, copied

    def _checkpointed(self, result: tuple[int, int, int]) -> None:
        self.running = None
        self.done += 1
        if self._failing:
            self._failing = False
            self.log.info("{path}: its log is checkpointed again", path=self.path)

    def _failed(self, failure: Failure) -> None:
        """Said once an episode; the next is tried C{every} commits later."""
        self.running = None
        if not self._failing:
            self._failing = True
            self.log.warn(
                "{path}: cannot checkpoint its log ({error}); it grows until a "
                "checkpoint succeeds (tried again every {every} commits)",
                path=self.path,
                error=failure.getErrorMessage(),
                every=self.every,
            )

    def close(self) -> None:
        """
        Wait for a checkpoint in progress (milliseconds; up to L{CATCH_UP}
        passes with their fsyncs on a slow disk); start no other.
        """
        self._closed = True
        if self._pool is not None:
            self._pool.stop()
            self._pool = None
        if self._db is not None:
            self._db.close()
            self._db = None
