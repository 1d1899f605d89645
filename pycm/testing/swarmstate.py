"""
The state of L{pycm.testing.swarmengine.FakeSwarmEngine}'s cluster: its
nodes, services and tasks with the shapes of dockerd 20.10's swarm API,
the filters of its lists, and placement (constraints, spreading), without
I/O.  L{pycm.testing.swarmtasks} moves the tasks.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Iterable
from typing import Any

import attrs

from pycm.backends.docker.engine import EngineError
from pycm.testing.dockerstate import hasLabel, nanoTime

#: Task states in the order swarmkit moves a task through them.
TASK_STATES = (
    "new",
    "pending",
    "assigned",
    "accepted",
    "preparing",
    "ready",
    "starting",
    "running",
    "complete",
    "shutdown",
    "failed",
    "rejected",
    "remove",
    "orphaned",
)
#: The states a task ends in.
FINAL_STATES = frozenset({"complete", "shutdown", "failed", "rejected", "orphaned"})

NOT_MANAGER = (
    "This node is not a swarm manager. Worker nodes can't be used to view or "
    "modify cluster state. Please run this command on a manager node or promote "
    "the current node to a manager."
)
NOT_IN_SWARM = (
    'This node is not a swarm manager. Use "docker swarm init" or "docker swarm '
    'join" to connect this node to swarm and try again.'
)
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"
_CONSTRAINT = re.compile(r"^\s*([a-zA-Z0-9._-]+)\s*(==|!=)\s*(\S.*?)\s*$")


def swarmId(serial: int, kind: str) -> str:
    """A 25-character id in swarmkit's alphabet, one for each C{(serial, kind)}."""
    number = int.from_bytes(hashlib.sha256(f"{kind}:{serial}".encode()).digest()[:16], "big")
    digits = []
    for _ in range(25):
        number, digit = divmod(number, 36)
        digits.append(_DIGITS[digit])
    return "".join(digits)


def stateIndex(state: str) -> int:
    return TASK_STATES.index(state)


def rpcError(status: int, code: str, message: str) -> EngineError:
    """An error as dockerd passes on one of swarmkit's gRPC errors."""
    return EngineError(status, f"rpc error: code = {code} desc = {message}")


def parseConstraints(expressions: Iterable[str]) -> list[tuple[str, str, str]]:
    """
    C{node.role==worker} and the like as C{(key, operator, value)}.

    @raise EngineError: 500, swarmkit's message, for an expression
        without one C{==} or C{!=}.
    """
    parsed = []
    for expression in expressions:
        if expression.count("==") + expression.count("!=") != 1:
            raise rpcError(500, "Unknown", "constraint expected one operator from ==, !=")
        match = _CONSTRAINT.match(expression)
        if match is None:
            raise rpcError(500, "Unknown", f"invalid constraint: {expression}")
        parsed.append((match.group(1), match.group(2), match.group(3)))
    return parsed


