"""
One client's session with the daemon (L{Session}): its authentication,
its event subscription and the logs it follows; what every session shares
(L{DaemonState}); and the seam to the protocol under it: what a session may
ask of its connection (L{IConnection}), what the protocol asks of a
session (L{ISession}).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import Attribute, Interface, implementer

from pycm.daemon.eventlog import EventLog
from pycm.daemon.heldreplies import HeldReplies
from pycm.daemon.replay import EventReplay
from pycm.errors import Unauthorized
from pycm.interfaces import IContainerBackend
from pycm.model import LogFollow, LogLine
from pycm.slicedwork import SlicedWork


class IConnection(Interface):
    """
    What a L{Session} may ask of the connection it serves (the protocol
    provides it): the session's only ways back to the client.
    """

    def sendEvent(value: Any) -> None:
        """
        Send one C{EVENT} line of a JSON-able value now, or queue it while
        the client does not read; live events piling up beyond the
        connection's backlog limit get the client dropped.
        """

    def sendEventLine(line: bytes) -> None:
        """
        As L{sendEvent}, for a line already encoded, its LF included: the
        same bytes go to every subscriber of the event.
        """

    def sendReplayedEvent(value: Any) -> None:
        """
        As L{sendEvent}, for an event from the log (C{events --since}): not
        counted against the backlog limit, which the log already bounds.
        """

    def holdEventLine(line: bytes) -> None:
        """
        Keep a live event line that must wait for a replay to end, counted
        against the backlog limit as a queued one is.
        """

    def releaseHeldEvents() -> None:
        """Send the held live event lines (L{holdEventLine}), in order."""

    def dropHeldEvents() -> None:
        """Forget the held live event lines."""

    def dropSubscriber(reason: str) -> None:
        """
        Close at once, saying C{reason} in the log: a subscriber the daemon
        cannot keep up with (the close is the client's sign that events
        were not sent).
        """

    def whenWritable(callback: Callable[[], None]) -> None:
        """
        Call C{callback} once the client has read what was sent to it
        (at once if it has): never, if the connection goes first.
        """

    def callAfterReply(action: Callable[[], None]) -> None:
        """Call C{action} right after the current request's reply is written."""

    def closeAfterReply(reason: str = "") -> None:
        """
        Close once the current reply is written; a C{reason} says the daemon
        forces it (logged as a forced close), none that the client asked.
        """


class ISession(Interface):
    """What the protocol asks of the session of its connection."""

    authenticated = Attribute("Whether requests that need the token may be served.")
    peer = Attribute("Who is at the other end, as the log shows it.")

    def disconnected() -> None:
        """The connection is gone: stop everything it asked for."""


@attrs.define
class DaemonState:
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
    #: The connections open now (each told when the daemon stops).
    open: set[Any] = attrs.field(factory=set)
    #: The replies of their own held for clients (L{HeldReplies}).
    heldReplies: HeldReplies = attrs.field(factory=HeldReplies)
    #: False until the backend is open; connections wait until then.
    ready: bool = True
    #: The daemon is stopping: no request is started any more, not even
    #: one a gone client left (L{pycm.daemon.leftovers}).
    refusing: bool = False
    #: Long work of the requests (encoding megabytes of log lines), a
    #: slice at a time between the other connections' requests.
    slices: SlicedWork = attrs.field(
        default=attrs.Factory(lambda self: SlicedWork(self.clock), takes_self=True)
    )
    _whenReady: list[Callable[[], None]] = attrs.field(factory=list)
    _whenFailed: list[Callable[[], None]] = attrs.field(factory=list)

    def __attrs_post_init__(self) -> None:
        if self.startedAt is None:
            self.startedAt = self.clock.seconds()
        self.events.attach(self.backend)

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


