"""
The server side of the line protocol: framing, limits, the order of
replies, backpressure, and turning results and errors into lines.

Requests on one connection run one at a time, in order: while one is in
flight (a C{stop}, a C{wait}) the protocol stops reading from that
connection, so its later requests wait in the kernel's socket buffer, not in
the daemon's memory.  The same happens when the client does not read its
replies (the transport's write buffer is full).  Other connections are not
affected.

A client that shuts its sending side (C{shutdown(SHUT_WR)}, C{nc -N}) still
gets the reply to every line it sent; the server then closes.

Connections cost descriptors and memory before they prove anything: until a
connection on a listener that wants the token has authenticated, its lines
are short and it is closed if it has not authenticated within a fixed time.  The
daemon's TCP and TLS listeners share a cap on connections: at the cap a new
connection takes the place of the oldest one that has not authenticated
yet (which is closed), so a client that authenticates promptly always gets
in however many idle connections others hold; only when every connection
has authenticated (or needs no token) is a new one refused at once.

The info lines about single connections (opened, closed, closed by the
daemon) are rate-limited and summarized (L{pycm.daemon.connectionlog}).

Under legacy framing (L{pycm.daemon.legacyframing}) a pause after an unfinished
line ends a request too, for the teaching client that sends no line end.
"""

from __future__ import annotations

import json
import socket
import struct
from collections import deque
from typing import Any

from twisted.internet.address import UNIXAddress
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IHalfCloseableProtocol, IPushProducer
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.internet.stdio import PipeAddress
from twisted.logger import Logger
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure
from zope.interface import implementer

from pycm.daemon.connectionlog import ConnectionLog
from pycm.daemon.dispatch import describeLine, handleLine
from pycm.daemon.legacyframing import PauseFraming
from pycm.daemon.peers import peerGroup
from pycm.daemon.session import Daemon, Session
from pycm.errors import InternalError, PycmError, TooLong, Unauthorized, Unavailable

#: The longest request line accepted, in bytes, without its line end.
DEFAULT_MAX_LINE_LENGTH = 65_536

#: The longest request line accepted before C{auth} on a listener that
#: wants the token: plenty for C{auth TOKEN}, and 3,000 connections holding
#: that much cost little.
PREAUTH_MAX_LINE_LENGTH = 4096

#: Seconds a connection on a listener that wants the token has to
#: authenticate, counted from when the daemon starts reading it.
DEFAULT_AUTH_TIMEOUT = 30.0

#: Seconds a connection closed to make room may take to send its ERR line
#: before it is aborted (a client that does not read cannot keep it open).
EVICTION_GRACE = 2.0

#: How many bytes of EVENT lines may pile up for a client that does not
#: read, beyond what the transport buffers itself, before it is dropped.
DEFAULT_MAX_EVENT_BACKLOG = 1024 * 1024

#: A line starting with one of these is a browser's HTTP request smuggled
#: to a loopback port: the connection is closed without acting on it.
_HTTP_METHODS = tuple(
    method + b" "
    for method in (
        b"GET", b"POST", b"PUT", b"HEAD", b"OPTIONS",
        b"DELETE", b"PATCH", b"CONNECT", b"TRACE",
    )
)

#: First bytes of the lines the guard must look at (HTTP methods, Host:).
_GUARD_FIRST_BYTES = frozenset(bytes([c]) for c in b"GPHODCTHh")

#: First bytes of lines that may be blank or comments.
_BLANK_FIRST_BYTES = frozenset([b"", b" ", b"\t", b"#"])

#: What one queued event is counted as against the backlog limit (events
#: are queued as values and encoded when they are sent).
_EVENT_SIZE_GUESS = 256

#: The most request lines served from one connection in one reactor turn,
#: and the most reply bytes it may write in one turn before it yields.
LINES_PER_TURN = 64
BYTES_PER_TURN = 64 * 1024

#: The replies of the commands that answer with a fixed string.
_STRING_REPLIES = {text: b"OK " + json.dumps(text).encode() for text in ("pong", "bye")}

_encodeJSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def encodeReply(kind: bytes, value: Any) -> bytes:
    """Encode C{OK <json>} or C{EVENT <json>} (without the line end)."""
    return kind + b" " + _encodeJSON(value).encode("utf-8", "replace")


