"""
The swarm backend: L{IContainerBackend} (and L{IScalable}) on a Docker
Swarm manager, each pycm container a replicated service labelled as
pycm's.  It acts through the manager's Engine API (L{ServiceControl}),
sees the swarm through L{SwarmWatcher}'s snapshots, and answers once a
snapshot shows the change done.  How it behaves, and why:
docs/swarm-backend.md.
"""

from __future__ import annotations

import builtins
import os
import shlex
import signal as _signal
from collections.abc import Callable, Mapping
from typing import Any

import attrs
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from zope.interface import implementer

from pycm.backends.docker.containers import OneAtATime
from pycm.backends.docker.engine import EngineAddress, EngineClient, defaultHost
from pycm.backends.docker.interfaces import IDockerEngine
from pycm.backends.docker.options import parseSeconds, parseYesNo
from pycm.backends.docker.signals import SignalsSent
from pycm.backends.swarm.control import NodeEngines, ServiceControl
from pycm.backends.swarm.options import OPTIONS, parseNetworks, parseNodeHosts
from pycm.backends.swarm.snapshot import Snapshot
from pycm.backends.swarm.translate import (
    CREATED_LABEL,
    ENDED,
    REPLICAS_LABEL,
    containerOf,
    desiredReplicas,
    latestTasks,
    rememberedReplicas,
    serviceBody,
    taskFacts,
)
from pycm.backends.swarm.watcher import SwarmWatcher
from pycm.errors import BackendError, BadRequest, Conflict, NotFound, PycmError
from pycm.interfaces import IContainerBackend, IScalable
from pycm.model import (
    ALL_OPTIONS,
    SCALING_OPTIONS,
    Action,
    Capabilities,
    Container,
    ContainerEvent,
    ContainerSpec,
    LogLine,
    ProgressEvent,
    State,
    parseSignal,
)
from pycm.stats import ContainerStats

#: In the state directory: which signals pycm sent which service's tasks.
SIGNALS_FILE = "swarm-signals.json"

CAPABILITIES = Capabilities(
    options=ALL_OPTIONS | SCALING_OPTIONS,
    limits=frozenset({"memory", "cpus"}),
    images="a Docker image reference every node has (e.g. busybox:latest)",
    stats=frozenset(),
)

Observer = Callable[[ContainerEvent | ProgressEvent], None]


def makeBackend(
    reactor: Any,
    stateDir: Any,
    options: dict[str, str],
    engine: IDockerEngine | None = None,
    nodeEngines: Mapping[str, IDockerEngine] | None = None,
) -> SwarmBackend:
    """
    Build the swarm backend from the daemon's backend options (L{OPTIONS}).

    @param engine: the manager's engine (a fake, in tests); None: an
        L{EngineClient} at C{docker-host}.
    @param nodeEngines: other nodes' engines by hostname or node id; None:
        L{EngineClient}s at the C{swarm-node-host} addresses.
    @raise BadRequest: for a bad option value.
    """
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        SwarmBackend.log.warn(
            "swarm backend ignores options it does not know: {unknown}",
            unknown=", ".join(unknown),
        )

    def get(key: str) -> str:
        return options.get(key) or OPTIONS[key][0]

    timeout = parseSeconds("request-timeout", get("request-timeout"))
    address = get("docker-host") or defaultHost(dict(os.environ))
    if engine is None:
        try:
            engine = EngineClient(reactor, EngineAddress.parse(address), timeout)
        except BackendError as e:
            raise BadRequest(str(e)) from None
    if nodeEngines is None:
        nodeEngines = {
            node: EngineClient(reactor, nodeAddress, timeout)
            for node, nodeAddress in parseNodeHosts(get("swarm-node-host")).items()
        }
    return SwarmBackend(
        reactor,
        engine,
        defaultImage=get("default-image"),
        defaultCommand=tuple(shlex.split(get("default-command"))) or None,
        init=parseYesNo("init", get("init")),
        networks=parseNetworks(get("network")),
        restartDelay=parseSeconds("restart-delay", get("restart-delay")),
        nodeEngines=nodeEngines,
        signals=SignalsSent(
            os.path.join(getattr(stateDir, "path", stateDir), SIGNALS_FILE) if stateDir else None
        ),
        activeInterval=parseSeconds("poll-interval", get("poll-interval")),
        idleInterval=parseSeconds("idle-poll-interval", get("idle-poll-interval")),
        address=address,
    )


