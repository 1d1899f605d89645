"""
C{wait} on the swarm backend: until a service runs, stops, has a task
exit, or is removed, as the snapshots show it (L{SnapshotWaits}).

The watcher hands each snapshot to L{SnapshotWaits.snapshot} after the
events it gave were handed on, so a wait fires after its event is told.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
from twisted.internet import defer
from twisted.internet.defer import Deferred

from pycm.backends.swarm.events import eventsBetween
from pycm.backends.swarm.snapshot import ServiceView, Snapshot
from pycm.errors import BadRequest, NotFound
from pycm.model import Action, Container, ContainerEvent, State, WaitCondition

#: Container states in which a service counts as running for
#: C{not-running} (the engine replacing tasks is not a stop).
_RUNNING_STATES = frozenset({State.RUNNING, State.STOPPING, State.RESTARTING})


class _Waiter:
    """One pending wait: C{condition} of C{name}, fired through C{deferred}."""

    def __init__(self, waits: SnapshotWaits, name: str, condition: str) -> None:
        self.name = name
        self.condition = condition
        self.deferred: Deferred[Container] = Deferred(lambda d: waits.forget(self))
        #: The service as last seen (None until it is seen).
        self.last: ServiceView | None = None
        self.lastSnapshot: Snapshot | None = None


class SnapshotWaits:
    """
    The waits of one swarm backend, answered from its snapshots: C{running}
    once every desired task runs (the container's state is C{running}),
    C{not-running} once it neither runs nor is being restarted (or is
    gone), C{next-exit} at the next exit of one of its tasks (seen as a
    C{die} between two snapshots, the container then carrying that task's
    exit code) or when it is gone, C{removed} once it is gone.  Every wait
    is a cancellable Deferred; cancelled, it leaves nothing behind.
    """

    def __init__(self, toContainer: Callable[[ServiceView], Container]) -> None:
        """
        @param toContainer: the backend's container of a service.
        """
        self.toContainer = toContainer
        #: The latest snapshot (None before the first).
        self.latest: Snapshot | None = None
        self.waiters: list[_Waiter] = []

    def wait(self, name: str, condition: str) -> Deferred[Container]:
        """
        Wait for C{condition} of C{name}.

        @return: a cancellable Deferred firing with the L{Container} as it
            was when the condition held; L{NotFound} if there is no such
            service now; L{BadRequest} for an unknown condition.
        """
        if condition in WaitCondition.HEALTH:
            return defer.fail(
                BadRequest(f"the swarm backend has no health checks: --for={condition}")
            )
        if condition not in WaitCondition.ALL:
            return defer.fail(BadRequest(f"unknown wait condition {condition!r}"))
        waiter = _Waiter(self, name, condition)
        self.waiters.append(waiter)
        if self.latest is not None:
            self._start(waiter, self.latest)
        return waiter.deferred

    def whenStopped(self, name: str) -> Deferred[Any]:
        """Fires once C{name} is not running or is gone (for a log follow)."""
        return self.wait(name, WaitCondition.NOT_RUNNING).addErrback(
            lambda failure: failure.trap(NotFound)
        )

    def snapshot(self, new: Snapshot) -> None:
        """Answer the waits that C{new} settles."""
        for waiter in list(self.waiters):
            if waiter.lastSnapshot is None:
                self._start(waiter, new)
            else:
                self._check(waiter, new)
        self.latest = new

    def forget(self, waiter: _Waiter) -> None:
        """Drop C{waiter} (fired, failed or cancelled)."""
        if waiter in self.waiters:
            self.waiters.remove(waiter)

    def cancelAll(self) -> None:
        """The backend is closing: cancel every wait."""
        for waiter in list(self.waiters):
            waiter.deferred.cancel()

    def _fire(self, waiter: _Waiter, container: Container) -> None:
        self.forget(waiter)
        waiter.deferred.callback(container)

    def _start(self, waiter: _Waiter, snapshot: Snapshot) -> None:
        """The first look for C{waiter}: fire at once, fail, or note how it is."""
        service = snapshot.services.get(waiter.name)
        if service is None:
            self.forget(waiter)
            waiter.deferred.errback(NotFound(waiter.name))
            return
        waiter.last = service
        waiter.lastSnapshot = snapshot
        container = self.toContainer(service)
        if waiter.condition == WaitCondition.RUNNING and container.state == State.RUNNING:
            self._fire(waiter, container)
        elif (
            waiter.condition == WaitCondition.NOT_RUNNING and container.state not in _RUNNING_STATES
        ):
            self._fire(waiter, container)

    def _check(self, waiter: _Waiter, new: Snapshot) -> None:
        """A later snapshot: has C{waiter}'s condition come to hold?"""
        assert waiter.last is not None and waiter.lastSnapshot is not None
        service = new.services.get(waiter.name)
        if service is not None and service.id != waiter.last.id:
            # Removed and made anew between two looks: the one waited on is gone.
            service = None
        if service is None:
            if waiter.condition == WaitCondition.RUNNING:
                self.forget(waiter)
                waiter.deferred.errback(NotFound(waiter.name))
                return
            gone = self.toContainer(waiter.last)
            died = self._died(waiter, new, None)
            code = gone.exitCode
            if died is not None and died.exitCode is not None:
                code = died.exitCode
            gone = attrs.evolve(gone, state=State.EXITED, pid=None, exitCode=code)
            self._fire(waiter, gone)
            return
        container = self.toContainer(service)
        if waiter.condition == WaitCondition.RUNNING and container.state == State.RUNNING:
            self._fire(waiter, container)
            return
        if waiter.condition == WaitCondition.NOT_RUNNING and container.state not in _RUNNING_STATES:
            self._fire(waiter, container)
            return
        if waiter.condition == WaitCondition.NEXT_EXIT:
            died = self._died(waiter, new, service)
            if died is not None:
                self._fire(waiter, attrs.evolve(container, exitCode=died.exitCode))
                return
            if container.state not in _RUNNING_STATES:
                before = self.toContainer(waiter.last)
                if before.state in _RUNNING_STATES:
                    self._fire(waiter, container)
                    return
        waiter.last = service
        waiter.lastSnapshot = new

    def _died(
        self, waiter: _Waiter, new: Snapshot, service: ServiceView | None
    ) -> ContainerEvent | None:
        """The first C{die} of C{waiter}'s service's tasks since its last look."""
        assert waiter.last is not None and waiter.lastSnapshot is not None
        last = waiter.lastSnapshot
        old = Snapshot(last.time, {waiter.name: waiter.last}, last.downNodes)
        now = Snapshot(
            new.time, {waiter.name: service} if service is not None else {}, new.downNodes
        )
        for event in eventsBetween(old, now):
            if event.action == Action.DIE:
                return event
        return None
