"""
Recovery when a supervisor opens: the saved records are loaded (a damaged
one is quarantined), and whatever a dead daemon left running is settled:
the runs of records it left alive (reclaimed, or found lost), the last
runs of quarantined records (salvaged), and runs it was starting.
"""

from __future__ import annotations

import signal
from typing import Any

import attrs
from twisted.internet.defer import Deferred, gatherResults, maybeDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from pycm.backends.supervisor.lifecycle import Event, Lifecycle
from pycm.backends.supervisor.records import Record, RecordBook
from pycm.backends.supervisor.remains import Remains, quarantineName, salvage
from pycm.errors import BackendError
from pycm.interfaces import IRecordStore, IRuntime, IRuntimeSweep
from pycm.model import Container, State
from pycm.units import MAX_STOP_TIMEOUT

#: C{error} of a run a dead daemon left behind, that L{Recovery} stopped.
RECLAIMED_ERROR = "daemon restarted; the process was stopped"
#: C{error} of a run a dead daemon left behind, that was already gone.
LOST_ERROR = "lost: the daemon died and the process was gone"
#: C{error} of a container whose start a dead daemon left unfinished.
STARTING_ERROR = "the daemon died while starting it; what it had started was stopped"


class Recovery:
    """
    Loads the records into C{book} and settles what a dead daemon left.

    @param clock: the time source.
    @param backendName: the C{backend} of the records.
    @param runtime: reclaims and sweeps runs.
    @param store: where the records are kept.
    @param book: where the loaded records go.
    @param lifecycle: moves the records left alive.
    @param stopLimit: the longest a run a dead daemon left is given for its
        stop signal before SIGKILL (its own stop timeout if shorter): the
        daemon does not listen until they are settled.
    """

    _log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        backendName: str,
        runtime: IRuntime,
        store: IRecordStore,
        book: RecordBook,
        lifecycle: Lifecycle,
        stopLimit: float = MAX_STOP_TIMEOUT,
    ) -> None:
        self._stopLimit = stopLimit
        self._clock = clock
        self._backendName = backendName
        self._runtime = runtime
        self._store = store
        self._book = book
        self._lifecycle = lifecycle

    async def recover(self) -> None:
        """Load the records, then settle every run a dead daemon left."""
        self._load()
        records = self._book.byName
        remains = [self._notServed(salvage(name, raw)) for name, raw in self._store.remains()]
        leftovers = [
            r for r in records.values() if r.state in State.ALIVE or r.state == State.RESTARTING
        ]
        await gatherResults(
            [Deferred.fromCoroutine(self._reconcile(r)) for r in leftovers]
            + [Deferred.fromCoroutine(self._stopRemains(r)) for r in remains],
            consumeErrors=True,
        )
        await self._sweep(remains)

    def _load(self) -> None:
        owners: dict[str, str] = {}
        for data in self._store.load():
            try:
                record = Record.fromDict(data)
                owner = owners.setdefault(record.id, record.name)
                if owner != record.name:
                    raise BackendError(
                        f"corrupt container record: field 'id' is also the id of {owner!r}"
                    )
            except BackendError as e:
                # One damaged record must not keep the others from being
                # served: it is put aside, named in the log and by info.
                self._putAside(data, str(e))
                continue
            record.backend = self._backendName
            self._book.byName[record.name] = record

    def _putAside(self, data: dict[str, Any], reason: str) -> None:
        """
        Quarantine the damaged record C{data} by its name.  (One with no
        name the store has put aside itself, by its key: see
        L{pycm.store.nameProblem}; L{quarantineName} never names another.)
        """
        self._store.quarantine(quarantineName(data), reason)

    def _notServed(self, remains: Remains) -> Remains:
        """
        C{remains} without what identifies a record that is served (a
        quarantined copy of one, e.g. with the same id): its run is the
        served record's, and is not stopped for the copy.
        """
        served = self._book.byName.values()
        if remains.id is not None and any(r.id == remains.id for r in served):
            remains = attrs.evolve(remains, id=None)
        if remains.runId is not None and any(r.runId == remains.runId for r in served):
            remains = attrs.evolve(remains, runId=None)
        if remains.pid is not None and any(r.pid == remains.pid for r in served):
            remains = attrs.evolve(remains, pid=None, startTime=None)
        return remains

    async def _reconcile(self, record: Record) -> None:
        """Settle a record that a dead daemon left alive or restarting."""
        # Loaded just now, it has no client stop waiting (stopRequested).
        if record.state == State.RESTARTING:
            self._lifecycle.dropRestart(record, byClient=False)
            return
        self._lifecycle.interrupt(record)
        try:
            stopped = await maybeDeferred(
                self._runtime.reclaim,
                self._bounded(record.toContainer()),
                record.pid,
                record.startTime,
            )
            error = RECLAIMED_ERROR if stopped else LOST_ERROR
        except Exception as e:
            self._log.failure("reclaiming {name}", name=record.name)
            stopped, error = False, f"{LOST_ERROR} (reclaim failed: {e})"
        # The signal it is known to have ended by (SIGKILL), as pycm shows
        # a signalled exit; after its stop signal, how it ended is unknown.
        signalled = stopped if type(stopped) is int and stopped > 0 else None
        if signalled is not None:
            error = f"{RECLAIMED_ERROR} by {signal.Signals(signalled).name} after its stop timeout"
        record.error = error
        record.pid = None
        record.startTime = None
        record.exitCode = -signalled if signalled is not None else None
        record.finished = self._clock.seconds()
        self._lifecycle.move(record, Event.RECLAIMED if stopped else Event.LOST)

    def _bounded(self, container: Container) -> Container:
        """C{container} with a stop timeout of at most the stop limit."""
        limit = max(min(self._stopLimit, MAX_STOP_TIMEOUT), 0.0)
        if container.stopTimeout <= limit:
            return container
        return attrs.evolve(container, stopTimeout=limit)

    def _remainsContainer(self, remains: Remains) -> Container:
        """A container standing for a quarantined record's last run."""
        return Container(
            name=remains.name,
            id=remains.id or "",
            backend=self._backendName,
            image=self._runtime.defaultImage,
            command=(),
            state=State.RUNNING,
            created=0.0,
            pid=remains.pid,
            stopTimeout=remains.stopTimeout,
            stopSignal=remains.stopSignal,
        )

    async def _stopRemains(self, remains: Remains) -> None:
        """
        Stop the last run of a quarantined record, as far as what could be
        read of it identifies it: its process (a pid with its start time)
        and its group (the container id).  Its run marker, or its name when
        no run id could be read, is L{_sweep}'s.
        """
        if not remains.traceable and remains.pid is None:
            return
        try:
            stopped = await maybeDeferred(
                self._runtime.reclaim,
                self._bounded(self._remainsContainer(remains)),
                remains.pid,
                remains.startTime,
            )
        except Exception:
            self._log.failure("stopping what the quarantined {name!r} left", name=remains.name)
            return
        if stopped:
            self._log.warn(
                "stopped the process of the quarantined record of {name!r} (pid {pid}),"
                " left running by a previous daemon",
                name=remains.name,
                pid=remains.pid,
            )

    async def _sweep(self, remains: list[Remains]) -> None:
        """
        Stop whatever is left of any run of any record (one look at the
        system for all of them): processes that escaped a run's group, runs
        a dead daemon was starting (saved with their run id, never saved as
        running), and the last runs of records put aside (C{remains}): by
        their run ids, or by their names where none could be read.
        """
        records = self._book.byName
        runs = {r.runId: r.toContainer() for r in records.values() if r.runId}
        runs.update((r.runId, self._remainsContainer(r)) for r in remains if r.runId)
        try:
            found: list[str] = []
            if IRuntimeSweep.providedBy(self._runtime):
                sweep = IRuntimeSweep(self._runtime).sweep
                strays = {r.name for r in remains if r.runId is None}
                found = await (
                    maybeDeferred(sweep, runs, strays) if strays else maybeDeferred(sweep, runs)
                )
        except Exception:
            self._log.failure("looking for processes left by a previous daemon")
            return
        for runId in found or ():
            record = next((r for r in records.values() if r.runId == runId), None)
            if record is None or record.state != State.CREATED:
                continue
            record.error = STARTING_ERROR
            self._lifecycle.interrupt(record)
            self._book.saveChange(record)
