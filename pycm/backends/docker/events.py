"""
One long-lived C{GET /events} stream from the engine, kept open for ever
(L{EngineEvents}): reconnected when it ends, with no event missed or
repeated while the engine keeps its history.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger

from pycm.backends.docker.engine import Stream
from pycm.backends.docker.interfaces import IDockerEngine
from pycm.backends.docker.stream import JSONLines


def eventKey(event: dict[str, Any]) -> tuple[Any, ...]:
    """What tells two engine events apart (for de-duplication)."""
    actor = event.get("Actor") or {}
    return (event.get("timeNano"), actor.get("ID"), event.get("Action"))


class CatchUp:
    """
    One request of L{EngineEvents.catchUp}: C{done} fires with True when
    the engine ended it, with False when it failed, or was cut short after
    C{timeout} seconds or by L{abandon}.
    """

    log = Logger()

    def __init__(self, reactor: Any, timeout: float, until: float) -> None:
        self.done: defer.Deferred[bool] = defer.Deferred()
        self._timeout = timeout
        self._until = until
        self._request: defer.Deferred[Stream] | None = None
        self._stream: Stream | None = None
        self._timer = reactor.callLater(timeout, self._timedOut)

    def follow(self, request: defer.Deferred[Stream], parser: JSONLines) -> None:
        """Read the answer of C{request} (the engine's C{stream}) into C{parser}."""
        self._request = request
        request.addCallback(self._read, parser)
        request.addCallbacks(lambda _: True, self._failed).addCallback(self._settle)

    def _read(self, stream: Stream, parser: JSONLines) -> Any:
        self._stream = stream
        return stream.ended.addBoth(lambda _: parser.flush())

    def _failed(self, failure: Any) -> bool:
        if not self.done.called:
            why = failure.getErrorMessage()
            self.log.info("catching up with the engine's events failed: {why}", why=why)
        return False

    def _timedOut(self) -> None:
        self.log.warn(
            "catching up with the engine's events did not end in {timeout} s"
            " (until {until:.3f}); reconciling with what the stream delivered",
            timeout=self._timeout,
            until=self._until,
        )
        self.abandon()

    def abandon(self) -> None:
        """Cut it short: C{done} fires with False, the request is closed."""
        self._settle(False)
        if self._stream is not None:
            self._stream.cancel()
        elif self._request is not None:
            self._request.cancel()

    def _settle(self, caughtUp: bool) -> None:
        if not self.done.called:
            if self._timer.active():
                self._timer.cancel()
            self.done.callback(caughtUp)


class EngineEvents:
    """
    Follow the engine's events.

    When the stream ends (the engine stopped, restarted, the socket went
    away) it reconnects with a growing delay and asks for C{since=} a little
    before the newest event it delivered (the engine's live events can come
    slightly out of timestamp order), dropping the ones it already gave (it
    remembers the keys of the recent ones); the first request asks for
    C{since=} the moment it was sent.  Live events are never dropped for
    their timestamp: only exact repeats are.  After every (re)connection
    it calls C{onConnected}, so the backend can reconcile what an engine
    restart may have lost.

    @ivar connected: whether the stream is open right now.
    """

    log = Logger()
    minDelay = 0.1
    maxDelay = 5.0
    #: Seconds before the newest delivered event a reconnection replays
    #: from, for events that came out of timestamp order.
    replayWindow = 2.0
    #: How many recent event keys are kept to drop the replayed ones.
    maxKeys = 20000
    #: Seconds a catch-up (L{catchUp}) may take: an C{until} the engine's
    #: clock has not reached keeps the request open until it does.
    catchUpTimeout = 5.0

    def __init__(
        self,
        reactor: Any,
        engine: IDockerEngine,
        filters: dict[str, list[str]],
        onEvent: Callable[[dict[str, Any]], None],
        onConnected: Callable[[bool], Any],
    ) -> None:
        self._reactor = reactor
        self._engine = engine
        self._filters = filters
        self._onEvent = onEvent
        self._onConnected = onConnected
        self.connected = False
        self._running = False
        self._stream: Stream | None = None
        self._pending: Any = None
        self._retry: Any = None
        self._delay = self.minDelay
        self._lastNano: int | None = None
        self._sinceSeconds: float | None = None
        #: The C{since} the open stream (or the last one) asked for.
        self._streamSince: str | None = None
        self._seen: set[tuple[Any, ...]] = set()
        self._seenOrder: collections.deque[tuple[Any, ...]] = collections.deque()
        self._everConnected = False
        self._failures = 0
        #: The catch-ups under way (L{catchUp}).
        self._catchUps: set[CatchUp] = set()

    def start(self) -> None:
        """Open the stream now, and keep it open until L{stop}."""
        self._running = True
        self._connect()

    def stop(self) -> defer.Deferred[None]:
        """Close the stream and stop reconnecting; fires once it is closed."""
        self._running = False
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        if self._pending is not None:
            self._pending.cancel()
        for catchUp in list(self._catchUps):
            catchUp.abandon()
        if self._stream is not None:
            ended = self._stream.ended
            self._stream.cancel()
            d: defer.Deferred[None] = defer.Deferred()
            ended.addBoth(lambda _: d.callback(None))
            return d
        return defer.succeed(None)

    def _since(self) -> str | None:
        if self._lastNano is not None:
            since = self._lastNano - int(self.replayWindow * 10**9)
            if self._sinceSeconds is not None:
                # Never replay what came before the first subscription.
                since = max(since, int(self._sinceSeconds * 10**9))
            since = max(since, 0)
            seconds, nanos = divmod(since, 10**9)
            return f"{seconds}.{nanos:09d}"
        if self._sinceSeconds is not None:
            return f"{self._sinceSeconds:.9f}"
        return None

    def _connect(self) -> None:
        self._retry = None
        if not self._running:
            return
        parser = JSONLines(self._received)
        if self._sinceSeconds is None:
            # From the first request on, not from its answer: an operation
            # sent meanwhile (the engine may be slow to answer, as Podman
            # is while it reads its event file) must not lose its events.
            self._sinceSeconds = self._reactor.seconds()
        since = self._streamSince = self._since()
        params = {"filters": self._filters, "since": since}
        d = self._pending = self._engine.stream("GET", "/events", params, parser.feed)

        def opened(stream: Stream) -> Any:
            self._pending = None
            self._stream = stream
            self.connected = True
            reconnect = self._everConnected
            self._everConnected = True
            if self._failures:
                self.log.info("docker engine event stream is back")
            self._failures = 0
            self._delay = self.minDelay
            stream.ended.addCallback(lambda _: self._ended(parser))
            return defer.maybeDeferred(self._onConnected, reconnect).addErrback(
                lambda f: self.log.failure("reconciling after connecting", f)
            )

        def failed(failure: Any) -> None:
            self._pending = None
            if not self._running:
                return
            self._failures += 1
            if self._failures == 1:
                self.log.warn(
                    "docker engine event stream unavailable ({why}); retrying",
                    why=failure.getErrorMessage(),
                )
            self._schedule()

        d.addCallbacks(opened, failed)

    def catchUp(self, until: float) -> defer.Deferred[bool]:
        """
        Deliver now the events the engine has from the stream's C{since}
        to C{until} (seconds, the engine's clock) that the stream has not
        delivered yet (it drops those it did, as ever), with a request of
        their own that ends at C{until}.  Only an engine that answers a
        past C{until} with its history does (dockerd; Podman 4.3 stops
        reading its event file at once).

        @return: fires with True once the engine sent them all, or with
            False if the request failed or did not end within
            L{catchUpTimeout} seconds (it is then cut; the stream delivers
            those events in its time).
        """
        if self._streamSince is None or not self._running:
            return defer.succeed(True)
        parser = JSONLines(self._received)
        params = {"filters": self._filters, "since": self._streamSince, "until": f"{until:.9f}"}
        catchUp = CatchUp(self._reactor, self.catchUpTimeout, until)
        self._catchUps.add(catchUp)
        catchUp.follow(self._engine.stream("GET", "/events", params, parser.feed), parser)
        return catchUp.done.addBoth(self._caughtUp, catchUp)

    def _caughtUp(self, caughtUp: bool, catchUp: CatchUp) -> bool:
        self._catchUps.discard(catchUp)
        return caughtUp

    def _ended(self, parser: JSONLines) -> None:
        parser.flush()
        self._stream = None
        self.connected = False
        if self._running:
            self.log.warn("docker engine event stream ended; reconnecting")
            self._failures += 1
            self._schedule()

    def _schedule(self) -> None:
        delay = self._delay
        self._delay = min(self._delay * 2, self.maxDelay)
        self._retry = self._reactor.callLater(delay, self._connect)

    def _received(self, event: Any) -> None:
        if not isinstance(event, dict):
            return
        nano = event.get("timeNano")
        if not isinstance(nano, int):
            nano = int(event.get("time", 0)) * 10**9
        key = eventKey(event)
        if key in self._seen:
            # Replayed after a reconnection: delivered already.
            return
        self._seen.add(key)
        self._seenOrder.append(key)
        while len(self._seenOrder) > self.maxKeys:
            self._seen.discard(self._seenOrder.popleft())
        if self._lastNano is None or nano > self._lastNano:
            self._lastNano = nano
        try:
            self._onEvent(event)
        except Exception:
            # Not the event itself: its attributes hold the container's labels.
            actor = event.get("Actor")
            self.log.failure(
                "handling docker event {type} {action} {id}",
                type=event.get("Type"),
                action=event.get("Action"),
                id=actor.get("ID") if isinstance(actor, dict) else None,
            )
