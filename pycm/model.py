"""
Frozen value types that flow from the backends up to the wire: what a
container is made from (L{ContainerSpec}), what it is (L{Container}), its
events and log lines (what a backend supports is L{pycm.capabilities}).
Times are POSIX seconds (C{float}) from the injected clock; they become
RFC 3339 UTC strings only when turned into JSON, at the edge.
"""

from __future__ import annotations

import re
import signal as _signal
from collections.abc import Callable, Mapping
from operator import attrgetter
from typing import Any

import attrs

from pycm.errors import BadRequest, InvalidName
from pycm.health import Health, HealthCheck, OnFailure

# Re-exported: the wire times have always been imported from here.
from pycm.timestamps import formatTime as formatTime
from pycm.timestamps import parseTime as parseTime
from pycm.wirejson import encodeJSONBytes


class State:
    """The states a container can be in (the contract's C{state} field)."""

    CREATED = "created"
    RUNNING = "running"
    STOPPING = "stopping"
    RESTARTING = "restarting"
    EXITED = "exited"
    DEAD = "dead"

    ALL = (CREATED, RUNNING, STOPPING, RESTARTING, EXITED, DEAD)
    #: States in which a process is alive.
    ALIVE = frozenset({RUNNING, STOPPING})


class Action:
    """The C{action} of a container event."""

    CREATE = "create"
    START = "start"
    DIE = "die"
    STOP = "stop"
    KILL = "kill"
    RESTART = "restart"
    DESTROY = "destroy"
    #: A scaling backend's: the desired replica count changed.
    SCALE = "scale"
    #: A scaling backend's: the service's definition changed otherwise.
    UPDATE = "update"
    #: A health check changed the container's health (the event's C{status}).
    HEALTH_STATUS = "health_status"
    OOM = "oom"  # Docker's: the kernel's OOM killer killed in the run (before its die)

    ALL = (CREATE, START, DIE, STOP, KILL, RESTART, DESTROY, SCALE, UPDATE, HEALTH_STATUS, OOM)


class WaitCondition:
    """The conditions C{wait --for} accepts."""

    NOT_RUNNING = "not-running"
    RUNNING = "running"
    NEXT_EXIT = "next-exit"
    REMOVED = "removed"
    #: Its health check passed (fails once it turns unhealthy, or ends and
    #: will not be restarted, first).
    HEALTHY = "healthy"
    #: Its health check failed C{retries} times in a row.
    UNHEALTHY = "unhealthy"

    ALL = (NOT_RUNNING, RUNNING, NEXT_EXIT, REMOVED, HEALTHY, UNHEALTHY)
    #: The conditions only a container with a health check can meet.
    HEALTH = frozenset({HEALTHY, UNHEALTHY})


_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+\Z")
MAX_NAME_LENGTH = 128
DEFAULT_STOP_TIMEOUT = 10.0
DEFAULT_STOP_SIGNAL = "SIGTERM"
#: The C{PATH} a container gets when its image gives none.
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def validateName(name: str) -> str:
    """
    Return C{name} if it is a valid container name, else raise
    L{InvalidName}.
    """
    if len(name) > MAX_NAME_LENGTH or not _NAME.match(name):
        raise InvalidName(name)
    return name


def parseSignal(value: str) -> int:
    """
    Turn C{KILL}, C{SIGKILL}, C{kill} or C{9} into a signal number.

    @raise BadRequest: for anything that is not a signal.
    """
    text = value.strip().upper()
    if text.isascii() and text.isdigit() and len(text) < 4:
        number = int(text)
        if number in {s.value for s in _signal.Signals}:
            return number
        raise BadRequest(f"unknown signal {value!r}")
    if not text.startswith("SIG"):
        text = "SIG" + text
    try:
        return int(_signal.Signals[text])
    except KeyError:
        raise BadRequest(f"unknown signal {value!r}") from None


