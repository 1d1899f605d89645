"""
Pure mappings between pycm's values and Swarm's, with no I/O: a
L{ContainerSpec} to the body of C{POST /services/create} (L{serviceBody}),
and a service with its tasks to a L{Container} (L{containerOf}), whose
state is derived as docs/swarm-backend.md says.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from pycm.backends.docker.translate import (
    IMAGE_LABEL,
    MANAGED_LABEL,
    PRIVATE_PREFIX,
    RESTART_POLICY_LABEL,
    mapExitCode,
    userLabels,
)
from pycm.errors import BadRequest
from pycm.model import (
    DEFAULT_STOP_SIGNAL,
    DEFAULT_STOP_TIMEOUT,
    Container,
    ContainerSpec,
    Replicas,
    RestartPolicy,
    State,
    Task,
    parseSignal,
    parseTime,
    signalName,
)

__all__ = [
    "COMMAND_LABEL",
    "CREATED_LABEL",
    "IMAGE_LABEL",
    "LIST_FILTERS",
    "MANAGED_LABEL",
    "REPLICAS_LABEL",
    "SliceState",
    "TaskFacts",
    "containerOf",
    "desiredReplicas",
    "latestTasks",
    "serviceBody",
    "taskFacts",
]

#: The replica count a C{start} brings back (set at create, kept by stop).
REPLICAS_LABEL = "io.pycm.replicas"
#: Present (C{"true"}) from C{create} until the first C{start}.
CREATED_LABEL = "io.pycm.created"
#: The command the image runs when the client gave none (shown only).
COMMAND_LABEL = "io.pycm.command"
#: The engine's filters for pycm's services only.
LIST_FILTERS = {"label": [f"{MANAGED_LABEL}=true"]}
#: What C{--restart} becomes (Swarm's condition).
_CONDITIONS = {"no": "none", "on-failure": "on-failure", "always": "any", "unless-stopped": "any"}
#: Task states in which the task's container is gone for good.
ENDED = frozenset({"complete", "failed", "shutdown", "rejected", "orphaned", "remove"})
#: Task states before C{running}: the engine is still getting it going.
STARTING = frozenset(
    {"new", "allocated", "pending", "assigned", "accepted", "preparing", "ready", "starting"}
)
_NANO = 10**9


def serviceBody(
    spec: ContainerSpec,
    image: str,
    replicas: int,
    init: bool = True,
    networks: Sequence[str] = (),
    restartDelay: float = 1.0,
    imageCommand: Sequence[str] | None = None,
) -> dict[str, Any]:
    """
    The C{ServiceSpec} of C{POST /services/create} for C{spec}: created
    with 0 replicas, C{replicas} kept in a label for C{start}.

    @param imageCommand: what the image runs when C{spec} names no command
        (kept in a label, for C{inspect}).
    @raise BadRequest: for values Swarm cannot take.
    """
    labels = dict(spec.labels)
    for key in labels:
        if key.startswith(PRIVATE_PREFIX):
            raise BadRequest(f"label {key!r}: the {PRIVATE_PREFIX} prefix is pycm's own")
    if replicas < 0:
        raise BadRequest("--replicas must be an integer >= 0")
    serviceLabels = dict(labels)
    serviceLabels.update(
        {
            MANAGED_LABEL: "true",
            IMAGE_LABEL: image,
            REPLICAS_LABEL: str(replicas),
            CREATED_LABEL: "true",
            RESTART_POLICY_LABEL: spec.restartPolicy.name,
        }
    )
    if spec.command is None and imageCommand:
        serviceLabels[COMMAND_LABEL] = json.dumps(list(imageCommand))
    container: dict[str, Any] = {"Image": image, "Labels": labels, "Init": init}
    if spec.command is not None:
        container["Args"] = list(spec.command)
    for key in spec.env:
        if not key or "=" in key:
            raise BadRequest(f"bad --env name {key!r}")
    if spec.env:
        container["Env"] = [f"{k}={v}" for k, v in spec.env.items()]
    if spec.workdir is not None:
        if not spec.workdir.startswith("/"):
            raise BadRequest(f"--workdir {spec.workdir!r} must be an absolute path")
        container["Dir"] = spec.workdir
    container["StopSignal"] = signalName(parseSignal(spec.stopSignal or DEFAULT_STOP_SIGNAL))
    stopTimeout = DEFAULT_STOP_TIMEOUT if spec.stopTimeout is None else spec.stopTimeout
    if stopTimeout < 0 or math.isinf(stopTimeout):
        raise BadRequest("--stop-timeout must not be negative")
    container["StopGracePeriod"] = round(stopTimeout * _NANO)
    limits: dict[str, int] = {}
    if spec.memory is not None:
        if spec.memory <= 0:
            raise BadRequest("--memory must be positive")
        limits["MemoryBytes"] = spec.memory
    if spec.cpus is not None:
        if not spec.cpus > 0:
            raise BadRequest("--cpus must be positive")
        limits["NanoCPUs"] = round(spec.cpus * _NANO)
    policy = spec.restartPolicy
    restart: dict[str, Any] = {
        "Condition": _CONDITIONS[policy.name],
        "Delay": round(restartDelay * _NANO),
        "MaxAttempts": (policy.maxRetries or 0) if policy.name == "on-failure" else 0,
    }
    template: dict[str, Any] = {
        "ContainerSpec": container,
        "RestartPolicy": restart,
        "Resources": {"Limits": limits},
        "Placement": {"Constraints": list(getattr(spec, "constraints", ()) or ())},
        "ForceUpdate": 0,
    }
    if networks:
        template["Networks"] = [{"Target": network} for network in networks]
    return {
        "Name": spec.name,
        "Labels": serviceLabels,
        "TaskTemplate": template,
        "Mode": {"Replicated": {"Replicas": 0}},
    }


def desiredReplicas(service: Mapping[str, Any]) -> int:
    """The service's desired count (C{Spec.Mode.Replicated.Replicas})."""
    mode = ((service.get("Spec") or {}).get("Mode") or {}).get("Replicated") or {}
    return int(mode.get("Replicas") or 0)


