"""
The daemon's cap on open connections (L{ConnectionLimit}), shared by its
listeners: who counts, who makes room for a newcomer at the cap, and the
refusal a newcomer gets when nobody can (L{Refusal}).
"""

from __future__ import annotations

from typing import Any
from typing import Protocol as TypingProtocol

from twisted.internet.protocol import Protocol
from twisted.logger import Logger

from pycm.daemon.connectionlog import ConnectionLog
from pycm.daemon.replies import encodeError
from pycm.daemon.session import DaemonState
from pycm.errors import Unavailable


class WaitingConnection(TypingProtocol):
    """What the limit asks of a connection that waits for its C{auth}."""

    def makeRoom(self, maximum: int) -> None:
        """Say why and close, to make room for a newer connection."""


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

    def __init__(self, state: DaemonState, maximum: int | None = None) -> None:
        self._state = state
        self.maximum = maximum
        self.connectionLog = ConnectionLog(state.clock)
        #: Connections refused in this episode (0: none is going on).
        self.refused = 0
        self._lastRefusal = 0.0
        #: Capped connections not authenticated yet, by peer, oldest first.
        self._waiting: dict[str, dict[WaitingConnection, int]] = {}
        #: The peer of each of them (L{pycm.daemon.peers.peerGroup}).
        self._peers: dict[WaitingConnection, str] = {}
        self._arrivals = 0
        #: Connections closed to make room that are not gone yet.
        self._leaving: set[WaitingConnection] = set()

    def waiting(self, protocol: WaitingConnection, peer: str) -> None:
        """A connection on a capped listener from C{peer} waits for its C{auth}."""
        self._arrivals += 1
        self._peers[protocol] = peer
        self._waiting.setdefault(peer, {})[protocol] = self._arrivals

    def settled(self, protocol: WaitingConnection) -> None:
        """A waiting connection authenticated (or closed): it no longer waits."""
        peer = self._peers.pop(protocol, None)
        if peer is None:
            return
        group = self._waiting[peer]
        del group[protocol]
        if not group:
            del self._waiting[peer]

    def admit(self) -> bool:
        """
        May one more connection be served?  At the cap, yes if the oldest
        connection waiting for its C{auth} can make room.
        """
        if self.maximum is None or self._state.connections - len(self._leaving) < self.maximum:
            return True
        # Those leaving still hold a descriptor each: at most a cap's worth.
        oldest = self._displaceable() if len(self._leaving) < self.maximum else None
        if oldest is not None:
            self.settled(oldest)
            self._leaving.add(oldest)
            oldest.makeRoom(self.maximum)
            return True
        now = self._state.clock.seconds()
        if self.refused and now - self._lastRefusal >= self.QUIET:
            self._endEpisode()
        if not self.refused:
            self.log.warn(
                "{count} connections open, the most allowed (--max-connections), "
                "all of them authenticated or needing no token: refusing new ones",
                count=self._state.connections,
            )
        self.refused += 1
        self._lastRefusal = now
        return False

    def _displaceable(self) -> WaitingConnection | None:
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

    def opened(self) -> None:
        """A connection is served: it counts from now on."""
        self._state.connections += 1

    def released(self, protocol: WaitingConnection) -> None:
        """A connection closed: end an episode of refusals if it is over."""
        self._state.connections -= 1
        self.settled(protocol)
        self._leaving.discard(protocol)
        if not self.refused or self.maximum is None:
            return
        connections = self._state.connections
        if connections >= self.maximum:
            return
        quiet = self._state.clock.seconds() - self._lastRefusal >= self.QUIET
        if quiet or connections < self.maximum * self.LOW_WATER:
            self._endEpisode()

    def _endEpisode(self) -> None:
        self.log.info(
            "accepting connections again ({refused} refused while full)",
            refused=self.refused,
        )
        self.refused = 0


class Refusal(Protocol):
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
