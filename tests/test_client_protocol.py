"""
Tests for L{pycm.client.protocol}: the pipelining client of the line
protocol.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.protocol import Protocol, connectionDone
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from pycm import errors
from pycm.client.protocol import (
    ClientProtocol,
    Disconnected,
    ProtocolError,
    errorFromReply,
)
from pycm.client.testing import (
    FakeDaemon,
    LoopbackPump,
    PumpedTransport,
    connectToFake,
    event,
    ok,
)


def connected() -> tuple[ClientProtocol, StringTransport]:
    client = ClientProtocol()
    transport = StringTransport()
    client.makeConnection(transport)
    return client, transport


def feedInChunks(client: ClientProtocol, data: bytes, size: int) -> None:
    for i in range(0, len(data), size):
        client.dataReceived(data[i : i + size])


class RequestTests(SynchronousTestCase):
    """Sending requests."""

    def test_requestWritesOneLine(self) -> None:
        """A request is written as one LF-terminated UTF-8 line."""
        client, transport = connected()
        client.request("run wébb host sleep 1")
        self.assertEqual(transport.value(), "run wébb host sleep 1\n".encode())

    def test_commandQuotesWords(self) -> None:
        """C{command} joins its words with shell quoting."""
        client, transport = connected()
        client.command("run", "web", "busybox", "sh", "-c", "echo hi; sleep 5")
        self.assertEqual(
            transport.value(), b"run web busybox sh -c 'echo hi; sleep 5'\n"
        )

    def test_lineBreakRefused(self) -> None:
        """A request with a line break fails at once and sends nothing."""
        client, transport = connected()
        self.failureResultOf(client.request("ping\nping"), ValueError)
        self.failureResultOf(client.command("run", "a\rb"), ValueError)
        self.assertEqual(transport.value(), b"")

    def test_silentLinesRefused(self) -> None:
        """
        Blank and comment lines get no reply from the server, so C{request}
        refuses them instead of waiting forever.
        """
        client, transport = connected()
        self.failureResultOf(client.request("   "), ValueError)
        self.failureResultOf(client.request("  # note"), ValueError)
        self.assertEqual(transport.value(), b"")
        self.assertEqual(client.pending, 0)

    def test_authenticate(self) -> None:
        """C{authenticate} sends C{auth TOKEN}, quoted."""
        client, transport = connected()
        d = client.authenticate("s3cr et")
        self.assertEqual(transport.value(), b"auth 's3cr et'\n")
        client.dataReceived(b'OK "authenticated"\n')
        self.assertEqual(self.successResultOf(d), "authenticated")


class ReplyTests(SynchronousTestCase):
    """Matching replies to requests."""

    SERVER = (
        b'OK "pong"\r\n'
        b'EVENT {"type":"container","id":1,"action":"start","name":"web"}\n'
        b"ERR not_found no such container: nope\n"
        b'OK [{"name":"a"},{"name":"b"}]\n'
    )

    def test_fifoInChunks(self) -> None:
        """
        Replies fire the pending Deferreds in request order, EVENT lines
        in between go to listeners, whatever the chunking of the stream
        (every chunk size from 1 byte to all of it).
        """
        for size in range(1, len(self.SERVER) + 1):
            client, _ = connected()
            events: list[Any] = []
            client.addEventListener(events.append)
            d1 = client.request("ping")
            d2 = client.request("inspect nope")
            d3 = client.request("list")
            feedInChunks(client, self.SERVER, size)
            self.assertEqual(self.successResultOf(d1), "pong")
            failure = self.failureResultOf(d2, errors.NotFound)
            self.assertEqual(failure.value.message, "no such container: nope")
            self.assertEqual(
                self.successResultOf(d3), [{"name": "a"}, {"name": "b"}]
            )
            self.assertEqual(
                events,
                [{"type": "container", "id": 1, "action": "start", "name": "web"}],
            )
            self.assertEqual(client.pending, 0)

    def test_eventDoesNotTouchQueue(self) -> None:
        """An EVENT before any reply leaves the pending request waiting."""
        client, _ = connected()
        d = client.request("ping")
        client.dataReceived(b'EVENT {"type":"log","line":"x"}\n')
        self.assertNoResult(d)
        client.dataReceived(b'OK "pong"\n')
        self.assertEqual(self.successResultOf(d), "pong")

    def test_removeEventListener(self) -> None:
        """A removed listener gets no more events; removing twice is fine."""
        client, _ = connected()
        events: list[Any] = []
        client.addEventListener(events.append)
        client.dataReceived(b"EVENT 1\n")
        client.removeEventListener(events.append)
        client.removeEventListener(events.append)
        client.dataReceived(b"EVENT 2\n")
        self.assertEqual(events, [1])

    def test_failingListener(self) -> None:
        """A listener that raises does not stop the others or the replies."""
        client, _ = connected()
        seen: list[Any] = []

        def broken(event: Any) -> None:
            raise RuntimeError("boom")

        client.addEventListener(broken)
        client.addEventListener(seen.append)
        d = client.request("ping")
        client.dataReceived(b'EVENT {"a":1}\nOK "pong"\n')
        self.assertEqual(seen, [{"a": 1}])
        self.assertEqual(self.successResultOf(d), "pong")
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_bigReply(self) -> None:
        """A reply of several MiB (a big C{list}) is accepted."""
        client, _ = connected()
        d = client.request("list")
        value = [{"name": f"c{i}", "pad": "x" * 3000} for i in range(1000)]
        import json

        client.dataReceived(b"OK " + json.dumps(value).encode() + b"\n")
        self.assertEqual(self.successResultOf(d), value)


class ErrorMappingTests(SynchronousTestCase):
    """C{ERR <code> <message>} becomes a L{pycm.errors} exception."""

    def test_everyCode(self) -> None:
        """
        Each error code of the protocol maps to its class, which keeps the code
        and the server's message verbatim.
        """
        for code in errors.ERROR_CODES:
            client, _ = connected()
            d = client.request("x")
            client.dataReceived(f"ERR {code} the message: {code}\n".encode())
            failure = self.failureResultOf(d, errors.PycmError)
            self.assertEqual(failure.value.code, code)
            self.assertEqual(failure.value.message, f"the message: {code}")
            self.assertEqual(type(failure.value).code, code)

    def test_specificClasses(self) -> None:
        """A few codes map to the expected classes."""
        self.assertIsInstance(errorFromReply("not_found", "m"), errors.NotFound)
        self.assertIsInstance(errorFromReply("conflict", "m"), errors.Conflict)
        self.assertIsInstance(
            errorFromReply("unauthorized", "m"), errors.Unauthorized
        )
        self.assertIsInstance(errorFromReply("backend", "m"), errors.BackendError)

    def test_unknownCode(self) -> None:
        """An unknown code gives a plain PycmError that keeps the code."""
        error = errorFromReply("frobnicated", "it broke")
        self.assertIs(type(error), errors.PycmError)
        self.assertEqual(error.code, "frobnicated")
        self.assertEqual(str(error), "it broke")
        self.assertEqual(errors.PycmError.code, "internal")

    def test_errWithoutMessage(self) -> None:
        """C{ERR code} with no message still fails the request."""
        client, _ = connected()
        d = client.request("x")
        client.dataReceived(b"ERR internal\n")
        self.assertEqual(self.failureResultOf(d, errors.InternalError)
                         .value.message, "")


class DisconnectTests(SynchronousTestCase):
    """Losing the connection."""

    def test_allPendingFail(self) -> None:
        """Every pending request fails with L{Disconnected}, in order."""
        client, _ = connected()
        order: list[int] = []
        ds = [client.request(f"wait c{i}") for i in range(3)]

        def record(failure: Failure, i: int) -> Failure:
            order.append(i)
            return failure

        for i, d in enumerate(ds):
            d.addErrback(record, i)
        reason = Failure(ConnectionLost("gone"))
        client.connectionLost(reason)
        for d in ds:
            failure = self.failureResultOf(d, Disconnected)
            self.assertIs(failure.value.reason, reason)
            self.assertIsInstance(failure.value, ConnectionDone)
        self.assertEqual(order, [0, 1, 2])

    def test_requestAfterLoss(self) -> None:
        """A request after the connection is lost fails at once."""
        client, _ = connected()
        client.connectionLost(Failure(ConnectionDone()))
        self.failureResultOf(client.request("ping"), Disconnected)

    def test_whenDisconnectedPerCaller(self) -> None:
        """
        C{whenDisconnected} gives each caller its own Deferred, firing with
        the exception that ended the connection; after the loss it fires at
        once.
        """
        client, _ = connected()
        d1, d2 = client.whenDisconnected(), client.whenDisconnected()
        self.assertIsNot(d1, d2)
        self.assertNoResult(d1)
        reason = Failure(ConnectionDone())
        client.connectionLost(reason)
        self.assertIs(self.successResultOf(d1), reason.value)
        self.assertIs(self.successResultOf(d2), reason.value)
        self.assertIs(
            self.successResultOf(client.whenDisconnected()), reason.value
        )

    def test_disconnect(self) -> None:
        """C{disconnect} closes the transport."""
        client, transport = connected()
        client.disconnect()
        self.assertTrue(transport.disconnecting)


class ProtocolErrorTests(SynchronousTestCase):
    """A daemon that breaks the framing."""

    def test_garbageLine(self) -> None:
        """
        A line that is not OK/ERR/EVENT fails the head request with
        L{ProtocolError} and drops the connection.
        """
        client, transport = connected()
        d1, d2 = client.request("ping"), client.request("ping")
        client.dataReceived(b"HTTP/1.1 400 Bad Request\n")
        self.failureResultOf(d1, ProtocolError)
        self.assertTrue(transport.disconnecting)
        client.connectionLost(Failure(ConnectionDone()))
        self.failureResultOf(d2, Disconnected)
        self.flushLoggedErrors()

    def test_badJSON(self) -> None:
        """An OK whose JSON does not parse is a protocol error."""
        client, transport = connected()
        d = client.request("ping")
        client.dataReceived(b"OK {nope\n")
        self.failureResultOf(d, ProtocolError)
        self.assertTrue(transport.disconnecting)
        self.flushLoggedErrors()

    def test_unsolicitedReply(self) -> None:
        """A reply with no request waiting drops the connection."""
        client, transport = connected()
        client.dataReceived(b'OK "what"\n')
        self.assertTrue(transport.disconnecting)
        self.flushLoggedErrors()

    def test_tooLong(self) -> None:
        """A reply longer than MAX_LENGTH drops the connection."""
        client, transport = connected()
        client.MAX_LENGTH = 100
        d = client.request("list")
        client.dataReceived(b"OK " + b"1" * 200)
        self.failureResultOf(d, ProtocolError)
        self.assertTrue(transport.disconnecting)
        self.flushLoggedErrors()

    def test_maxLengthIsGenerous(self) -> None:
        """Replies of up to 16 MiB are allowed."""
        self.assertGreaterEqual(ClientProtocol.MAX_LENGTH, 16 * 1024 * 1024)


class FakeDaemonTests(SynchronousTestCase):
    """The client against L{FakeDaemon} over a L{LoopbackPump}."""

    def test_pipelinedWithHeldReply(self) -> None:
        """
        Pipelined requests: a held-back reply holds back the later ones,
        and each Deferred gets its own reply.
        """
        held: Deferred[str] = Deferred()
        daemon = FakeDaemon({"stop": lambda words: held, "list": ok([])})
        client, daemon, pump = connectToFake(daemon)
        d1 = client.command("stop", "web")
        d2 = client.command("list")
        pump.flush()
        self.assertEqual(daemon.received, ["stop web", "list"])
        self.assertNoResult(d1)
        self.assertNoResult(d2)
        held.callback(ok({"name": "web", "state": "exited"}))
        pump.flush()
        self.assertEqual(self.successResultOf(d1)["state"], "exited")
        self.assertEqual(self.successResultOf(d2), [])

    def test_exitClosesAndFailsTheRest(self) -> None:
        """
        After C{exit} the server closes: its reply arrives, requests sent
        behind it fail with L{Disconnected}.
        """
        client, daemon, pump = connectToFake(FakeDaemon())
        d1 = client.request("exit")
        d2 = client.request("ping")
        pump.flush()
        self.assertEqual(self.successResultOf(d1), "bye")
        self.failureResultOf(d2, Disconnected)
        self.successResultOf(client.whenDisconnected())

    def test_unknownCommand(self) -> None:
        """L{FakeDaemon} answers a command it has no handler for with C{ERR}."""
        client, daemon, pump = connectToFake(FakeDaemon())
        d = client.request("frobnicate")
        pump.flush()
        self.failureResultOf(d, errors.BadRequest)

    def test_eventsBeforeReply(self) -> None:
        """A handler's list of lines goes out in order: events, then the reply."""
        seen: list[Any] = []
        daemon = FakeDaemon({"poke": [event({"n": 1}), event({"n": 2}), ok("done")]})
        client, daemon, pump = connectToFake(daemon)
        client.addEventListener(seen.append)
        d = client.request("poke")
        pump.flush()
        self.assertEqual(self.successResultOf(d), "done")
        self.assertEqual(seen, [{"n": 1}, {"n": 2}])

    def test_daemonDisconnects(self) -> None:
        """L{FakeDaemon.disconnect} fails the client's pending requests."""
        held: Deferred[str] = Deferred()
        client, daemon, pump = connectToFake(FakeDaemon({"wait": lambda words: held}))
        d = client.request("wait")
        pump.flush()
        daemon.disconnect()
        pump.flush()
        self.failureResultOf(d, Disconnected)
        self.successResultOf(client.whenDisconnected())