def encodeError(error: PycmError) -> bytes:
    """Encode C{ERR <code> <message>}, the message kept on one line."""
    message = " ".join(str(error).split()) or error.code
    return b"ERR " + error.code.encode("ascii") + b" " + message.encode("utf-8", "replace")


def isCrossProtocol(line: bytes) -> bool:
    """
    Is this the start of an HTTP request rather than a pycm request?  HTTP
    methods are case-sensitive (browsers send them in capitals); header
    names are not.
    """
    return line.startswith(_HTTP_METHODS) or line[:5].lower() == b"host:"


@implementer(IPushProducer)
class _WriteThrottle:
    """
    Registered with the transport so that a client that does not read its
    replies makes the protocol stop reading its requests.
    """

    def __init__(self, protocol: PycmServerProtocol) -> None:
        self._protocol = protocol

    def pauseProducing(self) -> None:
        self._protocol.pauseReading("write")

    def resumeProducing(self) -> None:
        self._protocol.resumeReading("write")

    def stopProducing(self) -> None:
        pass


@implementer(IHalfCloseableProtocol)
class PycmServerProtocol(LineReceiver):
    """
    One client connection of the daemon.

    @ivar session: the connection's state as the command table sees it.
    """

    # LF ends a line; a CR before it is dropped in lineReceived, so telnet
    # and CRLF clients work.
    delimiter = b"\n"
    # Replaced in connectionMade by the factory's limit plus one byte for a
    # CR; LineReceiver never buffers more than this of one line.
    MAX_LENGTH = DEFAULT_MAX_LINE_LENGTH + 1

    factory: PycmServerFactory
    # A TCP, UNIX, TLS or stdio transport: ITransport plus IProducer and
    # abortConnection, which ITransport alone does not declare.
    transport: Any
    log = Logger()

    session: Session
    _batch: list[bytes] | None = None
    _batchBytes = 0
    _turnBytes = 0
    _lost = False
    _overlong = b""
    _inFlight = False
    _closeAfterReply = False
    _closeReason = ""
    #: The client shut its sending side: answer what it sent, then close.
    _readClosed = False
    #: Closes a connection that has not authenticated in time.
    _authTimer: IDelayedCall | None = None
    #: Under legacy framing, ends a request line at a pause as well as at LF.
    _framing: PauseFraming | None = None
    #: The write throttle is registered with the transport.
    _producing = False
    #: The "connection from" line was logged (so its close is logged too).
    _logged = False
    #: Closed to make room for a new connection; aborts it if it lingers.
    _evictionTimer: IDelayedCall | None = None
    #: Who it comes from, while it waits for its C{auth} (L{pycm.daemon.peers}).
    peerGroup = ""

    def connectionMade(self) -> None:
        factory = self.factory
        self._logRequests = factory.logRequests
        self._peer = describePeer(self.transport)
        self.session = Session(
            factory.daemon,
            self.sendEvent,
            self.closeAfterReply,
            factory.requireAuth,
            peer=self._peer,
        )
        self.session.mayLog = factory.connectionLimit.connectionLog.authFailures.allow
        self._preAuth = not self.session.authenticated
        self._setLineLimit()
        self._pauses: set[str] = set()
        self._events: deque[Any] = deque()
        self._eventBacklog = 0
        if factory.legacyFraming:
            self._framing = PauseFraming(factory.daemon.clock, self._pauseEndsLine)
        factory.daemon.connections += 1
        self.transport.registerProducer(_WriteThrottle(self), True)
        self._producing = True
        if not factory.daemon.ready:
            self.pauseReading("opening")
            factory.daemon.whenReady(
                lambda: self.resumeReading("opening"), otherwise=self._abandon
            )
        if self._preAuth:
            # The deadline counts from when the daemon reads the connection;
            # nothing the client sends moves it.
            factory.daemon.whenReady(self._startAuthTimer)
            if factory.capped:
                factory.connectionLimit.waiting(self, peerGroup(self.transport))
        self._logged = factory.connectionLimit.connectionLog.connections.allow()
        if self._logged:
            self.log.info(
                "connection from {peer} on {listener}",
                peer=self._peer,
                listener=factory.description,
            )

    def _abandon(self) -> None:
        """The daemon cannot serve (its backend failed to open): close at once."""
        self._close(abort=True)

    def _close(self, abort: bool = False) -> None:
        """
        Close the connection: unregister the write throttle first, since a
        transport with a paused streaming producer may wait for it for ever
        instead of finishing the close (and TLS does not start its close
        while any producer is registered).
        """
        if self._producing:
            self._producing = False
            self.transport.unregisterProducer()
        if abort:
            getattr(self.transport, "abortConnection", self.transport.loseConnection)()
        else:
            self.transport.loseConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._lost = True
        self._stopAuthTimer()
        timer, self._evictionTimer = self._evictionTimer, None
        if timer is not None and timer.active():
            timer.cancel()
        if self._framing is not None:
            self._framing.stop()
        self.factory.daemon.connections -= 1
        self.factory.connectionLimit.released(self)
        self.session.disconnected()
        discarded = _describeDiscarded(self._buffer)
        # Nothing more is served: let go of unread input at once.
        self._buffer = b""
        if not self._logged:
            # Counted in the summary when it opened.
            return
        if discarded:
            # A client that sends no line end (or closes before its lines
            # are served) sees nothing: say so here.  Never the bytes
            # themselves, which may hold a token.
            self.log.info(
                "connection from {peer} closed; {discarded} discarded",
                peer=self._peer,
                discarded=discarded,
            )
        else:
            self.log.info("connection from {peer} closed", peer=self._peer)

    # Half-close.

    def readConnectionLost(self) -> None:
        """
        The client will send nothing more: serve the complete lines it sent
        (an unfinished last line is dropped unanswered, except under legacy
        framing, where the end of input ends it as a pause would), then
        close.
        """
        self._readClosed = True
        self._stopAuthTimer()
        if self._framing is not None:
            self._framing.stop()
            self._endUnfinishedLine()
        # Only complete lines are served; the unfinished one (unless legacy
        # framing just ended it) stays unread, and is counted as discarded
        # when the connection closes.
        self.dataReceived(b"")

    def writeConnectionLost(self) -> None:
        """Replies can no longer be sent: close."""
        self._close()

    def _closeIfAnswered(self) -> None:
        """After a half-close: close once every line sent has its reply."""
        if (
            self._readClosed
            and not self._inFlight
            and not self._overlong
            and b"\n" not in self._buffer
            and not self._lost
            and not self.transport.disconnecting
        ):
            self._close()

    # Before auth.

    def _setLineLimit(self) -> None:
        """The line limit: the listener's, or a short one before auth."""
        limit = self.factory.maxLineLength
        if self._preAuth:
            limit = min(limit, PREAUTH_MAX_LINE_LENGTH)
        self._maxLineLength = limit
        # One more byte for a CR; LineReceiver never buffers more than this.
        self.MAX_LENGTH = limit + 1

    def _startAuthTimer(self) -> None:
        if self._preAuth and not self._lost and not self._readClosed:
            clock = self.factory.daemon.clock
            self._authTimer = clock.callLater(self.factory.authTimeout, self._authTimedOut)

    def _stopAuthTimer(self) -> None:
        timer, self._authTimer = self._authTimer, None
        if timer is not None and timer.active():
            timer.cancel()

    def _authTimedOut(self) -> None:
        """Not authenticated by the deadline: say so and close."""
        self._authTimer = None
        if self._lost or self.transport.disconnecting:
            return
        timeout = self.factory.authTimeout
        self._logForcedClose(f"no auth TOKEN within {timeout:g} seconds (auth timeout)")
        self.clearLineBuffer()
        self._write(
            encodeError(Unauthorized(f"no auth TOKEN within {timeout:g} seconds: closing"))
        )
        self._flush()
        self._close()

    def _authenticated(self) -> None:
        """The token was right: the listener's own limits from now on."""
        self._preAuth = False
        self._stopAuthTimer()
        self._setLineLimit()
        self.factory.connectionLimit.settled(self)

    def makeRoom(self, maximum: int) -> None:
        """
        Close this connection, which has not authenticated, to make room
        for a new one at the cap: an C{ERR unavailable} line, then closed
        (aborted if the client does not take the line within
        L{EVICTION_GRACE} seconds).
        """
        self._stopAuthTimer()
        self._logForcedClose(
            f"{maximum} connections open and this one not authenticated: "
            "making room for a new one (made room)"
        )
        self.clearLineBuffer()
        self._events.clear()
        error = Unavailable(
            f"the daemon has {maximum} connections open, its limit, and this one "
            "had not authenticated: closing it for a newer one"
        )
        self._write(encodeError(error))
        self._flush()
        if "write" in self._pauses:
            # The client is not reading: the line would never go out.
            self._close(abort=True)
            return
        self._close()
        self._evictionTimer = self.factory.daemon.clock.callLater(
            EVICTION_GRACE, self._abortEvicted
        )

    def _abortEvicted(self) -> None:
        self._evictionTimer = None
        if not self._lost:
            getattr(self.transport, "abortConnection", self.transport.loseConnection)()

    # Legacy framing.

    def _endUnfinishedLine(self) -> None:
        """End the unfinished last line as LF would (legacy framing)."""
        buffer = self._buffer
        if buffer and buffer[-1:] != b"\n" and not self._overlong:
            self._buffer = buffer + b"\n"

    def _pauseEndsLine(self) -> None:
        """No more bytes for a while after an unfinished line: serve it."""
        if self._lost or self.transport.disconnecting:
            return
        self._endUnfinishedLine()
        self.dataReceived(b"")

    # Reading and its pauses.

    def dataReceived(self, data: bytes) -> None:
        """
        Split the bytes into lines and serve them.

        This replaces L{LineReceiver.dataReceived}, keeping its contract
        (C{lineReceived}, C{MAX_LENGTH}, pausing), for two reasons: it finds
        lines by index instead of re-splitting the rest of the buffer for
        each line, which is quadratic when a client pipelines thousands of
        lines in one read; and it serves at most L{LINES_PER_TURN} lines in
        one reactor turn, so a client with a full pipe cannot hold up the
        others.  The replies to the lines of one turn are written at once.
        """
        if self._lost or self.transport.disconnecting:
            # Closing: nothing more from this client is acted on.
            return
        if not self._overlong:
            self._buffer += data
            if data and self._framing is not None:
                self._framing.watch(not self._buffer.endswith(b"\n"))
                if self.paused and not self._framing.mayReadAhead(len(self._buffer)):
                    self._stopReading()
        if self._busyReceiving:
            return
        self._busyReceiving = True
        self._batch = []
        self._batchBytes = self._turnBytes = 0
        try:
            self._serveBuffer()
        finally:
            self._busyReceiving = False
            if not self._lost:
                self._flush()
            self._batch = None
        self._closeIfAnswered()

    def _serveBuffer(self) -> None:
        buffer = self._buffer
        start = 0
        served = 0
        while not self.paused:
            end = buffer.find(b"\n", start)
            if end < 0:
                break
            # Read on each line: auth lifts the limit for the lines after it.
            maxLength = self.MAX_LENGTH
            if end - start > maxLength:
                self._buffer = b""
                self._refuseLine(buffer[start : start + 8])
                return
            line = buffer[start:end]
            start = end + 1
            self.lineReceived(line)
            if self.transport.disconnecting or self._lost:
                self._buffer = b""
                return
            served += 1
            if (served >= LINES_PER_TURN or self._turnBytes >= BYTES_PER_TURN) and start < len(
                buffer
            ):
                self.pauseReading("turn")
                self.factory.daemon.clock.callLater(0, self.resumeReading, "turn")
                break
        rest = buffer[start:]
        # Only the unfinished last line counts against the limit: complete
        # lines waiting behind a pause are requests like any others.
        unfinished = len(rest) - (rest.rfind(b"\n") + 1)
        if unfinished > self.MAX_LENGTH:
            if not self._overlong:
                # Keep the complete lines before it, read nothing more, and
                # refuse it in its turn, after their replies.
                self._overlong = rest[-unfinished:][:8]
                self.transport.pauseProducing()
            rest = rest[: len(rest) - unfinished]
        self._buffer = rest
        if self._overlong and not rest and not self.paused:
            self._refuseLine(self._overlong)

    def pauseReading(self, reason: str) -> None:
        """Stop reading requests until every reason is resumed."""
        if not self._pauses:
            self.pauseProducing()
        self._pauses.add(reason)

    def resumeReading(self, reason: str) -> None:
        """Drop one reason to pause; read again if none is left."""
        if reason == "write" and "write" in self._pauses:
            self._pauses.discard("write")
            self._sendQueuedEvents()
            if "write" in self._pauses:
                return
            self._pauses.add("write")
        if reason not in self._pauses:
            return
        self._pauses.discard(reason)
        if not self._pauses and not self._lost and not self.transport.disconnecting:
            self.resumeProducing()

    def pauseProducing(self) -> None:
        """
        Serve no more lines, and stop reading, except that under legacy
        framing the connection is read ahead (pauses are seen only while it
        is read) until it holds L{pycm.daemon.legacyframing.LEGACY_READ_AHEAD} bytes.
        """
        self.paused = True
        if self._framing is None or not self._framing.mayReadAhead(len(self._buffer)):
            self._stopReading()

    def _stopReading(self) -> None:
        self.transport.pauseProducing()
        if self._framing is not None:
            # The silence this causes is not the client's pause.
            self._framing.stop()

    def resumeProducing(self) -> None:
        self.paused = False
        # After a half-close the transport must not read again: it would
        # report the end of input a second time.
        if not self._overlong and not self._readClosed:
            self.transport.resumeProducing()
            if self._framing is not None:
                self._framing.watch(self._buffer[-1:] not in (b"", b"\n"))
        self.dataReceived(b"")

    def lineLengthExceeded(self, line: bytes) -> None:
        self._refuseLine(line[:8])

    def _refuseLine(self, head: bytes) -> None:
        """An overlong line: drop it silently if it is HTTP, else too_long."""
        if head[:1] in _GUARD_FIRST_BYTES and isCrossProtocol(head):
            self._crossProtocol()
        else:
            self._tooLong()

    def _logForcedClose(self, reason: str) -> None:
        """
        Say why the daemon closes this connection (never what was sent);
        beyond the log budget, counted for a summary under the short reason
        in the last parentheses.
        """
        short = reason.rsplit("(", 1)[-1].rstrip(")") if reason.endswith(")") else reason
        if self.factory.connectionLimit.connectionLog.forcedCloses.allow(short):
            self.log.info(
                "closing the connection from {peer}: {reason}", peer=self._peer, reason=reason
            )

    def _crossProtocol(self) -> None:
        self._logForcedClose("an HTTP request (cross-protocol guard)")
        self.clearLineBuffer()
        self._flush()
        self._close()

    def _tooLong(self) -> None:
        limit = self._maxLineLength
        before = " before auth" if self._preAuth else ""
        self._logForcedClose(f"a request line longer than {limit} bytes{before} (too_long)")
        self.clearLineBuffer()
        self._write(encodeError(TooLong(f"request line longer than {limit} bytes{before}")))
        self._flush()
        self._close()

    def lineReceived(self, line: bytes) -> None:
        if line[-1:] == b"\r":
            line = line[:-1]
        first = line[:1]
        if first in _GUARD_FIRST_BYTES and isCrossProtocol(line):
            return self._crossProtocol()
        if len(line) > self._maxLineLength:
            return self._tooLong()
        if first in _BLANK_FIRST_BYTES:
            stripped = line.lstrip(b" \t")
            if not stripped or stripped[:1] == b"#":
                return
        self._handle(line)

    # Requests and replies.

    def _handle(self, line: bytes) -> None:
        try:
            if self._logRequests:
                # Redacted: a request may carry a token or a secret value.
                self.log.debug(
                    "{peer} request: {request}", peer=self._peer, request=describeLine(line)
                )
            result = handleLine(self.session, line)
            if self._preAuth and self.session.authenticated:
                self._authenticated()
        except PycmError as error:
            self._replyError(error)
            return
        except Exception:
            self._replyFailure(Failure())
            return
        if type(result) is not Deferred:
            reply = _STRING_REPLIES.get(result) if type(result) is str else None
            if reply is None:
                try:
                    reply = b"OK " + _encodeJSON(result).encode("utf-8", "replace")
                except Exception:
                    self._replyFailure(Failure())
                    return
            self._reply(reply)
            return
        self._inFlight = True
        result.addCallbacks(self._replyOK, self._replyFailure)
        result.addBoth(self._requestDone)
        if self._inFlight:
            self.pauseReading("request")

    def _requestDone(self, _: object) -> None:
        self._inFlight = False
        if "request" in self._pauses:
            # Go on with the next request in a fresh reactor turn, never
            # inside the backend call that fired this one.
            self.factory.daemon.clock.callLater(0, self.resumeReading, "request")

    def _replyOK(self, result: Any) -> None:
        try:
            line = encodeReply(b"OK", result)
        except Exception:
            self._replyFailure(Failure())
            return
        self._reply(line)

    def _replyFailure(self, failure: Failure) -> None:
        if self._lost:
            return
        if isinstance(failure.value, PycmError):
            self._replyError(failure.value)
            return
        self.log.failure("internal error serving {peer}", failure, peer=self._peer)
        self._replyError(InternalError(f"internal error: {failure.getErrorMessage()}"))

    def _replyError(self, error: PycmError) -> None:
        if self.factory.logRequests:
            self.log.debug("{peer} error {code}", peer=self._peer, code=error.code)
        self._reply(encodeError(error))

    def _reply(self, line: bytes) -> None:
        if self._lost:
            return
        batch = self._batch
        if batch is None:
            self.transport.write(line + b"\n")
        else:
            # _write, inlined: this is the path of every reply.
            batch.append(line + b"\n")
            self._batchBytes += len(line) + 1
            self._turnBytes += len(line) + 1
            if self._batchBytes >= BYTES_PER_TURN:
                self._flush()
        if self.session.afterReply:
            after, self.session.afterReply = self.session.afterReply, []
            for action in after:
                action()
        if self._closeAfterReply:
            if self._closeReason:
                self._logForcedClose(self._closeReason)
            self.clearLineBuffer()
            self._flush()
            self._close()

    def _write(self, line: bytes) -> None:
        """Write one line now, or with the others of this turn."""
        if self._batch is None:
            self.transport.write(line + b"\n")
            return
        self._batch.append(line + b"\n")
        self._batchBytes += len(line) + 1
        self._turnBytes += len(line) + 1
        if self._batchBytes >= BYTES_PER_TURN:
            # Big replies go out at once, so that a client that does not
            # read is noticed (the write throttle pauses us) straight away.
            self._flush()

    def _flush(self) -> None:
        """Write what this turn has gathered so far."""
        self._batchBytes = 0
        if self._batch:
            batch, self._batch = self._batch, []
            self.transport.writeSequence(batch)

    def closeAfterReply(self, reason: str = "") -> None:
        """
        Close the connection as soon as the current reply is written; a
        C{reason} says the daemon forces it (logged), none that the client
        asked (C{exit}).
        """
        self._closeAfterReply = True
        self._closeReason = reason

    def sendEvent(self, value: Any, replay: bool = False) -> None:
        """
        Send one C{EVENT} line, or queue it while the client is not reading.

        Live events that pile up beyond the factory's C{maxEventBacklog}
        bytes get the client disconnected.  Replayed ones (C{events
        --since}) do not count: they are bounded by the event log, and go
        out as fast as the client reads them.
        """
        if self._lost:
            return
        if not self._events and "write" not in self._pauses:
            self._write(encodeReply(b"EVENT", value))
            return
        self._events.append(value)
        if replay:
            return
        self._eventBacklog += _EVENT_SIZE_GUESS
        if self._eventBacklog > self.factory.maxEventBacklog:
            self._logForcedClose(
                f"over {self.factory.maxEventBacklog} bytes of events unread (slow subscriber)"
            )
            self._lost = True
            self._events.clear()
            self._close(abort=True)

    def _sendQueuedEvents(self) -> None:
        """Write queued events until the client stops reading again."""
        while self._events and "write" not in self._pauses and not self._lost:
            self._write(encodeReply(b"EVENT", self._events.popleft()))
        if not self._events:
            self._eventBacklog = 0


