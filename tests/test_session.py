"""
Tests for the seam between the protocol and the session
(L{pycm.daemon.session.IConnection}, L{pycm.daemon.session.ISession}),
and for the server-side harness, L{pycm.testing.server}.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyClass, verifyObject

from pycm.backends.memory import MemoryBackend
from pycm.daemon.eventlog import EventLog
from pycm.daemon.session import DaemonState, IConnection, ISession, Session
from pycm.model import ContainerEvent, LogFollow, LogLine
from pycm.testing.server import FakeServer, RecordingConnection


def makeSession(token: str | None = None) -> tuple[Session, RecordingConnection, DaemonState]:
    clock = Clock()
    backend = MemoryBackend(clock)
    backend.open()
    state = DaemonState(clock, backend, EventLog(), token=token)
    connection = RecordingConnection()
    return Session(state, connection, requireAuth=True, peer="peer"), connection, state


class SeamTests(SynchronousTestCase):
    def test_protocolProvidesIConnection(self) -> None:
        """The server protocol is an IConnection, its session an ISession."""
        conn = FakeServer().connect()
        verifyObject(IConnection, conn.protocol)
        verifyObject(ISession, conn.protocol.session)

    def test_recordingConnection(self) -> None:
        """The harness's recording connection is an IConnection too."""
        verifyClass(IConnection, RecordingConnection)
        verifyObject(IConnection, RecordingConnection())

    def test_callAfterReplyRunsAfterTheReply(self) -> None:
        """
        What the session asks to run after a reply runs once it is written:
        an event it sends follows the reply.  It runs once.
        """
        conn = FakeServer().connect()
        session = conn.protocol.session
        session.callAfterReply(lambda: session.sendEvent({"after": "reply"}))
        conn.send("ping\nping\n")
        self.assertEqual(conn.lines(), [b'OK "pong"', b'EVENT {"after":"reply"}', b'OK "pong"'])


class SessionTests(SynchronousTestCase):
    """A session on its own, against a recording connection."""

    def test_authenticated(self) -> None:
        """Only a listener that wants a token, with a token set, needs auth."""
        self.assertFalse(makeSession(token="t")[0].authenticated)
        self.assertTrue(makeSession(token=None)[0].authenticated)

    def test_liveEvents(self) -> None:
        """A subscribed session sends matching events as live ones."""
        session, connection, state = makeSession()
        session.subscribe({})
        state.events.record(ContainerEvent("start", "web", 1.0))
        [(kind, value)] = connection.events
        self.assertEqual((kind, value["action"], value["name"]), ("live", "start", "web"))

    def test_replayedEvents(self) -> None:
        """Events from the log go to the connection as replayed ones."""
        session, connection, _ = makeSession()
        session.replayEvent({"id": 1})
        self.assertEqual(connection.events, [("replayed", {"id": 1})])

    def test_close(self) -> None:
        """close asks the connection to close after the reply, with the reason."""
        session, connection, _ = makeSession()
        session.close("3 failed auth attempts")
        session.close()
        self.assertEqual(connection.closes, ["3 failed auth attempts", ""])

    def test_followEndsAfterTheReply(self) -> None:
        """
        A follow that is over at once sends its log_end only after the
        reply that started it.
        """
        session, connection, _ = makeSession()
        ended: Deferred[None] = Deferred()
        ended.callback(None)
        session.followedNames.add("web")
        session.startFollowing("web", LogFollow([], ended, lambda: None))
        self.assertEqual(connection.events, [])
        connection.reply()
        self.assertEqual(connection.events, [("live", {"type": "log_end", "name": "web"})])
        self.assertEqual(session.followHandles, {})

    def test_followedLineTags(self) -> None:
        """
        A followed line goes out as a C{log} event with its time, stream and
        text, and its task and node when it has them (a swarm service's).
        """
        session, connection, _ = makeSession()
        session.followedNames.add("web")
        session.sendLogLine("web", LogLine(0.0, "stdout", "plain"))
        session.sendLogLine("web", LogLine(0.0, "stderr", "tagged", task="t1", node="n1"))
        plain, tagged = (value for _, value in connection.events)
        self.assertEqual(
            plain,
            {"type": "log", "name": "web", "time": "1970-01-01T00:00:00.000Z",
             "stream": "stdout", "line": "plain"},
        )
        self.assertEqual((tagged["task"], tagged["node"], tagged["line"]), ("t1", "n1", "tagged"))

    def test_disconnectedLetsGo(self) -> None:
        """
        Once disconnected, a session cancels its follows and waits, sends
        nothing more, and holds no reference to its connection.
        """
        session, connection, state = makeSession()
        cancelled: list[str] = []
        session.subscribe({})
        session.followedNames.add("web")
        session.startFollowing("web", LogFollow([], Deferred(), lambda: cancelled.append("web")))
        pending: Deferred[Any] = Deferred()
        session.pending.add(pending)
        session.disconnected()
        self.assertEqual(cancelled, ["web"])
        self.failureResultOf(pending)
        state.events.record(ContainerEvent("start", "web", 1.0))
        session.sendEvent({"x": 1})
        session.close("x")
        self.assertEqual((connection.events, connection.closes), ([], []))
        self.assertNotIn(connection, [getattr(m, "__self__", None) for m in vars(session).values()])


