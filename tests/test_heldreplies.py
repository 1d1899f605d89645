"""
Tests for replies made for one connection alone (L{ReplyArray}: C{logs},
C{stats}), written a piece at a time as C{list}'s, and the daemon-wide
budget of those held for clients that do not read
(L{pycm.daemon.heldreplies}), on the memory backend, a L{Clock} and a
transport that throttles as TCP's does.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import succeed
from twisted.trial.unittest import SynchronousTestCase

from pycm import wirejson
from pycm.daemon.heldreplies import HeldReplies, ReplyArray
from pycm.daemon.protocol import PycmServerProtocol
from pycm.daemon.replies import encodeReply
from pycm.model import LogLine
from pycm.testing.server import FakeServer
from pycm.wirejson import encodeJSONBytes

from .test_listpieces import ThrottlingTransport, readUntilQuiet, throttledConnection

#: The pieces' size in these tests: a few log lines each.
PIECE = 1000


class HeldRepliesTests(SynchronousTestCase):
    """
    A big C{logs} reply on connections that throttle.  The backend's
    C{logs} is replaced by one giving many lines at once: the memory
    backend's runs write a line at a time, a test of megabytes would be
    slow.
    """

    def setUp(self) -> None:
        self.patch(wirejson, "PIECE_BYTES", PIECE)
        self.server = FakeServer()
        self.server.connect().ok("run big")
        self.lines = [
            LogLine(1_700_000_000.0 + i, "stdout", f"line {i} \u00e9 " + "x" * 80)
            for i in range(500)
        ]
        self.server.backend.logs = (  # type: ignore[method-assign]
            lambda name, tail, since=None: succeed(list(self.lines))
        )
        #: The reply line as it always was: one JSON array.
        self.expected = encodeReply(b"OK", [line.toJSON() for line in self.lines]) + b"\n"

    def connect(self, limit: int = 2000) -> tuple[PycmServerProtocol, ThrottlingTransport]:
        return throttledConnection(self, limit)

    readAll = readUntilQuiet

    @property
    def held(self) -> HeldReplies:
        return self.server.state.heldReplies

    def test_byteIdentical(self) -> None:
        """
        The reply is written a piece at a time, as the client reads, and its
        bytes are the one JSON array line they always were; once written
        nothing of it is held.
        """
        protocol, transport = self.connect()
        protocol.dataReceived(b"logs --tail=all big\n")
        self.assertLess(len(transport.value()), 2000 + 2 * PIECE)
        self.assertGreater(self.held.total, len(self.expected))
        self.assertEqual(self.readAll(transport), self.expected)
        self.assertEqual(self.held.total, 0)
        self.assertIsNone(protocol._pieces)

    def test_neverReadingClientsBounded(self) -> None:
        """
        Clients that ask for a big reply and never read hold at most the
        budget of replies together: each that stops reading while they are
        over it is disconnected and its reply let go of; those within it
        are kept, and still get the whole reply when they read.
        """
        cost = ReplyArray([encodeJSONBytes(line.toJSON()) for line in self.lines]).cost
        self.held.budget = 3 * cost
        connections: list[tuple[Any, ThrottlingTransport]] = []
        for _ in range(10):
            protocol, transport = self.connect()
            protocol.dataReceived(b"logs --tail=all big\n" * 5)
            self.server.clock.advance(1)
            connections.append((protocol, transport))
            self.assertLessEqual(self.held.total, self.held.budget)
            self.assertLess(len(transport.value()), 2000 + 2 * PIECE)
        dropped = [transport.disconnecting for _, transport in connections]
        self.assertEqual(dropped, [False] * 3 + [True] * 7)
        for protocol, _ in connections[3:]:
            protocol.connectionLost()
            self.assertIsNone(protocol._pieces)
        self.assertEqual(self.held.total, 3 * cost)
        protocol, transport = connections[0]
        self.assertEqual(self.readAll(transport), self.expected * 5)
        for protocol, _ in connections[1:3]:
            protocol.connectionLost()
        self.assertEqual(self.held.total, 0)

    def test_followBacklogPieced(self) -> None:
        """
        The lines C{logs --follow} sends first are one such reply, the
        same line as C{logs}, counted while it is written.
        """
        follow: Any = self.server.backend
        ended: Any = None
        from pycm.model import LogFollow

        follow.follow = lambda name, tail, observer, since=None: succeed(
            LogFollow(list(self.lines), ended, lambda: None)
        )
        protocol, transport = self.connect()
        protocol.dataReceived(b"logs --follow --tail=all big\n")
        self.assertGreater(self.held.total, 0)
        self.assertEqual(self.readAll(transport), self.expected)
        self.assertEqual(self.held.total, 0)

    def test_stats(self) -> None:
        """A C{stats} reply is one of its own too, its line as ever."""
        conn = self.server.connect()
        self.assertEqual(len(conn.ok("stats")), 1)
        protocol, transport = self.connect()
        protocol.dataReceived(b"stats\n")
        line = self.readAll(transport)
        self.assertTrue(line.startswith(b'OK [{"name":"big"'))
        self.assertTrue(line.endswith(b"}]\n"))
