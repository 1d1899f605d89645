"""
The state of L{pycm.testing.dockerengine.FakeDockerEngine}'s containers
(what a start, an exit, a stop and their restart policy make of it), and
the engine's wire formats (times, log frames, filters), without I/O.
"""

from __future__ import annotations

import json
import struct
import time
from collections.abc import Callable
from typing import Any

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.python.failure import Failure

from pycm.backends.docker.engine import EngineError
from pycm.backends.memory import SimulatedRun
from pycm.health import Health
from pycm.model import DEFAULT_PATH, Container, State, parseSignal

_STREAMS = {"stdout": 1, "stderr": 2}


def imageReference(name: str) -> str:
    """C{name} with C{:latest} if it has no tag nor digest."""
    if "@" in name or name.rfind(":") > name.rfind("/"):
        return name
    return name + ":latest"


def nanoTime(nanos: int) -> str:
    """Nanoseconds since the epoch as dockerd's RFC 3339 (9 digits)."""
    seconds, fraction = divmod(nanos, 10**9)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{fraction:09d}Z"


def sinceNanos(value: Any) -> int | None:
    """The C{since} parameter (C{seconds[.nanoseconds]}) in nanoseconds."""
    if value is None or value == "":
        return None
    whole, _, fraction = str(value).partition(".")
    return int(whole) * 10**9 + int((fraction + "000000000")[:9] or 0)


def flag(value: Any) -> bool:
    return value is True or str(value).lower() in ("1", "true")


def parseFilters(value: Any) -> dict[str, list[str]]:
    if isinstance(value, str):
        value = json.loads(value) if value else {}
    return {key: list(items) for key, items in (value or {}).items()}


class StreamEnd:
    """
    The transport of a fake stream: C{stopProducing} ends it, and
    C{pauseProducing} holds what is written until C{resumeProducing}, as
    a socket's buffers hold it for a reader that stopped reading.
    """

    def __init__(self, feed: Feed) -> None:
        self.stopProducing = feed.stop
        self.pauseProducing = feed.pause
        self.resumeProducing = feed.resume


@attrs.define(eq=False)
class Feed:
    """A stream the fake is writing to."""

    onData: Callable[[bytes], None]
    ended: Deferred[None]
    #: Which events it takes (an events stream).
    accepts: Callable[[Any], bool] = lambda item: True
    #: Its lines have timestamps (a log follow).
    timestamps: bool = False
    #: What was written while its reader paused (None: not paused).
    held: list[bytes] | None = None
    #: The end, written while its reader paused.
    endHeld: bool = False

    def write(self, data: bytes) -> None:
        if self.held is not None:
            self.held.append(data)
        elif not self.ended.called:
            self.onData(data)

    def end(self) -> None:
        if self.held is not None:
            self.endHeld = True
        elif not self.ended.called:
            self.ended.callback(None)

    def stop(self) -> None:
        """Its reader closed it: it ends now, what was held is dropped."""
        self.held, self.endHeld = None, False
        self.end()

    def pause(self) -> None:
        if self.held is None:
            self.held = []

    def resume(self) -> None:
        held, self.held = self.held or [], None
        for data in held:
            self.write(data)
        if self.endHeld:
            self.end()


