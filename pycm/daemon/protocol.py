"""
The daemon's server protocol (L{PycmServerProtocol}) and its factory, one
per listener: what a connection may do before C{auth} (short lines, a
deadline, a place at the connection cap it may lose), half-close, the
cross-protocol guard, and the log of its life.  Beneath it:
L{pycm.daemon.framing} (lines, turns, pauses) and L{pycm.daemon.ordering}
(requests in order, replies, events); beside it:
L{pycm.daemon.connectionlimit} and L{pycm.daemon.session}.
"""

from __future__ import annotations

import re
import socket
from typing import Any

from twisted.internet.interfaces import IDelayedCall, IHalfCloseableProtocol, ITCPTransport
from twisted.internet.protocol import Factory, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from pycm.daemon.connectionlimit import ConnectionLimit, Refusal
from pycm.daemon.connectionlog import describeDiscarded
from pycm.daemon.dispatch import FIXED_REPLIES
from pycm.daemon.leftovers import LeftoverRequests, splitLeftovers
from pycm.daemon.legacyframing import PauseFraming
from pycm.daemon.ordering import RequestOrdering
from pycm.daemon.peers import describePeer, peerGroup
from pycm.daemon.replies import encodeError
from pycm.daemon.session import DaemonState, IConnection, Session
from pycm.errors import TooLong, Unauthorized, Unavailable

#: The longest request line accepted, in bytes, without its line end.
DEFAULT_MAX_LINE_LENGTH = 65_536

#: The longest request line accepted before C{auth} on a listener that
#: wants the token: plenty for C{auth TOKEN}, and 3,000 connections holding
#: that much cost little.
PREAUTH_MAX_LINE_LENGTH = 4096

#: Seconds a connection on a listener that wants the token has to
#: authenticate, counted from when the daemon starts reading it.
DEFAULT_AUTH_TIMEOUT = 30.0

#: Seconds a connection closed to make room, or for want of C{auth} in
#: time, may take to send its ERR line before it is aborted (a client that
#: does not read cannot keep it open).
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

#: A line that may be an C{auth} request (words split as request lines are).
_AUTH_LINE = re.compile(rb"(?im)^[ \t\r]*auth[ \t\r]")

#: First bytes of lines that may be blank or comments.
_BLANK_FIRST_BYTES = frozenset([b"", b" ", b"\t", b"#"])


def isCrossProtocol(line: bytes) -> bool:
    """
    Is this the start of an HTTP request rather than a pycm request?  HTTP
    methods are case-sensitive (browsers send them in capitals); header
    names are not.
    """
    return line.startswith(_HTTP_METHODS) or line[:5].lower() == b"host:"



