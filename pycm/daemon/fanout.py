"""
Events to many subscribers at once (L{EventFanOut}): each event's C{EVENT}
line is encoded once and the same bytes handed to every subscriber whose
filter it passes; subscribers with the same filter share one evaluation of
it.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.logger import Logger

from pycm.daemon.filters import FilterKey, eventMatches, filterKey
from pycm.daemon.replies import encodeReply
from pycm.model import ContainerEvent, ProgressEvent

#: Takes one encoded C{EVENT} line, its line end included.
LineSubscriber = Callable[[bytes], None]


def encodeEventLine(event: ContainerEvent | ProgressEvent) -> bytes:
    """The C{EVENT} line of C{event} as it goes on the wire, LF included."""
    return encodeReply(b"EVENT", event.toJSON()) + b"\n"


class EventFanOut:
    """
    Subscribers of encoded event lines, grouped by their filter.

    Per event, the work is one filter evaluation per distinct filter, one
    encoding (only if someone wants the event), and one call per
    subscriber that wants it: nothing else is done per subscriber.  The
    groups hold tuples, replaced when a subscriber comes or goes, so a
    subscriber may go away while an event is handed out.
    """

    log = Logger()

    def __init__(self) -> None:
        #: Filter key -> (the filter, its subscribers).
        self._groups: dict[FilterKey, tuple[dict[str, set[str]], tuple[LineSubscriber, ...]]] = {}
        #: Subscriber -> its filter key.
        self._keys: dict[LineSubscriber, FilterKey] = {}

    def __len__(self) -> int:
        return len(self._keys)

    def add(self, subscriber: LineSubscriber, filters: dict[str, set[str]]) -> None:
        """Hand C{subscriber} the lines of the events that pass C{filters}."""
        self.remove(subscriber)
        key = filterKey(filters)
        copy = {name: set(values) for name, values in filters.items()}
        _, subscribers = self._groups.get(key, (copy, ()))
        self._groups[key] = (copy, subscribers + (subscriber,))
        self._keys[subscriber] = key

    def remove(self, subscriber: LineSubscriber) -> None:
        """Hand C{subscriber} nothing more (no error if it had nothing)."""
        key = self._keys.pop(subscriber, None)
        if key is None:
            return
        filters, subscribers = self._groups[key]
        left = tuple(s for s in subscribers if s != subscriber)
        if left:
            self._groups[key] = (filters, left)
        else:
            del self._groups[key]

    def publish(self, event: ContainerEvent | ProgressEvent) -> None:
        """Hand C{event}'s line, encoded once, to every subscriber it passes."""
        if not self._groups:
            return
        line: bytes | None = None
        for filters, subscribers in list(self._groups.values()):
            if filters and not eventMatches(event, filters):
                continue
            if line is None:
                line = encodeEventLine(event)
            for subscriber in subscribers:
                try:
                    subscriber(line)
                except Exception:
                    self.log.failure("event subscriber {s!r} failed", s=subscriber)
