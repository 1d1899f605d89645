"""Tests for L{pycm.events}: numbering, keeping and publishing events."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from pycm.events import EventLog, MemoryEventStore
from pycm.model import ContainerEvent, ProgressEvent


class BrokenStore(MemoryEventStore):
    """A store whose disk is full."""

    def append(self, event: ContainerEvent) -> None:
        raise OSError("database or disk is full")


class EventLogTests(SynchronousTestCase):
    def test_numbersInOrder(self) -> None:
        """Events get increasing ids from the store's last id on."""
        store = MemoryEventStore()
        store.append(ContainerEvent("create", "a", 1.0, id=41))
        log = EventLog(store)
        seen: list[object] = []
        log.subscribe(seen.append)
        log.record(ContainerEvent("start", "a", 2.0))
        log.record(ContainerEvent("die", "a", 3.0, exitCode=0))
        self.assertEqual([e.id for e in seen], [42, 43])  # type: ignore[attr-defined]
        self.assertEqual([e.id for e in log.since(41)], [42, 43])

    def test_unstoredEventNotPublished(self) -> None:
        """
        An event the store could not keep is not published and uses no id:
        subscribers never see what --since could not replay.
        """
        log = EventLog(BrokenStore())
        seen: list[object] = []
        log.subscribe(seen.append)
        self.assertRaises(OSError, log.record, ContainerEvent("create", "a", 1.0))
        self.flushLoggedErrors(OSError)
        self.assertEqual((seen, log.lastId), ([], 0))

    def test_progressNotKept(self) -> None:
        """Progress events are published, never numbered or stored."""
        log = EventLog()
        seen: list[object] = []
        log.subscribe(seen.append)
        progress = ProgressEvent("web", "pull", "busybox", 1.0)
        log.record(progress)
        self.assertEqual((seen, log.lastId, log.since(0)), ([progress], 0, []))

    def test_retention(self) -> None:
        """The memory store keeps the last 10,000 events."""
        log = EventLog()
        for i in range(10_050):
            log.record(ContainerEvent("create", f"c{i}", 1.0))
        kept = log.since(0)
        self.assertEqual((len(kept), kept[0].id, kept[-1].id), (10_000, 51, 10_050))