@implementer(IHalfCloseableProtocol, IConnection)
class PycmServerProtocol(RequestOrdering):
    """
    One client connection of the daemon.  Its session (L{Session}) sees it
    only as an L{IConnection}.

    Connections cost descriptors and memory before they prove anything:
    until a connection on a listener that wants the token has
    authenticated, its lines are short, it is closed if it has not
    authenticated within a fixed time, and at the connection cap it may
    be closed to make room for a newer one (L{ConnectionLimit}).

    A client that shuts its sending side (C{shutdown(SHUT_WR)}, C{nc -N})
    still gets the reply to every line it sent; the server then closes.
    The info lines about single connections (opened, closed, closed by
    the daemon) are rate-limited and summarized
    (L{pycm.daemon.connectionlog}).

    @ivar session: the connection's state as the command table sees it.
    """

    # LF ends a line; a CR before it is dropped in lineReceived, so telnet
    # and CRLF clients work.  Replaced in connectionMade by the factory's
    # limit plus one byte for a CR; never more than this of one line is
    # buffered.
    MAX_LENGTH = DEFAULT_MAX_LINE_LENGTH + 1

    factory: PycmServerFactory
    log = Logger()

    #: Closes a connection that has not authenticated in time.
    _authTimer: IDelayedCall | None = None
    #: The "connection from" line was logged (so its close is logged too).
    _logged = False
    #: Closed to make room, or not authenticated in time; aborts it if it lingers.
    _evictionTimer: IDelayedCall | None = None

    def connectionMade(self) -> None:
        factory = self.factory
        state = factory.state
        self.clock = state.clock
        self.heldReplies = state.heldReplies
        self._peer = describePeer(self.transport)
        _sendAtOnce(self.transport)
        self.startOrdering(factory.logRequests, factory.maxEventBacklog)
        self.session = Session(
            state,
            self,
            factory.requireAuth,
            peer=self._peer,
            mayLog=factory.connectionLimit.connectionLog.authFailures.allow,
        )
        self._preAuth = not self.session.authenticated
        self._setLineLimit()
        if factory.legacyFraming:
            self._framing = PauseFraming(state.clock, self._pauseEndsLine)
        factory.connectionLimit.opened()
        state.open.add(self)
        self.startThrottle()
        if not state.ready:
            self.pauseReading("opening")
            state.whenReady(lambda: self.resumeReading("opening"), otherwise=self._abandon)
        if self._preAuth:
            # The deadline counts from when the daemon reads the connection;
            # nothing the client sends moves it.
            state.whenReady(self._startAuthTimer)
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

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._lost = True
        self.factory.state.open.discard(self)
        self._gone()
        # The rest of a reply written a piece at a time is not needed.
        self.abandonReply()
        self._stopAuthTimer()
        timer, self._evictionTimer = self._evictionTimer, None
        if timer is not None and timer.active():
            timer.cancel()
        if self._framing is not None:
            self._framing.stop()
        # Streams, waits and an apply end with the client.
        self.session.disconnected()
        self._afterReply.clear()
        leftovers = self._leftoverRequests()
        # Nothing more is read: let go of unread input at once.
        unread = describeDiscarded(self.clearLineBuffer())
        discarded = " and ".join(part for part in (unread, self.describeDropped()) if part)
        if leftovers:
            # It keeps its place under the cap until they are served.
            self.factory.connectionLimit.settled(self)
            LeftoverRequests(
                self.session, self.clock, leftovers, self._peer, self._leftoversServed
            ).start(self._request if self._inFlight else None)
        else:
            self.factory.connectionLimit.released(self)
        if not self._logged:
            # Counted in the summary when it opened.
            return
        if leftovers:
            self.log.info(
                "connection from {peer} closed with {count} request line{s} not yet served: "
                "carrying out those that change containers (legacy framing){discarded}",
                peer=self._peer,
                count=len(leftovers),
                s="" if len(leftovers) == 1 else "s",
                discarded=f"; {discarded} discarded" if discarded else "",
            )
        elif discarded:
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

    def _leftoverRequests(self) -> list[bytes]:
        """
        Under legacy framing, when the client (not the daemon) closed: the
        requests read but not served yet (L{LeftoverRequests}), the
        unfinished last line among them as the end of input would end it,
        unless reading had stopped (it may be cut).
        """
        if self._framing is None or self._closing:
            return []
        if not self._readingStopped:
            self._endUnfinishedLine()
        requests, self._buffer = splitLeftovers(
            self._buffer,
            lambda line, before: isCrossProtocol(line) or len(line) >= self.limitAfter(before),
        )
        return requests

    def _leftoversServed(self, leftovers: LeftoverRequests) -> None:
        """The requests sent before the client went are served: let go of its place."""
        self.factory.connectionLimit.released(self)
        if self._logged:
            self.log.info(
                "connection from {peer}: done with the requests it sent before closing "
                "({carried} carried out, {skipped} skipped: they only answer the client)",
                peer=self._peer,
                carried=leftovers.carried,
                skipped=leftovers.skipped,
            )

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
        if self._stopping:
            # Everything the client sent is read: close (a FIN, no reset).
            self.transport.loseConnection()
            return
        if self._framing is not None:
            self._framing.stop()
            self._endUnfinishedLine()
        # Only complete lines are served; the unfinished one (unless legacy
        # framing just ended it) stays unread, and is counted as discarded
        # when the connection closes.
        self.dataReceived(b"")

    def writeConnectionLost(self) -> None:
        """Replies can no longer be sent: close (unless the daemon shut them, stopping)."""
        if not self._stopping:
            self._close()

    # Before auth.

    def _setLineLimit(self) -> None:
        """The line limit: the listener's, or a short one before auth."""
        limit = self.factory.maxLineLength
        if self._preAuth:
            limit = min(limit, PREAUTH_MAX_LINE_LENGTH)
        self._maxLineLength = limit
        # One more byte for a CR; never more than this is buffered.
        self.MAX_LENGTH = limit + 1

    def limitAfter(self, lines: bytes) -> int:
        """
        Before auth, an C{auth} line waiting its turn may lift the limit to
        the listener's: the line after it is held to that until it is served.
        """
        if self._preAuth and _AUTH_LINE.search(lines) is not None:
            return self.factory.maxLineLength + 1
        return self.MAX_LENGTH

    def _startAuthTimer(self) -> None:
        if self._preAuth and not self._lost and not self._readClosed:
            self._authTimer = self.clock.callLater(self.factory.authTimeout, self._authTimedOut)

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
        self._writeLine(
            encodeError(Unauthorized(f"no auth TOKEN within {timeout:g} seconds: closing"))
        )
        self._flush()
        self._closeWithinGrace()

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
        L{EVICTION_GRACE} seconds).  One already let go of (its auth timed
        out), whose last line is still on its way, is aborted at once.
        """
        if self.transport.disconnecting:
            self._abortEvicted()
            return
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
        self._writeLine(encodeError(error))
        self._flush()
        self._closeWithinGrace()

    def _closeWithinGrace(self) -> None:
        """
        Close a connection the daemon lets go of (its last line written):
        at once if the client is not reading (the line would never go out),
        else aborted if it is not gone within L{EVICTION_GRACE} seconds.
        """
        if "write" in self._pauses:
            self._close(abort=True)
            return
        self._close()
        self._evictionTimer = self.clock.callLater(EVICTION_GRACE, self._abortEvicted)

    def _stopTimers(self) -> None:
        self._stopAuthTimer()

    def _abortEvicted(self) -> None:
        timer, self._evictionTimer = self._evictionTimer, None
        if timer is not None and timer.active():
            timer.cancel()
        if not self._lost:
            getattr(self.transport, "abortConnection", self.transport.loseConnection)()

    # Lines refused.

    def refuseLine(self, head: bytes) -> None:
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
        self._writeLine(encodeError(TooLong(f"request line longer than {limit} bytes{before}")))
        self._flush()
        self._close()

    # Requests and replies.

    def lineReceived(self, line: bytes) -> None:
        fixed = FIXED_REPLIES.get(line)
        if fixed is not None and not self._logRequests and not self._refusing:
            # A ping: nothing to check, parse or encode (see FIXED_REPLIES);
            # refused as any request once the daemon stops.
            return self._replyLine(fixed)
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
        state: DaemonState,
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
        self.state = state
        self.requireAuth = requireAuth
        self.capped = capped
        self.description = description
        self.maxLineLength = maxLineLength
        self.maxEventBacklog = maxEventBacklog
        self.logRequests = logRequests
        self.authTimeout = authTimeout
        if connectionLimit is None:
            connectionLimit = ConnectionLimit(state)
        self.connectionLimit = connectionLimit
        self.legacyFraming = legacyFraming

    def buildProtocol(self, addr: Any) -> Any:
        """A protocol for the connection, or a refusal over the cap."""
        limit = self.connectionLimit
        if self.capped and not limit.admit():
            assert limit.maximum is not None
            return Refusal(limit.maximum)
        return super().buildProtocol(addr)


def _sendAtOnce(transport: Any) -> None:
    """
    Set TCP_NODELAY on a TCP connection (TLS included): a reply goes out
    whole as soon as it is written, and the last bytes of one written a
    piece at a time (a C{list} of thousands) must not wait for the client's
    delayed ACK (Nagle).  A UNIX socket or stdio has nothing to set.
    """
    if not ITCPTransport.providedBy(transport):
        return
    # ISystemHandle's: the socket (under TLS too).
    handle = getattr(transport, "getHandle", lambda: None)()
    if getattr(handle, "family", None) in (socket.AF_INET, socket.AF_INET6):
        transport.setTcpNoDelay(True)
