"""
The daemon's event log: numbers the backend's lifecycle events, keeps them
(durably, through an L{IEventStore}) and hands them to subscribers.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable

import attrs
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from pycm.daemon.fanout import EventFanOut
from pycm.groupcommit import GroupCommit
from pycm.interfaces import IContainerBackend, IEventStore, IJournaledEvents
from pycm.model import ContainerEvent, ProgressEvent
from pycm.retrying import RETRY_INTERVAL as RETRY_INTERVAL
from pycm.retrying import Retry
from pycm.statedir import openNoFollow

#: The contract keeps at least this many events for C{events --since}.
RETAINED_EVENTS = 10_000

#: How many ids the mark is written ahead of the ids handed out.
MARK_STEP = 100
#: How far ahead the mark jumps while events or the mark cannot be written.
MARK_RESERVE = 100_000
#: The digits of the mark in its file.
MARK_WIDTH = 20
#: The highest mark taken as it is: ids are SQLite integers (below 2**63),
#: and ids go on above the mark, up to L{MARK_RESERVE} at a time.  A mark
#: above it is damaged.
MAX_MARK = 2**62

Subscriber = Callable[[ContainerEvent | ProgressEvent], None]


class EventIdMark:
    """
    A high-water mark of event ids in a small file of its own (beside the
    event store, e.g. C{STATE/events.mark}), so that ids never repeat, even
    when the event store is lost or deleted, or could not be written (a
    full disk) before a crash: no id is handed out before the mark is at
    or above it.

    The file is opened once, at start, and holds the mark in a fixed width
    (L{MARK_WIDTH} digits and a newline).  It is changed in place
    (C{pwrite}, then C{fsync}), which needs no new disk blocks: the mark can
    be written on a full disk, where replacing the file could not.  The
    mark is written ahead, L{MARK_STEP} ids at a time (one write per step,
    not per event), and brought back to the last id used when the daemon
    stops cleanly: a clean restart leaves no gap; after a crash, ids go on
    above the mark and may skip some, never repeat one.  L{reserve} moves
    it further ahead at once, while the events themselves cannot be stored.
    """

    log = Logger()

    def __init__(self, path: str, step: int = MARK_STEP) -> None:
        self.path = path
        self.step = step
        self._failing = False
        self._fd: int | None = openNoFollow(path, os.O_RDWR | os.O_CREAT)
        try:
            self.value = self._read()
            self._writeInPlace(self.value)
        except OSError as e:
            # A new file on a full disk: said, and tried again at each id.
            self._failed(e)
        except BaseException:
            self.close()
            raise

    def _read(self) -> int:
        assert self._fd is not None
        text = os.pread(self._fd, 64, 0).strip()
        if not text:
            return 0
        if not text.isdigit() or len(text) > MARK_WIDTH or int(text) > MAX_MARK:
            self.log.warn(
                "ignoring the damaged event id mark {path} ({text!r})", path=self.path, text=text
            )
            return 0
        return int(text)

    def _writeInPlace(self, value: int) -> None:
        """Put C{value} in the file, in place, and make it durable."""
        if self._fd is None:
            raise OSError(f"{self.path} is closed")
        data = f"{value:0{MARK_WIDTH}d}\n".encode()
        if os.pwrite(self._fd, data, 0) != len(data):
            raise OSError(f"short write to {self.path}")
        if os.fstat(self._fd).st_size != len(data):
            os.ftruncate(self._fd, len(data))  # a mark of an older pycm
        os.fsync(self._fd)
        self.value = value

    def _failed(self, error: OSError) -> None:
        """Say once that the mark cannot be written; it is tried again later."""
        if not self._failing:
            self.log.error(
                "cannot write the event id mark {path}: {error}; ids go on, and "
                "the mark is moved further ahead once it can be written",
                path=self.path, error=str(error),
            )
        self._failing = True

    def _moveUpTo(self, value: int) -> bool:
        """Move the mark up to C{value} (never down); never raises."""
        if value <= self.value:
            return True
        try:
            self._writeInPlace(value)
        except OSError as e:
            self._failed(e)
            return False
        if self._failing:
            self.log.info("the event id mark {path} is written again", path=self.path)
        self._failing = False
        return True

    def cover(self, eventId: int) -> None:
        """
        Make sure the mark is at or above C{eventId} before it is used.
        Never raises: a mark that cannot be written is said once, and tried
        again with the next id, then L{MARK_RESERVE} ahead (the event is
        handed out all the same, as events that cannot be stored are).
        """
        if eventId > self.value:
            self._moveUpTo(eventId + (MARK_RESERVE if self._failing else self.step))

    def reserve(self, lastId: int) -> None:
        """
        Move the mark L{MARK_RESERVE} ids past C{lastId} now: the events
        cannot be stored, and one write then covers the ids of a long
        episode.  Never raises.
        """
        self._moveUpTo(lastId + MARK_RESERVE)

    def settle(self, lastId: int) -> None:
        """On a clean stop: the mark is the last id used (no gap next time)."""
        if lastId != self.value:
            try:
                self._writeInPlace(lastId)
            except OSError as e:
                # The mark stays ahead: the next start skips a few ids.
                self.log.warn("cannot write {path}: {error}", path=self.path, error=e)

    def close(self) -> None:
        """Close the file (idempotent)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


