"""
The lifecycle engine shared by the supervising backends (memory, process).

A L{Supervisor} provides L{IContainerBackend} on top of three smaller seams:
an L{IRuntime} that starts one run of a container, an L{ILogStore} that
keeps output and an L{IRecordStore} that keeps container records durably.
Everything else -- states, restart policies and their backoff, stop with
escalation to SIGKILL, events, waiters, log followers, reconciling after a
daemon restart -- lives here, once.

Rules the engine keeps:
  - A record is saved before the event that announces its change is
    emitted, and before the Deferred of the operation fires.  What starts
    a process (a new container, the run id written before each spawn) is
    refused if it cannot be saved: no process runs that a later daemon
    could not find.  What stops or removes one is never refused for want
    of disk: when the record store cannot be written (a full disk) the
    change is applied in memory, the container shows C{saved} False until
    its record is written, and a L{RecordWriter} writes it when it can
    (see L{pycm.backends.supervisor.recordwriter}).
  - C{start}, C{stop}, C{restart} and C{remove} of one container are
    applied in the order they are called (a per-container lock);
    C{kill} and the killing half of C{remove --force} act at once, so they
    can cut a slow stop short.
  - Events are emitted synchronously, in order: C{create}; C{start};
    C{kill} (a client kill, or SIGKILL after a stop timeout, or
    C{remove --force}); C{die} (with the exit code); C{stop} (after a
    client stop); C{restart} (after the C{start} of a client restart and of
    each automatic restart); C{destroy}.  A run that cannot be started emits
    C{die} with exit code None and leaves the container C{dead}.
  - Restart policies are Docker's: C{on-failure[:MAX]} restarts on a
    non-zero exit at most MAX times (C{restart_count} counts them; a client
    start resets it); C{always} and C{unless-stopped} on every exit.  A
    client C{stop}, C{kill} or C{remove --force} disables the policy until
    the next client start.  The delay before an automatic restart is 100 ms,
    doubling up to 60 s, back to 100 ms once a run lasted 10 s; meanwhile
    the state is C{restarting}.
  - Daemon restarts: L{Supervisor.close} stops what runs without counting
    as a client stop.  L{Supervisor.open} reclaims runs a dead daemon left
    behind (C{exited} if it stopped a survivor, C{dead} if the process was
    gone; C{error} says which), then brings back C{always} containers,
    C{unless-stopped} ones a client had not stopped, and C{on-failure} ones
    the daemon interrupted (while below MAX).
  - Log following (L{Supervisor.follow}) goes on across automatic restarts;
    it ends when the container exits and will not be restarted, when it is
    removed, or when cancelled.  Following a container that is not running
    (nor about to) gives the backlog and ends at once.
"""

from __future__ import annotations

import builtins
import signal as _signal
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import attrs
from twisted.internet.defer import (
    Deferred,
    DeferredLock,
    fail,
    gatherResults,
    maybeDeferred,
    succeed,
)
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from pycm.backends.supervisor.recordcheck import checkRecord
from pycm.backends.supervisor.recordwriter import RecordWriter
from pycm.backends.supervisor.remains import Remains, salvage
from pycm.errors import (
    BackendError,
    BadRequest,
    Conflict,
    NoImage,
    NotFound,
    PycmError,
    Unavailable,
)
from pycm.interfaces import (
    IContainerBackend,
    ILogStore,
    IRecordStore,
    IRun,
    IRunObserver,
    IRuntime,
    IRuntimeStats,
    IRuntimeSweep,
)
from pycm.model import (
    DEFAULT_STOP_SIGNAL,
    DEFAULT_STOP_TIMEOUT,
    Action,
    Capabilities,
    Container,
    ContainerEvent,
    ContainerSpec,
    LogFollow,
    LogLine,
    RestartPolicy,
    State,
    WaitCondition,
    parseSignal,
    signalName,
)
from pycm.redact import containerSecrets, scrub
from pycm.stats import ContainerStats, CpuSampler

#: The first delay before an automatic restart, in seconds.
INITIAL_BACKOFF = 0.1
#: The longest delay before an automatic restart.
MAX_BACKOFF = 60.0
#: A run that lasted this long resets the backoff.
BACKOFF_RESET_AFTER = 10.0

#: C{error} of containers that the daemon's shutdown stopped.
SHUTDOWN_ERROR = "daemon shut down"
#: C{error} of a run a dead daemon left behind, that L{Supervisor.open} stopped.
RECLAIMED_ERROR = "daemon restarted; the process was stopped"
#: C{error} of a run a dead daemon left behind, that was already gone.
LOST_ERROR = "lost: the daemon died and the process was gone"
#: C{error} of a container whose start a dead daemon left unfinished.
STARTING_ERROR = "the daemon died while starting it; what it had started was stopped"
#: The reply to create/start/restart while the daemon shuts down.
CLOSING_ERROR = "the daemon is shutting down"

_RECORD_VERSION = 1