@attrs.define(eq=False)
class FakeNode:
    """One node of the cluster and the engine running its tasks."""

    id: str
    hostname: str
    role: str
    addr: str
    engine: Any
    created: int
    labels: dict[str, str] = attrs.Factory(dict)
    state: str = "ready"
    message: str = ""
    #: Its dockerd answers (False from L{killNode} to L{restoreNode}).
    alive: bool = True
    version: int = 0
    updated: int = 0

    def matches(self, key: str, value: str) -> bool:
        """Does its attribute C{key} equal C{value}, as swarmkit compares?"""
        lowered = key.lower()
        if lowered == "node.id":
            return value == self.id
        if lowered == "node.hostname":
            return value.lower() == self.hostname.lower()
        if lowered == "node.role":
            return value.lower() == self.role
        if lowered.startswith("node.labels."):
            label = key[len("node.labels.") :]
            return label in self.labels and self.labels[label].lower() == value.lower()
        if lowered == "node.platform.os":
            return value.lower() == "linux"
        return False

    def satisfies(self, constraints: list[tuple[str, str, str]]) -> bool:
        return all(
            self.matches(key, value) == (operator == "==") for key, operator, value in constraints
        )

    def toJSON(self) -> dict[str, Any]:
        """One item of C{GET /nodes}."""
        status: dict[str, Any] = {"State": self.state, "Addr": self.addr}
        if self.message:
            status["Message"] = self.message
        node: dict[str, Any] = {
            "ID": self.id,
            "Version": {"Index": self.version},
            "CreatedAt": nanoTime(self.created),
            "UpdatedAt": nanoTime(self.updated or self.created),
            "Spec": {"Labels": dict(self.labels), "Role": self.role, "Availability": "active"},
            "Description": {
                "Hostname": self.hostname,
                "Platform": {"Architecture": "x86_64", "OS": "linux"},
                "Resources": {"NanoCPUs": 2_000_000_000, "MemoryBytes": 8 * 2**30},
                "Engine": {"EngineVersion": "20.10.24+dfsg1", "Plugins": []},
            },
            "Status": status,
        }
        if self.role == "manager":
            node["ManagerStatus"] = {
                "Leader": True,
                "Reachability": "reachable",
                "Addr": self.addr + ":2377",
            }
        return node


def normalSpec(body: Any) -> dict[str, Any]:
    """A service spec as the manager keeps it (its defaults filled in)."""
    spec = copy.deepcopy(dict(body or {}))
    spec.setdefault("Labels", {})
    spec["Labels"] = dict(spec["Labels"] or {})
    template = spec.setdefault("TaskTemplate", {})
    containerSpec = template.setdefault("ContainerSpec", {})
    containerSpec.setdefault("Isolation", "default")
    if "RestartPolicy" in template:
        template["RestartPolicy"].setdefault("MaxAttempts", 0)
    template.setdefault("ForceUpdate", 0)
    template.setdefault("Runtime", "container")
    if "Mode" not in spec or not spec["Mode"]:
        spec["Mode"] = {"Replicated": {"Replicas": 1}}
    spec["Mode"].setdefault("Replicated", {}).setdefault("Replicas", 1)
    return spec


def taskSpec(spec: dict[str, Any]) -> dict[str, Any]:
    """A service's task template as its tasks carry it (no C{Runtime})."""
    template = copy.deepcopy(spec["TaskTemplate"])
    template.pop("Runtime", None)
    return dict(template)


@attrs.define(eq=False)
class FakeService:
    """One service: its spec, versions and the state of its last update."""

    id: str
    spec: dict[str, Any]
    version: int
    created: int
    updated: int
    previousSpec: dict[str, Any] | None = None
    updateStatus: dict[str, Any] | None = None
    #: The version of the task template (a rolling update bumps it).
    templateVersion: int = 0

    @property
    def name(self) -> str:
        return str(self.spec.get("Name", ""))

    @property
    def replicas(self) -> int:
        return int(self.spec["Mode"]["Replicated"].get("Replicas") or 0)

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.spec.get("Labels") or {})

    def constraints(self) -> list[tuple[str, str, str]]:
        placement = self.spec["TaskTemplate"].get("Placement") or {}
        return parseConstraints(placement.get("Constraints") or ())

    def restartPolicy(self) -> tuple[str, float, int]:
        """C{(condition, delay in seconds, max attempts)}, swarmkit's defaults filled in."""
        policy = self.spec["TaskTemplate"].get("RestartPolicy") or {}
        delay = policy.get("Delay")
        return (
            str(policy.get("Condition") or "any"),
            5.0 if delay is None else int(delay) / 1e9,
            int(policy.get("MaxAttempts") or 0),
        )

    def stopGrace(self) -> float:
        """Seconds between the stop signal and SIGKILL (default 10)."""
        grace = self.spec["TaskTemplate"].get("ContainerSpec", {}).get("StopGracePeriod")
        return 10.0 if grace is None else int(grace) / 1e9

    def toJSON(self, status: dict[str, int] | None = None) -> dict[str, Any]:
        """One item of C{GET /services}."""
        service: dict[str, Any] = {
            "ID": self.id,
            "Version": {"Index": self.version},
            "CreatedAt": nanoTime(self.created),
            "UpdatedAt": nanoTime(self.updated),
            "Spec": copy.deepcopy(self.spec),
        }
        if self.previousSpec is not None:
            service["PreviousSpec"] = copy.deepcopy(self.previousSpec)
        service["Endpoint"] = {"Spec": {}}
        if self.updateStatus is not None:
            service["UpdateStatus"] = dict(self.updateStatus)
        if status is not None:
            service["ServiceStatus"] = status
        return service


