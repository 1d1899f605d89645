"""
Lines in and lines out, a reactor turn at a time (L{LineFraming}): the
framing under the server protocol, on L{Protocol}'s public API alone.

Requests are split at LF, at most L{LINES_PER_TURN} of them (or
L{BYTES_PER_TURN} of replies, or L{SECONDS_PER_TURN}) a turn; no line is served while any reason
to pause holds (a request in flight, a client that does not read its
replies), and reading stops too (for a request in flight, once the client
sends more); a line over the limit is refused in its turn, after the replies
to the lines before it; under legacy framing a pause ends a line too.  A
reply of megabytes (an L{EncodedArray}) is written a piece at a time, as
the client reads it.
"""

from __future__ import annotations

import select
from typing import Any

from twisted.internet.interfaces import IPushProducer, IReactorTime
from twisted.internet.protocol import Protocol
from zope.interface import implementer

from pycm.daemon.heldreplies import HeldReplies, ReplyArray
from pycm.daemon.legacyframing import PauseFraming
from pycm.wirejson import EncodedArray

#: The most request lines served from one connection in one reactor turn,
#: the most reply bytes it may write in one turn, and the most seconds it
#: may take (by its clock: the lines of a turn cost what they cost, a
#: request of many milliseconds goes on a slice at a time, see
#: L{pycm.slicedwork}), before it yields to the other connections.
LINES_PER_TURN = 64
BYTES_PER_TURN = 64 * 1024
SECONDS_PER_TURN = 0.01


def clientGone(transport: Any) -> bool:
    """
    Has the client closed its connection altogether, as far as the kernel
    knows, while the daemon was not reading it (a request in flight, or
    after a half-close)?  A TCP connection reset (the client closed, then
    a reply reached it), or a UNIX socket closed, hangs up; one the client
    only shut for sending (C{shutdown(SHUT_WR)}, C{nc -N}) does not, and
    gets every reply.  False when it cannot tell (stdio, TLS).
    """
    try:
        fileno = transport.getHandle().fileno()
        poller = select.poll()
        poller.register(fileno, select.POLLOUT)
        ready = poller.poll(0)
    except Exception:
        return False
    return any(events & (select.POLLHUP | select.POLLERR) for _, events in ready)


@implementer(IPushProducer)
class _WriteThrottle:
    """
    Registered with the transport so that a client that does not read its
    replies makes the protocol stop reading its requests.
    """

    def __init__(self, protocol: LineFraming) -> None:
        self._protocol = protocol

    def pauseProducing(self) -> None:
        self._protocol.pauseReading("write")
        self._protocol.writePaused()

    def resumeProducing(self) -> None:
        self._protocol.resumeReading("write")

    def stopProducing(self) -> None:
        pass