class ConnectionLimit:
    """
    The most connections a daemon keeps open at once, shared by all its
    listeners.

    At the cap, a new connection on a TCP or TLS listener takes the place of
    the oldest connection on such a listener that has not authenticated yet
    (that one gets C{ERR unavailable} and is closed): holding connections
    without the token never keeps out a client that authenticates promptly.
    The place is taken from the peer holding the most such connections (a
    local user, told by the uid owning the peer socket, or a remote
    address: L{pycm.daemon.peers}), its oldest first: a user who keeps reopening
    connections as fast as they are closed displaces only their own.
    Connections that have authenticated, or need no token, are never
    closed for another; when they alone fill the cap, a new connection is
    refused at once.  UNIX sockets and stdio are counted but never refused,
    so that an operator can still get in during a flood.

    An episode of refusals is logged once as it starts and once as it ends.
    It ends only when the open connections fall below L{LOW_WATER} of the
    cap, or, once L{QUIET} seconds pass without a refusal, at the next
    close: clients that open and close connections at the cap do not start
    an episode each.

    @ivar maximum: the cap, or None for none.
    @ivar connectionLog: the budgets of the per-connection log lines.
    """

    log = Logger()

    #: An episode ends when fewer than this share of the cap are open.
    LOW_WATER = 0.9
    #: Seconds without a refusal after which a close ends an episode.
    QUIET = 60.0

    def __init__(self, daemon: Daemon, maximum: int | None = None) -> None:
        self._daemon = daemon
        self.maximum = maximum
        self.connectionLog = ConnectionLog(daemon.clock)
        #: Connections refused in this episode (0: none is going on).
        self.refused = 0
        self._lastRefusal = 0.0
        #: Capped connections not authenticated yet, by peer, oldest first.
        self._waiting: dict[str, dict[PycmServerProtocol, int]] = {}
        self._arrivals = 0
        #: Connections closed to make room that are not gone yet.
        self._leaving: set[PycmServerProtocol] = set()

    def waiting(self, protocol: PycmServerProtocol, peer: str) -> None:
        """A connection on a capped listener from C{peer} waits for its C{auth}."""
        self._arrivals += 1
        protocol.peerGroup = peer
        self._waiting.setdefault(peer, {})[protocol] = self._arrivals

    def settled(self, protocol: PycmServerProtocol) -> None:
        """A waiting connection authenticated (or closed): it no longer waits."""
        group = self._waiting.get(protocol.peerGroup)
        if group is not None and group.pop(protocol, None) is not None and not group:
            del self._waiting[protocol.peerGroup]

    def admit(self) -> bool:
        """
        May one more connection be served?  At the cap, yes if the oldest
        connection waiting for its C{auth} can make room.
        """
        if self.maximum is None or self._daemon.connections - len(self._leaving) < self.maximum:
            return True
        # Those leaving still hold a descriptor each: at most a cap's worth.
        oldest = self._displaceable() if len(self._leaving) < self.maximum else None
        if oldest is not None:
            self.settled(oldest)
            self._leaving.add(oldest)
            oldest.makeRoom(self.maximum)
            return True
        now = self._daemon.clock.seconds()
        if self.refused and now - self._lastRefusal >= self.QUIET:
            self._endEpisode()
        if not self.refused:
            self.log.warn(
                "{count} connections open, the most allowed (--max-connections), "
                "all of them authenticated or needing no token: refusing new ones",
                count=self._daemon.connections,
            )
        self.refused += 1
        self._lastRefusal = now
        return False

    def _displaceable(self) -> PycmServerProtocol | None:
        """
        The oldest waiting connection of the peer with the most of them
        (of those with as many, the one waiting longest), or None.
        """
        if not self._waiting:
            return None
        group = max(
            self._waiting.values(), key=lambda group: (len(group), -next(iter(group.values())))
        )
        return next(iter(group))

    def released(self, protocol: PycmServerProtocol | None = None) -> None:
        """A connection closed: end an episode of refusals if it is over."""
        if protocol is not None:
            self.settled(protocol)
            self._leaving.discard(protocol)
        if not self.refused or self.maximum is None:
            return
        connections = self._daemon.connections
        if connections >= self.maximum:
            return
        quiet = self._daemon.clock.seconds() - self._lastRefusal >= self.QUIET
        if quiet or connections < self.maximum * self.LOW_WATER:
            self._endEpisode()

    def _endEpisode(self) -> None:
        self.log.info(
            "accepting connections again ({refused} refused while full)",
            refused=self.refused,
        )
        self.refused = 0


