"""
Tests for C{logs} of a big log on the Docker and swarm backends: the
engine's answer is read as it comes and split into lines a slice at a time
(L{pycm.backends.docker.logbody}), so another client's C{ping} is answered
before the big reply is made, a client that goes stops the work and
closes the engine's connection, and an engine that stops sending gets the
client an error after C{request-timeout}.  On the fake engines and a
L{Clock}.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from pycm.backends.docker import backend as dockerbackend
from pycm.backends.docker import follow as dockerfollow
from pycm.backends.docker.engine import Stream
from pycm.backends.swarm import backend as swarmbackend
from pycm.backends.swarm import loglines
from pycm.daemon.eventlog import EventLog
from pycm.daemon.protocol import PycmServerFactory
from pycm.daemon.session import DaemonState
from pycm.interfaces import IContainerBackend
from pycm.model import ContainerSpec
from pycm.testing import dockerengine, fakeengine, swarmlogs
from pycm.testing.clock import TurnClock, settleClock
from pycm.testing.conformance.mixin import SynchronousTestCaseMixin
from pycm.testing.dockerengine import FakeDockerEngine
from pycm.testing.dockerstate import FakeContainer, Feed
from pycm.testing.fakeengine import PIECE
from pycm.testing.server import FakeConnection
from pycm.testing.swarmengine import FakeSwarmEngine

EPOCH = 1_700_000_000

#: Lines enough for a body of megabytes (many slices, many pieces).
COUNT = 40_000


def settled(clock: Clock, d: Deferred[Any]) -> Any:
    """What C{d} fires with once C{clock} has turned enough."""
    out: list[Any] = []
    settleClock(clock, d, 60).addBoth(out.append)
    return out[0]


def drain(clock: Clock, until: Callable[[], bool], turns: int = 100_000) -> None:
    """Run the clock's turns until C{until()}."""
    for _ in range(turns):
        if until():
            return
        clock.advance(0)
    raise AssertionError("never")


def fillLog(container: FakeContainer) -> list[str]:
    """Give C{container} L{COUNT} lines of log; their texts."""
    texts = [f"line {i} " + "x" * 40 for i in range(COUNT)]
    start = (EPOCH + 10) * 10**9
    container.logs[:] = [
        (start + i * 1000, "stdout" if i % 3 else "stderr", text.encode())
        for i, text in enumerate(texts)
    ]
    return texts


def stalling(clock: Any, feed: Feed, body: bytes, piece: int = PIECE) -> None:
    """A fake engine's log answer that stops after its first piece, never ended."""
    feed.write(body[:piece])


def notMultiplexed(clock: Any, feed: Feed, body: bytes, piece: int = PIECE) -> None:
    """A fake engine's log answer that is not a multiplexed stream (a bad stream number)."""
    feed.write(b"\x07" + b"\0" * 7)


class Streams:
    """Wraps an engine's C{stream}: the log reads it opened, the bytes they gave."""

    def __init__(self, engine: Any) -> None:
        self.opened: list[Stream] = []
        self.received = 0
        original = engine.stream

        def stream(method: str, path: str, params: Any, onData: Any, *a: Any, **kw: Any) -> Any:
            def counted(data: bytes) -> None:
                self.received += len(data)
                onData(data)

            d = original(method, path, params, counted, *a, **kw)
            if path.endswith("/logs"):
                d.addCallback(self._opened)
            return d

        engine.stream = stream

    def _opened(self, stream: Stream) -> Stream:
        self.opened.append(stream)
        return stream


