"""
The lifecycle engine shared by the supervising backends (memory, process):
L{Supervisor} provides L{IContainerBackend} on an L{IRuntime} (starts runs),
an L{ILogStore} (keeps output) and an L{IRecordStore} (keeps records).  The
rules it keeps (saving before announcing, order, events, restart policies,
daemon restarts, log following) are in docs/supervisor.md.
"""

from __future__ import annotations

import builtins
import signal as _signal
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import attrs
from twisted.internet.defer import Deferred, fail, maybeDeferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from pycm.backends.supervisor.announcer import Announcer
from pycm.backends.supervisor.comeback import Comeback
from pycm.backends.supervisor.healthmonitor import HealthChecks
from pycm.backends.supervisor.lifecycle import Event, Lifecycle
from pycm.backends.supervisor.logreads import LogReads
from pycm.backends.supervisor.records import Record, RecordBook, newRecord, specRefusals
from pycm.backends.supervisor.recovery import LOST_ERROR as LOST_ERROR
from pycm.backends.supervisor.recovery import RECLAIMED_ERROR as RECLAIMED_ERROR
from pycm.backends.supervisor.recovery import STARTING_ERROR as STARTING_ERROR
from pycm.backends.supervisor.recovery import Recovery
from pycm.backends.supervisor.removal import Removal
from pycm.backends.supervisor.runobserver import RunObserver
from pycm.backends.supervisor.runs import CLOSING_ERROR, SHUTDOWN_TIMEOUT, Runs
from pycm.backends.supervisor.runs import SHUTDOWN_ERROR as SHUTDOWN_ERROR
from pycm.backends.supervisor.usage import readStats
from pycm.backends.supervisor.watching import endFollowers, waitFor, waitForHealth
from pycm.capabilities import HEALTH_OPTIONS, Capabilities, ISpecCheck
from pycm.errors import BadRequest, Conflict, NotFound, PycmError, Unavailable
from pycm.groupcommit import GroupCommit
from pycm.health import OnFailure
from pycm.interfaces import (
    IContainerBackend,
    ICreateAndStart,
    IJournaledEvents,
    ILogStore,
    IRecordStore,
    IRuntime,
)
from pycm.model import Action, Container, ContainerSpec, LogFollow, LogLine, State, WaitCondition
from pycm.slicedwork import SlicedWork
from pycm.stats import ContainerStats, CpuSampler


def defaultIdFactory() -> str:
    """A fresh container id: 32 hex digits."""
    return uuid.uuid4().hex


