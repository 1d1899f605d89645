"""
Reading the Docker engine's HTTP response bodies: L{readBody} collects a
whole one (cancelling it closes the connection), L{BodyStreamer} hands one
to a callback as it comes, for the streams (events, log follows, pulls).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone
from twisted.web.http import PotentialDataLoss


class BodyStreamer(Protocol):
    """
    Hand a response body to C{onData} as it comes; fire C{done} at its end.

    @ivar failure: once ended, None if the body came whole, else why not.
    """

    log = Logger()
    failure: Failure | None = None

    def __init__(self, onData: Callable[[bytes], None], done: Deferred[None]) -> None:
        self._onData = onData
        self._done = done

    def dataReceived(self, data: bytes) -> None:
        try:
            self._onData(data)
        except Exception:
            self.log.failure("stream consumer failed; closing the stream")
            self.transport.stopProducing()  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure = ResponseDone) -> None:  # type: ignore[assignment]
        if isinstance(reason, Failure) and not reason.check(ResponseDone, PotentialDataLoss):
            self.failure = reason
        if not self._done.called:
            self._done.callback(None)


class _BodyCollector(Protocol):
    """Collect a whole response body; fire C{done} with it at its end."""

    def __init__(self, done: Deferred[bytes]) -> None:
        self._done = done
        self._parts: list[bytes] = []

    def dataReceived(self, data: bytes) -> None:
        self._parts.append(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._done.called:
            return
        if reason.check(ResponseDone, PotentialDataLoss):
            self._done.callback(b"".join(self._parts))
        else:
            self._done.errback(reason)


def readBody(response: Any) -> Deferred[bytes]:
    """
    Read the whole body of an unbuffered C{response}.

    Cancelling the Deferred closes the connection (C{treq.content} has
    no canceller, so a cancelled read of a body that never ends, such as
    C{POST /containers/ID/wait}'s, would keep its socket open until the
    engine ends it).  Not Twisted's C{readBody}: after a cancel it still
    fires its Deferred when the connection ends (C{AlreadyCalledError})
    and left those sockets open in C{test_timedOutWaitsCloseTheirConnections}.
    """

    def cancel(d: Deferred[bytes]) -> None:
        transport = collector.transport
        if transport is not None:
            transport.stopProducing()  # type: ignore[attr-defined]

    done: Deferred[bytes] = Deferred(cancel)
    collector = _BodyCollector(done)
    response.deliverBody(collector)
    return done


__all__ = ["BodyStreamer", "readBody"]
