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
    spec = service.get("Spec") or {}
    replicated = (spec.get("Mode") or {}).get("Replicated") or {}
    views = sorted(
        (taskView(task, names) for task in tasks),
        key=lambda t: (t.slot or 0, -t.created, t.id),
    )
    return ServiceView(
        name=str(spec.get("Name", "")),
        id=str(service.get("ID", "")),
        version=int((service.get("Version") or {}).get("Index") or 0),
        desired=int(replicated.get("Replicas") or 0),
        created=_time(service.get("CreatedAt")) or 0.0,
        updated=_time(service.get("UpdatedAt")) or 0.0,
        spec=spec,
        tasks=tuple(views),
    )


def snapshotOf(time: float, services: Any, tasks: Any, nodes: Any) -> Snapshot:
    """
    A L{Snapshot} from the bodies of C{GET /services}, C{GET /tasks} and
    C{GET /nodes} (each filtered by pycm's label, or not: only pycm's
    services and their tasks are kept).
    """
    names = nodeNames(nodes if isinstance(nodes, list) else ())
    byService: dict[str, list[Mapping[str, Any]]] = {}
    for task in tasks if isinstance(tasks, list) else ():
        if isinstance(task, Mapping):
            byService.setdefault(str(task.get("ServiceID") or ""), []).append(task)
    views = {}
    for service in services if isinstance(services, list) else ():
        if not isinstance(service, Mapping):
            continue
        labels = (service.get("Spec") or {}).get("Labels") or {}
        if labels.get("io.pycm.managed") != "true":
            continue
        view = serviceView(service, byService.get(str(service.get("ID") or ""), ()), names)
        if view.name:
            views[view.name] = view
    return Snapshot(time, views, downNodes(nodes if isinstance(nodes, list) else ()))


def downNodes(nodes: Iterable[Mapping[str, Any]]) -> frozenset[str]:
    """The hostnames of the nodes C{GET /nodes} says are C{down}."""
    names = nodeNames(nodes)
    return frozenset(
        names.get(str(node.get("ID") or ""), str(node.get("ID") or ""))
        for node in nodes
        if isinstance(node, Mapping) and (node.get("Status") or {}).get("State") == "down"
    )


__all__ = ["downNodes", "nodeNames", "serviceView", "snapshotOf", "taskView"]
