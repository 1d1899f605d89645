"""
Tests for L{pycm.storefaults} and the messages of L{pycm.store.SQLiteStore}
for a damaged database, an empty event log and a full disk: each names the
file, what it is, and what to do.
"""

from __future__ import annotations

import errno
import os
import sqlite3

from twisted.trial.unittest import SynchronousTestCase

from pycm.daemon.startup import startFailure
from pycm.errors import BackendError
from pycm.statedir import NotRegularFile
from pycm.store import SQLiteStore, StoreCorrupt
from pycm.storefaults import (
    CHECK_REPORT_LENGTH,
    StoreDiskFull,
    cannotOpen,
    checkReport,
    connect,
)


def _damagedIndex(path: str) -> None:
    """
    A database whose index of container names has its cell pointers zeroed:
    SQLite's C{quick_check} reports one row of dozens of lines.
    """
    store = SQLiteStore(path)
    store.saveMany((f"c{i:03d}", {"name": f"c{i:03d}"}) for i in range(300))
    store._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    root = store._db.execute(
        "SELECT rootpage FROM sqlite_master WHERE name LIKE 'sqlite_autoindex_containers%'"
    ).fetchone()[0]
    pageSize = store._db.execute("PRAGMA page_size").fetchone()[0]
    store.close()
    with open(path, "r+b") as f:
        f.seek((root - 1) * pageSize)
        header = 8 if f.read(1)[0] in (10, 13) else 12
        f.seek((root - 1) * pageSize + header)
        f.write(b"\0" * 120)


class DamagedDatabaseTests(SynchronousTestCase):
    """A damaged database is refused in a few lines, with what to do."""

    def setUp(self) -> None:
        self.dir = self.mktemp()
        os.makedirs(self.dir)

    def test_checkReportBounded(self) -> None:
        """
        A C{quick_check} report of dozens of lines is cut to about
        L{CHECK_REPORT_LENGTH} characters on one line, saying there is more.
        """
        path = os.path.join(self.dir, "state.db")
        _damagedIndex(path)
        db = sqlite3.connect(path)
        rows = [row[0] for row in db.execute("PRAGMA quick_check")]
        db.close()
        self.assertGreater(len(rows[0].splitlines()), 20)
        error = self.assertRaises(StoreCorrupt, SQLiteStore, path)
        message = str(error)
        self.assertNotIn("\n", message)
        self.assertIn("and more", message)
        self.assertNotIn("*** in database", message)
        self.assertLess(len(message.replace(path, "P")), CHECK_REPORT_LENGTH + 300)
        self.assertIn(f"mv {path} {path}.damaged", message)
        self.assertIn("restore a copy", message)

    def test_checkReportShort(self) -> None:
        """A short report is kept whole."""
        self.assertEqual(checkReport(["page 3 is never used"]), "page 3 is never used")

    def test_emptyEventLog(self) -> None:
        """
        A 0-byte C{events.db} is called the event log (not records), with
        what moving it aside costs: the events, not the ids.
        """
        path = os.path.join(self.dir, "events.db")
        open(path, "wb").close()
        error = self.assertRaises(StoreCorrupt, SQLiteStore, path, holds="events")
        message = str(error)
        self.assertIn(f"the event log {path} is empty", message)
        self.assertNotIn("records", message)
        self.assertIn(f"mv {path} {path}.damaged", message)
        self.assertIn("events.mark", message)

    def test_emptyStateDatabase(self) -> None:
        """A 0-byte C{state.db} says the records it held are lost if moved aside."""
        path = os.path.join(self.dir, "state.db")
        open(path, "wb").close()
        message = str(self.assertRaises(StoreCorrupt, SQLiteStore, path))
        self.assertIn(f"the state database {path} is empty", message)
        self.assertIn("records it held are lost", message)

    def test_holdsChecked(self) -> None:
        """C{holds} is records or events."""
        self.assertRaises(ValueError, SQLiteStore, os.path.join(self.dir, "x.db"), holds="x")


def _sqliteError(code: int, text: str) -> sqlite3.OperationalError:
    error = sqlite3.OperationalError(text)
    error.sqlite_errorcode = code  # type: ignore[attr-defined]
    return error


