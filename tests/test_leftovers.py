"""
Tests of what a client under legacy framing sent before it went away
(L{pycm.daemon.leftovers}): carried out in order after the request in
flight, bounded, logged; fake transports and a clock, on the memory
backend (its C{ignore-term} image makes a slow C{stop}).
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.protocol import connectionDone
from twisted.logger import LogLevel, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from pycm.daemon.legacyframing import LEGACY_PAUSE, LEGACY_READ_AHEAD
from pycm.testing.server import FakeConnection, FakeServer
from tests.test_logging import captureLog

TOKEN = "s3cret-token-value"


class TurnByTurn:
    """
    A clock that runs each next reactor turn (a call in 0 seconds) only when
    the test says: L{Clock.advance} runs those scheduled meanwhile too.
    """

    def __init__(self) -> None:
        self.turns: list[Callable[[], object]] = []

    def callLater(self, delay: float, f: Callable[..., object], *args: object) -> None:
        assert delay == 0, delay
        self.turns.append(lambda: f(*args))

    def nextTurn(self) -> None:
        self.turns.pop(0)()


class LeftoverRequestsTests(SynchronousTestCase):
    """
    Under legacy framing, the requests a client sent and the daemon read,
    but had not served when the client went (the teaching client closes
    right after C{exit}, never reading a reply), are carried out.
    """

    def setUp(self) -> None:
        self.events = captureLog(self)
        self.server = FakeServer(legacyFraming=True)
        self.clock = self.server.clock

    def typed(self, conn: FakeConnection, *requests: str) -> None:
        """The teaching client's requests: no line end, a pause after each."""
        for request in requests:
            conn.send(request)
            self.clock.advance(LEGACY_PAUSE)

    def settle(self, seconds: float = 0) -> None:
        """Let C{seconds} pass, then the zero-delay calls that follow."""
        self.clock.advance(seconds)
        while any(call.getTime() <= self.clock.seconds() for call in self.clock.getDelayedCalls()):
            self.clock.advance(0)

    def states(self) -> dict[str, str]:
        """Each container's state."""
        return {c["name"]: c["state"] for c in self.server.connect().ok("list")}

    def behindASlowStop(
        self, *requests: str, requireAuth: bool = False, name: str = "slow"
    ) -> FakeConnection:
        """
        A connection whose C{stop} of a container (C{name}) that ignores
        SIGTERM is in flight (5 s), with C{requests} typed behind it.
        """
        first = self.server.connect()
        first.ok(f"run {name} memory ignore-term")
        first.disconnect()
        conn = self.server.connect(requireAuth=requireAuth)
        if requireAuth:
            conn.ok(f"auth {TOKEN}")
        self.typed(conn, f"stop --time=5 {name}", *requests)
        self.assertEqual(conn.lines(), [])
        return conn

    def logged(self, text: str) -> list[str]:
        """The info lines holding C{text}."""
        return [
            formatEvent(event) for event in self.events
            if event["log_level"] == LogLevel.info and text in formatEvent(event)
        ]

    def test_teachingClientClosesAfterExit(self) -> None:
        """
        The finding's session: C{stop} of a container that ignores SIGTERM,
        then C{run web10}, C{list}, C{stop web10}, C{exit}, and the client
        closes.  Once the stop is done, web10 is run and then stopped, in
        order, and nothing is left behind (no timer, no connection).
        """
        conn = self.behindASlowStop("run web10", "list", "stop web10", "exit")
        conn.disconnect()
        self.assertEqual(self.server.state.connections, 1)
        self.settle(4.5)
        self.assertNotIn("web10", self.server.backend._records)
        self.settle(0.5)
        self.assertEqual(self.server.state.connections, 0)
        self.assertEqual(self.states(), {"slow": "exited", "web10": "exited"})
        self.assertEqual(conn.transport.value(), b"")
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_logged(self) -> None:
        """
        The close says how many lines are still to be served; each request
        carried out is in the request log with its outcome; the end says
        how many were carried out and skipped.
        """
        conn = self.behindASlowStop("run web10", "list", "stop web10", "exit")
        peer = conn.protocol.session.peer
        conn.disconnect()
        self.settle(5)
        [closed] = self.logged("closed with")
        self.assertIn(f"connection from {peer} closed with 4 request lines not yet served", closed)
        self.assertNotIn("discarded", closed)
        for request in ("stop slow: ok", "run web10: ok", "stop web10: ok"):
            self.assertEqual(len(self.logged(f"{peer}: {request}")), 1, request)
        [done] = self.logged("done with the requests")
        self.assertIn("(2 carried out, 1 skipped: they only answer the client)", done)

    def test_unfinishedLastLine(self) -> None:
        """
        The unfinished last line (C{exit} sent and the socket closed before
        the pause) is ended by the close, as by a half-close: the lines
        after an C{exit} are not carried out.
        """
        conn = self.behindASlowStop("run web1")
        conn.send("exit\nrun web2\nrun web3")
        conn.disconnect()
        self.settle(5)
        self.assertEqual(set(self.states()), {"slow", "web1"})
        conn = self.behindASlowStop(name="slow2")
        conn.send("run web4")
        conn.disconnect()
        self.settle(5)
        self.assertIn("web4", self.states())

    def test_cutLineNotCarriedOut(self) -> None:
        """
        Once its read-ahead is full the connection is not read, so its
        unfinished last line may be cut: it is dropped (and logged as
        discarded), the complete lines before it carried out.
        """
        conn = self.behindASlowStop()
        conn.send(b"run web1\n#" + b"x" * LEGACY_READ_AHEAD + b"\nrun bbbb")
        self.assertEqual(conn.transport.producerState, "paused")
        conn.disconnect()
        self.settle(5)
        self.assertEqual(set(self.states()), {"slow", "web1"})
        [closed] = self.logged("closed with")
        self.assertIn("; 8 bytes of an unfinished line (no line end) discarded", closed)

    def test_onlyWhatChanges(self) -> None:
        """
        Requests that only answer the client are skipped (a C{wait} would
        hold the rest for nothing; C{events} would subscribe nobody); an
        C{apply} is abandoned, as when its client goes while it runs.
        """
        conn = self.behindASlowStop(
            "wait --for=removed slow",
            "events",
            "logs --follow slow",
            """apply '{"services": {"svc": {}}}'""",
            "run web1",
        )
        conn.disconnect()
        self.settle(5)
        self.assertEqual(set(self.states()), {"slow", "web1"})
        self.assertEqual(len(self.server.state.events.lines), 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_noneOnceTheDaemonStops(self) -> None:
        """
        Requests a client left behind are not carried out once the daemon
        has begun to stop, as a connection's own would be refused: the
        container it asked for is not made after the others were stopped.
        """
        conn = self.behindASlowStop("run web1")
        self.server.state.refusing = True
        conn.disconnect()
        self.settle(5)
        self.assertEqual(set(self.states()), {"slow"})

    def test_authCarriedOut(self) -> None:
        """
        C{auth} is carried out, so the requests after it may be; before it,
        and after a third wrong token, requests are refused (or stop) as
        they would have been.
        """
        self.server = FakeServer(token=TOKEN, legacyFraming=True)
        self.clock = self.server.clock
        conn = self.behindASlowStop("run web1", requireAuth=True)
        conn.disconnect()
        self.settle(5)
        self.assertIn("web1", self.states())

        self.server.connect().ok("run slow2 memory ignore-term")
        conn = self.server.connect(requireAuth=True)
        self.typed(conn, f"auth {TOKEN}", "stop --time=5 slow2")
        conn.lines()
        self.typed(conn, "auth x", "auth y", "auth z", "run web2")
        conn.disconnect()
        self.settle(5)
        self.assertNotIn("web2", self.states())

        conn = self.server.connect(requireAuth=True)
        conn.send(f"run web3\nauth {TOKEN}\nrun web4")
        conn.disconnect()
        self.settle()
        self.assertEqual({"web3", "web4"} & set(self.states()), {"web4"})

    def test_stopWhereTheDaemonWouldClose(self) -> None:
        """
        Leftover lines end where the daemon would have closed the
        connection: an HTTP request (the cross-protocol guard) or a line
        over the limit.
        """
        conn = self.behindASlowStop()
        conn.send("run web1\nGET / HTTP/1.1\nrun web2\n")
        conn.disconnect()
        self.settle(5)
        self.assertEqual(set(self.states()), {"slow", "web1"})
        self.server = FakeServer(legacyFraming=True, maxLineLength=100)
        self.clock = self.server.clock
        conn = self.behindASlowStop()
        conn.send(f"run web1\nrun web2 memory {'x' * 100}\nrun web3\n")
        conn.disconnect()
        self.settle(5)
        self.assertEqual(set(self.states()), {"slow", "web1"})

    def test_closedByTheDaemon(self) -> None:
        """
        Lines left when the daemon itself closed the connection (a
        subscriber too far behind its events) are not carried out.
        """
        self.server = FakeServer(legacyFraming=True, maxEventBacklog=1024)
        self.clock = self.server.clock
        slow = self.server.connect()
        slow.ok("events")
        slow.stopReading()
        slow.send("run web1\n")
        other = self.server.connect()
        for i in range(40):
            other.ok(f"create c{i}")
            if slow.closed:
                break
        self.assertTrue(slow.closed)
        slow.disconnect()
        self.settle()
        self.assertNotIn("web1", self.states())

    def test_fairness(self) -> None:
        """
        Lines pipelined beyond what a turn serves, then a close: the rest
        are carried out a turn's worth (64) at a time, as they would have
        been served.
        """
        conn = self.server.connect()
        conn.send("".join(f"run c{n}\n" for n in range(200)))
        self.assertEqual(len(self.server.backend._records), 64)
        clock = TurnByTurn()
        conn.protocol.clock = clock
        conn.disconnect()
        for count in (64, 128, 192):
            self.assertEqual(len(self.server.backend._records), count)
            clock.nextTurn()
        self.assertEqual(len(self.server.backend._records), 200)
        self.assertEqual(clock.turns, [])
        self.assertEqual(self.server.state.connections, 0)

    def test_whileOpening(self) -> None:
        """
        Requests sent while the daemon opens its backend, by a client gone
        before it is open, are carried out once it is; none if it fails to
        open, and the connection lets go of its place either way.
        """
        for opens in (True, False):
            self.server.state.ready = False
            conn = self.server.connect()
            conn.send("run web1\nrun web2")
            conn.disconnect()
            self.settle()
            self.assertEqual(self.server.backend._records, {})
            self.assertEqual(self.server.state.connections, 1)
            if opens:
                self.server.state.setReady()
            else:
                self.server.state.setFailed()
            self.settle()
            self.assertEqual(self.server.state.connections, 0)
            expected = {"web1", "web2"} if opens else set()
            self.assertEqual(set(self.server.backend._records), expected)
            other = self.server.connect()
            for name in expected:
                other.ok(f"rm -f {name}")
            other.disconnect()

    def test_connectionCapHeld(self) -> None:
        """
        The connection keeps its place under the cap while its leftover
        requests wait for the one in flight.
        """
        conn = self.behindASlowStop("run web1")
        self.assertEqual(self.server.state.connections, 1)
        conn.disconnect()
        self.settle(1)
        self.assertEqual(self.server.state.connections, 1)
        self.settle(4)
        self.assertEqual(self.server.state.connections, 0)

    def test_notWithoutLegacyFraming(self) -> None:
        """
        With newline framing a client that closes gives up its unserved
        lines, as before: it can read its replies, and shut only its
        sending side to have them all served.
        """
        self.server = FakeServer()
        self.clock = self.server.clock
        self.server.connect().ok("run slow memory ignore-term")
        conn = self.server.connect()
        conn.send("stop --time=5 slow\nrun web1\n")
        conn.protocol.connectionLost(connectionDone)
        self.settle(5)
        self.assertEqual(set(self.states()), {"slow"})
        [closed] = self.logged("closed;")
        self.assertIn("1 request line not yet served discarded", closed)
