"""
Writes that wait for the disk: what could not be written (a full disk) is
tried again every L{RETRY_INTERVAL} seconds until it is.  One L{Retry}
serves the container records (L{pycm.backends.supervisor.recordwriter})
and the event log (L{pycm.daemon.eventlog}).
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime

#: Seconds between two tries at writing what waits.
RETRY_INTERVAL = 1.0


class Retry:
    """
    Calls C{flush} again L{RETRY_INTERVAL} seconds after L{schedule}, once
    however many times it is scheduled meanwhile.

    @param clock: schedules the tries (None: never; only the owner's own
        next write tries again).
    @param flush: writes what waits; True once nothing does.
    """

    def __init__(self, clock: IReactorTime | None, flush: Callable[[], bool]) -> None:
        self._clock = clock
        self._flush = flush
        self._call: IDelayedCall | None = None

    def schedule(self) -> None:
        """Try again in L{RETRY_INTERVAL} seconds, unless a try is due."""
        if self._clock is not None and (self._call is None or not self._call.active()):
            self._call = self._clock.callLater(RETRY_INTERVAL, self._tryAgain)

    def _tryAgain(self) -> None:
        self._call = None
        self._flush()

    def cancel(self) -> None:
        """No more tries (until the next L{schedule})."""
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def lastTry(self) -> bool:
        """Stop trying, after a last try; True if nothing waits any more."""
        self.cancel()
        written = self._flush()
        self.cancel()
        return written
