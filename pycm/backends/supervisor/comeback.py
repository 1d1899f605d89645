"""
The containers that come back when the daemon opens (L{Comeback}): the
first L{BATCH} are started before the daemon answers, the others are
C{restarting} until their batch's turn, and the daemon answers meanwhile.

With 2,000 C{always} containers, starting them all before answering held
every request for 6-7 s, and starting them in one reactor turn held the
signals and the watchdog as long.  A batch's records are saved in one
commit and spawned in one turn; the next batch waits for them to run.

A container waiting for its batch is C{restarting}, as one waiting for its
restart policy's delay, and a client acts on it the same way: C{start}
starts it now, C{stop} leaves it stopped (and the policy off), C{rm} needs
C{--force}; its batch then leaves it alone.  The daemon's shutdown drops
the waiting ones as interrupted: the next open brings them back.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from pycm.backends.supervisor.lifecycle import Event, Lifecycle
from pycm.backends.supervisor.records import Record, RecordBook, scrubbed
from pycm.backends.supervisor.restartpolicy import comesBackAtOpen
from pycm.backends.supervisor.runs import Runs
from pycm.model import Container, State

#: Containers started together when the daemon opens: the first batch
#: before it answers, each other one after the one before runs.
BATCH = 25


class Comeback:
    """Starts again, at open, what the restart policies bring back."""

    _log = Logger()

    def __init__(self, book: RecordBook, runs: Runs, lifecycle: Lifecycle) -> None:
        self._book = book
        self._runs = runs
        self._lifecycle = lifecycle
        self._queued: list[Record] = []
        #: Fires once every batch after the first was started (or skipped).
        self.done: Deferred[None] = succeed(None)

    def bringFirst(self) -> Deferred[None]:
        """
        Start the first L{BATCH} of what comes back and mark the others
        C{restarting}; fires once the first batch runs (a start that
        failed is logged).
        """
        back = [r for r in self._book.byName.values() if comesBackAtOpen(r)]
        first, self._queued = back[:BATCH], back[BATCH:]
        for record in self._queued:
            self._lifecycle.move(record, Event.QUEUED_AT_OPEN)
        return self._batch(first, self._bringBack)

    def bringRest(self) -> None:
        """Start the others, a batch at a time, from now on (L{done})."""
        queued, self._queued = self._queued, []
        self.done = Deferred.fromCoroutine(self._inBatches(queued)).addErrback(
            lambda f: self._log.failure("bringing the containers back", f)
        )

    async def _inBatches(self, queued: list[Record]) -> None:
        for start in range(0, len(queued), BATCH):
            if self._runs.closing:
                return
            await self._batch(queued[start : start + BATCH], self._bringBackQueued)

    def _batch(
        self, records: list[Record], bringBack: Callable[[Record], Deferred[Container | None]]
    ) -> Deferred[None]:
        started = [record.lock.run(bringBack, record) for record in records]
        return gatherResults(started, consumeErrors=True).addCallback(lambda _: None)

    def _bringBackQueued(self, record: Record) -> Deferred[Container | None]:
        """
        Start C{record}, still waiting for its batch: unless a client
        started, stopped or removed it meanwhile (or its own policy
        restarts it after a crash of the run a client started).
        """
        waiting = (
            self._book.byName.get(record.name) is record
            and record.state == State.RESTARTING
            and record.pendingRestart is None
        )
        return self._bringBack(record) if waiting else succeed(None)

    def _bringBack(self, record: Record) -> Deferred[Container | None]:
        if self._runs.closing:
            return succeed(None)
        self._lifecycle.startAsked(record)
        d = self._runs.spawn(record, auto=False)

        def failed(f: Failure) -> None:
            self._log.warn(
                "could not bring back {name}: {error}",
                name=record.name,
                error=scrubbed(record, str(f.value)),
            )

        return d.addErrback(failed)
