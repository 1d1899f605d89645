"""
L{FakeDockerEngine}: an L{IDockerEngine} that keeps its containers in
memory, on an injected clock, for the Docker backend's tests on any machine.

Its containers run the memory backend's simulated commands
(L{pycm.backends.memory}: C{sleep S}, C{exit N}, C{echo ...}, C{fail ...},
C{delay S ...}, C{ignore-term}, C{burn}, C{unstartable}); each command is
a file C{/bin/NAME} of its images, so the backend's look for the
executable finds it, and C{unstartable} is missing.  Signal deaths exit
128+N; restart policies, stop timeouts, logs, waits, events with C{since}
and pulls behave as dockerd's.  L{pycm.testing.enginesuite} holds it to
the real engine.
"""

from __future__ import annotations

import functools
import json
import signal as _signal
import struct
import time
from collections.abc import Callable, Iterable
from typing import Any

import attrs
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from zope.interface import implementer

from pycm.backends.docker.engine import EngineError, Stream
from pycm.backends.docker.interfaces import IDockerEngine
from pycm.backends.memory import SimulatedRun, SimulatedRuntime
from pycm.interfaces import IRunObserver
from pycm.model import Container, State, parseSignal

#: The simulated commands, as files of every fake image.
COMMANDS = ("sleep", "exit", "echo", "fail", "delay", "ignore-term", "burn")
_STREAMS = {"stdout": 1, "stderr": 2}
_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def imageReference(name: str) -> str:
    """C{name} with C{:latest} if it has no tag nor digest."""
    if "@" in name or name.rfind(":") > name.rfind("/"):
        return name
    return name + ":latest"


def nanoTime(nanos: int) -> str:
    """Nanoseconds since the epoch as dockerd's RFC 3339 (9 digits)."""
    seconds, fraction = divmod(nanos, 10**9)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{fraction:09d}Z"


def _sinceNanos(value: Any) -> int | None:
    """The C{since} parameter (C{seconds[.nanoseconds]}) in nanoseconds."""
    if value is None or value == "":
        return None
    whole, _, fraction = str(value).partition(".")
    return int(whole) * 10**9 + int((fraction + "000000000")[:9] or 0)


def _flag(value: Any) -> bool:
    return value is True or str(value).lower() in ("1", "true")


def _filters(value: Any) -> dict[str, list[str]]:
    if isinstance(value, str):
        value = json.loads(value) if value else {}
    return {key: list(items) for key, items in (value or {}).items()}


class _Ended:
    """The transport of a fake stream: C{stopProducing} ends it."""

    def __init__(self, end: Callable[[], None]) -> None:
        self.stopProducing = end


@attrs.define(eq=False)
class _Feed:
    """A stream the fake is writing to."""

    onData: Callable[[bytes], None]
    ended: Deferred[None]
    #: Which events it takes (an events stream).
    accepts: Callable[[Any], bool] = lambda item: True
    #: Its lines have timestamps (a log follow).
    timestamps: bool = False

    def write(self, data: bytes) -> None:
        if not self.ended.called:
            self.onData(data)

    def end(self) -> None:
        if not self.ended.called:
            self.ended.callback(None)


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
    followers: list[_Feed] = attrs.Factory(list)
    waiters: list[tuple[str, Deferred[Any]]] = attrs.Factory(list)
    timers: list[IDelayedCall] = attrs.Factory(list)
    restartDelay: float = 0.1

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

    def cancelTimers(self) -> None:
        timers, self.timers = self.timers, []
        for call in timers:
            if call.active():
                call.cancel()


@implementer(IRunObserver)
@attrs.define
class _RunOutput:
    """Hears one simulated run: its output to the logs, its exit."""

    engine: FakeDockerEngine
    container: FakeContainer

    def output(self, stream: str, lines: list[bytes]) -> None:
        self.engine._output(self.container, stream, lines)

    def exited(self, exitCode: int | None) -> None:
        self.engine._exited(self.container, exitCode)