def nextBackoff(previous: float, runDuration: float | None) -> float:
    """
    The delay before the next automatic restart.

    @param previous: the delay used before the last one, 0 if none.
    @param runDuration: how long the run that just ended lasted.
    """
    if runDuration is not None and runDuration >= BACKOFF_RESET_AFTER:
        previous = 0.0
    if previous <= 0:
        return INITIAL_BACKOFF
    return min(previous * 2, MAX_BACKOFF)


def defaultIdFactory() -> str:
    """A fresh container id: 32 hex digits."""
    return uuid.uuid4().hex


@attrs.define(eq=False)
class _Waiter:
    condition: str
    deferred: Deferred[Container]


@attrs.define(eq=False)
class _Follower:
    observer: Callable[[LogLine], None]
    ended: Deferred[None]


def _forgetSnapshot(record: Record, attribute: Any, value: Any) -> Any:
    """Any change to a record makes its L{Record.snapshot} stale."""
    if attribute.name != "snapshot":
        record.snapshot = None
    return value


@attrs.define(eq=False, on_setattr=_forgetSnapshot)
class Record:
    """
    The engine's mutable, private record of one container: everything of a
    L{Container} plus run bookkeeping.  L{toDict}/L{fromDict} give the
    JSON-able form kept in an L{IRecordStore}; the fields after C{startTime}
    live only in memory.

    Fields are only ever replaced, never changed in place (C{labels} and
    C{env} are not edited), so that L{toContainer} can hand out the same
    snapshot until one is.
    """

    name: str
    id: str
    backend: str
    image: str
    command: tuple[str, ...]
    created: float
    state: str = State.CREATED
    pid: int | None = None
    exitCode: int | None = None
    started: float | None = None
    finished: float | None = None
    restartPolicy: RestartPolicy = attrs.field(factory=RestartPolicy)
    restartCount: int = 0
    labels: dict[str, str] = attrs.field(factory=dict)
    env: dict[str, str] = attrs.field(factory=dict)
    stopTimeout: float = DEFAULT_STOP_TIMEOUT
    stopSignal: str = DEFAULT_STOP_SIGNAL
    memory: int | None = None
    cpus: float | None = None
    workdir: str | None = None
    error: str | None = None
    #: A client stopped it (stop, kill, rm --force); reset by a client start.
    manuallyStopped: bool = False
    #: The daemon, not the container or a client, ended its last run.
    interrupted: bool = False
    #: The delay used before the last automatic restart (0: none yet).
    backoff: float = 0.0
    #: The run's L{IRun.startTime}, to recognise it after a daemon restart.
    startTime: Any = None
    #: The id of the last run started (saved before it is spawned, so a
    #: daemon that dies mid-start leaves a marker the next one acts on).
    runId: str | None = None

    # In memory only.
    #: A change of this record waits to be written (a full disk).
    unsaved: bool = attrs.field(default=False, repr=False)
    run: IRun | None = attrs.field(default=None, repr=False)
    observer: _RunObserver | None = attrs.field(default=None, repr=False)
    pendingRestart: IDelayedCall | None = attrs.field(default=None, repr=False)
    killTimer: IDelayedCall | None = attrs.field(default=None, repr=False)
    stopRequested: bool = attrs.field(default=False, repr=False)
    removing: bool = attrs.field(default=False, repr=False)
    removed: bool = attrs.field(default=False, repr=False)
    waiters: list[_Waiter] = attrs.field(factory=list, repr=False)
    exitWaiters: list[Deferred[Container]] = attrs.field(factory=list, repr=False)
    followers: list[_Follower] = attrs.field(factory=list, repr=False)
    lock: DeferredLock = attrs.field(factory=DeferredLock, repr=False)
    #: The last L{toContainer} value, until any field is set again.
    snapshot: Container | None = attrs.field(default=None, init=False, repr=False)

    _PERSISTED = (
        "name", "id", "backend", "image", "state", "pid", "exitCode",
        "started", "finished", "restartCount", "stopTimeout", "stopSignal",
        "memory", "cpus", "workdir", "error", "manuallyStopped", "interrupted",
        "backoff", "startTime", "created", "runId",
    )  # fmt: skip

    def toContainer(self) -> Container:
        """A frozen snapshot, as the contract shows it."""
        if self.snapshot is None:
            self.snapshot = self._freeze()
        return self.snapshot

    def _freeze(self) -> Container:
        return Container(
            name=self.name,
            id=self.id,
            backend=self.backend,
            image=self.image,
            command=self.command,
            state=self.state,
            created=self.created,
            pid=self.pid,
            exitCode=self.exitCode,
            started=self.started,
            finished=self.finished,
            restartPolicy=self.restartPolicy,
            restartCount=self.restartCount,
            labels=dict(self.labels),
            env=dict(self.env),
            stopTimeout=self.stopTimeout,
            stopSignal=self.stopSignal,
            memory=self.memory,
            cpus=self.cpus,
            workdir=self.workdir,
            error=self.error,
            saved=not self.unsaved,
        )

    def toDict(self) -> dict[str, Any]:
        """The JSON-able form saved in an L{IRecordStore}."""
        result: dict[str, Any] = {k: getattr(self, k) for k in self._PERSISTED}
        result.update(
            version=_RECORD_VERSION,
            command=list(self.command),
            restartPolicy=str(self.restartPolicy),
            labels=dict(self.labels),
            env=dict(self.env),
        )
        return result

    @classmethod
    def fromDict(cls, data: dict[str, Any]) -> Record:
        """
        The inverse of L{toDict}.

        @raise BackendError: if C{data} is not a record, or one of its
            fields is missing, of the wrong type or out of range (the
            message names the field).
        """
        try:
            if data.get("version") != _RECORD_VERSION:
                raise ValueError(f"unknown record version {data.get('version')!r}")
            checkRecord(data)
            fields = {k: data[k] for k in cls._PERSISTED if k in data}
            fields["command"] = tuple(data["command"])
            fields["restartPolicy"] = RestartPolicy.parse(data["restartPolicy"])
            fields["labels"] = dict(data.get("labels", {}))
            fields["env"] = dict(data.get("env", {}))
            return cls(**fields)
        except (KeyError, TypeError, ValueError, AttributeError, PycmError) as e:
            raise BackendError(f"corrupt container record: {e}") from e