class CannotOpenTests(SynchronousTestCase):
    """
    L{cannotOpen} tells a full disk (free space, do not remove the file)
    from a damaged file (move it aside) by SQLite's result code.
    """

    def test_fullDiskIoError(self) -> None:
        """SQLITE_IOERR_SHMSIZE on a full disk: not called corrupt."""
        error = cannotOpen(_sqliteError(4874, "disk I/O error"), "/s/state.db", "records", True)
        self.assertNotIsInstance(error, StoreCorrupt)
        self.assertIn("the state database /s/state.db: its disk is full", str(error))
        self.assertIn("free some space", str(error))
        self.assertIn("do not remove it", str(error))

    def test_sqliteFull(self) -> None:
        """SQLITE_FULL is a full disk whatever statvfs says."""
        error = cannotOpen(_sqliteError(13, "database or disk is full"), "/s/events.db",
                           "events", False)
        self.assertIn("the event log /s/events.db: its disk is full", str(error))

    def test_ioErrorWithRoom(self) -> None:
        """An I/O error with room on the disk is neither full nor corrupt."""
        error = cannotOpen(_sqliteError(10, "disk I/O error"), "/s/state.db", "records", False)
        self.assertNotIsInstance(error, StoreCorrupt)
        self.assertNotIn("move it aside", str(error))
        self.assertIn("/s/state.db", str(error))

    def test_corrupt(self) -> None:
        """SQLITE_CORRUPT and SQLITE_NOTADB are damage: move it aside."""
        for code in (11, 26, 267):
            error = cannotOpen(_sqliteError(code, "malformed"), "/s/state.db", "records", True)
            self.assertIsInstance(error, StoreCorrupt)
            self.assertIn("mv /s/state.db /s/state.db.damaged", str(error))


class ConnectTests(SynchronousTestCase):
    """
    L{connect} opens a database again in exclusive locking mode when the
    disk is too full for SQLite's C{-shm} index (set up here by a function
    that fails as SQLite does: a full disk needs root to mount a tmpfs; the
    real one is in tests.test_statedir_start_e2e).
    """

    def setUp(self) -> None:
        self.path = os.path.join(self.mktemp() + ".db")
        self.modes: list[str] = []

    def fullOnce(self, db: sqlite3.Connection) -> None:
        self.modes.append(db.execute("PRAGMA locking_mode").fetchone()[0])
        if len(self.modes) == 1:
            raise _sqliteError(13, "database or disk is full")

    def test_fullDiskExclusive(self) -> None:
        """The second set-up is in exclusive mode, and said so."""
        db, exclusive = connect(self.path, "records", self.fullOnce)
        self.addCleanup(db.close)
        self.assertTrue(exclusive)
        self.assertEqual(self.modes, ["normal", "exclusive"])

    def test_fullTwice(self) -> None:
        """Still full in exclusive mode: L{StoreDiskFull}, naming the file."""

        def full(db: sqlite3.Connection) -> None:
            raise _sqliteError(13, "database or disk is full")

        error = self.assertRaises(StoreDiskFull, connect, self.path, "events", full)
        self.assertIn(f"the event log {self.path}: its disk is full", str(error))

    def test_corruptNotRetried(self) -> None:
        """A damaged file is refused at once."""

        def corrupt(db: sqlite3.Connection) -> None:
            self.modes.append("x")
            raise _sqliteError(11, "malformed")

        self.assertRaises(StoreCorrupt, connect, self.path, "records", corrupt)
        self.assertEqual(self.modes, ["x"])

    def test_normal(self) -> None:
        """With room, the database is opened once, in normal mode."""
        db, exclusive = connect(self.path, "records", self.modes.append)
        self.addCleanup(db.close)
        self.assertFalse(exclusive)


class StartFailureTests(SynchronousTestCase):
    """L{startFailure}: a start-up error always names a file or the directory."""

    def test_fullDiskNoFilename(self) -> None:
        """ENOSPC from a write to a descriptor names the state directory, says free space."""
        message = startFailure(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), "/var/lib/pycm")
        self.assertIn("the state directory /var/lib/pycm", message)
        self.assertIn("free some space", message)
        self.assertNotIn("[Errno", message)

    def test_filename(self) -> None:
        """An error naming a file keeps it."""
        error = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/var/lib/pycm/token")
        self.assertIn("cannot write /var/lib/pycm/token", startFailure(error, "/var/lib/pycm"))
        error = OSError(errno.EACCES, os.strerror(errno.EACCES), "/var/lib/pycm/token")
        self.assertEqual(
            startFailure(error, "/var/lib/pycm"),
            "cannot use /var/lib/pycm/token: Permission denied",
        )

    def test_otherErrorsAsTheyAre(self) -> None:
        """pycm's own errors (even one that is an OSError) are said as they are."""
        self.assertEqual(startFailure(BackendError("no"), "/s"), "no")
        error = NotRegularFile("/s/lock", 0o010600)
        self.assertEqual(startFailure(error, "/s"), str(error))