@implementer(IDockerEngine)
class FakeDockerEngine:
    """
    An in-memory Docker engine on C{clock} (see the module docstring).

    @param images: the images it has (C{busybox} is C{busybox:latest}).
    @param registry: the images a pull finds.
    @ivar containers: its containers, by id.
    """

    isPodman = False
    timeout = 10.0

    def __init__(
        self,
        clock: IReactorTime,
        images: Iterable[str] = ("busybox:latest",),
        registry: Iterable[str] = (),
    ) -> None:
        self.clock = clock
        self.images = {imageReference(i) for i in images}
        self.registry = {imageReference(i) for i in registry}
        self.containers: dict[str, FakeContainer] = {}
        self.events: list[dict[str, Any]] = []
        self._runtime = SimulatedRuntime(clock)
        self._eventFeeds: list[_Feed] = []
        self._pending: set[Deferred[Any]] = set()
        self._serial = 0

    # -- IDockerEngine -------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        params: dict[str, Any] | None = None,
        body: Any = None,
        timeout: float | None = None,
        raw: bool = False,
    ) -> Deferred[Any]:
        """Answer C{method path} on the next turn of the clock."""
        try:
            handler, args = self._route(method, path)
            answer = handler(*args, params or {}, body)
        except EngineError as e:
            return self._later(defer.fail(e))
        if not isinstance(answer, Deferred):
            answer = defer.succeed(answer)
        return self._later(answer)

    def stream(
        self,
        method: str,
        path: str,
        params: dict[str, Any] | None,
        onData: Callable[[bytes], None],
        body: Any = None,
        headerTimeout: float | None = None,
    ) -> Deferred[Stream]:
        """Open a stream of C{GET /events}, a log follow or a pull."""
        try:
            opener = self._streamOpener(method, path, params or {})
        except EngineError as e:
            return self._later(defer.fail(e))
        ended: Deferred[None] = Deferred()
        feed = _Feed(onData, ended)
        stream = Stream(ended, _Ended(feed.end))

        def opened(_: object) -> Stream:
            opener(feed)
            return stream

        return self._later(defer.succeed(None)).addCallback(opened)

    def _streamOpener(
        self, method: str, path: str, params: dict[str, Any]
    ) -> Callable[[_Feed], None]:
        """What starts writing to a stream of C{method path}, once open."""
        if (method, path) == ("GET", "/events"):
            return functools.partial(self._followEvents, params=params)
        if (method, path) == ("POST", "/images/create"):
            tag = params.get("tag") or "latest"
            image = imageReference(f"{params.get('fromImage', '')}:{tag}")
            if image not in self.registry:
                raise EngineError(
                    404, f"manifest for {image} not found: manifest unknown: manifest unknown"
                )
            return functools.partial(self._pull, image=image)
        if method == "GET" and path.startswith("/containers/") and path.endswith("/logs"):
            container = self._find(path.split("/")[2])
            return functools.partial(self._followLogs, container=container, params=params)
        raise EngineError(404, f"page not found: {method} {path}")

    def close(self) -> Deferred[None]:
        """End every stream, fail every pending call with a cancel."""
        for d in list(self._pending):
            d.cancel()
        for feed in list(self._eventFeeds):
            feed.end()
        for container in self.containers.values():
            for feed in list(container.followers):
                feed.end()
        return defer.succeed(None)

    # -- plumbing ------------------------------------------------------------

    def _later(self, answer: Deferred[Any]) -> Deferred[Any]:
        """C{answer}'s result, given on a later turn of the clock (as over a socket)."""
        results: list[Any] = []

        def cancel(d: Deferred[Any]) -> None:
            answer.cancel()

        outcome: Deferred[Any] = Deferred(cancel)
        self._pending.add(outcome)
        outcome.addBoth(self._forget, outcome)

        def deliver(result: Any) -> None:
            results.append(result)
            self.clock.callLater(0, give)

        def give() -> None:
            if not outcome.called:
                if isinstance(results[0], defer.Failure):
                    outcome.errback(results[0])
                else:
                    outcome.callback(results[0])

        answer.addBoth(deliver)
        return outcome

    def _forget(self, result: Any, d: Deferred[Any]) -> Any:
        self._pending.discard(d)
        return result

    def _route(self, method: str, path: str) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        parts = path.strip("/").split("/")
        if parts == ["containers", "json"] and method == "GET":
            return self._list, ()
        if parts == ["containers", "create"] and method == "POST":
            return self._create, ()
        if parts[0] == "containers" and len(parts) in (2, 3):
            container = self._find(parts[1])
            action = parts[2] if len(parts) == 3 else ""
            handler = {
                ("GET", "json"): self._inspect,
                ("HEAD", "archive"): self._archive,
                ("POST", "start"): self._start,
                ("POST", "stop"): self._stop,
                ("POST", "restart"): self._restart,
                ("POST", "kill"): self._kill,
                ("POST", "wait"): self._wait,
                ("GET", "logs"): self._logs,
                ("GET", "stats"): self._stats,
                ("DELETE", ""): self._remove,
            }.get((method, action))
            if handler is not None:
                return handler, (container,)
        raise EngineError(404, f"page not found: {method} {path}")

    def _find(self, ref: str) -> FakeContainer:
        if ref in self.containers:
            return self.containers[ref]
        for container in self.containers.values():
            if container.name == ref.lstrip("/"):
                return container
        found = [c for c in self.containers.values() if c.id.startswith(ref)]
        if len(found) == 1 and ref:
            return found[0]
        raise EngineError(404, f"No such container: {ref}")

    def _now(self) -> int:
        return int(round(self.clock.seconds() * 10**9))

    def _event(self, container: FakeContainer, action: str, **attributes: str) -> None:
        """Tell C{action} of C{container} to the event streams."""
        # Strictly increasing, as on a real engine (the clock may stand
        # still): a reader tells events apart by time, id and action.
        nanos = max(self._now(), self.events[-1]["timeNano"] + 1 if self.events else 0)
        labels = dict(container.config.get("Labels") or {})
        event = {
            "status": action,
            "id": container.id,
            "from": container.image,
            "Type": "container",
            "Action": action,
            "Actor": {
                "ID": container.id,
                "Attributes": {
                    **labels,
                    "image": container.image,
                    "name": container.name,
                    **attributes,
                },
            },
            "scope": "local",
            "time": nanos // 10**9,
            "timeNano": nanos,
        }
        self.events.append(event)
        for feed in list(self._eventFeeds):
            if feed.accepts(event):
                self.clock.callLater(0, feed.write, json.dumps(event).encode() + b"\n")

    # -- containers ----------------------------------------------------------

    def _list(self, params: dict[str, Any], body: Any) -> tuple[int, Any]:
        filters = _filters(params.get("filters"))
        everything = _flag(params.get("all"))
        found = []
        for container in self.containers.values():
            labels = container.config.get("Labels") or {}
            if not everything and container.status != "running":
                continue
            if not all(_hasLabel(labels, wanted) for wanted in filters.get("label", ())):
                continue
            names = filters.get("name")
            if names and not any(n.lstrip("/") in container.name for n in names):
                continue
            found.append(container.summary())
        return (200, found)

    def _create(self, params: dict[str, Any], body: Any) -> tuple[int, Any]:
        body = dict(body or {})
        name = str(params.get("name") or "")
        image = imageReference(str(body.get("Image", "")))
        for other in self.containers.values():
            if other.name == name:
                raise EngineError(
                    409,
                    f'Conflict. The container name "/{name}" is already in use by '
                    f'container "{other.id}". You have to remove (or rename) that '
                    "container to be able to reuse that name.",
                )
        if image not in self.images:
            raise EngineError(404, f"No such image: {image}")
        self._serial += 1
        cid = f"{self._serial:04x}" + "f" * 60
        env = list(body.get("Env") or ())
        if not any(item.startswith("PATH=") for item in env):
            env.append("PATH=" + _DEFAULT_PATH)
        config = {
            "Image": str(body.get("Image", "")),
            "Cmd": list(body.get("Cmd") or ("sleep", "infinity")),
            "Env": env,
            "Labels": dict(body.get("Labels") or {}),
            "WorkingDir": body.get("WorkingDir") or "",
            "StopSignal": body.get("StopSignal") or "SIGTERM",
            "StopTimeout": body.get("StopTimeout"),
        }
        hostConfig = {"RestartPolicy": {"Name": "no", "MaximumRetryCount": 0}}
        hostConfig.update(body.get("HostConfig") or {})
        container = FakeContainer(cid, name, image, config, hostConfig, self._now())
        self.containers[cid] = container
        self._event(container, "create")
        return (201, {"Id": cid, "Warnings": []})

    def _inspect(self, container: FakeContainer, params: dict[str, Any], body: Any) -> Any:
        return (200, container.inspect())

    def _archive(self, container: FakeContainer, params: dict[str, Any], body: Any) -> Any:
        path = str(params.get("path", ""))
        if path.rsplit("/", 1)[0] in ("/bin", "/usr/bin") and path.rsplit("/", 1)[1] in COMMANDS:
            return (200, None)
        raise EngineError(404, f"Could not find the file {path} in container {container.name}")

    def _start(self, container: FakeContainer, params: dict[str, Any], body: Any) -> Any:
        if container.status in ("running", "restarting") and container.run is not None:
            return (304, None)
        container.cancelTimers()
        container.restartCount = 0
        container.restartDelay = 0.1
        self._run(container)
        if container.status != "running":
            raise EngineError(400, container.error)
        return (204, None)

    def _run(self, container: FakeContainer) -> None:
        """Start C{container}'s command (a client's start or its policy's)."""
        container.manuallyStopped = False
        d = self._runtime.spawn(_spec(container), _RunOutput(self, container))
        runs: list[Any] = []
        d.addCallbacks(runs.append, lambda f: runs.append(f))
        run = runs[0]
        if not isinstance(run, SimulatedRun):
            command = container.command()[0]
            container.error = (
                "failed to create task for container: OCI runtime create failed: "
                f'exec: "{command}": executable file not found in $PATH: unknown'
            )
            container.exitCode = 127
            if container.startedAt is not None:
                container.status = "exited"
            return
        container.run = run
        container.status = "running"
        container.pid = run.pid
        container.exitCode = 0
        container.error = ""
        container.startedAt = self._now()
        self._event(container, "start")

    def _output(self, container: FakeContainer, stream: str, lines: list[bytes]) -> None:
        now = self._now()
        for line in lines:
            container.logs.append((now, stream, line))
            for feed in list(container.followers):
                feed.write(_frame(stream, now, line, feed.timestamps))

    def _exited(self, container: FakeContainer, code: int | None) -> None:
        """The run ended: die, wake the waiters, maybe restart by policy."""
        status = 128 - code if code is not None and code < 0 else (code or 0)
        ran = self.clock.seconds() - (container.startedAt or 0) / 1e9
        container.run = None
        container.status = "exited"
        container.pid = 0
        container.exitCode = status
        container.finishedAt = self._now()
        self._event(container, "die", exitCode=str(status))
        for feed in list(container.followers):
            self.clock.callLater(0, feed.end)
        container.followers.clear()
        policy = container.hostConfig.get("RestartPolicy") or {}
        name = policy.get("Name") or "no"
        retries = policy.get("MaximumRetryCount") or 0
        again = not container.manuallyStopped and (
            name in ("always", "unless-stopped")
            or (
                name == "on-failure"
                and status != 0
                and (not retries or container.restartCount < retries)
            )
        )
        if again:
            if ran >= 10:
                container.restartDelay = 0.1
            container.status = "restarting"
            container.timers.append(
                self.clock.callLater(container.restartDelay, self._policyRestart, container)
            )
            container.restartDelay = min(container.restartDelay * 2, 60.0)
        self._wake(container, ("not-running", "next-exit"), status)

    def _policyRestart(self, container: FakeContainer) -> None:
        if container.status != "restarting":
            return
        container.restartCount += 1
        self._run(container)

    def _wake(self, container: FakeContainer, conditions: tuple[str, ...], status: int) -> None:
        for entry in list(container.waiters):
            condition, d = entry
            if condition in conditions:
                container.waiters.remove(entry)
                d.callback((200, {"StatusCode": status, "Error": None}))

    def _signal(self, container: FakeContainer, signum: int) -> None:
        self._event(container, "kill", signal=str(signum))
        if container.run is not None:
            container.run.signal(signum)

    def _stopSignal(self, container: FakeContainer) -> int:
        return parseSignal(str(container.config.get("StopSignal") or "SIGTERM"))

    def _kill(self, container: FakeContainer, params: dict[str, Any], body: Any) -> Any:
        if container.status != "running":
            raise EngineError(
                409,
                f"Cannot kill container: {container.id}: Container {container.id} is not running",
            )
        signum = parseSignal(str(params.get("signal") or "SIGKILL"))
        if signum in (_signal.SIGKILL, self._stopSignal(container)):
            container.manuallyStopped = True
        self._signal(container, signum)
        return (204, None)

    def _halt(self, container: FakeContainer, seconds: float) -> Deferred[None]:
        """The stop signal, SIGKILL after C{seconds}; fires once it died."""
        container.manuallyStopped = True
        if container.status == "restarting":
            container.cancelTimers()
            container.status = "exited"
            return defer.succeed(None)
        if container.status != "running":
            return defer.succeed(None)
        died: Deferred[None] = Deferred()
        container.waiters.append(("next-exit", died))
        self._signal(container, self._stopSignal(container))

        def escalate() -> None:
            if container.status == "running":
                self._signal(container, _signal.SIGKILL)

        timer = self.clock.callLater(seconds, escalate)
        return died.addBoth(lambda _: timer.cancel() if timer.active() else None)

    def _stopTime(self, container: FakeContainer, params: dict[str, Any]) -> float:
        given = params.get("t")
        if given is not None:
            return float(given)
        configured = container.config.get("StopTimeout")
        return 10.0 if configured is None else float(configured)

    def _stop(self, container: FakeContainer, params: dict[str, Any], body: Any) -> Any:
        if container.status not in ("running", "restarting"):
            return (304, None)
        wasRunning = container.status == "running"

        def stopped(_: object) -> tuple[int, None]:
            if wasRunning:
                self._event(container, "stop")
            return (204, None)

        return self._halt(container, self._stopTime(container, params)).addCallback(stopped)

    def _restart(self, container: FakeContainer, params: dict[str, Any], body: Any) -> Any:
        def start(_: object) -> tuple[int, None]:
            self._start(container, {}, None)
            self._event(container, "restart")
            return (204, None)

        return defer.maybeDeferred(self._stop, container, params, body).addCallback(start)

    def _remove(self, container: FakeContainer, params: dict[str, Any], body: Any) -> Any:
        if container.status in ("running", "restarting") and not _flag(params.get("force")):
            raise EngineError(
                409,
                f"You cannot remove a running container {container.id}. Stop the "
                "container before attempting removal or force remove",
            )
        container.manuallyStopped = True
        container.cancelTimers()
        if container.status == "running":
            self._signal(container, _signal.SIGKILL)
            died: Deferred[None] = Deferred()
            container.waiters.append(("next-exit", died))
        else:
            died = defer.succeed(None)

        def gone(_: object) -> tuple[int, None]:
            container.cancelTimers()
            self.containers.pop(container.id, None)
            for feed in container.followers:
                feed.end()
            self._event(container, "destroy")
            self._wake(container, ("removed", "not-running", "next-exit"), container.exitCode)
            return (204, None)

        return died.addCallback(gone)

    def _wait(self, container: FakeContainer, params: dict[str, Any], body: Any) -> Any:
        condition = str(params.get("condition") or "not-running")
        if condition == "not-running" and container.status not in ("running", "restarting"):
            return (200, {"StatusCode": container.exitCode, "Error": None})

        def cancel(_: Deferred[Any]) -> None:
            if entry in container.waiters:
                container.waiters.remove(entry)

        d: Deferred[Any] = Deferred(cancel)
        entry = (condition, d)
        container.waiters.append(entry)
        return d

    def _stats(self, container: FakeContainer, params: dict[str, Any], body: Any) -> Any:
        run = container.run
        if run is None:
            return (200, {"cpu_stats": {}, "memory_stats": {}, "pids_stats": {}})
        usage = run.usage(container.hostConfig.get("Memory"))
        return (
            200,
            {
                "read": nanoTime(self._now()),
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
            },
        )

    # -- logs, events, pulls --------------------------------------------------

    def _backlog(
        self, container: FakeContainer, params: dict[str, Any]
    ) -> list[tuple[int, str, bytes]]:
        wanted = {s for s in ("stdout", "stderr") if _flag(params.get(s))}
        lines = [line for line in container.logs if line[1] in wanted]
        tail = params.get("tail")
        if tail not in (None, "", "all"):
            count = int(tail)
            lines = lines[-count:] if count > 0 else []
        since = _sinceNanos(params.get("since"))
        if since is not None:
            lines = [line for line in lines if line[0] >= since]
        return lines

    def _logs(self, container: FakeContainer, params: dict[str, Any], body: Any) -> Any:
        stamps = _flag(params.get("timestamps"))
        return (
            200,
            b"".join(_frame(s, t, text, stamps) for t, s, text in self._backlog(container, params)),
        )

    def _followLogs(self, feed: _Feed, container: FakeContainer, params: dict[str, Any]) -> None:
        stamps = _flag(params.get("timestamps"))
        for when, stream, text in self._backlog(container, params):
            feed.write(_frame(stream, when, text, stamps))
        if container.status != "running" or container.id not in self.containers:
            feed.end()
            return
        feed.timestamps = stamps
        container.followers.append(feed)
        feed.ended.addBoth(_discard, container.followers, feed)

    def _followEvents(self, feed: _Feed, params: dict[str, Any]) -> None:
        filters = _filters(params.get("filters"))
        feed.accepts = lambda event: _eventMatches(event, filters)
        since = _sinceNanos(params.get("since"))
        if since is not None:
            for event in self.events:
                if event["timeNano"] >= since and feed.accepts(event):
                    feed.write(json.dumps(event).encode() + b"\n")
        self._eventFeeds.append(feed)
        feed.ended.addBoth(_discard, self._eventFeeds, feed)

    def _pull(self, feed: _Feed, image: str) -> None:
        name, _, tag = image.rpartition(":")
        for item in (
            {"status": f"Pulling from {name}", "id": tag},
            {"status": "Pulling fs layer", "id": "0123456789ab"},
            {"status": "Pull complete", "id": "0123456789ab"},
            {"status": f"Status: Downloaded newer image for {image}"},
        ):
            feed.write(json.dumps(item).encode() + b"\n")
        self.images.add(image)
        feed.end()


