"""
The supervisor's records of containers: L{Record}, one container's state
and run bookkeeping (its JSON-able form is what an L{IRecordStore} keeps),
and L{RecordBook}, the records by name and their saving.
"""

from __future__ import annotations

from collections.abc import ItemsView, Iterator, KeysView, Mapping, ValuesView
from typing import Any

import attrs
from twisted.internet.defer import Deferred, DeferredLock
from twisted.internet.interfaces import IDelayedCall, IReactorTime

from pycm.backends.supervisor.recordcheck import checkRecord
from pycm.backends.supervisor.recordwriter import RecordWriter
from pycm.backends.supervisor.runobserver import RunObserver
from pycm.backends.supervisor.watching import ConditionWaiter, LogFollower
from pycm.errors import BackendError, BadRequest, NoImage, NotFound, PycmError
from pycm.groupcommit import GroupCommit
from pycm.health import Health, HealthCheck
from pycm.interfaces import IRecordStore, IRun, IRuntime
from pycm.model import (
    DEFAULT_STOP_SIGNAL,
    DEFAULT_STOP_TIMEOUT,
    Container,
    ContainerSpec,
    RestartPolicy,
    State,
    parseSignal,
    signalName,
)
from pycm.redact import containerSecrets, scrub
from pycm.units import MAX_STOP_TIMEOUT

#: The version of the records' JSON-able form.
RECORD_VERSION = 1


