"""
The swarm backend: L{IContainerBackend} (and L{IScalable}) on a Docker
Swarm manager, each pycm container a replicated service labelled as
pycm's.  It acts through the manager's Engine API (L{ServiceControl}),
sees the swarm through L{SwarmWatcher}'s snapshots, and answers once a
snapshot shows the change done.  How it behaves, and why:
docs/swarm-backend.md.
"""

from __future__ import annotations

import os
import shlex
import signal as _signal
from collections.abc import Callable, Mapping
from typing import Any

import attrs
from twisted.internet import defer
from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from zope.interface import implementer

from pycm.backends import takesOptions
from pycm.backends.docker.containers import OneAtATime
from pycm.backends.docker.engine import EngineAddress, EngineClient, defaultHost
from pycm.backends.docker.interfaces import IDockerEngine
from pycm.backends.docker.options import parseSeconds, parseYesNo
from pycm.backends.docker.signals import SignalsSent
from pycm.backends.swarm.control import NodeEngines, ServiceControl
from pycm.backends.swarm.journal import JOURNAL_FILE, SnapshotJournal
from pycm.backends.swarm.logs import ServiceLogReader
from pycm.backends.swarm.options import OPTIONS, parseNetworks, parseNodeHosts
from pycm.backends.swarm.progress import (
    ScaleProgress,
    allEnded,
    exists,
    gone,
    removing,
    scaled,
    started,
)
from pycm.backends.swarm.snapshot import ServiceView, Snapshot
from pycm.backends.swarm.translate import (
    CREATED_LABEL,
    REPLICAS_LABEL,
    containerOf,
    generationOf,
    rememberedReplicas,
    serviceBody,
)
from pycm.backends.swarm.usage import ServiceUsage
from pycm.backends.swarm.view import SwarmView
from pycm.backends.swarm.watcher import SwarmWatcher
from pycm.capabilities import (
    ALL_OPTIONS,
    HEALTH_OPTIONS,
    SCALING_OPTIONS,
    STATS_FIGURES,
    Capabilities,
)
from pycm.errors import BackendError, BadRequest, Conflict, PycmError
from pycm.interfaces import IContainerBackend, IScalable
from pycm.model import (
    Action,
    Container,
    ContainerSpec,
    State,
    parseSignal,
)

#: In the state directory: which signals pycm sent which service's tasks.
SIGNALS_FILE = "swarm-signals.json"
#: Seconds a failed start waits for its tasks to be seen ended.
END_WAIT = 10.0

CAPABILITIES = Capabilities(
    # No health checks: a service's health is its tasks' (not one status).
    options=(ALL_OPTIONS - HEALTH_OPTIONS) | SCALING_OPTIONS,
    limits=frozenset({"memory", "cpus"}),
    images="a Docker image reference every node has (e.g. busybox:latest)",
    stats=STATS_FIGURES,
)


@takesOptions(*OPTIONS)
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
        signals=SignalsSent(statePath(stateDir, SIGNALS_FILE)),
        journal=SnapshotJournal(statePath(stateDir, JOURNAL_FILE), reactor),
        activeInterval=parseSeconds("poll-interval", get("poll-interval")),
        idleInterval=parseSeconds("idle-poll-interval", get("idle-poll-interval")),
        address=address,
    )


def statePath(stateDir: Any, name: str) -> str | None:
    """C{name} in the state directory (a path or a FilePath; None: nowhere)."""
    if not stateDir:
        return None
    return os.path.join(getattr(stateDir, "path", stateDir), name)