def rememberedReplicas(service: Mapping[str, Any]) -> int:
    """The count a C{start} brings back: the label, else 1."""
    labels = (service.get("Spec") or {}).get("Labels") or {}
    try:
        return max(int(labels.get(REPLICAS_LABEL, "1")), 0)
    except ValueError:
        return 1


@attrs.frozen
class TaskFacts:
    """What pycm reads of one task (C{GET /tasks}), parsed."""

    id: str
    slot: int
    nodeId: str
    state: str
    desiredState: str
    created: float
    timestamp: float | None
    exitCode: int | None
    error: str | None
    containerId: str | None
    forceUpdate: int

    @property
    def ended(self) -> bool:
        return self.state in ENDED


def _time(text: Any) -> float | None:
    if not text or str(text).startswith("0001-01-01"):
        return None
    return parseTime(str(text))


def taskFacts(task: Mapping[str, Any]) -> TaskFacts:
    """Parse one task of C{GET /tasks}."""
    status = task.get("Status") or {}
    containerStatus = status.get("ContainerStatus") or {}
    exitCode = containerStatus.get("ExitCode")
    state = str(status.get("State") or "new")
    return TaskFacts(
        id=str(task.get("ID", "")),
        slot=int(task.get("Slot") or 0),
        nodeId=str(task.get("NodeID") or ""),
        state=state,
        desiredState=str(task.get("DesiredState") or ""),
        created=_time(task.get("CreatedAt")) or 0.0,
        timestamp=_time(status.get("Timestamp")),
        exitCode=exitCode if isinstance(exitCode, int) and state in ENDED else None,
        error=str(status.get("Err") or "") or None,
        containerId=containerStatus.get("ContainerID") or None,
        forceUpdate=int(((task.get("Spec") or {}).get("ForceUpdate")) or 0),
    )


