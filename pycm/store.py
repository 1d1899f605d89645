"""
Durable state of a pycm daemon: container records (C{state.db}) and the
event log (C{events.db}), each in its own SQLite file.  (The lock that
keeps a second daemon off a state directory is L{pycm.statelock}.)

Why SQLite rather than a JSON file written with write-fsync-rename: a save
is one small transaction (one row), not a rewrite of every record, so the
cost stays flat with 1,000 containers and 10,000 events; SQLite's own
checks tell a corrupt or truncated file from an empty one; and it is in the
standard library.

Journal and sync mode: the database runs in WAL mode.  With
C{synchronous=NORMAL} (the default here) a transaction is written to the
WAL file with C{write()} before the call returns, so it survives the daemon
being killed (C{kill -9}, a crash): the kernel has the bytes.  Only an
operating-system crash or power loss can drop the last few transactions,
and even then the database stays consistent (it never tears).  Pass
C{sync="full"} (the process backend's C{state-sync=full} option) to fsync
the WAL on every commit as well: each reply is then durable across power
loss, at the price of one fsync per commit (about 0.2 ms on an SSD, 10 ms
on a spinning disk).  L{SQLiteStore.saveMany} and L{SQLiteStore.appendMany}
write a group commit (see L{pycm.groupcommit}): one transaction for the
changes of a reactor turn.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable
from typing import Any

from twisted.internet.interfaces import IReactorFromThreads
from twisted.logger import Logger
from zope.interface import implementer

from pycm.errors import BackendError
from pycm.eventdetail import decodeDetail, encodeDetail
from pycm.interfaces import IEventStore, IRecordStore
from pycm.model import ContainerEvent
from pycm.storefaults import (
    StoreCorrupt,
    checkDatabaseFile,
    checkReport,
    connect,
    describe,
    moveAside,
)
from pycm.walcheckpoints import ThreadedCheckpoints, openBeside

__all__ = ["DEFAULT_KEEP_EVENTS", "SCHEMA_VERSION", "SQLiteStore", "StoreCorrupt", "nameProblem"]

#: The schema version kept in C{PRAGMA user_version}.
SCHEMA_VERSION = 1

#: How many events are kept at least (the contract asks for 10,000).
DEFAULT_KEEP_EVENTS = 10_000

#: Damaged records, kept aside (made when first needed, so that an older
#: pycm still opens the file).
_QUARANTINE_SCHEMA = """
CREATE TABLE IF NOT EXISTS quarantine (
    id INTEGER PRIMARY KEY,
    name BLOB NOT NULL,
    record BLOB,
    reason TEXT NOT NULL,
    time REAL NOT NULL
)
"""

_SCHEMA = """
CREATE TABLE containers (
    name TEXT PRIMARY KEY,
    record TEXT NOT NULL
);
CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    action TEXT NOT NULL,
    name TEXT NOT NULL,
    time REAL NOT NULL,
    exit_code INTEGER,
    detail TEXT
);
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""


def nameProblem(record: dict[str, Any]) -> str | None:
    """
    What is wrong with the C{name} field of the saved C{record} (missing,
    not a string), else None.  A record store puts such a record aside
    itself, by its key: it names no container, so nothing else can.
    """
    if "name" not in record:
        return "field 'name' is missing"
    if not isinstance(record["name"], str):
        return "field 'name' is not a string"
    return None


