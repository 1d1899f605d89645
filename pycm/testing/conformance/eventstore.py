"""
The shared suite of L{IEventStore}: L{EventStoreTests}, run on every
event store (in memory and SQLite) so that a fake cannot drift.
"""

from __future__ import annotations

from typing import Protocol

from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from pycm.interfaces import IEventStore
from pycm.model import Action, ContainerEvent
from pycm.testing.conformance.mixin import SynchronousTestCaseMixin

__all__ = ["EventStoreFixture", "EventStoreTests", "DurableEventStoreTests"]


class EventStoreFixture(Protocol):
    """
    What L{EventStoreTests} needs to know of an event store.

      - C{makeStore(testCase, keep)}: a new, empty store that keeps at
        least the C{keep} newest events (C{testCase.addCleanup} undoes it).
      - C{reopen(testCase, store)}: the store a restarted daemon opens in
        C{store}'s place (closing C{store} if it must), or None for a
        store that forgets everything when the daemon stops.
    """

    def makeStore(self, testCase: SynchronousTestCase, keep: int) -> IEventStore: ...

    def reopen(self, testCase: SynchronousTestCase, store: IEventStore) -> IEventStore | None: ...


def event(eventId: int, action: str = Action.START, name: str = "web") -> ContainerEvent:
    """A numbered event."""
    exitCode = 3 if action == Action.DIE else None
    return ContainerEvent(
        action=action, name=name, time=1_700_000_000.25 + eventId, exitCode=exitCode, id=eventId
    )


class EventStoreTests(SynchronousTestCaseMixin):
    """
    The behaviour every L{IEventStore} must have, as a mixin: subclass it
    with a trial C{SynchronousTestCase} and set C{fixture}.
    """

    fixture: EventStoreFixture
    #: How many events the store is asked to keep.
    keep = 10

    def setUp(self) -> None:
        self.store = self.fixture.makeStore(self, self.keep)

    def appendAll(self, events: list[ContainerEvent]) -> None:
        for e in events:
            self.store.append(e)

    def test_interface(self) -> None:
        """The store provides L{IEventStore}."""
        self.assertTrue(verifyObject(IEventStore, self.store))

    def test_new(self) -> None:
        """A new store has no events: its last id is 0."""
        self.assertEqual(self.store.lastId(), 0)
        self.assertEqual(self.store.since(0, 100), [])

    def test_appendSince(self) -> None:
        """
        C{since(eventId, limit)} gives the events above C{eventId}, equal
        to those appended, oldest first, at most C{limit}.
        """
        events = [event(1, Action.CREATE), event(2), event(3, Action.DIE, "db"), event(4)]
        self.appendAll(events)
        self.assertEqual(self.store.since(0, 100), events)
        self.assertEqual(self.store.since(2, 100), events[2:])
        self.assertEqual(self.store.since(0, 2), events[:2])
        self.assertEqual(self.store.since(1, 1), events[1:2])
        self.assertEqual(self.store.since(4, 100), [])

    def test_lastId(self) -> None:
        """C{lastId} is the highest id stored, also when ids have gaps."""
        self.appendAll([event(3), event(7), event(8)])
        self.assertEqual(self.store.lastId(), 8)
        self.assertEqual(self.store.since(3, 100), [event(7), event(8)])
        self.assertEqual(self.store.since(5, 100), [event(7), event(8)])

    def test_retention(self) -> None:
        """
        A store keeps at least the newest events it was asked to keep, and
        its last id never goes back when older ones are dropped.
        """
        self.appendAll([event(i) for i in range(1, 4 * self.keep + 1)])
        self.assertEqual(self.store.lastId(), 4 * self.keep)
        kept = self.store.since(0, 10 * self.keep)
        ids = [e.id for e in kept]
        self.assertEqual(ids, sorted(ids))
        newest = [event(i) for i in range(3 * self.keep + 1, 4 * self.keep + 1)]
        self.assertEqual(kept[-self.keep :], newest)

    def test_unnumbered(self) -> None:
        """Only numbered events are stored: one without an id raises L{ValueError}."""
        self.assertRaises(ValueError, self.store.append, ContainerEvent("start", "web", 1.0))
        self.assertEqual(self.store.lastId(), 0)


class DurableEventStoreTests(EventStoreTests):
    """L{EventStoreTests} plus durability, for a store that outlives the daemon."""

    def test_durable(self) -> None:
        """A durable store gives a restarted daemon its events and last id."""
        events = [event(1), event(2)]
        self.appendAll(events)
        store = self.fixture.reopen(self, self.store)
        self.assertIsNotNone(store, "a durable store's fixture reopens it")
        assert store is not None
        self.assertEqual(store.lastId(), 2)
        self.assertEqual(store.since(0, 100), events)