@attrs.define(eq=False)
class FakeTask:
    """One task: a slot of a service on a node, and its container there."""

    id: str
    service: FakeService
    slot: int
    spec: dict[str, Any]
    templateVersion: int
    created: int
    version: int
    #: Its service's labels when it was made (what C{label} filters match).
    serviceLabels: dict[str, str] = attrs.Factory(dict)
    desiredState: str = "running"
    state: str = "new"
    message: str = "created"
    err: str = ""
    nodeId: str = ""
    containerId: str = ""
    pid: int = 0
    exitCode: int | None = None
    timestamp: int = 0
    updated: int = 0
    #: Why it was restarted: a node going down does not stop its container.
    nodeLost: bool = False

    @property
    def name(self) -> str:
        return f"{self.service.name}.{self.slot}.{self.id}"

    @property
    def runnable(self) -> bool:
        """Is it meant to run (its slot is alive)?"""
        return stateIndex(self.desiredState) <= stateIndex("running")

    @property
    def finished(self) -> bool:
        return self.state in FINAL_STATES

    def toJSON(self) -> dict[str, Any]:
        """One item of C{GET /tasks}."""
        status: dict[str, Any] = {
            "Timestamp": nanoTime(self.timestamp or self.created),
            "State": self.state,
            "Message": self.message,
        }
        if self.err:
            status["Err"] = self.err
        if self.exitCode is not None:
            status["ContainerStatus"] = {
                "ContainerID": self.containerId,
                "PID": self.pid,
                "ExitCode": self.exitCode,
            }
        status["PortStatus"] = {}
        task: dict[str, Any] = {
            "ID": self.id,
            "Version": {"Index": self.version},
            "CreatedAt": nanoTime(self.created),
            "UpdatedAt": nanoTime(self.updated or self.created),
            "Labels": {},
            "Spec": copy.deepcopy(self.spec),
            "ServiceID": self.service.id,
            "Slot": self.slot,
        }
        if self.nodeId:
            task["NodeID"] = self.nodeId
        task["Status"] = status
        task["DesiredState"] = self.desiredState
        return task

    def logAttributes(self) -> bytes:
        """The details C{GET /services/ID/logs?details=1} puts before a line."""
        return (
            f"com.docker.swarm.node.id={self.nodeId},"
            f"com.docker.swarm.service.id={self.service.id},"
            f"com.docker.swarm.task.id={self.id}"
        ).encode()


def checkFilters(filters: dict[str, list[str]], accepted: Iterable[str]) -> dict[str, list[str]]:
    """
    @raise EngineError: 400, as dockerd, for a filter it does not know.
    """
    for key in filters:
        if key not in accepted:
            raise EngineError(400, f"Invalid filter '{key}'")
    return filters


def serviceMatches(service: FakeService, filters: dict[str, list[str]]) -> bool:
    """Does C{service} pass C{GET /services}' C{filters} (name and id are prefixes)?"""
    if "name" in filters and not any(service.name.startswith(n) for n in filters["name"]):
        return False
    if "id" in filters and not any(service.id.startswith(i) for i in filters["id"]):
        return False
    if "mode" in filters and "replicated" not in filters["mode"]:
        return False
    return all(hasLabel(service.labels, wanted) for wanted in filters.get("label", ()))


