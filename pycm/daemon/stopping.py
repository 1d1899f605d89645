"""
What the connections get when the daemon stops (SIGTERM), in three steps
(L{pycm.daemon.service.PycmService.stopService} takes them):

 1. L{refuseRequests}: no request starts any more; each one not yet
    started (read and waiting, or sent from now on) gets C{ERR unavailable
    the daemon is shutting down}.  The requests in flight go on.
 2. The backend stops its containers (L{closeBackendWithin}, bounded):
    meanwhile subscribers get the events of the shutdown (C{kill},
    C{die}...) as they happen, and the requests in flight (C{stop},
    C{wait}...) their own replies as the backend settles them.
 3. L{closeConnections}: a request still in flight (C{logs -f}, C{wait
    --for=healthy}) gets C{ERR unavailable the daemon is shutting down},
    streams end, and every connection is closed cleanly (its sending side
    shut, what the client still sends read and dropped, so that the close
    is a FIN, never a reset), before the reactor's shutdown drops whatever
    is left.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol

from twisted.internet.defer import Deferred, DeferredList, maybeDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

#: The reason of the C{ERR unavailable} a request gets when the daemon
#: stops (the words of the supervising backends' own refusal).
STOPPING_ERROR = "the daemon is shutting down"

#: Seconds the connections have to take their last line and close when the
#: daemon stops, before the reactor's shutdown drops them.
STOPPING_GRACE = 2.0

#: Seconds a backend's close is given when it does not say how long it
#: gives its containers (L{closeBackendWithin}); the supervising backends'
#: own default C{shutdown-timeout}.
DEFAULT_BACKEND_SHUTDOWN = 30.0

#: Seconds a backend's close is given beyond its shutdown timeout: the
#: supervisor's wait for runs it sent SIGKILL to (5 s), and saving.
BACKEND_CLOSE_MARGIN = 10.0

#: Reactor turns let pass after the backend has closed, before the
#: connections are let go of: one for the calls due when it closed (a
#: group commit's flush), and one after them, for what they scheduled.
SETTLE_TURNS = 2


class StoppingConnection(Protocol):
    """A connection the daemon lets go of when it stops."""

    def refuseRequests(self) -> None:
        """
        Start no request any more: each one not yet started gets C{ERR
        unavailable}; the one in flight and events go on.
        """

    def daemonStopping(self, grace: float) -> Deferred[None]:
        """
        Tell a request in flight or waiting that the daemon stops, and
        close cleanly; the Deferred fires once the connection is gone.
        """


def refuseRequests(connections: Iterable[StoppingConnection]) -> None:
    """Step 1: no connection starts a request any more."""
    for connection in list(connections):
        connection.refuseRequests()


def backendCloseBound(backend: object) -> float:
    """
    The longest the daemon waits for C{backend}'s close: its own shutdown
    timeout (the supervising backends' C{shutdownTimeout}, the process
    backend's C{shutdown-timeout} option), or L{DEFAULT_BACKEND_SHUTDOWN}
    for one that has none, plus L{BACKEND_CLOSE_MARGIN}.
    """
    timeout = getattr(backend, "shutdownTimeout", None)
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout < 0:
        timeout = DEFAULT_BACKEND_SHUTDOWN
    return float(timeout) + BACKEND_CLOSE_MARGIN


def closeBackendWithin(
    close: Callable[[], Any],
    clock: IReactorTime,
    bound: float,
    failed: Callable[[Failure], None],
    late: Callable[[], None],
) -> Deferred[None]:
    """
    Step 2: call C{close} (the backend's); the Deferred fires once it is
    done, or after C{bound} seconds whatever it does (C{late} is called
    then), so that a backend whose close hangs never keeps the connections
    open, nor the daemon running.  A close that fails is given to
    C{failed}; the Deferred never errbacks.
    """
    done: Deferred[None] = Deferred()

    def tooLate() -> None:
        if not done.called:
            late()
            done.callback(None)

    timer = clock.callLater(bound, tooLate)

    def closed(result: object) -> None:
        if isinstance(result, Failure):
            failed(result)
        if timer.active():
            timer.cancel()
        # What the close settled may reply a little after it fires (a wait
        # woken after the stop that closed, a reply held until the records
        # are written at the end of the turn): let SETTLE_TURNS turns pass.
        afterTurns(clock, SETTLE_TURNS, settled)

    def settled() -> None:
        if not done.called:
            done.callback(None)

    maybeDeferred(close).addBoth(closed)
    return done




def afterTurns(clock: IReactorTime, turns: int, call: Callable[[], None]) -> None:
    """Call C{call} once C{turns} reactor turns have passed."""
    if turns <= 0:
        call()
        return
    clock.callLater(0, afterTurns, clock, turns - 1, call)


def closeConnections(
    connections: Iterable[StoppingConnection], clock: IReactorTime, grace: float = STOPPING_GRACE
) -> Deferred[Any]:
    """
    Step 3: let go of every connection
    (L{StoppingConnection.daemonStopping}); the Deferred fires once each
    is gone, or soon after C{grace} seconds.
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
