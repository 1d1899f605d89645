"""Tests for L{pycm.events}: numbering, keeping and publishing events."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.logger import Logger, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from pycm.events import RETAINED_EVENTS, RETRY_INTERVAL, EventLog, MemoryEventStore
from pycm.model import ContainerEvent, ProgressEvent


class FlakyStore(MemoryEventStore):
    """A store whose disk may be full."""

    broken = False

    def append(self, event: ContainerEvent) -> None:
        if self.broken:
            raise OSError("database or disk is full")
        super().append(event)


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

    def test_unstoredEventKept(self) -> None:
        """
        Events the store cannot take (a full disk) are numbered, published
        and replayed by --since as usual, kept in memory in order, and
        stored by the retry once the store works again; the log says so
        once when it starts and once, with the count, when it ends.
        """
        store = FlakyStore()
        clock = Clock()
        log = EventLog(store, clock=clock)
        logged: list[dict] = []
        self.patch(EventLog, "log", Logger(observer=logged.append))
        seen: list[object] = []
        log.subscribe(seen.append)
        log.record(ContainerEvent("create", "a", 1.0))
        store.broken = True
        for action in ("start", "kill", "die"):
            log.record(ContainerEvent(action, "a", 2.0))
        self.assertEqual([e.id for e in seen], [1, 2, 3, 4])  # type: ignore[attr-defined]
        self.assertEqual([e.id for e in log.since(0)], [1, 2, 3, 4])
        self.assertEqual([e.id for e in log.since(2)], [3, 4])
        self.assertEqual([e.id for e in log.since(0, limit=2)], [1, 2])
        self.assertEqual(log.unsavedCount, 3)
        self.assertEqual(len(logged), 1)
        self.assertIn("disk is full", formatEvent(logged[0]))
        clock.advance(RETRY_INTERVAL)
        self.assertEqual(log.unsavedCount, 3)
        store.broken = False
        clock.advance(RETRY_INTERVAL)
        self.assertEqual(log.unsavedCount, 0)
        self.assertEqual([e.id for e in store.since(0, 100)], [1, 2, 3, 4])
        self.assertEqual(len(logged), 2)
        self.assertIn("3 had waited", formatEvent(logged[1]))
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_newEventStoresWhatWaitsFirst(self) -> None:
        """Without a clock, the next event stores those that wait, in order."""
        store = FlakyStore()
        log = EventLog(store)
        self.patch(EventLog, "log", Logger(observer=lambda event: None))
        store.broken = True
        log.record(ContainerEvent("create", "a", 1.0))
        log.record(ContainerEvent("start", "a", 1.0))
        store.broken = False
        log.record(ContainerEvent("die", "a", 1.0))
        self.assertEqual([e.id for e in store.since(0, 100)], [1, 2, 3])

    def test_waitingIsBounded(self) -> None:
        """
        At most RETAINED_EVENTS wait in memory; older ones are dropped, and
        ids go on (never reused).
        """
        store = FlakyStore()
        store.broken = True
        log = EventLog(store)
        self.patch(EventLog, "log", Logger(observer=lambda event: None))
        for i in range(RETAINED_EVENTS + 5):
            log.record(ContainerEvent("create", f"c{i}", 1.0))
        self.assertEqual(log.unsavedCount, RETAINED_EVENTS)
        self.assertEqual(log.since(0)[0].id, 6)
        store.broken = False
        log.record(ContainerEvent("create", "last", 1.0))
        self.assertEqual(store.lastId(), RETAINED_EVENTS + 6)

    def test_closeSaysWhatIsLost(self) -> None:
        """Closing with events still waiting logs how many; no timer is left."""
        store = FlakyStore()
        store.broken = True
        clock = Clock()
        log = EventLog(store, clock=clock)
        logged: list[dict] = []
        self.patch(EventLog, "log", Logger(observer=logged.append))
        log.record(ContainerEvent("create", "a", 1.0))
        log.close()
        self.assertIn("1 events could not be stored", formatEvent(logged[-1]))
        self.assertEqual(clock.getDelayedCalls(), [])

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
