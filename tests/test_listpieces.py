"""
Tests for C{list} at scale: the supervisor's listing kept while no record
changes (L{pycm.backends.supervisor.records.RecordsByName}), and a reply
of megabytes written a piece at a time as the client reads
(L{pycm.wirejson.EncodedArray.piece}, L{pycm.daemon.framing.LineFraming.writeArray}),
on the memory backend, a L{Clock} and a transport that throttles as TCP's
does.
"""

from __future__ import annotations

import gc
import json
import socket
from typing import Any

from twisted.internet.interfaces import ITCPTransport
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from pycm import wirejson
from pycm.backends.memory import MemoryBackend
from pycm.backends.supervisor.records import Record, RecordsByName
from pycm.daemon import replies
from pycm.daemon.protocol import PycmServerFactory, PycmServerProtocol
from pycm.model import ContainerSpec
from pycm.testing.server import FakeServer
from pycm.wirejson import EncodedArray, encodeJSONBytes

#: The pieces' size in these tests: a few summaries each.
PIECE = 1000


class ThrottlingTransport(StringTransport):
    """
    A StringTransport that, as Twisted's TCP transport does, pauses its
    streaming producer once it holds more than C{limit} bytes, and resumes
    it once the client has read everything (L{read}).
    """

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.full = False
        #: Everything the client has read.
        self.received = b""

    def write(self, data: bytes) -> None:
        super().write(data)
        if (
            self.producer is not None
            and self.streaming
            and not self.full
            and len(self.value()) > self.limit
        ):
            self.full = True
            self.producer.pauseProducing()

    def read(self) -> bytes:
        """The client reads what is buffered: the producer resumes."""
        data = self.value()
        self.clear()
        self.received += data
        if self.full:
            self.full = False
            assert self.producer is not None
            self.producer.resumeProducing()
        return data


@implementer(ITCPTransport)
class TCPTransport(StringTransport):
    """A StringTransport that says it is TCP, and keeps its TCP_NODELAY."""

    noDelay = False

    def __init__(self, family: int = socket.AF_INET) -> None:
        super().__init__()
        self.family = family

    def getHandle(self) -> Any:
        return self

    def setTcpNoDelay(self, enabled: bool) -> None:
        self.noDelay = enabled