def signalName(number: int) -> str:
    """Return C{"SIGTERM"} for 15."""
    try:
        return _signal.Signals(number).name
    except ValueError:
        return str(number)


@attrs.frozen
class RestartPolicy:
    """
    A Docker restart policy.

    @ivar name: C{no}, C{on-failure}, C{always} or C{unless-stopped}.
    @ivar maxRetries: for C{on-failure}, the most restarts, or None for
        no limit (C{on-failure:0}, as Docker reads it).
    """

    name: str = "no"
    maxRetries: int | None = attrs.field(default=None, converter=lambda count: count or None)

    NAMES = ("no", "on-failure", "always", "unless-stopped")

    @classmethod
    def parse(cls, text: str) -> RestartPolicy:
        """Parse C{no}, C{on-failure}, C{on-failure:3}, C{always}..."""
        name, sep, count = text.partition(":")
        if name not in cls.NAMES:
            raise BadRequest(f"bad --restart {text!r}: expected one of no, "
                             "on-failure[:MAX], always, unless-stopped")
        if not sep:
            return cls(name)
        if name != "on-failure":
            raise BadRequest(f"bad --restart {text!r}: only on-failure takes :MAX, not {name}")
        if count.isascii() and count.isdigit() and len(count) < 10:
            return cls(name, int(count))
        raise BadRequest(f"bad --restart {text!r}: MAX must be a whole number from 0 to 999999999")

    def __str__(self) -> str:
        if self.maxRetries is not None:
            return f"{self.name}:{self.maxRetries}"
        return self.name


@attrs.frozen
class ContainerSpec:
    """
    What a client asked for with C{run} or C{create}.

    C{image} and C{command} are None when the client gave none: the backend
    fills in its defaults.
    """

    name: str
    image: str | None = None
    command: tuple[str, ...] | None = None
    env: Mapping[str, str] = attrs.field(factory=dict)
    labels: Mapping[str, str] = attrs.field(factory=dict)
    restartPolicy: RestartPolicy = attrs.field(factory=RestartPolicy)
    stopTimeout: float | None = None
    stopSignal: str | None = None
    memory: int | None = None
    cpus: float | None = None
    workdir: str | None = None
    #: How many copies to run (a scaling backend's; None: its default, 1).
    replicas: int | None = None
    #: Placement constraints (a scaling backend's), e.g. C{node.role==worker}.
    constraints: tuple[str, ...] = ()
    #: Its health check (None: none given; L{HealthCheck.disabled}: the
    #: image's own is turned off).
    healthcheck: HealthCheck | None = None
    #: C{USER[:GROUP]}, names or numbers, as given (None: the backend's
    #: default, the daemon's own user or the image's).
    user: str | None = None

    #: The run/create options each field comes from, as the wire names them.
    OPTION_FIELDS = {
        "env": "env",
        "label": "labels",
        "restart": "restartPolicy",
        "stop-timeout": "stopTimeout",
        "stop-signal": "stopSignal",
        "memory": "memory",
        "cpus": "cpus",
        "workdir": "workdir",
        "replicas": "replicas",
        "constraint": "constraints",
        "health-cmd": "healthcheck",
        "health-interval": "healthcheck",
        "health-timeout": "healthcheck",
        "health-retries": "healthcheck",
        "health-start-period": "healthcheck",
        "health-on-failure": "healthcheck",
        "no-healthcheck": "healthcheck",
        "user": "user",
    }

    def optionsUsed(self) -> frozenset[str]:
        """The names of the run/create options this spec sets."""
        used = set()
        if self.env:
            used.add("env")
        if self.labels:
            used.add("label")
        if self.restartPolicy.name != "no":
            used.add("restart")
        if self.constraints:
            used.add("constraint")
        check = self.healthcheck
        if check is not None:
            used.add("no-healthcheck" if check.disabled else "health-cmd")
            if check.onFailure != OnFailure.NONE:
                used.add("health-on-failure")
        for option, field in (
            ("stop-timeout", self.stopTimeout),
            ("stop-signal", self.stopSignal),
            ("memory", self.memory),
            ("cpus", self.cpus),
            ("workdir", self.workdir),
            ("replicas", self.replicas),
            ("user", self.user),
        ):
            if field is not None:
                used.add(option)
        return frozenset(used)