@attrs.define(eq=False)
class FakeContainer:
    """One container of the fake engine, with dockerd's inspect fields."""

    id: str
    name: str
    image: str
    config: dict[str, Any]
    hostConfig: dict[str, Any]
    created: int
    status: str = "created"
    pid: int = 0
    exitCode: int = 0
    error: str = ""
    startedAt: int | None = None
    finishedAt: int | None = None
    restartCount: int = 0
    manuallyStopped: bool = False
    run: SimulatedRun | None = None
    logs: list[tuple[int, str, bytes]] = attrs.Factory(list)
    followers: list[Feed] = attrs.Factory(list)
    waiters: list[tuple[str, Deferred[Any]]] = attrs.Factory(list)
    timers: list[IDelayedCall] = attrs.Factory(list)
    restartDelay: float = 0.1
    #: Its health (from its first start, with a health check) and the
    #: timers of its checks (L{pycm.testing.dockerhealth}).
    health: Health | None = None
    healthTimers: list[IDelayedCall] = attrs.Factory(list)
    #: The paths in it its health check's and execs' C{test}, C{touch} and
    #: C{rm} see (L{pycm.testing.dockerhealth.runShell}).
    files: set[str] = attrs.Factory(set)

    @classmethod
    def fromBody(
        cls, cid: str, name: str, image: str, body: dict[str, Any], now: int
    ) -> FakeContainer:
        """A new container from the body of C{POST /containers/create}."""
        env = list(body.get("Env") or ())
        if not any(item.startswith("PATH=") for item in env):
            env.append("PATH=" + DEFAULT_PATH)
        config = {
            "Image": str(body.get("Image", "")),
            "Cmd": list(body.get("Cmd") or ("sleep", "infinity")),
            "Env": env,
            "Labels": dict(body.get("Labels") or {}),
            "WorkingDir": body.get("WorkingDir") or "",
            "StopSignal": body.get("StopSignal") or "SIGTERM",
            "StopTimeout": body.get("StopTimeout"),
            "User": str(body.get("User") or ""),
        }
        check = body.get("Healthcheck")
        if check:
            # As dockerd keeps it: the fields given as 0 left out.
            config["Healthcheck"] = {k: v for k, v in dict(check).items() if v}
        hostConfig = {"RestartPolicy": {"Name": "no", "MaximumRetryCount": 0}}
        hostConfig.update(body.get("HostConfig") or {})
        return cls(cid, name, image, config, hostConfig, now)

    def event(self, action: str, nanos: int, **attributes: str) -> dict[str, Any]:
        """Its event C{action} at C{nanos}, as C{GET /events} gives it."""
        labels = dict(self.config.get("Labels") or {})
        return {
            "status": action,
            "id": self.id,
            "from": self.image,
            "Type": "container",
            "Action": action,
            "Actor": {
                "ID": self.id,
                "Attributes": {**labels, "image": self.image, "name": self.name, **attributes},
            },
            "scope": "local",
            "time": nanos // 10**9,
            "timeNano": nanos,
        }

    def command(self) -> list[str]:
        return list(self.config.get("Cmd") or ())

    def inspect(self) -> dict[str, Any]:
        """C{GET /containers/ID/json}."""
        command = self.command()
        running = self.status == "running"
        return {
            "Id": self.id,
            "Name": "/" + self.name,
            "Created": nanoTime(self.created),
            "Path": command[0] if command else "",
            "Args": command[1:],
            "Image": "sha256:" + self.image.encode().hex()[:64].ljust(64, "0"),
            "RestartCount": self.restartCount,
            "State": {
                "Status": self.status,
                "Running": running,
                "Paused": False,
                "Restarting": self.status == "restarting",
                "OOMKilled": False,
                "Dead": False,
                "Pid": self.pid if running else 0,
                "ExitCode": self.exitCode,
                "Error": self.error,
                "StartedAt": nanoTime(self.startedAt or 0)
                if self.startedAt
                else "0001-01-01T00:00:00Z",
                "FinishedAt": nanoTime(self.finishedAt)
                if self.finishedAt
                else "0001-01-01T00:00:00Z",
                **({} if self.health is None else {"Health": healthJSON(self.health)}),
            },
            "Config": dict(self.config),
            "HostConfig": dict(self.hostConfig),
        }

    def summary(self) -> dict[str, Any]:
        """One item of C{GET /containers/json}."""
        return {
            "Id": self.id,
            "Names": ["/" + self.name],
            "Image": self.image,
            "Command": " ".join(self.command()),
            "Created": self.created // 10**9,
            "State": self.status,
            "Status": self.status,
            "Labels": dict(self.config.get("Labels") or {}),
        }

    def stats(self, now: int) -> dict[str, Any]:
        """C{GET /containers/ID/stats?stream=false}, from its simulated run."""
        run = self.run
        if run is None:
            return {"cpu_stats": {}, "memory_stats": {}, "pids_stats": {}}
        usage = run.usage(self.hostConfig.get("Memory"))
        return {
            "read": nanoTime(now),
            "cpu_stats": {
                "cpu_usage": {"total_usage": int((usage.cpuSeconds or 0) * 1e9)},
                "online_cpus": 1,
            },
            "memory_stats": {"usage": usage.memory, "stats": {"inactive_file": 0}},
            "pids_stats": {"current": usage.pids},
            "blkio_stats": {
                "io_service_bytes_recursive": [
                    {"op": "read", "value": usage.readBytes or 0},
                    {"op": "write", "value": usage.writeBytes or 0},
                ]
            },
        }

    def backlog(self, params: dict[str, Any]) -> list[tuple[int, str, bytes]]:
        """Its log lines a C{GET /containers/ID/logs} with C{params} gives."""
        wanted = {s for s in ("stdout", "stderr") if flag(params.get(s))}
        lines = [line for line in self.logs if line[1] in wanted]
        tail = params.get("tail")
        if tail not in (None, "", "all"):
            count = int(tail)
            lines = lines[-count:] if count > 0 else []
        since = sinceNanos(params.get("since"))
        if since is not None:
            lines = [line for line in lines if line[0] >= since]
        return lines

    def started(self, run: SimulatedRun, now: int) -> None:
        """Its command runs as C{run} since C{now}."""
        self.run = run
        self.status = "running"
        self.pid = run.pid
        self.exitCode = 0
        self.error = ""
        self.startedAt = now

    def notStarted(self) -> None:
        """Its command is not in its image: dockerd's 127 and message."""
        self.error = (
            "failed to create task for container: OCI runtime create failed: "
            f'exec: "{self.command()[0]}": executable file not found in $PATH: unknown'
        )
        self.exitCode = 127
        if self.startedAt is not None:
            self.status = "exited"

    def exited(self, status: int, now: int) -> None:
        """Its run ended with C{status} at C{now}."""
        self.run = None
        self.status = "exited"
        self.pid = 0
        self.exitCode = status
        self.finishedAt = now

    def stopSignal(self) -> int:
        """The signal a stop sends first: its C{StopSignal}."""
        return parseSignal(str(self.config.get("StopSignal") or "SIGTERM"))

    def stopTime(self, params: dict[str, Any]) -> float:
        """Seconds a stop waits for it before SIGKILL: C{t}, its C{StopTimeout}, or 10."""
        given = params.get("t")
        if given is not None:
            return float(given)
        configured = self.config.get("StopTimeout")
        return 10.0 if configured is None else float(configured)

    def restartsAfter(self, status: int) -> bool:
        """Whether its restart policy starts it again after it exited C{status}."""
        policy = self.hostConfig.get("RestartPolicy") or {}
        name = policy.get("Name") or "no"
        retries = policy.get("MaximumRetryCount") or 0
        return not self.manuallyStopped and (
            name in ("always", "unless-stopped")
            or (
                name == "on-failure"
                and status != 0
                and (not retries or self.restartCount < retries)
            )
        )

    def cancelTimers(self) -> None:
        timers, self.timers = self.timers, []
        for call in timers:
            if call.active():
                call.cancel()


