"""
What the fake engines share (L{pycm.testing.dockerengine.FakeDockerEngine},
L{pycm.testing.swarmengine.FakeSwarmEngine}): answers given on a later
turn of their clock, cancelled together when they close, and the streams
they open.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime

from pycm.backends.docker.engine import Stream
from pycm.testing.dockerstate import Feed, StreamEnd, answerLater

#: Bytes of a log's answer a fake engine writes a turn (as a socket would).
PIECE = 64 * 1024


def writeBody(clock: IReactorTime, feed: Feed, body: bytes, piece: int = PIECE) -> None:
    """
    Write C{body} to C{feed} a piece a turn of C{clock} (the first now),
    then end it: a log's answer without C{follow}.  Ended early (the
    reader closed it), it writes no more.
    """
    if feed.ended.called:
        return
    feed.write(body[:piece])
    if len(body) <= piece:
        feed.end()
    elif not feed.ended.called:
        clock.callLater(0, writeBody, clock, feed, body[piece:], piece)


class AnswersLater:
    """
    A fake engine's plumbing: L{later} answers on a later turn of C{clock}
    (as over a socket), L{openStream} opens a stream the same way, and
    L{cancelPending} cancels every answer not given yet.
    """

    def __init__(self, clock: IReactorTime) -> None:
        self.clock = clock
        self._pending: set[Deferred[Any]] = set()

    def later(self, answer: Deferred[Any]) -> Deferred[Any]:
        """C{answer}'s result on a later turn of the clock; L{cancelPending} cancels it."""
        outcome = answerLater(self.clock, answer)
        self._pending.add(outcome)
        return outcome.addBoth(self._forget, outcome)

    def _forget(self, result: Any, d: Deferred[Any]) -> Any:
        self._pending.discard(d)
        return result

    def cancelPending(self) -> None:
        """Cancel every answer not given yet (the engine closes, or goes away)."""
        for d in list(self._pending):
            d.cancel()

    def openStream(
        self, opener: Callable[[Feed], None], onData: Callable[[bytes], None]
    ) -> Deferred[Stream]:
        """A stream to C{onData}, open on a later turn; C{opener} then starts writing to it."""
        ended: Deferred[None] = Deferred()
        feed = Feed(onData, ended)
        stream = Stream(ended, StreamEnd(feed))

        def opened(_: object) -> Stream:
            opener(feed)
            return stream

        return self.later(defer.succeed(None)).addCallback(opened)


__all__ = ["AnswersLater"]
