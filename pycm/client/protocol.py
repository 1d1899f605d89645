"""
The client side of the pycm line protocol (see docs/protocol.md).

L{ClientProtocol} keeps a FIFO of C{(request, Deferred)}: the server answers
every request line with exactly one C{OK}/C{ERR} line, in request order, so
each reply fires the Deferred at the head of the queue.  C{EVENT} lines may
come between any two replies; they go to listeners and never touch the
queue.  The shape follows txtorcon's C{TorControlProtocol}.
"""

from __future__ import annotations

import json
import shlex
import socket
from collections import deque
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, fail
from twisted.internet.endpoints import connectProtocol
from twisted.internet.error import ConnectionAborted, ConnectionDone
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.logger import Logger
from twisted.protocols.basic import LineOnlyReceiver
from twisted.python.failure import Failure

from pycm import errors

# The line-reading helpers live in pycm.client.wire (no Twisted there, for
# the one-shot client); they are re-exported under their old names here.
from pycm.client.wire import ERROR_CLASSES as ERROR_CLASSES
from pycm.client.wire import MAX_REPLY_LENGTH, ConnectionGone, resetOnClose
from pycm.client.wire import ProtocolError as ProtocolError
from pycm.client.wire import errorFromReply as errorFromReply
from pycm.client.wire import isSilentLine as isSilentLine

EventListener = Callable[[Any], None]


def resetTransportOnClose(transport: Any) -> None:
    """L{resetOnClose} for the socket under C{transport} (a TLS transport's too)."""
    while transport is not None:
        handle = getattr(transport, "getHandle", lambda: None)()
        if isinstance(handle, socket.socket):
            resetOnClose(handle)
            return
        transport = getattr(transport, "transport", None)


def canReset(transport: Any) -> bool:
    """Whether the connection under C{transport} can be reset (TCP, TLS over TCP)."""
    while transport is not None:
        handle = getattr(transport, "getHandle", lambda: None)()
        if isinstance(handle, socket.socket):
            return handle.family in (socket.AF_INET, socket.AF_INET6)
        transport = getattr(transport, "transport", None)
    return False


class Disconnected(ConnectionDone, ConnectionGone):
    """
    The connection to the daemon is gone: every request still waiting for
    its reply fails with this.

    @ivar reason: the L{Failure} C{connectionLost} was given.
    """

    def __init__(self, reason: Failure | None = None) -> None:
        super().__init__("the connection to the pycm daemon was lost")
        self.reason = reason

    def __str__(self) -> str:
        return "the connection to the pycm daemon was lost"