class BigLogMixin(SynchronousTestCaseMixin):
    """The tests, on a backend made by L{makeBackend} with a big log of C{web}."""

    clock: Clock
    made: list[Any]

    def makeBackend(self) -> tuple[IContainerBackend, Any, list[str]]:
        """The backend, the engine it reads the log from, the log's texts."""
        raise NotImplementedError

    def lineMaker(self) -> tuple[Any, str]:
        """The module and name of the function making each line read."""
        raise NotImplementedError

    def setUp(self) -> None:
        self.clock = TurnClock()
        self.clock.advance(EPOCH)
        backend, engine, self.texts = self.makeBackend()
        self.streams = Streams(engine)
        self.state = DaemonState(self.clock, backend, EventLog())
        module, name = self.lineMaker()
        make = getattr(module, name)
        self.made = []

        def counting(*args: Any) -> Any:
            self.made.append(None)
            return make(*args)

        self.patch(module, name, counting)

    def connect(self) -> FakeConnection:
        factory = PycmServerFactory(self.state)
        protocol = factory.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        return FakeConnection(protocol, transport, self.clock)

    def test_pingBeforeTheBigReply(self) -> None:
        """
        While one client's C{logs --tail=all} is being read from the engine,
        another's C{ping} is answered: its reply comes before the last of
        the log's lines is even made; the big reply then comes whole.
        """
        big = self.connect()
        other = self.connect()
        big.send("logs --tail=all web\n")
        drain(self.clock, lambda: bool(self.made))
        self.assertLess(len(self.made), COUNT)
        self.assertEqual(other.ok("ping"), "pong")
        self.assertLess(len(self.made), COUNT)
        self.assertEqual(big.lines(), [])
        drain(self.clock, lambda: bool(big.transport.value()))
        [(kind, lines)] = big.replies()
        self.assertEqual(kind, "OK")
        self.assertEqual([line["line"] for line in lines], self.texts)
        self.assertEqual([line["stream"] for line in lines[:3]], ["stderr", "stdout", "stdout"])

    def test_goneClientStopsTheRead(self) -> None:
        """
        A client that goes while its C{logs} is being read stops the work:
        no more lines are made, and the engine's connection is closed
        before the engine sent the whole log.
        """
        conn = self.connect()
        conn.send("logs --tail=all web\n")
        drain(self.clock, lambda: bool(self.made))
        [stream] = self.streams.opened
        conn.disconnect()
        self.assertTrue(stream.ended.called)
        made, received = len(self.made), self.streams.received
        for _ in range(200):
            self.clock.advance(0)
        self.assertEqual(len(self.made), made)
        self.assertEqual(self.streams.received, received)
        self.assertLess(made, COUNT)
        self.assertLess(received, COUNT * 40)

    def test_stalledEngineErrs(self) -> None:
        """
        An engine that stops sending the log mid-way: once nothing came for
        its request timeout (not before), the client gets C{ERR
        unavailable} naming the container, and the engine's connection is
        closed.
        """
        self.patch(dockerengine, "writeBody", stalling)
        self.patch(swarmlogs, "writeBody", stalling)
        conn = self.connect()
        conn.send("logs --tail=all web\n")
        drain(self.clock, lambda: bool(self.made))
        [stream] = self.streams.opened
        self.clock.advance(9.9)
        for _ in range(200):
            self.clock.advance(0)
        self.assertEqual(conn.lines(), [])
        self.assertFalse(stream.ended.called)
        self.clock.advance(0.1)
        drain(self.clock, lambda: bool(conn.transport.value()))
        [(kind, (code, message))] = conn.replies()
        self.assertEqual((kind, code), ("ERR", "unavailable"))
        self.assertIn("stopped sending the log of web: nothing came for 10 s", message)
        self.assertTrue(stream.ended.called)