class _Recorder(Protocol):
    """A protocol that keeps what it receives and why it was closed."""

    def __init__(self) -> None:
        self.received = b""
        self.reasons: list[Failure] = []

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.reasons.append(reason)


class _Echo(Protocol):
    """A protocol that writes back every byte it receives."""

    def dataReceived(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)


class LoopbackPumpTests(SynchronousTestCase):
    """L{LoopbackPump} carries bytes and closings between two transports."""

    def setUp(self) -> None:
        self.left, self.right = _Recorder(), _Recorder()
        self.leftTransport = PumpedTransport(self.left)
        self.rightTransport = PumpedTransport(self.right)
        self.pump = LoopbackPump(self.leftTransport, self.rightTransport)

    def test_bothWays(self) -> None:
        """What each side writes arrives at the other side at the next flush."""
        self.leftTransport.write(b"hello")
        self.rightTransport.writeSequence([b"wor", b"ld"])
        self.assertEqual((self.left.received, self.right.received), (b"", b""))
        self.assertTrue(self.pump.flush())
        self.assertEqual((self.left.received, self.right.received), (b"world", b"hello"))
        self.assertFalse(self.pump.flush())

    def test_closeAfterData(self) -> None:
        """
        A side that closes has its data delivered first; then the other
        side, and at the next step the closing one, lose the connection
        with L{ConnectionDone}.
        """
        self.rightTransport.write(b"bye")
        self.rightTransport.loseConnection()
        self.rightTransport.write(b"dropped")
        self.assertTrue(self.pump.pump())
        self.assertEqual(self.left.received, b"bye")
        self.assertEqual((self.left.reasons, self.right.reasons), ([], []))
        self.assertTrue(self.pump.pump())
        self.assertEqual(len(self.left.reasons), 1)
        self.left.reasons[0].trap(ConnectionDone)
        self.assertEqual(self.right.reasons, [])
        self.assertTrue(self.pump.pump())
        self.assertEqual(len(self.right.reasons), 1)
        self.assertFalse(self.pump.flush())
        self.assertEqual(len(self.left.reasons) + len(self.right.reasons), 2)

    def test_abortIsClose(self) -> None:
        """C{abortConnection} closes as C{loseConnection} does: data written still arrives."""
        self.leftTransport.write(b"last")
        self.leftTransport.abortConnection()
        self.pump.flush()
        self.assertEqual(self.right.received, b"last")
        self.assertEqual((len(self.left.reasons), len(self.right.reasons)), (1, 1))

    def test_busyForEver(self) -> None:
        """Two sides that answer every byte forever make C{flush} give up."""
        left, right = _Echo(), _Echo()
        leftTransport, rightTransport = PumpedTransport(left), PumpedTransport(right)
        left.makeConnection(leftTransport)
        right.makeConnection(rightTransport)
        leftTransport.write(b"ping")
        pump = LoopbackPump(leftTransport, rightTransport)
        self.assertRaises(RuntimeError, pump.flush)
