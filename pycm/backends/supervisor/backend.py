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

from twisted.internet.defer import (
    Deferred,
    fail,
    gatherResults,
    maybeDeferred,
    succeed,
)
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from pycm.backends.supervisor.lifecycle import Event, Lifecycle
from pycm.backends.supervisor.records import Record, RecordBook, scrubbed
from pycm.backends.supervisor.recovery import LOST_ERROR as LOST_ERROR
from pycm.backends.supervisor.recovery import RECLAIMED_ERROR as RECLAIMED_ERROR
from pycm.backends.supervisor.recovery import STARTING_ERROR as STARTING_ERROR
from pycm.backends.supervisor.recovery import Recovery
from pycm.backends.supervisor.restartpolicy import comesBackAtOpen
from pycm.backends.supervisor.runs import CLOSING_ERROR, Runs
from pycm.backends.supervisor.runs import SHUTDOWN_ERROR as SHUTDOWN_ERROR
from pycm.backends.supervisor.watching import endFollowers, follow, waitFor, waitForExit
from pycm.capabilities import Capabilities
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
    IRuntime,
    IRuntimeStats,
)
from pycm.model import (
    DEFAULT_STOP_SIGNAL,
    DEFAULT_STOP_TIMEOUT,
    Action,
    Container,
    ContainerEvent,
    ContainerSpec,
    LogFollow,
    LogLine,
    State,
    WaitCondition,
    parseSignal,
    signalName,
)
from pycm.stats import ContainerStats, CpuSampler


