"""
The swarm section: pycm's swarm backend in front of a Docker Swarm manager,
against the docker SDK and the engine reached directly, in the same run
(issue 9's targets).

    python benchmarks/bench_swarm.py [--quick] [--poll SECONDS]

or as a section of run.py (C{--only swarm}): C{run(report, quick, children)}.

  - C{run} until the task runs: pycm's C{run --replicas=1 NAME IMAGE sleep
    1000} (then C{wait --for=running NAME} if the reply says the task does
    not run yet) over one TCP connection, against the docker SDK's
    C{services.create} followed by C{GET /tasks} every L{POLL} seconds
    until the task runs, as C{docker service create} itself waits.  Same
    image, command, docker-init and restart policy.  Interleaved rounds,
    alternating who goes first; the median of the rounds' ratios.
    Target: at most 1.10x.
  - C{scale} 1 -> 10 until all ten run: pycm's C{scale NAME 10} against the
    SDK's C{service.scale(10)} plus the same polling, each on a service of
    its own already running one task.  Target: at most 1.10x.
  - C{list} of 20 pycm services: pycm's C{list} against the engine's own
    C{GET /services} plus C{GET /tasks} over a kept-alive HTTP connection
    on the manager's socket.  Target: at most 1.5x the engine's plus 2 ms.

Each timed operation is also split, from the tasks' own status timestamps
(the engine's clock, the same host's), into the engine's part (until the
last task ran) and the lag after it (how soon the caller learnt it): the
lag is where a poller's cadence shows.

Needs C{PYCM_SWARM_HOST} (a swarm manager's unix:// socket;
C{.ci/swarm-setup.sh} starts a two-node swarm), C{PYCM_TEST_IMAGE} on every
node and the C{docker} package (the C{bench} extra).
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from benchmarks.bench_docker import _UnixHTTP  # noqa: E402
from benchmarks.common import (  # noqa: E402
    Children,
    LineClient,
    Missing,
    cpuSeconds,
    expectOK,
    median,
)
from benchmarks.report import Report  # noqa: E402

SECTION = "swarm"
#: The label pycm's swarm backend puts on its services.
LABEL = "io.pycm.managed"
#: Seconds between two looks at the tasks on the SDK side: the cadence of
#: C{docker service create}'s own wait for convergence (docker/cli,
#: cli/command/service/progress: one look, then 200 ms).
POLL = 0.2
COMMAND = ("sleep", "1000")
#: How long any one operation may take before the benchmark gives up.
DEADLINE = 180.0
LIST_SERVICES = 20
SCALE_TO = 10

NEEDS = (
    "PYCM_SWARM_HOST (the unix:// socket of a swarm manager) is not set: start "
    "the two-node dev swarm with `source .ci/swarm-setup.sh && pycm_swarm_setup` "
    '(or `eval "$(.ci/swarm-setup.sh setup DIR)"`), then run again'
)


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
        self.conn = _UnixHTTP(host[len("unix://") :])

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

    def __init__(self, client: LineClient, image: str, engine: Engine) -> None:
        self.client = client
        self.image = image
        self.engine = engine
        self.names: list[str] = []

    def _untilRunning(self, reply: bytes, name: str, what: str) -> None:
        expectOK(reply, what)
        body = json.loads(reply[2:] or b"{}")
        replicas = body.get("replicas") if isinstance(body, dict) else None
        if not replicas or replicas.get("running") != replicas.get("desired"):
            expectOK(
                self.client.request(f"wait --for=running --timeout={DEADLINE:.0f} {name}"),
                "wait --for=running",
            )

    def run(self, name: str) -> tuple[float, float]:
        """Run NAME with one replica until its task runs: (seconds, wall clock at the end)."""
        self.names.append(name)
        started = time.perf_counter()
        reply = self.client.request(f"run --replicas=1 {name} {self.image} {' '.join(COMMAND)}")
        self._untilRunning(reply, name, "run")
        return time.perf_counter() - started, time.time()

    def scale(self, name: str, replicas: int) -> tuple[float, float]:
        started = time.perf_counter()
        reply = self.client.request(f"scale {name} {replicas}")
        self._untilRunning(reply, name, "scale")
        return time.perf_counter() - started, time.time()

    def remove(self, name: str) -> None:
        self.client.request(f"rm --force {name}")
        if name in self.names:
            self.names.remove(name)


class SdkSide:
    """The docker SDK straight at the manager, as a careful SDK user writes it."""

    def __init__(self, sdk: Any, image: str, tag: str) -> None:
        self.sdk = sdk
        self.image = image
        self.tag = tag
        self.services: dict[str, Any] = {}
        self.polls = 0

    def _untilRunning(self, service: Any, replicas: int) -> None:
        """Look at the tasks at once, then every L{POLL} s, until C{replicas} run."""
        deadline = time.monotonic() + DEADLINE
        while True:
            self.polls += 1
            tasks = service.tasks(filters={"desired-state": "running"})
            if len(_runningTasks(tasks)) >= replicas:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"SDK: {service.name} not running after {DEADLINE:.0f} s")
            time.sleep(POLL)

    def run(self, name: str) -> tuple[float, float]:
        import docker.types

        started = time.perf_counter()
        service = self.sdk.services.create(
            self.image,
            list(COMMAND),
            name=name,
            labels={"bench": self.tag},
            mode=docker.types.ServiceMode("replicated", 1),
            init=True,
            restart_policy=docker.types.RestartPolicy(condition="none"),
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

    def remove(self, name: str) -> None:
        service = self.services.pop(name, None)
        if service is not None:
            service.remove()


def _lag(engine: Engine, name: str, count: int, endedAt: float) -> float | None:
    runningAt = engine.lastRunningAt(name, count)
    return None if runningAt is None else max(0.0, endedAt - runningAt)


def _interleaved(
    rounds: int,
    pycmOp: Callable[[int], tuple[float, float | None]],
    sdkOp: Callable[[int], tuple[float, float | None]],
    between: Callable[[int], None] | None = None,
) -> tuple[Timing, Timing]:
    """Rounds of one pycm and one SDK operation, alternating who goes first."""
    pycm, sdk = Timing(), Timing()
    for i in range(rounds):
        if between is not None:
            between(i)
        order = [(pycmOp, pycm), (sdkOp, sdk)]
        if i % 2:
            order.reverse()
        for op, timing in order:
            timing.add(*op(i))
    return pycm, sdk


def _ratioRows(
    report: Report, what: str, target: float, pycm: Timing, sdk: Timing, sdkWhat: str
) -> None:
    pycmMs = median(pycm.seconds) * 1000
    sdkMs = median(sdk.seconds) * 1000
    rounds = len(pycm.seconds)
    report.add(SECTION, f"{sdkWhat} x {rounds} (median ms)", f"{sdkMs:.0f}", note=sdk.lagNote())
    report.add(SECTION, f"pycm {what} x {rounds} (median ms)", f"{pycmMs:.0f}", note=pycm.lagNote())
    ratio = median([p / s for p, s in zip(pycm.seconds, sdk.seconds, strict=True)])
    report.add(
        SECTION,
        f"{what} ratio pycm/SDK",
        f"{ratio:.2f}x",
        f"<= {target:.2f}x",
        ratio <= target,
        note=f"median of the {rounds} rounds' ratios; ratio of the medians "
        f"{pycmMs / sdkMs:.2f}x; rounds pycm "
        + "/".join(f"{s * 1000:.0f}" for s in pycm.seconds)
        + " ms, SDK "
        + "/".join(f"{s * 1000:.0f}" for s in sdk.seconds)
        + " ms",
    )


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


def _specDifferences(engine: Engine, pycmName: str, sdkName: str) -> list[str]:
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


def _waitGone(nodes: Sequence[Engine], names: Sequence[str]) -> None:
    """Untimed: until no node holds a container of the removed services."""
    deadline = time.monotonic() + DEADLINE
    for node in nodes:
        for name in names:
            label = {"label": [f"com.docker.swarm.service.name={name}"]}
            while node.get("/containers/json?all=1", label) and time.monotonic() < deadline:
                time.sleep(0.2)


def run(report: Report, quick: bool, children: Children) -> None:
    host = os.environ.get("PYCM_SWARM_HOST", "")
    image = os.environ.get("PYCM_TEST_IMAGE", "pycm-test/busybox:latest")
    if not host.startswith("unix://"):
        raise Missing(NEEDS)
    try:
        import docker
    except ImportError:
        raise Missing(
            "the docker SDK is the reference: `pip install docker` (or the bench extra, "
            "`pip install '.[bench]'`)"
        ) from None
    engine = Engine(host)
    try:
        info = engine.get("/info")
    except OSError as e:
        engine.close()
        raise Missing(f"no engine answers at PYCM_SWARM_HOST={host} ({e}): {NEEDS}") from None
    swarm = info.get("Swarm") or {}
    if not swarm.get("ControlAvailable"):
        engine.close()
        raise Missing(
            f"the engine at {host} is not a swarm manager "
            f"(state {swarm.get('LocalNodeState', '?')}): {NEEDS}"
        )
    nodes = [engine]
    worker = os.environ.get("PYCM_SWARM_WORKER_HOST", "")
    if worker.startswith("unix://"):
        nodes.append(Engine(worker))
    from benchmarks.daemon import startDaemon

    runRounds = 4 if quick else 12
    scaleRounds = 2 if quick else 6
    lists = 20 if quick else 100
    sdk = docker.DockerClient(base_url=host, timeout=120)
    tag = uuid.uuid4().hex[:6]
    prefix = f"pb{tag}"
    daemon = startDaemon(children, "swarm", ["--docker-host", host, "--default-image", image])
    client = LineClient(daemon.port, timeout=DEADLINE + 30)
    pycm = PycmSide(client, image, engine)
    sdkSide = SdkSide(sdk, image, tag)
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    wall0 = time.monotonic()
    load0 = os.getloadavg()
    daemonCpu = 0.0
    try:
        expectOK(client.request("ping"), "ping")
        # One of each first, unmeasured: image and layer caches warm on the nodes.
        pycm.run(f"{prefix}-pw")
        sdkSide.run(f"{prefix}-sw")
        differences = _specDifferences(engine, f"{prefix}-pw", f"{prefix}-sw")
        if differences:
            report.notes.append("swarm: the two sides' services differ: " + "; ".join(differences))

        def pycmRun(i: int) -> tuple[float, float | None]:
            nonlocal daemonCpu
            name = f"{prefix}-p{i}"
            cpu0 = cpuSeconds(daemon.pid)
            seconds, endedAt = pycm.run(name)
            daemonCpu += cpuSeconds(daemon.pid) - cpu0
            return seconds, _lag(engine, name, 1, endedAt)

        def sdkRun(i: int) -> tuple[float, float | None]:
            name = f"{prefix}-s{i}"
            seconds, endedAt = sdkSide.run(name)
            return seconds, _lag(engine, name, 1, endedAt)

        polls0 = sdkSide.polls
        runP, runS = _interleaved(runRounds, pycmRun, sdkRun)
        _ratioRows(
            report,
            "run --replicas=1 until it runs",
            1.10,
            runP,
            runS,
            f"SDK services.create + GET /tasks every {POLL * 1000:.0f} ms",
        )
        runPolls = (sdkSide.polls - polls0) / runRounds
        # The SDK's services go; pycm's stay for the list below.
        gone = list(sdkSide.services)
        for name in gone:
            sdkSide.remove(name)
        _waitGone(nodes, gone)

        def prepareScale(i: int) -> None:
            """Untimed: a service of each at one running task."""
            pycm.run(f"{prefix}-pc{i}")
            sdkSide.run(f"{prefix}-sc{i}")

        def pycmScale(i: int) -> tuple[float, float | None]:
            nonlocal daemonCpu
            name = f"{prefix}-pc{i}"
            cpu0 = cpuSeconds(daemon.pid)
            seconds, endedAt = pycm.scale(name, SCALE_TO)
            daemonCpu += cpuSeconds(daemon.pid) - cpu0
            return seconds, _lag(engine, name, SCALE_TO, endedAt)

        def sdkScale(i: int) -> tuple[float, float | None]:
            name = f"{prefix}-sc{i}"
            seconds, endedAt = sdkSide.scale(name, SCALE_TO)
            return seconds, _lag(engine, name, SCALE_TO, endedAt)

        def scaleRound(i: int) -> None:
            if i:
                # The last round's 20 tasks go before this round starts.
                last = [f"{prefix}-pc{i - 1}", f"{prefix}-sc{i - 1}"]
                pycm.remove(last[0])
                sdkSide.remove(last[1])
                _waitGone(nodes, last)
            prepareScale(i)

        scaleP, scaleS = _interleaved(scaleRounds, pycmScale, sdkScale, scaleRound)
        last = [f"{prefix}-pc{scaleRounds - 1}", f"{prefix}-sc{scaleRounds - 1}"]
        pycm.remove(last[0])
        sdkSide.remove(last[1])
        _waitGone(nodes, last)
        _ratioRows(
            report,
            f"scale 1 -> {SCALE_TO} until all run",
            1.10,
            scaleP,
            scaleS,
            f"SDK service.scale({SCALE_TO}) + GET /tasks every {POLL * 1000:.0f} ms",
        )

        # list: this run's pycm services, topped up to LIST_SERVICES.
        i = 0
        while len(pycm.names) < LIST_SERVICES:
            pycm.run(f"{prefix}-l{i}")
            i += 1
        filters = {"label": [f"{LABEL}=true"]}
        engineTimes: list[float] = []
        listTimes: list[float] = []
        counts = (0, 0)
        listed = 0
        for _ in range(5):
            engine.timedList(filters)
            expectOK(client.request("list"), "list")
        for _ in range(lists):
            seconds, *counted = engine.timedList(filters)
            counts = (counted[0], counted[1])
            engineTimes.append(seconds)
            elapsed, reply = client.timed("list")
            expectOK(reply, "list")
            listed = len(json.loads(reply[2:]))
            listTimes.append(elapsed)
        engineMs = median(engineTimes) * 1000
        pycmMs = median(listTimes) * 1000
        report.add(
            SECTION,
            f"engine GET /services + GET /tasks, {counts[0]} services (median ms)",
            f"{engineMs:.2f}",
            note=f"{counts[1]} tasks; label filter {LABEL}=true on both",
        )
        limit = 1.5 * engineMs + 2
        report.add(
            SECTION,
            f"pycm list, {listed} services (median ms)",
            f"{pycmMs:.2f}",
            f"<= 1.5x engine + 2 ms = {limit:.2f}",
            pycmMs <= limit,
            note=f"{len(pycm.names)} of them this run's; any other pycm services on the "
            "shared swarm are listed by both",
        )
        wall = time.monotonic() - wall0
        usage1 = resource.getrusage(resource.RUSAGE_SELF)
        own = (usage1.ru_utime + usage1.ru_stime) - (usage0.ru_utime + usage0.ru_stime)
        timedOps = runRounds + scaleRounds
        report.add(
            SECTION,
            "load generator (this process, SDK included) CPU share",
            f"{own / wall:.0%}",
            note=f"{own:.1f} s of CPU over {wall:.0f} s; SDK looked at the tasks "
            f"{runPolls:.1f} times a run",
        )
        report.add(
            SECTION,
            "daemon CPU per timed pycm run/scale (ms)",
            f"{daemonCpu / timedOps * 1000:.0f}",
            note=f"over {timedOps} operations",
        )
        nodes = engine.get("/nodes")
        load1 = os.getloadavg()
        report.notes.append(
            f"swarm: engine {info.get('ServerVersion', '?')} at {host}, {len(nodes)} nodes, "
            f"image {image}, `{' '.join(COMMAND)}` under docker-init, restart none; "
            f"SDK {docker.__version__} polls every {POLL * 1000:.0f} ms (docker service "
            f"create's cadence); load average {load0[0]:.1f} -> {load1[0]:.1f}"
        )
    finally:
        for name in list(pycm.names):
            try:
                pycm.remove(name)
            except Exception:
                pass
        client.close()
        try:
            for service in sdk.services.list(filters={"name": prefix}):
                service.remove()
        except Exception:
            pass
        sdk.close()
        for node in nodes:
            node.close()
        children.stop(daemon.proc)


def main() -> int:
    global POLL
    args = sys.argv[1:]
    quick = "--quick" in args
    if "--poll" in args:
        POLL = float(args[args.index("--poll") + 1])
    from benchmarks.run import machine

    print(f"machine: {machine()}", flush=True)
    report = Report()
    children = Children()
    try:
        run(report, quick, children)
    except Missing as e:
        print(f"SKIPPED: {e}")
        return 2
    finally:
        children.killAll()
    print()
    print(report.table())
    for note in report.notes:
        print(f"note: {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
