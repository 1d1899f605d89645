"""
The events the Docker backend told its observers, numbered, and who waits
for one: an operation's Deferred fires once its own event was told.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from pycm.model import Action, ContainerEvent, ProgressEvent

Observer = Callable[[ContainerEvent | ProgressEvent], None]


class _AwaitedEvent:
    """
    An event someone awaits: one of C{actions} happening to C{name} after
    sequence number C{after}; C{deferred} fires when it is noted.
    """

    def __init__(
        self, name: str, actions: frozenset[str], after: int, notBefore: float | None = None
    ) -> None:
        self.name = name
        self.actions = actions
        self.after = after
        #: If set: only an event of this time or later (the engine's clock).
        self.notBefore = notBefore
        self.deferred: Deferred[None] = Deferred(lambda d: None)

    def matches(self, seq: int, name: str, action: str, when: float | None) -> bool:
        """Is the event C{seq} (C{action} of C{name} at C{when}) this one?"""
        if name != self.name or action not in self.actions or seq <= self.after:
            return False
        return self.notBefore is None or (when is not None and when >= self.notBefore)


class EventJournal:
    """
    The observers, and the last events told them (name, action) with a
    sequence number each, so that an operation can wait for its own event
    from a L{mark} taken before it asked the engine.

    @ivar grace: how long L{awaitEvent} waits by default.
    """

    log = Logger()

    def __init__(self, clock: Any, isConnected: Callable[[], bool], grace: float) -> None:
        """
        @param isConnected: is the engine's event stream open (else no
            event is coming, and L{awaitEvent} fires at once)?
        """
        self.clock = clock
        self.isConnected = isConnected
        self.grace = grace
        self.observers: list[Observer] = []
        self.seq = 0
        self.recent: collections.deque[tuple[int, str, str]] = collections.deque(maxlen=2000)
        self.awaited: list[_AwaitedEvent] = []
        #: The engine time of the last event of each action told, by
        #: container name (forgotten with its destroy).
        self.lastTimes: dict[str, dict[str, float]] = {}

    def emit(self, event: ContainerEvent | ProgressEvent) -> None:
        """Give C{event} to every observer (one that fails is logged)."""
        for observer in list(self.observers):
            try:
                observer(event)
            except Exception:
                self.log.failure("event observer {observer!r} failed", observer=observer)

    def tell(self, event: ContainerEvent) -> None:
        """Emit C{event} and L{note} it."""
        self.emit(event)
        self.note(event.name, event.action, event.time)

    def note(self, name: str, action: str, when: float | None = None) -> None:
        """
        Record that C{action} happened to C{name} (at C{when}, the engine's
        time, if known); fire who waits for it.
        """
        self.seq += 1
        self.recent.append((self.seq, name, action))
        if action == Action.DESTROY:
            self.lastTimes.pop(name, None)
        elif when is not None:
            self.lastTimes.setdefault(name, {})[action] = when
        fired = [event for event in self.awaited if event.matches(self.seq, name, action, when)]
        for event in fired:
            self.awaited.remove(event)
            if not event.deferred.called:
                event.deferred.callback(None)

    def mark(self) -> int:
        """A point in the event sequence to wait from."""
        return self.seq

    def seen(self, mark: int, name: str, actions: frozenset[str]) -> bool:
        """Has an event in C{actions} for C{name} been noted after C{mark}?"""
        for seq, seen, action in reversed(self.recent):
            if seq <= mark:
                break
            if seen == name and action in actions:
                return True
        return False

    def awaitEvent(
        self, mark: int, name: str, *actions: str, grace: float | None = None
    ) -> Deferred[None]:
        """
        Fire once an event in C{actions} for C{name} has been noted after
        C{mark}, or at once if the stream is down, or after the grace time.
        """
        wanted = frozenset(actions)
        if self.seen(mark, name, wanted):
            return defer.succeed(None)
        if not self.isConnected():
            return defer.succeed(None)
        event = _AwaitedEvent(name, wanted, mark)
        return self._awaitWithGrace(event, self.grace if grace is None else grace)

    def _awaitWithGrace(self, event: _AwaitedEvent, timeout: float) -> Deferred[None]:
        """Wait for C{event}, for at most C{timeout} seconds."""
        self.awaited.append(event)
        d = event.deferred

        def late() -> None:
            if event in self.awaited:
                self.awaited.remove(event)
            if not d.called:
                self.log.warn(
                    "no {actions} event for {name} from the engine within {t} s",
                    actions="/".join(sorted(event.actions)),
                    name=event.name,
                    t=timeout,
                )
                d.callback(None)

        call = self.clock.callLater(timeout, late)

        def stopTimer(result: Any) -> Any:
            if call.active():
                call.cancel()
            # Cancelled (a wait given up): no longer awaited.
            if event in self.awaited:
                self.awaited.remove(event)
            return result

        return d.addBoth(stopTimer)

    def awaitEventAt(self, name: str, action: str, notBefore: float) -> Deferred[None]:
        """
        Fire once an C{action} event of C{name} of engine time C{notBefore}
        or later has been noted, whenever (so: at once if it was), or at
        once if the stream is down, or after the grace time: the event of
        a moment the engine reported (its C{FinishedAt}), which a reply
        about that moment must not overtake.
        """
        if self.lastTimes.get(name, {}).get(action, float("-inf")) >= notBefore:
            return defer.succeed(None)
        if not self.isConnected():
            return defer.succeed(None)
        event = _AwaitedEvent(name, frozenset({action}), -1, notBefore)
        return self._awaitWithGrace(event, self.grace)

    def eventAfter(self, mark: int, name: str, *actions: str) -> Deferred[None]:
        """
        Fire once an event in C{actions} for C{name} has been noted after
        C{mark}, however late; cancelling it stops the waiting.
        """
        wanted = frozenset(actions)
        if self.seen(mark, name, wanted):
            return defer.succeed(None)
        event = _AwaitedEvent(name, wanted, mark)
        self.awaited.append(event)

        def forget(result: Any) -> Any:
            if event in self.awaited:
                self.awaited.remove(event)
            return result

        return event.deferred.addBoth(forget)

    def releaseAll(self) -> None:
        """Fire every awaited event's Deferred now (the backend is closing)."""
        for event in self.awaited:
            if not event.deferred.called:
                event.deferred.callback(None)
        self.awaited = []


def untilEvent(request: Deferred[Any], event: Deferred[None]) -> Deferred[Any]:
    """
    C{request}'s result or failure, or C{(200, None)} once C{event} fires
    first (C{request} is then cancelled); cancelling it cancels both.
    """

    def cancel(_: Deferred[Any]) -> None:
        request.cancel()
        event.cancel()

    outcome: Deferred[Any] = Deferred(cancel)

    def answered(result: Any) -> None:
        event.cancel()
        if not outcome.called:
            outcome.callback(result)

    def failed(failure: Any) -> None:
        event.cancel()
        if not outcome.called:
            outcome.errback(failure)

    def happened(_: None) -> None:
        if not outcome.called:
            outcome.callback((200, None))
        request.cancel()

    event.addCallbacks(happened, lambda _: None)
    request.addCallbacks(answered, failed)
    return outcome
