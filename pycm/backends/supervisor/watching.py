"""
Who waits on a container: the waiters of C{wait} (a condition), the stops
and removals that wait for its run to exit, and the followers of its log.
Functions on a L{Record}'s lists; the supervisor calls them.

A C{healthy} waiter fails (L{BackendError} saying why) once the container
turns C{unhealthy}, or ends and will not be restarted (C{exited}, C{dead},
removed) first; an C{unhealthy} one waits across runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import attrs
from twisted.internet.defer import Deferred, fail, succeed

from pycm.errors import BackendError, BadRequest, NotFound
from pycm.health import HealthStatus
from pycm.interfaces import ILogStore
from pycm.model import Container, LogLine, State, WaitCondition

if TYPE_CHECKING:
    from pycm.backends.supervisor.records import Record

#: What wakes which conditions: a start, an exit, the end of a pending
#: restart (C{ended}: no run to wait for), the removal.
_WOKEN_BY = {
    "start": frozenset({WaitCondition.RUNNING}),
    "exit": frozenset({WaitCondition.NOT_RUNNING, WaitCondition.NEXT_EXIT}),
    "ended": frozenset(),
    "removed": frozenset(WaitCondition.ALL),
}


@attrs.define(eq=False)
class ConditionWaiter:
    """A C{wait} for C{condition}, fired with the container when it holds."""

    condition: str
    deferred: Deferred[Container]


@attrs.define(eq=False)
class LogFollower:
    """A follower of a container's log: C{ended} fires when following ends."""

    observer: Callable[[LogLine], None]
    ended: Deferred[None]


def waitFor(record: Record, condition: str) -> Deferred[Container]:
    """A new waiter for C{condition} on C{record}; cancelling drops it."""

    def cancel(d: Deferred[Container]) -> None:
        if waiter in record.waiters:
            record.waiters.remove(waiter)

    waiter = ConditionWaiter(condition, Deferred(cancel))
    record.waiters.append(waiter)
    return waiter.deferred


def waitForExit(record: Record) -> Deferred[Container]:
    """Fires with C{record}'s container after its run's exit."""
    d: Deferred[Container] = Deferred()
    record.exitWaiters.append(d)
    return d


def wake(record: Record, what: str) -> None:
    """
    Fire the waiters that C{what} (start, exit, ended, removed) satisfies;
    fail the C{healthy} ones if the container ended for good.
    """
    if what == "removed":
        _failHealthy(record, f"container {record.name} was removed before it was healthy")
    elif what in ("exit", "ended") and record.state in (State.EXITED, State.DEAD):
        if not record.restartAsked:
            _failHealthy(record, _endedBeforeHealthy(record))
    conditions = _WOKEN_BY[what]
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


def waitForHealth(record: Record, condition: str) -> Deferred[Container]:
    """
    A wait for C{healthy} or C{unhealthy}: C{healthy} holds at once if it
    is running and healthy, fails at once if it runs and is unhealthy or
    if it ended (C{exited}, C{dead}); C{unhealthy} holds at once if its
    health (the last one, if it is not running) is unhealthy.

    @raise BadRequest: (as the Deferred's failure) if it has no health check.
    """
    health = record.health
    if health is None:
        return fail(BadRequest(f"container {record.name} has no health check"))
    if condition == WaitCondition.UNHEALTHY:
        if health.status == HealthStatus.UNHEALTHY:
            return succeed(record.toContainer())
    elif record.state in (State.EXITED, State.DEAD):
        return fail(BackendError(_endedBeforeHealthy(record)))
    elif record.state == State.RUNNING and health.status == HealthStatus.HEALTHY:
        return succeed(record.toContainer())
    elif record.state == State.RUNNING and health.status == HealthStatus.UNHEALTHY:
        return fail(BackendError(_unhealthy(record)))
    return waitFor(record, condition)


def wakeHealth(record: Record, status: str) -> None:
    """
    C{record}'s health turned C{status}: fire the waiters of that status;
    on C{unhealthy}, fail those of C{healthy}.
    """
    snapshot = record.toContainer()
    if status == HealthStatus.UNHEALTHY:
        _failHealthy(record, _unhealthy(record))
    fired = [w for w in record.waiters if w.condition == status]
    record.waiters = [w for w in record.waiters if w not in fired]
    for waiter in fired:
        waiter.deferred.callback(snapshot)


def _failHealthy(record: Record, why: str) -> None:
    failed = [w for w in record.waiters if w.condition == WaitCondition.HEALTHY]
    if not failed:
        return
    record.waiters = [w for w in record.waiters if w not in failed]
    for waiter in failed:
        waiter.deferred.errback(BackendError(why))


def _unhealthy(record: Record) -> str:
    streak = record.health.failingStreak if record.health is not None else 0
    return (
        f"container {record.name} is unhealthy: its health check failed"
        f" {streak} time{'s' if streak != 1 else ''} in a row"
    )


def _endedBeforeHealthy(record: Record) -> str:
    if record.removing:
        return f"container {record.name} was removed before it was healthy"
    if record.state == State.DEAD:
        return f"container {record.name} is dead before it was healthy: {record.error}"
    if record.exitCode is None:
        return f"container {record.name} exited before it was healthy"
    return f"container {record.name} exited with {record.exitCode} before it was healthy"


def tailLog(
    logStore: ILogStore, name: str, tail: int | None, since: float | None = None
) -> list[LogLine]:
    """The last C{tail} lines (None: all) of C{name}'s log, since C{since}."""
    if tail is not None and tail <= 0:
        return []
    if since is None:
        return list(logStore.tail(name, tail))
    # Every line kept (as much as the store reads at once), then those
    # since C{since}, then the last C{tail} of them.
    lines = [line for line in logStore.tail(name, None) if line.time >= since]
    return lines if tail is None else lines[-tail:]


def follow(
    record: Record, observer: Callable[[LogLine], None], ends: bool
) -> tuple[Deferred[None], Callable[[], None]]:
    """
    Follow C{record}'s log from now on (or end at once, if C{ends}).

    @return: the Deferred that fires when following ends, and the function
        that cancels it.
    """
    follower = LogFollower(observer, Deferred(lambda d: _unfollow(record, follower)))
    if ends:
        follower.ended.callback(None)
    else:
        record.followers.append(follower)

    def cancel() -> None:
        if follower in record.followers:
            _unfollow(record, follower)
            follower.ended.callback(None)

    return follower.ended, cancel


def _unfollow(record: Record, follower: LogFollower) -> None:
    if follower in record.followers:
        record.followers.remove(follower)


def endFollowers(record: Record) -> None:
    """End every follower of C{record}."""
    followers, record.followers = record.followers, []
    for follower in followers:
        follower.ended.callback(None)
