"""
L{FakeDockerEngine}: an L{IDockerEngine} that keeps its containers in
memory, on an injected clock, for the Docker backend's tests on any machine.
L{pycm.testing.enginesuite} holds it to the real engine;
L{pycm.testing.dockerstate} keeps its containers.
"""

from __future__ import annotations

import functools
import json
import signal as _signal
from collections.abc import Callable, Iterable
from typing import Any

import attrs
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from pycm.backends.docker.engine import EngineError, Stream
from pycm.backends.docker.interfaces import IDockerEngine
from pycm.backends.memory import SimulatedRun, SimulatedRuntime
from pycm.interfaces import IRunObserver
from pycm.model import parseSignal
from pycm.testing.dockerhealth import FakeHealthChecks
from pycm.testing.dockerstate import (
    FakeContainer,
    Feed,
    discard,
    eventMatches,
    findContainer,
    flag,
    frame,
    hasLabel,
    imageReference,
    nanoTime,
    parseFilters,
    pullProgress,
    sinceNanos,
    spec,
)
from pycm.testing.fakeengine import AnswersLater, writeBody

#: The simulated commands, as files of every fake image.
SIMULATED_COMMANDS = ("sleep", "exit", "echo", "fail", "delay", "ignore-term", "burn")


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
class FakeDockerEngine(AnswersLater):
    """
    An in-memory Docker engine on C{clock}.

    Its containers run the memory backend's simulated commands
    (L{pycm.backends.memory}: C{sleep S}, C{exit N}, C{echo ...},
    C{fail ...}, C{delay S ...}, C{ignore-term}, C{burn}, C{unstartable});
    each command is a file C{/bin/NAME} of its images, so the backend's
    look for the executable finds it, and C{unstartable} is missing.
    Signal deaths exit 128+N; restart policies, stop timeouts, logs,
    waits, events with C{since} and pulls behave as dockerd's; so do
    health checks and execs, in a tiny shell whose C{test -e}, C{touch}
    and C{rm} see a set of paths of each container
    (L{pycm.testing.dockerhealth.FakeHealthChecks} says how).

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
        super().__init__(clock)
        self.images = {imageReference(i) for i in images}
        self.registry = {imageReference(i) for i in registry}
        self.containers: dict[str, FakeContainer] = {}
        self.events: list[dict[str, Any]] = []
        self._runtime = SimulatedRuntime(clock)
        self._eventFeeds: list[Feed] = []
        self._serial = 0
        self.health = FakeHealthChecks(clock, self._now, self._event)

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
            return self.later(defer.fail(e))
        if not isinstance(answer, Deferred):
            answer = defer.succeed(answer)
        return self.later(answer)

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
            return self.later(defer.fail(e))
        return self.openStream(opener, onData)

    def _streamOpener(
        self, method: str, path: str, params: dict[str, Any]
    ) -> Callable[[Feed], None]:
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
        self.cancelPending()
        for feed in list(self._eventFeeds):
            feed.end()
        for container in self.containers.values():
            for feed in list(container.followers):
                feed.end()
        return defer.succeed(None)

    # -- plumbing ------------------------------------------------------------

    def _route(self, method: str, path: str) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        parts = path.strip("/").split("/")
        if parts == ["containers", "json"] and method == "GET":
            return self._list, ()
        if parts == ["containers", "create"] and method == "POST":
            return self._create, ()
        if parts == ["info"] and method == "GET":
            return (lambda params, body: (200, {"CgroupDriver": "cgroupfs", "Containers": len(
                self.containers), "SystemTime": nanoTime(int(self.clock.seconds() * 10**9))})), ()
        if parts[0] == "exec" and len(parts) == 3:
            execs = {("POST", "start"): self.health.start, ("GET", "json"): self.health.inspect}
            if (method, parts[2]) in execs:
                return execs[method, parts[2]], (parts[1],)
        if parts[0] == "images" and method == "DELETE":
            return self._removeImage, ("/".join(parts[1:]),)
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
                ("POST", "exec"): self.health.create,
                ("GET", "logs"): self._logs,
                ("GET", "stats"): self._stats,
                ("DELETE", ""): self._remove,
            }.get((method, action))
            if handler is not None:
                return handler, (container,)
        raise EngineError(404, f"page not found: {method} {path}")

    def _find(self, ref: str) -> FakeContainer:
        return findContainer(self.containers, ref)

    def _now(self) -> int:
        return int(round(self.clock.seconds() * 10**9))

    def _event(self, container: FakeContainer, action: str, **attributes: str) -> None:
        """Tell C{action} of C{container} to the event streams."""
        # Strictly increasing, as on a real engine (the clock may stand
        # still): a reader tells events apart by time, id and action.
        nanos = max(self._now(), self.events[-1]["timeNano"] + 1 if self.events else 0)
        event = container.event(action, nanos, **attributes)
        self.events.append(event)
        for feed in list(self._eventFeeds):
            if feed.accepts(event):
                self.clock.callLater(0, feed.write, json.dumps(event).encode() + b"\n")

    # -- containers ----------------------------------------------------------

    def _list(self, params: dict[str, Any], body: Any) -> tuple[int, Any]:
        filters = parseFilters(params.get("filters"))
        everything = flag(params.get("all"))
        found = []
        for container in self.containers.values():
            labels = container.config.get("Labels") or {}
            if not everything and container.status != "running":
                continue
            if not all(hasLabel(labels, wanted) for wanted in filters.get("label", ())):
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
        container = FakeContainer.fromBody(cid, name, image, body, self._now())
        self.containers[cid] = container
        self._event(container, "create")
        return (201, {"Id": cid, "Warnings": []})

    def _removeImage(self, image: str, params: dict[str, Any], body: Any) -> Any:
        reference = imageReference(image)
        if reference not in self.images:
            raise EngineError(404, f"No such image: {image}")
        self.images.discard(reference)
        return (200, [{"Untagged": reference}])

    def _inspect(self, container: FakeContainer, params: dict[str, Any], body: Any) -> Any:
        return (200, container.inspect())

    def _archive(self, container: FakeContainer, params: dict[str, Any], body: Any) -> Any:
        path = str(params.get("path", ""))
        directory, _, name = path.rpartition("/")
        if directory in ("/bin", "/usr/bin") and name in SIMULATED_COMMANDS:
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
        d = self._runtime.spawn(spec(container), _RunOutput(self, container))
        runs: list[Any] = []
        d.addCallbacks(runs.append, lambda f: runs.append(f))
        run = runs[0]
        if not isinstance(run, SimulatedRun):
            container.notStarted()
            return
        container.started(run, self._now())
        self._event(container, "start")
        self.health.started(container)

    def _output(self, container: FakeContainer, stream: str, lines: list[bytes]) -> None:
        now = self._now()
        for line in lines:
            container.logs.append((now, stream, line))
            for feed in list(container.followers):
                feed.write(frame(stream, now, line, feed.timestamps))

    def _exited(self, container: FakeContainer, code: int | None) -> None:
        """The run ended: die, wake the waiters, maybe restart by policy."""
        status = 128 - code if code is not None and code < 0 else (code or 0)
        ran = self.clock.seconds() - (container.startedAt or 0) / 1e9
        container.exited(status, self._now())
        self.health.stopped(container)
        self._event(container, "die", exitCode=str(status))
        for feed in list(container.followers):
            self.clock.callLater(0, feed.end)
        container.followers.clear()
        if container.restartsAfter(status):
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

    def _kill(self, container: FakeContainer, params: dict[str, Any], body: Any) -> Any:
        if container.status != "running":
            raise EngineError(
                409,
                f"Cannot kill container: {container.id}: Container {container.id} is not running",
            )
        signum = parseSignal(str(params.get("signal") or "SIGKILL"))
        if signum in (_signal.SIGKILL, container.stopSignal()):
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
        self._signal(container, container.stopSignal())

        def escalate() -> None:
            if container.status == "running":
                self._signal(container, _signal.SIGKILL)

        timer = self.clock.callLater(seconds, escalate)
        return died.addBoth(lambda _: timer.cancel() if timer.active() else None)

    def _stop(self, container: FakeContainer, params: dict[str, Any], body: Any) -> Any:
        if container.status not in ("running", "restarting"):
            return (304, None)
        wasRunning = container.status == "running"

        def stopped(_: object) -> tuple[int, None]:
            if wasRunning:
                self._event(container, "stop")
            return (204, None)

        return self._halt(container, container.stopTime(params)).addCallback(stopped)

    def _restart(self, container: FakeContainer, params: dict[str, Any], body: Any) -> Any:
        def start(_: object) -> tuple[int, None]:
            self._start(container, {}, None)
            self._event(container, "restart")
            return (204, None)

        return defer.maybeDeferred(self._stop, container, params, body).addCallback(start)

    def _remove(self, container: FakeContainer, params: dict[str, Any], body: Any) -> Any:
        if container.status in ("running", "restarting") and not flag(params.get("force")):
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
            self.health.stopped(container, quiet=True)
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
        return (200, container.stats(self._now()))

    # -- logs, events, pulls --------------------------------------------------

    def _logs(self, container: FakeContainer, params: dict[str, Any], body: Any) -> Any:
        stamps = flag(params.get("timestamps"))
        return (
            200,
            b"".join(frame(s, t, text, stamps) for t, s, text in container.backlog(params)),
        )

    def _followLogs(self, feed: Feed, container: FakeContainer, params: dict[str, Any]) -> None:
        if not flag(params.get("follow")):  # dockerd's answer of a read, a piece a turn
            return writeBody(self.clock, feed, self._logs(container, params, None)[1])
        stamps = flag(params.get("timestamps"))
        for when, stream, text in container.backlog(params):
            feed.write(frame(stream, when, text, stamps))
        if container.status != "running" or container.id not in self.containers:
            feed.end()
            return
        feed.timestamps = stamps
        container.followers.append(feed)
        feed.ended.addBoth(discard, container.followers, feed)

    def _followEvents(self, feed: Feed, params: dict[str, Any]) -> None:
        filters = parseFilters(params.get("filters"))
        feed.accepts = lambda event: eventMatches(event, filters)
        since = sinceNanos(params.get("since"))
        until = sinceNanos(params.get("until"))
        if since is not None or until is not None:
            for event in self.events:
                if (
                    event["timeNano"] >= (since or 0)
                    and (until is None or event["timeNano"] <= until)
                    and feed.accepts(event)
                ):
                    feed.write(json.dumps(event).encode() + b"\n")
        if until is not None and until <= int(self.clock.seconds() * 10**9):
            # dockerd's history up to a past C{until}, then the end.
            feed.end()
            return
        self._eventFeeds.append(feed)
        feed.ended.addBoth(discard, self._eventFeeds, feed)

    def _pull(self, feed: Feed, image: str) -> None:
        for line in pullProgress(image):
            feed.write(line)
        self.images.add(image)
        feed.end()


__all__ = ["SIMULATED_COMMANDS", "FakeDockerEngine"]
