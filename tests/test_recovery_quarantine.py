"""
Tests for how the supervisor's recovery (L{pycm.backends.supervisor.recovery})
puts aside and names a saved record with no name, on the memory store and
the SQLite store.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.logger import Logger, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from pycm.backends.memory import MemoryBackend
from pycm.backends.supervisor.recovery import Recovery
from pycm.backends.supervisor.remains import quarantineName
from pycm.interfaces import IRecordStore
from pycm.model import ContainerSpec
from pycm.store import SQLiteStore
from tests.test_supervisor import SupervisorTestCase, spec


class NamelessRecordTests(SupervisorTestCase):
    """A record that lost its C{name} field, kept under another key."""

    def setUp(self) -> None:
        super().setUp()
        self.logged: list[dict[str, Any]] = []
        self.patch(Recovery, "_log", Logger(observer=self.logged.append))
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
        """A backend opened on C{store}."""
        backend = MemoryBackend(self.clock, runtime=self.runtime, recordStore=store)
        self.successResultOf(backend.open())
        return backend

    def messages(self) -> str:
        return "\n".join(formatEvent(event) for event in self.logged)

    def test_listedById(self) -> None:
        """
        It is put aside as C{<no name, id ID>} (was: C{None}) in the
        backend's C{quarantined} (C{info}) and in the log, which says that
        it stays among the records; the others are served.
        """
        self.create(spec("web"))
        self.create(spec("good"))
        record = self.nameless("web")
        self.store.records["web"] = json.dumps(record)
        backend = self.reopen(self.store)
        label = f"<no name, id {record['id']}>"
        [entry] = backend.quarantined
        self.assertEqual(entry["name"], label)
        self.assertIn("field 'name' is missing", entry["reason"])
        self.assertEqual(list(backend._records), ["good"])
        messages = self.messages()
        self.assertIn(f"the record {label} has no name", messages)
        self.assertIn("put aside again at each start", messages)
        self.assertNotIn("None", messages)

    def test_noId(self) -> None:
        """Without a readable id either, it is C{<no name, no id>}."""
        self.create(spec("web"))
        self.store.records["web"] = json.dumps(self.nameless("web", id=7))
        backend = self.reopen(self.store)
        self.assertEqual([q["name"] for q in backend.quarantined], ["<no name, no id>"])

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
        self.assertNotIn("None", [q["name"] for q in backend.quarantined])
        self.assertIn("None", self.store.records)
        self.assertEqual(list(backend._records), ["None"])

    def test_sqliteStore(self) -> None:
        """
        The same in C{state.db}: listed and logged by its id; its row
        stays (the store cannot tell its key); a row named C{None} is
        neither moved to the quarantine table nor listed.
        """
        self.create(spec("web"))
        record = self.nameless("web")
        store = SQLiteStore(self.mktemp())
        store.save("None", json.loads(self.store.records["web"]) | {"name": "None", "id": "f" * 64})
        store.save("web", record)
        backend = self.reopen(store)
        label = f"<no name, id {record['id']}>"
        self.assertEqual([q["name"] for q in backend.quarantined], [label])
        self.assertEqual(list(backend._records), ["None"])
        self.assertIn(f"the record of {label!r} is damaged", self.messages())
        store.close()
        again = SQLiteStore(store.path)
        self.assertEqual([r.get("name") for r in again.load()], ["None", None])
        self.assertEqual(again.quarantined(), [])
        again.close()


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