class DockerBigLogTests(BigLogMixin, SynchronousTestCase):
    """The Docker backend, on L{FakeDockerEngine}."""

    def makeBackend(self) -> tuple[IContainerBackend, Any, list[str]]:
        engine = FakeDockerEngine(self.clock)
        backend = dockerbackend.makeBackend(self.clock, None, {"network": "none"}, engine)
        settled(self.clock, backend.open())
        self.addCleanup(lambda: settled(self.clock, backend.close()))
        settled(self.clock, backend.create(ContainerSpec("web", command=("sleep", "100"))))
        [container] = engine.containers.values()
        return backend, engine, fillLog(container)

    def lineMaker(self) -> tuple[Any, str]:
        return dockerfollow, "logLine"

    def test_notMultiplexedErrs(self) -> None:
        """
        A log's answer that is not a multiplexed stream gets the client
        C{ERR backend} naming the container (it was an internal error),
        and the engine's connection is closed.
        """
        self.patch(dockerengine, "writeBody", notMultiplexed)
        conn = self.connect()
        conn.send("logs --tail=all web\n")
        drain(self.clock, lambda: bool(conn.transport.value()))
        [(kind, (code, message))] = conn.replies()
        self.assertEqual((kind, code), ("ERR", "backend"))
        self.assertEqual(
            message,
            "the docker engine sent the log of web not as a multiplexed stream: "
            "bad stream number 7",
        )
        [stream] = self.streams.opened
        self.assertTrue(stream.ended.called)


class SwarmBigLogTests(BigLogMixin, SynchronousTestCase):
    """The swarm backend, on L{FakeSwarmEngine}."""

    def makeBackend(self) -> tuple[IContainerBackend, Any, list[str]]:
        engine = FakeSwarmEngine(self.clock)
        backend = swarmbackend.makeBackend(self.clock, None, {}, engine, {})
        settled(self.clock, backend.open())
        self.addCleanup(lambda: settled(self.clock, backend.close()))
        settled(self.clock, backend.create(ContainerSpec("web", command=("sleep", "infinity"))))
        settled(self.clock, backend.start("web"))
        [container] = [
            c for node in engine.cluster.nodes for c in node.engine.containers.values()
        ]
        return backend, engine, fillLog(container)

    def lineMaker(self) -> tuple[Any, str]:
        return loglines, "stampNanos"


class WriteBodyTests(SynchronousTestCase):
    """L{fakeengine.writeBody}: a fake engine's log answer, a piece a turn."""

    def test_noPieceAfterTheReaderClosed(self) -> None:
        """
        Once the reader has closed the stream, no piece more reaches it
        and nothing more is scheduled.
        """
        clock = TurnClock()
        received: list[bytes] = []
        feed = Feed(received.append, Deferred())
        fakeengine.writeBody(clock, feed, b"x" * 10, piece=4)
        self.assertEqual(received, [b"xxxx"])
        feed.end()
        clock.advance(0)
        self.assertEqual(received, [b"xxxx"])
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_wholeBody(self) -> None:
        """The body comes a piece a turn, then the stream ends."""
        clock = TurnClock()
        received: list[bytes] = []
        feed = Feed(received.append, Deferred())
        fakeengine.writeBody(clock, feed, b"x" * 10, piece=4)
        self.assertEqual(received, [b"xxxx"])
        for _ in range(2):
            self.assertFalse(feed.ended.called)
            clock.advance(0)
        self.assertEqual(received, [b"xxxx", b"xxxx", b"xx"])
        self.assertTrue(feed.ended.called)


class MergeInTimeOrderTests(SynchronousTestCase):
    """L{loglines.mergeInTimeOrder}: L{loglines.inTimeOrder}, a slice at a time."""

    def test_sameOrderInSlices(self) -> None:
        """
        Many lines of tasks out of time order, with ties: the same order as
        one sort gives (ties in the order read), those C{keep} refuses left
        out, in more than one slice.
        """
        self.patch(loglines, "LINES_PER_SLICE", 7)
        lines = [
            loglines.RawLine(f"t{i % 3}", None, None, (i * 7919) % 13, "stdout", str(i))
            for i in range(60)
        ]
        job = loglines.mergeInTimeOrder(lines, lambda line: line.nanos != 5)
        slices = 1
        while True:
            try:
                self.assertIsNone(next(job))
            except StopIteration as stop:
                merged = stop.value
                break
            slices += 1
        expected = loglines.inTimeOrder(line for line in lines if line.nanos != 5)
        self.assertEqual([line.text for line in merged], [line.text for line in expected])
        self.assertGreater(slices, 60 // 7)
