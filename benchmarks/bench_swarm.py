"""
The swarm section: pycm's swarm backend in front of a Docker Swarm manager,
against the docker SDK and the engine reached directly, in the same run
(issue 9's targets).

    python benchmarks/bench_swarm.py [--quick] [--poll SECONDS] [--trace]
                                     [--daemon-option KEY=VALUE]...

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
lag is where a poller's cadence shows.  With C{--trace} the daemon reaches
the manager through a relay (L{benchmarks.swarmtrace}) and the first rounds
print every request it made meanwhile (figures then not to quote).

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

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from benchmarks.common import (  # noqa: E402
    Children,
    LineClient,
    Missing,
    cpuSeconds,
    expectOK,
    median,
)
from benchmarks.report import Report, runAlone  # noqa: E402
from benchmarks.swarmsides import (  # noqa: E402
    COMMAND,
    Engine,
    PycmSide,
    SdkSide,
    Timing,
    lag,
    readyWait,
    specDifferences,
    waitGone,
)
from benchmarks.swarmtrace import EngineTrace  # noqa: E402

SECTION = "swarm"
#: The label pycm's swarm backend puts on its services.
LABEL = "io.pycm.managed"
#: Seconds between two looks at the tasks on the SDK side: the cadence of
#: C{docker service create}'s own wait for convergence (docker/cli,
#: cli/command/service/progress: one look, then 200 ms).
POLL = 0.2
LIST_SERVICES = 20
SCALE_TO = 10
#: With C{--trace} (or C{PYCM_BENCH_SWARM_TRACE=1}): the daemon reaches the
#: manager through L{EngineTrace}, and the first rounds' requests are printed.
TRACE = os.environ.get("PYCM_BENCH_SWARM_TRACE") == "1"
TRACED_ROUNDS = 2
#: Extra C{--backend-option KEY=VALUE}s for the daemon (C{--daemon-option}
#: of the section alone), to try a setting such as C{poll-interval}.
DAEMON_OPTIONS: list[str] = []

#: How to get a swarm manager, for the messages of a skipped section.
HOWTO = (
    "start the two-node dev swarm with `source .ci/swarm-setup.sh && pycm_swarm_setup` "
    '(or `eval "$(.ci/swarm-setup.sh setup DIR)"`), then run again'
)
NEEDS = f"PYCM_SWARM_HOST (the unix:// socket of a swarm manager) is not set: {HOWTO}"


def _printTrace(
    trace: EngineTrace | None,
    engine: Engine,
    what: str,
    name: str,
    count: int,
    started: tuple[float, float],
    seconds: float,
) -> None:
    """Print what the daemon asked the manager during one timed operation."""
    if trace is None:
        return
    perf, wall = started
    runningAt = engine.lastRunningAt(name, count)
    print(f"  trace of pycm {what} {name} ({seconds * 1000:.0f} ms):")
    for line in trace.timeline(perf, perf + seconds):
        print(f"    {line}")
    if runningAt is not None:
        print(f"    +{(runningAt - wall) * 1000:7.1f} ms  the last task running (its timestamp)")
    print(f"    +{seconds * 1000:7.1f} ms  pycm's reply", flush=True)


def _interleaved(
    rounds: int,
    ops: Sequence[Callable[[int], tuple[float, float | None]]],
    between: Callable[[int], None],
    discard: Callable[[int], None],
) -> list[Timing]:
    """
    Rounds of one operation of each side, who goes first turning round by
    round.  A round that fails (other tests kill the dev swarm's worker,
    and a task lost with it under restart condition none never runs) is
    discarded, its services removed, and run again, twice at most.
    """
    timings = [Timing() for _ in ops]
    for i in range(rounds):
        for attempt in range(3):
            results = []
            try:
                between(i)
                for k in range(len(ops)):
                    j = (i + k) % len(ops)
                    results.append((j, ops[j](i)))
            except (RuntimeError, OSError) as e:
                if attempt == 2:
                    raise
                print(f"  round {i} disrupted ({e}); discarded, again", flush=True)
                discard(i)
                continue
            for j, result in results:
                timings[j].add(*result)
            break
    return timings


def _ratioRows(
    report: Report,
    what: str,
    target: float,
    pycm: Timing,
    sdk: Timing,
    sdkWhat: str,
    label: str = "SDK",
    pycmRow: bool = True,
) -> None:
    pycmMs = median(pycm.seconds) * 1000
    sdkMs = median(sdk.seconds) * 1000
    rounds = len(pycm.seconds)
    report.add(SECTION, f"{sdkWhat} x {rounds} (median ms)", f"{sdkMs:.0f}", note=sdk.lagNote())
    if pycmRow:
        report.add(
            SECTION, f"pycm {what} x {rounds} (median ms)", f"{pycmMs:.0f}", note=pycm.lagNote()
        )
    ratio = median([p / s for p, s in zip(pycm.seconds, sdk.seconds, strict=True)])
    report.add(
        SECTION,
        f"{what} ratio pycm/{label}",
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
        raise Missing(f"no engine answers at PYCM_SWARM_HOST={host} ({e}): {HOWTO}") from None
    swarm = info.get("Swarm") or {}
    if not swarm.get("ControlAvailable"):
        engine.close()
        raise Missing(
            f"the engine at {host} is not a swarm manager "
            f"(state {swarm.get('LocalNodeState', '?')}): {HOWTO}"
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
    trace = EngineTrace(host[len("unix://") :], children.tempdir("trace")) if TRACE else None
    daemonHost = trace.address if trace is not None else host
    daemon = startDaemon(
        children,
        "swarm",
        [
            "--docker-host",
            daemonHost,
            "--default-image",
            image,
            *(arg for option in DAEMON_OPTIONS for arg in ("--backend-option", option)),
        ],
    )
    pycm = PycmSide(daemon.port, image, engine)
    sdkSide = SdkSide(sdk, image, tag, POLL, engine)
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    wall0 = time.monotonic()
    load0 = os.getloadavg()
    daemonCpu = 0.0
    try:
        expectOK(pycm.request("ping"), "ping")
        # One of each first, unmeasured: image and layer caches warm on the nodes.
        pycm.run(f"{prefix}-pw")
        sdkSide.run(f"{prefix}-sw")
        differences = specDifferences(engine, f"{prefix}-pw", f"{prefix}-sw")
        if differences:
            report.notes.append("swarm: the two sides' services differ: " + "; ".join(differences))

        def pycmRun(i: int) -> tuple[float, float | None]:
            nonlocal daemonCpu
            name = f"{prefix}-p{i}"
            cpu0 = cpuSeconds(daemon.pid)
            started = (time.perf_counter(), time.time())
            seconds, endedAt = pycm.run(name)
            daemonCpu += cpuSeconds(daemon.pid) - cpu0
            if i < TRACED_ROUNDS:
                _printTrace(trace, engine, "run", name, 1, started, seconds)
            return seconds, lag(engine, name, 1, endedAt)

        def sdkRun(i: int) -> tuple[float, float | None]:
            name = f"{prefix}-s{i}"
            seconds, endedAt = sdkSide.run(name)
            return seconds, lag(engine, name, 1, endedAt)

        polls0 = sdkSide.polls

        def discardRun(i: int) -> None:
            names = [f"{prefix}-p{i}", f"{prefix}-s{i}"]
            pycm.remove(names[0])
            sdkSide.remove(names[1])
            waitGone(nodes, names)

        runP, runS = _interleaved(
            runRounds, [pycmRun, sdkRun], lambda i: readyWait(nodes[0]), discardRun
        )
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
        waitGone(nodes, gone)

        def pycmScale(i: int) -> tuple[float, float | None]:
            nonlocal daemonCpu
            name = f"{prefix}-pc{i}"
            cpu0 = cpuSeconds(daemon.pid)
            started = (time.perf_counter(), time.time())
            seconds, endedAt = pycm.scale(name, SCALE_TO)
            daemonCpu += cpuSeconds(daemon.pid) - cpu0
            if i < TRACED_ROUNDS:
                _printTrace(trace, engine, "scale", name, SCALE_TO, started, seconds)
            return seconds, lag(engine, name, SCALE_TO, endedAt)

        def sdkScale(i: int) -> tuple[float, float | None]:
            name = f"{prefix}-sc{i}"
            seconds, endedAt = sdkSide.scale(name, SCALE_TO)
            return seconds, lag(engine, name, SCALE_TO, endedAt)

        def sdkScaleKeeping(i: int) -> tuple[float, float | None]:
            name = f"{prefix}-sk{i}"
            seconds, endedAt = sdkSide.scaleKeepingSpec(name, SCALE_TO)
            return seconds, lag(engine, name, SCALE_TO, endedAt)

        def scaleNames(i: int) -> list[str]:
            return [f"{prefix}-pc{i}", f"{prefix}-sc{i}", f"{prefix}-sk{i}"]

        def removeScaled(i: int) -> None:
            """Untimed: the round's 30 tasks go, from every node."""
            names = scaleNames(i)
            pycm.remove(names[0])
            sdkSide.remove(names[1])
            sdkSide.remove(names[2])
            waitGone(nodes, names)

        def scaleRound(i: int) -> None:
            """Untimed: a service of each side at one running task."""
            if i:
                removeScaled(i - 1)
            readyWait(nodes[0])
            names = scaleNames(i)
            pycm.run(names[0])
            sdkSide.run(names[1])
            sdkSide.run(names[2])

        scaleP, scaleS, scaleK = _interleaved(
            scaleRounds, [pycmScale, sdkScale, sdkScaleKeeping], scaleRound, removeScaled
        )
        removeScaled(scaleRounds - 1)
        _ratioRows(
            report,
            f"scale 1 -> {SCALE_TO} until all run",
            1.10,
            scaleP,
            scaleS,
            f"SDK service.scale({SCALE_TO}) + GET /tasks every {POLL * 1000:.0f} ms",
        )
        _ratioRows(
            report,
            f"scale 1 -> {SCALE_TO} until all run",
            1.10,
            scaleP,
            scaleK,
            f"SDK update_service keeping the spec ({SCALE_TO} replicas, no rolling update)"
            f" + GET /tasks every {POLL * 1000:.0f} ms",
            label="SDK keeping the spec",
            pycmRow=False,
        )

        # list: this run's pycm services, topped up to LIST_SERVICES.
        readyWait(nodes[0])
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
            expectOK(pycm.client.request("list"), "list")
        listCpu = 0.0
        for _ in range(lists):
            seconds, *counted = engine.timedList(filters)
            counts = (counted[0], counted[1])
            engineTimes.append(seconds)
            cpu0 = cpuSeconds(daemon.pid)
            elapsed, reply = pycm.client.timed("list")
            listCpu += cpuSeconds(daemon.pid) - cpu0
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
            note=f"{len(pycm.names)} of them this run's (any other pycm services on the "
            f"shared swarm are listed by both); daemon CPU {listCpu / lists * 1000:.1f} ms a list",
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
        nodeList = engine.get("/nodes")
        load1 = os.getloadavg()
        report.notes.append(
            f"swarm: engine {info.get('ServerVersion', '?')} at {host}, {len(nodeList)} nodes, "
            f"image {image}, `{' '.join(COMMAND)}` under docker-init, restart none; "
            f"SDK {docker.__version__} polls every {POLL * 1000:.0f} ms (docker service "
            f"create's cadence); load average {load0[0]:.1f} -> {load1[0]:.1f}"
            + (f"; daemon options {', '.join(DAEMON_OPTIONS)}" if DAEMON_OPTIONS else "")
        )
    finally:
        # On a connection of its own: this one may still wait for a reply.
        pycm.client.close()
        try:
            pycm.client = LineClient(daemon.port, timeout=60)
            for name in list(pycm.names):
                pycm.remove(name)
            pycm.client.close()
        except Exception:
            pass
        try:
            for service in sdk.services.list(filters={"name": prefix}):
                service.remove()
        except Exception:
            pass
        sdk.close()
        for node in nodes:
            node.close()
        children.stop(daemon.proc)
        if trace is not None:
            trace.close()


def main() -> int:
    global POLL, TRACE
    args = sys.argv[1:]
    quick = "--quick" in args
    TRACE = TRACE or "--trace" in args
    for i, arg in enumerate(args[:-1]):
        if arg == "--daemon-option":
            DAEMON_OPTIONS.append(args[i + 1])
    if "--poll" in args:
        POLL = float(args[args.index("--poll") + 1])
    from benchmarks.run import machine

    print(f"machine: {machine()}", flush=True)
    return runAlone(run, quick)


if __name__ == "__main__":
    sys.exit(main())