def _forgetSnapshot(record: Record, attribute: Any, value: Any) -> Any:
    """
    Any change to a record makes its L{Record.snapshot} stale, and adds
    it to its L{Record.changes}.  The snapshot is dropped past the hooks
    (C{object.__setattr__}): a record changes some twenty times a request,
    and each change would go through them twice.
    """
    if record.snapshot is not None:
        object.__setattr__(record, "snapshot", None)
    changes = record.changes
    if changes is not None:
        changes.add(record)
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
    #: The kernel's OOM killer killed in its last run (its memory limit).
    oomKilled: bool = False
    #: Its health check (None: none; L{HealthCheck.disabled}: turned off).
    healthcheck: HealthCheck | None = None
    #: C{--user}, as given.
    user: str | None = None
    # The flags (manuallyStopped, interrupted, stopRequested, removing) are
    # set only by the lifecycle (pycm.backends.supervisor.lifecycle).
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
    #: Its health (None: no health check): C{starting} from its creation
    #: and at each start of a run, the last value kept while it is not
    #: running.  Not saved: a daemon that opens starts from C{starting}.
    health: Health | None = attrs.field(default=None, repr=False)
    #: The health monitor of its current run (a
    #: L{pycm.backends.supervisor.healthmonitor.HealthMonitor}), if any.
    healthMonitor: Any = attrs.field(default=None, repr=False)
    #: A change of this record waits to be written (a full disk).
    unsaved: bool = attrs.field(default=False, repr=False)
    run: IRun | None = attrs.field(default=None, repr=False)
    observer: RunObserver | None = attrs.field(default=None, repr=False)
    pendingRestart: IDelayedCall | None = attrs.field(default=None, repr=False)
    killTimer: IDelayedCall | None = attrs.field(default=None, repr=False)
    #: A client stop waits for the run's exit.
    stopRequested: bool = attrs.field(default=False, repr=False)
    #: C{rm --force} killed the run.
    removing: bool = attrs.field(default=False, repr=False)
    #: A client restart (or the health check's) stops the run to start
    #: it again: its exit does not end the C{healthy} waits.
    restartAsked: bool = attrs.field(default=False, repr=False)
    #: C{--health-on-failure=restart} stops the run: its exit is restarted
    #: after the restart policy's backoff, as a crash is.
    healthRestart: bool = attrs.field(default=False, repr=False)
    #: C{--health-on-failure=kill} killed the run: if the restart policy
    #: restarts its exit, the backoff is a failed health check's.
    healthKilled: bool = attrs.field(default=False, repr=False)
    #: Its current (or last) run passed a health check: a restart for
    #: C{--health-on-failure=restart} (or after C{kill}) then starts the
    #: backoff over.  Not saved: no run outlives the daemon (the next one
    #: stops it).
    healthySinceStart: bool = attrs.field(default=False, repr=False)
    removed: bool = attrs.field(default=False, repr=False)
    waiters: list[ConditionWaiter] = attrs.field(factory=list, repr=False)
    exitWaiters: list[Deferred[Container]] = attrs.field(factory=list, repr=False)
    followers: list[LogFollower] = attrs.field(factory=list, repr=False)
    lock: DeferredLock = attrs.field(factory=DeferredLock, repr=False)
    #: The last L{toContainer} value, until any field is set again.
    snapshot: Container | None = attrs.field(
        default=None, init=False, repr=False, on_setattr=attrs.setters.NO_OP
    )
    #: The records changed of the L{RecordsByName} it is in (it adds
    #: itself at each change), or None.
    changes: set[Record] | None = attrs.field(
        default=None, init=False, repr=False, on_setattr=attrs.setters.NO_OP
    )

    _PERSISTED = (
        "name", "id", "backend", "image", "state", "pid", "exitCode",
        "started", "finished", "restartCount", "stopTimeout", "stopSignal",
        "memory", "cpus", "workdir", "error", "manuallyStopped", "interrupted",
        "backoff", "startTime", "created", "runId", "user", "oomKilled",
    )  # fmt: skip

    def __attrs_post_init__(self) -> None:
        self.health = self.freshHealth()

    @property
    def checksHealth(self) -> bool:
        """Whether it has a health check (not none, not turned off)."""
        return self.healthcheck is not None and not self.healthcheck.disabled

    def freshHealth(self) -> Health | None:
        """Its health before any check: C{starting}, or None without a check."""
        return Health() if self.checksHealth else None

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
            oomKilled=self.oomKilled,
            health=self.health,
            healthcheck=self.healthcheck,
            user=self.user,
            saved=not self.unsaved,
        )

    def toDict(self) -> dict[str, Any]:
        """The JSON-able form saved in an L{IRecordStore}."""
        result: dict[str, Any] = {k: getattr(self, k) for k in self._PERSISTED}
        result.update(
            version=RECORD_VERSION,
            command=list(self.command),
            restartPolicy=str(self.restartPolicy),
            labels=dict(self.labels),
            env=dict(self.env),
            healthcheck=None if self.healthcheck is None else self.healthcheck.toJSON(),
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
            if data.get("version") != RECORD_VERSION:
                raise ValueError(f"unknown record version {data.get('version')!r}")
            checkRecord(data)
            fields = {k: data[k] for k in cls._PERSISTED if k in data}
            fields["command"] = tuple(data["command"])
            fields["restartPolicy"] = RestartPolicy.parse(data["restartPolicy"])
            fields["labels"] = dict(data.get("labels", {}))
            fields["env"] = dict(data.get("env", {}))
            if data.get("healthcheck") is not None:
                fields["healthcheck"] = HealthCheck.fromJSON(data["healthcheck"])
            return cls(**fields)
        except (KeyError, TypeError, ValueError, AttributeError, PycmError) as e:
            raise BackendError(f"corrupt container record: {e}") from e


def newRecord(
    spec: ContainerSpec, id: str, backend: str, runtime: IRuntime, created: float
) -> Record:
    """
    The record of a container created from C{spec} on C{runtime}.

    @raise NoImage: if the runtime lacks its image.
    @raise BadRequest: for a bad stop signal or timeout.
    """
    image = spec.image or runtime.defaultImage
    if image not in runtime.images:
        raise NoImage(image)
    stopTimeout = DEFAULT_STOP_TIMEOUT
    if spec.stopTimeout is not None:
        if spec.stopTimeout < 0:
            raise BadRequest(f"bad --stop-timeout {spec.stopTimeout}: negative")
        if spec.stopTimeout > MAX_STOP_TIMEOUT:
            raise BadRequest(
                f"bad --stop-timeout {spec.stopTimeout}: at most {MAX_STOP_TIMEOUT:g} seconds"
            )
        stopTimeout = float(spec.stopTimeout)
    return Record(
        name=spec.name,
        id=id,
        backend=backend,
        image=image,
        command=tuple(spec.command or runtime.defaultCommand),
        created=created,
        restartPolicy=spec.restartPolicy,
        labels=dict(spec.labels),
        env=dict(spec.env),
        stopTimeout=stopTimeout,
        stopSignal=signalName(parseSignal(spec.stopSignal or DEFAULT_STOP_SIGNAL)),
        memory=spec.memory,
        cpus=spec.cpus,
        workdir=spec.workdir,
        healthcheck=spec.healthcheck,
        user=spec.user,
    )


def specRefusals(spec: ContainerSpec, runtime: IRuntime) -> dict[str, str]:
    """
    What L{newRecord} would refuse of C{spec}: C{image} (not the runtime's)
    and C{stop-timeout} (out of range), each with why.
    """
    found: dict[str, str] = {}
    image = spec.image or runtime.defaultImage
    if image not in runtime.images:
        found["image"] = NoImage(image).message
    if spec.stopTimeout is not None and not 0 <= spec.stopTimeout <= MAX_STOP_TIMEOUT:
        found["stop-timeout"] = (
            f"bad --stop-timeout {spec.stopTimeout:g}: from 0 to {MAX_STOP_TIMEOUT:g} seconds"
        )
    return found


def scrubbed(record: Record, text: str) -> str:
    """C{text} for the log: without the container's command or option values."""
    return scrub(text, containerSecrets(record.command, record.env, record.labels, record.workdir))


class RecordsByName(Mapping[str, Record]):
    """
    The records, each by its name: a read-only mapping, but for
    C{records[name] = record} and C{del records[name]}, the only ways a
    record comes or goes.  And their listing (L{containers}): every
    record's frozen container, in the order they came, kept from one call
    to the next and brought up to date with the records changed since
    (each record adds itself to L{changed}); made again only after a
    record goes.  A list of 10,000 containers of which one changed visits
    one record.
    """

    def __init__(self) -> None:
        self._records: dict[str, Record] = {}
        #: The records changed (or added) since the listing was brought up to date.
        self.changed: set[Record] = set()
        #: The listing (the containers, each name's index in it), or None.
        self._listing: tuple[list[Container | None], dict[str, int]] | None = None

    def __getitem__(self, name: str) -> Record:
        return self._records[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._records)

    def __len__(self) -> int:
        return len(self._records)

    # The dict's own, read-only as Mapping's and quicker.

    def __contains__(self, name: object) -> bool:
        return name in self._records

    def get(self, name: str, default: Any = None) -> Any:
        return self._records.get(name, default)

    def keys(self) -> KeysView[str]:
        return self._records.keys()

    def values(self) -> ValuesView[Record]:
        return self._records.values()

    def items(self) -> ItemsView[str, Record]:
        return self._records.items()

    def __setitem__(self, name: str, record: Record) -> None:
        """C{record} is the record of C{name}, in place of any other."""
        old = self._records.get(name)
        if old is record:
            return
        if old is not None:
            self._let(old)
        record.changes = self.changed
        self.changed.add(record)
        listing = self._listing
        if listing is not None and old is None:
            # A new name goes last, in the dict as in the listing.
            listing[1][name] = len(listing[0])
            listing[0].append(None)
        self._records[name] = record

    def __delitem__(self, name: str) -> None:
        """The record of C{name} goes: the listing is made again next time."""
        self._let(self._records.pop(name))
        self._listing = None

    def _let(self, record: Record) -> None:
        """C{record} is no longer one of these: its changes are not ours."""
        record.changes = None
        self.changed.discard(record)

    def containers(self) -> list[Container]:
        """Every record's L{Record.toContainer}, in this mapping's order (a new list)."""
        listing = self._listing
        if listing is None:
            records = self._records
            containers: list[Container | None] = [r.toContainer() for r in records.values()]
            listing = self._listing = (containers, {name: i for i, name in enumerate(records)})
        else:
            containers, index = listing
            for record in self.changed:
                containers[index[record.name]] = record.toContainer()
        self.changed.clear()
        return listing[0].copy()  # type: ignore[return-value]


class RecordBook:
    """
    The records by name, and their saving, in two kinds (see
    L{pycm.backends.supervisor.recordwriter}): L{saveNow} before doing what
    needs the record on disk, L{saveChange} after a change already made.
    Both are group commits (L{pycm.groupcommit}): what waits for a save to
    be durable goes through L{commits}.

    @param clock: schedules the writes that wait.
    @param store: where records are kept.
    @param commits: the group of writes (default: an immediate one).
    @ivar byName: the records, by container name.
    """

    def __init__(
        self, clock: IReactorTime, store: IRecordStore, commits: GroupCommit | None = None
    ) -> None:
        self.byName = RecordsByName()
        #: The record of each name whose change is not known written yet.
        self._writing: dict[str, Record] = {}
        self._writer = RecordWriter(clock, store, self._outcome, commits)
        self.commits = self._writer.commits

    def lookup(self, name: str) -> Record:
        """
        The record of C{name}.

        @raise NotFound: if there is none.
        """
        record = self.byName.get(name)
        if record is None:
            raise NotFound(name)
        return record

    def checkCurrent(self, record: Record) -> None:
        """Raise L{NotFound} if C{record} was removed while an op waited."""
        if self.byName.get(record.name) is not record:
            raise NotFound(record.name)

    def saveNow(self, record: Record) -> Deferred[None]:
        """
        Save C{record} before anything is done that needs it on disk.

        @return: fires once it is saved, or fails with L{BackendError}.
        """
        self._writing[record.name] = record
        return self._writer.saveNow(record.name, record.toDict)

    def saveChange(self, record: Record) -> None:
        """Save a change already made; if it cannot be now, it waits."""
        self._writing[record.name] = record
        self._writer.save(record.name, record.toDict)

    def forget(self, record: Record) -> None:
        """Drop C{record} and its saved form (or its deletion waits)."""
        self._writing[record.name] = record
        del self.byName[record.name]
        self._writer.delete(record.name)

    def _outcome(self, name: str, written: bool) -> None:
        """Whether the change of C{name} was written: its C{saved} flag."""
        record = self._writing.get(name)
        if record is None:
            return
        record.unsaved = not written
        if written:
            del self._writing[name]

    def whenDurable(self, result: Any, record: Record) -> Deferred[Any]:
        """
        C{result} (an operation's on C{record}), once every change so far is
        durable; a container's C{saved} as it then is.
        """

        def saved(result: Any) -> Any:
            if isinstance(result, Container) and result.saved == record.unsaved:
                return attrs.evolve(result, saved=not record.unsaved)
            return result

        return self.commits.whenDurable(result).addCallback(saved)

    def close(self) -> None:
        """Write what waits, a last time; say what is lost."""
        self._writer.close()