class _Refusal(Protocol):
    """A connection over the cap: one C{ERR unavailable} line, then closed."""

    transport: Any

    def __init__(self, maximum: int) -> None:
        self._maximum = maximum

    def connectionMade(self) -> None:
        error = Unavailable(
            f"the daemon has {self._maximum} connections open, its limit: try again later"
        )
        self.transport.write(encodeError(error) + b"\n")
        self.transport.loseConnection()


class PycmServerFactory(Factory):
    """
    Makes L{PycmServerProtocol}s for one listener.

    @ivar requireAuth: whether this listener wants C{auth TOKEN} first
        (TCP and TLS listeners, unless the operator turned it off).
    @ivar capped: whether connections beyond the daemon's cap are refused
        on this listener (TCP and TLS listeners, with or without the token;
        never a UNIX socket or stdio).
    @ivar description: the listener, as C{info} and the logs show it.
    @ivar authTimeout: seconds after which a connection that has not
        authenticated is closed, counted from when the daemon reads it.
    @ivar connectionLimit: the daemon's cap on connections (the same object
        for all its listeners).
    @ivar legacyFraming: whether a pause after an unfinished line ends a
        request as LF does (L{pycm.daemon.legacyframing}).
    """

    protocol = PycmServerProtocol  # type: ignore[assignment]
    noisy = False

    def __init__(
        self,
        daemon: Daemon,
        requireAuth: bool = False,
        description: str = "",
        maxLineLength: int = DEFAULT_MAX_LINE_LENGTH,
        maxEventBacklog: int = DEFAULT_MAX_EVENT_BACKLOG,
        logRequests: bool = False,
        authTimeout: float = DEFAULT_AUTH_TIMEOUT,
        connectionLimit: ConnectionLimit | None = None,
        legacyFraming: bool = False,
        capped: bool = True,
    ) -> None:
        self.daemon = daemon
        self.requireAuth = requireAuth
        self.capped = capped
        self.description = description
        self.maxLineLength = maxLineLength
        self.maxEventBacklog = maxEventBacklog
        self.logRequests = logRequests
        self.authTimeout = authTimeout
        if connectionLimit is None:
            connectionLimit = ConnectionLimit(daemon)
        self.connectionLimit = connectionLimit
        self.legacyFraming = legacyFraming

    def buildProtocol(self, addr: Any) -> Any:
        """A protocol for the connection, or a refusal over the cap."""
        limit = self.connectionLimit
        if self.capped and not limit.admit():
            assert limit.maximum is not None
            return _Refusal(limit.maximum)
        return super().buildProtocol(addr)