def _scrubbed(record: Record, text: str) -> str:
    """C{text} for the log: without the container's command or option values."""
    return scrub(text, containerSecrets(record.command, record.env, record.labels, record.workdir))


@implementer(IRunObserver)
class _RunObserver:
    """Tells the supervisor about one run of one record."""

    def __init__(self, supervisor: Supervisor, record: Record) -> None:
        self._supervisor = supervisor
        self._record = record
        #: The run is registered in its record (spawn's Deferred fired).
        self.attached = False
        #: An exit reported before the run was attached.
        self.pendingExit: list[int | None] = []

    def output(self, stream: str, lines: list[bytes]) -> None:
        self._supervisor._output(self._record, self, stream, lines)

    def exited(self, exitCode: int | None) -> None:
        self._supervisor._exited(self._record, self, exitCode)


@implementer(IContainerBackend)
class Supervisor:
    """
    A backend that supervises runs itself: see the module docstring.

    @param clock: the time source, and where timers are scheduled.
    @param backendName: the name reported in C{backend} fields and C{info}.
    @param runtime: starts runs.
    @param logStore: keeps output.
    @param recordStore: keeps records durably.
    @param idFactory: makes container ids.
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
    ) -> None:
        self._clock = clock
        self.name = backendName
        self._runtime = runtime
        self._logStore = logStore
        self._recordStore = recordStore
        self._idFactory = idFactory
        self._records: dict[str, Record] = {}
        self._observers: list[Callable[[ContainerEvent], None]] = []
        self._closing = False
        #: Spawns not settled yet, and who waits for there to be none.
        self._inFlight = 0
        self._idleWaiters: list[Deferred[None]] = []
        self._writer = RecordWriter(clock, recordStore, self._recordsWritten)
        self._cpu = CpuSampler(clock)

    @property
    def capabilities(self) -> Capabilities:
        return self._runtime.capabilities

    @property
    def defaultImage(self) -> str:
        return self._runtime.defaultImage

    @property
    def quarantined(self) -> list[dict[str, str]]:
        """The damaged records put aside when the backend opened."""
        return self._recordStore.quarantined()

    # -- open / close -------------------------------------------------------

    def open(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._open())

    async def _open(self) -> None:
        owners: dict[str, str] = {}
        for data in self._recordStore.load():
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
                self._recordStore.quarantine(str(data.get("name")), str(e))
                continue
            record.backend = self.name
            self._records[record.name] = record
        remains = [
            self._notServed(salvage(name, raw)) for name, raw in self._recordStore.remains()
        ]
        leftovers = [
            r
            for r in self._records.values()
            if r.state in State.ALIVE or r.state == State.RESTARTING
        ]
        await gatherResults(
            [Deferred.fromCoroutine(self._reconcile(r)) for r in leftovers]
            + [Deferred.fromCoroutine(self._stopRemains(r)) for r in remains],
            consumeErrors=True,
        )
        await self._sweep(remains)
        back = [r for r in self._records.values() if self._comesBack(r)]
        await gatherResults([r.lock.run(self._bringBack, r) for r in back], consumeErrors=True)

    def _notServed(self, remains: Remains) -> Remains:
        """
        C{remains} without what identifies a record that is served (a
        quarantined copy of one, e.g. with the same id): its run is the
        served record's, and is not stopped for the copy.
        """
        served = self._records.values()
        if remains.id is not None and any(r.id == remains.id for r in served):
            remains = attrs.evolve(remains, id=None)
        if remains.runId is not None and any(r.runId == remains.runId for r in served):
            remains = attrs.evolve(remains, runId=None)
        if remains.pid is not None and any(r.pid == remains.pid for r in served):
            remains = attrs.evolve(remains, pid=None, startTime=None)
        return remains

    async def _reconcile(self, record: Record) -> None:
        """Settle a record that a dead daemon left alive or restarting."""
        record.interrupted = True
        record.stopRequested = False
        if record.state == State.RESTARTING:
            record.state = State.EXITED
            self._saveLater(record)
            return
        try:
            stopped = await maybeDeferred(
                self._runtime.reclaim,
                record.toContainer(),
                record.pid,
                record.startTime,
            )
            error = RECLAIMED_ERROR if stopped else LOST_ERROR
        except Exception as e:
            self._log.failure("reclaiming {name}", name=record.name)
            stopped, error = False, f"{LOST_ERROR} (reclaim failed: {e})"
        record.state = State.EXITED if stopped else State.DEAD
        record.error = error
        record.pid = None
        record.startTime = None
        record.exitCode = None
        record.finished = self._clock.seconds()
        self._saveLater(record)
        self._emit(Action.DIE, record, None)

    def _remainsContainer(self, remains: Remains) -> Container:
        """A container standing for a quarantined record's last run."""
        return Container(
            name=remains.name,
            id=remains.id or "",
            backend=self.name,
            image=self.defaultImage,
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
                self._remainsContainer(remains),
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

    async def _sweep(self, remains: builtins.list[Remains]) -> None:
        """
        Stop whatever is left of any run of any record (one look at the
        system for all of them): processes that escaped a run's group, runs
        a dead daemon was starting (saved with their run id, never saved as
        running), and the last runs of records put aside (C{remains}): by
        their run ids, or by their names where none could be read.
        """
        runs = {r.runId: r.toContainer() for r in self._records.values() if r.runId}
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
            record = next((r for r in self._records.values() if r.runId == runId), None)
            if record is None or record.state != State.CREATED:
                continue
            record.error = STARTING_ERROR
            record.interrupted = True
            self._saveLater(record)

    def _comesBack(self, record: Record) -> bool:
        """Whether L{open} starts C{record} again."""
        if record.state == State.CREATED:
            return False
        if record.state == State.DEAD and not record.interrupted:
            return False  # it could not be started
        policy = record.restartPolicy
        if policy.name == "always":
            return True
        if policy.name == "unless-stopped":
            return not record.manuallyStopped
        if policy.name == "on-failure":
            return (
                record.interrupted
                and not record.manuallyStopped
                and (policy.maxRetries is None or record.restartCount < policy.maxRetries)
            )
        return False

    def _bringBack(self, record: Record) -> Deferred[Container | None]:
        if self._closing:
            return succeed(None)
        record.manuallyStopped = False
        d = self._spawn(record, auto=False)

        def failed(f: Failure) -> None:
            self._log.warn(
                "could not bring back {name}: {error}",
                name=record.name,
                error=_scrubbed(record, str(f.value)),
            )

        return d.addErrback(failed)

    def close(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._close())

    async def _close(self) -> None:
        # New starts are refused from here on; starts in flight are let
        # finish, so that what they started is stopped below.
        self._closing = True
        while self._inFlight:
            idle: Deferred[None] = Deferred()
            self._idleWaiters.append(idle)
            await idle
        # Every container is stopped and saved before close fires (and the
        # stores can be closed): one that fails to is logged, never cuts
        # the others short.
        stopping = []
        for record in list(self._records.values()):
            try:
                if record.state == State.RESTARTING:
                    self._cancelRestart(record)
                    record.state = State.EXITED
                    record.error = SHUTDOWN_ERROR
                    record.interrupted = True
                    self._saveLater(record)
                elif record.state in State.ALIVE and record.run is not None:
                    stopping.append(self._terminate(record, None, clientStop=False))
            except Exception:
                self._log.failure("stopping {name} at shutdown", name=record.name)
        await gatherResults(stopping, consumeErrors=True)
        for record in self._records.values():
            self._endFollowers(record)
        self._writer.close()

    # -- observers ----------------------------------------------------------

    def addObserver(self, observer: Callable[[ContainerEvent], None]) -> None:
        self._observers.append(observer)

    def removeObserver(self, observer: Callable[[ContainerEvent], None]) -> None:
        if observer in self._observers:
            self._observers.remove(observer)

    def _emit(self, action: str, record: Record, exitCode: int | None = None) -> None:
        event = ContainerEvent(action, record.name, self._clock.seconds(), exitCode)
        for observer in list(self._observers):
            try:
                observer(event)
            except Exception:
                self._log.failure("event observer {observer!r} failed", observer=observer)

    # -- records ------------------------------------------------------------

    def _lookup(self, name: str) -> Record:
        record = self._records.get(name)
        if record is None:
            raise NotFound(name)
        return record

    def _checkCurrent(self, record: Record) -> None:
        """Raise L{NotFound} if C{record} was removed while an op waited."""
        if self._records.get(record.name) is not record:
            raise NotFound(record.name)

    def _save(self, record: Record) -> None:
        """
        Save C{record} now, before anything is done that needs it on disk.

        @raise BackendError: if it could not be saved.
        """
        self._writer.saveNow(record.name, record.toDict())
        record.unsaved = False

    def _saveLater(self, record: Record) -> None:
        """Save a change already made; if it cannot be now, it waits."""
        record.unsaved = not self._writer.save(record.name, record.toDict())

    def _recordsWritten(self, names: builtins.list[str]) -> None:
        """Changes that waited were written: their containers are saved."""
        for name in names:
            record = self._records.get(name)
            if record is not None:
                record.unsaved = False

    # -- operations ---------------------------------------------------------

    def create(self, spec: ContainerSpec) -> Deferred[Container]:
        return maybeDeferred(self._create, spec)

    def _create(self, spec: ContainerSpec) -> Container:
        if self._closing:
            raise Unavailable(CLOSING_ERROR)
        if spec.name in self._records:
            raise Conflict(f'container name "{spec.name}" is already in use')
        unsupported = sorted(spec.optionsUsed() - self.capabilities.options)
        if unsupported:
            raise BadRequest(
                f"the {self.name} backend does not support "
                + ", ".join(f"--{option}" for option in unsupported)
            )
        image = spec.image or self._runtime.defaultImage
        if image not in self._runtime.images:
            raise NoImage(image)
        command = tuple(spec.command or self._runtime.defaultCommand)
        stopSignal = signalName(parseSignal(spec.stopSignal or DEFAULT_STOP_SIGNAL))
        stopTimeout = DEFAULT_STOP_TIMEOUT
        if spec.stopTimeout is not None:
            if spec.stopTimeout < 0:
                raise BadRequest(f"bad --stop-timeout {spec.stopTimeout}: negative")
            stopTimeout = float(spec.stopTimeout)
        record = Record(
            name=spec.name,
            id=self._idFactory(),
            backend=self.name,
            image=image,
            command=command,
            created=self._clock.seconds(),
            restartPolicy=spec.restartPolicy,
            labels=dict(spec.labels),
            env=dict(spec.env),
            stopTimeout=stopTimeout,
            stopSignal=stopSignal,
            memory=spec.memory,
            cpus=spec.cpus,
            workdir=spec.workdir,
        )
        self._save(record)
        self._records[record.name] = record
        self._emit(Action.CREATE, record)
        return record.toContainer()

    def start(self, name: str) -> Deferred[Container]:
        try:
            if self._closing:
                raise Unavailable(CLOSING_ERROR)
            record = self._lookup(name)
        except PycmError as e:
            return fail(e)
        return record.lock.run(self._startLocked, record)

    def _startLocked(self, record: Record) -> Deferred[Container]:
        self._checkCurrent(record)
        if record.state in State.ALIVE:
            return succeed(record.toContainer())
        if self._closing:
            raise Unavailable(CLOSING_ERROR)
        self._cancelRestart(record)
        record.manuallyStopped = False
        record.restartCount = 0
        record.backoff = 0.0
        return self._spawn(record, auto=False)

    def stop(self, name: str, timeout: float | None) -> Deferred[Container]:
        try:
            record = self._lookup(name)
        except NotFound as e:
            return fail(e)
        return record.lock.run(self._stopLocked, record, timeout)

    def _stopLocked(self, record: Record, timeout: float | None) -> Deferred[Container]:
        self._checkCurrent(record)
        if record.state == State.RESTARTING:
            self._cancelRestart(record)
            record.state = State.EXITED
            record.manuallyStopped = True
            self._saveLater(record)
            self._emit(Action.STOP, record)
            self._endFollowers(record)
            return succeed(record.toContainer())
        if record.state not in State.ALIVE:
            return succeed(record.toContainer())
        record.manuallyStopped = True
        return self._terminate(record, timeout, clientStop=True)

    def restart(self, name: str, timeout: float | None) -> Deferred[Container]:
        try:
            if self._closing:
                raise Unavailable(CLOSING_ERROR)
            record = self._lookup(name)
        except PycmError as e:
            return fail(e)

        def restartLocked() -> Deferred[Container]:
            d = maybeDeferred(self._stopLocked, record, timeout)
            d.addCallback(lambda _: self._startLocked(record))

            def started(container: Container) -> Container:
                self._emit(Action.RESTART, record)
                return container

            return d.addCallback(started)

        return record.lock.run(restartLocked)

    def kill(self, name: str, signal: int) -> Deferred[Container]:
        try:
            record = self._lookup(name)
            if record.state not in State.ALIVE or record.run is None:
                raise Conflict(f"container {name} is not running")
            # As Docker: only SIGKILL or the stop signal counts as a client
            # stop (and disables the restart policy); other signals are
            # messages to the process.
            if signal in (_signal.SIGKILL, self._stopSignal(record)):
                record.manuallyStopped = True
                self._saveLater(record)
        except PycmError as e:
            return fail(e)
        self._emit(Action.KILL, record)
        self._signal(record, signal)
        return succeed(record.toContainer())

    def remove(self, name: str, force: bool) -> Deferred[Container | None]:
        try:
            record = self._lookup(name)
        except NotFound as e:
            return fail(e)
        if force:
            self._forceKill(record)
        return record.lock.run(self._removeLocked, record, force)

    def _forceKill(self, record: Record) -> None:
        """The immediate half of C{remove --force}."""
        if record.state == State.RESTARTING:
            self._cancelRestart(record)
            record.state = State.EXITED
            record.manuallyStopped = True
            self._saveLater(record)
        elif record.state in State.ALIVE and record.run is not None:
            if not record.removing:
                record.removing = True
                record.manuallyStopped = True
                self._saveLater(record)
                self._emit(Action.KILL, record)
            self._signal(record, _signal.SIGKILL)

    def _removeLocked(self, record: Record, force: bool) -> Deferred[Container | None]:
        self._checkCurrent(record)
        if record.state in State.ALIVE or record.state == State.RESTARTING:
            if not force:
                raise Conflict(
                    f"cannot remove container {record.name}: it is {record.state};"
                    " stop it first or use --force"
                )
            self._forceKill(record)
            if record.state in State.ALIVE:
                d: Deferred[Container] = Deferred()
                record.exitWaiters.append(d)

                def exited(_: Container) -> Container | None:
                    return self._destroy(record)

                return d.addCallback(exited)
        return succeed(self._destroy(record))

    def _destroy(self, record: Record) -> Container | None:
        """
        Forget C{record}.

        @return: None, or the container as it was if its removal is not
            saved yet (C{saved} False).
        """
        self._checkCurrent(record)
        record.unsaved = not self._writer.delete(record.name)
        del self._records[record.name]
        record.removed = True
        try:
            self._logStore.remove(record.name)
        except Exception:
            # The container is gone; its stray log files must not make the
            # removal half-fail.
            self._log.failure("removing the logs of {name}", name=record.name)
        self._emit(Action.DESTROY, record)
        self._endFollowers(record)
        self._resolveWaiters(record, "removed")
        return record.toContainer() if record.unsaved else None

    def list(self) -> Deferred[list[Container]]:
        return succeed([self._records[name].toContainer() for name in sorted(self._records)])

    def inspect(self, name: str) -> Deferred[Container]:
        try:
            return succeed(self._lookup(name).toContainer())
        except NotFound as e:
            return fail(e)

    def stats(self, names: Sequence[str]) -> Deferred[builtins.list[ContainerStats]]:
        """
        The usage of running containers, from the runtime's
        L{IRuntimeStats} (every figure None without it).
        """
        try:
            if names:
                records = [self._lookup(name) for name in dict.fromkeys(names)]
            else:
                records = [r for r in self._records.values() if r.state in State.ALIVE]
            return succeed(self._stats(records))
        except PycmError as e:
            return fail(e)
        except Exception as e:
            return fail(BackendError(f"cannot read the containers' usage: {e}"))

    def _stats(self, records: builtins.list[Record]) -> builtins.list[ContainerStats]:
        running = [r for r in records if r.state in State.ALIVE and r.run is not None]
        reader = IRuntimeStats(self._runtime, None)
        pairs = [(r.toContainer(), r.run) for r in running]
        usages = reader.usage(pairs) if reader is not None and pairs else [None] * len(pairs)
        result = [ContainerStats.idle(r.toContainer()) for r in records if r not in running]
        for (container, _), usage in zip(pairs, usages):
            key = (container.id, container.started)
            cpu = self._cpu.percent(
                key, container.started, usage.cpuSeconds if usage is not None else None
            )
            result.append(ContainerStats.of(container, usage, cpu))
        self._cpu.keepOnly(
            (r.id, r.started) for r in self._records.values() if r.state in State.ALIVE
        )
        return result

    # C{list} below means the method above, in this class body.
    def logs(
        self, name: str, tail: int | None, since: float | None = None
    ) -> Deferred[builtins.list[LogLine]]:
        try:
            self._lookup(name)
        except NotFound as e:
            return fail(e)
        return maybeDeferred(self._tail, name, tail, since)

    def _tail(
        self, name: str, tail: int | None, since: float | None = None
    ) -> builtins.list[LogLine]:
        if tail is not None and tail <= 0:
            return []
        if since is None:
            return list(self._logStore.tail(name, tail))
        # Every line kept (as much as the store reads at once), then those
        # since C{since}, then the last C{tail} of them.
        lines = [line for line in self._logStore.tail(name, None) if line.time >= since]
        return lines if tail is None else lines[-tail:]

    def follow(
        self,
        name: str,
        tail: int | None,
        observer: Callable[[LogLine], None],
        since: float | None = None,
    ) -> Deferred[LogFollow]:
        try:
            record = self._lookup(name)
            backlog = self._tail(name, tail, since)
        except Exception as e:
            return fail(e)
        follower = _Follower(observer, Deferred(lambda d: self._unfollow(record, follower)))
        if record.state in (State.CREATED, State.EXITED, State.DEAD) and (record.observer is None):
            follower.ended.callback(None)
        else:
            record.followers.append(follower)

        def cancel() -> None:
            if follower in record.followers:
                self._unfollow(record, follower)
                follower.ended.callback(None)

        return succeed(LogFollow(backlog, follower.ended, cancel))

    def _unfollow(self, record: Record, follower: _Follower) -> None:
        if follower in record.followers:
            record.followers.remove(follower)

    def _endFollowers(self, record: Record) -> None:
        followers, record.followers = record.followers, []
        for follower in followers:
            follower.ended.callback(None)

    def wait(self, name: str, condition: str) -> Deferred[Container]:
        try:
            record = self._lookup(name)
        except NotFound as e:
            return fail(e)
        if condition not in WaitCondition.ALL:
            return fail(BadRequest(f"unknown wait condition {condition!r}"))
        alive = record.state in State.ALIVE
        if (condition == WaitCondition.NOT_RUNNING and not alive) or (
            condition == WaitCondition.RUNNING and alive
        ):
            return succeed(record.toContainer())

        def cancel(d: Deferred[Container]) -> None:
            if waiter in record.waiters:
                record.waiters.remove(waiter)

        waiter = _Waiter(condition, Deferred(cancel))
        record.waiters.append(waiter)
        return waiter.deferred

    def _resolveWaiters(self, record: Record, what: str) -> None:
        """Fire the waiters that C{what} (start, exit, removed) satisfies."""
        conditions = {
            "start": {WaitCondition.RUNNING},
            "exit": {WaitCondition.NOT_RUNNING, WaitCondition.NEXT_EXIT},
            "removed": set(WaitCondition.ALL),
        }[what]
        fired = [w for w in record.waiters if w.condition in conditions]
        record.waiters = [w for w in record.waiters if w not in fired]
        snapshot = record.toContainer()
        if what == "exit":
            exitWaiters, record.exitWaiters = record.exitWaiters, []
            for d in exitWaiters:
                d.callback(snapshot)
        for waiter in fired:
            if what == "removed" and waiter.condition != WaitCondition.REMOVED:
                waiter.deferred.errback(NotFound(record.name))
            else:
                waiter.deferred.callback(snapshot)

    # -- runs ---------------------------------------------------------------

    def _spawn(self, record: Record, auto: bool) -> Deferred[Container]:
        """
        Start one run of C{record}; fires once it is running.  The run's id
        is saved first (a daemon that dies before the run is saved as
        running leaves it for the next one to stop); if it cannot be saved,
        nothing is spawned and the start fails.
        """
        if self._closing:
            return fail(Unavailable(CLOSING_ERROR))
        observer = _RunObserver(self, record)
        record.observer = observer
        record.runId = uuid.uuid4().hex
        d: Deferred[IRun]
        try:
            self._save(record)
        except PycmError as e:
            d = fail(e)
        else:
            d = maybeDeferred(
                self._runtime.spawn,
                record.toContainer(),
                observer,
                runId=record.runId,  # type: ignore[call-arg]
            )
        self._inFlight += 1
        d.addCallbacks(
            self._spawned,
            self._spawnFailed,
            callbackArgs=(record, observer, auto),
            errbackArgs=(record, observer),
        )
        return d.addBoth(self._settled)

    def _settled(self, result: Any) -> Any:
        """A spawn is over: wake L{close} once none is in flight."""
        self._inFlight -= 1
        if not self._inFlight:
            waiters, self._idleWaiters = self._idleWaiters, []
            for waiter in waiters:
                waiter.callback(None)
        return result

    def _spawned(
        self, run: IRun, record: Record, observer: _RunObserver, auto: bool
    ) -> Container:
        if record.observer is not observer or record.removed:
            run.signal(_signal.SIGKILL)
            raise NotFound(record.name)
        observer.attached = True
        record.run = run
        record.pid = run.pid
        record.startTime = run.startTime
        record.state = State.RUNNING
        record.started = self._clock.seconds()
        record.finished = None
        record.exitCode = None
        record.error = None
        record.interrupted = False
        record.stopRequested = False
        record.removing = False
        # The run id was saved before the spawn: should this save have to
        # wait, a daemon that dies meanwhile still finds and stops the run.
        self._saveLater(record)
        self._emit(Action.START, record)
        if auto:
            self._emit(Action.RESTART, record)
        snapshot = record.toContainer()
        self._resolveWaiters(record, "start")
        if observer.pendingExit:
            self._exited(record, observer, observer.pendingExit[0])
        return snapshot

    def _spawnFailed(self, failure: Failure, record: Record, observer: _RunObserver) -> Failure:
        if record.observer is observer:
            record.observer = None
        reason = str(failure.value) or repr(failure.value)
        self._log.warn(
            "{name} could not be started: {reason}",
            name=record.name,
            reason=_scrubbed(record, reason),
        )
        record.run = None
        record.pid = None
        record.startTime = None
        record.state = State.DEAD
        record.error = reason
        record.exitCode = None
        record.finished = self._clock.seconds()
        self._saveLater(record)
        self._emit(Action.DIE, record, None)
        self._resolveWaiters(record, "exit")
        self._endFollowers(record)
        if isinstance(failure.value, BackendError):
            return failure
        return Failure(BackendError(f"could not start {record.name}: {reason}"))

    def _signal(self, record: Record, signum: int) -> None:
        run = record.run
        if run is None:
            return
        try:
            run.signal(signum)
        except Exception:
            self._log.failure("signalling {name}", name=record.name)

    def _terminate(
        self, record: Record, timeout: float | None, clientStop: bool
    ) -> Deferred[Container]:
        """Stop signal, then SIGKILL after C{timeout}; fires after the exit."""
        d: Deferred[Container] = Deferred()
        record.exitWaiters.append(d)
        if clientStop:
            record.stopRequested = True
        if timeout is None:
            timeout = record.stopTimeout
        deadline = self._clock.seconds() + max(timeout, 0)
        timer = record.killTimer
        if timer is not None and timer.active() and timer.getTime() > deadline:
            timer.reset(max(timeout, 0))
        if record.state == State.RUNNING:
            record.state = State.STOPPING
            self._saveLater(record)
            record.killTimer = self._clock.callLater(
                max(timeout, 0), self._escalate, record, record.observer
            )
            self._signal(record, self._stopSignal(record))
        return d

    def _stopSignal(self, record: Record) -> int:
        """C{record}'s stop signal; SIGTERM (and a warning) if it is not one."""
        try:
            return parseSignal(record.stopSignal)
        except PycmError:
            self._log.warn(
                "{name}'s stop signal {signal!r} is not a signal: SIGTERM is sent",
                name=record.name,
                signal=record.stopSignal,
            )
            return _signal.SIGTERM

    def _escalate(self, record: Record, observer: _RunObserver | None) -> None:
        record.killTimer = None
        if record.observer is not observer or record.run is None:
            return
        self._emit(Action.KILL, record)
        self._signal(record, _signal.SIGKILL)

    def _cancelRestart(self, record: Record) -> None:
        call, record.pendingRestart = record.pendingRestart, None
        if call is not None and call.active():
            call.cancel()

    def _output(
        self, record: Record, observer: _RunObserver, stream: str, lines: builtins.list[bytes]
    ) -> None:
        if record.observer is not observer or record.removed or not lines:
            return
        now = self._clock.seconds()
        # One decode for the batch: the same text as line by line (a newline
        # is never part of a UTF-8 sequence), without a call per line.
        texts = b"\n".join(lines).decode("utf-8", errors="replace").split("\n")
        self._logStore.appendLines(record.name, now, stream, texts)
        if not record.followers:
            return
        for text in texts:
            logLine = LogLine(now, stream, text)
            for follower in list(record.followers):
                try:
                    follower.observer(logLine)
                except Exception:
                    self._log.failure("log follower of {name} failed", name=record.name)

    def _exited(self, record: Record, observer: _RunObserver, exitCode: int | None) -> None:
        if record.observer is not observer:
            return
        if not observer.attached:
            observer.pendingExit = [exitCode]
            return
        try:
            self._handleExit(record, exitCode)
        except Exception:
            self._log.failure("handling the exit of {name}", name=record.name)

    def _handleExit(self, record: Record, exitCode: int | None) -> None:
        timer, record.killTimer = record.killTimer, None
        if timer is not None and timer.active():
            timer.cancel()
        now = self._clock.seconds()
        duration = None if record.started is None else now - record.started
        record.run = None
        record.observer = None
        record.pid = None
        record.startTime = None
        record.exitCode = exitCode
        record.finished = now
        record.state = State.EXITED
        stopRequested, record.stopRequested = record.stopRequested, False
        if self._closing and not record.manuallyStopped:
            record.error = SHUTDOWN_ERROR
            record.interrupted = True
        elif not record.removing and self._policyRestarts(record, exitCode):
            record.backoff = nextBackoff(record.backoff, duration)
            record.state = State.RESTARTING
            record.pendingRestart = self._clock.callLater(record.backoff, self._autoRestart, record)
        self._log.info("{name} exited with {exitCode}", name=record.name, exitCode=exitCode)
        self._saveLater(record)
        self._emit(Action.DIE, record, exitCode)
        if stopRequested:
            self._emit(Action.STOP, record)
        self._resolveWaiters(record, "exit")
        if record.state != State.RESTARTING:
            self._endFollowers(record)

    def _policyRestarts(self, record: Record, exitCode: int | None) -> bool:
        """Whether the restart policy restarts C{record} after this exit."""
        if record.manuallyStopped:
            return False
        policy = record.restartPolicy
        if policy.name in ("always", "unless-stopped"):
            return True
        if policy.name == "on-failure":
            return exitCode != 0 and (
                policy.maxRetries is None or record.restartCount < policy.maxRetries
            )
        return False

    def _autoRestart(self, record: Record) -> None:
        record.pendingRestart = None

        def restartLocked() -> Deferred[Container | None] | None:
            if self._records.get(record.name) is not record:
                return None
            if record.state != State.RESTARTING or self._closing:
                return None
            record.restartCount += 1
            # A failed start is already recorded (the container is dead) and
            # nobody waits for an automatic restart: swallow the failure.
            return self._spawn(record, auto=True).addErrback(lambda _: None)

        record.lock.run(restartLocked)