@implementer(IContainerBackend, IScalable)
class SwarmBackend:
    """
    L{IContainerBackend} on a Swarm manager: see the module.

    @ivar opTimeout: seconds an operation waits for the swarm to show its
        change (tasks running, tasks gone) before it fails with
        L{pycm.errors.Unavailable}.
    """

    name = "swarm"
    capabilities = CAPABILITIES
    log = Logger()
    opTimeout = 120.0
    #: Seconds a kill or a forced remove waits to see the signalled tasks end.
    killSettle = 5.0

    def __init__(
        self,
        reactor: Any,
        engine: IDockerEngine,
        defaultImage: str = "busybox:latest",
        defaultCommand: tuple[str, ...] | None = None,
        init: bool = True,
        networks: tuple[str, ...] = (),
        restartDelay: float = 1.0,
        nodeEngines: Mapping[str, IDockerEngine] | None = None,
        signals: SignalsSent | None = None,
        activeInterval: float = 0.25,
        idleInterval: float = 5.0,
        address: str = "the manager",
        followEvents: bool = True,
    ) -> None:
        self.reactor = reactor
        self.engine = engine
        self.defaultImage = defaultImage
        self.defaultCommand = defaultCommand
        self.init = init
        self.networks = networks
        self.restartDelay = restartDelay
        self.signals = signals if signals is not None else SignalsSent()
        self.nodes = NodeEngines(engine, nodeEngines)
        self.control = ServiceControl(engine, address)
        self.watcher = SwarmWatcher(
            reactor, engine, self._snapshotTaken, activeInterval, idleInterval, followEvents
        )
        self.observers: list[Observer] = []
        self._oneAtATime = OneAtATime()
        #: Service name -> (exit code, time) of its last task seen to end.
        self._lastExit: dict[str, tuple[int | None, float | None]] = {}

    # -- lifecycle ------------------------------------------------------------

    @defer.inlineCallbacks
    def open(self) -> Any:
        """
        Check that the engine is a swarm manager (else fail, naming
        C{docker swarm init}), then start watching the swarm.
        """
        self.nodes.managerNode = yield self.control.checkManager()
        self.watcher.start()

    @defer.inlineCallbacks
    def close(self) -> Any:
        """Stop watching; the services go on running (the swarm keeps them)."""
        yield self.watcher.stop()
        yield self.nodes.close()
        yield self.engine.close()

    def addObserver(self, observer: Observer) -> None:
        self.observers.append(observer)

    def removeObserver(self, observer: Observer) -> None:
        if observer in self.observers:
            self.observers.remove(observer)

    def _emit(self, action: str, name: str, **fields: Any) -> None:
        event = ContainerEvent(action, name, self.reactor.seconds(), **fields)
        for observer in list(self.observers):
            observer(event)

    def _snapshotTaken(self, snapshot: Snapshot) -> None:
        """Every new snapshot: remember the last exits, tell its events."""
        for name in snapshot.services:
            ended = [
                t
                for t in (taskFacts(task) for task in snapshot.tasksOf(name))
                if t.state in ENDED and t.exitCode is not None
            ]
            if ended:
                last = max(ended, key=lambda t: (t.timestamp or t.created, t.created))
                self._lastExit[name] = (last.exitCode, last.timestamp)

    # -- reading ----------------------------------------------------------------

    def _container(self, snapshot: Snapshot, name: str) -> Container | None:
        """C{name} as C{snapshot} shows it (None: not there)."""
        service = snapshot.services.get(name)
        if service is None:
            return None
        return containerOf(
            service,
            snapshot.tasksOf(name),
            snapshot.nodeNames(),
            self.signals.get(name),
            self._lastExit.get(name),
        )

    @defer.inlineCallbacks
    def _look(self) -> Any:
        """A fresh snapshot (read now, handed to the watcher too)."""
        snapshot = yield self.watcher.read()
        self.watcher.offer(snapshot)
        return snapshot

    @defer.inlineCallbacks
    def _current(self, name: str) -> Any:
        snapshot = yield self._look()
        container = self._container(snapshot, name)
        if container is None:
            raise NotFound(name)
        return container

    def _waitFor(
        self, name: str, what: str, predicate: Callable[[Container | None], Any]
    ) -> Deferred[Any]:
        return self.watcher.waitFor(
            lambda snapshot: predicate(self._container(snapshot, name)),
            self.opTimeout,
            lambda: f"{name}: {what}",
        )

    # -- create ---------------------------------------------------------------

    def create(self, spec: ContainerSpec) -> Deferred[Container]:
        return self._oneAtATime.run(spec.name, self._create, spec)

    @defer.inlineCallbacks
    def _create(self, spec: ContainerSpec) -> Any:
        image = spec.image or self.defaultImage
        if spec.command is None and self.defaultCommand:
            spec = attrs.evolve(spec, command=self.defaultCommand)
        replicas = 1 if spec.replicas is None else spec.replicas
        imageCommand = yield self.control.imageCommand(image)
        body = serviceBody(
            spec, image, replicas, self.init, self.networks, self.restartDelay, imageCommand
        )
        yield self.control.create(spec.name, body)
        self.signals.forget(spec.name)
        self._lastExit.pop(spec.name, None)
        self._emit(Action.CREATE, spec.name)
        container = yield self._waitFor(spec.name, "the new service", lambda c: c)
        return container

    # -- start, stop, restart, scale --------------------------------------------

    def start(self, name: str) -> Deferred[Container]:
        return self._oneAtATime.run(name, self._start, name, False)

    @defer.inlineCallbacks
    def _start(self, name: str, restart: bool) -> Any:
        service = yield self.control.get(name)
        current = yield self._current(name)
        desired = desiredReplicas(service)
        if not restart and current.state == State.RUNNING:
            return current
        target = desired or rememberedReplicas(service)
        if target == 0:
            return current
        generation: list[int] = []

        def change(service: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
            spec.setdefault("Mode", {})["Replicated"] = {"Replicas": target}
            labels = spec.setdefault("Labels", {})
            labels.pop(CREATED_LABEL, None)
            labels[REPLICAS_LABEL] = str(target)
            template = spec.setdefault("TaskTemplate", {})
            template["ForceUpdate"] = int(template.get("ForceUpdate") or 0) + 1
            generation[:] = [template["ForceUpdate"]]
            return spec

        self.signals.forget(name)
        yield self.control.update(name, change, service)
        self.watcher.poke()
        container = yield self._waitFor(
            name, f"{target} task(s) to start", self._startedCheck(name, generation[0], target)
        )
        if restart:
            self._emit(Action.RESTART, name)
        return container

    def _startedCheck(
        self, name: str, generation: int, target: int
    ) -> Callable[[Container | None], Any]:
        """
        Has every slot of C{generation} a task that ran (running now, or
        ended after running)?  A container that turns C{dead} fails it.
        """

        def check(container: Container | None) -> Container | None:
            if container is None:
                raise NotFound(name)
            if container.state == State.DEAD:
                raise BackendError(f"cannot start {name}: {container.error}")
            snapshot = self.watcher.latest
            assert snapshot is not None
            facts = [
                t for t in map(taskFacts, snapshot.tasksOf(name)) if t.forceUpdate == generation
            ]
            started = 0
            for history in latestTasks(facts).values():
                if any(t.state == "running" or (t.ended and t.exitCode is not None) for t in history):
                    started += 1
            return container if started >= target else None

        return check

    def stop(self, name: str, timeout: float | None) -> Deferred[Container]:
        return self._oneAtATime.run(name, self._stop, name, timeout)

    @defer.inlineCallbacks
    def _stop(self, name: str, timeout: float | None) -> Any:
        service = yield self.control.get(name)
        desired = desiredReplicas(service)
        container = yield self._current(name)
        if desired == 0 and container.state != State.STOPPING:
            return container
        self.signals.add(name, parseSignal(container.stopSignal), int(_signal.SIGKILL))
        yield self._scaleTo(name, 0, remember=desired or None, service=service)
        killer = None
        if timeout is not None and timeout < container.stopTimeout:
            killer = self.reactor.callLater(max(timeout, 0), self._killLeft, name)
        try:
            container = yield self._waitFor(name, "its tasks to end", self._gone(name))
        finally:
            if killer is not None and killer.active():
                killer.cancel()
        self._emit(Action.STOP, name)
        return container

    def _killLeft(self, name: str) -> None:
        """A stop's own timeout ran out before Swarm's: SIGKILL what is left."""
        snapshot = self.watcher.latest
        if snapshot is None:
            return
        d = self._signalTasks(name, snapshot, int(_signal.SIGKILL), strict=False)
        d.addCallback(lambda sent: self._emit(Action.KILL, name) if sent else None)
        d.addErrback(lambda f: self.log.failure("killing what is left of {name}", f, name=name))

    def _gone(self, name: str) -> Callable[[Container | None], Any]:
        def check(container: Container | None) -> Container | None:
            if container is None:
                raise NotFound(name)
            snapshot = self.watcher.latest
            assert snapshot is not None
            if any(taskFacts(t).state not in ENDED for t in snapshot.tasksOf(name)):
                return None
            return container

        return check

    @defer.inlineCallbacks
    def _scaleTo(
        self,
        name: str,
        replicas: int,
        remember: int | None = None,
        service: dict[str, Any] | None = None,
    ) -> Any:
        """Set the desired count (and the one a start brings back)."""

        def change(service: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
            spec.setdefault("Mode", {})["Replicated"] = {"Replicas": replicas}
            labels = spec.setdefault("Labels", {})
            if remember is not None:
                labels[REPLICAS_LABEL] = str(remember)
            if replicas > 0:
                labels.pop(CREATED_LABEL, None)
            return spec

        yield self.control.update(name, change, service)
        self.watcher.poke()

    def restart(self, name: str, timeout: float | None) -> Deferred[Container]:
        return self._oneAtATime.run(name, self._start, name, True)

    def scale(self, name: str, replicas: int) -> Deferred[Container]:
        return self._oneAtATime.run(name, self._scale, name, replicas)

    @defer.inlineCallbacks
    def _scale(self, name: str, replicas: int) -> Any:
        if replicas < 0:
            raise BadRequest("replicas must be an integer >= 0")
        service = yield self.control.get(name)
        generation = int(
            ((service.get("Spec") or {}).get("TaskTemplate") or {}).get("ForceUpdate") or 0
        )
        yield self._scaleTo(name, replicas, remember=replicas or None, service=service)
        self._emit(Action.SCALE, name, replicas=replicas)
        if replicas == 0:
            check = self._gone(name)
        else:
            started = self._startedCheck(name, generation, replicas)

            def check(container: Container | None) -> Container | None:
                if started(container) is None:
                    return None
                snapshot = self.watcher.latest
                assert snapshot is not None
                alive = [t for t in map(taskFacts, snapshot.tasksOf(name)) if not t.ended]
                return container if len(alive) <= replicas else None

        container = yield self._waitFor(name, f"{replicas} task(s)", check)
        return container

    # -- kill, remove -----------------------------------------------------------

    def kill(self, name: str, signal: int) -> Deferred[Container]:
        # Not serialized: a kill must be able to cut a slow stop short.
        return self._kill(name, signal)

    @defer.inlineCallbacks
    def _kill(self, name: str, signal: int) -> Any:
        snapshot = yield self._look()
        container = self._container(snapshot, name)
        if container is None:
            raise NotFound(name)
        self.signals.add(name, signal)
        killed = yield self._signalTasks(name, snapshot, signal, strict=True)
        if not killed:
            raise Conflict(f"container {name} is not running")
        self._emit(Action.KILL, name)
        stopSignal = parseSignal(container.stopSignal)
        if signal in (int(_signal.SIGKILL), stopSignal) and container.restartPolicy.name != "no":
            # A client stop, as on one host: the policy does not bring
            # the tasks back; a start does (the count is remembered).
            yield self._seenEnded(name, killed)
            service = yield self.control.get(name)
            desired = desiredReplicas(service)
            if desired:
                yield self._scaleTo(name, 0, remember=desired, service=service)
        snapshot = yield self._look()
        return self._container(snapshot, name) or container

    @defer.inlineCallbacks
    def _signalTasks(self, name: str, snapshot: Snapshot, signum: int, strict: bool) -> Any:
        """
        Send C{signum} to every running task of C{name} through its node's
        engine; fire with the ids of the tasks it was sent to.

        @param strict: fail (before sending any) when a running task's node
            has no engine known; else skip those.
        """
        names = snapshot.nodeNames()
        targets = []
        for task in map(taskFacts, snapshot.tasksOf(name)):
            if task.state != "running" or task.containerId is None:
                continue
            try:
                engine = self.nodes.engineFor(task.nodeId, names.get(task.nodeId))
            except BackendError:
                if strict:
                    raise
                continue
            targets.append((task, engine))
        sent = []
        for task, engine in targets:
            if (yield self.control.signal(engine, task.containerId, signum)):
                sent.append(task.id)
        self.watcher.poke()
        return sent

    def _seenEnded(self, name: str, taskIds: list[str]) -> Deferred[Any]:
        """Wait (a little) for a snapshot showing the tasks C{taskIds} ended."""
        wanted = set(taskIds)

        def ended(snapshot: Snapshot) -> bool:
            return all(
                t.ended for t in map(taskFacts, snapshot.tasksOf(name)) if t.id in wanted
            )

        d = self.watcher.waitFor(ended, self.killSettle)
        return d.addErrback(lambda f: f.trap(PycmError) and None)

    def remove(self, name: str, force: bool) -> Deferred[None]:
        if force:
            return self._remove(name, force)
        return self._oneAtATime.run(name, self._remove, name, force)

    @defer.inlineCallbacks
    def _remove(self, name: str, force: bool) -> Any:
        snapshot = yield self._look()
        container = self._container(snapshot, name)
        if container is None:
            raise NotFound(name)
        alive = container.state in (State.RUNNING, State.RESTARTING, State.STOPPING) or any(
            not t.ended for t in map(taskFacts, snapshot.tasksOf(name))
        )
        if alive and container.state != State.DEAD and not force:
            raise Conflict(f"container {name} is running: stop it first, or use --force")
        if force and alive:
            self.signals.add(name, int(_signal.SIGKILL))
            killed = yield self._signalTasks(name, snapshot, int(_signal.SIGKILL), strict=False)
            if killed:
                self._emit(Action.KILL, name)
                yield self._seenEnded(name, killed)
        yield self.control.remove(name, container.id)
        self.watcher.poke()
        yield self._waitFor(name, "the service to go", lambda c: c is None)
        self.signals.forget(name)
        self._lastExit.pop(name, None)
        self._emit(Action.DESTROY, name)

    # -- list, inspect, stats -----------------------------------------------------

    @defer.inlineCallbacks
    def list(self) -> Any:
        snapshot = yield self._look()
        return [self._container(snapshot, name) for name in snapshot.services]

    def inspect(self, name: str) -> Deferred[Container]:
        return self._current(name)

    @defer.inlineCallbacks
    def stats(self, names: Any) -> Any:
        """One row per running service (or per name), its figures unknown (null)."""
        containers = yield self.list()
        byName = {c.name: c for c in containers}
        if not names:
            return [ContainerStats(c.name, c.state) for c in containers if c.state == State.RUNNING]
        rows = []
        for name in dict.fromkeys(names):
            if name not in byName:
                raise NotFound(name)
            rows.append(ContainerStats(name, byName[name].state))
        return rows

    # -- logs, wait -----------------------------------------------------------------

    def logs(self, name: str, tail: int | None, since: float | None = None) -> Deferred[builtins.list[LogLine]]:
        raise NotImplementedError

    def follow(self, name: str, tail: int | None, observer: Callable[[LogLine], None], since: float | None = None) -> Any:
        raise NotImplementedError

    def wait(self, name: str, condition: str) -> Deferred[Container]:
        raise NotImplementedError


__all__ = ["CAPABILITIES", "OPTIONS", "SwarmBackend", "makeBackend"]