def defaultIdFactory() -> str:
    """A fresh container id: 32 hex digits."""
    return uuid.uuid4().hex


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
    ) -> None:
        self._clock = clock
        self.name = backendName
        self._runtime = runtime
        self._logStore = logStore
        self._recordStore = recordStore
        self._idFactory = idFactory
        self._book = RecordBook(clock, recordStore)
        #: The records by name (the book's).
        self._records = self._book.byName
        self._observers: list[Callable[[ContainerEvent], None]] = []
        self.lifecycle = Lifecycle(self._book.saveChange, self._emit)
        self._runs = Runs(clock, runtime, logStore, self._book, self.lifecycle, self._emit)
        self._recovery = Recovery(
            clock, backendName, runtime, recordStore, self._book, self.lifecycle
        )
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

    @property
    def _closing(self) -> bool:
        return self._runs.closing

    # -- open / close -------------------------------------------------------

    def open(self) -> Deferred[None]:
        d = Deferred.fromCoroutine(self._recovery.recover())
        return d.addCallback(self._bringBackAll)

    def _bringBackAll(self, _: object) -> Deferred[None]:
        """Start again what comes back when the daemon opens."""
        back = [r for r in self._records.values() if comesBackAtOpen(r)]
        d = gatherResults([r.lock.run(self._bringBack, r) for r in back], consumeErrors=True)
        return d.addCallback(lambda _: None)

    def _bringBack(self, record: Record) -> Deferred[Container | None]:
        if self._closing:
            return succeed(None)
        self.lifecycle.startAsked(record)
        d = self._runs.spawn(record, auto=False)

        def failed(f: Failure) -> None:
            self._log.warn(
                "could not bring back {name}: {error}",
                name=record.name,
                error=scrubbed(record, str(f.value)),
            )

        return d.addErrback(failed)

    def close(self) -> Deferred[None]:
        # New starts are refused from here on; starts in flight are let
        # finish, so that what they started is stopped below.
        self._runs.closing = True
        return self._runs.idle().addCallback(self._stopAll)

    def _stopAll(self, _: object) -> Deferred[None]:
        # Every container is stopped and saved before close fires (and the
        # stores can be closed): one that fails to is logged, never cuts
        # the others short.
        stopping = []
        for record in list(self._records.values()):
            try:
                if record.state == State.RESTARTING:
                    self._runs.cancelRestart(record)
                    record.error = SHUTDOWN_ERROR
                    self.lifecycle.dropRestart(record, byClient=False)
                elif record.state in State.ALIVE and record.run is not None:
                    stopping.append(self._runs.terminate(record, None))
            except Exception:
                self._log.failure("stopping {name} at shutdown", name=record.name)
        return gatherResults(stopping, consumeErrors=True).addCallback(self._closed)

    def _closed(self, _: object) -> None:
        for record in self._records.values():
            endFollowers(record)
        self._book.close()

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

    # -- operations ---------------------------------------------------------

    def create(self, spec: ContainerSpec) -> Deferred[Container]:
        return maybeDeferred(self._create, spec)

    def _create(self, spec: ContainerSpec) -> Container:
        if self._closing:
            raise Unavailable(CLOSING_ERROR)
        if spec.name in self._records:
            raise Conflict(f'container name "{spec.name}" is already in use')
        self.capabilities.refuseUnsupported(self.name, spec)
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
        self._book.saveNow(record)
        self._records[record.name] = record
        self._emit(Action.CREATE, record)
        return record.toContainer()

    def start(self, name: str) -> Deferred[Container]:
        try:
            if self._closing:
                raise Unavailable(CLOSING_ERROR)
            record = self._book.lookup(name)
        except PycmError as e:
            return fail(e)
        return record.lock.run(self._startLocked, record)

    def _startLocked(self, record: Record) -> Deferred[Container]:
        self._book.checkCurrent(record)
        if record.state in State.ALIVE:
            return succeed(record.toContainer())
        if self._closing:
            raise Unavailable(CLOSING_ERROR)
        self._runs.cancelRestart(record)
        self.lifecycle.startAsked(record)
        record.restartCount = 0
        record.backoff = 0.0
        return self._runs.spawn(record, auto=False)

    def stop(self, name: str, timeout: float | None) -> Deferred[Container]:
        try:
            record = self._book.lookup(name)
        except NotFound as e:
            return fail(e)
        return record.lock.run(self._stopLocked, record, timeout)

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
        return succeed(record.toContainer())

    def remove(self, name: str, force: bool) -> Deferred[Container | None]:
        try:
            record = self._book.lookup(name)
        except NotFound as e:
            return fail(e)
        if force:
            self._forceKill(record)
        return record.lock.run(self._removeLocked, record, force)

    def _forceKill(self, record: Record) -> None:
        """The immediate half of C{remove --force}."""
        if record.state == State.RESTARTING:
            self._runs.cancelRestart(record)
            self.lifecycle.dropRestart(record, byClient=True)
        elif record.state in State.ALIVE and record.run is not None:
            self.lifecycle.removeAsked(record)
            self._runs.signal(record, _signal.SIGKILL)

    def _removeLocked(self, record: Record, force: bool) -> Deferred[Container | None]:
        self._book.checkCurrent(record)
        if record.state in State.ALIVE or record.state == State.RESTARTING:
            if not force:
                raise Conflict(
                    f"cannot remove container {record.name}: it is {record.state};"
                    " stop it first or use --force"
                )
            self._forceKill(record)
            if record.state in State.ALIVE:
                d = waitForExit(record)

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
        self._book.checkCurrent(record)
        self._book.forget(record)
        try:
            self._logStore.remove(record.name)
        except Exception:
            # The container is gone; its stray log files must not make the
            # removal half-fail.
            self._log.failure("removing the logs of {name}", name=record.name)
        self.lifecycle.move(record, Event.REMOVED)
        return record.toContainer() if record.unsaved else None

    def list(self) -> Deferred[list[Container]]:
        return succeed([self._records[name].toContainer() for name in sorted(self._records)])

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
        try:
            if names:
                records = [self._book.lookup(name) for name in dict.fromkeys(names)]
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
            self._book.lookup(name)
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
            record = self._book.lookup(name)
            backlog = self._tail(name, tail, since)
        except Exception as e:
            return fail(e)
        ends = record.state in (State.CREATED, State.EXITED, State.DEAD) and (
            record.observer is None
        )
        ended, cancel = follow(record, observer, ends)
        return succeed(LogFollow(backlog, ended, cancel))

    def wait(self, name: str, condition: str) -> Deferred[Container]:
        try:
            record = self._book.lookup(name)
        except NotFound as e:
            return fail(e)
        if condition not in WaitCondition.ALL:
            return fail(BadRequest(f"unknown wait condition {condition!r}"))
        alive = record.state in State.ALIVE
        if (condition == WaitCondition.NOT_RUNNING and not alive) or (
            condition == WaitCondition.RUNNING and alive
        ):
            return succeed(record.toContainer())

        return waitFor(record, condition)
