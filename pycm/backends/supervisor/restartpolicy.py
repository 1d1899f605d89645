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
#: A run that lasted this long resets the backoff.
BACKOFF_RESET_AFTER = 10.0


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
