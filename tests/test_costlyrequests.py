"""
Tests for requests that cost a lot and answer little (C{logs} of a big
log): other connections are served while one is (its work goes a slice at
a time), a connection's turn is bounded in time, and the requests that only
answer a client that has gone are dropped, on the memory backend and a
L{Clock}.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from pycm.daemon import framing, gonewatch
from pycm.daemon.handlers import observing
from pycm.daemon.protocol import PycmServerFactory, PycmServerProtocol
from pycm.model import LogFollow, LogLine
from pycm.testing.server import FakeConnection, FakeServer

#: Lines enough for many slices of encoding (L{observing.LINES_PER_SLICE}).
BIG = [LogLine(1_700_000_000.0 + i, "stdout", f"line {i}") for i in range(20_000)]


class SocketTransport(StringTransport):
    """
    A L{StringTransport} whose handle is one end of a real socket pair,
    the other end being the client's: closing it is the client gone.
    """

    def __init__(self, handle: socket.socket) -> None:
        super().__init__()
        self._handle = handle

    def getHandle(self) -> socket.socket:
        return self._handle


def bigLogs(server: FakeServer) -> list[str]:
    """
    Make the memory backend's C{logs} give L{BIG} (its runs write a line
    at a time: a test of megabytes would be slow); the names asked for.
    """
    asked: list[str] = []

    def logs(name: str, tail: int | None, since: float | None = None) -> Any:
        asked.append(name)
        return succeed(list(BIG))

    server.backend.logs = logs  # type: ignore[method-assign]
    return asked


def drain(clock: Clock, until: Callable[[], bool], turns: int = 1000) -> int:
    """Run the clock's turns until C{until()}; how many it took."""
    for turn in range(turns):
        if until():
            return turn
        clock.advance(0)
    raise AssertionError("never")


