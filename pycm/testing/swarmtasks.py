"""
The moving parts of L{pycm.testing.swarmengine.FakeSwarmEngine}'s cluster,
on a clock: the orchestrator (slots, scaling, the restart policy, rolling
updates), the scheduler (placement) and each node's agent, which runs a
task as a container of that node's L{FakeDockerEngine}
(L{pycm.testing.dockerengine}), so a task runs the simulated commands.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import attrs
from twisted.internet.interfaces import IReactorTime

from pycm.backends.docker.engine import EngineError
from pycm.testing.dockerengine import FakeDockerEngine
from pycm.testing.dockerstate import nanoTime
from pycm.testing.swarmagent import Agents
from pycm.testing.swarmstate import (
    FakeNode,
    FakeService,
    FakeTask,
    eventAttributes,
    normalSpec,
    parseConstraints,
    placeTask,
    rpcError,
    specChanged,
    stateIndex,
    swarmId,
    taskSpec,
)

_DNS_NAME = re.compile(r"^[a-zA-Z0-9](?:[a-zA-Z0-9-_.]{0,61}[a-zA-Z0-9])?$")
#: Tasks kept for each slot (the cluster's TaskHistoryRetentionLimit).
HISTORY = 5

#: Hears the cluster's events: C{(type, action, actor id, attributes)}.
Emit = Callable[[str, str, str, dict[str, str]], None]


@attrs.define(eq=False)
class Cluster:
    """
    The cluster's store and the loops that move its tasks.

    @ivar stepDelay: seconds between two states of a task (the real
        manager takes a few tenths of a second from C{new} to C{running}).
    @ivar heartbeat: seconds before the manager sees a killed node down
        (the dev swarm's, at a 2 s dispatcher heartbeat, took 6.3 s).
    @ivar monitor: seconds a rolling update watches its last task before
        it is C{completed} (the C{UpdateConfig.Monitor} default, 5 s).
    """

    clock: IReactorTime
    emit: Emit
    stepDelay: float = 0.05
    heartbeat: float = 6.0
    monitor: float = 5.0
    #: The images every node has.
    images: tuple[str, ...] = ("busybox:latest",)
    nodes: list[FakeNode] = attrs.Factory(list)
    services: dict[str, FakeService] = attrs.Factory(dict)
    tasks: dict[str, FakeTask] = attrs.Factory(dict)
    #: Hears every task that got a container (log follows join it).
    containerStarted: list[Callable[[FakeTask], None]] = attrs.Factory(list)
    index: int = 10
    serial: int = 0
    restarts: dict[tuple[str, int, int], int] = attrs.Factory(dict)
    #: Who waits for a task to change: C{(task, ready, then)}.
    watchers: list[tuple[FakeTask, Callable[[FakeTask], bool], Callable[[], Any]]] = attrs.Factory(
        list
    )
    agent: Agents = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.agent = Agents(self)

    # -- store --------------------------------------------------------------

    def now(self) -> int:
        return int(round(self.clock.seconds() * 10**9))

    def bump(self) -> int:
        """The store's next version index."""
        self.index += 1
        return self.index

    def newId(self, kind: str) -> str:
        self.serial += 1
        return swarmId(self.serial, kind)

    def later(self, f: Callable[..., object], *args: object, delay: float | None = None) -> None:
        self.clock.callLater(self.stepDelay if delay is None else delay, f, *args)

    def node(self, nodeId: str) -> FakeNode | None:
        for node in self.nodes:
            if node.id == nodeId:
                return node
        return None

    def addNode(self, hostname: str, role: str, labels: dict[str, str] | None = None) -> FakeNode:
        """A new node running a fake engine, ready for tasks."""
        address = f"198.18.0.{len(self.nodes) + 1}"
        now = self.now()
        node = FakeNode(
            id=self.newId("node"),
            hostname=hostname,
            role=role,
            addr=address,
            engine=FakeDockerEngine(self.clock, images=self.images),
            created=now,
            labels=dict(labels or {}),
            version=self.bump(),
            updated=now,
        )
        # Container ids unique in the cluster, not only on each node.
        node.engine._serial = len(self.nodes) * 0x1000
        self.nodes.append(node)
        self.emit("node", "create", node.id, {"name": hostname})
        self.placePending()
        return node

    def serviceTasks(self, service: FakeService) -> list[FakeTask]:
        return [t for t in self.tasks.values() if t.service is service]

    def touch(self, task: FakeTask, state: str | None = None, message: str | None = None) -> None:
        """Record a change of C{task} (its state moves on if C{state})."""
        now = self.now()
        if state is not None:
            task.state = state
            task.timestamp = now
            if message is not None:
                task.message = message
        task.version = self.bump()
        task.updated = now
        self._changed(task)

    def when(
        self, task: FakeTask, ready: Callable[[FakeTask], bool], then: Callable[[], Any]
    ) -> None:
        """Call C{then} once C{ready(task)} (or C{task} is deleted), on a later turn."""
        if ready(task) or task.id not in self.tasks:
            self.later(then, delay=0)
        else:
            self.watchers.append((task, ready, then))

    def _changed(self, task: FakeTask) -> None:
        for entry in list(self.watchers):
            watched, ready, then = entry
            if watched is task and (ready(task) or task.id not in self.tasks):
                self.watchers.remove(entry)
                self.later(then, delay=0)

    # -- services -----------------------------------------------------------

    def createService(self, body: Any) -> FakeService:
        """
        A new service from the body of C{POST /services/create}.

        @raise EngineError: as the manager's, for a bad or taken name or a
            bad constraint.
        """
        spec = normalSpec(body)
        name = str(spec.get("Name") or "")
        if name and not _DNS_NAME.match(name):
            raise rpcError(400, "InvalidArgument", "name must be valid as a DNS name component")
        if any(s.name == name for s in self.services.values()):
            raise rpcError(
                409,
                "AlreadyExists",
                f"name conflicts with an existing object: service {name} already exists",
            )
        placement = spec["TaskTemplate"].get("Placement") or {}
        parseConstraints(placement.get("Constraints") or ())
        now = self.now()
        sid = self.newId("service")
        if not name:
            spec["Name"] = name = f"service-{sid[:6]}"
        service = FakeService(sid, spec, self.bump(), now, now)
        self.services[sid] = service
        self.emit("service", "create", sid, {"name": name})
        self.reconcile(service)
        return service

    def updateService(self, service: FakeService, body: Any, version: int) -> None:
        """
        C{POST /services/ID/update?version=N}: a new spec, if C{version}
        is the service's; its tasks follow (scaled, or replaced one by one
        when their template changed).

        @raise EngineError: 500 C{update out of sequence} for another
            version, as the manager's.
        """
        if version != service.version:
            raise rpcError(500, "Unknown", "update out of sequence")
        spec = normalSpec(body)
        placement = spec["TaskTemplate"].get("Placement") or {}
        parseConstraints(placement.get("Constraints") or ())
        spec["Name"] = service.name
        before = attrs.evolve(service)
        rolling = specChanged(taskSpec(service.spec), taskSpec(spec))
        service.previousSpec = service.spec
        service.spec = spec
        service.version = self.bump()
        service.updated = self.now()
        self.emit("service", "update", service.id, eventAttributes(before, service))
        if rolling:
            service.templateVersion += 1
            self.later(self._startUpdate, service, service.templateVersion)
        self.reconcile(service)

    def removeService(self, service: FakeService) -> None:
        """C{DELETE /services/ID}: its tasks are shut down, then deleted."""
        del self.services[service.id]
        self.emit("service", "remove", service.id, {"name": service.name})
        for task in self.serviceTasks(service):
            self.setDesired(task, "remove")

    # -- orchestrator -------------------------------------------------------

    def reconcile(self, service: FakeService) -> None:
        """Give C{service} as many live slots as it has replicas, as swarmkit does."""
        tasks = self.serviceTasks(service)
        live = sorted({t.slot for t in tasks if t.runnable})
        dead = sorted({t.slot for t in tasks} - set(live))
        wanted = service.replicas
        reused = dead[: max(wanted - len(live), 0)]
        for task in tasks:
            # A slot given a new task keeps its history (the real manager
            # keeps a slot's ended tasks, and their logs, when it refills it).
            if task.slot in dead and task.slot not in reused:
                self.deleteTask(task)
        if len(live) < wanted:
            free = dead + [n for n in range(1, wanted + len(tasks) + 2) if n not in live + dead]
            for slot in free[: wanted - len(live)]:
                self.newTask(service, slot, "running")
        elif len(live) > wanted:
            for slot in self._slotsToRemove(service, tasks, live)[wanted:]:
                for task in tasks:
                    if task.slot == slot and task.runnable:
                        self.setDesired(task, "remove")

    def _slotsToRemove(
        self, service: FakeService, tasks: list[FakeTask], live: list[int]
    ) -> list[int]:
        """C{live} slots, those to keep first: running ones, spread over nodes."""
        current = {t.slot: t for t in tasks if t.runnable}
        order = sorted(live, key=lambda slot: current[slot].state != "running")
        counts: dict[str, int] = {}
        ranked = []
        for slot in order:
            node = current[slot].nodeId
            counts[node] = counts.get(node, 0) + 1
            ranked.append((counts[node], slot))
        return [slot for _, slot in sorted(ranked, key=lambda pair: pair[0])]

    def newTask(self, service: FakeService, slot: int, desired: str) -> FakeTask:
        now = self.now()
        task = FakeTask(
            id=self.newId("task"),
            service=service,
            slot=slot,
            spec=taskSpec(service.spec),
            templateVersion=service.templateVersion,
            created=now,
            version=self.bump(),
            serviceLabels=service.labels,
            desiredState=desired,
            timestamp=now,
        )
        self.tasks[task.id] = task
        self.later(self._schedule, task)
        return task

    def deleteTask(self, task: FakeTask) -> None:
        """Forget C{task}, and remove its container from its node."""
        self.tasks.pop(task.id, None)
        self._changed(task)
        node = self.node(task.nodeId)
        if node is not None and node.alive and task.containerId:
            node.engine.request(
                "DELETE", f"/containers/{task.containerId}", {"force": True}
            ).addErrback(lambda f: f.trap(EngineError))

    def setDesired(self, task: FakeTask, desired: str) -> None:
        """Set what C{task} should be; a task meant to stop is stopped."""
        if task.desiredState == desired:
            return
        task.desiredState = desired
        self.touch(task)
        if stateIndex(desired) > stateIndex("running"):
            self.agent.shutDown(task)
        elif desired == "running" and task.state == "ready":
            self.later(self.agent.start, task)

    def taskEnded(self, task: FakeTask) -> None:
        """
        C{task} failed, completed or was lost with its node: the restart
        policy may give its slot a new task, started after its delay.
        """
        service = task.service
        self.setDesired(task, "shutdown")
        if service.id not in self.services:
            return
        condition, delay, attempts = service.restartPolicy()
        if condition == "none" or (condition == "on-failure" and task.state == "complete"):
            return
        key = (service.id, task.slot, task.templateVersion)
        if attempts and self.restarts.get(key, 0) >= attempts:
            return
        self.restarts[key] = self.restarts.get(key, 0) + 1
        replacement = self.newTask(service, task.slot, "ready")
        self.later(self.setDesired, replacement, "running", delay=delay)
        self._forgetHistory(service, task.slot)

    def _forgetHistory(self, service: FakeService, slot: int) -> None:
        """Keep the newest L{HISTORY} tasks of a slot."""
        tasks = [t for t in self.serviceTasks(service) if t.slot == slot]
        for task in sorted(tasks, key=lambda t: t.created)[:-HISTORY]:
            if task.finished and not task.runnable:
                self.deleteTask(task)

    # -- rolling updates ----------------------------------------------------

    def _setUpdateStatus(self, service: FakeService, status: dict[str, Any]) -> None:
        before = attrs.evolve(service)
        service.updateStatus = status
        service.version = self.bump()
        self.emit("service", "update", service.id, eventAttributes(before, service))

    def _startUpdate(self, service: FakeService, generation: int) -> None:
        if service.id not in self.services or generation != service.templateVersion:
            return
        status = {"State": "updating", "StartedAt": nanoTime(self.now())}
        self._setUpdateStatus(service, dict(status, Message="update in progress"))
        self._updateNext(service, generation, None, status["StartedAt"])

    def _updateNext(
        self, service: FakeService, generation: int, current: FakeTask | None, started: str
    ) -> None:
        """Replace the next out-of-date task once C{current} runs (stop-first)."""
        if service.id not in self.services or generation != service.templateVersion:
            return
        if current is not None and current.state != "running" and not current.finished:
            self.when(
                current,
                lambda t: t.state == "running" or t.finished,
                lambda: self._updateNext(service, generation, current, started),
            )
            return
        stale = sorted(
            (
                t
                for t in self.serviceTasks(service)
                if t.runnable and t.templateVersion < generation
            ),
            key=lambda t: t.slot,
        )
        if not stale:
            self.later(self._completeUpdate, service, generation, started, delay=self.monitor)
            return
        old = stale[0]
        self.setDesired(old, "shutdown")
        new = self.newTask(service, old.slot, "ready")
        self.when(old, lambda t: t.finished, lambda: self.setDesired(new, "running"))
        self._updateNext(service, generation, new, started)

    def _completeUpdate(self, service: FakeService, generation: int, started: str) -> None:
        if service.id not in self.services or generation != service.templateVersion:
            return
        self._setUpdateStatus(
            service,
            {
                "State": "completed",
                "StartedAt": started,
                "CompletedAt": nanoTime(self.now()),
                "Message": "update completed",
            },
        )

    # -- scheduler ----------------------------------------------------------

    def _schedule(self, task: FakeTask) -> None:
        if task.id not in self.tasks or task.state != "new":
            return
        if not task.runnable:
            self.agent.shutDown(task)
            return
        self.touch(task, "pending", "pending task scheduling")
        self.later(self._place, task)

    def _place(self, task: FakeTask) -> None:
        if task.id not in self.tasks or task.state != "pending":
            return
        placed = placeTask(task, self.nodes, self.tasks.values())
        if isinstance(placed, str):
            if task.err != placed:
                task.err = placed
                self.touch(task)
            return
        task.err = ""
        task.nodeId = placed.id
        self.touch(task, "assigned", "scheduler assigned task to node")
        self.later(self.agent.step, task)

    def placePending(self) -> None:
        """Try again to place the tasks no node could take."""
        for task in list(self.tasks.values()):
            if task.state == "pending" and task.runnable:
                self._place(task)

    # -- nodes --------------------------------------------------------------

    def killNode(self, node: FakeNode) -> None:
        """
        Its dockerd dies: its agent with it, so its tasks' states stand
        still (their containers run on, as containerd survives dockerd);
        the manager sees it down after L{heartbeat} seconds.
        """
        node.alive = False
        self.later(self._nodeDown, node, delay=self.heartbeat)

    def _setNodeState(self, node: FakeNode, state: str, message: str) -> None:
        old = node.state
        node.state, node.message = state, message
        node.version = self.bump()
        node.updated = self.now()
        self.emit(
            "node", "update", node.id, {"name": node.hostname, "state.old": old, "state.new": state}
        )

    def _nodeDown(self, node: FakeNode) -> None:
        if node.alive or node.state == "down":
            return
        self._setNodeState(node, "down", "heartbeat failure")
        for task in list(self.tasks.values()):
            if task.nodeId == node.id and task.runnable:
                task.nodeLost = True
                self.taskEnded(task)

    def restoreNode(self, node: FakeNode) -> None:
        """
        Its dockerd is back: the node is ready again, and the tasks it
        lost fail (their containers killed: C{non-zero exit (137)}).
        """
        node.alive = True
        if node.state != "ready":
            self._setNodeState(node, "ready", "")
        for task in list(self.tasks.values()):
            if task.nodeId == node.id and task.nodeLost:
                self.agent.orphaned(task)
        self.placePending()


__all__ = ["HISTORY", "Cluster"]