def _discard(result: object, feeds: list[_Feed], feed: _Feed) -> object:
    if feed in feeds:
        feeds.remove(feed)
    return result


def _hasLabel(labels: dict[str, str], wanted: str) -> bool:
    key, sep, value = wanted.partition("=")
    return key in labels and (not sep or labels[key] == value)


def _eventMatches(event: dict[str, Any], filters: dict[str, list[str]]) -> bool:
    if "type" in filters and event["Type"] not in filters["type"]:
        return False
    attributes = event["Actor"]["Attributes"]
    return all(_hasLabel(attributes, wanted) for wanted in filters.get("label", ()))


def _frame(stream: str, nanos: int, text: bytes, timestamps: bool) -> bytes:
    """One line in the engine's multiplexed format."""
    payload = (nanoTime(nanos).encode() + b" " if timestamps else b"") + text + b"\n"
    return struct.pack(">BxxxL", _STREAMS[stream], len(payload)) + payload


def _spec(container: FakeContainer) -> Container:
    return Container(
        name=container.name,
        id=container.id,
        backend="docker",
        image=container.image,
        command=tuple(container.command()),
        state=State.CREATED,
        created=container.created / 1e9,
    )


__all__ = ["COMMANDS", "FakeContainer", "FakeDockerEngine", "imageReference", "nanoTime"]
