"""
Clients that closed while their request is in flight: the daemon does not
read a connection then (its next lines wait their turn), so no read tells
it; a look every L{GONE_CHECK_SECONDS} at each such connection does
(L{pycm.daemon.ordering.RequestOrdering.closeIfGone}).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

log = Logger()

#: How often the connections with a request in flight are looked at.
GONE_CHECK_SECONDS = 0.5


def closeGoneClients(connections: Iterable[Any]) -> None:
    """Close each of C{connections} whose client went while its request is in flight."""
    for connection in list(connections):
        try:
            connection.closeIfGone()
        except Exception:
            log.failure("could not look whether a client went")


def watchGoneClients(clock: IReactorTime, connections: Iterable[Any]) -> LoopingCall:
    """Start looking at C{connections} (L{closeGoneClients}); stop the call returned to stop."""
    watch = LoopingCall(closeGoneClients, connections)
    watch.clock = clock
    watch.start(GONE_CHECK_SECONDS, now=False)
    return watch
