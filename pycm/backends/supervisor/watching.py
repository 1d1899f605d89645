"""
Who waits on a container: the waiters of C{wait} (a condition), the stops
and removals that wait for its run to exit, and the followers of its log.
Functions on a L{Record}'s lists; the supervisor calls them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import attrs
from twisted.internet.defer import Deferred

from pycm.errors import NotFound
from pycm.model import Container, LogLine, WaitCondition

if TYPE_CHECKING:
    from pycm.backends.supervisor.records import Record

#: What wakes which conditions: a start, an exit, the removal.
_WOKEN_BY = {
    "start": frozenset({WaitCondition.RUNNING}),
    "exit": frozenset({WaitCondition.NOT_RUNNING, WaitCondition.NEXT_EXIT}),
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
    """Fire the waiters that C{what} (start, exit, removed) satisfies."""
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
