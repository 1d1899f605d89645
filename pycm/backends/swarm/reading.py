"""
Reading the engine's answers into the swarm backend's values: one
C{GET /services}, C{GET /tasks} and C{GET /nodes} into a L{Snapshot}
(L{snapshotOf}), with no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pycm.backends.swarm.snapshot import ENDED_STATES, ServiceView, Snapshot, TaskView
from pycm.model import parseTime


def _time(text: Any) -> float | None:
    if not text or str(text).startswith("0001-01-01"):
        return None
    try:
        return parseTime(str(text))
    except ValueError:
        return None


def nodeNames(nodes: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Node id -> hostname, from C{GET /nodes}."""
    names = {}
    for node in nodes:
        if not isinstance(node, Mapping):
            continue
        nodeId = str(node.get("ID") or "")
        hostname = (node.get("Description") or {}).get("Hostname")
        if nodeId:
            names[nodeId] = str(hostname or nodeId)
    return names


def taskView(task: Mapping[str, Any], names: Mapping[str, str]) -> TaskView:
    """One task of C{GET /tasks} (C{names}: node id -> hostname)."""
    status = task.get("Status") or {}
    containerStatus = status.get("ContainerStatus") or {}
    state = str(status.get("State") or "new")
    exitCode = containerStatus.get("ExitCode")
    nodeId = str(task.get("NodeID") or "")
    slot = task.get("Slot")
    return TaskView(
        id=str(task.get("ID", "")),
        slot=int(slot) if isinstance(slot, int) else None,
        node=names.get(nodeId, nodeId) or None,
        state=state,
        desiredState=str(task.get("DesiredState") or ""),
        # A running task's is 0 (or -1 while it stops): only an end's counts.
        exitCode=exitCode if isinstance(exitCode, int) and state in ENDED_STATES else None,
        error=str(status.get("Err") or "") or None,
        containerId=containerStatus.get("ContainerID") or None,
        updated=_time(status.get("Timestamp")) or 0.0,
        created=_time(task.get("CreatedAt")) or 0.0,
        generation=int((task.get("Spec") or {}).get("ForceUpdate") or 0),
    )


def serviceView(
    service: Mapping[str, Any], tasks: Iterable[Mapping[str, Any]], names: Mapping[str, str]
) -> ServiceView:
    """One service of C{GET /services} with its tasks."""
    views = sorted((taskView(task, names) for task in tasks), key=_taskOrder)
    return _serviceView(service, tuple(views))


def _serviceView(service: Mapping[str, Any], tasks: tuple[TaskView, ...]) -> ServiceView:
    """One service of C{GET /services}, its tasks' views (in order) given."""
    spec = service.get("Spec") or {}
    replicated = (spec.get("Mode") or {}).get("Replicated") or {}
    return ServiceView(
        name=str(spec.get("Name", "")),
        id=str(service.get("ID", "")),
        version=int((service.get("Version") or {}).get("Index") or 0),
        desired=int(replicated.get("Replicas") or 0),
        created=_time(service.get("CreatedAt")) or 0.0,
        updated=_time(service.get("UpdatedAt")) or 0.0,
        spec=spec,
        tasks=tasks,
    )


def snapshotOf(time: float, services: Any, tasks: Any, nodes: Any) -> Snapshot:
    """
    A L{Snapshot} from the bodies of C{GET /services}, C{GET /tasks} and
    C{GET /nodes} (each filtered by pycm's label, or not: only pycm's
    services and their tasks are kept).
    """
    return SnapshotReader().snapshotOf(time, services, tasks, nodes)


def _taskKey(task: Mapping[str, Any], node: str | None) -> tuple[Any, ...]:
    """What a task's view is made of that changes (with its version)."""
    status = task.get("Status") or {}
    return (
        (task.get("Version") or {}).get("Index"),
        status.get("Timestamp"),
        status.get("State"),
        task.get("DesiredState"),
        node,
    )


def _serviceKey(service: Mapping[str, Any]) -> tuple[Any, ...]:
    """What a service's view is made of that changes (with its version)."""
    return (
        (service.get("Version") or {}).get("Index"),
        service.get("UpdatedAt"),
        service.get("CreatedAt"),
    )


class SnapshotReader:
    """
    L{snapshotOf} that remembers the views it made: a task or service the
    engine reports unchanged (the same C{Version.Index}, status time and
    state) is not read again, and a service none of whose tasks changed
    is the same L{ServiceView} object as before (so comparing two
    snapshots is quick).  Only what the last read saw is kept.
    """

    def __init__(self) -> None:
        self._tasks: dict[str, tuple[tuple[Any, ...], TaskView]] = {}
        self._services: dict[str, tuple[tuple[Any, ...], ServiceView]] = {}

    def snapshotOf(self, time: float, services: Any, tasks: Any, nodes: Any) -> Snapshot:
        """As L{snapshotOf}."""
        nodeList = nodes if isinstance(nodes, list) else ()
        names = nodeNames(nodeList)
        oldTasks, self._tasks = self._tasks, {}
        byService: dict[str, list[TaskView]] = {}
        for task in tasks if isinstance(tasks, list) else ():
            if not isinstance(task, Mapping):
                continue
            taskId = str(task.get("ID", ""))
            nodeId = str(task.get("NodeID") or "")
            key = _taskKey(task, names.get(nodeId, nodeId))
            seen = oldTasks.get(taskId)
            read = seen[1] if seen is not None and seen[0] == key else taskView(task, names)
            self._tasks[taskId] = (key, read)
            byService.setdefault(str(task.get("ServiceID") or ""), []).append(read)
        oldServices, self._services = self._services, {}
        views: dict[str, ServiceView] = {}
        for service in services if isinstance(services, list) else ():
            if not isinstance(service, Mapping):
                continue
            labels = (service.get("Spec") or {}).get("Labels") or {}
            if labels.get("io.pycm.managed") != "true":
                continue
            serviceId = str(service.get("ID") or "")
            taskViews = tuple(sorted(byService.get(serviceId, ()), key=_taskOrder))
            key = _serviceKey(service)
            known = oldServices.get(serviceId)
            if known is not None and known[0] == key and known[1].tasks == taskViews:
                view = known[1]
            else:
                view = _serviceView(service, taskViews)
            self._services[serviceId] = (key, view)
            if view.name:
                views[view.name] = view
        return Snapshot(time, views, downNodes(nodeList))


def _taskOrder(task: TaskView) -> tuple[int, float, str]:
    return (task.slot or 0, -task.created, task.id)


def downNodes(nodes: Iterable[Mapping[str, Any]]) -> frozenset[str]:
    """The hostnames of the nodes C{GET /nodes} says are C{down}."""
    names = nodeNames(nodes)
    return frozenset(
        names.get(str(node.get("ID") or ""), str(node.get("ID") or ""))
        for node in nodes
        if isinstance(node, Mapping) and (node.get("Status") or {}).get("State") == "down"
    )


__all__ = ["SnapshotReader", "downNodes", "nodeNames", "serviceView", "snapshotOf", "taskView"]
