"""
The two sides of the swarm section (L{benchmarks.bench_swarm}) and what
they share: L{PycmSide}, pycm's swarm backend driven over its socket as a
client does; L{SdkSide}, the docker SDK straight at the manager as a
careful SDK user writes it; L{Engine}, the manager's Engine API for the
untimed looks (the tasks' timestamps, the engine's own list, the specs).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote

from benchmarks.bench_docker import _UnixHTTP
from benchmarks.common import LineClient, expectOK, median

COMMAND = ("sleep", "1000")
#: How long any one operation may take before the benchmark gives up.
DEADLINE = 60.0


def _dockerTime(text: str) -> float:
    """A Docker timestamp (nanoseconds, C{Z}) as seconds since the epoch."""
    text = text.rstrip("Z")
    whole, _, fraction = text.partition(".")
    seconds = datetime.fromisoformat(whole + "+00:00").timestamp()
    return seconds + (float("0." + fraction) if fraction else 0.0)


def _runningTasks(tasks: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        t
        for t in tasks
        if t.get("DesiredState") == "running" and t.get("Status", {}).get("State") == "running"
    ]


class Engine:
    """The manager's Engine API over one kept-alive connection (untimed helpers)."""

    def __init__(self, host: str) -> None:
        self.path = host[len("unix://") :]
        self.conn = _UnixHTTP(self.path)

    def get(self, path: str, filters: dict[str, list[str]] | None = None) -> Any:
        if filters:
            path += ("&" if "?" in path else "?") + "filters=" + quote(json.dumps(filters))
        self.conn.request("GET", path)
        response = self.conn.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"GET {path}: {response.status} {body[:200]!r}")
        return json.loads(body)

    def tasks(self, service: str) -> list[dict[str, Any]]:
        return self.get("/tasks", {"service": [service], "desired-state": ["running"]})

    def taskSummary(self, service: str) -> str:
        """The service's tasks as the manager says, and the nodes' states (for errors)."""
        try:
            nodes = {n["ID"]: n for n in self.get("/nodes")}
            tasks = self.get("/tasks", {"service": [service]})
        except (OSError, RuntimeError) as e:
            return f"the manager: {e}"
        described = []
        for t in tasks:
            node = nodes.get(t.get("NodeID", ""), {})
            described.append(
                f"{t['Status']['State']} (desired {t['DesiredState']}) on "
                f"{node.get('Description', {}).get('Hostname', '?')} "
                f"[{node.get('Status', {}).get('State', '?')}]"
                + (f" {t['Status'].get('Err')}" if t["Status"].get("Err") else "")
            )
        return "tasks: " + ("; ".join(described) or "none")

    def lastRunningAt(self, service: str, count: int) -> float | None:
        """When the last of C{count} running tasks of C{service} began running."""
        running = _runningTasks(self.tasks(service))
        if len(running) < count:
            return None
        return max(_dockerTime(t["Status"]["Timestamp"]) for t in running)

    def timedList(self, filters: dict[str, list[str]]) -> tuple[float, int, int]:
        """The engine's own list: C{GET /services} then C{GET /tasks}; (s, services, tasks)."""
        started = time.perf_counter()
        services = self.get("/services", filters)
        tasks = self.get("/tasks", filters)
        return time.perf_counter() - started, len(services), len(tasks)

    def reset(self) -> None:
        """A new connection for the next request (after one that failed)."""
        self.conn.close()
        self.conn = _UnixHTTP(self.path)

    def close(self) -> None:
        self.conn.close()


