"""
Tests for L{pycm.daemon.framing}: lines split at LF whatever the reads,
the line limit, turns, pauses and the write throttle, on a StringTransport.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.protocols.basic import LineReceiver
from twisted.trial.unittest import SynchronousTestCase

from pycm.daemon.framing import LINES_PER_TURN, LineFraming
from pycm.daemon.protocol import PycmServerProtocol


class Echo(LineFraming):
    """Answers each line with C{got LINE}; records refused lines."""

    MAX_LENGTH = 8

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.lines: list[bytes] = []
        self.refused: list[bytes] = []
        self.resumed = 0

    def connectionMade(self) -> None:
        self.startThrottle()

    def lineReceived(self, line: bytes) -> None:
        self.lines.append(line)
        self._writeLine(b"got " + line)

    def refuseLine(self, head: bytes) -> None:
        self.refused.append(head)
        self._writeLine(b"too long")
        self._flush()
        self._close()

    def writeResumed(self) -> None:
        self.resumed += 1


class Lifting(Echo):
    """An Echo whose line C{lift} raises the limit for the lines after it."""

    def lineReceived(self, line: bytes) -> None:
        if line == b"lift":
            self.MAX_LENGTH = 16
        super().lineReceived(line)

    def limitAfter(self, lines: bytes) -> int:
        return 16 if b"lift\n" in lines else self.MAX_LENGTH


class CountingTransport(StringTransport):
    """A StringTransport that counts the calls that write."""

    writes = 0

    def write(self, data: bytes) -> None:
        self.writes += 1
        super().write(data)

    def writeSequence(self, data: list[bytes]) -> None:  # type: ignore[override]
        self.writes += 1
        StringTransport.write(self, b"".join(data))


class LineFramingTests(SynchronousTestCase):
    def connect(self) -> tuple[Echo, CountingTransport, Clock]:
        clock = Clock()
        protocol = Echo(clock)
        transport = CountingTransport()
        protocol.makeConnection(transport)
        return protocol, transport, clock

    def test_anyChunking(self) -> None:
        """The same bytes read 1..N at a time give the same lines and replies."""
        data = b"a\nbb\r\n\nccc\n"
        for size in range(1, len(data) + 1):
            protocol, transport, _ = self.connect()
            for start in range(0, len(data), size):
                protocol.dataReceived(data[start : start + size])
            self.assertEqual(protocol.lines, [b"a", b"bb\r", b"", b"ccc"], size)
            self.assertEqual(transport.value(), b"got a\ngot bb\r\ngot \ngot ccc\n", size)

    def test_unfinishedLineWaits(self) -> None:
        """A line is served only once its LF comes."""
        protocol, transport, _ = self.connect()
        protocol.dataReceived(b"abc")
        self.assertEqual(protocol.lines, [])
        protocol.dataReceived(b"\n")
        self.assertEqual(protocol.lines, [b"abc"])

    def test_repliesOfOneReadWrittenTogether(self) -> None:
        """The replies to the lines of one read go out in one write."""
        protocol, transport, _ = self.connect()
        protocol.dataReceived(b"a\nb\nc\n")
        self.assertEqual(transport.writes, 1)
        self.assertEqual(transport.value(), b"got a\ngot b\ngot c\n")

    def test_oneLineOneWrite(self) -> None:
        """A read of one whole line (nothing waiting) is answered in one write."""
        protocol, transport, _ = self.connect()
        protocol.dataReceived(b"a\n")
        protocol.dataReceived(b"bb\n")
        self.assertEqual(protocol.lines, [b"a", b"bb"])
        self.assertEqual(transport.writes, 2)
        self.assertEqual(transport.value(), b"got a\ngot bb\n")

    def test_oneLineBehindAnUnfinishedOne(self) -> None:
        """A read ending a line begun earlier serves the whole line, once."""
        protocol, transport, _ = self.connect()
        protocol.dataReceived(b"ab")
        protocol.dataReceived(b"c\n")
        self.assertEqual(protocol.lines, [b"abc"])
        self.assertEqual(transport.value(), b"got abc\n")

    def test_oneOverlongLine(self) -> None:
        """One whole line over MAX_LENGTH, read alone, is refused, never served."""
        protocol, transport, _ = self.connect()
        protocol.dataReceived(b"123456789\n")
        self.assertEqual(protocol.lines, [])
        self.assertEqual(protocol.refused, [b"12345678"])
        self.assertTrue(transport.disconnecting)

    def test_oneLineAfterTheClose(self) -> None:
        """A line read once the connection is closing is not served."""
        protocol, transport, _ = self.connect()
        protocol._close()
        protocol.dataReceived(b"a\n")
        self.assertEqual(protocol.lines, [])

    def test_overlongLineAfterItsPredecessors(self) -> None:
        """
        An unfinished line over MAX_LENGTH stops reading and is refused in
        its turn: the complete lines before it are answered first.
        """
        protocol, transport, _ = self.connect()
        protocol.dataReceived(b"one\ntwo\n" + b"x" * 20)
        self.assertEqual(protocol.lines, [b"one", b"two"])
        self.assertEqual(protocol.refused, [b"x" * 8])
        self.assertEqual(transport.value(), b"got one\ngot two\ntoo long\n")
        self.assertTrue(transport.disconnecting)

    def test_limitLiftedByAWaitingLine(self) -> None:
        """
        An unfinished line behind complete lines that wait their turn is
        held to L{LineFraming.limitAfter} those lines (one may lift the
        limit), then to the limit in force once they are served; behind
        lines that lift nothing, to MAX_LENGTH as always.
        """
        clock = Clock()
        protocol = Lifting(clock)
        protocol.makeConnection(StringTransport())
        protocol.pauseReading("test")
        protocol.dataReceived(b"lift\n" + b"x" * 12)
        self.assertEqual(protocol.refused, [])
        protocol.resumeReading("test")
        protocol.dataReceived(b"\n")
        self.assertEqual(protocol.lines, [b"lift", b"x" * 12])
        protocol.dataReceived(b"y" * 17)
        self.assertEqual(protocol.refused, [b"y" * 8])

        protocol = Lifting(clock)
        protocol.makeConnection(StringTransport())
        protocol.pauseReading("test")
        protocol.dataReceived(b"stay\n" + b"x" * 12)
        self.assertEqual(protocol._buffer, b"stay\n")
        protocol.resumeReading("test")
        self.assertEqual(protocol.lines, [b"stay"])
        self.assertEqual(protocol.refused, [b"x" * 8])

    def test_overlongCompleteLine(self) -> None:
        """A complete line over MAX_LENGTH is refused, never served."""
        protocol, transport, _ = self.connect()
        protocol.dataReceived(b"123456789\nnext\n")
        self.assertEqual(protocol.lines, [])
        self.assertEqual(protocol.refused, [b"12345678"])

    def test_lineAtTheLimit(self) -> None:
        """A line of exactly MAX_LENGTH bytes is served."""
        protocol, _, _ = self.connect()
        protocol.dataReceived(b"12345678\n")
        self.assertEqual(protocol.lines, [b"12345678"])

    def test_turns(self) -> None:
        """
        At most LINES_PER_TURN lines are served in one turn; the rest in
        the next reactor turn.
        """
        protocol, transport, clock = self.connect()
        protocol.dataReceived(b"x\n" * (LINES_PER_TURN + 3))
        self.assertEqual(len(protocol.lines), LINES_PER_TURN)
        self.assertEqual(transport.producerState, "paused")
        clock.advance(0)
        self.assertEqual(len(protocol.lines), LINES_PER_TURN + 3)
        self.assertEqual(transport.producerState, "producing")

    def test_pauseReasons(self) -> None:
        """Lines wait while any reason to pause holds, and are served after."""
        protocol, transport, _ = self.connect()
        protocol.pauseReading("a")
        protocol.pauseReading("b")
        protocol.dataReceived(b"one\n")
        self.assertEqual(protocol.lines, [])
        self.assertEqual(transport.producerState, "paused")
        protocol.resumeReading("a")
        self.assertEqual(protocol.lines, [])
        protocol.resumeReading("b")
        self.assertEqual(protocol.lines, [b"one"])
        self.assertEqual(transport.producerState, "producing")

    def test_writeThrottle(self) -> None:
        """
        A full write buffer (the transport pauses its producer) stops the
        reading; when it drains, writeResumed is called, then reading goes on.
        """
        protocol, transport, _ = self.connect()
        assert transport.producer is not None
        transport.producer.pauseProducing()
        protocol.dataReceived(b"one\n")
        self.assertEqual(protocol.lines, [])
        transport.producer.resumeProducing()
        self.assertEqual(protocol.resumed, 1)
        self.assertEqual(protocol.lines, [b"one"])

    def test_closeUnregistersTheThrottle(self) -> None:
        """Closing unregisters the write throttle before losing the connection."""
        protocol, transport, _ = self.connect()
        protocol._close()
        self.assertIsNone(transport.producer)
        self.assertTrue(transport.disconnecting)

    def test_clearLineBuffer(self) -> None:
        """clearLineBuffer drops the unserved input and returns it."""
        protocol, _, _ = self.connect()
        protocol.pauseReading("a")
        protocol.dataReceived(b"one\ntw")
        self.assertEqual(protocol.clearLineBuffer(), b"one\ntw")
        protocol.resumeReading("a")
        self.assertEqual(protocol.lines, [])

    def test_noLineReceiver(self) -> None:
        """The server protocol borrows no LineReceiver state: it is not one."""
        self.assertFalse(issubclass(PycmServerProtocol, LineReceiver))
