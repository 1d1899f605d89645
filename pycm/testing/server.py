"""
The server-side test harness: a daemon on the memory backend and a
L{Clock} (L{FakeServer}), client connections to it on L{StringTransport}s
(L{FakeConnection}), and a recording L{IConnection} for testing a
L{Session} alone (L{RecordingConnection}).  Public Twisted API only.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from zope.interface import implementer

from pycm.backends.memory import MemoryBackend
from pycm.daemon.eventlog import EventLog
from pycm.daemon.protocol import PycmServerFactory, PycmServerProtocol
from pycm.daemon.session import DaemonState, IConnection

__all__ = ["FakeConnection", "FakeServer", "RecordingConnection"]


class FakeServer:
    """
    A daemon on the memory backend, driven by a L{Clock}, that tests open
    L{FakeConnection}s to.

    @ivar state: the state its connections share.
    @ivar factoryOptions: keyword arguments for every connection's
        L{PycmServerFactory}, which L{connect} may override.
    """

    def __init__(self, token: str | None = None, **factoryOptions: Any) -> None:
        self.clock = Clock()
        self.backend = MemoryBackend(self.clock)
        self.backend.open()
        self.events = EventLog()
        self.state = DaemonState(self.clock, self.backend, self.events, token=token)
        self.factoryOptions = factoryOptions

    def connect(
        self, requireAuth: bool = False, peer: str | None = None, **options: Any
    ) -> FakeConnection:
        """
        Open a connection on a listener of its own (C{requireAuth} says
        whether it wants the token), from C{peer}, a TCP host, if given.
        """
        factoryOptions = dict(self.factoryOptions, **options)
        factory = PycmServerFactory(self.state, requireAuth=requireAuth, **factoryOptions)
        protocol = factory.buildProtocol(None)
        if peer is None:
            transport = StringTransport()
        else:
            transport = StringTransport(peerAddress=IPv4Address("TCP", peer, 40000))
        protocol.makeConnection(transport)
        return FakeConnection(protocol, transport, self.clock)


class FakeConnection:
    """
    One client connection: send bytes, read the lines the server wrote.

    @ivar protocol: the server's protocol (or, over the connection cap,
        its refusal).
    @ivar transport: the L{StringTransport} holding what the server wrote.
    """

    def __init__(
        self, protocol: PycmServerProtocol, transport: StringTransport, clock: Clock
    ) -> None:
        self.protocol = protocol
        self.clock = clock
        self.transport = transport
        self._read = 0

    def send(self, data: bytes | str) -> None:
        """The client sends C{data} (a str is sent as UTF-8)."""
        if isinstance(data, str):
            data = data.encode("utf-8")
        self.protocol.dataReceived(data)

    def sendInChunks(self, data: bytes, size: int) -> None:
        """The client sends C{data}, arriving C{size} bytes a read."""
        for start in range(0, len(data), size):
            self.protocol.dataReceived(data[start : start + size])

    def lines(self) -> list[bytes]:
        """Every complete line written since the last call."""
        value = self.transport.value()
        end = value.rfind(b"\n") + 1
        new, self._read = value[self._read : end], max(self._read, end)
        return new.splitlines()

    def replies(self) -> list[tuple[str, Any]]:
        """The new lines, parsed: C{("OK", value)}, C{("ERR", (code, msg))}..."""
        parsed: list[tuple[str, Any]] = []
        for line in self.lines():
            kind, _, rest = line.decode("utf-8").partition(" ")
            if kind == "ERR":
                code, _, message = rest.partition(" ")
                parsed.append((kind, (code, message)))
            else:
                parsed.append((kind, json.loads(rest)))
        return parsed

    def request(self, line: str) -> tuple[str, Any]:
        """
        Send one line and return its one reply (EVENT lines are skipped),
        letting the clock run the zero-delay calls a reply may wait for.
        """
        self.send(line + "\n")
        replies = [reply for reply in self.replies() if reply[0] != "EVENT"]
        for _ in range(3):
            if replies:
                break
            self.clock.advance(0)
            replies = [reply for reply in self.replies() if reply[0] != "EVENT"]
        assert len(replies) == 1, replies
        return replies[0]

    def ok(self, line: str) -> Any:
        """Send one line; its reply must be OK: return its value."""
        kind, value = self.request(line)
        assert kind == "OK", (line, kind, value)
        return value

    def err(self, line: str) -> str:
        """Send one line; its reply must be ERR: return its code."""
        kind, value = self.request(line)
        assert kind == "ERR", (line, kind, value)
        return value[0]

    def halfClose(self) -> None:
        """The client shuts its sending side, as C{shutdown(SHUT_WR)} does."""
        self.protocol.readConnectionLost()

    def stopReading(self) -> None:
        """The client stops reading: the transport's write buffer is full."""
        assert self.transport.producer is not None
        self.transport.producer.pauseProducing()

    def startReading(self) -> None:
        """The client reads again: the transport's write buffer drained."""
        assert self.transport.producer is not None
        self.transport.producer.resumeProducing()

    def disconnect(self) -> None:
        """The connection is gone (the transport says so to the protocol)."""
        self.protocol.connectionLost()

    @property
    def closed(self) -> bool:
        """Whether the server closed (or began to close) the connection."""
        return bool(self.transport.disconnecting)


@implementer(IConnection)
class RecordingConnection:
    """
    An L{IConnection} that records what a L{Session} asks of it.

    @ivar events: the values sent as C{EVENT} lines, in order, each as
        C{("live", value)} or C{("replayed", value)}.
    @ivar afterReply: the actions to run after the current reply; L{reply}
        runs them.
    @ivar closes: the reasons of every close asked for (C{""}: the client's).
    """

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []
        #: Live event lines held while a replay runs.
        self.held: list[bytes] = []
        self.afterReply: list[Callable[[], None]] = []
        self.closes: list[str] = []

    def sendEvent(self, value: Any) -> None:
        self.events.append(("live", value))

    def sendEventLine(self, line: bytes) -> None:
        # Recorded as the value it encodes, as sendEvent's are.
        kind, _, value = line.rstrip(b"\n").partition(b" ")
        assert kind == b"EVENT", line
        self.events.append(("live", json.loads(value)))

    def sendReplayedEvent(self, value: Any) -> None:
        self.events.append(("replayed", value))

    def holdEventLine(self, line: bytes) -> None:
        self.held.append(line)

    def releaseHeldEvents(self) -> None:
        held, self.held = self.held, []
        for line in held:
            self.sendEventLine(line)

    def dropHeldEvents(self) -> None:
        self.held = []

    def dropSubscriber(self, reason: str) -> None:
        self.closes.append(reason)

    def whenWritable(self, callback: Callable[[], None]) -> None:
        # This connection's client reads everything at once.
        callback()

    def callAfterReply(self, action: Callable[[], None]) -> None:
        self.afterReply.append(action)

    def closeAfterReply(self, reason: str = "") -> None:
        self.closes.append(reason)

    def reply(self) -> None:
        """The current reply is written: run what was to run after it."""
        actions, self.afterReply = self.afterReply, []
        for action in actions:
            action()
