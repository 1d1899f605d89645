"""
Shared helpers for the daemon-side tests: a daemon on the memory backend and
a task.Clock, and connections to it over StringTransport.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from pycm.backends.memory import MemoryBackend
from pycm.daemon.eventlog import EventLog
from pycm.daemon.protocol import PycmServerFactory, PycmServerProtocol
from pycm.daemon.session import Daemon


class FakeServer:
    """
    A daemon on the memory backend, driven by a L{Clock}, that tests open
    L{FakeConnection}s to.
    """

    def __init__(self, token: str | None = None, **factoryOptions: Any) -> None:
        self.clock = Clock()
        self.backend = MemoryBackend(self.clock)
        self.backend.open()
        self.events = EventLog()
        self.daemon = Daemon(self.clock, self.backend, self.events, token=token)
        self.factoryOptions = factoryOptions

    def connect(self, requireAuth: bool = False, **options: Any) -> FakeConnection:
        factoryOptions = dict(self.factoryOptions, **options)
        factory = PycmServerFactory(self.daemon, requireAuth=requireAuth, **factoryOptions)
        protocol = factory.buildProtocol(None)
        assert isinstance(protocol, PycmServerProtocol)
        transport = StringTransport()
        protocol.makeConnection(transport)
        return FakeConnection(protocol, transport, self.clock)


class FakeConnection:
    """One client connection: send bytes, read the lines the server wrote."""

    def __init__(
        self, protocol: PycmServerProtocol, transport: StringTransport, clock: Clock
    ) -> None:
        self.protocol = protocol
        self.clock = clock
        self.transport = transport
        self._read = 0

    def send(self, data: bytes | str) -> None:
        if isinstance(data, str):
            data = data.encode("utf-8")
        self.protocol.dataReceived(data)

    def sendInChunks(self, data: bytes, size: int) -> None:
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
        kind, value = self.request(line)
        assert kind == "OK", (line, kind, value)
        return value

    def err(self, line: str) -> str:
        kind, value = self.request(line)
        assert kind == "ERR", (line, kind, value)
        return value[0]

    def halfClose(self) -> None:
        """The client shuts its sending side, as C{shutdown(SHUT_WR)} does."""
        self.protocol.readConnectionLost()

    @property
    def closed(self) -> bool:
        return bool(self.transport.disconnecting)
