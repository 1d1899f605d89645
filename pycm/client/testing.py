"""
Test helpers for code that uses the pycm client: a scripted fake daemon
(L{FakeDaemon}) and an in-memory connection to it (L{connectToFake}) that
a L{LoopbackPump} carries bytes over, on public Twisted API only.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable, Iterable
from typing import Any, Union

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IProtocol
from twisted.internet.testing import StringTransport
from twisted.protocols.basic import LineOnlyReceiver
from twisted.python.failure import Failure

from pycm.client.protocol import ClientProtocol

#: A reply: one line (C{"OK ..."}, C{"ERR ..."}), several (events first, the
#: reply last), or a Deferred firing with either (a reply held back).
Reply = Union[str, list[str], "Deferred[Any]"]
Handler = Callable[[list[str]], Reply]


def ok(value: Any) -> str:
    """The line C{OK <json>}."""
    return "OK " + json.dumps(value)


def event(value: Any) -> str:
    """The line C{EVENT <json>}."""
    return "EVENT " + json.dumps(value)


class FakeDaemon(LineOnlyReceiver):
    """
    A tiny scripted pycm daemon: answers each request line from
    C{handlers} (by command word), in order, as the real one does.

    C{ping} answers C{OK "pong"}, C{exit}/C{quit} answer C{OK "bye"} and
    close, an unknown command gets C{ERR bad_request}.

    @ivar received: the request lines, as received.
    """

    # The daemon's framing: a request ends at LF (a CR before it is
    # dropped below), and a test's requests are far under this.
    delimiter = b"\n"
    MAX_LENGTH = 1 << 20

    def __init__(self, handlers: dict[str, Handler | Reply] | None = None) -> None:
        self.handlers = dict(handlers or {})
        self.received: list[str] = []
        self._queue: list[dict[str, Any]] = []

    def _answer(self, text: str) -> tuple[str, Any]:
        """The command word of the request C{text} and the reply to it."""
        try:
            words = shlex.split(text)
        except ValueError as e:
            return "", f"ERR bad_request {e}"
        command = words[0].lower()
        if command in self.handlers:
            handler = self.handlers[command]
            return command, handler(words) if callable(handler) else handler
        replies = {"ping": ok("pong"), "exit": ok("bye"), "quit": ok("bye"),
                   "auth": ok("authenticated")}
        return command, replies.get(command, f"ERR bad_request unknown command {command!r}")

    def lineReceived(self, line: bytes) -> None:
        text = line.decode("utf-8").rstrip("\r")
        if not text.strip() or text.lstrip().startswith("#"):
            return
        self.received.append(text)
        command, reply = self._answer(text)
        entry: dict[str, Any] = {
            "lines": None,
            "close": command in ("exit", "quit"),
        }
        self._queue.append(entry)

        def ready(result: Any) -> Any:
            entry["lines"] = [result] if isinstance(result, str) else list(result)
            self._flush()
            return result

        if isinstance(reply, Deferred):
            reply.addCallback(ready)
        else:
            ready(reply)

    def _flush(self) -> None:
        # Replies go out in request order, even when one is held back.
        while self._queue and self._queue[0]["lines"] is not None:
            entry = self._queue.pop(0)
            for line in entry["lines"]:
                self.sendLine(line.encode("utf-8"))
            if entry["close"]:
                assert self.transport is not None
                self.transport.loseConnection()

    def disconnect(self) -> None:
        """Drop the connection, as a daemon going away does."""
        assert self.transport is not None
        self.transport.loseConnection()

    def sendEvent(self, value: Any) -> None:
        """Send an EVENT line now."""
        self.sendLine(event(value).encode("utf-8"))


class PumpedTransport(StringTransport):
    """
    One end of an in-memory connection: a L{StringTransport} whose written
    bytes a L{LoopbackPump} carries to the other end.  Writes after
    C{loseConnection} are dropped; C{abortConnection} is C{loseConnection}
    (what was written before still arrives).

    @ivar lost: whether its protocol was told the connection is lost.
    """

    lost = False

    def __init__(self, protocol: IProtocol) -> None:
        # Lenient: pausing and resuming are no-ops here, even when closing.
        super().__init__(lenient=True)
        self.protocol = protocol

    def write(self, data: bytes) -> None:
        if not self.disconnecting:
            super().write(data)

    def writeSequence(self, data: Iterable[bytes]) -> None:
        self.write(b"".join(data))

    def abortConnection(self) -> None:
        self.loseConnection()

    def take(self) -> bytes:
        """What was written since the last C{take}."""
        data = self.value()
        self.clear()
        return data

    def reportLost(self) -> None:
        """Tell the protocol its connection is closed (once)."""
        if not self.lost:
            self.lost = True
            self.disconnecting = True
            self.connected = False
            self.protocol.connectionLost(Failure(ConnectionDone()))


class LoopbackPump:
    """
    Carries bytes between the two ends of an in-memory connection, when
    asked: what one side wrote becomes the other side's C{dataReceived}.
    Once one side closes and everything it wrote has arrived, the other
    side hears of it, then (at the next step) the closing side.
    """

    def __init__(self, client: PumpedTransport, server: PumpedTransport) -> None:
        self.client = client
        self.server = server

    def pump(self) -> bool:
        """Move what is waiting once, or one closing; whether anything moved."""
        toServer = self.client.take()
        toClient = self.server.take()
        if toServer:
            self.server.protocol.dataReceived(toServer)
        if toClient:
            self.client.protocol.dataReceived(toClient)
        if toServer or toClient:
            return True
        for closing, other in ((self.server, self.client), (self.client, self.server)):
            if closing.disconnecting and not other.lost:
                other.reportLost()
                return True
        return False

    def flush(self) -> bool:
        """Pump until nothing moves; whether anything did."""
        moved = False
        for _ in range(1000):
            if not self.pump():
                return moved
            moved = True
        raise RuntimeError("the connection is still busy after 1000 steps")


def connectToFake(
    daemon: FakeDaemon, client: ClientProtocol | None = None
) -> tuple[ClientProtocol, FakeDaemon, LoopbackPump]:
    """
    Connect C{client} to C{daemon} in memory (the daemon first, as a
    server accepts before the client hears of it), then flush once; move
    bytes with the returned pump's C{flush}.
    """
    if client is None:
        client = ClientProtocol()
    serverTransport = PumpedTransport(daemon)
    clientTransport = PumpedTransport(client)
    daemon.makeConnection(serverTransport)
    client.makeConnection(clientTransport)
    pump = LoopbackPump(clientTransport, serverTransport)
    pump.flush()
    return client, daemon, pump