class Timing:
    """One side's timed operations: durations, and the lag after the engine's part."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self.lags: list[float] = []

    def add(self, seconds: float, lag: float | None) -> None:
        self.seconds.append(seconds)
        if lag is not None:
            self.lags.append(lag)

    def lagNote(self) -> str:
        if not self.lags:
            return "lag after the tasks ran: unknown"
        return (
            f"engine part {median([s - g for s, g in zip(self.seconds, self.lags)]) * 1000:.0f}"
            f" ms, lag after the last task ran {median(self.lags) * 1000:.0f} ms "
            f"(max {max(self.lags) * 1000:.0f})"
        )


class PycmSide:
    """pycm's swarm backend, driven over its socket as a client does."""

    def __init__(self, port: int, image: str, engine: Engine) -> None:
        self.port = port
        self.client = LineClient(port, timeout=DEADLINE + 30)
        self.image = image
        self.engine = engine
        self.names: list[str] = []

    def request(self, line: str) -> bytes:
        """One request; with no reply in time, a new connection and L{RuntimeError}."""
        try:
            return self.client.request(line)
        except TimeoutError:
            self.client.close()
            self.client = LineClient(self.port, timeout=DEADLINE + 30)
            raise RuntimeError(
                f"pycm: no reply to {line.split()[0]} in {DEADLINE + 30:.0f} s"
            ) from None

    def _untilRunning(self, reply: bytes, name: str, what: str) -> None:
        expectOK(reply, what)
        body = json.loads(reply[2:] or b"{}")
        replicas = body.get("replicas") if isinstance(body, dict) else None
        if not replicas or replicas.get("running") != replicas.get("desired"):
            waited = self.request(f"wait --for=running --timeout={DEADLINE:.0f} {name}")
            if not waited.startswith(b"OK"):
                raise RuntimeError(
                    f"wait --for=running: {waited[:200]!r}; {self.engine.taskSummary(name)}"
                )

    def run(self, name: str) -> tuple[float, float]:
        """Run NAME with one replica until its task runs: (seconds, wall clock at the end)."""
        self.names.append(name)
        started = time.perf_counter()
        reply = self.request(f"run --replicas=1 {name} {self.image} {' '.join(COMMAND)}")
        self._untilRunning(reply, name, "run")
        return time.perf_counter() - started, time.time()

    def scale(self, name: str, replicas: int) -> tuple[float, float]:
        started = time.perf_counter()
        reply = self.request(f"scale {name} {replicas}")
        self._untilRunning(reply, name, "scale")
        return time.perf_counter() - started, time.time()

    def remove(self, name: str) -> None:
        self.request(f"rm --force {name}")
        if name in self.names:
            self.names.remove(name)


class SdkSide:
    """The docker SDK straight at the manager, as a careful SDK user writes it."""

    def __init__(self, sdk: Any, image: str, tag: str, poll: float, engine: Engine) -> None:
        self.sdk = sdk
        self.engine = engine
        self.image = image
        self.tag = tag
        #: Seconds between two looks at the tasks.
        self.poll = poll
        self.services: dict[str, Any] = {}
        self.polls = 0

    def _untilRunning(self, service: Any, replicas: int) -> None:
        """Look at the tasks at once, then every C{poll} s, until C{replicas} run."""
        deadline = time.monotonic() + DEADLINE
        while True:
            self.polls += 1
            tasks = service.tasks(filters={"desired-state": "running"})
            if len(_runningTasks(tasks)) >= replicas:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"SDK: {service.name} not running after {DEADLINE:.0f} s; "
                    + self.engine.taskSummary(service.name)
                )
            time.sleep(self.poll)

    def run(self, name: str) -> tuple[float, float]:
        import docker.types

        started = time.perf_counter()
        service = self.sdk.services.create(
            self.image,
            args=list(COMMAND),
            name=name,
            labels={"bench": self.tag},
            mode=docker.types.ServiceMode("replicated", 1),
            init=True,
            restart_policy=docker.types.RestartPolicy(condition="none"),
            resources={"Limits": {}},
        )
        self.services[name] = service
        self._untilRunning(service, 1)
        return time.perf_counter() - started, time.time()

    def scale(self, name: str, replicas: int) -> tuple[float, float]:
        service = self.services[name]
        service.reload()  # untimed: a fresh version index for the update
        started = time.perf_counter()
        service.scale(replicas)
        self._untilRunning(service, replicas)
        return time.perf_counter() - started, time.time()

    def scaleKeepingSpec(self, name: str, replicas: int) -> tuple[float, float]:
        """
        Scale as C{docker service scale} does: the service's own spec sent
        back with only the replica count changed.  (The SDK's
        C{service.scale} sends a spec the SDK filled in, with a stop grace
        period, an update config and empty DNS, resources and placement:
        the manager takes that for a new task template and replaces the
        running task too, one at a time.)
        """
        import docker.types

        service = self.services[name]
        api = self.sdk.api
        started = time.perf_counter()
        current = api.inspect_service(service.id)
        spec = current["Spec"]
        api.update_service(
            service.id,
            current["Version"]["Index"],
            task_template=spec["TaskTemplate"],
            name=spec["Name"],
            labels=spec.get("Labels"),
            mode=docker.types.ServiceMode("replicated", replicas),
            endpoint_spec=spec.get("EndpointSpec"),
        )
        self._untilRunning(service, replicas)
        return time.perf_counter() - started, time.time()

    def remove(self, name: str) -> None:
        service = self.services.pop(name, None)
        if service is not None:
            service.remove()