def latestTasks(tasks: Iterable[TaskFacts]) -> dict[int, list[TaskFacts]]:
    """
    The tasks of each slot, newest first (a replicated service's tasks
    have slots; a task being removed by a scale-down is left out).
    """
    slots: dict[int, list[TaskFacts]] = {}
    for task in tasks:
        if task.desiredState == "remove":
            continue
        slots.setdefault(task.slot, []).append(task)
    for history in slots.values():
        history.sort(key=lambda t: (t.created, t.id), reverse=True)
    return slots


@attrs.frozen
class SliceState:
    """A service's state as the tasks of its current generation say it."""

    state: str
    running: int
    error: str | None = None
    exitCode: int | None = None
    started: float | None = None
    finished: float | None = None
    restartCount: int = 0


def deriveState(
    service: Mapping[str, Any],
    tasks: Sequence[TaskFacts],
    signalsSent: Iterable[int] = (),
    remembered: tuple[int | None, float | None] | None = None,
) -> SliceState:
    """
    The state of a service from its tasks (docs/swarm-backend.md, states):
    C{created} before its first start, C{running} when every desired task
    runs, C{restarting} while the engine replaces tasks, C{dead} when a
    task cannot be placed or keeps failing before it runs (C{error} says
    why), C{exited} when scaled to 0 or every task ended, C{stopping}
    while a scale to 0 is taking its tasks down.

    @param remembered: the exit code and time of the last task seen to end,
        for when the engine has dropped it (a scale to 0 removes tasks).
    """
    spec = service.get("Spec") or {}
    labels = spec.get("Labels") or {}
    desired = desiredReplicas(service)
    template = spec.get("TaskTemplate") or {}
    generation = int(template.get("ForceUpdate") or 0)
    signals = set(signalsSent)
    running = [t for t in tasks if t.state == "running" and t.desiredState == "running"]
    ends = [(_endTime(t), t.exitCode, t.timestamp) for t in tasks if t.ended and t.exitCode is not None]
    if remembered is not None:
        # The last end seen, perhaps of a task the engine has dropped since.
        ends.append(((remembered[1] or 0.0, remembered[1] or 0.0), remembered[0], remembered[1]))
    exitCode, finished = (None, None)
    if ends:
        _, code, finished = max(ends, key=lambda end: end[0])
        exitCode = mapExitCode(code, signals, False)
    startedTimes = [t.timestamp for t in running if t.timestamp is not None]
    started = max(startedTimes) if startedTimes else None
    if started is None:
        current = [t.created for t in tasks if t.forceUpdate == generation]
        started = max(current) if current else None
    slots = latestTasks(t for t in tasks if t.forceUpdate == generation)
    restartCount = max((len(history) - 1 for history in slots.values()), default=0)
    base = dict(
        running=len(running),
        exitCode=exitCode,
        started=started,
        finished=finished,
        restartCount=restartCount,
    )
    if desired == 0:
        if running or any(t.state in STARTING and not t.ended for t in tasks):
            return SliceState(State.STOPPING, **base)  # type: ignore[arg-type]
        if labels.get(CREATED_LABEL) == "true" and not tasks:
            return SliceState(State.CREATED, **base)  # type: ignore[arg-type]
        return SliceState(State.EXITED, **base)  # type: ignore[arg-type]
    newest = [history[0] for _, history in sorted(slots.items())]
    problem = _problem(slots)
    if len(running) >= desired and all(t.state == "running" for t in newest):
        return SliceState(State.RUNNING, **base)  # type: ignore[arg-type]
    if problem is not None:
        return SliceState(State.DEAD, error=problem, **base)  # type: ignore[arg-type]
    if not newest and labels.get(CREATED_LABEL) == "true":
        return SliceState(State.CREATED, **base)  # type: ignore[arg-type]
    if newest and all(t.ended for t in newest):
        return SliceState(State.EXITED, **base)  # type: ignore[arg-type]
    return SliceState(State.RESTARTING, **base)  # type: ignore[arg-type]


def _endTime(task: TaskFacts) -> tuple[float, float]:
    return (task.timestamp or task.created, task.created)