@implementer(ISession)
class Session:
    """
    One connection's state, as the command table sees it.

    @ivar sendEvent: send one C{EVENT} line (L{IConnection.sendEvent}).
    @ivar sendEventLine: send one encoded C{EVENT} line
        (L{IConnection.sendEventLine}).
    @ivar replayEvent: send one C{EVENT} line from the log
        (L{IConnection.sendReplayedEvent}).
    @ivar callAfterReply: call something right after the current reply is
        written (L{IConnection.callAfterReply}).
    @ivar close: close the connection once the current reply is written
        (L{IConnection.closeAfterReply}).
    """

    log = Logger()

    def __init__(
        self,
        state: DaemonState,
        connection: IConnection,
        requireAuth: bool,
        peer: str = "",
        mayLog: Callable[[str], bool] | None = None,
    ) -> None:
        self.state = state
        # Bound once, so that an event costs no more than a call.
        self.sendEvent: Callable[[Any], None] = connection.sendEvent
        self.sendEventLine: Callable[[bytes], None] = connection.sendEventLine
        self.replayEvent: Callable[[Any], None] = connection.sendReplayedEvent
        self.callAfterReply: Callable[[Callable[[], None]], None] = connection.callAfterReply
        self.holdEventLine: Callable[[bytes], None] = connection.holdEventLine
        self.releaseHeldEvents: Callable[[], None] = connection.releaseHeldEvents
        self.dropHeldEvents: Callable[[], None] = connection.dropHeldEvents
        self.whenWritable: Callable[[Callable[[], None]], None] = connection.whenWritable
        self.dropSubscriber: Callable[[str], None] = connection.dropSubscriber
        self.close: Callable[..., None] = connection.closeAfterReply
        #: Who is at the other end, for the log.
        self.peer = peer
        self.authenticated = not requireAuth or state.token is None
        self.failedAuth = 0
        #: Whether a request was refused for want of C{auth} (logged once).
        self.refusedUnauthenticated = False
        #: May an auth line (a wrong token, a refusal) be logged now?  The
        #: protocol shares a budget among connections (L{pycm.daemon.connectionlog}).
        self.mayLog: Callable[[str], bool] = mayLog or (lambda reason: True)
        #: Names a C{logs --follow} was asked for (set up or not yet).
        self.followedNames: set[str] = set()
        #: The backend's follows of those set up, by name.
        self.followHandles: dict[str, LogFollow] = {}
        self.closed = False
        #: Waits to cancel if the connection goes away first.
        self.pending: set[Deferred[Any]] = set()
        self._eventFilter: dict[str, set[str]] | None = None
        #: What the event log hands this session's event lines to: the
        #: connection's sending, or its holding while a replay runs.
        self._eventSink: Callable[[bytes], None] | None = None
        self._replay: EventReplay | None = None
        #: Who waits for the running replay to be over (L{whenReplayed}).
        self._replayWaiters: list[Deferred[None]] = []

    # events
    @property
    def subscribed(self) -> bool:
        return self._eventFilter is not None

    def subscribe(self, filters: dict[str, set[str]], since: int | None = None) -> int:
        """
        Send the events that pass C{filters} as they happen; with C{since},
        first replay the retained ones newer than it, a slice a turn, right
        after the current reply, holding the live ones meanwhile (each
        event once, in order).  Returns the id of the newest event, which
        the replay ends with.
        """
        if self.closed:
            # A wait for a replay ended with the connection: nothing to send to.
            return self.state.events.lastId
        if self._replay is not None:
            # Asked again while replaying (the events command waits for it
            # to be over, L{whenReplayed}): the rest before this reply.
            self._replay.finish()
        log = self.state.events
        lastId = log.lastId
        replay = None
        if since is not None and since < lastId:
            replay = EventReplay(
                log,
                self.state.clock,
                since,
                lastId,
                filters,
                self._sendReplayed,
                self._replayed,
                whenWritable=self.whenWritable,
                fellBehind=self._fellBehind,
            )
        self._eventFilter = filters
        if replay is None:
            self._setEventSink(self.sendEventLine, filters)
            return lastId
        self._setEventSink(self.holdEventLine, filters)
        self._replay = replay
        self.callAfterReply(replay.start)
        return lastId

    @property
    def replaying(self) -> bool:
        """Whether an C{events --since} replay is still being sent."""
        return self._replay is not None

    def whenReplayed(self) -> Deferred[None]:
        """
        Fires once the running replay is over (sent, cancelled or failed),
        at once if none runs.
        """
        if self._replay is None:
            return succeed(None)
        over: Deferred[None] = Deferred()
        self._replayWaiters.append(over)
        return over

    def _replayOver(self) -> None:
        waiters, self._replayWaiters = self._replayWaiters, []
        for waiter in waiters:
            waiter.callback(None)

    def _setEventSink(self, sink: Callable[[bytes], None], filters: dict[str, set[str]]) -> None:
        lines = self.state.events.lines
        if self._eventSink is not None:
            lines.remove(self._eventSink)
        self._eventSink = sink
        lines.add(sink, filters)

    def _sendReplayed(self, value: Any) -> None:
        # Looked up at each call: a closed session's is _ignore.
        self.replayEvent(value)

    def _fellBehind(self) -> None:
        """
        The log dropped events this replay had yet to send (the client read
        too slowly): end the subscription and close, rather than go on with
        a gap the client would not see.
        """
        self._replay = None
        self.unsubscribe()
        self._replayOver()
        self.dropSubscriber(
            "its events --since replay fell behind the event log (slow reader);"
            " events it had not read were dropped from the log"
        )

    def _replayed(self, complete: bool) -> None:
        """The replay is over: the live events held meanwhile, then live ones."""
        self._replay = None
        if not complete:
            # The log could not be read: no gap is sent over in silence.
            self.unsubscribe()
            self._replayOver()
            return
        assert self._eventFilter is not None
        self._setEventSink(self.sendEventLine, self._eventFilter)
        self.releaseHeldEvents()
        self._replayOver()

    def unsubscribe(self) -> None:
        if self._replay is not None:
            replay, self._replay = self._replay, None
            replay.cancel()
            self.dropHeldEvents()
            self._replayOver()
        if self._eventSink is not None:
            self.state.events.lines.remove(self._eventSink)
            self._eventSink = None
        self._eventFilter = None

    # logs --follow
    def startFollowing(self, name: str, follow: LogFollow) -> None:
        """
        A follow the backend has set up: keep it, and end it with a
        C{log_end} when the backend says it is over.
        """
        if self.closed or name not in self.followedNames:
            # The client went away, or unfollowed, while it was set up.
            follow.cancel()
            return
        self.followHandles[name] = follow

        def ended(_: object) -> None:
            if self.followHandles.get(name) is follow:
                self.endFollowing(name)

        # Hooked after the reply, so that a follow that is over at once
        # (the container is not running) sends its log_end after the OK.
        self.callAfterReply(lambda: follow.ended.addBoth(ended))

    def endFollowing(self, name: str) -> None:
        """Stop following C{name}: no more of its lines, then C{log_end}."""
        self.followedNames.discard(name)
        follow = self.followHandles.pop(name, None)
        if follow is not None:
            follow.cancel()
        if not self.closed:
            self.sendEvent({"type": "log_end", "name": name})

    def sendLogLine(self, name: str, line: LogLine) -> None:
        if name not in self.followedNames or self.closed:
            return
        self.sendEvent({"type": "log", "name": name, **line.toJSON()})

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
        self.followedNames.clear()
        for follow in list(self.followHandles.values()):
            follow.cancel()
        self.followHandles.clear()
        # Let go of the protocol: with no cycle left, the connection's
        # memory is freed now, not at the next full garbage collection.
        self.sendEvent = self.sendEventLine = self.replayEvent = _ignore
        self.callAfterReply = self.close = _ignore
        self.holdEventLine = self.releaseHeldEvents = self.dropHeldEvents = _ignore
        self.whenWritable = self.dropSubscriber = _ignore


def _ignore(*args: Any, **kwargs: Any) -> None:
    """What a closed session's ways back to its client became."""
