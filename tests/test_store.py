"""
Tests for L{pycm.store}: the SQLite record and event store, and the state
directory lock.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys

from twisted.logger import Logger, formatEvent
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

import pycm
from pycm.errors import BackendError
from pycm.interfaces import IEventStore, IRecordStore
from pycm.model import ContainerEvent
from pycm.statelock import StateDirLock, StateDirLocked
from pycm.store import SQLiteStore, StoreCorrupt


def childEnv() -> dict[str, str]:
    """An environment in which a child Python can import this pycm."""
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(pycm.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    return env


def event(eventId: int, action: str = "start", name: str = "web") -> ContainerEvent:
    """A numbered event for the tests."""
    return ContainerEvent(action=action, name=name, time=1000.0 + eventId, id=eventId)


class _StoreTestCase(SynchronousTestCase):
    """A state database in a fresh directory for each test."""

    def setUp(self) -> None:
        self.dir = self.mktemp()
        os.makedirs(self.dir)
        self.path = os.path.join(self.dir, "state.db")

    def open(self, **kwargs: object) -> SQLiteStore:
        store = SQLiteStore(self.path, **kwargs)  # type: ignore[arg-type]
        self.addCleanup(store.close)
        return store


class SQLiteStoreRecordTests(_StoreTestCase):
    """L{SQLiteStore} as an L{IRecordStore}."""

    def test_interfaces(self) -> None:
        """The store provides both IRecordStore and IEventStore."""
        store = self.open()
        self.assertTrue(verifyObject(IRecordStore, store))
        self.assertTrue(verifyObject(IEventStore, store))

    def test_emptyNew(self) -> None:
        """A store created where no file was loads no records."""
        self.assertEqual(self.open().load(), [])

    def test_saveLoadAcrossReopen(self) -> None:
        """Saved records come back, equal, from a store reopened on the file."""
        store = self.open()
        store.save("web", {"name": "web", "state": "running", "pid": 42})
        store.save("db", {"name": "db", "labels": {"a": "é"}, "exit": None})
        store.close()
        self.assertEqual(
            self.open().load(),
            [
                {"name": "db", "labels": {"a": "é"}, "exit": None},
                {"name": "web", "state": "running", "pid": 42},
            ],
        )

    def test_saveReplaces(self) -> None:
        """Saving a name again replaces its record."""
        store = self.open()
        store.save("web", {"name": "web", "v": 1})
        store.save("web", {"name": "web", "v": 2})
        self.assertEqual(store.load(), [{"name": "web", "v": 2}])

    def test_delete(self) -> None:
        """A deleted record is gone, also after a reopen; deleting twice is fine."""
        store = self.open()
        store.save("web", {"name": "web", "v": 1})
        store.save("db", {"name": "db", "v": 2})
        store.delete("web")
        store.delete("web")
        store.close()
        self.assertEqual(self.open().load(), [{"name": "db", "v": 2}])

    def test_durableAgainstProcessKill(self) -> None:
        """
        A save has reached the file when it returns: a process killed with
        SIGKILL right after saving leaves the record for the next one.
        """
        code = (
            "import os, signal, sys\n"
            "from pycm.store import SQLiteStore\n"
            "s = SQLiteStore(sys.argv[1])\n"
            "s.save('web', {'name': 'web', 'state': 'running'})\n"
            "s.append(__import__('pycm.model').model.ContainerEvent("
            "action='start', name='web', time=1.0, id=7))\n"
            "os.kill(os.getpid(), signal.SIGKILL)\n"
        )
        result = subprocess.run([sys.executable, "-c", code, self.path], env=childEnv())
        self.assertEqual(result.returncode, -9)
        store = self.open()
        self.assertEqual(store.load(), [{"name": "web", "state": "running"}])
        self.assertEqual(store.lastId(), 7)

    def test_fullSync(self) -> None:
        """C{sync="full"} works too; other sync modes are refused."""
        store = self.open(sync="full")
        store.save("web", {"name": "web", "v": 1})
        self.assertEqual(store.load(), [{"name": "web", "v": 1}])
        self.assertRaises(ValueError, SQLiteStore, self.path, sync="off")

    def test_emptyFileIsCorrupt(self) -> None:
        """A file truncated to 0 bytes is refused, not taken as no records."""
        open(self.path, "wb").close()
        error = self.assertRaises(StoreCorrupt, SQLiteStore, self.path)
        self.assertIsInstance(error, BackendError)
        self.assertIn(self.path, str(error))
        self.assertIn("truncated", str(error))

    def test_garbageFileIsCorrupt(self) -> None:
        """A file that is not SQLite is refused and left untouched."""
        with open(self.path, "wb") as f:
            f.write(b'{"containers": []}\n')
        error = self.assertRaises(StoreCorrupt, SQLiteStore, self.path)
        self.assertIn("not an SQLite database", str(error))
        with open(self.path, "rb") as f:
            self.assertEqual(f.read(), b'{"containers": []}\n')

    def test_truncatedFileIsCorrupt(self) -> None:
        """A database cut short (half its pages gone) is refused loudly."""
        store = self.open()
        for i in range(300):
            store.save(f"c{i}", {"name": f"c{i}", "padding": "x" * 500})
        store._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        store.close()
        size = os.path.getsize(self.path)
        self.assertGreater(size, 8192)
        with open(self.path, "r+b") as f:
            f.truncate(size // 2)
        self.assertRaises(StoreCorrupt, SQLiteStore, self.path)

    def test_damagedRecordsQuarantined(self) -> None:
        """
        A record that is not JSON, not UTF-8, not an object, or names
        another container than its key is moved, raw bytes and all, to the
        quarantine table and reported; the other records load.
        """
        store = self.open()
        for name in ("a", "bad", "utf", "list", "other", "z"):
            store.save(name, {"name": name})
        db = store._db
        db.execute("UPDATE containers SET record = '{broken' WHERE name = 'bad'")
        db.execute("UPDATE containers SET record = CAST(x'ff7b7d' AS TEXT) WHERE name = 'utf'")
        db.execute("UPDATE containers SET record = '[1]' WHERE name = 'list'")
        db.execute("""UPDATE containers SET record = '{"name": "a"}' WHERE name = 'other'""")
        self.assertEqual(store.load(), [{"name": "a"}, {"name": "z"}])
        self.assertEqual(
            [entry["name"] for entry in store.quarantined()], ["bad", "list", "other", "utf"]
        )
        store.close()
        again = self.open()
        self.assertEqual(again.load(), [{"name": "a"}, {"name": "z"}])
        self.assertEqual(len(again.quarantined()), 4)
        kept = dict(
            again._db.execute("SELECT CAST(name AS TEXT), record FROM quarantine").fetchall()
        )
        self.assertEqual(kept["bad"], b"{broken")
        self.assertEqual(kept["utf"], b"\xff{}")

    def test_quarantineByName(self) -> None:
        """The supervisor can put aside a record it cannot read by name."""
        store = self.open()
        store.save("web", {"name": "web"})
        store.save("db", {"name": "db"})
        store.quarantine("web", "missing fields")
        self.assertEqual(store.load(), [{"name": "db"}])
        self.assertEqual(store.quarantined(), [{"name": "web", "reason": "missing fields"}])

    def test_quarantineNoRowSaidSo(self) -> None:
        """
        A name put aside that has no row is listed, and the log does not
        say it was kept in the quarantine table (was: it did, wrongly).
        """
        logged: list[dict[str, object]] = []
        self.patch(SQLiteStore, "log", Logger(observer=logged.append))
        store = self.open()
        store.save("web", {"name": "web"})
        store.quarantine("ghost", "no such record")
        store.quarantine("web", "missing fields")
        ghost, web = (formatEvent(event) for event in logged)
        self.assertIn("the record of 'ghost' is damaged (no such record); it is not served", ghost)
        self.assertNotIn("quarantine table", ghost)
        self.assertIn("it is kept aside in the quarantine table and not served", web)
        self.assertEqual([q["name"] for q in store.quarantined()], ["ghost", "web"])

    def test_unknownSchemaVersion(self) -> None:
        """A database from another schema version is refused."""
        db = sqlite3.connect(self.path)
        db.execute("CREATE TABLE x (y)")
        db.execute("PRAGMA user_version=99")
        db.commit()
        db.close()
        error = self.assertRaises(StoreCorrupt, SQLiteStore, self.path)
        self.assertIn("schema version 99", str(error))

    def test_foreignDatabase(self) -> None:
        """An SQLite file with unrelated tables and no version is refused."""
        db = sqlite3.connect(self.path)
        db.execute("CREATE TABLE x (y)")
        db.commit()
        db.close()
        self.assertRaises(StoreCorrupt, SQLiteStore, self.path)


class SQLiteStoreFullTests(_StoreTestCase):
    """
    L{SQLiteStore}'s record writes on a full database (SQLite's own page
    limit stands for a full disk; the real one is in tests.test_diskfull_e2e).
    """

    def test_fullThenRoomAgain(self) -> None:
        """
        A save that does not fit raises BackendError saying the database is
        full and changes nothing; records saved before are intact, and
        saves work again once there is room.
        """
        store = self.open()
        store.save("web", {"name": "web", "n": 0})
        pages = store._db.execute("PRAGMA page_count").fetchone()[0]
        store._db.execute(f"PRAGMA max_page_count={pages}")
        with self.assertRaises(BackendError) as caught:
            for i in range(1, 1000):
                store.save(f"c{i}", {"name": f"c{i}", "blob": "x" * 2000})
        self.assertIn("full", str(caught.exception))
        saved = {record["name"] for record in store.load()}
        self.assertIn("web", saved)
        store._db.execute("PRAGMA max_page_count=1000000")
        store.save("after", {"name": "after"})
        store.delete("web")
        store.close()
        names = {record["name"] for record in self.open().load()}
        self.assertEqual(names, (saved - {"web"}) | {"after"})


class SQLiteStoreEventTests(_StoreTestCase):
    """L{SQLiteStore} as an L{IEventStore}."""

    def test_diskFullReportsTheRealError(self) -> None:
        """
        When the disk is full SQLite has already rolled back: C{append}
        reports "full", not a failed ROLLBACK, the count of events stays
        right, and the store works again once there is room.
        """
        store = self.open()
        pages = store._db.execute("PRAGMA page_count").fetchone()[0]
        store._db.execute(f"PRAGMA max_page_count={pages}")
        with self.assertRaises(BackendError) as caught:
            for i in range(1, 10_000):
                store.append(ContainerEvent("start", "web" + "x" * 200, 1.0, None, id=i))
        self.assertIn("full", str(caught.exception))
        stored = len(store.since(0))
        self.assertEqual(store._eventCount, stored)
        store._db.execute("PRAGMA max_page_count=1000000")
        store.append(ContainerEvent("start", "web", 1.0, None, id=stored + 1))
        self.assertEqual(len(store.since(0)), stored + 1)

    def test_lastIdEmpty(self) -> None:
        """A new store's last id is 0."""
        self.assertEqual(self.open().lastId(), 0)

    def test_appendSince(self) -> None:
        """Events come back from C{since} after the given id, oldest first."""
        store = self.open()
        events = [event(i, "die" if i == 2 else "start") for i in (1, 2, 3)]
        events[1] = ContainerEvent(action="die", name="web", time=2.5, exitCode=-9, id=2)
        for e in events:
            store.append(e)
        self.assertEqual(store.since(0, 100), events)
        self.assertEqual(store.since(1, 100), events[1:])
        self.assertEqual(store.since(1, 1), [events[1]])
        self.assertEqual(store.since(3, 100), [])
        self.assertEqual(store.lastId(), 3)

    def test_unnumbered(self) -> None:
        """An event without an id cannot be stored."""
        store = self.open()
        self.assertRaises(
            ValueError, store.append, ContainerEvent(action="start", name="a", time=1.0)
        )

    def test_duplicateId(self) -> None:
        """Storing an id twice fails with BackendError and keeps the first."""
        store = self.open()
        store.append(event(1, "start"))
        self.assertRaises(BackendError, store.append, event(1, "die"))
        self.assertEqual([e.action for e in store.since(0, 10)], ["start"])
        store.append(event(2))
        self.assertEqual(store.lastId(), 2)

    def test_idsSurviveReopen(self) -> None:
        """The last id and the events survive closing and reopening."""
        store = self.open()
        for i in range(1, 6):
            store.append(event(i))
        store.close()
        store = self.open()
        self.assertEqual(store.lastId(), 5)
        self.assertEqual([e.id for e in store.since(2, 10)], [3, 4, 5])

    def test_pruneKeepsNewest(self) -> None:
        """
        Beyond C{keepEvents} the oldest events are pruned, at least
        C{keepEvents} newest are always kept, and the last id is kept.
        """
        store = self.open(keepEvents=20)
        for i in range(1, 101):
            store.append(event(i))
            kept = store.since(0, None)
            self.assertGreaterEqual(len(kept), min(i, 20))
            self.assertLessEqual(len(kept), 22)
            self.assertEqual(kept[-1].id, i)
        store.close()
        store = self.open(keepEvents=20)
        self.assertEqual(store.lastId(), 100)
        self.assertEqual([e.id for e in store.since(95, None)], [96, 97, 98, 99, 100])

    def test_prunedThrough(self) -> None:
        """
        C{prunedThrough} is the newest id pruned, one at a time or in a
        batch bigger than what is kept, with ids that skip: every older one
        is gone, every newer one kept.
        """
        store = self.open(keepEvents=5)
        self.assertEqual(store.prunedThrough, 0)
        ids = [*range(1, 30), *range(130, 140)]
        for i in ids:
            store.append(event(i))
            kept = [e.id for e in store.since(0, None)]
            if store.prunedThrough:
                self.assertEqual(kept, [j for j in ids if store.prunedThrough < j <= i])
        self.assertGreater(store.prunedThrough, 29)
        store.appendMany([event(i) for i in range(200, 212)])
        self.assertEqual(store.prunedThrough, 206)
        self.assertEqual([e.id for e in store.since(0, None)], list(range(207, 212)))

    def test_lastIdAfterEverythingPruned(self) -> None:
        """
        The last id never goes back, even if every stored event row is
        gone (it is remembered when pruning).
        """
        store = self.open(keepEvents=2)
        for i in range(1, 10):
            store.append(event(i))
        store._db.execute("DELETE FROM events")
        self.assertEqual(store.lastId(), 9)

    def test_defaultKeepsTenThousand(self) -> None:
        """By default the newest 10,000 events are kept for C{since}."""
        store = self.open()
        for i in range(1, 10_601):
            store.append(event(i))
        kept = store.since(0, None)
        self.assertGreaterEqual(len(kept), 10_000)
        self.assertEqual(kept[-1].id, 10_600)
        self.assertEqual(store.since(600, 1)[0].id, 601)


