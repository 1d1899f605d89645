"""
Snapshots built by hand and read from a manager (fake or real), for the
tests of the swarm backend's events, journal and waits (no tests here).
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from pycm.backends.swarm.snapshot import ServiceView, Snapshot, TaskView
from pycm.model import Container, ContainerEvent, State, parseTime


def task(tid: str, state: str = "running", **fields: Any) -> TaskView:
    """A task of slot 1 on node n1, desired running unless ended."""
    values: dict[str, Any] = dict(
        slot=1,
        node="n1",
        desiredState="shutdown" if state in ("complete", "failed", "shutdown") else "running",
        containerId="c-" + tid,
        updated=0.0,
    )
    if state == "running":
        values["exitCode"] = 0
    values.update(fields)
    return TaskView(id=tid, state=state, **values)


def exited(tid: str, code: int, when: float, **fields: Any) -> TaskView:
    """A task whose process ran and exited with C{code} at C{when}."""
    if code == 0:
        return task(tid, "complete", exitCode=0, updated=when, **fields)
    error = f"task: non-zero exit ({code})"
    return task(tid, "failed", exitCode=code, error=error, updated=when, **fields)


def service(name: str, *tasks: TaskView, **fields: Any) -> ServiceView:
    values: dict[str, Any] = dict(
        id="id-" + name, version=10, desired=1, created=1.0, updated=1.0, spec={}
    )
    values.update(fields)
    return ServiceView(name=name, tasks=tasks, **values)


def snap(when: float, *services: ServiceView) -> Snapshot:
    return Snapshot(when, {s.name: s for s in services})


def actions(events: list[ContainerEvent]) -> list[tuple[str, ...]]:
    """Each event as (name, action[, task])."""
    return [(e.name, e.action) if e.task is None else (e.name, e.action, e.task) for e in events]


class Logged:
    """Collects the log events of a test."""

    def __init__(self, case: SynchronousTestCase) -> None:
        self.events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self.events.append)
        case.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def warned(self, text: str) -> bool:
        from twisted.logger import formatEvent

        return any(text in formatEvent(event) for event in self.events)


def toContainer(service: ServiceView) -> Container:
    """A container as a backend might make it: running when every desired task runs."""
    running = sum(1 for t in service.tasks if t.running and t.desiredState == "running")
    if service.desired > 0 and running >= service.desired:
        state = State.RUNNING
    elif service.desired > 0 and any(not t.ended for t in service.tasks):
        state = State.RESTARTING
    else:
        state = State.EXITED
    return Container(
        name=service.name,
        id=service.id,
        backend="swarm",
        image="busybox",
        command=(),
        state=state,
        created=service.created,
    )


def realTaskView(task: dict[str, Any], hosts: dict[str, str]) -> TaskView:
    """
    A real manager's task as a L{TaskView} (what the watcher makes of it;
    kept here so that these tests need nothing but the manager).
    """
    status = task.get("Status") or {}
    container = status.get("ContainerStatus") or {}
    return TaskView(
        id=task["ID"],
        slot=task.get("Slot"),
        node=hosts.get(task.get("NodeID") or ""),
        state=status.get("State", ""),
        desiredState=task.get("DesiredState", ""),
        exitCode=container.get("ExitCode") if container else None,
        error=status.get("Err"),
        containerId=container.get("ContainerID") or None,
        updated=parseTime(status.get("Timestamp")) or 0.0,
    )


@defer.inlineCallbacks
def readSnapshot(engine: Any, names: list[str], when: float) -> Any:
    """
    A L{Snapshot} of services C{names} read from a manager (what the
    watcher makes; kept here so that these tests need nothing but the
    manager, fake or real).
    """
    _, nodes = yield engine.request("GET", "/nodes")
    hosts = {n["ID"]: n["Description"]["Hostname"] for n in nodes}
    down = frozenset(
        n["Description"]["Hostname"]
        for n in nodes
        if (n.get("Status") or {}).get("State") == "down"
    )
    _, services = yield engine.request("GET", "/services", {"filters": {"name": names}})
    views = {}
    for data in services:
        name = data["Spec"]["Name"]
        if name not in names:
            continue
        _, tasks = yield engine.request("GET", "/tasks", {"filters": {"service": [data["ID"]]}})
        views[name] = ServiceView(
            name=name,
            id=data["ID"],
            version=data["Version"]["Index"],
            desired=data["Spec"]["Mode"]["Replicated"]["Replicas"],
            created=parseTime(data["CreatedAt"]) or 0.0,
            updated=parseTime(data["UpdatedAt"]) or 0.0,
            spec=data["Spec"],
            tasks=tuple(realTaskView(t, hosts) for t in tasks),
        )
    return Snapshot(when, views, down)


@defer.inlineCallbacks
def forceUpdate(engine: Any, sid: str) -> Any:
    """A rolling restart of service C{sid} (C{docker service update --force}); its old version."""
    _, data = yield engine.request("GET", f"/services/{sid}")
    spec = data["Spec"]
    template = dict(
        spec["TaskTemplate"], ForceUpdate=spec["TaskTemplate"].get("ForceUpdate", 0) + 1
    )
    version = data["Version"]["Index"]
    yield engine.request(
        "POST",
        f"/services/{sid}/update",
        {"version": version},
        body=dict(spec, TaskTemplate=template),
    )
    return version
