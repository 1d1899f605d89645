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
    checkedWorkdir,
    environment,
    isPrivateLabel,
    mapExitCode,
    userLabels,
)
from pycm.backends.swarm.snapshot import ServiceView, TaskView
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
    signalName,
)

__all__ = [
    "COMMAND_LABEL",
    "CREATED_LABEL",
    "IMAGE_LABEL",
    "LIST_FILTERS",
    "MANAGED_LABEL",
    "REPLICAS_LABEL",
    "Derived",
    "containerOf",
    "deriveState",
    "latestTasks",
    "rememberedReplicas",
    "serviceBody",
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
    restartDelay: float = 0.1,
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
        if isPrivateLabel(key):
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
    if spec.env:
        container["Env"] = environment(spec)
    if spec.workdir is not None:
        container["Dir"] = checkedWorkdir(spec)
    if spec.user is not None:
        container["User"] = spec.user
    container["StopSignal"] = signalName(parseSignal(spec.stopSignal or DEFAULT_STOP_SIGNAL))
    stopTimeout = DEFAULT_STOP_TIMEOUT if spec.stopTimeout is None else spec.stopTimeout
    if stopTimeout < 0 or math.isinf(stopTimeout):
        raise BadRequest("--stop-timeout must not be negative")
    container["StopGracePeriod"] = _nanos("--stop-timeout", stopTimeout)
    limits: dict[str, int] = {}
    if spec.memory is not None:
        if spec.memory <= 0:
            raise BadRequest("--memory must be positive")
        limits["MemoryBytes"] = spec.memory
    if spec.cpus is not None:
        if not spec.cpus > 0:
            raise BadRequest("--cpus must be positive")
        limits["NanoCPUs"] = _nanos("--cpus", spec.cpus)
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
        "Placement": {"Constraints": list(spec.constraints)},
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


def _nanos(option: str, value: float) -> int:
    """C{value} in billionths, as Swarm's int64 fields take them."""
    nanos = value * _NANO
    if not nanos < 2**63:
        raise BadRequest(f"{option} {value:g} is too large")
    return round(nanos)


def rememberedReplicas(service: ServiceView) -> int:
    """The count a C{start} brings back: the label, else 1."""
    labels = service.spec.get("Labels") or {}
    try:
        return max(int(labels.get(REPLICAS_LABEL, "1")), 0)
    except ValueError:
        return 1


def generationOf(service: ServiceView) -> int:
    """The service's C{TaskTemplate.ForceUpdate}: its tasks' generation."""
    return int((service.spec.get("TaskTemplate") or {}).get("ForceUpdate") or 0)


def latestTasks(tasks: Iterable[TaskView]) -> dict[int, list[TaskView]]:
    """
    The tasks of each slot, newest first (a task being removed by a
    scale-down is left out).
    """
    slots: dict[int, list[TaskView]] = {}
    for task in tasks:
        if task.desiredState == "remove":
            continue
        slots.setdefault(task.slot or 0, []).append(task)
    for history in slots.values():
        history.sort(key=lambda t: (t.created, t.id), reverse=True)
    return slots


def startedSlots(service: ServiceView, generation: int) -> int:
    """How many slots have a task of C{generation} that ran (runs, or ended so)."""
    slots = latestTasks(t for t in service.tasks if t.generation == generation)
    return sum(
        1
        for history in slots.values()
        if any(t.running or (t.ended and t.exitCode is not None) for t in history)
    )


@attrs.frozen
class Derived:
    """A service's state as its tasks say it (L{deriveState})."""

    state: str
    running: int
    error: str | None = None
    exitCode: int | None = None
    started: float | None = None
    finished: float | None = None
    restartCount: int = 0


def markLost(tasks: Iterable[TaskView], downNodes: frozenset[str]) -> tuple[TaskView, ...]:
    """
    C{tasks}, those that say they run on a node the manager sees down
    C{lost} (the engine is replacing them) or C{orphaned} (it is not).
    """
    return tuple(
        attrs.evolve(t, state="lost" if t.desiredState == "running" else "orphaned")
        if t.running and t.node in downNodes
        else t
        for t in tasks
    )


def deriveState(
    service: ServiceView,
    signalsSent: Iterable[int] = (),
    remembered: tuple[int | None, float | None] | None = None,
    downNodes: frozenset[str] = frozenset(),
) -> Derived:
    """
    The state of a service from its tasks (docs/swarm-backend.md, states):
    C{created} before its first start, C{running} when every desired task
    runs, C{restarting} while the engine replaces tasks, C{dead} when a
    task cannot be placed or keeps failing before it runs (C{error} says
    why), C{exited} when scaled to 0 or every task ended, C{stopping}
    while a scale to 0 is taking its tasks down.

    @param remembered: the exit code and time of the last task seen to end,
        for when the engine has dropped it (a scale to 0 removes tasks).
    @param downNodes: the nodes the manager sees down: a task there that
        says it runs is lost (the engine is replacing it).
    """
    tasks = markLost(service.tasks, downNodes)
    labels = service.spec.get("Labels") or {}
    desired = service.desired
    generation = generationOf(service)
    signals = set(signalsSent)
    running = [t for t in tasks if t.running and t.desiredState == "running"]
    ends: list[tuple[tuple[float, float], int | None, float | None]] = [
        ((t.updated or t.created, t.created), t.exitCode, t.updated or None)
        for t in tasks
        if t.ended and t.exitCode is not None
    ]
    if remembered is not None:
        # The last end seen, perhaps of a task the engine has dropped since.
        when = remembered[1] or 0.0
        ends.append(((when, when), remembered[0], remembered[1]))
    exitCode, finished = (None, None)
    if ends:
        _, code, finished = max(ends, key=lambda end: end[0])
        exitCode = mapExitCode(code, signals, False)
    current = [t for t in tasks if t.generation == generation]
    startedTimes = [t.updated for t in running if t.updated]
    started = max(startedTimes) if startedTimes else None
    if started is None and current:
        started = max(t.created for t in current)
    slots = latestTasks(current)
    restartCount = max((len(history) - 1 for history in slots.values()), default=0)

    def derived(state: str, error: str | None = None) -> Derived:
        return Derived(
            state, len(running), error, exitCode, started, finished, max(restartCount, 0)
        )

    if desired == 0:
        if any(not t.ended for t in tasks):
            return derived(State.STOPPING)
        if labels.get(CREATED_LABEL) == "true" and not tasks:
            return derived(State.CREATED)
        return derived(State.EXITED)
    newest = [history[0] for _, history in sorted(slots.items())]
    if len(running) >= desired and all(t.running for t in newest):
        return derived(State.RUNNING)
    problem = _problem(slots)
    if problem is not None:
        return derived(State.DEAD, problem)
    if not newest and labels.get(CREATED_LABEL) == "true":
        return derived(State.CREATED)
    if newest and all(t.ended for t in newest):
        return derived(State.EXITED)
    done = sum(1 for t in newest if t.ended)
    settled = [t for t in newest if t.ended or (t.running and t.desiredState == "running")]
    if done == 0 or len(settled) < len(newest) or len(newest) < desired:
        # A task starting, or running but to be shut down: being replaced.
        return derived(State.RESTARTING)
    # Some run, the others ended and Swarm will not replace them (no
    # restart policy, or it gave up): the service cannot be what it should.
    return derived(
        State.DEAD, f"{done} of {desired} tasks ended and will not be replaced (restart policy)"
    )


def _problem(slots: Mapping[int, Sequence[TaskView]]) -> str | None:
    """
    Why the newest tasks cannot run, if they cannot: one waiting to be
    placed with an error (C{no suitable node ...}), or a slot whose last
    ended task was rejected (never started) and none runs since.
    """
    for history in slots.values():
        newest = history[0]
        if newest.running:
            continue
        if not newest.ended and newest.error:
            return newest.error
        for task in history:
            if task.running:
                break
            if task.state == "rejected":
                return task.error or "the engine rejected the task"
            if task.ended:
                break
    return None


def containerOf(
    service: ServiceView,
    signalsSent: Iterable[int] = (),
    remembered: tuple[int | None, float | None] | None = None,
    downNodes: frozenset[str] = frozenset(),
) -> Container:
    """Build a L{Container} from a service and its tasks (see L{deriveState})."""
    derived = deriveState(service, signalsSent, remembered, downNodes)
    spec = service.spec
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
    ended = derived.state in (State.EXITED, State.DEAD)
    return Container(
        name=service.name,
        id=service.id,
        backend="swarm",
        image=str(labels.get(IMAGE_LABEL) or containerSpec.get("Image", "")),
        command=tuple(str(word) for word in command),
        state=derived.state,
        created=service.created,
        exitCode=derived.exitCode if ended else None,
        started=derived.started,
        finished=derived.finished if ended else None,
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
        user=containerSpec.get("User") or None,
        error=derived.error if derived.state == State.DEAD else None,
        replicas=Replicas(running=derived.running, desired=service.desired),
        tasks=tuple(
            Task(id=t.id, node=t.node, state=t.state, exitCode=t.exitCode, error=t.error)
            for t in markLost(service.tasks, downNodes)
        ),
        constraints=tuple(
            str(c) for c in (template.get("Placement") or {}).get("Constraints") or ()
        ),
    )


def _policyName(condition: Any) -> str:
    return {"none": "no", "on-failure": "on-failure", "any": "always"}.get(str(condition), "no")
