"""
The runs of the supervisor's records: starting one (its run id saved
first), signalling it, stopping it with SIGKILL after the stop timeout,
its output, its exit, and the automatic restart its policy asks for; the
health checks of a run begin when it starts and stop when it is stopped
or ends.
"""

from __future__ import annotations

import signal as _signal
import uuid
from collections.abc import Callable
from functools import partial
from typing import Any

from twisted.internet.defer import Deferred, fail, gatherResults, maybeDeferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from pycm.backends.supervisor.healthmonitor import HealthChecks
from pycm.backends.supervisor.lifecycle import Event, Lifecycle
from pycm.backends.supervisor.records import Record, RecordBook, scrubbed
from pycm.backends.supervisor.restartpolicy import (
    nextBackoff,
    nextHealthBackoff,
    restartsAfterExit,
)
from pycm.backends.supervisor.runobserver import RunObserver
from pycm.backends.supervisor.watching import waitForExit
from pycm.errors import BackendError, NotFound, PycmError, Unavailable
from pycm.interfaces import ILogStore, IRun, IRuntime
from pycm.model import Action, Container, LogLine, State, parseSignal
from pycm.units import MAX_STOP_TIMEOUT

#: C{error} of containers that the daemon's shutdown stopped.
SHUTDOWN_ERROR = "daemon shut down"
#: The reply to create/start/restart while the daemon shuts down.
CLOSING_ERROR = "the daemon is shutting down"
#: The longest the daemon's shutdown lets a container have for its stop
#: signal before SIGKILL (its own stop timeout if shorter), by default; the
#: same bound holds for the runs a dead daemon left, at start.
SHUTDOWN_TIMEOUT = 30.0
#: How long the shutdown then waits for the runs it sent SIGKILL to (a
#: process in uninterruptible sleep) before it goes on without them.
SHUTDOWN_KILL_WAIT = 5.0