@implementer(IEventStore)
class MemoryEventStore:
    """An L{IEventStore} that forgets everything when the daemon stops."""

    def __init__(self, retain: int = RETAINED_EVENTS) -> None:
        self._events: deque[ContainerEvent] = deque(maxlen=retain)
        self._lastId = 0
        self.prunedThrough = 0

    def lastId(self) -> int:
        return self._lastId

    def append(self, event: ContainerEvent) -> None:
        if event.id is None:
            raise ValueError("only numbered events can be stored")
        events = self._events
        if len(events) == events.maxlen:
            self.prunedThrough = events[0].id or self.prunedThrough
        events.append(event)
        self._lastId = event.id

    def since(self, eventId: int, limit: int) -> list[ContainerEvent]:
        newer = [e for e in self._events if e.id is not None and e.id > eventId]
        return newer[:limit]


@attrs.define
class EventLog:
    """
    Numbers events, stores them, and tells subscribers.

    Give L{record} to the backend's C{addObserver}: every event the backend
    emits then gets the next id, is stored before anyone hears of it, and
    reaches every subscriber in order.

    When the store cannot be written (a full disk), events are not lost:
    they are numbered and published as usual, kept in memory in order
    (L{since} replays them too), and stored as soon as the store takes
    them again (tried before each new event, and every L{RETRY_INTERVAL}
    seconds given a C{clock}).  At most L{RETAINED_EVENTS} wait; older
    ones are then dropped from memory (their ids are never reused).

    With C{commits} (a L{GroupCommit}, the backend's), storing joins its
    group commits: the events of one reactor turn are stored in one
    transaction after the records, and published once stored.

    @ivar clock: schedules the retries (None: only a new event retries).
    """

    store: IEventStore = attrs.field(factory=MemoryEventStore)
    clock: IReactorTime | None = None
    #: Where the highest id is kept apart from the store (None: nowhere).
    mark: EventIdMark | None = None
    #: The group commit the events join (None: each is stored at once).
    commits: GroupCommit | None = None
    _subscribers: list[Subscriber] = attrs.field(factory=list, init=False)
    #: The subscribers of encoded lines (event connections): each event is
    #: encoded once for all of them.
    lines: EventFanOut = attrs.field(factory=EventFanOut, init=False)
    _lastId: int = attrs.field(default=0, init=False)
    #: The id of the newest event published (with C{commits}, those after
    #: it wait for their group commit: not shown yet).
    _lastShown: int = attrs.field(default=0, init=False)
    _unsaved: deque[ContainerEvent] = attrs.field(factory=deque, init=False)
    #: The highest id of the waiting events dropped from memory (0: none).
    _droppedThrough: int = attrs.field(default=0, init=False)
    _retry: Retry = attrs.field(init=False)
    #: Why storing failed, while events wait (else None).
    _error: str | None = attrs.field(default=None, init=False)
    _waited: int = attrs.field(default=0, init=False)
    _lost: int = attrs.field(default=0, init=False)

    log = Logger()

    def __attrs_post_init__(self) -> None:
        self._lastId = max(self.store.lastId(), self.mark.value if self.mark else 0)
        self._lastShown = self._lastId
        self._retry = Retry(self.clock, self.flush)
        if self.commits is not None:
            self.commits.addJournal(self._storeGroup)

    def attach(self, backend: IContainerBackend) -> None:
        """
        Hear C{backend}'s events: as each is emitted when the backend shares
        L{commits} (an L{IJournaledEvents}: the event is then stored in the
        same group commit as the change it tells of, and published after
        it), else once the change is durable (C{addObserver}).
        """
        journaled = IJournaledEvents(backend, None)
        if self.commits is not None and journaled is not None and journaled.commits is self.commits:
            journaled.addJournalObserver(self.record)
        else:
            backend.addObserver(self.record)

    @property
    def lastId(self) -> int:
        """The id of the newest event published (0 if there is none yet)."""
        return self._lastShown if self.commits is not None else self._lastId

    def record(self, event: ContainerEvent | ProgressEvent) -> None:
        """
        Number, store and publish one event from the backend; progress
        events are only published.
        """
        if isinstance(event, ProgressEvent):
            self._publish(event)
            return
        numbered = attrs.evolve(event, id=self._lastId + 1)
        if self.mark is not None:
            self.mark.cover(self._lastId + 1)
        self._lastId += 1
        if self.commits is not None:
            self._queue(numbered)
            self.commits.changed()
            self.commits.later(self._show, numbered)
            return
        if self._unsaved:
            self.flush()
        self._queue(numbered)
        self.flush()
        self._publish(numbered)

    def _queue(self, event: ContainerEvent) -> None:
        self._unsaved.append(event)
        if len(self._unsaved) > RETAINED_EVENTS:
            self._droppedThrough = self._unsaved.popleft().id or self._droppedThrough
            self._lost += 1

    def _show(self, event: ContainerEvent) -> None:
        """An event of a group commit is stored (or waits): published."""
        self._lastShown = event.id  # type: ignore[assignment]
        self._publish(event)

    def _storeGroup(self) -> None:
        """The group commit's journal: what waits, in one transaction if it can."""
        appendMany = getattr(self.store, "appendMany", None)
        if appendMany is not None and self._unsaved and self._error is None:
            try:
                appendMany(list(self._unsaved))
            except Exception:
                pass  # said below, one event at a time
            else:
                self._unsaved.clear()
                return
        if self._unsaved:
            self.flush()

    @property
    def unsavedCount(self) -> int:
        """How many events wait to be stored."""
        return len(self._unsaved)

    def flush(self) -> bool:
        """Store the events that wait, oldest first; True once none waits."""
        stored = 0
        while self._unsaved:
            try:
                self.store.append(self._unsaved[0])
            except Exception as e:
                self._waited += stored
                if self._error is None:
                    if self.mark is not None:
                        # Until they are stored, only the mark keeps their
                        # ids from coming again after a crash.
                        self.mark.reserve(self._lastId)
                    self.log.error(
                        "cannot store events: {error}; they are kept in memory, "
                        "published and replayed, and stored when the state "
                        "directory can be written again",
                        error=str(e),
                    )
                self._error = str(e)
                self._retry.schedule()
                return False
            self._unsaved.popleft()
            stored += 1
        if self._error is not None:
            self.log.warn(
                "events are stored again: {count} had waited, {lost} were dropped "
                "from memory before they could be",
                count=self._waited + stored,
                lost=self._lost,
            )
            self._error = None
            self._lost = 0
            self._waited = 0
        return True

    def close(self) -> None:
        """Stop retrying, after a last try; say what is lost."""
        if not self._retry.lastTry():
            self.log.error(
                "{count} events could not be stored before the daemon stopped ({error})",
                count=len(self._unsaved),
                error=self._error,
            )
        if self.mark is not None:
            # The mark comes back to the last id used: no gap next start.
            self.mark.settle(self._lastId)
            self.mark.close()

    def _publish(self, event: ContainerEvent | ProgressEvent) -> None:
        if self._subscribers:
            for subscriber in list(self._subscribers):
                try:
                    subscriber(event)
                except Exception:
                    self.log.failure("event subscriber {s!r} failed", s=subscriber)
        self.lines.publish(event)

    def since(self, eventId: int, limit: int = RETAINED_EVENTS) -> list[ContainerEvent]:
        """
        The retained events with an id above C{eventId}, oldest first
        (those waiting to be stored included).
        """
        stored = self.store.since(eventId, limit)
        waiting = [event for event in self._unsaved if event.id > eventId]  # type: ignore[operator]
        if self.commits is not None:
            # Not before they are published (their group commit is done).
            stored = [event for event in stored if event.id <= self._lastShown]  # type: ignore[operator]
            waiting = [event for event in waiting if event.id <= self._lastShown]  # type: ignore[operator]
        if waiting:
            # What waits is newer than anything stored (stored in order).
            first = waiting[0].id
            stored = [event for event in stored if event.id < first]  # type: ignore[operator]
        return (stored + waiting)[:limit]

    @property
    def prunedThrough(self) -> int:
        """
        The highest id of the events dropped to keep the log's size, by the
        store or from memory, since the daemon started: a replay whose
        cursor is below it has missed events.
        """
        return max(getattr(self.store, "prunedThrough", 0), self._droppedThrough)

    def subscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.append(subscriber)

    def unsubscribe(self, subscriber: Subscriber) -> None:
        if subscriber in self._subscribers:
            self._subscribers.remove(subscriber)

    @property
    def subscriberCount(self) -> int:
        """Subscribers of events and of their lines."""
        return len(self._subscribers) + len(self.lines)
