"""
What the swarm backend sees (L{SwarmView}, the base of
L{pycm.backends.swarm.backend.SwarmBackend}): the watcher's snapshots,
turned into containers, events (through the observe side's journal, to
the observers), waits, and the reading operations: C{list}, C{inspect},
C{stats}, C{logs}, C{follow}, C{wait}.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from pycm.backends.docker.signals import SignalsSent
from pycm.backends.docker.translate import mapExitCode
from pycm.backends.swarm.journal import SnapshotJournal
from pycm.backends.swarm.logs import ServiceLogReader
from pycm.backends.swarm.snapshot import ServiceView, Snapshot
from pycm.backends.swarm.translate import containerOf, generationOf
from pycm.backends.swarm.usage import ServiceUsage
from pycm.backends.swarm.waiting import SnapshotWaits
from pycm.backends.swarm.watcher import SwarmWatcher
from pycm.errors import NotFound
from pycm.model import Action, Container, ContainerEvent, LogLine, ProgressEvent, State

Observer = Callable[[ContainerEvent | ProgressEvent], None]


class SwarmView:
    """
    The swarm as the backend sees it.

    @ivar opTimeout: seconds an operation waits for the swarm to show its
        change (tasks running, tasks gone) before it fails with
        L{pycm.errors.Unavailable}.
    """

    log = Logger()
    opTimeout = 120.0

    def __init__(
        self,
        reactor: Any,
        watcher: SwarmWatcher,
        signals: SignalsSent,
        journal: SnapshotJournal,
        logReader: ServiceLogReader,
        usage: ServiceUsage,
    ) -> None:
        self.reactor = reactor
        self.watcher = watcher
        self.signals = signals
        self.journal = journal
        self.observers: list[Observer] = []
        self.logReader = logReader
        self.usage = usage
        self.waits = SnapshotWaits(self._of)
        watcher.onSnapshot = self._snapshotTaken
        watcher.busy = lambda: bool(self.waits.waiters)
        watcher.prepare = self._mapExits
        #: Service id -> why its last start failed (its command could not
        #: be executed): it is C{dead} until started again (in memory).
        self.startErrors: dict[str, str] = {}
        #: Service name -> the generation a client restart is replacing.
        self.restarting: dict[str, int] = {}
        #: Service id -> (generation, the highest restart count seen).
        self._restarts: dict[str, tuple[int, int]] = {}
        #: Service id -> (exit code, time) of its last task seen to end.
        self._lastExit: dict[str, tuple[int | None, float | None]] = {}
        #: Service id -> (its view, last exit, down nodes, the container
        #: they made): a service unchanged since is not translated again.
        self._made: dict[str, tuple[ServiceView, Any, frozenset[str], Container]] = {}

    # -- events -----------------------------------------------------------------

    def addObserver(self, observer: Observer) -> None:
        self.observers.append(observer)

    def removeObserver(self, observer: Observer) -> None:
        if observer in self.observers:
            self.observers.remove(observer)

    def _tell(self, event: ContainerEvent) -> None:
        for observer in list(self.observers):
            observer(event)

    def _emit(self, action: str, name: str, **fields: Any) -> None:
        """Tell an event of pycm's own operation (the snapshots tell the rest)."""
        self._tell(ContainerEvent(action, name, self.reactor.seconds(), **fields))

    def _mapExits(self, snapshot: Snapshot) -> Snapshot:
        """
        C{snapshot} with the exit codes of the signals pycm sent as -N, not
        the engine's 128+N (as the Docker backend reports them), so that
        the containers, the C{die} events and the waits all say the same.
        """
        services = dict(snapshot.services)
        changed = False
        for name, service in snapshot.services.items():
            sent = self.signals.get(name)
            if not sent:
                continue
            tasks = tuple(
                attrs.evolve(t, exitCode=mapExitCode(t.exitCode, sent, False))
                if t.exitCode is not None and t.exitCode - 128 in sent
                else t
                for t in service.tasks
            )
            if tasks != service.tasks:
                services[name] = attrs.evolve(service, tasks=tasks)
                changed = True
        return attrs.evolve(snapshot, services=services) if changed else snapshot

    def _snapshotTaken(self, snapshot: Snapshot) -> None:
        """
        Every new snapshot: remember the last exits, tell the events since
        the last (L{SnapshotJournal.advance}), then answer the waits.
        """
        self._forgetGone(snapshot)
        for service in snapshot.services.values():
            ended = [t for t in service.tasks if t.ended and t.exitCode is not None]
            if ended:
                last = max(ended, key=lambda t: (t.updated or t.created, t.created))
                self._lastExit[service.id] = (last.exitCode, last.updated or None)
            generation = generationOf(service)
            count = containerOf(service).restartCount
            before = self._restarts.get(service.id)
            if before is None or before[0] != generation or before[1] < count:
                self._restarts[service.id] = (generation, count)
        for event in self.journal.advance(snapshot):
            self._tell(event)
            if event.action == Action.START and _policyRestart(snapshot, event):
                self._tell(attrs.evolve(event, action=Action.RESTART))
            elif event.action == Action.DIE:
                self._stopsSeen(snapshot, event.name)
        self.waits.snapshot(snapshot)

    def _forgetGone(self, snapshot: Snapshot) -> None:
        """Drop what is remembered of the services no longer there."""
        there = {service.id for service in snapshot.services.values()}
        for remembered in (self.startErrors, self._restarts, self._lastExit, self._made):
            for serviceId in [key for key in remembered if key not in there]:
                del remembered[serviceId]
        for name in self.signals.names() - set(snapshot.services):
            self.signals.forget(name)

    def _stopsSeen(self, snapshot: Snapshot, name: str) -> None:
        """
        A task of C{name} died: if a client C{restart} is replacing its
        tasks and none of the old ones is left, that is its C{stop}.
        """
        old = self.restarting.get(name)
        service = snapshot.services.get(name)
        if old is None or service is None:
            return
        if all(t.ended for t in service.tasks if t.generation == old):
            del self.restarting[name]
            self._emit(Action.STOP, name)

    # -- containers ---------------------------------------------------------------

    def _of(self, service: ServiceView) -> Container:
        """The container a service is."""
        latest = self.watcher.latest
        down = latest.downNodes if latest is not None else frozenset()
        remembered = self._lastExit.get(service.id)
        made = self._made.get(service.id)
        if made is not None and made[0] is service and made[1:3] == (remembered, down):
            container = made[3]
        else:
            container = containerOf(service, (), remembered, down)
            self._made[service.id] = (service, remembered, down, container)
        restarts = self._restarts.get(service.id)
        if (
            restarts is not None
            and restarts[0] == generationOf(service)
            and restarts[1] > container.restartCount
        ):
            # Its tasks dropped (a scale to 0): the count seen before.
            container = attrs.evolve(container, restartCount=restarts[1])
        failed = self.startErrors.get(service.id)
        if failed is not None and container.state in (State.EXITED, State.RESTARTING):
            container = attrs.evolve(container, state=State.DEAD, error=failed)
        return container

    def _container(self, snapshot: Snapshot, name: str) -> Container | None:
        """C{name} as C{snapshot} shows it (None: not there)."""
        service = snapshot.services.get(name)
        return None if service is None else self._of(service)

    @defer.inlineCallbacks
    def _look(self) -> Any:
        """
        A fresh snapshot (read now, handed to the watcher too): the services
        and tasks; the nodes only when a node event says they changed.
        """
        snapshot = yield self.watcher.read(nodes=False)
        self.watcher.offer(snapshot)
        return snapshot

    @defer.inlineCallbacks
    def _service(self, name: str) -> Any:
        """C{name}'s service in a fresh snapshot, or L{NotFound}."""
        snapshot = yield self._look()
        service = snapshot.services.get(name)
        if service is None:
            raise NotFound(name)
        return service

    def _waitFor(
        self,
        name: str,
        what: str,
        predicate: Callable[[ServiceView | None], bool],
        interval: float | None = None,
        timeout: float | None = None,
    ) -> Deferred[Container | None]:
        """
        Wait for a snapshot in which C{predicate(service)} holds; fire with
        the container it shows (None: gone).

        @param timeout: seconds (None: L{opTimeout}).
        """

        def check(snapshot: Snapshot) -> Any:
            if not predicate(snapshot.services.get(name)):
                return None
            return [self._container(snapshot, name)]

        d = self.watcher.waitFor(
            check,
            self.opTimeout if timeout is None else timeout,
            lambda: f"{name}: {what}",
            interval=interval,
        )
        return d.addCallback(lambda found: found[0])

    # -- list, inspect, stats -----------------------------------------------------

    @defer.inlineCallbacks
    def list(self) -> Any:
        snapshot = yield self._look()
        return [self._of(service) for service in snapshot.services.values()]

    @defer.inlineCallbacks
    def inspect(self, name: str) -> Any:
        service = yield self._service(name)
        return self._of(service)

    @defer.inlineCallbacks
    def stats(self, names: Any) -> Any:
        """
        The figures of C{names} (none: every running container), each the
        sum of its running tasks' (L{ServiceUsage}); L{NotFound} for an
        unknown name.
        """
        snapshot = yield self._look()
        services = snapshot.services
        if names:
            for name in names:
                if name not in services:
                    raise NotFound(name)
            chosen = [services[name] for name in dict.fromkeys(names)]
        else:
            chosen = list(services.values())
        rows = [(self._of(service), service) for service in chosen]
        if not names:
            rows = [(c, s) for c, s in rows if c.state == State.RUNNING]
        result = yield self.usage.stats(rows, [service.id for service in services.values()])
        return result

    # -- logs, wait -----------------------------------------------------------------

    @defer.inlineCallbacks
    def logs(self, name: str, tail: int | None, since: float | None = None) -> Any:
        service = yield self._service(name)
        lines = yield self.logReader.read(service.id, name, tail, since)
        return lines

    @defer.inlineCallbacks
    def follow(
        self,
        name: str,
        tail: int | None,
        observer: Callable[[LogLine], None],
        since: float | None = None,
    ) -> Any:
        """The backlog, then the lines as they come, until it stops running."""
        service = yield self._service(name)

        def ended(taskId: str) -> bool:
            latest = self.watcher.latest
            current = latest.services.get(name) if latest is not None else None
            if current is None:
                return True
            return all(t.ended for t in current.tasks if t.id == taskId)

        stopped = self.waits.whenStopped(name)
        follow = yield self.logReader.follow(
            service.id, name, tail, observer, stopped, since, ended
        )
        return follow

    def wait(self, name: str, condition: str) -> Deferred[Container]:
        latest = self.waits.latest
        if latest is not None and name in latest.services:
            return self.waits.wait(name, condition)
        return self._look().addCallback(lambda _: self.waits.wait(name, condition))


def _policyRestart(snapshot: Snapshot, event: ContainerEvent) -> bool:
    """
    Is this C{start} the restart policy's: a task in a slot where a task
    of the same generation (the same client start) ran before it?
    """
    service = snapshot.services.get(event.name)
    if service is None or event.task is None:
        return False
    task = next((t for t in service.tasks if t.id == event.task), None)
    if task is None:
        return False
    return any(
        other.slot == task.slot
        and other.generation == task.generation
        and other.id != task.id
        and other.created <= task.created
        for other in service.tasks
    )


__all__ = ["Observer", "SwarmView"]
