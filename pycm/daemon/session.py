"""
One client's session with the daemon (L{Session}): its authentication,
its event subscription and the logs it follows; and what every session
shares (L{Daemon}).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from pycm.daemon.eventlog import EventLog
from pycm.daemon.filters import eventMatches
from pycm.errors import Unauthorized
from pycm.interfaces import IContainerBackend
from pycm.model import (
    ContainerEvent,
    LogFollow,
    LogLine,
    ProgressEvent,
    formatTime,
)


@attrs.define
class Daemon:
    """
    What every connection of one daemon shares.

    @ivar token: the token TCP and TLS listeners require, or None.
    @ivar listeners: descriptions of the listening endpoints, for C{info}.
    """

    clock: IReactorTime
    backend: IContainerBackend
    events: EventLog
    token: str | None = None
    listeners: list[str] = attrs.field(factory=list)
    startedAt: float = attrs.field(default=None)
    connections: int = 0
    #: False until the backend is open; connections wait until then.
    ready: bool = True
    _whenReady: list[Callable[[], None]] = attrs.field(factory=list)
    _whenFailed: list[Callable[[], None]] = attrs.field(factory=list)

    def __attrs_post_init__(self) -> None:
        if self.startedAt is None:
            self.startedAt = self.clock.seconds()
        self.backend.addObserver(self.events.record)

    def whenReady(
        self,
        callback: Callable[[], None],
        otherwise: Callable[[], None] | None = None,
    ) -> None:
        """
        Call C{callback} once the daemon is ready (at once if it is), or
        C{otherwise} if the backend fails to open.
        """
        if self.ready:
            callback()
        else:
            self._whenReady.append(callback)
            if otherwise is not None:
                self._whenFailed.append(otherwise)

    def setReady(self) -> None:
        """The backend is open: serve the connections that were waiting."""
        self.ready = True
        self._whenFailed = []
        waiting, self._whenReady = self._whenReady, []
        for callback in waiting:
            callback()

    def setFailed(self) -> None:
        """The backend could not open: let go of the connections waiting."""
        self._whenReady = []
        failed, self._whenFailed = self._whenFailed, []
        for callback in failed:
            callback()


class Session:
    """
    One connection's state, as the command table sees it.

    The protocol creates it with the two ways back to the client:
    C{sendEvent} (one JSON-able value, sent as an C{EVENT} line) and
    C{close} (close the connection once the current reply is written; a
    reason, if given, is logged as a forced close).
    C{requireAuth} says whether this listener wants C{auth TOKEN} first.
    """

    log = Logger()

    def __init__(
        self,
        daemon: Daemon,
        sendEvent: Callable[..., None],
        close: Callable[..., None],
        requireAuth: bool,
        peer: str = "",
    ) -> None:
        self.daemon = daemon
        self.sendEvent = sendEvent
        self.close = close
        #: Who is at the other end, for the log.
        self.peer = peer
        self.authenticated = not requireAuth or daemon.token is None
        self.failedAuth = 0
        #: Whether a request was refused for want of C{auth} (logged once).
        self.refusedUnauthenticated = False
        #: May an auth line (a wrong token, a refusal) be logged now?  The
        #: protocol shares a budget among connections (L{pycm.daemon.connectionlog}).
        self.mayLog: Callable[[str], bool] = lambda reason: True
        #: Names with a C{logs --follow} asked for (set up or not yet).
        self.following: set[str] = set()
        self.follows: dict[str, LogFollow] = {}
        self.closed = False
        #: Waits to cancel if the connection goes away first.
        self.pending: set[Deferred[Any]] = set()
        #: Callables the protocol calls right after it writes the reply.
        self.afterReply: list[Callable[[], None]] = []
        self._eventFilter: dict[str, set[str]] | None = None

    # events
    @property
    def subscribed(self) -> bool:
        return self._eventFilter is not None

    def subscribe(self, filters: dict[str, set[str]]) -> None:
        if self._eventFilter is None:
            self.daemon.events.subscribe(self._onEvent)
        self._eventFilter = filters

    def unsubscribe(self) -> None:
        if self._eventFilter is not None:
            self.daemon.events.unsubscribe(self._onEvent)
            self._eventFilter = None

    def _onEvent(self, event: ContainerEvent | ProgressEvent) -> None:
        if self._eventFilter is not None and eventMatches(event, self._eventFilter):
            self.sendEvent(event.toJSON())

    # logs --follow
    def startFollowing(self, name: str, follow: LogFollow) -> None:
        """
        A follow the backend has set up: keep it, and end it with a
        C{log_end} when the backend says it is over.
        """
        if self.closed or name not in self.following:
            # The client went away, or unfollowed, while it was set up.
            follow.cancel()
            return
        self.follows[name] = follow

        def ended(_: object) -> None:
            if self.follows.get(name) is follow:
                self.endFollowing(name)

        # Hooked after the reply, so that a follow that is over at once
        # (the container is not running) sends its log_end after the OK.
        self.afterReply.append(lambda: follow.ended.addBoth(ended))

    def endFollowing(self, name: str) -> None:
        """Stop following C{name}: no more of its lines, then C{log_end}."""
        self.following.discard(name)
        follow = self.follows.pop(name, None)
        if follow is not None:
            follow.cancel()
        if not self.closed:
            self.sendEvent({"type": "log_end", "name": name})

    def sendLogLine(self, name: str, line: LogLine) -> None:
        if name not in self.following or self.closed:
            return
        self.sendEvent(
            {
                "type": "log",
                "name": name,
                "time": formatTime(line.time),
                "stream": line.stream,
                "line": line.line,
            }
        )

    def unauthenticated(self, command: str) -> Unauthorized:
        """
        The error for a command sent before C{auth}; the first on this
        connection is logged at info (the client may not be reading).
        """
        if not self.refusedUnauthenticated and self.mayLog("not authenticated"):
            self.refusedUnauthenticated = True
            self.log.info(
                "{peer}: '{command}' refused: not authenticated (auth TOKEN first); "
                "later refusals on this connection are not logged",
                peer=self.peer or "-",
                command=command,
            )
        return Unauthorized(f"'{command}' needs authentication first: auth TOKEN")

    def disconnected(self) -> None:
        """The connection is gone: stop everything it asked for."""
        self.closed = True
        self.unsubscribe()
        for pending in list(self.pending):
            pending.cancel()
        self.following.clear()
        for follow in list(self.follows.values()):
            follow.cancel()
        self.follows.clear()
        # Let go of the protocol: with no cycle left, the connection's
        # memory is freed now, not at the next full garbage collection.
        self.sendEvent = _ignore
        self.close = _ignore
        self.afterReply.clear()


def _ignore(*args: Any, **kwargs: Any) -> None:
    """What a closed session's ways back to its client became."""