class StateDirLockTests(SynchronousTestCase):
    """L{StateDirLock} keeps a second daemon off a state directory."""

    def test_secondLockRefused(self) -> None:
        """
        While one lock is held a second one on the same directory is
        refused with a message naming the directory and the holder's pid.
        """
        directory = self.mktemp()
        first = StateDirLock(directory)
        first.acquire()
        self.addCleanup(first.release)
        self.assertTrue(first.locked)
        second = StateDirLock(directory)
        error = self.assertRaises(StateDirLocked, second.acquire)
        self.assertIsInstance(error, BackendError)
        self.assertIn(directory, str(error))
        self.assertIn(f"pid {os.getpid()}", str(error))
        self.assertFalse(second.locked)

    def test_otherProcessRefused(self) -> None:
        """Another process cannot take the lock while this one holds it."""
        directory = self.mktemp()
        lock = StateDirLock(directory)
        lock.acquire()
        self.addCleanup(lock.release)
        code = (
            "import sys\nfrom pycm.statelock import StateDirLock, StateDirLocked\n"
            "try:\n    StateDirLock(sys.argv[1]).acquire()\n"
            "except StateDirLocked as e:\n    print(e); sys.exit(3)\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", code, directory],
            capture_output=True,
            text=True,
            env=childEnv(),
        )
        self.assertEqual(result.returncode, 3, result.stderr)
        self.assertIn("another pycm daemon", result.stdout)

    def test_releaseThenAcquire(self) -> None:
        """After release, the directory can be locked again; release is idempotent."""
        directory = self.mktemp()
        first = StateDirLock(directory)
        first.acquire()
        first.acquire()
        first.release()
        first.release()
        second = StateDirLock(directory)
        second.acquire()
        second.release()

    def test_unusableDirectory(self) -> None:
        """A directory that cannot be created gives a BackendError."""
        path = self.mktemp()
        open(path, "w").close()
        error = self.assertRaises(BackendError, StateDirLock(os.path.join(path, "sub")).acquire)
        self.assertNotIsInstance(error, StateDirLocked)