@implementer(IContainerBackend, IScalable)
class SwarmBackend(SwarmView):
    """
    L{IContainerBackend} on a Swarm manager: see the module.  What it sees
    and reads is L{SwarmView}'s; what it does is here.
    """

    name = "swarm"
    capabilities = CAPABILITIES
    log = Logger()
    #: Seconds a kill or a forced remove waits to see the signalled tasks end.
    killSettle = 5.0
    #: Seconds between looks during a stop: Swarm drops a task a scale to 0
    #: ended within about a quarter of a second, exit code and all.
    stopInterval = 0.05

    def __init__(
        self,
        reactor: Any,
        engine: IDockerEngine,
        defaultImage: str = "busybox:latest",
        defaultCommand: tuple[str, ...] | None = None,
        init: bool = True,
        networks: tuple[str, ...] = (),
        restartDelay: float = 0.1,
        nodeEngines: Mapping[str, IDockerEngine] | None = None,
        signals: SignalsSent | None = None,
        activeInterval: float = 0.1,
        idleInterval: float = 5.0,
        address: str = "the manager",
        followEvents: bool = True,
        journal: SnapshotJournal | None = None,
    ) -> None:
        self.engine = engine
        self.defaultImage = defaultImage
        self.defaultCommand = defaultCommand
        self.init = init
        self.networks = networks
        self.restartDelay = restartDelay
        journal = journal if journal is not None else SnapshotJournal(clock=reactor)
        self.control = ServiceControl(reactor, engine, address, journal)
        watcher = SwarmWatcher(
            reactor,
            engine,
            activeInterval=activeInterval,
            idleInterval=idleInterval,
            followEvents=followEvents,
        )
        self.nodes = NodeEngines(engine, nodeEngines, lambda: watcher.nodeNames)
        SwarmView.__init__(
            self,
            reactor,
            watcher,
            signals if signals is not None else SignalsSent(),
            journal,
            ServiceLogReader(reactor, engine, lambda: watcher.nodeNames),
            ServiceUsage(reactor, self.nodes),
        )
        self._oneAtATime = OneAtATime()

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
        self.waits.cancelAll()
        self.logReader.stop()
        yield self.watcher.stop()
        yield self.nodes.close()
        yield self.engine.close()

    def _settled(self, name: str, operation: Callable[..., Any], *args: Any) -> Deferred[Any]:
        """
        Run an operation on C{name}; whatever its outcome, the journal then
        has every change it made as told: by its own event (L{_emit}), or,
        for a change with none (a start's new count) or an operation that
        failed half-way, as nobody's to tell again.
        """
        d = defer.maybeDeferred(operation, *args)

        def settled(result: Any) -> Any:
            self.control.told(name)
            return result

        return d.addBoth(settled)

    def _emit(self, action: str, name: str, **fields: Any) -> None:
        """Tell an event of pycm's own change, its marks kept first."""
        self.control.told(name)
        SwarmView._emit(self, action, name, **fields)

    # -- create ---------------------------------------------------------------

    def create(self, spec: ContainerSpec) -> Deferred[Container]:
        return self._oneAtATime.run(spec.name, self._settled, spec.name, self._create, spec)

    @defer.inlineCallbacks
    def _create(self, spec: ContainerSpec) -> Any:
        self.capabilities.refuseUnsupported(self.name, spec)
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
        self._emit(Action.CREATE, spec.name)
        container = yield self._waitFor(spec.name, "the new service", exists)
        return container

    # -- start, stop, restart, scale --------------------------------------------

    def start(self, name: str) -> Deferred[Container]:
        return self._oneAtATime.run(name, self._settled, name, self._start, name, False)

    def restart(self, name: str, timeout: float | None) -> Deferred[Container]:
        return self._oneAtATime.run(name, self._settled, name, self._start, name, True)

    @defer.inlineCallbacks
    def _start(self, name: str, restart: bool) -> Any:
        service = yield self._service(name)
        current = self._of(service)
        if not restart and current.state == State.RUNNING:
            return current
        target = service.desired or rememberedReplicas(service)
        if target == 0:
            return current
        generation: list[int] = []

        # New tasks: from 0 with no task left a scale up makes them; else (a
        # restart, a start after the policy gave up, old tasks still kept)
        # a forced update, so that only the new ones count as this start's.
        force = restart or service.desired > 0 or bool(service.tasks)

        def change(raw: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
            spec.setdefault("Mode", {})["Replicated"] = {"Replicas": target}
            labels = spec.setdefault("Labels", {})
            labels.pop(CREATED_LABEL, None)
            labels[REPLICAS_LABEL] = str(target)
            template = spec.setdefault("TaskTemplate", {})
            if force:
                template["ForceUpdate"] = int(template.get("ForceUpdate") or 0) + 1
            generation[:] = [int(template.get("ForceUpdate") or 0)]
            return spec

        if restart and any(not t.ended for t in service.tasks):
            # Its old tasks' end is the restart's stop (told as they end).
            self.restarting[name] = generationOf(service)
        self.signals.forget(name)
        self.startErrors.pop(service.id, None)
        self._restarts.pop(service.id, None)
        updated = False
        try:
            yield self.control.update(name, change)
            updated = True
            self.watcher.poke()
            container = yield self._waitFor(
                name, f"{target} task(s) to start", started(name, generation[0], target)
            )
        finally:
            # The old tasks' stop not told yet (a failed update stopped none).
            if self.restarting.pop(name, None) is not None and updated:
                self._emit(Action.STOP, name)
        latest = self.watcher.latest
        seen = latest.services.get(name) if latest is not None else None
        if seen is not None:
            thisStart = [t for t in seen.tasks if t.generation == generation[0]]
            why = yield self.control.execFailure(self.nodes, thisStart, lookFirst=self.init)
            if why is not None:
                message = f"cannot start {name}: {why}"
                self.startErrors[service.id] = message
                yield self._endOf(name, [t.id for t in thisStart if not t.ended])
                raise BackendError(message)
        if restart:
            self._emit(Action.RESTART, name)
        # The tasks of this start, as they started: a quick exit may have
        # been restarted by the policy before the look that saw them.
        return attrs.evolve(container, restartCount=0)

    def _endOf(self, name: str, taskIds: list[str]) -> Deferred[Any]:
        """
        Wait (a few seconds at most) until the tasks C{taskIds} of C{name}
        have ended: under an init, a command that cannot be executed is
        seen running until the init's exit 127 is reported.
        """
        if not taskIds:
            return succeed(None)

        def ended(service: ServiceView | None) -> bool:
            tasks = {t.id: t for t in service.tasks} if service is not None else {}
            return all(tasks[i].ended for i in taskIds if i in tasks)

        d = self._waitFor(name, "its tasks to end", ended, timeout=END_WAIT)
        return d.addErrback(lambda _: None)

    def stop(self, name: str, timeout: float | None) -> Deferred[Container]:
        return self._oneAtATime.run(name, self._settled, name, self._stop, name, timeout)

    @defer.inlineCallbacks
    def _stop(self, name: str, timeout: float | None) -> Any:
        service = yield self._service(name)
        container = self._of(service)
        if service.desired == 0 and container.state != State.STOPPING:
            return container
        self.signals.add(name, parseSignal(container.stopSignal), int(_signal.SIGKILL))
        yield self._scaleTo(name, 0, remember=service.desired or None)
        killer = None
        if timeout is not None and timeout < container.stopTimeout:
            killer = self.reactor.callLater(max(timeout, 0), self._killLeft, name)
        try:
            container = yield self._waitFor(
                name, "its tasks to end", allEnded, interval=self.stopInterval
            )
        finally:
            if killer is not None and killer.active():
                killer.cancel()
        self._emit(Action.STOP, name)
        return container

    def _killLeft(self, name: str) -> None:
        """A stop's own timeout ran out before Swarm's: SIGKILL what is left."""
        snapshot = self.watcher.latest
        service = snapshot.services.get(name) if snapshot is not None else None
        if service is None:
            return
        d = self.control.signalTasks(self.nodes, service, int(_signal.SIGKILL), strict=False)
        d.addCallback(lambda sent: self._emit(Action.KILL, name) if sent else None)
        d.addErrback(lambda f: self.log.failure("killing what is left of {name}", f, name=name))

    @defer.inlineCallbacks
    def _scaleTo(self, name: str, replicas: int, remember: int | None = None) -> Any:
        """Set the desired count (and the one a start brings back)."""

        def change(raw: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
            spec.setdefault("Mode", {})["Replicated"] = {"Replicas": replicas}
            labels = spec.setdefault("Labels", {})
            if remember is not None:
                labels[REPLICAS_LABEL] = str(remember)
            if replicas > 0:
                labels.pop(CREATED_LABEL, None)
            return spec

        yield self.control.update(name, change)
        self.watcher.poke()

    def scale(self, name: str, replicas: int) -> Deferred[Container]:
        return self._oneAtATime.run(name, self._settled, name, self._scale, name, replicas)

    @defer.inlineCallbacks
    def _scale(self, name: str, replicas: int) -> Any:
        if replicas < 0:
            raise BadRequest("replicas must be an integer >= 0")
        service = yield self._service(name)
        remember = replicas or None
        yield self._scaleTo(name, replicas, remember)
        self._emit(Action.SCALE, name, replicas=replicas)
        progress = ScaleProgress(scaled(name, generationOf(service), replicas), removing(service))
        deadline = self.reactor.seconds() + self.opTimeout
        while True:
            container = yield self._waitFor(
                name,
                f"{replicas} task(s)",
                progress.check,
                timeout=max(deadline - self.reactor.seconds(), 0.001),
            )
            if not progress.stalled:
                return container
            self.log.info("swarm stalled scaling {name}: asking again", name=name)
            yield self._scaleTo(name, replicas, remember)

    # -- kill, remove -----------------------------------------------------------

    def kill(self, name: str, signal: int) -> Deferred[Container]:
        # Not serialized: a kill must be able to cut a slow stop short.
        return self._settled(name, self._kill, name, signal)

    @defer.inlineCallbacks
    def _kill(self, name: str, signal: int) -> Any:
        service = yield self._service(name)
        self.signals.add(name, signal)
        killed = yield self.control.signalTasks(self.nodes, service, signal, strict=True)
        self.watcher.poke()
        if not killed:
            raise Conflict(f"container {name} is not running")
        self._emit(Action.KILL, name)
        container = containerOf(service)
        if (
            signal in (int(_signal.SIGKILL), parseSignal(container.stopSignal))
            and container.restartPolicy.name != "no"
        ):
            # A client stop, as on one host: the policy does not bring the
            # tasks back; a start does (the count is remembered).
            yield self._seenEnded(name, killed)
            service = yield self._service(name)
            if service.desired:
                yield self._scaleTo(name, 0, remember=service.desired)
                self.control.told(name)
        snapshot = yield self._look()
        return self._container(snapshot, name) or container

    def _seenEnded(self, name: str, taskIds: list[str]) -> Deferred[Any]:
        """Wait (a little) for a snapshot showing the tasks C{taskIds} ended."""
        wanted = set(taskIds)

        def ended(snapshot: Snapshot) -> bool:
            service = snapshot.services.get(name)
            return service is None or all(t.ended for t in service.tasks if t.id in wanted)

        d = self.watcher.waitFor(ended, self.killSettle)
        return d.addErrback(lambda f: f.trap(PycmError) and None)

    def remove(self, name: str, force: bool) -> Deferred[None]:
        if force:
            return self._settled(name, self._remove, name, force)
        return self._oneAtATime.run(name, self._settled, name, self._remove, name, force)

    @defer.inlineCallbacks
    def _remove(self, name: str, force: bool) -> Any:
        service = yield self._service(name)
        container = containerOf(service)
        alive = any(not t.ended for t in service.tasks) and service.desired > 0
        if alive and container.state != State.DEAD and not force:
            raise Conflict(f"container {name} is running: stop it first, or use --force")
        if force and alive:
            self.signals.add(name, int(_signal.SIGKILL))
            killed = yield self.control.signalTasks(
                self.nodes, service, int(_signal.SIGKILL), strict=False
            )
            if killed:
                self._emit(Action.KILL, name)
                yield self._seenEnded(name, killed)
        yield self.control.remove(name, service.id)
        self.watcher.poke()
        yield self._waitFor(name, "the service to go", gone)
        self.signals.forget(name)
        self._emit(Action.DESTROY, name)


__all__ = ["CAPABILITIES", "OPTIONS", "SwarmBackend", "makeBackend"]