class ClientProtocol(LineOnlyReceiver):
    """
    A pipelining client: L{request} sends a line and returns a Deferred that
    fires with the decoded JSON of its C{OK} reply, or fails with a
    L{pycm.errors.PycmError} for C{ERR}, or with L{Disconnected}.
    """

    # Replies are one line each, and some are big (see MAX_REPLY_LENGTH).
    MAX_LENGTH = MAX_REPLY_LENGTH
    # The server ends lines with LF; a CR before it is dropped in
    # lineReceived so CRLF servers work too.
    delimiter = b"\n"

    _log = Logger()

    def __init__(self) -> None:
        self._pending: deque[tuple[str, Deferred[Any]]] = deque()
        self._listeners: list[EventListener] = []
        self._disconnectWaiters: list[Deferred[BaseException]] = []
        self._lostReason: Failure | None = None
        #: Why the daemon refused the token given to L{connect}, if it did.
        self.authError: errors.PycmError | None = None
        #: The JSON text of the C{OK} or C{EVENT} line being delivered, as
        #: the daemon sent it: a request's callbacks and event listeners may
        #: read it while they run (C{--json} passes it through unchanged).
        self.payload = ""

    # -- the public API -----------------------------------------------------

    def request(self, line: str) -> Deferred[Any]:
        """
        Send one request line (without its newline).

        @return: a Deferred firing with the reply's JSON value.  It fails at
            once with C{ValueError} for a line the server would not answer
            with exactly one reply (blank, comment, or containing a
            newline), and with L{Disconnected} when not connected.
        """
        if "\n" in line or "\r" in line:
            return fail(ValueError("a request cannot contain a line break"))
        if isSilentLine(line):
            return fail(ValueError("a blank or comment line gets no reply"))
        if self._lostReason is not None or self.transport is None:
            return fail(Disconnected(self._lostReason))
        d: Deferred[Any] = Deferred()
        self._pending.append((line, d))
        self.sendLine(line.encode("utf-8"))
        return d

    def command(self, *words: str) -> Deferred[Any]:
        """Send a request made of C{words}, quoted with shell rules."""
        return self.request(shlex.join(words))

    def authenticate(self, token: str) -> Deferred[Any]:
        """Send C{auth TOKEN}; fires with C{"authenticated"}."""
        return self.command("auth", token)

    @property
    def pending(self) -> int:
        """How many requests are waiting for their reply."""
        return len(self._pending)

    def addEventListener(self, listener: EventListener) -> None:
        """Call C{listener(event)} with the decoded JSON of each EVENT line."""
        self._listeners.append(listener)

    def removeEventListener(self, listener: EventListener) -> None:
        """Stop calling C{listener}; removing an unknown one is a no-op."""
        if listener in self._listeners:
            self._listeners.remove(listener)

    def whenDisconnected(self) -> Deferred[BaseException]:
        """
        A new Deferred that fires once the connection is lost (at once if it
        already is), with the exception that ended it (e.g.
        L{ConnectionDone}): it never fails.
        """
        d: Deferred[BaseException] = Deferred()
        if self._lostReason is not None:
            d.callback(self._lostReason.value)
        else:
            self._disconnectWaiters.append(d)
        return d

    def waitUntil(self, condition: Callable[[], bool]) -> Deferred[None]:
        """
        A Deferred that fires once C{condition()} is true after an event
        (the listeners added before this one have seen it), or once the
        connection is lost.
        """
        done: Deferred[None] = Deferred()

        def check(event: Any) -> None:
            if not done.called and condition():
                done.callback(None)

        def lost(reason: BaseException) -> None:
            if not done.called:
                done.callback(None)

        def stop(result: None) -> None:
            self.removeEventListener(check)

        self.addEventListener(check)
        self.whenDisconnected().addCallback(lost)
        done.addCallback(stop)
        return done

    def disconnect(self) -> None:
        """Close the connection; pending requests fail with L{Disconnected}."""
        if self.transport is not None:
            self.transport.loseConnection()

    def abandon(self) -> None:
        """
        Ctrl-C: with a request in flight, reset the connection rather than
        close it (the reactor's shutdown would close it), so that the daemon
        gives the request up (see L{pycm.client.oneshot.BlockingClient.abandon}).
        """
        if self._pending and self.transport is not None:
            # The process may exit before the reactor closes the socket: a
            # zero linger makes even the kernel's close a reset.
            resetTransportOnClose(self.transport)
            getattr(self.transport, "abortConnection", self.transport.loseConnection)()
            # The reactor is shutting down: the reset connection's end may
            # never be told, so the requests in flight fail now.
            self._failPending(Failure(ConnectionAborted()))

    # -- LineOnlyReceiver ---------------------------------------------------

    def lineReceived(self, line: bytes) -> None:
        if line.endswith(b"\r"):
            line = line[:-1]
        text = line.decode("utf-8", errors="replace")
        kind, _, rest = text.partition(" ")
        self.payload = rest
        if kind == "EVENT":
            self._eventReceived(rest)
        elif kind == "OK":
            self._replyReceived(rest)
        elif kind == "ERR":
            code, _, message = rest.partition(" ")
            self._fireHead(Failure(errorFromReply(code, message)))
        elif text:
            self._protocolError(f"unexpected line from the daemon: {text[:200]!r}")

    def lineLengthExceeded(self, line: bytes) -> None:
        self._protocolError(
            f"a reply from the daemon is longer than {self.MAX_LENGTH} bytes"
        )

    def connectionLost(self, reason: Failure = ConnectionDone()) -> None:  # type: ignore[override,assignment]
        self.connected = False
        if not isinstance(reason, Failure):
            reason = Failure(reason)
        self._lostReason = reason
        self._failPending(reason)
        waiters, self._disconnectWaiters = self._disconnectWaiters, []
        for waiter in waiters:
            waiter.callback(reason.value)

    # -- internals ----------------------------------------------------------

    def _failPending(self, reason: Failure) -> None:
        """Fail the requests waiting for their replies with L{Disconnected}."""
        pending, self._pending = self._pending, deque()
        for _line, d in pending:
            d.errback(Disconnected(reason))

    def _replyReceived(self, payload: str) -> None:
        try:
            value = json.loads(payload)
        except ValueError:
            self._protocolError(f"a reply is not valid JSON: {payload[:200]!r}")
            return
        self._fireHead(value)

    def _fireHead(self, result: Any) -> None:
        if not self._pending:
            self._protocolError("a reply came with no request waiting for it")
            return
        _line, d = self._pending.popleft()
        if isinstance(result, Failure):
            d.errback(result)
        else:
            d.callback(result)

    def _eventReceived(self, payload: str) -> None:
        try:
            event = json.loads(payload)
        except ValueError:
            self._log.warn("ignoring an EVENT that is not JSON: {payload!r}",
                           payload=payload[:200])
            return
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                self._log.failure("event listener {listener!r} failed",
                                  listener=listener)

    def _protocolError(self, message: str) -> None:
        """
        The stream is out of step: fail the head request with
        L{ProtocolError}, then drop the connection (the rest fail with
        L{Disconnected}).
        """
        self._log.error("{message}", message=message)
        if self._pending:
            _line, d = self._pending.popleft()
            d.errback(ProtocolError(message))
        if self.transport is not None:
            self.transport.loseConnection()


def connect(
    endpoint: IStreamClientEndpoint, token: str | None = None
) -> Deferred[ClientProtocol]:
    """
    Connect to the daemon at C{endpoint} and, when C{token} is given,
    authenticate first.

    A token the daemon refuses is not fatal here: the daemon may not need
    one, and a command that does need it fails with C{ERR unauthorized},
    which says more.  C{protocol.authError} keeps the refusal.

    @return: a Deferred firing with the connected L{ClientProtocol}.
    """
    protocol = ClientProtocol()

    def refused(failure: Failure) -> Failure | None:
        if not isinstance(failure.value, errors.PycmError):
            return failure
        protocol.authError = failure.value
        return None

    def authenticate(_: object) -> Deferred[Any] | None:
        if not token:
            return None
        return protocol.authenticate(token).addErrback(refused)

    connecting: Deferred[Any] = connectProtocol(endpoint, protocol)
    connecting.addCallback(authenticate)
    return connecting.addCallback(lambda _: protocol)