def taskMatches(task: FakeTask, filters: dict[str, list[str]]) -> bool:
    """
    Does C{task} pass C{GET /tasks}' C{filters} (services, nodes already
    ids; C{label} on its service's labels, as swarmkit filters)?
    """
    if "service" in filters and task.service.id not in filters["service"]:
        return False
    if "node" in filters and task.nodeId not in filters["node"]:
        return False
    if "id" in filters and not any(task.id.startswith(i) for i in filters["id"]):
        return False
    if "name" in filters and not any(task.name.startswith(n) for n in filters["name"]):
        return False
    if "desired-state" in filters:
        for wanted in filters["desired-state"]:
            if wanted not in ("running", "shutdown", "accepted"):
                raise EngineError(500, f"Invalid desired-state filter: '{wanted}'")
        if task.desiredState not in filters["desired-state"]:
            return False
    return all(hasLabel(task.serviceLabels, wanted) for wanted in filters.get("label", ()))


def explainUnplaceable(down: int, unsuitable: int) -> str:
    """The C{Err} of a task no node can take, as swarmkit's scheduler words it."""

    def nodes(count: int) -> str:
        return "1 node" if count == 1 else f"{count} nodes"

    reasons = []
    if down:
        reasons.append(f"{nodes(down)} not available for new tasks")
    if unsuitable:
        reasons.append(f"scheduling constraints not satisfied on {nodes(unsuitable)}")
    return f"no suitable node ({'; '.join(reasons)})"


def placeTask(task: FakeTask, nodes: list[FakeNode], tasks: Iterable[FakeTask]) -> FakeNode | str:
    """
    The node for C{task}: among the ready nodes that satisfy its
    service's constraints, the one with fewest of the service's tasks,
    then fewest tasks; or why there is none.
    """
    constraints = task.service.constraints()
    ready = [n for n in nodes if n.state == "ready"]
    suitable = [n for n in ready if n.satisfies(constraints)]
    if not suitable:
        return explainUnplaceable(len(nodes) - len(ready), len(ready) - len(suitable))
    live = [t for t in tasks if t.runnable and t.nodeId and t is not task]

    def load(node: FakeNode) -> tuple[int, int]:
        mine = sum(1 for t in live if t.nodeId == node.id and t.service is task.service)
        return (mine, sum(1 for t in live if t.nodeId == node.id))

    return min(suitable, key=load)


def specChanged(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Does a new task template differ from the old (so tasks are replaced)?"""
    return json.dumps(old, sort_keys=True) != json.dumps(new, sort_keys=True)


def eventAttributes(old: FakeService | None, new: FakeService) -> dict[str, str]:
    """
    The C{Actor.Attributes} of a service's C{update} event: its name, and
    what changed of its image, replicas and update state (C{.old}, C{.new}).
    """
    attributes = {"name": new.name}
    if old is None:
        return attributes
    oldImage = old.spec["TaskTemplate"].get("ContainerSpec", {}).get("Image")
    newImage = new.spec["TaskTemplate"].get("ContainerSpec", {}).get("Image")
    if oldImage != newImage:
        attributes.update({"image.old": str(oldImage), "image.new": str(newImage)})
    if old.replicas != new.replicas:
        attributes.update({"replicas.old": str(old.replicas), "replicas.new": str(new.replicas)})
    if new.updateStatus is not None:
        if old.updateStatus is None:
            attributes["updatestate.new"] = new.updateStatus["State"]
        elif old.updateStatus["State"] != new.updateStatus["State"]:
            attributes["updatestate.old"] = old.updateStatus["State"]
            attributes["updatestate.new"] = new.updateStatus["State"]
    return attributes


__all__ = [
    "FINAL_STATES",
    "NOT_IN_SWARM",
    "NOT_MANAGER",
    "TASK_STATES",
    "FakeNode",
    "FakeService",
    "FakeTask",
    "checkFilters",
    "eventAttributes",
    "explainUnplaceable",
    "normalSpec",
    "parseConstraints",
    "placeTask",
    "rpcError",
    "serviceMatches",
    "specChanged",
    "stateIndex",
    "swarmId",
    "taskMatches",
]