class Runs:
    """
    Starts and stops the runs of records, and hears how they end.

    @param clock: the time source, and where timers are scheduled.
    @param runtime: starts runs.
    @param logStore: keeps their output.
    @param book: the records, and their saving.
    @param lifecycle: moves the records.
    @param emit: emits an event: its action, the record, the exit code.
    @param health: runs the health checks of the runs.
    @ivar closing: the daemon shuts down: no new run is started, and the
        runs that end are not restarted.
    """

    _log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        runtime: IRuntime,
        logStore: ILogStore,
        book: RecordBook,
        lifecycle: Lifecycle,
        emit: Callable[[str, Record, int | None], None],
        health: HealthChecks,
    ) -> None:
        self._clock = clock
        self._health = health
        self._runtime = runtime
        self._logStore = logStore
        self._book = book
        self._lifecycle = lifecycle
        self._emit = emit
        self.closing = False
        #: Spawns not settled yet, and who waits for there to be none.
        self.inFlight = 0
        self._idleWaiters: list[Deferred[None]] = []

    def idle(self) -> Deferred[None]:
        """Fires once no spawn is in flight (at once if none is)."""
        if not self.inFlight:
            return succeed(None)
        idle: Deferred[None] = Deferred()
        self._idleWaiters.append(idle)
        return idle

    def prepare(self, record: Record) -> RunObserver:
        """
        Give C{record} the observer and the run id of its next run (the id
        must be saved before that run is spawned: L{spawn}).
        """
        observer = RunObserver(partial(self._output, record), partial(self._exited, record))
        record.observer = observer
        record.runId = uuid.uuid4().hex
        return observer

    def spawn(
        self, record: Record, auto: bool, prepared: RunObserver | None = None
    ) -> Deferred[Container]:
        """
        Start one run of C{record}; fires once it is running.  The run's id
        is saved first (a daemon that dies before the run is saved as
        running leaves it for the next one to stop); if it cannot be saved,
        nothing is spawned and the start fails.

        @param prepared: the observer L{prepare} gave, when the record was
            saved durably since, with that run id (a new container's first
            run: its creation saved it): spawned at once.
        """
        if self.closing:
            if prepared is not None and record.observer is prepared:
                record.observer = None
            return fail(Unavailable(CLOSING_ERROR))
        d: Deferred[IRun]
        if prepared is None:
            observer = self.prepare(record)
            # Spawned only once the run id is durable (a group commit).
            d = self._book.saveNow(record).addCallback(self._spawnSaved, record, observer)
        else:
            observer = prepared
            d = self._spawnSaved(None, record, observer)
        self.inFlight += 1
        d.addCallbacks(
            self._spawned,
            self._spawnFailed,
            callbackArgs=(record, observer, auto),
            errbackArgs=(record, observer),
        )
        return d.addBoth(self._settled)

    def _spawnSaved(self, _: object, record: Record, observer: RunObserver) -> Deferred[IRun]:
        return maybeDeferred(self._spawnNow, record, observer)

    def _spawnNow(self, record: Record, observer: RunObserver) -> Deferred[IRun]:
        # Nothing runs whose output could not be kept safely (a file planted
        # where its log goes): the start fails, saying why.  A log store
        # written before prepare existed has none: nothing to check.
        prepare = getattr(self._logStore, "prepare", None)
        if prepare is not None:
            prepare(record.name)
        return self._runtime.spawn(
            record.toContainer(),
            observer,
            runId=record.runId,  # type: ignore[call-arg]
        )

    def _settled(self, result: Any) -> Any:
        """A spawn is over: wake L{idle}'s waiters once none is in flight."""
        self.inFlight -= 1
        if not self.inFlight:
            waiters, self._idleWaiters = self._idleWaiters, []
            for waiter in waiters:
                waiter.callback(None)
        return result

    def _spawned(self, run: IRun, record: Record, observer: RunObserver, auto: bool) -> Container:
        if record.observer is not observer or record.removed:
            run.signal(_signal.SIGKILL)
            raise NotFound(record.name)
        observer.attached = True
        record.run = run
        record.pid = run.pid
        record.startTime = run.startTime
        record.started = self._clock.seconds()
        record.finished = None
        record.exitCode = None
        record.error = None
        record.oomKilled = False
        self._health.begin(record)
        # The run id was saved before the spawn: should this save have to
        # wait, a daemon that dies meanwhile still finds and stops the run.
        self._lifecycle.move(record, Event.RESPAWNED if auto else Event.SPAWNED)
        snapshot = record.toContainer()
        if observer.pendingExit:
            self._exited(record, observer, observer.pendingExit[0])
        return snapshot

    def _spawnFailed(self, failure: Failure, record: Record, observer: RunObserver) -> Failure:
        if record.observer is observer:
            record.observer = None
        reason = str(failure.value) or repr(failure.value)
        self._log.warn(
            "{name} could not be started: {reason}",
            name=record.name,
            reason=scrubbed(record, reason),
        )
        record.run = None
        record.pid = None
        record.startTime = None
        record.error = reason
        record.exitCode = None
        record.oomKilled = False
        record.finished = self._clock.seconds()
        self._lifecycle.move(record, Event.SPAWN_FAILED)
        if isinstance(failure.value, BackendError):
            return failure
        return Failure(BackendError(f"could not start {record.name}: {reason}"))

    def signal(self, record: Record, signum: int) -> None:
        """Send C{signum} to C{record}'s run, if it has one."""
        run = record.run
        if run is None:
            return
        try:
            run.signal(signum)
        except Exception:
            self._log.failure("signalling {name}", name=record.name)

    def terminate(self, record: Record, timeout: float | None) -> Deferred[Container]:
        """
        Stop signal, then SIGKILL after C{timeout}; fires after the exit
        (a client stop is recorded first: L{Lifecycle.stopAsked}).
        """
        d = waitForExit(record)
        if timeout is None:
            timeout = record.stopTimeout
        # A record saved before stop timeouts were bounded keeps its own.
        timeout = min(timeout, MAX_STOP_TIMEOUT)
        deadline = self._clock.seconds() + max(timeout, 0)
        timer = record.killTimer
        if timer is not None and timer.active() and timer.getTime() > deadline:
            timer.reset(max(timeout, 0))
        if record.state == State.RUNNING:
            self._health.end(record)
            self._lifecycle.move(record, Event.STOP_SIGNALLED)
            record.killTimer = self._clock.callLater(
                max(timeout, 0), self._escalate, record, record.observer
            )
            self.signal(record, self.stopSignal(record))
        return d

    def shutdown(self, records: list[Record], limit: float) -> Deferred[None]:
        """
        The daemon's shutdown: stop every run of C{records} (its stop
        signal, SIGKILL after its stop timeout, at most C{limit} seconds,
        also for a client's stop already waiting longer) and drop pending
        restarts.  Fires once every run has exited, or L{SHUTDOWN_KILL_WAIT}
        seconds after C{limit} whatever is left: those runs are let go of,
        their records left as saved (alive, with their pids) for the next
        daemon to reclaim.  One that fails to stop is logged, never cuts
        the others short.
        """
        stopping = []
        for record in records:
            self._health.end(record)
            try:
                if record.state == State.RESTARTING:
                    self.cancelRestart(record)
                    record.error = SHUTDOWN_ERROR
                    self._lifecycle.dropRestart(record, byClient=False)
                elif record.state in State.ALIVE and record.run is not None:
                    timeout = min(record.stopTimeout, limit)
                    stopping.append(self.terminate(record, max(timeout, 0)))
            except Exception:
                self._log.failure("stopping {name} at shutdown", name=record.name)
        done: Deferred[None] = Deferred()
        if not stopping:
            done.callback(None)
            return done

        def giveUp() -> None:
            left = [r for r in records if r.state in State.ALIVE and r.run is not None]
            self._log.warn(
                "{count} containers still running {seconds}s after SIGKILL at shutdown,"
                " left for the next daemon to reclaim: {names}",
                count=len(left),
                seconds=SHUTDOWN_KILL_WAIT,
                names=", ".join(sorted(r.name for r in left)),
            )
            for record in left:
                # A late exit is not told to a closed book.
                record.observer = None
            done.callback(None)

        timer = self._clock.callLater(max(limit, 0) + SHUTDOWN_KILL_WAIT, giveUp)

        def stopped(_: object) -> None:
            if timer.active():
                timer.cancel()
                done.callback(None)

        gatherResults(stopping, consumeErrors=True).addBoth(stopped)
        return done

    def stopSignal(self, record: Record) -> int:
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

    def _escalate(self, record: Record, observer: RunObserver | None) -> None:
        record.killTimer = None
        if record.observer is not observer or record.run is None:
            return
        self._emit(Action.KILL, record, None)
        self.signal(record, _signal.SIGKILL)

    def cancelRestart(self, record: Record) -> None:
        """Drop C{record}'s pending automatic restart, if any."""
        call, record.pendingRestart = record.pendingRestart, None
        if call is not None and call.active():
            call.cancel()

    def _output(
        self, record: Record, observer: RunObserver, stream: str, lines: list[bytes]
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

    def _exited(self, record: Record, observer: RunObserver, exitCode: int | None) -> None:
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
        self._health.end(record)
        timer, record.killTimer = record.killTimer, None
        if timer is not None and timer.active():
            timer.cancel()
        now = self._clock.seconds()
        duration = None if record.started is None else now - record.started
        # A runtime's run may say the kernel's OOM killer killed in it.
        record.oomKilled = getattr(record.run, "oomKilled", False) is True
        record.run = None
        record.observer = None
        record.pid = None
        record.startTime = None
        record.exitCode = exitCode
        record.finished = now
        # The exit's move clears stopRequested.
        event = Event.STOPPED if record.stopRequested else Event.EXITED
        # A stop for --health-on-failure=restart restarts, whatever the policy.
        unhealthy, record.healthRestart = record.healthRestart, False
        healthKilled, record.healthKilled = record.healthKilled, False
        if self.closing and not record.manuallyStopped:
            record.error = SHUTDOWN_ERROR
            self._lifecycle.interrupt(record)
        elif not record.removing and (
            (unhealthy and not record.manuallyStopped) or restartsAfterExit(record, exitCode)
        ):
            # A failed health check's restart (or the policy's, after its
            # kill): by whether the run was ever healthy, not by its length
            # (never under interval x retries).
            record.backoff = (
                nextHealthBackoff(record.backoff, record.healthySinceStart)
                if unhealthy or healthKilled
                else nextBackoff(record.backoff, duration)
            )
            record.pendingRestart = self._clock.callLater(record.backoff, self._autoRestart, record)
            event = Event.EXITED_TO_RESTART
        self._log.info("{name} exited with {exitCode}", name=record.name, exitCode=exitCode)
        if record.oomKilled:
            self._log.info("{name}: the kernel's OOM killer killed in it", name=record.name)
            self._emit(Action.OOM, record, None)
        self._lifecycle.move(record, event, exitCode)

    def _autoRestart(self, record: Record) -> None:
        record.pendingRestart = None

        def restartLocked() -> Deferred[Container | None] | None:
            if self._book.byName.get(record.name) is not record:
                return None
            if record.state != State.RESTARTING or self.closing:
                return None
            record.restartCount += 1
            # A failed start is already recorded (the container is dead) and
            # nobody waits for an automatic restart: swallow the failure.
            return self.spawn(record, auto=True).addErrback(lambda _: None)

        record.lock.run(restartLocked)