def healthJSON(health: Health) -> dict[str, Any]:
    """A health as dockerd's inspect shows it (C{State.Health})."""
    return {
        "Status": health.status,
        "FailingStreak": health.failingStreak,
        "Log": [
            {
                "Start": nanoTime(round(result.start * 10**9)),
                "End": nanoTime(round(result.end * 10**9)),
                "ExitCode": result.exitCode,
                "Output": result.output,
            }
            for result in health.log
        ],
    }



def findContainer(containers: dict[str, FakeContainer], ref: str) -> FakeContainer:
    """
    The container C{ref} names: its id, its name, or the one id it begins.

    @raise EngineError: 404, as dockerd's C{No such container}.
    """
    if ref in containers:
        return containers[ref]
    for container in containers.values():
        if container.name == ref.lstrip("/"):
            return container
    found = [c for c in containers.values() if c.id.startswith(ref)]
    if len(found) == 1 and ref:
        return found[0]
    raise EngineError(404, f"No such container: {ref}")


def answerLater(clock: IReactorTime, answer: Deferred[Any]) -> Deferred[Any]:
    """
    C{answer}'s result, given on a later turn of C{clock}, as an answer
    over a socket is; cancelling it cancels C{answer}.
    """
    results: list[Any] = []

    def cancel(_: Deferred[Any]) -> None:
        answer.cancel()

    outcome: Deferred[Any] = Deferred(cancel)

    def give() -> None:
        if not outcome.called:
            if isinstance(results[0], Failure):
                outcome.errback(results[0])
            else:
                outcome.callback(results[0])

    def deliver(result: Any) -> None:
        results.append(result)
        clock.callLater(0, give)

    answer.addBoth(deliver)
    return outcome


def pullProgress(image: str) -> list[bytes]:
    """The JSON lines of dockerd's progress when it pulls C{image}."""
    name, _, tag = image.rpartition(":")
    return [
        json.dumps(item).encode() + b"\n"
        for item in (
            {"status": f"Pulling from {name}", "id": tag},
            {"status": "Pulling fs layer", "id": "0123456789ab"},
            {"status": "Pull complete", "id": "0123456789ab"},
            {"status": f"Status: Downloaded newer image for {image}"},
        )
    ]


def discard(result: object, feeds: list[Feed], feed: Feed) -> object:
    if feed in feeds:
        feeds.remove(feed)
    return result


def hasLabel(labels: dict[str, str], wanted: str) -> bool:
    key, sep, value = wanted.partition("=")
    return key in labels and (not sep or labels[key] == value)


def eventMatches(event: dict[str, Any], filters: dict[str, list[str]]) -> bool:
    if "type" in filters and event["Type"] not in filters["type"]:
        return False
    attributes = event["Actor"]["Attributes"]
    return all(hasLabel(attributes, wanted) for wanted in filters.get("label", ()))


def frame(stream: str, nanos: int, text: bytes, timestamps: bool) -> bytes:
    """One line in the engine's multiplexed format."""
    payload = (nanoTime(nanos).encode() + b" " if timestamps else b"") + text + b"\n"
    return struct.pack(">BxxxL", _STREAMS[stream], len(payload)) + payload


def spec(container: FakeContainer) -> Container:
    return Container(
        name=container.name,
        id=container.id,
        backend="docker",
        image=container.image,
        command=tuple(container.command()),
        state=State.CREATED,
        created=container.created / 1e9,
    )


__all__ = [
    "Feed",
    "answerLater",
    "pullProgress",
    "FakeContainer",
    "StreamEnd",
    "discard",
    "eventMatches",
    "findContainer",
    "flag",
    "frame",
    "healthJSON",
    "hasLabel",
    "imageReference",
    "nanoTime",
    "parseFilters",
    "sinceNanos",
    "spec",
]
