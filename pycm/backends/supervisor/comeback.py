"""
The containers that come back when the daemon opens (L{Comeback}): the
first L{BATCH} are started before the daemon answers, the others are
C{restarting} until their batch's turn, and the daemon answers meanwhile.

With 2,000 C{always} containers, starting them all before answering held
every request for 3.5 s on a quiet machine (9 s under load), and starting
them in one reactor turn held the signals and the watchdog as long.  A
batch's records are saved in one commit and spawned in one turn; the next
batch waits for them to run (not for one whose lock a client's request
holds: that one is brought back, or left, once the request is done).

A container waiting for its batch is C{restarting}, as one waiting for its
restart policy's delay, and a client acts on it the same way: C{start}
starts it now, C{stop} leaves it C{exited} (the policy off until a start),
C{rm} needs C{--force}, C{kill} is refused (not running); its batch then
leaves it alone.  A request that comes while its batch is starting it
waits for that start, as for any start in flight.  The daemon's shutdown
drops the waiting ones as interrupted: the next open brings them back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from pycm.backends.supervisor.lifecycle import Event, Lifecycle
from pycm.backends.supervisor.records import Record, RecordBook, scrubbed
from pycm.backends.supervisor.restartpolicy import comesBackAtOpen
from pycm.backends.supervisor.runs import Runs
from pycm.model import State

#: Containers started together when the daemon opens: the first batch
#: before it answers, each other one after the one before runs.  A
#: request waits for the batch in hand: with 2,000 to bring back, a
#: C{ping} took 35 ms (median) with batches of 25, 14 ms with 10, 10 ms
#: with 5, and all ran after 3.8, 4.0 and 4.3 s (C{benchmarks/reopen.py}).
BATCH = 10


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
        failed is logged).  Nothing, if the daemon is stopping already.
        """
        if self._runs.closing:
            return succeed(None)
        back = [r for r in self._book.byName.values() if comesBackAtOpen(r)]
        first, self._queued = back[:BATCH], back[BATCH:]
        for record in self._queued:
            self._lifecycle.move(record, Event.QUEUED_AT_OPEN)
        return self._batch(first, self._bringBack)

    def bringRest(self) -> None:
        """Start the others, a batch at a time, from now on (L{done})."""
        queued, self._queued = self._queued, []
        self.done = Deferred.fromCoroutine(self._inBatches(queued))

    async def _inBatches(self, queued: list[Record]) -> None:
        for start in range(0, len(queued), BATCH):
            if self._runs.closing:
                return
            await self._batch(queued[start : start + BATCH], self._bringBackQueued)

    def _batch(
        self, records: list[Record], bringBack: Callable[[Record], Deferred[Any]]
    ) -> Deferred[None]:
        """
        Bring C{records} back, each under its lock; fires once those whose
        lock was free have started (or failed: logged).  One whose lock a
        client's request holds (a stop that may wait an hour) is brought
        back, or left, once that request is done: no batch waits for it.
        """
        started = []
        for record in records:
            free = not record.lock.locked
            d = record.lock.run(bringBack, record).addErrback(self._failed, record)
            if free:
                started.append(d)
        return gatherResults(started).addCallback(lambda _: None)

    def _bringBackQueued(self, record: Record) -> Deferred[Any]:
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

    def _bringBack(self, record: Record) -> Deferred[Any]:
        if self._runs.closing:
            return succeed(None)
        self._lifecycle.startAsked(record)
        return self._runs.spawn(record, auto=False)

    def _failed(self, failure: Failure, record: Record) -> None:
        self._log.warn(
            "could not bring back {name}: {error}",
            name=record.name,
            error=scrubbed(record, str(failure.value)),
        )