@implementer(IRecordStore, IEventStore)
class SQLiteStore:
    """
    Container records and the event log in one SQLite database.

    Opening checks the file: a file that is not SQLite, is truncated, fails
    SQLite's C{quick_check} or holds an unknown schema raises
    L{StoreCorrupt}, a L{BackendError}, naming the file.  Every write is a
    committed transaction when the method returns.

    @ivar path: the database file.
    @ivar keepEvents: the event log keeps at least this many newest events.
    """

    log = Logger()

    def __init__(
        self,
        path: str,
        keepEvents: int = DEFAULT_KEEP_EVENTS,
        sync: str = "normal",
        holds: str = "records",
    ) -> None:
        """
        @param holds: C{"records"} (the backend's container records) or
            C{"events"} (the daemon's event log): what the messages say is
            lost, and what to do.
        """
        if sync.lower() not in ("normal", "full"):
            raise ValueError(f"sync must be 'normal' or 'full', not {sync!r}")
        if holds not in ("records", "events"):
            raise ValueError(f"holds must be 'records' or 'events', not {holds!r}")
        self.path = path
        self.holds = holds
        self.keepEvents = keepEvents
        self._quarantined: dict[str, str] = {}
        #: The raw text of each record put aside since the store was opened.
        self._remains: list[tuple[str, bytes]] = []
        # Prune in batches: a DELETE on every append would double its cost.
        self._pruneSlack = max(1, keepEvents // 10)
        self.prunedThrough = 0  # the newest id pruned since it was opened
        checkDatabaseFile(path, holds)
        self._checkpoints: ThreadedCheckpoints | None = None
        self._db, self._exclusive = connect(path, holds, lambda db: self._setUp(db, sync.upper()))
        if self._exclusive:
            self.log.warn(
                "{what}: its disk is full, so it is open in exclusive locking mode (no "
                "-shm index on disk; nothing else can read it while this daemon runs); "
                "what cannot be written waits until there is room",
                what=self._what,
            )

    @property
    def _what(self) -> str:
        return describe(self.path, self.holds)

    def _setUp(self, db: sqlite3.Connection, sync: str) -> None:
        self._db = db
        mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise BackendError(f"state database {self.path}: cannot use WAL ({mode})")
        db.execute(f"PRAGMA synchronous={sync}")
        check = [row[0] for row in db.execute("PRAGMA quick_check(20)")]
        if check != ["ok"]:
            raise StoreCorrupt(
                f"{self._what} is corrupt ({checkReport(check)}); "
                f"{moveAside(self.path, self.holds)}"
            )
        version = db.execute("PRAGMA user_version").fetchone()[0]
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if version == 0 and not tables:
            db.execute("BEGIN IMMEDIATE")
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            db.execute("COMMIT")
        elif version != SCHEMA_VERSION:
            raise StoreCorrupt(
                f"state database {self.path} has schema version {version}, "
                f"this pycm knows {SCHEMA_VERSION}"
            )
        elif not {"containers", "events", "meta"} <= tables:
            raise StoreCorrupt(
                f"state database {self.path} lacks tables "
                f"{sorted({'containers', 'events', 'meta'} - tables)}"
            )
        columns = {row[1] for row in db.execute("PRAGMA table_info(events)")}
        if "detail" not in columns:
            # Added for the swarm backend's task events; an older pycm
            # reads the table by column name, so it still opens the file.
            db.execute("ALTER TABLE events ADD COLUMN detail TEXT")
        self._eventCount = db.execute("SELECT count(*) FROM events").fetchone()[0]

    def checkpointInThread(self, reactor: Any) -> None:
        """
        From now on, checkpoint the log in a thread (L{ThreadedCheckpoints}),
        not in a commit: not in exclusive locking mode, where no other
        connection can open the database, nor on a C{reactor} with no
        threads (a test's clock).
        """
        if not IReactorFromThreads.providedBy(reactor) or self._exclusive:
            return
        if self._db is not None and self._checkpoints is None:
            try:
                beside = openBeside(self.path)
            except sqlite3.Error as e:
                self.log.warn(
                    "{what}: its log is checkpointed in commits, as SQLite does "
                    "(no second connection: {error})",
                    what=self._what,
                    error=str(e),
                )
                return
            self._checkpoints = ThreadedCheckpoints(reactor, self.path, beside)
            self._checkpoints.attach(self._db)

    def close(self) -> None:
        """Close the database (idempotent), after a checkpoint in progress."""
        if self._checkpoints is not None:
            self._checkpoints.close()
            self._checkpoints = None
        if self._db is not None:
            self._db.close()
            self._db = None  # type: ignore[assignment]

    def _write(self, sql: str, args: Iterable[Any]) -> None:
        if self._db is None:
            raise BackendError(f"state database {self.path} is closed")
        try:
            self._db.execute(sql, tuple(args))
        except sqlite3.Error as e:
            raise BackendError(f"cannot write state database {self.path}: {e}") from e
        if self._checkpoints is not None:
            self._checkpoints.committed()

    # IRecordStore

    def load(self) -> list[dict[str, Any]]:
        """
        Every saved record, in name order.  A damaged record (not UTF-8
        JSON, not an object, without a string C{name} or naming another
        container than its key) is put in quarantine by its row, under its
        key (see L{quarantine}), and left out: one bad row never keeps the
        others from being served.

        @raise StoreCorrupt: if the file itself is damaged.
        """
        try:
            rows = self._db.execute(
                "SELECT rowid, CAST(name AS BLOB), CAST(record AS BLOB) "
                "FROM containers ORDER BY name"
            ).fetchall()
        except sqlite3.DatabaseError as e:
            raise StoreCorrupt(f"state database {self.path} is corrupt: {e}") from e
        records = []
        for rowid, rawName, text in rows:
            name = bytes(rawName or b"").decode("utf-8", "replace")
            try:
                record = json.loads(bytes(text or b""))
            except ValueError as e:
                self._quarantineRow(rowid, name, f"not JSON: {e}")
                continue
            if not isinstance(record, dict):
                self._quarantineRow(rowid, name, "not a JSON object")
            elif (problem := nameProblem(record)) is not None:
                # Put aside here, where its key is known: nothing else could
                # find its row (it names no container).
                self._quarantineRow(rowid, name, problem)
            elif record["name"] != name:
                self._quarantineRow(rowid, name, f"it names {record.get('name')!r}, not {name!r}")
            else:
                records.append(record)
        return records

    def quarantine(self, name: str, reason: str) -> None:
        """
        Put C{name}'s record aside: its row moves, raw bytes and all, to the
        C{quarantine} table (for an operator to look at), and it is reported
        by L{quarantined} and in the log.  If the move cannot be written
        the record stays where it is (and is put aside again next start).
        """
        try:
            row = self._db.execute(
                "SELECT rowid FROM containers WHERE name = ?", (name,)
            ).fetchone()
        except sqlite3.Error:
            row = None
        self._quarantineRow(row[0] if row else None, name, reason)

    def _quarantineRow(self, rowid: int | None, name: str, reason: str) -> None:
        """Put aside the row C{rowid} (None: there is none) of key C{name}."""
        kept = "it is not served" if rowid is None else (
            "it is kept aside in the quarantine table and not served"
        )
        self.log.error(
            "state database {path}: the record of {name!r} is damaged ({reason}); {kept}",
            path=self.path, name=name, reason=reason, kept=kept,
        )
        self._quarantined[name] = reason
        if rowid is None:
            return
        try:
            row = self._db.execute(
                "SELECT CAST(record AS BLOB) FROM containers WHERE rowid = ?", (rowid,)
            ).fetchone()
        except sqlite3.Error:
            row = None
        if row is not None:
            self._remains.append((name, bytes(row[0] or b"")))
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(_QUARANTINE_SCHEMA)
                self._db.execute(
                    "INSERT INTO quarantine (name, record, reason, time) "
                    "SELECT CAST(name AS BLOB), CAST(record AS BLOB), ?, ? "
                    "FROM containers WHERE rowid = ?",
                    (reason, time.time(), rowid),
                )
                self._db.execute("DELETE FROM containers WHERE rowid = ?", (rowid,))
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
        except sqlite3.Error as e:
            self.log.error(
                "could not move the record of {name!r} to quarantine: {error}",
                name=name, error=e,
            )

    def remains(self) -> list[tuple[str, bytes]]:
        """The name and raw text of each record put aside since it was opened."""
        return list(self._remains)

    def quarantined(self) -> list[dict[str, str]]:
        """The records in quarantine: C{{"name": ..., "reason": ...}}, by name."""
        found = dict(self._quarantined)
        try:
            rows = self._db.execute(
                "SELECT CAST(name AS BLOB), reason FROM quarantine ORDER BY id"
            ).fetchall()
        except sqlite3.Error:
            rows = []  # no table: nothing was ever put aside
        for name, reason in rows:
            found.setdefault(bytes(name).decode("utf-8", "replace"), reason)
        return [{"name": name, "reason": found[name]} for name in sorted(found)]

    def save(self, name: str, record: dict[str, Any]) -> None:
        """Durably save C{record} under C{name}, replacing any older one."""
        text = json.dumps(record, separators=(",", ":"), sort_keys=True)
        self._write(
            "INSERT INTO containers (name, record) VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET record = excluded.record",
            (name, text),
        )

    def delete(self, name: str) -> None:
        """Durably forget C{name}'s record (no error if there is none)."""
        self._write("DELETE FROM containers WHERE name = ?", (name,))

    def saveMany(self, changes: Iterable[tuple[str, dict[str, Any] | None]]) -> None:
        """
        Durably save (a dict) or forget (None) several records in one
        transaction (a group commit): all of them are written, or none.

        @raise BackendError: if the transaction could not be committed.
        """
        rows = []
        gone = []
        for name, record in changes:
            if record is None:
                gone.append((name,))
            else:
                rows.append((name, json.dumps(record, separators=(",", ":"), sort_keys=True)))
        self._transaction(
            ("INSERT INTO containers (name, record) VALUES (?, ?) "
             "ON CONFLICT (name) DO UPDATE SET record = excluded.record", rows),
            ("DELETE FROM containers WHERE name = ?", gone),
        )

    def _transaction(self, *statements: tuple[str, list[tuple[Any, ...]]]) -> None:
        """Run each statement over its rows in one transaction, committed."""
        if self._db is None:
            raise BackendError(f"state database {self.path} is closed")
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for sql, rows in statements:
                    if rows:
                        self._db.executemany(sql, rows)
                self._db.execute("COMMIT")
            except BaseException:
                # SQLite may have rolled back already (SQLITE_FULL...).
                try:
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
                raise
        except sqlite3.Error as e:
            raise BackendError(f"cannot write state database {self.path}: {e}") from e
        if self._checkpoints is not None:
            self._checkpoints.committed()

    # IEventStore

    def lastId(self) -> int:
        """The highest event id ever stored, 0 if none."""
        row = self._db.execute(
            "SELECT max(value) FROM ("
            " SELECT max(id) AS value FROM events"
            " UNION ALL SELECT value FROM meta WHERE key = 'last_event_id')"
        ).fetchone()
        return row[0] or 0

    def append(self, event: ContainerEvent) -> None:
        """
        Durably store a numbered event; older events beyond L{keepEvents}
        (plus a small slack) are pruned (the newest pruned: L{prunedThrough}).

        @raise ValueError: if the event has no id.
        @raise BackendError: if the id is not above every stored id.
        """
        self.appendMany([event])

    def _newestPruned(self, events: list[ContainerEvent]) -> int:
        """The newest id a prune drops once C{events} are in: the (keepEvents + 1)-th newest."""
        stored = self.keepEvents - len(events)
        if stored < 0:
            return events[-1 - self.keepEvents].id or 0
        row = self._db.execute(
            "SELECT id FROM events ORDER BY id DESC LIMIT 1 OFFSET ?", (stored,)
        ).fetchone() if self._db is not None else None
        return row[0] if row else 0

    def appendMany(self, events: list[ContainerEvent]) -> None:
        """
        Durably store several numbered events, in order, in one transaction
        (a group commit): all of them are stored, or none.

        @raise ValueError: if an event has no id.
        @raise BackendError: as L{append}.
        """
        if any(event.id is None for event in events):
            raise ValueError("only numbered events can be stored")
        if not events:
            return
        rows = [
            (e.id, e.action, e.name, e.time, e.exitCode, encodeDetail(e)) for e in events
        ]
        count = self._eventCount
        prune: list[tuple[Any, ...]] = []
        prunedThrough = self.prunedThrough
        if count + len(rows) > self.keepEvents + self._pruneSlack:
            prune = [(self.keepEvents,)]
            prunedThrough = max(prunedThrough, self._newestPruned(events))
        try:
            self._transaction(
                ("INSERT INTO events (id, action, name, time, exit_code, detail) "
                 "VALUES (?, ?, ?, ?, ?, ?)", rows),
                # The highest id is also kept apart from the rows (see append).
                ("INSERT INTO meta (key, value) VALUES ('last_event_id', ?) "
                 "ON CONFLICT (key) DO UPDATE SET value = max(value, excluded.value)",
                 [(events[-1].id,)]),
                ("DELETE FROM events WHERE id NOT IN "
                 "(SELECT id FROM events ORDER BY id DESC LIMIT ?)", prune),
            )
        except BackendError as e:
            if isinstance(e.__cause__, sqlite3.IntegrityError):
                ids = ", ".join(str(event.id) for event in events)
                raise BackendError(f"event id {ids} is already stored in {self.path}") from e
            raise
        self._eventCount = self.keepEvents if prune else count + len(rows)
        self.prunedThrough = prunedThrough

    def since(self, eventId: int, limit: int | None = None) -> list[ContainerEvent]:
        """The stored events with an id above C{eventId}, oldest first."""
        sql = (
            "SELECT id, action, name, time, exit_code, detail FROM events "
            "WHERE id > ? ORDER BY id"
        )
        args: tuple[Any, ...] = (eventId,)
        if limit is not None:
            sql += " LIMIT ?"
            args += (limit,)
        try:
            rows = self._db.execute(sql, args).fetchall()
        except sqlite3.DatabaseError as e:
            raise StoreCorrupt(f"state database {self.path} is corrupt: {e}") from e
        return [
            ContainerEvent(action=a, name=n, time=t, exitCode=c, id=i, **decodeDetail(d))
            for (i, a, n, t, c, d) in rows
        ]