def _describeDiscarded(buffer: bytes) -> str:
    """
    What a closing connection leaves unread, for the log: how many lines
    and bytes, never the bytes themselves.
    """
    if not buffer:
        return ""
    lines = buffer.count(b"\n")
    unfinished = len(buffer) - (buffer.rfind(b"\n") + 1)
    parts = []
    if lines:
        parts.append(f"{lines} request line{'s' if lines > 1 else ''} not yet served")
    if unfinished:
        parts.append(f"{unfinished} bytes of an unfinished line (no line end)")
    return " and ".join(parts)


def describePeer(transport: Any) -> str:
    """
    The peer of a connection as the log shows it: C{HOST:PORT} for TCP and
    TLS (C{[HOST]:PORT} for IPv6); for a UNIX socket, the socket's path, the
    connection's descriptor (which tells apart connections from one
    process) and the connecting process's pid and uid from C{SO_PEERCRED},
    as in C{unix:/run/pycm.sock#12 pid=4242 uid=1000}; C{stdio} for the
    standard input and output.
    """
    try:
        peer = transport.getPeer()
    except Exception:
        return "?"
    host = getattr(peer, "host", None)
    if host is not None:
        port = getattr(peer, "port", "")
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if isinstance(peer, UNIXAddress):
        return _describeUNIXPeer(transport)
    if isinstance(peer, PipeAddress):
        return "stdio"
    return type(peer).__name__


def _describeUNIXPeer(transport: Any) -> str:
    # The peer's own address is almost always unnamed: the listener's path
    # says where it came in.
    try:
        path = transport.getHost().name
    except Exception:
        path = None
    if isinstance(path, bytes):
        path = path.decode("utf-8", "replace")
    described = f"unix:{path or '?'}"
    sock = getattr(transport, "socket", None)
    if sock is None:
        return described
    try:
        described += f"#{sock.fileno()}"
        credentials = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
    except OSError:
        return described
    pid, uid, _ = _PEERCRED.unpack(credentials)
    return f"{described} pid={pid} uid={uid}"


#: C{struct ucred}: pid, uid, gid.
_PEERCRED = struct.Struct("3i")
