"""
The daemon's event log: numbers the backend's lifecycle events, keeps them
(durably, through an L{IEventStore}) and hands them to subscribers.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import attrs
from twisted.logger import Logger
from zope.interface import implementer

from pycm.interfaces import IEventStore
from pycm.model import ContainerEvent, ProgressEvent

#: The contract keeps at least this many events for C{events --since}.
RETAINED_EVENTS = 10_000

Subscriber = Callable[[ContainerEvent | ProgressEvent], None]


@implementer(IEventStore)
class MemoryEventStore:
    """An L{IEventStore} that forgets everything when the daemon stops."""

    def __init__(self, retain: int = RETAINED_EVENTS) -> None:
        self._events: deque[ContainerEvent] = deque(maxlen=retain)
        self._lastId = 0

    def lastId(self) -> int:
        return self._lastId

    def append(self, event: ContainerEvent) -> None:
        assert event.id is not None
        self._events.append(event)
        self._lastId = event.id

    def since(self, eventId: int, limit: int) -> list[ContainerEvent]:
        newer = [event for event in self._events if event.id > eventId]  # type: ignore[operator]
        return newer[:limit]


@attrs.define
class EventLog:
    """
    Numbers events, stores them, and tells subscribers.

    Give L{record} to the backend's C{addObserver}: every event the backend
    emits then gets the next id, is stored before anyone hears of it, and
    reaches every subscriber in order.
    """

    store: IEventStore = attrs.field(factory=MemoryEventStore)
    _subscribers: list[Subscriber] = attrs.field(factory=list, init=False)
    _lastId: int = attrs.field(default=0, init=False)

    log = Logger()

    def __attrs_post_init__(self) -> None:
        self._lastId = self.store.lastId()

    @property
    def lastId(self) -> int:
        """The id of the newest event (0 if there is none yet)."""
        return self._lastId

    def record(self, event: ContainerEvent | ProgressEvent) -> None:
        """
        Number, store and publish one event from the backend; progress
        events are only published.
        """
        if isinstance(event, ProgressEvent):
            self._publish(event)
            return
        numbered = attrs.evolve(event, id=self._lastId + 1)
        try:
            self.store.append(numbered)
        except Exception:
            # Not kept, so not published either: ids stay without gaps, and
            # a subscriber never sees an event that --since would not replay.
            self.log.failure("could not store event {action} {name}",
                             action=event.action, name=event.name)
            raise
        self._lastId += 1
        self._publish(numbered)

    def _publish(self, event: ContainerEvent | ProgressEvent) -> None:
        for subscriber in list(self._subscribers):
            try:
                subscriber(event)
            except Exception:
                self.log.failure("event subscriber {s!r} failed", s=subscriber)

    def since(self, eventId: int, limit: int = RETAINED_EVENTS) -> list[ContainerEvent]:
        """The retained events with an id above C{eventId}, oldest first."""
        return self.store.since(eventId, limit)

    def subscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.append(subscriber)

    def unsubscribe(self, subscriber: Subscriber) -> None:
        if subscriber in self._subscribers:
            self._subscribers.remove(subscriber)

    @property
    def subscriberCount(self) -> int:
        return len(self._subscribers)
