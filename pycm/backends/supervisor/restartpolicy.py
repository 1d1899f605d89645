"""
Docker's restart policies and the backoff between automatic restarts:
whether a container is restarted after an exit, whether it comes back when
the daemon opens, and how long the restart waits.
"""

from __future__ import annotations

from pycm.backends.supervisor.records import Record
from pycm.model import State

#: The first delay before an automatic restart, in seconds.
INITIAL_BACKOFF = 0.1
#: The longest delay before an automatic restart.
MAX_BACKOFF = 60.0
#: A run that lasted this long resets the backoff after a crash (not after
#: a restart for a failed health check: L{nextHealthBackoff}).
BACKOFF_RESET_AFTER = 10.0


def nextBackoff(previous: float, runDuration: float | None) -> float:
    """
    The delay before the next automatic restart after a crash (an exit the
    restart policy restarts): a run of L{BACKOFF_RESET_AFTER} seconds or
    more starts it over.

    @param previous: the delay used before the last one, 0 if none.
    @param runDuration: how long the run that just ended lasted.
    """
    reset = runDuration is not None and runDuration >= BACKOFF_RESET_AFTER
    return _doubled(0.0 if reset else previous)


def nextHealthBackoff(previous: float, wasHealthy: bool) -> float:
    """
    The delay before restarting a run that C{--health-on-failure=restart}
    stopped (or C{kill} killed, if the restart policy restarts it): a run
    that was healthy at some point starts it over, however short; one
    that never was doubles it, however long (such a run lasts at least
    C{interval} times C{retries} and past its start period, often more
    than L{BACKOFF_RESET_AFTER}: a check that always fails is a crash loop
    all the same).

    @param previous: the delay used before the last one, 0 if none.
    @param wasHealthy: the run passed a check since it started.
    """
    return _doubled(0.0 if wasHealthy else previous)


def _doubled(previous: float) -> float:
    """The first delay after none (0), else twice C{previous}, at most a minute."""
    if previous <= 0:
        return INITIAL_BACKOFF
    return min(previous * 2, MAX_BACKOFF)


def restartsAfterExit(record: Record, exitCode: int | None) -> bool:
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


def flagsReadAtOpen(record: Record) -> bool:
    """
    Whether L{comesBackAtOpen} reads the flags a stop sets and the record
    saves (C{manuallyStopped}): with C{no} and C{always} it does not, so a
    stop's intent need not be durable before its exit is (a dead daemon's
    successor reclaims a C{running} and a C{stopping} record alike, and
    sets C{interrupted} itself).
    """
    return record.restartPolicy.name in ("unless-stopped", "on-failure")


def comesBackAtOpen(record: Record) -> bool:
    """Whether the daemon, opening, starts C{record} again."""
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
