"""
Tests for the protocol's shortcut for requests whose reply never changes
(L{pycm.daemon.dispatch.FIXED_REPLIES}): the same bytes as the full path,
the same rules, in order with the other replies.
"""

from __future__ import annotations

from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from pycm.daemon.dispatch import FIXED_REPLIES, handleLine
from pycm.daemon.replies import encodeReply
from pycm.testing.server import FakeServer


class FixedReplyTests(SynchronousTestCase):
    def test_sameAsTheFullPath(self) -> None:
        """Each fixed reply is what dispatching and encoding its line gives."""
        conn = FakeServer().connect()
        for line, reply in FIXED_REPLIES.items():
            result = handleLine(conn.protocol.session, line)
            self.assertEqual(encodeReply(b"OK", result) + b"\n", reply)

    def test_sameBytesOnTheWire(self) -> None:
        """A ping is answered the same with the shortcut and without it."""
        fast = FakeServer().connect()
        full = FakeServer(logRequests=True).connect()
        for conn in (fast, full):
            conn.send(b"ping\n")
            conn.send(b"ping\nPING\nping\r\n ping\n")
        self.assertEqual(fast.transport.value(), full.transport.value())
        self.assertEqual(fast.transport.value(), b'OK "pong"\n' * 5)

    def test_beforeAuth(self) -> None:
        """ping needs no token (it is public) on a listener that wants one."""
        server = FakeServer(token="secret")
        conn = server.connect(requireAuth=True)
        self.assertEqual(conn.ok("ping"), "pong")
        self.assertEqual(conn.err("list"), "unauthorized")

    def test_inOrder(self) -> None:
        """Pipelined pings and other requests are answered in order."""
        conn = FakeServer().connect()
        conn.send(b"ping\nversion\nping\nbogus\nping\n")
        kinds = [(kind, value if kind == "OK" and isinstance(value, str) else kind)
                 for kind, value in conn.replies()]
        self.assertEqual(
            kinds, [("OK", "pong"), ("OK", "OK"), ("OK", "pong"), ("ERR", "ERR"), ("OK", "pong")]
        )

    def test_requestLogKept(self) -> None:
        """With requests logged (debug), a ping is logged as before."""
        events: list[dict] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        conn = FakeServer(logRequests=True).connect()
        conn.send(b"ping\n")
        requests = [e for e in events if e.get("log_format") == "{peer} request: {request}"]
        self.assertEqual([e["request"] for e in requests], ["ping"])
