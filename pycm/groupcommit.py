"""
Group commits: the durable writes of one reactor turn in one transaction
per store, and what depends on them released only once they are durable.

A L{GroupCommit} has journals (the container records, then the event log),
each a function that writes whatever it has queued in one transaction.  A
change queues its write and calls L{GroupCommit.changed}; what must not
happen before that write is durable (a reply, an event published, a
process spawned) goes through L{GroupCommit.later} or
L{GroupCommit.whenDurable}.  At the end of the turn (C{callLater(0)}, the
first change schedules it) the journals are flushed in the order they were
added, then the callbacks run in the order they were given.

An I{immediate} group flushes at each change, and runs a callback at once:
every write is durable when the call returns, as with no group at all (the
memory backend, and unit tests on a fake clock).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

_T = TypeVar("_T")


class GroupCommit:
    """
    See the module docstring.

    @param clock: schedules the flush at the end of the turn.
    @param immediate: flush at each change instead (no grouping).
    @ivar flushes: how many flushes wrote something (for tests and stats).
    """

    log = Logger()

    def __init__(self, clock: IReactorTime, immediate: bool = False) -> None:
        self._clock = clock
        self.immediate = immediate
        self._journals: list[Callable[[], None]] = []
        self._call: IDelayedCall | None = None
        #: Callbacks waiting for the next flush.
        self._later: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []
        #: The callbacks of the flush that just wrote, while they run.
        self._running: deque[tuple[Callable[..., Any], tuple[Any, ...]]] | None = None
        self._writing = False
        self.flushes = 0

    def addJournal(self, flush: Callable[[], None]) -> None:
        """
        Add a journal: C{flush} writes what it has queued (one transaction)
        and never raises (what it cannot write, it keeps).  Journals are
        flushed in the order they were added.
        """
        self._journals.append(flush)

    @property
    def pending(self) -> bool:
        """Whether a change waits for the flush (or is being written)."""
        return self._call is not None or self._writing

    def changed(self) -> None:
        """A journal queued a write: flush now (immediate) or at the turn's end."""
        if self.immediate:
            self.flush()
        elif self._call is None and not self._writing:
            self._call = self._clock.callLater(0, self.flush)

    def later(self, callback: Callable[..., Any], *args: Any) -> None:
        """
        Call C{callback(*args)} once what is queued now is durable: after
        the next flush if a change waits, else at once, but always after
        the callbacks given before it (order is kept).
        """
        if self.pending:
            self._later.append((callback, args))
        elif self._running is not None:
            self._running.append((callback, args))
        else:
            self._call1(callback, args)

    def whenDurable(self, result: _T = None) -> Deferred[_T]:  # type: ignore[assignment]
        """A Deferred that fires with C{result} as L{later} would call."""
        if not self.pending and self._running is None:
            return succeed(result)
        d: Deferred[_T] = Deferred()
        self.later(d.callback, result)
        return d

    def flush(self) -> None:
        """Write every journal now, then run the callbacks that waited."""
        if self._call is not None:
            if self._call.active():
                self._call.cancel()
            self._call = None
        if self._writing:
            return
        self._writing = True
        try:
            for journal in self._journals:
                try:
                    journal()
                except Exception:
                    self.log.failure("a journal failed to flush")
        finally:
            self._writing = False
        self.flushes += 1
        callbacks, self._later = self._later, []
        if not callbacks:
            return
        if self._running is not None:
            # A flush from a callback (immediate, or close): after the others.
            self._running.extend(callbacks)
            return
        self._running = deque(callbacks)
        try:
            while self._running:
                callback, args = self._running.popleft()
                self._call1(callback, args)
        finally:
            self._running = None

    def _call1(self, callback: Callable[..., Any], args: tuple[Any, ...]) -> None:
        try:
            callback(*args)
        except Exception:
            self.log.failure("a callback after a group commit failed")
