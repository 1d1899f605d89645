"""Tests for L{pycm.daemon.eventlog}: numbering, keeping and publishing events."""

from __future__ import annotations

import os
import stat

from twisted.internet.task import Clock
from twisted.logger import Logger, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from pycm.daemon.eventlog import (
    MARK_RESERVE,
    RETAINED_EVENTS,
    RETRY_INTERVAL,
    EventIdMark,
    EventLog,
    MemoryEventStore,
)
from pycm.model import ContainerEvent, ProgressEvent
from pycm.store import SQLiteStore


class FlakyStore(MemoryEventStore):
    """A store whose disk may be full."""

    broken = False

    def append(self, event: ContainerEvent) -> None:
        if self.broken:
            raise OSError("database or disk is full")
        super().append(event)


class FlakyMark(EventIdMark):
    """
    An event id mark whose writes fail while C{broken}: a fake, because a
    disk on which even a write in place fails cannot be made here without
    root (the full-disk end-to-end test covers the real full disk).
    """

    broken = False

    def _writeInPlace(self, value: int) -> None:
        if self.broken:
            raise OSError(28, "No space left on device")
        super()._writeInPlace(value)


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


class EventIdMarkTests(SynchronousTestCase):
    """
    L{EventIdMark}: a high-water mark kept apart from the event store, so
    that ids never repeat when the store is lost (on a real file system).
    """

    def setUp(self) -> None:
        self.dir = self.mktemp()
        os.makedirs(self.dir)
        self.path = os.path.join(self.dir, "events.mark")

    def makeLog(self, store: MemoryEventStore | None = None, step: int = 10) -> EventLog:
        return EventLog(store or MemoryEventStore(), mark=EventIdMark(self.path, step=step))

    def record(self, log: EventLog, count: int) -> list[int]:
        seen: list[ContainerEvent] = []
        log.subscribe(seen.append)  # type: ignore[arg-type]
        for i in range(count):
            log.record(ContainerEvent("create", f"c{i}", 1.0))
        log.unsubscribe(seen.append)  # type: ignore[arg-type]
        return [e.id for e in seen]  # type: ignore[misc]

    def test_idsGoOnAfterStoreLost(self) -> None:
        """
        With the event store lost (a fresh, empty one), the ids go on above
        every id handed out before, after a clean stop or a crash.
        """
        log = self.makeLog()
        self.assertEqual(self.record(log, 25), list(range(1, 26)))
        log.close()
        self.assertEqual(self.record(self.makeLog(), 3), [26, 27, 28])
        # A crash: no close, the mark stays ahead; ids skip, never repeat.
        after = self.record(self.makeLog(), 1)
        self.assertGreater(after[0], 28)
        self.assertLessEqual(after[0], 28 + 10 + 1)

    def test_cleanRestartLeavesNoGap(self) -> None:
        """With the store kept, a clean restart goes on at the next id."""
        store = MemoryEventStore()
        log = self.makeLog(store)
        self.record(log, 5)
        log.close()
        self.assertEqual(self.record(self.makeLog(store), 2), [6, 7])

    def test_writtenAhead(self) -> None:
        """
        The mark is written once per step, ahead of the ids used, in place
        (the same file, always the same size: a full disk has room for it).
        """
        log = self.makeLog(step=10)
        self.record(log, 1)
        with open(self.path) as f:
            self.assertEqual(f.read(), f"{11:020d}\n")
        before = os.stat(self.path).st_ino
        self.record(log, 10)
        self.record(log, 1)
        with open(self.path) as f:
            self.assertEqual(f.read(), f"{22:020d}\n")
        self.assertEqual(os.stat(self.path).st_ino, before)
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o600)

    def test_olderMarkRead(self) -> None:
        """A mark an older pycm wrote (no leading zeros) is read and widened."""
        with open(self.path, "w") as f:
            f.write("123\n")
        mark = EventIdMark(self.path)
        self.addCleanup(mark.close)
        self.assertEqual(mark.value, 123)
        with open(self.path) as f:
            self.assertEqual(f.read(), f"{123:020d}\n")

    def test_markUnwritable(self) -> None:
        """
        An id the mark cannot cover is still handed out and published, as
        an event that cannot be stored is; the log says so once, and the
        mark is written again, L{MARK_RESERVE} ahead, as soon as it can be.
        """
        mark = FlakyMark(self.path, step=10)
        log = EventLog(MemoryEventStore(), mark=mark)
        mark.broken = True
        errors: list[dict[str, object]] = []
        globalLogPublisher.addObserver(errors.append)
        self.addCleanup(globalLogPublisher.removeObserver, errors.append)
        self.assertEqual(self.record(log, 3), [1, 2, 3])
        said = [e for e in errors if "cannot write the event id mark" in formatEvent(e)]
        self.assertEqual(len(said), 1)
        mark.broken = False
        self.record(log, 1)
        with open(self.path) as f:
            self.assertEqual(int(f.read()), 4 + MARK_RESERVE)
        log.close()
        with open(self.path) as f:
            self.assertEqual(int(f.read()), 4)

    def test_noRepeatAfterCrashWhileFull(self) -> None:
        """
        The events cannot be stored and then the mark cannot be written
        either (a full disk, injected), and the daemon crashes: the next
        one hands out no id that was handed out before (it may skip some).
        """
        store = FlakyStore()
        mark = FlakyMark(self.path, step=10)
        log = EventLog(store, mark=mark)
        self.addCleanup(mark.close)
        before = self.record(log, 5)
        store.broken = True
        before += self.record(log, 1)
        mark.broken = True
        before += self.record(log, 40)
        self.assertEqual(before, list(range(1, 47)))
        # A crash: no close; the store kept what it took before it broke.
        store.broken = False
        again = FlakyMark(self.path, step=10)
        self.addCleanup(again.close)
        after = self.record(EventLog(store, mark=again), 3)
        self.assertFalse(set(after) & set(before), after)
        self.assertGreater(after[0], before[-1])

    def test_damagedMarkIgnored(self) -> None:
        """A mark that is not a number is ignored (and said so)."""
        with open(self.path, "w") as f:
            f.write("garbage")
        self.assertEqual(EventIdMark(self.path).value, 0)

    def test_outOfRangeMarkIgnored(self) -> None:
        """
        A mark too large for the ids that go on above it (2**63 and more do
        not fit an SQLite integer) is ignored as damaged, and said so: the
        events after it are stored, none waits in memory.
        """
        with open(self.path, "w") as f:
            f.write(f"{2**63:020d}\n")
        said: list[dict[str, object]] = []
        globalLogPublisher.addObserver(said.append)
        self.addCleanup(globalLogPublisher.removeObserver, said.append)
        mark = EventIdMark(self.path)
        self.addCleanup(mark.close)
        self.assertEqual(mark.value, 0)
        self.assertTrue(any("damaged event id mark" in formatEvent(e) for e in said))
        store = SQLiteStore(os.path.join(self.dir, "events.db"))
        self.addCleanup(store.close)
        log = EventLog(store, mark=mark)
        self.assertEqual(self.record(log, 2), [1, 2])
        self.assertEqual([e.id for e in store.since(0)], [1, 2])