class ListingTests(SynchronousTestCase):
    """The supervisor's listing: the same values until a record changes."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.backend = MemoryBackend(self.clock)
        self.backend.open()
        for name in ("a1", "b2", "c3"):
            self.successResultOf(self.backend.create(ContainerSpec(name=name)))
            self.successResultOf(self.backend.start(name))

    def listed(self) -> list[Any]:
        return self.successResultOf(self.backend.list())

    def current(self) -> list[Any]:
        """What a listing made now, record by record, shows."""
        return [r.toContainer() for r in self.backend._records.values()]

    def test_keptWhileNothingChanges(self) -> None:
        """Two lists with no change give the same values, each in a list of its own."""
        first = self.listed()
        second = self.listed()
        self.assertIsNot(first, second)
        for a, b in zip(first, second, strict=True):
            self.assertIs(a, b)
        first.clear()
        self.assertEqual(len(self.listed()), 3)

    def test_everyChangeSeen(self) -> None:
        """A state change, a field set, a create and a remove each show at once."""
        self.listed()
        stopped = self.backend.stop("a1", None)
        self.clock.advance(1)
        self.successResultOf(stopped)
        self.assertEqual(self.listed(), self.current())
        self.assertEqual([c.state for c in self.listed()], ["exited", "running", "running"])
        self.backend._records["b2"].error = "odd"
        self.assertEqual(self.listed()[1].error, "odd")
        self.successResultOf(self.backend.create(ContainerSpec(name="d4")))
        self.assertEqual([c.name for c in self.listed()], ["a1", "b2", "c3", "d4"])
        removed = self.backend.remove("c3", True)
        self.clock.advance(1)
        self.successResultOf(removed)
        self.assertEqual([c.name for c in self.listed()], ["a1", "b2", "d4"])
        self.assertEqual(self.listed(), self.current())
        # A record that comes or goes without any field set is seen too.
        records = self.backend._records
        d4 = records["d4"]
        del records["d4"]
        self.assertEqual([c.name for c in self.listed()], ["a1", "b2"])
        records["d4"] = d4
        self.assertEqual([c.name for c in self.listed()], ["a1", "b2", "d4"])

    def test_everyWayOfChangingTheRecords(self) -> None:
        """Whatever adds, replaces or drops a record, the listing follows."""
        records = RecordsByName()
        x1, x2, x3, x4 = (record(f"x{i}") for i in range(1, 5))
        y2 = record("x2")
        changes: list[Any] = [
            lambda: records.__setitem__("x1", x1),
            lambda: records.__setitem__("x2", x2),
            lambda: records.__setitem__("x3", x3),
            lambda: records.__setitem__("x4", x4),
            lambda: setattr(x2, "error", "odd"),
            # Changed, then replaced before the next listing.
            lambda: (setattr(x2, "error", "odder"), records.__setitem__("x2", y2)),
            lambda: setattr(x2, "error", "gone"),
            lambda: setattr(y2, "restartCount", 2),
            lambda: records.__setitem__("x2", y2),
            lambda: records.__delitem__("x4"),
            lambda: records.__delitem__("x3"),
            lambda: records.__setitem__("x3", x3),
            lambda: records.__delitem__("x1"),
            lambda: records.__setitem__("x4", x4),
        ]
        for change in changes:
            change()
            self.assertEqual(records.containers(), [r.toContainer() for r in records.values()])
        self.assertEqual([c.name for c in records.containers()], ["x2", "x3", "x4"])
        self.assertEqual(dict(records.items()), {"x2": y2, "x3": x3, "x4": x4})
        self.assertEqual(records, {"x2": y2, "x3": x3, "x4": x4})
        self.assertEqual((len(records), list(records)), (3, ["x2", "x3", "x4"]))
        self.assertEqual((records.get("x1"), "x1" in records, records["x2"]), (None, False, y2))

    def test_noOtherWayToChangeThem(self) -> None:
        """
        The dict operations that would go around the listing (update,
        setdefault, pop, popitem, clear, |=, copy) are not there.
        """
        records = RecordsByName()
        records["x1"] = record("x1")
        for name in ("update", "setdefault", "pop", "popitem", "clear", "copy", "__ior__"):
            self.assertFalse(hasattr(records, name), name)
        with self.assertRaises(TypeError):
            records |= {"x2": record("x2")}  # type: ignore[misc,operator]
        self.assertEqual(list(records), ["x1"])

    def test_onlyItsRecordsTellIt(self) -> None:
        """A record dropped or replaced no longer tells the dict of its changes."""
        records = RecordsByName()
        x1 = record("x1", "1")
        records["x1"] = x1
        records.containers()
        x1.restartCount = 1
        self.assertEqual(records.changed, {x1})
        y1 = record("x1", "2")
        records["x1"] = y1
        x1.restartCount = 2
        self.assertEqual(records.changed, {y1})
        self.assertIsNone(x1.changes)
        del records["x1"]
        y1.restartCount = 2
        self.assertEqual(records.changed, set())
        self.assertIsNone(y1.changes)


def record(name: str, id: str = "") -> Record:
    """A record of C{name}, created, nothing else set."""
    return Record(
        name=name, id=id or name, backend="memory", image="memory",
        command=("sleep", "1"), created=0.0,
    )  # fmt: skip


class PiecesTests(SynchronousTestCase):
    """L{EncodedArray.piece}: whole items, about PIECE_BYTES each, joined the line."""

    def test_joinedTheyAreTheLine(self) -> None:
        """For arrays of 0 to 40 items, the pieces joined are the line, the last flagged."""
        self.patch(wirejson, "PIECE_BYTES", 50)
        for count in range(41):
            items = [encodeJSONBytes({"n": "x" * (i % 7), "i": i}) for i in range(count)]
            array = EncodedArray(items)
            pieces, index = [], 0
            while True:
                piece, last = array.piece(b"OK ", b"\n", index)
                pieces.append(piece)
                index += 1
                if last:
                    break
            self.assertEqual(b"".join(pieces), b"OK " + encodeJSONBytes(array.decode()) + b"\n")
            for piece in pieces[:-1]:
                self.assertLessEqual(len(piece), wirejson.PIECE_BYTES)
            self.assertRaises(IndexError, array.piece, b"OK ", b"\n", index)
            if count > 5:
                self.assertGreater(len(pieces), 1)

    def test_madeInAnyOrder(self) -> None:
        """A piece asked again is the same bytes; any piece may be asked first."""
        self.patch(wirejson, "PIECE_BYTES", 10)
        array = EncodedArray([b'"abcdefgh"'] * 5)
        third, _ = array.piece(b"", b"", 2)
        self.assertEqual(array.piece(b"", b"", 2)[0], third)
        self.assertEqual(array.piece(b"", b"", 0)[0], b'["abcdefgh"')
        self.assertEqual(array.piece(b"", b"", 4), (b',"abcdefgh"]', True))
        self.assertEqual(array.piece(b"OK ", b"\n", 0)[0], b'OK ["abcdefgh"')

    def test_piecesNotKept(self) -> None:
        """
        Once its pieces are made, an array of several holds no bytes but
        its items' (a reply written whole is not kept alongside them); one
        of a single piece keeps that line, at most a piece.
        """
        self.patch(wirejson, "PIECE_BYTES", 100)
        array = EncodedArray([encodeJSONBytes({"i": i, "s": "x" * 20}) for i in range(50)])
        index = 0
        while not array.piece(b"OK ", b"\n", index)[1]:
            index += 1
        self.assertGreater(index, 5)
        self.assertEqual(heldBytes(array), 0)
        small = EncodedArray([b"1", b"2"])
        self.assertEqual(small.piece(b"OK ", b"\n", 0), (b"OK [1,2]\n", True))
        self.assertEqual(heldBytes(small), len(b"OK [1,2]\n") + len(b"OK ") + len(b"\n"))


def heldBytes(array: EncodedArray) -> int:
    """The bytes reachable from C{array} other than its items."""
    items = {id(item) for item in array.items}
    seen: set[int] = set()
    held = 0
    stack: list[Any] = [array]
    while stack:
        value = stack.pop()
        if id(value) in seen or id(value) in items:
            continue
        seen.add(id(value))
        if type(value) is bytes:
            held += len(value)
        elif value is array or isinstance(value, (list, tuple, dict)):
            stack.extend(gc.get_referents(value))
    return held


def throttledConnection(
    self: Any, limit: int = 100
) -> tuple[PycmServerProtocol, ThrottlingTransport]:
    """A connection to C{self.server} whose client reads C{limit} bytes a turn."""
    factory = PycmServerFactory(self.server.state)
    protocol = factory.buildProtocol(None)
    transport = ThrottlingTransport(limit)
    protocol.makeConnection(transport)
    return protocol, transport


def readUntilQuiet(self: Any, transport: ThrottlingTransport) -> bytes:
    """The client reads until the server writes nothing more."""
    for _ in range(10_000):
        self.server.clock.advance(0)
        if not transport.read() and not transport.full:
            self.server.clock.advance(0)
            if not transport.value():
                break
    return transport.received


class PiecewiseReplyTests(SynchronousTestCase):
    """A C{list} reply of many pieces, over a transport that throttles."""

    def setUp(self) -> None:
        self.patch(wirejson, "PIECE_BYTES", PIECE)
        self.server = FakeServer()
        plain = self.server.connect()
        for i in range(200):
            plain.ok(f"run c{i:03d}")
        self.before = plain.transport.value()
        plain.lines()
        #: The reply of a list now, on a transport that never pauses.
        self.expected = self.listLine(plain)

    def listLine(self, connection: Any) -> bytes:
        connection.send("list\n")
        line = connection.transport.value()[len(self.before):]
        connection.transport.clear()
        self.before = b""
        return line

    connect = throttledConnection
    readAll = readUntilQuiet

    def test_byteIdentical(self) -> None:
        """The reply is the JSON of every summary, sorted by name, as ever."""
        containers = self.successResultOf(self.server.backend.list())
        containers.sort(key=lambda c: c.name)
        self.assertEqual(
            self.expected, b"OK " + encodeJSONBytes([c.summary() for c in containers]) + b"\n"
        )
        protocol, transport = self.connect()
        protocol.dataReceived(b"list\n")
        self.assertEqual(self.readAll(transport), self.expected)

    def test_writtenAsTheClientReads(self) -> None:
        """
        One piece at a time: the next request waits for the last piece, and
        a client that does not read holds about one piece in the transport.
        """
        protocol, transport = self.connect()
        protocol.dataReceived(b"list\nping\n")
        self.assertLess(len(transport.value()), 2 * PIECE)
        self.assertNotIn(b"pong", transport.value())
        self.server.clock.advance(1)
        self.assertLess(len(transport.value()), 2 * PIECE)
        self.assertEqual(self.readAll(transport), self.expected + b'OK "pong"\n')

    def test_neverReadingClientsShareTheSnapshot(self) -> None:
        """
        Clients that send C{list} and never read each hold about one piece
        in their transport and the one array of the listing, shared with
        the daemon's cached listing, which keeps none of the pieces written
        for them or for a client that read the whole reply.
        """
        reader, readerTransport = self.connect()
        reader.dataReceived(b"list\n")
        self.assertEqual(self.readAll(readerTransport), self.expected)
        assert replies._lastListing is not None
        shared = replies._lastListing[1]
        for _ in range(5):
            protocol, transport = self.connect()
            protocol.dataReceived(b"list\n")
            self.server.clock.advance(1)
            self.assertLess(len(transport.value()), 2 * PIECE)
            assert protocol._pieces is not None
            self.assertIs(protocol._pieces[0], shared)
        self.assertEqual(heldBytes(shared), 0)

    def test_consistentSnapshot(self) -> None:
        """Containers changed while the reply is written: the reply is as when asked."""
        protocol, transport = self.connect()
        protocol.dataReceived(b"list\n")
        transport.read()
        backend = self.server.backend
        stopped = backend.stop("c000", None)
        self.server.clock.advance(1)
        self.successResultOf(stopped)
        removed = backend.remove("c199", True)
        self.server.clock.advance(1)
        self.successResultOf(removed)
        self.successResultOf(backend.create(ContainerSpec(name="c500")))
        self.server.clock.advance(1)
        self.assertEqual(self.readAll(transport), self.expected)
        transport.received = b""
        protocol.dataReceived(b"list\n")
        after = json.loads(self.readAll(transport)[3:])
        self.assertEqual(len(after), 200)
        self.assertEqual((after[0]["name"], after[0]["state"]), ("c000", "exited"))
        self.assertEqual(after[-1]["name"], "c500")

    def test_eventsWaitBehindTheReply(self) -> None:
        """An event that comes while a reply is written goes after its last byte."""
        protocol, transport = self.connect()
        protocol.dataReceived(b"events\n")
        self.server.clock.advance(0)
        subscribed = transport.read()
        protocol.dataReceived(b"list\n")
        transport.read()
        stopped = self.server.backend.stop("c007", None)
        self.server.clock.advance(1)
        self.successResultOf(stopped)
        lines = self.readAll(transport)[len(subscribed):].split(b"\n")
        self.assertEqual(lines[0] + b"\n", self.expected)
        self.assertTrue(lines[1].startswith(b"EVENT "), lines[1][:40])
        for line in lines[1:-1]:
            json.loads(line.partition(b" ")[2])

    def test_halfCloseWaitsForTheLastPiece(self) -> None:
        """A client that shut its sending side gets the whole reply before the close."""
        protocol, transport = self.connect()
        protocol.dataReceived(b"list\n")
        protocol.readConnectionLost()
        self.assertFalse(transport.disconnecting)
        self.assertEqual(self.readAll(transport), self.expected)
        self.assertTrue(transport.disconnecting)

    def test_connectionLostDropsTheRest(self) -> None:
        """A connection lost mid-reply lets go of it, and writes nothing more."""
        protocol, transport = self.connect()
        protocol.dataReceived(b"list\n")
        written = transport.value()
        protocol.connectionLost()
        self.assertIsNone(protocol._pieces)
        transport.read()
        self.server.clock.advance(1)
        self.assertEqual(transport.received, written)


class NoDelayTests(SynchronousTestCase):
    """TCP connections send each reply's last bytes at once (no Nagle)."""

    def test_tcpNoDelay(self) -> None:
        """
        A TCP connection gets TCP_NODELAY: the last piece of a reply written
        a piece at a time would otherwise wait for the client's delayed ACK
        (40 ms on Linux); a transport that is not TCP, or whose socket is
        not (a socket pair), is left as it is.
        """
        server = FakeServer()
        factory = PycmServerFactory(server.state)
        tcp = TCPTransport()
        factory.buildProtocol(None).makeConnection(tcp)
        self.assertTrue(tcp.noDelay)
        unix = TCPTransport(socket.AF_UNIX)
        factory.buildProtocol(None).makeConnection(unix)
        self.assertFalse(unix.noDelay)
        other = StringTransport()
        factory.buildProtocol(None).makeConnection(other)
        self.assertFalse(hasattr(other, "noDelay"))
