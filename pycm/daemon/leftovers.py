"""
What a client under legacy framing sent before it went away
(L{LeftoverRequests}).  The teaching client sends its requests, never reads
a reply and closes right after C{exit}, often while a slow request (a
C{stop} waiting for its timeout) is still in flight and the requests it
sent after it wait in the daemon's buffer: those are still carried out, in
order, after the one in flight.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from pycm.daemon.auth import MAX_FAILED_AUTH
from pycm.daemon.commands import BY_WORD, Command
from pycm.daemon.dispatch import handleLine
from pycm.daemon.framing import LINES_PER_TURN
from pycm.daemon.requestline import decodeLine, splitWords
from pycm.daemon.session import Session
from pycm.errors import BadRequest, PycmError

#: What ends the leftover requests, as it would have closed the connection.
_END = object()


def carriedOut(command: Command) -> bool:
    """
    Is C{command} carried out for a client that has gone?  Those that
    change containers are, except C{apply}, which a client that goes away
    abandons (docs/protocol.md); so is C{auth}, which the ones after it may
    need.  The others only answer the client, who will not read the answer.
    """
    return (command.changes and command.name != "apply") or command.name == "auth"


def splitLeftovers(
    buffer: bytes, wouldClose: Callable[[bytes, bytes], bool]
) -> tuple[list[bytes], bytes]:
    """
    The request lines in C{buffer}, CR dropped, blank lines and comments
    left out, up to the first that C{wouldClose} (called with the line and
    the bytes before it) says would have closed the connection (an HTTP
    request, an overlong line); and the bytes after the last one taken.
    """
    requests: list[bytes] = []
    start = 0
    while (end := buffer.find(b"\n", start)) >= 0:
        line = buffer[start:end]
        if line[-1:] == b"\r":
            line = line[:-1]
        if wouldClose(line, buffer[:start]):
            break
        start = end + 1
        stripped = line.lstrip(b" \t")
        if stripped and stripped[:1] != b"#":
            requests.append(line)
    return requests, buffer[start:]


class LeftoverRequests:
    """
    The request lines a connection under legacy framing had read but not
    served when its client went away, carried out one at a time, in order,
    on its closed session, their replies dropped (L{carriedOut} says which;
    the others are skipped).  Each request that changes a container is
    logged at info with its outcome, as always
    (L{pycm.daemon.dispatch.audited}).  C{exit}, or a last wrong token, ends
    them, as it would have closed the connection.

    They are bounded as the connection was: the lines are those it had read
    (legacy framing reads at most
    L{pycm.daemon.legacyframing.LEGACY_READ_AHEAD} bytes ahead of a request
    in flight), at most L{LINES_PER_TURN} of them a reactor turn, and the
    connection keeps its place under the daemon's cap until C{done} is
    called.

    @ivar carried: how many requests were carried out so far.
    @ivar skipped: how many were skipped (they only answer the client).
    """

    log = Logger()

    def __init__(
        self,
        session: Session,
        clock: IReactorTime,
        lines: Iterable[bytes],
        peer: str,
        done: Callable[[LeftoverRequests], None],
    ) -> None:
        self._session = session
        self._clock = clock
        self._lines = deque(lines)
        self._peer = peer
        self._done = done
        self.carried = 0
        self.skipped = 0

    def start(self, after: Deferred[Any] | None = None) -> None:
        """
        Serve them, from the next reactor turn, or once the request in
        flight (C{after}) has settled, never inside the call that settles it.
        """
        if after is None:
            self._clock.callLater(0, self._serve)
            return

        def settled(result: object) -> object:
            self._clock.callLater(0, self._serve)
            return result

        after.addBoth(settled)

    def _serve(self) -> None:
        state = self._session.state
        if not state.ready:
            # Sent while the daemon was opening its backend: served once it is
            # open, as the connection's would have been; none if it fails.
            state.whenReady(self._serve, otherwise=lambda: self._done(self))
            return
        served = 0
        while self._lines:
            if served >= LINES_PER_TURN:
                self._clock.callLater(0, self._serve)
                return
            served += 1
            result = self._carryOut(self._lines.popleft())
            if result is _END:
                self._lines.clear()
            elif result is not None:
                # The next in a fresh turn, never inside the call that settles this one.
                result.addBoth(lambda _: self._clock.callLater(0, self._serve))
                return
        self._done(self)

    def _carryOut(self, line: bytes) -> Any:
        """
        Carry out one line: None once it is done, L{_END}, or a Deferred that
        fires once it is done.
        """
        try:
            words = splitWords(decodeLine(line))
        except BadRequest:
            words = []
        command = BY_WORD.get(words[0].lower()) if words else None
        if command is not None and command.name == "exit":
            return _END
        if command is None or not carriedOut(command) or self._session.state.refusing:
            self.skipped += 1
            return None
        self.carried += 1
        session = self._session
        result = None
        try:
            result = handleLine(session, line)
        except PycmError:
            # Logged with its code if it changes a container (audited).
            pass
        except Exception:
            self._failed(Failure())
        if session.failedAuth >= MAX_FAILED_AUTH:
            return _END
        if isinstance(result, Deferred):
            settled: list[object] = []
            result.addErrback(self._failed).addBoth(settled.append)
            if not settled:
                return result
        return None

    def _failed(self, failure: Failure) -> None:
        if not isinstance(failure.value, PycmError):
            self.log.failure(
                "internal error serving a request of {peer}, which has gone",
                failure,
                peer=self._peer,
            )
