"""
The health checks of the supervisor's records.  L{HealthMonitor} runs the
checks of one run on the clock, by Docker's rule: the first one
C{interval} after the run started, each next one C{interval} after the
previous one ended (never two at once), each through the runtime's
L{IRuntimeHealth}.  L{HealthChecks} starts and stops the monitors, folds
each result into the record's health (L{pycm.health.Health.after}, the
start period measured from the run's start), and when the status changes
emits C{health_status}, wakes the waiters of C{healthy} and C{unhealthy}
and hands a container that turned unhealthy to its C{--health-on-failure}.

A record's health is kept in memory only: a change is not saved (a daemon
that opens shows C{starting} until the first check of a new run).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, TimeoutError, maybeDeferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from pycm.backends.supervisor.records import scrubbed
from pycm.backends.supervisor.watching import wakeHealth
from pycm.health import Health, HealthCheck, HealthResult, HealthStatus, OnFailure
from pycm.interfaces import IRuntime, IRuntimeHealth
from pycm.units import formatDuration

if TYPE_CHECKING:
    from pycm.backends.supervisor.records import Record

#: Seconds past a check's timeout after which the supervisor gives up on a
#: runtime that has not answered (a runtime ends a check at its timeout).
ANSWER_GRACE = 5.0


class HealthMonitor:
    """
    Runs the checks of one run: see the module docstring.

    @param clock: where the checks are scheduled.
    @param probe: runs one check, given its timeout: a Deferred firing with
        its L{HealthResult} (cancelling it ends the check).
    @param check: the health check (its C{interval} and C{timeout}).
    @param onResult: called with each check's result.
    """

    def __init__(
        self,
        clock: IReactorTime,
        probe: Callable[[float], Deferred[HealthResult]],
        check: HealthCheck,
        onResult: Callable[[HealthResult], None],
    ) -> None:
        self._clock = clock
        self._probe = probe
        self._check = check
        self._onResult = onResult
        self._timer: IDelayedCall | None = None
        self._inFlight: Deferred[HealthResult] | None = None
        #: L{stop} was called: no check starts, none is reported.
        self.stopped = False

    @property
    def checking(self) -> bool:
        """Whether a check is running now."""
        return self._inFlight is not None

    def start(self) -> None:
        """Schedule the first check, one interval from now (the run's start)."""
        self._schedule()

    def _schedule(self) -> None:
        self._timer = self._clock.callLater(self._check.interval, self._run)

    def _run(self) -> None:
        self._timer = None
        start = self._clock.seconds()
        d = maybeDeferred(self._probe, self._check.timeout)
        self._inFlight = d
        d.addTimeout(self._check.timeout + ANSWER_GRACE, self._clock)
        d.addErrback(self._unanswered, start)
        d.addCallback(self._checked)

    def _unanswered(self, failure: Failure, start: float) -> HealthResult | None:
        """A probe that failed (a runtime's bug) or never answered: -1."""
        if self.stopped:
            return None
        grace = formatDuration(self._check.timeout + ANSWER_GRACE)
        why = (
            f"the health check did not end within {grace}"
            if failure.check(TimeoutError)
            else f"the health check could not be run: {failure.value}"
        )
        return HealthResult(start, self._clock.seconds(), -1, why)

    def _checked(self, result: HealthResult | None) -> None:
        self._inFlight = None
        if self.stopped or result is None:
            return
        self._onResult(result)
        if not self.stopped:
            self._schedule()

    def stop(self) -> None:
        """No more checks; a check in flight is cancelled (and not reported)."""
        self.stopped = True
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()
        inFlight, self._inFlight = self._inFlight, None
        if inFlight is not None:
            inFlight.cancel()


class HealthChecks:
    """
    The health checks of every record: see the module docstring.

    @param clock: where the checks are scheduled.
    @param runtime: runs the checks, if it provides L{IRuntimeHealth}.
    @param emit: emits C{health_status}: the record and its new status.
    @param onUnhealthy: called with the record and its C{--health-on-failure}
        (not C{none}) when it turns unhealthy; its Deferred's failure is
        logged.
    """

    _log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        runtime: IRuntime,
        emit: Callable[[Record, str], None],
        onUnhealthy: Callable[[Record, str], Deferred[Any]],
    ) -> None:
        self._clock = clock
        self._prober: IRuntimeHealth | None = IRuntimeHealth(runtime, None)
        self._emit = emit
        self._onUnhealthy = onUnhealthy

    @property
    def available(self) -> bool:
        """Whether the runtime can run health checks."""
        return self._prober is not None

    def begin(self, record: Record) -> None:
        """
        A run of C{record} started (C{record.run}, C{record.started} set):
        its health is C{starting} again (no streak, the results of the
        last runs kept), and its checks begin.
        """
        self.end(record)
        # Docker's: starting again, no streak; the log of the last runs kept.
        last = record.health
        record.health = record.freshHealth()
        record.healthySinceStart = False
        if last is not None and record.health is not None:
            record.health = Health(log=last.log)
        check, run, prober = record.healthcheck, record.run, self._prober
        if not record.checksHealth or check is None or run is None or prober is None:
            return
        started = record.started if record.started is not None else self._clock.seconds()

        def probe(timeout: float) -> Deferred[HealthResult]:
            return prober.probe(record.toContainer(), run, timeout)

        def onResult(result: HealthResult) -> None:
            self._result(record, monitor, check, started, result)

        monitor = HealthMonitor(self._clock, probe, check, onResult)
        record.healthMonitor = monitor
        monitor.start()

    def end(self, record: Record) -> None:
        """C{record}'s run ends (or is being ended): its checks stop."""
        monitor, record.healthMonitor = record.healthMonitor, None
        if monitor is not None:
            monitor.stop()

    def _result(
        self,
        record: Record,
        monitor: HealthMonitor,
        check: HealthCheck,
        started: float,
        result: HealthResult,
    ) -> None:
        if record.healthMonitor is not monitor:
            return
        before = record.health if record.health is not None else Health()
        # Docker's rule: failures do not count while it has never been
        # healthy and the check started within the start period.
        inStartPeriod = (
            before.status == HealthStatus.STARTING and result.start - started < check.startPeriod
        )
        after = before.after(check, result, inStartPeriod)
        record.health = after
        if after.status == HealthStatus.HEALTHY:
            # Its --health-on-failure=restart starts the backoff over.
            record.healthySinceStart = True
        if after.status == before.status:
            return
        # Neither the command nor its output: either may hold a secret.
        self._log.info("{name} is {status}", name=record.name, status=after.status)
        self._emit(record, after.status)
        wakeHealth(record, after.status)
        if after.status == HealthStatus.UNHEALTHY and check.onFailure != OnFailure.NONE:
            self.end(record)
            d = maybeDeferred(self._onUnhealthy, record, check.onFailure)
            d.addErrback(self._actionFailed, record, check.onFailure)

    def _actionFailed(self, failure: Failure, record: Record, onFailure: str) -> None:
        self._log.warn(
            "{name} is unhealthy but could not be {done}: {error}",
            name=record.name,
            done={OnFailure.STOP: "stopped", OnFailure.KILL: "killed"}.get(onFailure, "restarted"),
            error=scrubbed(record, str(failure.value)),
        )
