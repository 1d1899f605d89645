"""
What the swarm backend's operations wait for: predicates on a service as
a snapshot shows it (None: the service is gone), with no I/O, and
L{ScaleProgress}, which also sees a scale up that Swarm will not carry out
until it is asked again.
"""

from __future__ import annotations

from collections.abc import Callable

from pycm.backends.swarm.snapshot import ServiceView
from pycm.backends.swarm.translate import containerOf, latestTasks, startedSlots
from pycm.errors import BackendError, NotFound
from pycm.model import State

#: A predicate on a service in a snapshot (None: not there).
ServiceCheck = Callable[[ServiceView | None], bool]


def exists(service: ServiceView | None) -> bool:
    """Is the service there?"""
    return service is not None


def gone(service: ServiceView | None) -> bool:
    """Is the service no longer there?"""
    return service is None


def allEnded(service: ServiceView | None) -> bool:
    """Is every task of the service over (or the service gone)?"""
    return service is None or all(t.ended for t in service.tasks)


def removing(service: ServiceView | None) -> bool:
    """Has the service tasks a scale down is taking away (not yet deleted)?"""
    return service is not None and any(t.desiredState == "remove" for t in service.tasks)


def started(name: str, generation: int, target: int) -> ServiceCheck:
    """
    Has every slot of C{generation} a task that ran (running now, or
    ended after running)?  A service that turns C{dead} fails the wait
    with L{BackendError}; one that is gone with L{NotFound}.
    """

    def check(service: ServiceView | None) -> bool:
        if service is None:
            raise NotFound(name)
        container = containerOf(service)
        if container.state == State.DEAD:
            raise BackendError(f"cannot start {name}: {container.error}")
        return startedSlots(service, generation) >= target

    return check


def scaled(name: str, generation: int, replicas: int) -> ServiceCheck:
    """
    Is C{name} at C{replicas}: every task gone for 0; else that many slots
    started (L{started}) and no more tasks than that left alive.
    """
    if replicas == 0:
        return allEnded
    enough = started(name, generation, replicas)

    def check(service: ServiceView | None) -> bool:
        if not enough(service):
            return False
        assert service is not None
        return sum(1 for t in service.tasks if not t.ended) <= replicas

    return check


class ScaleProgress:
    """
    A scale's wait (L{check}), which also says when Swarm has stalled
    (L{stalled}): with the restart condition C{none}, swarmkit counts a
    slot whose tasks a scale down is still taking away as one the service
    has (its C{UpdatableTasksInSlot}), so a scale up sent meanwhile starts
    fewer tasks than asked, or none; and once those tasks are deleted
    nothing makes it look at the service again.  The cure is to send the
    update again.

    @ivar removingSeen: were tasks being taken away since the update was
        last sent?
    @ivar stalled: did the last check end the wait because Swarm stalled
        (not because the scale is done)?
    """

    def __init__(self, done: ServiceCheck, removingSeen: bool) -> None:
        self.done = done
        self.removingSeen = removingSeen
        self.stalled = False

    def check(self, service: ServiceView | None) -> bool:
        self.stalled = False
        if self.done(service):
            return True
        assert service is not None
        if removing(service):
            self.removingSeen = True
        elif self.removingSeen and len(latestTasks(service.tasks)) < service.desired:
            self.removingSeen = False
            self.stalled = True
        return self.stalled


__all__ = [
    "ScaleProgress",
    "ServiceCheck",
    "allEnded",
    "exists",
    "gone",
    "removing",
    "scaled",
    "started",
]