class LineFraming(Protocol):
    """
    Split what a connection sends into lines and hand them, one at a time
    and in order, to L{lineReceived}; write what it answers in one batch a
    turn.

    A subclass sets L{clock} and L{MAX_LENGTH} before the first byte,
    calls L{startThrottle} once connected, and implements L{lineReceived}
    and L{refuseLine}; it may set L{_inFlight} while a request is served
    (the half-closed connection then waits for it), and override
    L{writeResumed} and L{limitAfter}.
    """

    #: The longest line accepted, in bytes, line end excluded but a CR
    #: included; never more than this of one line is buffered.
    MAX_LENGTH = 65_537
    # A TCP, UNIX, TLS or stdio transport: ITransport plus IProducer and
    # abortConnection, which ITransport alone does not declare.
    transport: Any
    #: Schedules the next turn of a connection that had more to serve.
    clock: IReactorTime

    #: Input not served yet: complete lines, then at most one unfinished.
    _buffer = b""
    #: Serving lines now (a reply's callback that reads again must wait).
    _busyReceiving = False
    #: The lines served now were read earlier, and waited their turn.
    servingWaiting = False
    #: No more lines are served until every reason to pause is resumed.
    paused = False
    #: The first bytes of an overlong line waiting its turn to be refused.
    _overlong = b""
    _lost = False
    #: The daemon closed the connection (not the client).
    _closing = False
    #: The daemon is stopping: nothing more is served or written.
    _stopping = False
    #: The transport was told to stop reading, and has not resumed.
    _readingStopped = False
    #: A request is being served: the connection waits for its reply.
    _inFlight = False
    #: The client shut its sending side: answer what it sent, then close.
    _readClosed = False
    #: Under legacy framing, ends a request line at a pause as well as at LF.
    _framing: PauseFraming | None = None
    #: The write throttle is registered with the transport.
    _producing = False
    #: The replies of this turn, written together at its end (None between).
    _batch: list[bytes] | None = None
    _batchBytes = 0
    _turnBytes = 0
    #: A reply being written a piece at a time (L{writeArray}): the array,
    #: the bytes before and after it, and the index of its next piece.
    _pieces: tuple[EncodedArray, bytes, bytes] | None = None
    _nextPiece = 0
    #: The daemon-wide account of replies of their own held for clients
    #: (L{ReplyArray}), and what this connection's counts in it.
    heldReplies: HeldReplies | None = None
    _held = 0

    def startThrottle(self) -> None:
        """Stop reading whenever the transport's write buffer is full."""
        self._pauses: set[str] = set()
        self.transport.registerProducer(_WriteThrottle(self), True)
        self._producing = True

    def lineReceived(self, line: bytes) -> None:
        """Serve one line (without its LF)."""
        raise NotImplementedError()

    def refuseLine(self, head: bytes) -> None:
        """A line over L{MAX_LENGTH}, whose first 8 bytes are C{head}."""
        raise NotImplementedError()

    def writeResumed(self) -> None:
        """The client reads its replies again (before reading resumes)."""

    def heldTooMuch(self) -> None:
        """
        The client stopped reading a reply of its own while such replies
        held for clients pass the budget (L{HeldReplies}): let go of it.
        """
        self.abandonReply()
        self._close(abort=True)

    def writePaused(self) -> None:
        """The transport's write buffer is full: the client does not read."""
        held = self.heldReplies
        if self._held and held is not None and held.over() and not self._lost:
            self.heldTooMuch()

    def limitAfter(self, lines: bytes) -> int:
        """
        The longest line once the complete C{lines} waiting before it are
        served (one may lift the limit); never less than L{MAX_LENGTH}.
        """
        return self.MAX_LENGTH

    def clearLineBuffer(self) -> bytes:
        """Drop the unserved input and return it."""
        buffer, self._buffer = self._buffer, b""
        return buffer

    def _close(self, abort: bool = False) -> None:
        """
        Close the connection: unregister the write throttle first, since a
        transport with a paused streaming producer may wait for it for ever
        instead of finishing the close (and TLS does not start its close
        while any producer is registered).
        """
        self._closing = True
        if self._producing:
            self._producing = False
            self.transport.unregisterProducer()
        if abort:
            getattr(self.transport, "abortConnection", self.transport.loseConnection)()
        else:
            self.transport.loseConnection()

    def _closeIfAnswered(self) -> None:
        """After a half-close: close once every line sent has its reply."""
        if (
            self._readClosed
            and not self._inFlight
            and self._pieces is None
            and not self._overlong
            and b"\n" not in self._buffer
            and not self._lost
            and not self.transport.disconnecting
        ):
            self._close()

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

    # Reading.

    def dataReceived(self, data: bytes) -> None:
        """
        Split the bytes into lines and serve them.

        Lines are found by index instead of re-splitting the rest of the
        buffer for each line (quadratic when a client pipelines thousands of
        lines in one read); at most L{LINES_PER_TURN} lines are served in
        one reactor turn, so a client with a full pipe cannot hold up the
        others.  The replies to the lines of one turn are written at once.
        """
        if self._lost or self._stopping or self.transport.disconnecting:
            # Closing: nothing more from this client is acted on.
            return
        if (
            data[-1:] == b"\n"
            and not self._buffer
            and not self.paused
            and not self._busyReceiving
            and self._framing is None
            and not self._overlong
            and data.find(b"\n") == len(data) - 1
            and len(data) <= self.MAX_LENGTH
        ):
            self._serveOneLine(data[:-1])
            return
        if not self._overlong:
            self._buffer += data
            if data and self._framing is not None:
                self._framing.watch(not self._buffer.endswith(b"\n"))
                if self.paused and not self._framing.mayReadAhead(len(self._buffer)):
                    self._stopReading()
            elif data and self.paused and not self._readingStopped:
                # Bytes behind a request in flight: one read's worth is
                # kept, the rest waits in the kernel's socket buffer.
                self._stopReading()
        if self._busyReceiving:
            return
        self._busyReceiving = True
        self._batch = []
        self._batchBytes = self._turnBytes = 0
        # No new bytes: the lines served waited (behind a pause, or a turn).
        self.servingWaiting = not data
        try:
            self._serveBuffer()
        finally:
            self.servingWaiting = False
            self._busyReceiving = False
            if not self._lost:
                self._flush()
            self._batch = None
        self._closeIfAnswered()

    def _serveOneLine(self, line: bytes) -> None:
        """
        The common case of a client with one request in flight: one whole
        line read, nothing waiting before it.  Served as L{_serveBuffer}
        would, without its buffer, loop and batch: the reply is the only
        line of the turn, written as soon as it is made.
        """
        self._busyReceiving = True
        try:
            self.lineReceived(line)
        finally:
            self._busyReceiving = False
        self._closeIfAnswered()

    def _serveBuffer(self) -> None:
        buffer = self._buffer
        start = 0
        served = 0
        clock = self.clock
        deadline = clock.seconds() + SECONDS_PER_TURN
        while not self.paused:
            end = buffer.find(b"\n", start)
            if end < 0:
                break
            # Read on each line: auth lifts the limit for the lines after it.
            if end - start > self.MAX_LENGTH:
                self._buffer = b""
                self.refuseLine(buffer[start : start + 8])
                return
            line = buffer[start:end]
            start = end + 1
            self.lineReceived(line)
            if self.transport.disconnecting or self._lost:
                self._buffer = b""
                return
            served += 1
            if (
                served >= LINES_PER_TURN
                or self._turnBytes >= BYTES_PER_TURN
                or clock.seconds() >= deadline
            ) and start < len(buffer):
                self.pauseReading("turn")
                clock.callLater(0, self.resumeReading, "turn")
                break
        rest = buffer[start:]
        # Only the unfinished last line counts against the limit: complete
        # lines waiting behind a pause are requests like any others, and
        # may lift the limit for the line after them.
        waiting = rest.rfind(b"\n") + 1
        unfinished = len(rest) - waiting
        if unfinished > self.MAX_LENGTH and (
            not waiting or unfinished > self.limitAfter(rest[:waiting])
        ):
            if not self._overlong:
                # Keep the complete lines before it, read nothing more, and
                # refuse it in its turn, after their replies.
                self._overlong = rest[-unfinished:][:8]
                self.transport.pauseProducing()
            rest = rest[: len(rest) - unfinished]
        self._buffer = rest
        if rest and self.paused and not self._readingStopped and self._framing is None:
            # Lines behind a request in flight: read no more for now.
            self._stopReading()
        if self._overlong and not rest and not self.paused:
            self.refuseLine(self._overlong)

    # Pauses.

    def pauseReading(self, reason: str) -> None:
        """
        Serve no more lines until every reason is resumed.  For a request in
        flight alone the transport goes on reading until the client sends
        something (L{dataReceived} then stops it): a client that waits for
        its reply costs no change to the reactor's interest in the socket.
        """
        first = not self._pauses
        self._pauses.add(reason)
        if first:
            self.pauseProducing(stopReading=reason != "request")
        elif reason != "request" and not self._readingStopped and self._framing is None:
            self._stopReading()

    def resumeReading(self, reason: str) -> None:
        """Drop one reason to pause; read again if none is left."""
        if reason == "write" and "write" in self._pauses:
            self._pauses.discard("write")
            if self._pieces is not None:
                # The rest of a reply first; anything else once it is written.
                self._writePieces()
                if self._pieces is not None or "write" in self._pauses:
                    self._pauses.add("write")
                    return
            self.writeResumed()
            if "write" in self._pauses:
                return
            self._pauses.add("write")
        if reason not in self._pauses:
            return
        self._pauses.discard(reason)
        if not self._pauses and not self._lost and not self.transport.disconnecting:
            self.resumeProducing()

    def pauseProducing(self, stopReading: bool = True) -> None:
        """
        Serve no more lines, and stop reading (at once, or with
        C{stopReading} false once more bytes arrive), except that under
        legacy framing the connection is read ahead (pauses are seen only
        while it is read) until it holds
        L{pycm.daemon.legacyframing.LEGACY_READ_AHEAD} bytes.
        """
        self.paused = True
        if self._framing is None:
            if stopReading:
                self._stopReading()
        elif not self._framing.mayReadAhead(len(self._buffer)):
            self._stopReading()

    def _stopReading(self) -> None:
        self._readingStopped = True
        self.transport.pauseProducing()
        if self._framing is not None:
            # The silence this causes is not the client's pause.
            self._framing.stop()

    def resumeProducing(self) -> None:
        self.paused = False
        # After a half-close the transport must not read again: it would
        # report the end of input a second time.
        if self._readingStopped and not self._overlong and not self._readClosed:
            self._readingStopped = False
            self.transport.resumeProducing()
            if self._framing is not None:
                self._framing.watch(self._buffer[-1:] not in (b"", b"\n"))
        self.dataReceived(b"")

    # Writing.

    def _writeLine(self, line: bytes) -> None:
        """Write one line (without its LF) now, or with the others of this turn."""
        self._writeData(line + b"\n")

    def writeArray(self, array: EncodedArray, prefix: bytes, suffix: bytes) -> None:
        """
        Write C{prefix}, C{array}'s JSON and C{suffix} after what this turn
        wrote before it.  One of a single piece (L{EncodedArray.piece}) is
        written as any line; a bigger one a piece at a time, each when the
        transport has sent the one before (its write throttle resumes us),
        reading nothing (other writes, such as events, wait, as for a
        client that does not read) until its last piece is written: other
        connections are served between its pieces.  A client that never
        reads holds, in the daemon, about one piece in the transport and a
        reference to C{array} (shared, not copied: see L{EncodedArray}); a
        L{ReplyArray}, made for this reply alone, is counted against
        L{heldReplies} until it is written, and a client that stops reading
        one while they are over its budget is disconnected (L{heldTooMuch}).
        """
        first, last = array.piece(prefix, suffix, 0)
        if last:
            self._writeData(first)
            return
        self._flush()
        self._pieces = (array, prefix, suffix)
        self._nextPiece = 0
        if type(array) is ReplyArray and self.heldReplies is not None:
            self._held = array.cost
            self.heldReplies.hold(array.cost)
        # Until the transport pauses us ("write": nothing is read, events
        # wait), or the last piece is written.
        self._writePieces()

    def _writePieces(self) -> None:
        """Write the pieces of the reply until the transport is full, or the last."""
        assert self._pieces is not None
        array, prefix, suffix = self._pieces
        while not self._lost and "write" not in self._pauses:
            piece, last = array.piece(prefix, suffix, self._nextPiece)
            self._nextPiece += 1
            if last:
                self.abandonReply()
            self.transport.write(piece)
            if last:
                return
        if self._lost:
            self.abandonReply()

    def abandonReply(self) -> None:
        """Let go of a reply being written a piece at a time: no more of it is written."""
        self._pieces = None
        held, self._held = self._held, 0
        if held and self.heldReplies is not None:
            self.heldReplies.release(held)

    def _writeData(self, data: bytes) -> None:
        """
        Write C{data} (whole lines, LF included) now, or with the others of
        this turn: every reply and event line goes through here.
        """
        if self._stopping:
            return
        batch = self._batch
        if batch is None:
            self.transport.write(data)
            return
        batch.append(data)
        self._batchBytes += len(data)
        self._turnBytes += len(data)
        if self._batchBytes >= BYTES_PER_TURN:
            # Big replies go out at once, so that a client that does not
            # read is noticed (the write throttle pauses us) straight away.
            self._flush()

    def _flush(self) -> None:
        """Write what this turn has gathered so far."""
        self._batchBytes = 0
        batch = self._batch
        if batch:
            self._batch = []
            # One bytes object: cheaper for the transport than a sequence.
            self.transport.write(batch[0] if len(batch) == 1 else b"".join(batch))