def lag(engine: Engine, name: str, count: int, endedAt: float) -> float | None:
    runningAt = engine.lastRunningAt(name, count)
    return None if runningAt is None else max(0.0, endedAt - runningAt)


#: What must be the same in the two sides' services (paths in their specs).
SAME = (
    ("TaskTemplate", "ContainerSpec", "Image"),
    ("TaskTemplate", "ContainerSpec", "Command"),
    ("TaskTemplate", "ContainerSpec", "Args"),
    ("TaskTemplate", "ContainerSpec", "Init"),
    ("TaskTemplate", "RestartPolicy", "Condition"),
    ("TaskTemplate", "Networks"),
    ("TaskTemplate", "Placement", "Constraints"),
    ("TaskTemplate", "Resources"),
    ("Mode",),
)


def specDifferences(engine: Engine, pycmName: str, sdkName: str) -> list[str]:
    """Where the two services' specs differ in what L{SAME} lists."""
    specs = [engine.get(f"/services/{name}")["Spec"] for name in (pycmName, sdkName)]
    differences = []
    for path in SAME:
        values = []
        for spec in specs:
            value: Any = spec
            for key in path:
                value = value.get(key) if isinstance(value, dict) else None
            values.append(value or None)
        if values[0] != values[1]:
            differences.append(f"{'.'.join(path)}: pycm {values[0]!r}, SDK {values[1]!r}")
    return differences


def readyWait(manager: Engine) -> float:
    """
    Untimed: until every node is ready (the dev swarm's worker is killed and
    brought back by other tests); the seconds waited.
    """
    started = time.monotonic()
    while True:
        down = [
            n["Description"]["Hostname"]
            for n in manager.get("/nodes")
            if n.get("Status", {}).get("State") != "ready"
        ]
        if not down:
            return time.monotonic() - started
        if time.monotonic() - started > DEADLINE:
            raise RuntimeError(f"swarm nodes not ready after {DEADLINE:.0f} s: {', '.join(down)}")
        time.sleep(0.5)


def waitGone(nodes: Sequence[Engine], names: Sequence[str]) -> None:
    """
    Untimed: until no node holds a container of the removed services.  A
    node whose engine does not answer (the dev swarm's worker is killed
    and brought back by other tests) is not waited for.
    """
    deadline = time.monotonic() + DEADLINE
    for node in nodes:
        for name in names:
            label = {"label": [f"com.docker.swarm.service.name={name}"]}
            try:
                while node.get("/containers/json?all=1", label) and time.monotonic() < deadline:
                    time.sleep(0.2)
            except OSError:
                node.reset()
                break
