"""
C{events --since}: the retained events replayed to one connection a slice
at a time (L{EventReplay}), one slice a reactor turn, so that the other
connections are served in between, and the next slice only once the client
has read the last: a client that does not read holds one slice, not the
whole log.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from pycm.daemon.filters import eventMatches
from pycm.model import ContainerEvent

#: The most events from the log replayed in one reactor turn (about
#: L{pycm.daemon.framing.BYTES_PER_TURN} of lines).
REPLAY_SLICE = 256


class EventReplay:
    """
    Send the events of the log with an id in (C{since}, C{upTo}] that pass
    C{filters}, oldest first, L{REPLAY_SLICE} of them a turn, each once
    C{whenWritable} says the client took the one before; then call
    C{done(True)}, or C{done(False)} if the log could not be read (logged).
    The first slice is read when the replay is made (an error reading the
    log is the request's), and sent by L{start}.

    Events newer than C{upTo} are live ones: the session holds them while
    the replay runs and sends them after it, so that the client sees each
    event once, in order.

    A client that reads so slowly that the log drops events its replay has
    not sent yet (it keeps a fixed number) is never sent the rest with a
    gap in it: C{fellBehind} is called instead of C{done}.
    """

    log = Logger()

    def __init__(
        self,
        events: Any,  # an EventLog (since)
        clock: IReactorTime,
        since: int,
        upTo: int,
        filters: dict[str, set[str]],
        send: Callable[[Any], None],
        done: Callable[[bool], None],
        whenWritable: Callable[[Callable[[], None]], None] | None = None,
        fellBehind: Callable[[], None] | None = None,
    ) -> None:
        self._events = events
        self._clock = clock
        self._cursor = since
        self._upTo = upTo
        self._filters = filters
        self._send = send
        self._done: Callable[[bool], None] | None = done
        self._whenWritable = whenWritable
        self._fellBehind = fellBehind
        #: What the log had dropped when the replay began (L{_read}).
        self._prunedAtStart: int = getattr(events, "prunedThrough", 0)
        self._call: IDelayedCall | None = None
        #: Waiting for the client to take the last slice (L{_resume}).
        self._waiting = False
        self._slice = self._read()

    @property
    def running(self) -> bool:
        """Not finished nor cancelled yet."""
        return self._done is not None

    def _read(self) -> list[ContainerEvent]:
        if self._cursor >= self._upTo:
            return []
        return self._events.since(self._cursor, REPLAY_SLICE)  # type: ignore[no-any-return]

    def _behind(self) -> bool:
        """Whether the log dropped, since the replay began, events it has yet to send."""
        pruned: int = getattr(self._events, "prunedThrough", 0)
        return pruned > max(self._cursor, self._prunedAtStart)

    def start(self) -> None:
        """Send the first slice now, the next ones a turn at a time."""
        self._step()

    def _step(self) -> None:
        self._call = None
        if self._done is None:
            return
        if self._sendSlice():
            try:
                self._slice = self._read()
            except Exception:
                self.log.failure("cannot read the event log to replay it")
                self._end(False)
                return
            if self._behind():
                fellBehind, self._fellBehind = self._fellBehind, None
                if fellBehind is None:
                    self._end(False)
                else:
                    self._done = None
                    fellBehind()
                return
            if self._whenWritable is None:
                self._call = self._clock.callLater(0, self._step)
            else:
                self._waiting = True
                self._whenWritable(self._resume)
            return
        self._end(True)

    def _resume(self) -> None:
        """The client took the last slice: the next one, in a turn of its own."""
        if self._waiting and self._done is not None:
            self._waiting = False
            self._call = self._clock.callLater(0, self._step)

    def _end(self, complete: bool) -> None:
        done, self._done = self._done, None
        if done is not None:
            done(complete)

    def _sendSlice(self) -> bool:
        """Send the slice read; whether there may be more to read."""
        events, self._slice = self._slice, []
        filters, send, upTo = self._filters, self._send, self._upTo
        for event in events:
            eventId: int = event.id  # type: ignore[assignment]
            if eventId > upTo:
                return False
            self._cursor = eventId
            if not filters or eventMatches(event, filters):
                send(event.toJSON())
        return len(events) == REPLAY_SLICE and self._cursor < upTo

    def finish(self) -> None:
        """Send what is left now, then call C{done} (at once)."""
        if self._call is not None:
            self._call.cancel()
            self._call = None
        self._waiting = False
        while self._done is not None:
            self._step()
            self._waiting = False
            if self._call is not None:
                self._call.cancel()
                self._call = None

    def cancel(self) -> None:
        """Send nothing more, and do not call C{done}."""
        self._done = None
        self._waiting = False
        # Nothing of the connection is kept (a closed one is freed at once).
        self._slice = []
        self._send = _nothing
        self._whenWritable = None
        if self._call is not None:
            self._call.cancel()
            self._call = None


def _nothing(value: Any) -> None:
    """What a cancelled replay sends to."""
