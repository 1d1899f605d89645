"""
What the connections get when the daemon stops (SIGTERM): each with a
request in flight or waiting gets C{ERR unavailable the daemon is shutting
down}, and every one is closed cleanly (its sending side shut, what the
client still sends read and dropped, so that the close is a FIN, never a
reset), before the reactor's shutdown drops whatever is left.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.interfaces import IReactorTime

#: The reason of the C{ERR unavailable} a request in flight gets when the
#: daemon stops (the words of the supervising backends' own refusal).
STOPPING_ERROR = "the daemon is shutting down"

#: Seconds the connections have to take their last line and close when the
#: daemon stops, before the reactor's shutdown drops them.
STOPPING_GRACE = 2.0


class StoppingConnection(Protocol):
    """A connection the daemon lets go of when it stops."""

    def daemonStopping(self, grace: float) -> Deferred[None]:
        """
        Tell a request in flight or waiting that the daemon stops, and
        close cleanly; the Deferred fires once the connection is gone.
        """


def closeConnections(
    connections: Iterable[StoppingConnection], clock: IReactorTime, grace: float = STOPPING_GRACE
) -> Deferred[Any]:
    """
    Let go of every connection (L{StoppingConnection.daemonStopping}); the
    Deferred fires once each is gone, or soon after C{grace} seconds.
    """
    gone = DeferredList([connection.daemonStopping(grace) for connection in list(connections)])
    done: Deferred[Any] = Deferred()
    # Half a second more than the connections have: one closed at the end
    # of its grace goes out before the reactor drops what is left.
    timer = clock.callLater(grace + 0.5, lambda: allGone(None))

    def allGone(_: object) -> None:
        if not done.called:
            if timer.active():
                timer.cancel()
            done.callback(None)

    gone.addCallback(allGone)
    return done
