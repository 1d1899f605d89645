"""
The shared suite of L{IRecordStore}: L{RecordStoreTests}, run on every
record store (the memory ones and SQLite) so that a fake cannot drift.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from pycm.interfaces import IRecordStore
from pycm.testing.conformance.mixin import SynchronousTestCaseMixin

__all__ = ["RecordStoreFixture", "RecordStoreTests"]


class RecordStoreFixture(Protocol):
    """
    What L{RecordStoreTests} needs to know of a record store.

      - C{keepsRecords}: False for a store that keeps nothing (the memory
        backend's default, whose containers do not outlive the daemon):
        every call succeeds, and L{IRecordStore.load},
        L{IRecordStore.quarantined} and L{IRecordStore.remains} are empty.
      - C{makeStore(testCase)}: a new, empty store; C{testCase.addCleanup}
        undoes it.
      - C{reopen(testCase, store)}: the store a restarted daemon opens in
        C{store}'s place (closing C{store} if it must).
    """

    @property
    def keepsRecords(self) -> bool: ...

    def makeStore(self, testCase: SynchronousTestCase) -> IRecordStore: ...

    def reopen(self, testCase: SynchronousTestCase, store: IRecordStore) -> IRecordStore: ...


WEB = {"name": "web", "state": "running", "pid": 42, "labels": {"a": "é"}, "exit": None}
DB = {"name": "db", "state": "exited", "command": ["sleep", "1"]}
WEB_DAMAGED = {"name": "web", "reason": "damaged"}


class RecordStoreTests(SynchronousTestCaseMixin):
    """
    The behaviour every L{IRecordStore} must have, as a mixin: subclass it
    with a trial C{SynchronousTestCase} and set C{fixture}.
    """

    fixture: RecordStoreFixture

    def setUp(self) -> None:
        self.store = self.fixture.makeStore(self)

    def kept(self, records: list[Any]) -> list[Any]:
        """C{records} if the store keeps records, else nothing."""
        return records if self.fixture.keepsRecords else []

    def loaded(self, store: IRecordStore | None = None) -> list[dict[str, Any]]:
        """What the store loads, by name (a store may give any order)."""
        return sorted((store or self.store).load(), key=lambda record: record["name"])

    def test_interface(self) -> None:
        """The store provides L{IRecordStore}."""
        self.assertTrue(verifyObject(IRecordStore, self.store))

    def test_new(self) -> None:
        """A new store has no records, nothing in quarantine, no remains."""
        self.assertEqual(self.store.load(), [])
        self.assertEqual(self.store.quarantined(), [])
        self.assertEqual(self.store.remains(), [])

    def test_saveLoad(self) -> None:
        """Saved records load back, equal."""
        self.store.save("web", WEB)
        self.store.save("db", DB)
        self.assertEqual(self.loaded(), self.kept([DB, WEB]))

    def test_saveReplaces(self) -> None:
        """Saving a name again replaces its record."""
        self.store.save("web", WEB)
        self.store.save("web", dict(WEB, state="exited"))
        self.assertEqual(self.loaded(), self.kept([dict(WEB, state="exited")]))

    def test_delete(self) -> None:
        """A deleted record is gone; deleting an unknown name is no error."""
        self.store.save("web", WEB)
        self.store.save("db", DB)
        self.store.delete("web")
        self.store.delete("nosuch")
        self.assertEqual(self.loaded(), self.kept([DB]))

    def test_durable(self) -> None:
        """What was saved and deleted is so for a restarted daemon too."""
        self.store.save("web", WEB)
        self.store.save("db", DB)
        self.store.delete("db")
        store = self.fixture.reopen(self, self.store)
        self.assertEqual(self.loaded(store), self.kept([WEB]))

    def test_quarantine(self) -> None:
        """
        A record put in quarantine is no longer loaded; it is listed with
        its reason, and its text as stored is among the remains.
        """
        self.store.save("web", WEB)
        self.store.save("db", DB)
        self.store.quarantine("web", "damaged")
        self.assertEqual(self.loaded(), self.kept([DB]))
        self.assertEqual(self.store.quarantined(), self.kept([WEB_DAMAGED]))
        remains = [(name, json.loads(text)) for name, text in self.store.remains()]
        self.assertEqual(remains, self.kept([("web", WEB)]))
        for _, text in self.store.remains():
            self.assertIsInstance(text, bytes)

    def test_quarantineOrder(self) -> None:
        """C{quarantined} lists the records put aside in name order."""
        for name in ("c", "a", "b"):
            self.store.save(name, {"name": name})
            self.store.quarantine(name, f"bad {name}")
        expected = [{"name": n, "reason": f"bad {n}"} for n in ("a", "b", "c")]
        self.assertEqual(self.store.quarantined(), self.kept(expected))

    def test_quarantineUnknown(self) -> None:
        """
        Putting aside a name that has no record never raises, and leaves
        no remains (there was no text to keep).
        """
        self.store.save("db", DB)
        self.store.quarantine("ghost", "no such record")
        self.assertEqual(self.loaded(), self.kept([DB]))
        self.assertEqual(self.store.remains(), [])

    def test_quarantineDurable(self) -> None:
        """What is in quarantine stays there for a restarted daemon."""
        self.store.save("web", WEB)
        self.store.quarantine("web", "damaged")
        store = self.fixture.reopen(self, self.store)
        self.assertEqual(store.load(), [])
        self.assertEqual(store.quarantined(), self.kept([WEB_DAMAGED]))

    def test_namelessPutAside(self) -> None:
        """
        A saved record without a string C{name} is put aside at load under
        its key (it names no container: nothing else could find it), its
        text among the remains; a record named C{None} is not.
        """
        self.store.save("web", {"state": "running", "pid": 42})
        self.store.save("app", {"name": 5})
        self.store.save("None", {"name": "None"})
        self.assertEqual(self.loaded(), self.kept([{"name": "None"}]))
        self.assertEqual(
            self.store.quarantined(),
            self.kept([
                {"name": "app", "reason": "field 'name' is not a string"},
                {"name": "web", "reason": "field 'name' is missing"},
            ]),
        )  # fmt: skip
        remains = sorted((name, json.loads(text)) for name, text in self.store.remains())
        self.assertEqual(
            remains, self.kept([("app", {"name": 5}), ("web", {"state": "running", "pid": 42})])
        )
        store = self.fixture.reopen(self, self.store)
        self.assertEqual(self.loaded(store), self.kept([{"name": "None"}]))
