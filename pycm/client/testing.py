"""
Test helpers for code that uses the pycm client: a scripted fake daemon
and a way to connect a L{ClientProtocol} to it in memory.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable
from typing import Any, Union

from twisted.internet.defer import Deferred
from twisted.protocols.basic import LineOnlyReceiver
from twisted.test.iosim import FakeTransport, IOPump, connect

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

    delimiter = b"\n"
    MAX_LENGTH = 1 << 20

    def __init__(self, handlers: dict[str, Handler | Reply] | None = None) -> None:
        self.handlers = dict(handlers or {})
        self.received: list[str] = []
        self._queue: list[dict[str, Any]] = []

    def lineReceived(self, line: bytes) -> None:
        text = line.decode("utf-8").rstrip("\r")
        if not text.strip() or text.lstrip().startswith("#"):
            return
        self.received.append(text)
        words = shlex.split(text)
        command = words[0].lower()
        if command in self.handlers:
            handler = self.handlers[command]
            reply = handler(words) if callable(handler) else handler
        elif command == "ping":
            reply = ok("pong")
        elif command in ("exit", "quit"):
            reply = ok("bye")
        elif command == "auth":
            reply = ok("authenticated")
        else:
            reply = f"ERR bad_request unknown command {command!r}"
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


def connectToFake(
    daemon: FakeDaemon, client: ClientProtocol | None = None
) -> tuple[ClientProtocol, FakeDaemon, IOPump]:
    """Connect C{client} to C{daemon} in memory; pump with the returned pump."""
    if client is None:
        client = ClientProtocol()
    clientTransport = FakeTransport(client, isServer=False)
    serverTransport = FakeTransport(daemon, isServer=True)
    pump = connect(daemon, serverTransport, client, clientTransport,
                   greet=True)
    return client, daemon, pump