@attrs.frozen
class Replicas:
    """How many of a scaled container's copies run, and how many should."""

    running: int
    desired: int

    def toJSON(self) -> dict[str, int]:
        return {"running": self.running, "desired": self.desired}


@attrs.frozen
class Task:
    """
    One copy of a scaled container, as its engine schedules it.

    @ivar node: the host it was placed on (None while unplaced).
    @ivar state: the engine's word for it (C{running}, C{failed}, ...).
    """

    id: str
    node: str | None
    state: str
    exitCode: int | None = None
    error: str | None = None

    def toJSON(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "node": self.node,
            "state": self.state,
            "exit_code": self.exitCode,
            "error": self.error,
        }


@attrs.frozen
class Container:
    """
    A container as a backend reports it: the contract's container object.

    C{replicas}, C{tasks} and C{constraints} are a scaling backend's
    (swarm): the others leave C{replicas} None, and their JSON has none of
    the three.
    """

    name: str
    id: str
    backend: str
    image: str
    command: tuple[str, ...]
    state: str
    created: float
    pid: int | None = None
    exitCode: int | None = None
    started: float | None = None
    finished: float | None = None
    restartPolicy: RestartPolicy = attrs.field(factory=RestartPolicy)
    restartCount: int = 0
    labels: Mapping[str, str] = attrs.field(factory=dict)
    env: Mapping[str, str] = attrs.field(factory=dict)
    stopTimeout: float = DEFAULT_STOP_TIMEOUT
    stopSignal: str = DEFAULT_STOP_SIGNAL
    memory: int | None = None
    cpus: float | None = None
    workdir: str | None = None
    error: str | None = None
    oomKilled: bool = False  # the kernel's OOM killer killed in its last run (OOMKilled)
    replicas: Replicas | None = None
    tasks: tuple[Task, ...] = ()
    constraints: tuple[str, ...] = ()
    #: Its health (None: it has no health check) and the check itself.
    health: Health | None = None
    healthcheck: HealthCheck | None = None
    user: str | None = None
    #: False while a change of it is not yet in the daemon's state
    #: directory (a full disk): it is kept in memory and written later.
    saved: bool = True
    # Made once per container value (frozen): its summary, and as JSON.
    _summary: dict[str, Any] | None = attrs.field(default=None, init=False, eq=False, repr=False)
    _summaryJSON: bytes | None = attrs.field(default=None, init=False, eq=False, repr=False)

    def summaryJSON(self) -> bytes:
        """L{summary} as the wire's JSON, encoded once per container value."""
        cached = self._summaryJSON
        if cached is None:
            cached = encodeJSONBytes(self._summary or self._makeSummary())
            object.__setattr__(self, "_summaryJSON", cached)
        return cached

    def summary(self) -> dict[str, Any]:
        """
        The JSON object of C{list} and of most replies: a new dict each
        time, made once per container value (its C{command} list and
        C{labels} dict are shared: read them, do not change them).
        """
        cached = self._summary
        if cached is None:
            cached = self._makeSummary()
            object.__setattr__(self, "_summary", cached)
        return dict(cached)

    def _makeSummary(self) -> dict[str, Any]:
        summary: dict[str, Any] = {
            "name": self.name,
            "id": self.id,
            "backend": self.backend,
            "image": self.image,
            "command": list(self.command),
            "state": self.state,
            "pid": self.pid,
            "exit_code": self.exitCode,
            "created": formatTime(self.created),
            "started": formatTime(self.started),
            "finished": formatTime(self.finished),
            "restart_policy": str(self.restartPolicy),
            "restart_count": self.restartCount,
            "labels": dict(self.labels),
            "health": None if self.health is None else self.health.toJSON(),
        }
        if self.replicas is not None:
            summary["replicas"] = self.replicas.toJSON()
        if self.oomKilled:
            summary["oom_killed"] = True
        if not self.saved:
            summary["saved"] = False
        return summary

    def detail(self) -> dict[str, Any]:
        """The JSON object of C{inspect}: the summary and every detail."""
        result = self.summary()
        result.update(
            env=dict(self.env),
            stop_timeout=self.stopTimeout,
            stop_signal=self.stopSignal,
            memory=self.memory,
            cpus=self.cpus,
            workdir=self.workdir,
            error=self.error,
            oom_killed=self.oomKilled,
            user=self.user,
            healthcheck=None if self.healthcheck is None else self.healthcheck.toJSON(),
        )
        if self.replicas is not None:
            result["tasks"] = [task.toJSON() for task in self.tasks]
            result["constraints"] = list(self.constraints)
        return result