class HarnessTests(SynchronousTestCase):
    """The server-side harness itself."""

    def test_request(self) -> None:
        """ok, err and replies parse the server's lines."""
        conn = FakeServer().connect()
        self.assertEqual(conn.ok("ping"), "pong")
        self.assertEqual(conn.err("nonsense"), "bad_request")
        conn.send("ping\nnonsense\n")
        kinds = [kind for kind, _ in conn.replies()]
        self.assertEqual(kinds, ["OK", "ERR"])

    def test_linesReadOnce(self) -> None:
        """lines gives each line the server wrote once, in order."""
        conn = FakeServer().connect()
        conn.send("ping\n")
        self.assertEqual(conn.lines(), [b'OK "pong"'])
        self.assertEqual(conn.lines(), [])
        conn.send("version\n")
        [line] = conn.lines()
        self.assertTrue(line.startswith(b"OK {"), line)

    def test_tokenAndPeer(self) -> None:
        """A server with a token wants it on listeners that ask; peers are TCP hosts."""
        server = FakeServer(token="secret")
        conn = server.connect(requireAuth=True, peer="192.0.2.7")
        self.assertEqual(conn.protocol.session.peer, "192.0.2.7:40000")
        self.assertEqual(conn.err("ls"), "unauthorized")
        self.assertEqual(conn.ok("auth secret"), "authenticated")
        self.assertEqual(conn.ok("ls"), [])
        self.assertEqual(server.connect().ok("ls"), [])

    def test_chunks(self) -> None:
        """sendInChunks delivers the bytes as reads of the given size."""
        conn = FakeServer().connect()
        conn.sendInChunks(b"ping\nping\n", 3)
        self.assertEqual([kind for kind, _ in conn.replies()], ["OK", "OK"])

    def test_readingAndHalfClose(self) -> None:
        """
        stopReading makes the server stop reading; startReading resumes it;
        after halfClose the server answers what was sent and closes.
        """
        conn = FakeServer().connect()
        conn.stopReading()
        self.assertEqual(conn.transport.producerState, "paused")
        conn.send("ping\n")
        self.assertEqual(conn.lines(), [])
        conn.startReading()
        self.assertEqual(conn.lines(), [b'OK "pong"'])
        conn.send("ping\n")
        conn.halfClose()
        self.assertEqual(conn.lines(), [b'OK "pong"'])
        self.assertTrue(conn.closed)

    def test_disconnect(self) -> None:
        """disconnect ends the connection: the daemon no longer counts it."""
        server = FakeServer()
        conn = server.connect()
        self.assertEqual(server.state.connections, 1)
        conn.disconnect()
        self.assertEqual(server.state.connections, 0)
        self.assertTrue(conn.protocol.session.closed)
