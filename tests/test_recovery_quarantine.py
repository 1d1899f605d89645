"""
Tests for how the supervisor's recovery (L{pycm.backends.supervisor.recovery})
puts aside a saved record with no name (the store does, by its key) and
stops its last run, on the memory store and the SQLite store.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.logger import Logger, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from pycm.backends.memory import MemoryBackend
from pycm.backends.supervisor.remains import quarantineName
from pycm.interfaces import IRecordStore
from pycm.model import ContainerSpec
from pycm.store import SQLiteStore
from tests.test_supervisor import SupervisorTestCase, spec


class NamelessRecordTests(SupervisorTestCase):
    """A record that lost its C{name} field, kept under its own key."""

    def setUp(self) -> None:
        super().setUp()
        self.logged: list[dict[str, Any]] = []
        self.patch(SQLiteStore, "log", Logger(observer=self.logged.append))

    def nameless(self, key: str, **changes: Any) -> dict[str, Any]:
        """C{key}'s saved record without its name (and with C{changes})."""
        record = json.loads(self.store.records[key])
        del record["name"]
        record.update(changes)
        return dict(record)

    def create(self, container: ContainerSpec) -> None:
        """Create C{container} (not started: nothing to reclaim at open)."""
        self.successResultOf(self.backend.create(container))

    def reopen(self, store: IRecordStore) -> MemoryBackend:
        """A backend opened on C{store}, once its runs are stopped (20 s)."""
        backend = MemoryBackend(self.clock, runtime=self.runtime, recordStore=store)
        opened = backend.open()
        self.clock.advance(20)
        self.successResultOf(opened)
        return backend

    def sqliteStore(self, records: dict[str, dict[str, Any]]) -> SQLiteStore:
        """A C{state.db} holding C{records} by key."""
        store = SQLiteStore(self.mktemp())
        self.addCleanup(store.close)
        for key, record in records.items():
            store.save(key, record)
        return store

    def messages(self) -> str:
        return "\n".join(formatEvent(event) for event in self.logged)

    def test_putAsideByKey(self) -> None:
        """
        It is put aside under its key, moved out of the records (was:
        listed as C{<no name, id ID>} and left among them, put aside again
        at each start); the others are served.
        """
        self.create(spec("web"))
        self.create(spec("good"))
        self.store.records["web"] = json.dumps(self.nameless("web"))
        backend = self.reopen(self.store)
        self.assertEqual(
            backend.quarantined, [{"name": "web", "reason": "field 'name' is missing"}]
        )
        self.assertEqual(list(self.store.records), ["good"])
        self.assertEqual(list(backend._records), ["good"])

    def test_notAString(self) -> None:
        """A name that is not a string is no name either."""
        self.create(spec("web"))
        self.store.records["web"] = json.dumps(self.nameless("web", name=["web"]))
        backend = self.reopen(self.store)
        self.assertEqual(
            backend.quarantined, [{"name": "web", "reason": "field 'name' is not a string"}]
        )

    def test_eachListed(self) -> None:
        """
        Two nameless records without an id are listed apart (was: both
        C{<no name, no id>}, listed once).
        """
        self.create(spec("web"))
        self.create(spec("app"))
        for key in ("web", "app"):
            self.store.records[key] = json.dumps(self.nameless(key, id=7))
        backend = self.reopen(self.store)
        self.assertEqual([q["name"] for q in backend.quarantined], ["app", "web"])

    def test_containerNamedNoneKept(self) -> None:
        """
        A served container named C{None} stays in the store and is not
        listed as put aside (was: the nameless record's quarantine took
        its record away).
        """
        self.create(spec("None"))
        self.create(spec("web"))
        self.store.records["web"] = json.dumps(self.nameless("web"))
        backend = self.reopen(self.store)
        self.assertEqual([q["name"] for q in backend.quarantined], ["web"])
        self.assertIn("None", self.store.records)
        self.assertEqual(list(backend._records), ["None"])

    def namelessRun(self) -> tuple[int, dict[str, Any]]:
        """
        The pid of web's run, left running by a daemon that died (never
        closed), and web's saved record without its name.
        """
        pid = self.run_(spec("web")).pid
        assert pid is not None
        return pid, self.nameless("web")

    def assertStopped(self, pid: int, store: IRecordStore, record: dict[str, Any]) -> None:
        """The run of C{pid} ended, and C{store}'s remains are web's C{record}."""
        run = self.runtime.runs.get(pid)
        self.assertTrue(run is None or run.done, "the nameless record's run left running")
        remains = [(name, json.loads(text)) for name, text in store.remains()]
        self.assertEqual(remains, [("web", record)])

    def test_runStopped(self) -> None:
        """
        What its last run left running is stopped, by its pid and start
        time (was: left running: nothing of it was among the remains).
        """
        pid, record = self.namelessRun()
        self.store.records["web"] = json.dumps(record)
        self.reopen(self.store)
        self.assertStopped(pid, self.store, record)

    def test_runStoppedSQLite(self) -> None:
        """The same in C{state.db}."""
        pid, record = self.namelessRun()
        store = self.sqliteStore({"web": record})
        self.reopen(store)
        self.assertStopped(pid, store, record)

    def test_sqliteStore(self) -> None:
        """
        In C{state.db}: its row moves to the quarantine table under its key
        (was: it stayed, listed by its id), and the log says so; a row
        named C{None} is neither moved nor listed.
        """
        self.create(spec("web"))
        record = self.nameless("web")
        named = json.loads(self.store.records["web"]) | {"name": "None", "id": "f" * 64}
        store = self.sqliteStore({"None": named, "web": record})
        backend = self.reopen(store)
        self.assertEqual([q["name"] for q in backend.quarantined], ["web"])
        self.assertEqual(list(backend._records), ["None"])
        self.assertIn(
            "the record of 'web' is damaged (field 'name' is missing);"
            " it is kept aside in the quarantine table",
            self.messages(),
        )
        store.close()
        again = SQLiteStore(store.path)
        self.addCleanup(again.close)
        self.assertEqual([r["name"] for r in again.load()], ["None"])
        self.assertEqual(
            again.quarantined(), [{"name": "web", "reason": "field 'name' is missing"}]
        )


class QuarantineNameTests(SynchronousTestCase):
    """L{quarantineName}: a record's own name, else one that says it has none."""

    def test_names(self) -> None:
        """A string name is kept; anything else is no name."""
        ident = "0123456789ab"
        self.assertEqual(quarantineName({"name": "web", "id": ident}), "web")
        for name in (None, 5, ["web"]):
            self.assertEqual(
                quarantineName({"name": name, "id": ident}), f"<no name, id {ident}>"
            )
        self.assertEqual(quarantineName({"id": ident}), f"<no name, id {ident}>")
        self.assertEqual(quarantineName({"id": "x\ny"}), "<no name, no id>")
        self.assertEqual(quarantineName({}), "<no name, no id>")