#: A container's L{Container.summaryJSON} if encoded already, else None (fast).
cachedSummaryJSON: Callable[[Container], bytes | None] = attrgetter("_summaryJSON")


@attrs.frozen
class LogLine:
    """One line of a container's output, without its newline."""

    time: float
    stream: str
    line: str
    #: Which copy of a scaled container wrote it, and on which host.
    task: str | None = None
    node: str | None = None

    def toJSON(self) -> dict[str, Any]:
        value = {"time": formatTime(self.time), "stream": self.stream, "line": self.line}
        if self.task is not None:
            value["task"] = self.task
        if self.node is not None:
            value["node"] = self.node
        return value


@attrs.frozen
class LogFollow:
    """
    A running C{logs --follow}: see L{pycm.interfaces.IContainerBackend.follow}.

    @ivar backlog: the lines already written, oldest first.
    @ivar ended: a Deferred that fires with None when following is over.
    @ivar cancel: call it to stop following; C{ended} then fires.
    """

    backlog: list[LogLine]
    ended: Any  # Deferred[None]
    cancel: Callable[[], None]


@attrs.frozen
class ContainerEvent:
    """
    A lifecycle event.  Backends emit it with C{id} None; the daemon's
    event log numbers it.
    """

    action: str
    name: str
    time: float
    exitCode: int | None = None
    id: int | None = None
    #: A scaling backend's: the host and the copy (task) it is about.
    node: str | None = None
    task: str | None = None
    #: On C{scale}: the new desired count.
    replicas: int | None = None
    #: On C{health_status}: the new L{pycm.health.HealthStatus}.
    status: str | None = None
    oomKilled: bool | None = None  # on die: True if the kernel's OOM killer killed in the run

    def toJSON(self) -> dict[str, Any]:
        result: dict[str, Any] = {
            "type": "container",
            "id": self.id,
            "action": self.action,
            "name": self.name,
            "time": formatTime(self.time),
        }
        if self.action == Action.DIE:
            result["exit_code"] = self.exitCode
        extras = (("node", self.node), ("task", self.task), ("replicas", self.replicas),
                  ("status", self.status), ("oom_killed", self.oomKilled or None))
        result.update((key, value) for key, value in extras if value is not None)
        return result


@attrs.frozen
class ProgressEvent:
    """
    How a long operation is getting on (an image pull for a C{run}), for
    event subscribers.  Backends emit it through the same seam as
    L{ContainerEvent}s; it is neither numbered nor kept.
    """

    name: str
    action: str
    detail: str
    time: float
    #: For a pull: the image, the layer (C{""} for the image as a whole)
    #: and the layer's status, as the engine says them.
    image: str = ""
    layer: str = ""
    status: str = ""

    def toJSON(self) -> dict[str, Any]:
        value = {
            "type": "progress",
            "action": self.action,
            "name": self.name,
            "detail": self.detail,
            "time": formatTime(self.time),
        }
        if self.status:
            value.update(image=self.image, layer=self.layer, status=self.status)
        return value
