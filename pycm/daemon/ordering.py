"""
Requests served one at a time, their replies in order, and the events in
between (L{RequestOrdering}): while a request is in flight the connection
serves nothing more (and reads nothing more once the client sends more);
events wait behind a client that does not read, up to
a backlog limit; what the session asked to run after a reply runs right
after it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, ISSLTransport
from twisted.logger import Logger
from twisted.python.failure import Failure

from pycm.daemon.commands import BY_WORD
from pycm.daemon.dispatch import describeLine, handleLine
from pycm.daemon.framing import LineFraming, clientGone
from pycm.daemon.replies import STRING_REPLIES, encodeError, encodeReply
from pycm.daemon.session import Session
from pycm.daemon.stopping import STOPPING_ERROR
from pycm.errors import InternalError, PycmError, Unavailable
from pycm.wirejson import EncodedArray

#: What one queued event is counted as against the backlog limit, whatever
#: the length of its line (docs/protocol.md says so).
_EVENT_SIZE_GUESS = 256


#: Commands that change no container but matter to the requests after them.
_NOT_ONLY = frozenset({"auth", "exit"})


def onlyAnswers(line: bytes) -> bool:
    """
    Does the request on C{line} only answer the client (C{logs}, C{list},
    C{inspect}, C{stats}, ...: a command that changes no container; not
    C{auth}, which the requests after it may need, nor C{exit}, which ends
    them)?  Those of a client that has gone are dropped.
    """
    words = line.split(None, 1)
    if not words:
        return False
    command = BY_WORD.get(words[0].decode("utf-8", "replace").lower())
    return command is not None and not command.changes and command.name not in _NOT_ONLY


class RequestOrdering(LineFraming):
    """
    Serve each line through the command table, one request at a time, and
    write its reply, an event, or an error, in order: the L{IConnection}
    half of the server protocol.

    While a request is in flight (a C{stop}, a C{wait}) the connection
    serves nothing more and stops reading once the client sends more (one
    read's worth is kept), so its later requests wait in the kernel's
    socket buffer, not in the daemon's memory.  The same happens when the client
    does not read its replies (the transport's write buffer is full).
    Other connections are not affected.

    A subclass creates L{session} and calls L{startOrdering} when
    connected, and implements L{_authenticated} (the session just
    authenticated), L{_logForcedClose} and L{_closeWithinGrace}.
    """

    log = Logger()

    session: Session
    #: Who is at the other end, for the log.
    _peer = ""
    #: Whether the connection has yet to authenticate.
    _preAuth = False
    _logRequests = False
    _closeAfterReply = False
    _closeReason = ""
    #: The request in flight, until it settles, and its line.
    _request: Deferred[Any] | None = None
    _inFlightLine = b""
    #: The client was seen gone (L{clientGone}) with requests still waiting.
    _clientGone = False
    #: How many of its requests that only answer it were dropped so.
    dropped = 0
    #: Fired when the connection is gone (L{daemonStopping}).
    _whenGone: list[Deferred[None]] = []
    #: Aborts a connection the daemon let go of when stopping, if it lingers.
    _stoppingTimer: IDelayedCall | None = None
    #: The daemon is stopping: no request starts any more (L{refuseRequests}).
    _refusing = False

    def startOrdering(self, logRequests: bool, maxEventBacklog: int) -> None:
        """Ready to serve: log requests at debug or not; the event backlog limit."""
        self._logRequests = logRequests
        self._maxEventBacklog = maxEventBacklog
        #: What the session asked to run right after the current reply.
        self._afterReply: list[Any] = []
        #: EVENT lines waiting for the client to read, and their guessed size.
        self._events: deque[bytes] = deque()
        self._eventBacklog = 0
        #: Live EVENT lines waiting for a replay to end (L{holdEventLine}).
        self._heldLive: list[bytes] = []
        #: Called once the client has read what was sent (L{whenWritable}).
        self._writable: list[Callable[[], None]] = []

    def _authenticated(self) -> None:
        """The session has just authenticated."""
        raise NotImplementedError()

    def _logForcedClose(self, reason: str) -> None:
        """Log that the daemon closes the connection, and why."""
        raise NotImplementedError()

    def _closeWithinGrace(self) -> None:
        """Close a connection the daemon lets go of, aborting it if it lingers."""
        raise NotImplementedError()

    def _stopTimers(self) -> None:
        """The daemon stops: no timer of this connection may act any more."""

    def describeDropped(self) -> str:
        """The requests dropped as the client went, for the log ("": none)."""
        if not self.dropped:
            return ""
        return f"{self.dropped} request{'s' if self.dropped != 1 else ''} only answering it"

    def _goneAway(self) -> bool:
        """Has the client gone (L{clientGone}), though no read said so yet?"""
        if not self._clientGone:
            self._clientGone = clientGone(self.transport)
        return self._clientGone

    def closeIfGone(self) -> None:
        """
        While a request is in flight the daemon does not read the client,
        so a close is not seen: if that request only answers the client
        (L{onlyAnswers}: a C{logs} being read, a C{wait}) and the client
        has closed altogether (L{clientGone}: a UNIX socket closed, a TCP
        connection reset), the connection is closed now, which stops the
        request as any lost connection does.  One that changes containers
        (an C{apply}) goes on to its end, as the client may have sent it
        and gone.
        """
        if self._inFlight and not self._lost and onlyAnswers(self._inFlightLine) \
                and self._goneAway():
            self.transport.abortConnection()

    def _gone(self) -> None:
        """
        The connection is gone: tell those waiting for it, and let go of
        the events and callbacks kept for the client (no cycle keeps it).
        """
        self._events.clear()
        self._heldLive = []
        self._writable = []
        timer, self._stoppingTimer = self._stoppingTimer, None
        if timer is not None and timer.active():
            timer.cancel()
        gone, self._whenGone = self._whenGone, []
        for waiting in gone:
            waiting.callback(None)

    def refuseRequests(self) -> None:
        """
        The daemon begins to stop (L{pycm.daemon.stopping}): from now on
        each request that would start (read and waiting behind the one in
        flight, or sent later) gets C{ERR unavailable the daemon is shutting
        down}, in its turn, and the connection stays open; the request in
        flight goes on to its own reply, and events go on, until
        L{daemonStopping}.
        """
        self._refusing = True

    def daemonStopping(self, grace: float) -> Deferred[None]:
        """
        The daemon has closed its backend and lets go of the connection:
        the events waiting for the client to read are written, then a
        request still in flight or waiting (C{logs -f}, C{wait
        --for=healthy}) gets C{ERR unavailable} (nothing is written after
        it: no later reply, no EVENT line), then the connection is closed
        cleanly: its sending side is shut and what the client still sends
        is read and dropped until it closes (aborted after C{grace}
        seconds), so that the close never discards unread input (a reset).
        A reply being written a piece at a time is cut where it is (and
        the waiting events are dropped).  Fires once the connection is gone.
        """
        gone: Deferred[None] = Deferred()
        if self._lost:
            gone.callback(None)
            return gone
        self._whenGone = [*self._whenGone, gone]
        if self._stopping or self.transport.disconnecting:
            return gone
        busy = self._inFlight or b"\n" in self._buffer or bool(self._overlong)
        cut = self._pieces is not None
        if self._events and not cut:
            # A subscriber a little behind still gets the shutdown's events
            # (at most the backlog limit, sent within the grace).
            self.transport.write(b"".join(self._events))
        self._stopping = True
        self._stopTimers()
        self.clearLineBuffer()
        self._events.clear()
        self.abandonReply()
        self._logForcedClose("the daemon is stopping (stopping)")
        if busy and not cut:
            self.transport.write(encodeError(Unavailable(STOPPING_ERROR)) + b"\n")
        self._closing = True
        if self._producing:
            self._producing = False
            self.transport.unregisterProducer()
        self._stoppingTimer = self.clock.callLater(grace, self._abortStopped)
        loseWrite = getattr(self.transport, "loseWriteConnection", None)
        if loseWrite is None or ISSLTransport.providedBy(self.transport) or self._readClosed:
            # TLS ends the whole connection (close_notify); a client that
            # shut its side has nothing more to send.
            self.transport.loseConnection()
        else:
            loseWrite()
            self.transport.resumeProducing()
        return gone

    def _abortStopped(self) -> None:
        self._stoppingTimer = None
        if not self._lost:
            getattr(self.transport, "abortConnection", self.transport.loseConnection)()

    def _handle(self, line: bytes) -> None:
        if self._refusing:
            self._replyError(Unavailable(STOPPING_ERROR))
            return
        if self.servingWaiting and onlyAnswers(line) and self._goneAway():
            # It waited its turn while the client went: nobody to answer.
            self.dropped += 1
            return
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
            reply = STRING_REPLIES.get(result) if type(result) is str else None
            if reply is None:
                try:
                    reply = encodeReply(b"OK", result)
                except Exception:
                    self._replyFailure(Failure())
                    return
            self._reply(reply)
            return
        self._inFlight = True
        self._inFlightLine = line
        self._request = result
        result.addCallbacks(self._replyOK, self._replyFailure)
        result.addBoth(self._requestDone)
        if self._inFlight:
            self.pauseReading("request")

    def _requestDone(self, _: object) -> None:
        self._inFlight = False
        self._request = None
        if "request" not in self._pauses:
            return
        if (
            self._pauses == {"request"}
            and not self._buffer
            and not self._readingStopped
            and not self._readClosed
            and not self._overlong
        ):
            # Nothing came behind it: reading simply goes on.
            self._pauses.discard("request")
            self.paused = False
            return
        # Go on with the next request in a fresh reactor turn, never
        # inside the backend call that fired this one.
        self.clock.callLater(0, self.resumeReading, "request")

    def _replyOK(self, result: Any) -> None:
        if isinstance(result, EncodedArray):
            # Thousands of containers: written a piece at a time as the
            # client reads (LineFraming.writeArray).
            self.writeArray(result, b"OK ", b"\n")
            return self._replyLine(b"")
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
        if self._logRequests:
            self.log.debug("{peer} error {code}", peer=self._peer, code=error.code)
        self._reply(encodeError(error))

    def _reply(self, line: bytes) -> None:
        self._replyLine(line + b"\n")

    def _replyLine(self, data: bytes) -> None:
        """Write one reply line (its LF included), then what follows a reply."""
        if self._lost:
            return
        self._writeData(data)
        if self._afterReply:
            after, self._afterReply = self._afterReply, []
            for action in after:
                action()
        if self._closeAfterReply:
            self.clearLineBuffer()
            self._flush()
            if self._closeReason:
                self._logForcedClose(self._closeReason)
                self._closeWithinGrace()
            else:
                self._close()

    def closeAfterReply(self, reason: str = "") -> None:
        """
        Close the connection as soon as the current reply is written; a
        C{reason} says the daemon forces it (logged), none that the client
        asked (C{exit}).
        """
        self._closeAfterReply = True
        self._closeReason = reason

    # Events (IConnection).

    def callAfterReply(self, action: Any) -> None:
        """Call C{action} right after the current request's reply is written."""
        self._afterReply.append(action)

    def sendReplayedEvent(self, value: Any) -> None:
        """
        Send one C{EVENT} line from the log (C{events --since}), or queue
        it while the client is not reading.  Replayed events do not count
        against the backlog: the event log bounds them, and they go out as
        fast as the client reads them.
        """
        if not self._lost:
            self._writeOrQueueEvent(encodeReply(b"EVENT", value) + b"\n")

    def sendEvent(self, value: Any) -> None:
        """
        Send one C{EVENT} line, or queue it while the client is not reading.
        Live events that pile up beyond the factory's C{maxEventBacklog}
        bytes get the client disconnected.
        """
        self.sendEventLine(encodeReply(b"EVENT", value) + b"\n")

    def sendEventLine(self, line: bytes) -> None:
        """
        As L{sendEvent}, for an encoded line (LF included) that every
        subscriber shares.
        """
        if self._lost or not self._writeOrQueueEvent(line):
            return
        self._countEvent()

    def _countEvent(self) -> None:
        """One more live event waits: drop a client whose backlog passes the limit."""
        self._eventBacklog += _EVENT_SIZE_GUESS
        if self._eventBacklog > self._maxEventBacklog:
            self.dropSubscriber(
                f"over {self._maxEventBacklog} bytes of events unread (slow subscriber)"
            )

    def dropSubscriber(self, reason: str) -> None:
        """Close at once, logging C{reason}: a subscriber the daemon cannot keep up with."""
        if self._lost:
            return
        self._logForcedClose(reason)
        self._lost = True
        self._events.clear()
        self._heldLive = []
        self._writable = []
        self._close(abort=True)

    def holdEventLine(self, line: bytes) -> None:
        """
        Keep a live event line until the replay running ends
        (L{releaseHeldEvents}), counted against the backlog limit: a client
        that does not read its replay is dropped once the live events it
        holds up pass the limit, as if they were queued.
        """
        if self._lost:
            return
        self._heldLive.append(line)
        self._countEvent()

    def releaseHeldEvents(self) -> None:
        """Send the live event lines held during the replay, in order."""
        held, self._heldLive = self._heldLive, []
        self._eventBacklog = max(0, self._eventBacklog - len(held) * _EVENT_SIZE_GUESS)
        for line in held:
            self.sendEventLine(line)

    def dropHeldEvents(self) -> None:
        """Forget the live event lines held (the subscription ended)."""
        self._eventBacklog = max(0, self._eventBacklog - len(self._heldLive) * _EVENT_SIZE_GUESS)
        self._heldLive = []

    def whenWritable(self, callback: Callable[[], None]) -> None:
        """
        Call C{callback} at once if the client has read every event line
        sent, else once it has (L{writeResumed}); never if it goes first.
        """
        if not self._events and "write" not in self._pauses:
            callback()
        elif not self._lost:
            self._writable.append(callback)

    def _writeOrQueueEvent(self, line: bytes) -> bool:
        """
        Write C{line} (LF included) now if no event waits before it and the
        client reads; else queue it.  Whether it was queued.
        """
        if not self._events and "write" not in self._pauses:
            self._writeData(line)
            return False
        # Queued as its line: a third of the memory of the value.
        self._events.append(line)
        return True

    def heldTooMuch(self) -> None:
        """Disconnect a client that does not read its reply, saying why."""
        budget = self.heldReplies.budget if self.heldReplies is not None else 0
        self._logForcedClose(
            f"its reply unread while replies unread by clients pass {budget // 2**20} MiB"
            " (slow reader)"
        )
        self._events.clear()
        super().heldTooMuch()

    def writeResumed(self) -> None:
        """Write queued events until the client stops reading again."""
        while self._events and "write" not in self._pauses and not self._lost:
            self._writeData(self._events.popleft())
        if self._events:
            return
        # What is left counted: the live events held for a replay.
        self._eventBacklog = len(self._heldLive) * _EVENT_SIZE_GUESS
        if "write" in self._pauses or self._lost:
            return
        waiting, self._writable = self._writable, []
        for callback in waiting:
            callback()