def _problem(slots: Mapping[int, Sequence[TaskFacts]]) -> str | None:
    """
    Why the newest tasks cannot run, if they cannot: one waiting to be
    placed with an error (C{no suitable node ...}), or a slot whose last
    ended task was rejected (never started) and none runs since.
    """
    for history in slots.values():
        newest = history[0]
        if newest.state == "running":
            continue
        if newest.state in STARTING and newest.error:
            return newest.error
        for task in history:
            if task.state == "running":
                break
            if task.state == "rejected":
                return task.error or "the engine rejected the task"
            if task.ended:
                break
    return None


def containerOf(
    service: Mapping[str, Any],
    tasks: Sequence[Mapping[str, Any]],
    nodeNames: Mapping[str, str],
    signalsSent: Iterable[int] = (),
    remembered: tuple[int | None, float | None] | None = None,
) -> Container:
    """
    Build a L{Container} from a service of C{GET /services} and its tasks
    of C{GET /tasks} (C{nodeNames}: node id -> hostname).
    """
    facts = [taskFacts(task) for task in tasks]
    derived = deriveState(service, facts, signalsSent, remembered)
    spec = service.get("Spec") or {}
    labels = spec.get("Labels") or {}
    template = spec.get("TaskTemplate") or {}
    containerSpec = template.get("ContainerSpec") or {}
    restart = template.get("RestartPolicy") or {}
    limits = (template.get("Resources") or {}).get("Limits") or {}
    policyName = labels.get(RESTART_POLICY_LABEL) or _policyName(restart.get("Condition"))
    maxAttempts = int(restart.get("MaxAttempts") or 0) or None
    env: dict[str, str] = {}
    for item in containerSpec.get("Env") or ():
        key, _, value = str(item).partition("=")
        env[key] = value
    nano = limits.get("NanoCPUs") or 0
    grace = containerSpec.get("StopGracePeriod")
    command = list(containerSpec.get("Command") or ()) + list(containerSpec.get("Args") or ())
    if not command and labels.get(COMMAND_LABEL):
        try:
            command = [str(word) for word in json.loads(labels[COMMAND_LABEL])]
        except ValueError:
            command = []
    shown = sorted(
        (t for t in facts if t.desiredState != "remove" or not t.ended),
        key=lambda t: (t.slot, -t.created, t.id),
    )
    return Container(
        name=str(spec.get("Name", "")),
        id=str(service.get("ID", "")),
        backend="swarm",
        image=str(labels.get(IMAGE_LABEL) or containerSpec.get("Image", "")),
        command=tuple(str(word) for word in command),
        state=derived.state,
        created=_time(service.get("CreatedAt")) or 0.0,
        exitCode=derived.exitCode if derived.state in (State.EXITED, State.DEAD) else None,
        started=derived.started,
        finished=derived.finished if derived.state in (State.EXITED, State.DEAD) else None,
        restartPolicy=RestartPolicy(
            policyName, maxAttempts if policyName == "on-failure" else None
        ),
        restartCount=derived.restartCount,
        labels=userLabels(labels),
        env=env,
        stopTimeout=grace / _NANO if isinstance(grace, int) else DEFAULT_STOP_TIMEOUT,
        stopSignal=str(containerSpec.get("StopSignal") or DEFAULT_STOP_SIGNAL),
        memory=limits.get("MemoryBytes") or None,
        cpus=nano / _NANO if nano else None,
        workdir=containerSpec.get("Dir") or None,
        error=derived.error if derived.state == State.DEAD else None,
        replicas=Replicas(running=derived.running, desired=desiredReplicas(service)),
        tasks=tuple(
            Task(
                id=t.id,
                node=nodeNames.get(t.nodeId, t.nodeId or None),
                state=t.state,
                exitCode=t.exitCode,
                error=t.error,
            )
            for t in shown
        ),
        constraints=tuple(
            str(c) for c in (template.get("Placement") or {}).get("Constraints") or ()
        ),
    )


def _policyName(condition: Any) -> str:
    return {"none": "no", "on-failure": "on-failure", "any": "always"}.get(str(condition), "no")