class SlicedLogsTests(SynchronousTestCase):
    """C{logs} of many lines is encoded a slice at a time, between other requests."""

    def setUp(self) -> None:
        self.server = FakeServer()
        self.asked = bigLogs(self.server)

    def test_pingBetweenSlices(self) -> None:
        """
        While one connection's big C{logs} is being made, another's C{ping}
        is answered at once; the big reply comes whole, later.
        """
        big = self.server.connect()
        other = self.server.connect()
        big.send("logs --tail=all web\n")
        self.assertEqual(big.lines(), [])
        self.assertEqual(other.ok("ping"), "pong")
        self.assertEqual(big.lines(), [])
        drain(self.server.clock, lambda: bool(big.transport.value()))
        [(kind, lines)] = big.replies()
        self.assertEqual((kind, len(lines)), ("OK", len(BIG)))
        self.assertEqual(lines[-1]["line"], BIG[-1].line)

    def test_overTheCapRefused(self) -> None:
        """
        A reply over L{observing.MAX_LOGS_REPLY} is refused, saying how
        many of the newest lines fit, once they are encoded (not the rest).
        """
        self.patch(observing, "MAX_LOGS_REPLY", 100_000)
        encoded: list[Any] = []
        encode = observing.encodeJSONBytes
        self.patch(observing, "encodeJSONBytes", lambda v: encoded.append(v) or encode(v))
        conn = self.server.connect()
        conn.send("logs --tail=all web\n")
        drain(self.server.clock, lambda: bool(conn.transport.value()))
        [(kind, (code, message))] = conn.replies()
        self.assertEqual((kind, code), ("ERR", "bad_request"))
        self.assertIn("use --tail=", message)
        self.assertLess(len(encoded), len(BIG) // 2)

    def test_goneClientStopsTheWork(self) -> None:
        """
        A client that goes while its C{logs} is being made stops the work:
        nothing more of it is encoded.
        """
        encoded: list[Any] = []
        encode = observing.encodeJSONBytes
        self.patch(observing, "encodeJSONBytes", lambda v: encoded.append(v) or encode(v))
        conn = self.server.connect()
        conn.send("logs --tail=all web\n")
        before = len(encoded)
        self.assertLess(before, len(BIG))
        conn.disconnect()
        for _ in range(50):
            self.server.clock.advance(0)
        self.assertEqual(len(encoded), before)


class TickingClock(Clock):
    """A L{Clock} that moves C{step} seconds each time it is read."""

    step = 0.004

    def seconds(self) -> float:
        self.rightNow += self.step
        return self.rightNow


class TurnTimeTests(SynchronousTestCase):
    """A connection's turn ends after L{framing.SECONDS_PER_TURN}, not only after lines."""

    def test_turnBoundedInTime(self) -> None:
        """
        Requests pipelined in one read are served a few a turn when each
        takes time (here, the clock moves as it is read), the rest in later
        turns, all in order.
        """
        server = FakeServer()
        server.clock = TickingClock()
        server.state.clock = server.clock
        conn = server.connect()
        conn.send("version\n" * 20)
        first = len(conn.replies())
        self.assertGreater(first, 0)
        self.assertLess(first, 20)
        for _ in range(20):
            server.clock.advance(0)
        self.assertEqual(first + len(conn.replies()), 20)


class GoneClientTests(SynchronousTestCase):
    """
    The requests a client sent and that waited their turn while it went
    away: those that only answer it are dropped, those that change a
    container are carried out as before.
    """

    def setUp(self) -> None:
        self.server = FakeServer()
        self.asked = bigLogs(self.server)
        self.daemonEnd, self.clientEnd = socket.socketpair()
        self.addCleanup(self.daemonEnd.close)
        self.addCleanup(self.clientEnd.close)
        factory = PycmServerFactory(self.server.state)
        protocol: PycmServerProtocol = factory.buildProtocol(None)
        protocol.makeConnection(SocketTransport(self.daemonEnd))
        self.conn = FakeConnection(protocol, protocol.transport, self.server.clock)

    def test_clientGone(self) -> None:
        """L{framing.clientGone} is true once the other end is closed, not shut."""
        transport = SocketTransport(self.daemonEnd)
        self.assertFalse(framing.clientGone(transport))
        self.clientEnd.shutdown(socket.SHUT_WR)
        self.assertFalse(framing.clientGone(transport))
        self.clientEnd.close()
        self.assertTrue(framing.clientGone(transport))
        self.assertFalse(framing.clientGone(StringTransport()))

    def test_waitingRequestsOfGoneClient(self) -> None:
        """
        A client pipelines C{logs} requests, a C{run} among them, and closes
        while the first is made: the first is answered (it was under way),
        the C{logs}, C{list} and C{inspect} after it are never served, the C{run} is;
        the daemon's log says how many were dropped when the connection closes.
        """
        self.conn.send(
            "logs --tail=all web\nlogs web\nlogs web\nrun xy\nlogs web\nlist\ninspect xy\n"
        )
        self.assertEqual(self.asked, ["web"])
        self.clientEnd.close()
        drain(self.server.clock, lambda: not self.conn.protocol._buffer)
        for _ in range(5):
            self.server.clock.advance(0)
        self.assertEqual(self.asked, ["web"])
        self.assertEqual([c.name for c in self.successResultOf(self.server.backend.list())], ["xy"])
        kinds = [kind for kind, _ in self.conn.replies()]
        self.assertEqual(kinds, ["OK", "OK"])
        self.assertEqual(self.conn.protocol.dropped, 5)
        logged: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, logged.append)
        self.conn.disconnect()
        self.assertIn(
            "closed; 5 requests only answering it discarded",
            [formatEvent(event) for event in logged][-1],
        )

    def test_inFlightRequestOfGoneClient(self) -> None:
        """
        The client closes while its request is in flight (the daemon not
        reading it): the watch closes the connection, which stops the
        request; not before the client went, nor once it only shut its
        sending side (C{nc -N}), nor with no request in flight.
        """
        cancelled: list[object] = []
        held: Deferred[Any] = Deferred(cancelled.append)
        self.server.backend.logs = lambda *a, **kw: held  # type: ignore[method-assign]
        protocol = self.conn.protocol
        gonewatch.closeGoneClients([protocol])
        self.conn.send("logs --tail=all web\n")
        gonewatch.closeGoneClients([protocol])
        self.clientEnd.shutdown(socket.SHUT_WR)
        gonewatch.closeGoneClients([protocol])
        self.assertFalse(self.conn.transport.disconnected)
        self.clientEnd.close()
        gonewatch.closeGoneClients([protocol])
        self.assertTrue(self.conn.transport.disconnected)
        self.assertEqual(cancelled, [])
        self.conn.disconnect()
        self.assertEqual(cancelled, [held])

    def test_changeInFlightGoesOn(self) -> None:
        """
        A request that changes containers (a slow C{stop}) in flight when
        the client goes is not cut short: it goes on to its end.
        """
        self.conn.send("run slow memory ignore-term\n")
        self.conn.send("stop --time=5 slow\n")
        self.assertTrue(self.conn.protocol._inFlight)
        self.clientEnd.close()
        gonewatch.closeGoneClients([self.conn.protocol])
        self.assertFalse(self.conn.transport.disconnected)
        self.server.clock.advance(6)
        [stopped] = self.successResultOf(self.server.backend.list())
        self.assertEqual(stopped.state, "exited")

    def test_noRequestInFlight(self) -> None:
        """A connection gone with nothing in flight is the reactor's to see (it reads it)."""
        self.clientEnd.close()
        gonewatch.closeGoneClients([self.conn.protocol])
        self.assertFalse(self.conn.transport.disconnected)

    def test_halfClosedClientAnswered(self) -> None:
        """
        A client that only shut its sending side (C{nc -N}) still gets an
        answer to every request it sent.
        """
        self.conn.send("logs --tail=all web\nlogs --tail=1 web\nlist\n")
        self.clientEnd.shutdown(socket.SHUT_WR)
        self.conn.halfClose()
        drain(self.server.clock, lambda: self.conn.closed)
        self.assertEqual([kind for kind, _ in self.conn.replies()], ["OK"] * 3)
        self.assertEqual(self.asked, ["web", "web"])


class SlicedFollowTests(SynchronousTestCase):
    """The backlog of C{logs --follow} is encoded a slice at a time too."""

    def test_linesDuringTheBacklogAfterIt(self) -> None:
        """
        A line the container writes while the backlog is encoded is sent
        after the backlog's reply, as an EVENT line, not before it.
        """
        server = FakeServer()
        observers: list[Callable[[LogLine], None]] = []
        ended: Deferred[None] = Deferred()

        def follow(name: str, tail: Any, observer: Any, since: Any = None) -> Any:
            observers.append(observer)
            return succeed(LogFollow(list(BIG), ended, lambda: None))

        server.backend.follow = follow  # type: ignore[method-assign]
        conn = server.connect()
        conn.send("logs --follow --tail=all web\n")
        [observe] = observers
        observe(LogLine(2e9, "stdout", "during"))
        self.assertEqual(conn.lines(), [])
        drain(server.clock, lambda: bool(conn.transport.value()))
        observe(LogLine(2e9, "stdout", "after"))
        replies = conn.replies()
        self.assertEqual([kind for kind, _ in replies], ["OK", "EVENT", "EVENT"])
        self.assertEqual(len(replies[0][1]), len(BIG))
        self.assertEqual([value["line"] for _, value in replies[1:]], ["during", "after"])