@implementer(IContainerBackend, ICreateAndStart, IJournaledEvents, ISpecCheck)
class Supervisor:
    """
    A backend that supervises runs itself: see the module docstring.

    @param clock: the time source, and where timers are scheduled.
    @param backendName: the name reported in C{backend} fields and C{info}.
    @param runtime: starts runs.
    @param logStore: keeps output.
    @param recordStore: keeps records durably.
    @param idFactory: makes container ids.
    @param commits: the group commit of the record writes (default: an
        immediate one: each write is done when it is asked for).
    @param shutdownTimeout: the longest a container's stop signal is given
        before SIGKILL at the daemon's shutdown, and for the runs a dead
        daemon left at open (L{SHUTDOWN_TIMEOUT}).
    @ivar commits: what waits for the writes to be durable goes through it
        (replies, events); the daemon's event log joins it.
    @ivar lifecycle: moves the records through the lifecycle table (watch
        it to see every move).
    """

    _log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        backendName: str,
        runtime: IRuntime,
        logStore: ILogStore,
        recordStore: IRecordStore,
        idFactory: Callable[[], str] = defaultIdFactory,
        commits: GroupCommit | None = None,
        shutdownTimeout: float = SHUTDOWN_TIMEOUT,
    ) -> None:
        self._clock = clock
        self.shutdownTimeout = shutdownTimeout
        self.name = backendName
        self._runtime = runtime
        self._logStore = logStore
        self._logReads = LogReads(clock, logStore)
        self._recordStore = recordStore
        self._idFactory = idFactory
        self._book = RecordBook(clock, recordStore, commits)
        self.commits = self._book.commits
        #: Names of containers being created, until their record is saved.
        self._creating: set[str] = set()
        #: The records by name (the book's).
        self._records = self._book.byName
        self._announcer = Announcer(clock, self.commits)
        self.addObserver = self._announcer.addObserver
        #: See L{Announcer.addJournalObserver}: for observers sharing L{commits}.
        self.addJournalObserver = self._announcer.addJournalObserver
        self.removeObserver = self._announcer.removeObserver
        self.lifecycle = Lifecycle(self._book.saveChange, self._emit)
        self._health = HealthChecks(clock, runtime, self._emitHealth, self._healthFailed)
        self._runs = Runs(
            clock, runtime, logStore, self._book, self.lifecycle, self._emit, self._health
        )
        self._comeback = Comeback(self._book, self._runs, self.lifecycle)
        self._removal = Removal(self._book, self._runs, self.lifecycle, self._health, logStore)
        self._recovery = Recovery(
            clock, backendName, runtime, recordStore, self._book, self.lifecycle,
            stopLimit=shutdownTimeout,
        )
        self._cpu = CpuSampler(clock)
        self._statsSlices = SlicedWork(clock)  # the usage of many, between requests

    @property
    def capabilities(self) -> Capabilities:
        """The runtime's; without health checks if it cannot run them."""
        capabilities = self._runtime.capabilities
        if self._health.available:
            return capabilities
        return attrs.evolve(capabilities, options=capabilities.options - HEALTH_OPTIONS)

    @property
    def defaultImage(self) -> str:
        return self._runtime.defaultImage

    @property
    def quarantined(self) -> list[dict[str, str]]:
        """The damaged records put aside when the backend opened."""
        return self._recordStore.quarantined()

    @property
    def _closing(self) -> bool:
        return self._runs.closing

    # -- open / close -------------------------------------------------------

    def open(self) -> Deferred[None]:
        d = Deferred.fromCoroutine(self._recovery.recover())
        d.addCallback(lambda _: self._comeback.bringFirst())
        d.addCallback(self.commits.whenDurable)
        return d.addCallback(lambda _: self._comeback.bringRest())

    def close(self) -> Deferred[None]:
        # New starts are refused from here on; starts in flight are let
        # finish, so that what they started is stopped below.
        self._runs.closing = True
        return self._runs.idle().addCallback(self._stopAll)

    def _stopAll(self, _: object) -> Deferred[None]:
        # Every container is stopped and saved before close fires (and the
        # stores can be closed), within the shutdown's bound (L{Runs.shutdown}).
        records = list(self._records.values())
        return self._runs.shutdown(records, self.shutdownTimeout).addCallback(self._closed)

    def _closed(self, _: object) -> None:
        for record in self._records.values():
            self._health.end(record)
            endFollowers(record)
        self._logReads.stop()
        self._statsSlices.stop()
        self._book.close()

    # -- observers ----------------------------------------------------------


    def _emit(
        self, action: str, record: Record, exitCode: int | None = None, status: str | None = None
    ) -> None:
        oomKilled = (action == Action.DIE and record.oomKilled) or None  # die: OOM killer hit
        self._announcer.emit(action, record.name, exitCode, status, oomKilled)

    def _emitHealth(self, record: Record, status: str) -> None:
        self._emit(Action.HEALTH_STATUS, record, status=status)

    def _healthFailed(self, record: Record, onFailure: str) -> Deferred[Any]:
        """
        C{record} turned unhealthy: C{--health-on-failure} acts.  C{stop}
        is a client's stop (the restart policy holds off until a start);
        C{kill} is SIGKILL as from outside (the restart policy applies to
        the exit); C{restart} stops it (its stop signal, then SIGKILL) and
        its exit is restarted whatever the policy.  Either restart waits
        the policy's backoff for a failed check (a check that always
        fails is a crash loop) and is counted in C{restart_count}.
        """
        if onFailure == OnFailure.STOP:
            return self.stop(record.name, None)
        if onFailure == OnFailure.KILL:
            record.healthKilled = record.run is not None
            self._emit(Action.KILL, record)
            self._runs.signal(record, _signal.SIGKILL)
            return succeed(None)
        return record.lock.run(self._restartUnhealthy, record)

    def _restartUnhealthy(self, record: Record) -> Deferred[Container] | None:
        if self._closing or self._records.get(record.name) is not record:
            return None
        if record.state != State.RUNNING:
            return None
        record.healthRestart = True
        return self._runs.terminate(record, None)

    # -- operations ---------------------------------------------------------

    def create(self, spec: ContainerSpec) -> Deferred[Container]:
        return maybeDeferred(self._create, spec, False)

    def refusals(self, spec: ContainerSpec) -> dict[str, str]:
        """See L{ISpecCheck.refusals}: the image, the stop timeout."""
        return specRefusals(spec, self._runtime)

    def createAndStart(self, spec: ContainerSpec) -> Deferred[Container]:
        """
        C{create} then C{start} (C{run}) in two durable writes: the new
        record with its first run's id (then the run is spawned), then the
        running record with both events.  As the two: a failed start leaves
        the container (C{dead}), and fails.
        """
        return maybeDeferred(self._create, spec, True)

    def _create(self, spec: ContainerSpec, start: bool) -> Deferred[Container]:
        if self._closing:
            raise Unavailable(CLOSING_ERROR)
        if spec.name in self._records or spec.name in self._creating:
            raise Conflict(f'container name "{spec.name}" is already in use')
        self.capabilities.refuseUnsupported(self.name, spec)
        record = newRecord(
            spec, self._idFactory(), self.name, self._runtime, self._clock.seconds()
        )
        # Its first run's id goes with its first write.
        observer = self._runs.prepare(record) if start else None
        self._creating.add(record.name)

        def saved(_: object) -> Deferred[Container]:
            self._records[record.name] = record
            self._emit(Action.CREATE, record)
            if observer is not None:
                d = record.lock.run(self._startCreated, record, observer)
                return d.addBoth(self._durable, record)
            return self._durable(record.toContainer(), record)

        def settled(result: Any) -> Any:
            self._creating.discard(record.name)
            return result

        # Shown (list, inspect) and announced only once it is saved.
        return self._book.saveNow(record).addBoth(settled).addCallback(saved)

    def _durable(self, result: Any, record: Record) -> Deferred[Any]:
        """C{result} (an operation's, or its failure), once all so far is durable."""
        return self._book.whenDurable(result, record)

    def start(self, name: str) -> Deferred[Container]:
        try:
            if self._closing:
                raise Unavailable(CLOSING_ERROR)
            record = self._book.lookup(name)
        except PycmError as e:
            return fail(e)
        return record.lock.run(self._startLocked, record).addBoth(self._durable, record)

    def _startCreated(self, record: Record, observer: RunObserver) -> Deferred[Container]:
        """The first run of a container C{createAndStart} just saved."""
        self._book.checkCurrent(record)
        self.lifecycle.startAsked(record)
        return self._runs.spawn(record, auto=False, prepared=observer)

    def _startLocked(self, record: Record, restartCount: int = 0) -> Deferred[Container]:
        self._book.checkCurrent(record)
        if record.state in State.ALIVE:
            return succeed(record.toContainer())
        if self._closing:
            raise Unavailable(CLOSING_ERROR)
        self._runs.cancelRestart(record)
        self.lifecycle.startAsked(record)
        record.restartCount = restartCount
        record.backoff = 0.0
        return self._runs.spawn(record, auto=False)

    def stop(self, name: str, timeout: float | None) -> Deferred[Container]:
        try:
            record = self._book.lookup(name)
        except NotFound as e:
            return fail(e)
        d = record.lock.run(self._stopLocked, record, timeout)
        return d.addBoth(self._durable, record)

    def _stopLocked(self, record: Record, timeout: float | None) -> Deferred[Container]:
        self._book.checkCurrent(record)
        if record.state == State.RESTARTING:
            self._runs.cancelRestart(record)
            self.lifecycle.move(record, Event.RESTART_STOPPED)
            return succeed(record.toContainer())
        if record.state not in State.ALIVE:
            return succeed(record.toContainer())
        self.lifecycle.stopAsked(record)
        return self._runs.terminate(record, timeout)

    def restart(self, name: str, timeout: float | None) -> Deferred[Container]:
        try:
            if self._closing:
                raise Unavailable(CLOSING_ERROR)
            record = self._book.lookup(name)
        except PycmError as e:
            return fail(e)

        d = record.lock.run(self._restartLocked, record, timeout, False)
        return d.addBoth(self._durable, record)

    def _restartLocked(
        self, record: Record, timeout: float | None, counted: bool
    ) -> Deferred[Container]:
        """
        Stop C{record}, then start it (its C{healthy} waits go on); emit
        C{restart}.  C{counted}: its C{restart_count} grows (a health
        check's restart), else it is reset (a client's).
        """
        count = record.restartCount
        record.restartAsked = True
        d = maybeDeferred(self._stopLocked, record, timeout)

        def stopped(_: object) -> Deferred[Container]:
            record.restartAsked = False
            return self._startLocked(record, count + 1 if counted else 0)

        def started(container: Container) -> Container:
            self._emit(Action.RESTART, record)
            return container

        def ended(result: Any) -> Any:
            record.restartAsked = False
            return result

        d.addCallback(stopped).addBoth(ended)
        return d.addCallback(started)

    def kill(self, name: str, signal: int) -> Deferred[Container]:
        try:
            record = self._book.lookup(name)
            if record.state not in State.ALIVE or record.run is None:
                raise Conflict(f"container {name} is not running")
            # As Docker: only SIGKILL or the stop signal counts as a client
            # stop (and disables the restart policy); other signals are
            # messages to the process.
            if signal in (_signal.SIGKILL, self._runs.stopSignal(record)):
                self.lifecycle.killAsked(record)
        except PycmError as e:
            return fail(e)
        self._emit(Action.KILL, record)
        self._runs.signal(record, signal)
        return self._durable(record.toContainer(), record)

    def remove(self, name: str, force: bool) -> Deferred[Container | None]:
        return self._removal.remove(name, force)

    def list(self) -> Deferred[list[Container]]:
        # In any order (the contract's): the list command sorts what it shows.
        return succeed(self._records.containers())

    def inspect(self, name: str) -> Deferred[Container]:
        try:
            return succeed(self._book.lookup(name).toContainer())
        except NotFound as e:
            return fail(e)

    def stats(self, names: Sequence[str]) -> Deferred[builtins.list[ContainerStats]]:
        """
        The usage of running containers, from the runtime's
        L{IRuntimeStats} (every figure None without it).
        """
        return readStats(names, self._book, self._runtime, self._cpu, self._statsSlices)

    # C{list} below means the method above, in this class body.
    def logs(
        self, name: str, tail: int | None, since: float | None = None
    ) -> Deferred[builtins.list[LogLine]]:
        try:
            self._book.lookup(name)
        except NotFound as e:
            return fail(e)
        return self._logReads.logs(name, tail, since)

    def follow(
        self,
        name: str,
        tail: int | None,
        observer: Callable[[LogLine], None],
        since: float | None = None,
    ) -> Deferred[LogFollow]:
        try:
            record = self._book.lookup(name)
            ends = record.state in (State.CREATED, State.EXITED, State.DEAD) and (
                record.observer is None
            )
            return self._logReads.follow(record, tail, observer, since, ends)
        except Exception as e:
            return fail(e)

    def wait(self, name: str, condition: str) -> Deferred[Container]:
        try:
            record = self._book.lookup(name)
        except NotFound as e:
            return fail(e)
        if condition not in WaitCondition.ALL:
            return fail(BadRequest(f"unknown wait condition {condition!r}"))
        if condition in WaitCondition.HEALTH:
            return waitForHealth(record, condition)
        alive = record.state in State.ALIVE
        if (condition == WaitCondition.NOT_RUNNING and not alive) or (
            condition == WaitCondition.RUNNING and alive
        ):
            return self._durable(record.toContainer(), record)
        return waitFor(record, condition).addCallback(self._durable, record)
