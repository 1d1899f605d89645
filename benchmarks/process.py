"""
The process benchmark (issue 3, item 9; issue 12): the process backend
against supervisord, both running ``sleep 1000`` programs, in the same run.

  - starting N containers one after another on one connection (``run cN
    host sleep 1000``, waiting for each reply) against supervisord's
    ``startProcess(name, wait=True)`` over XML-RPC (programs with
    ``startsecs=0``, ``autostart=false``), then stopping them one after
    another (``stop cN`` against ``stopProcess(name, wait=True)``): the
    ratios of the median rates of interleaved rounds;
  - ``list`` with those N running against ``getAllProcessInfo``: the ratio
    of the median latencies;
  - daemon RSS with 1,000 running containers;
  - a container writing 100 MB of output as fast as it can: the daemon's
    RSS peak, and ``ping`` latency on another connection, sampled every
    10 ms while it floods.

supervisord is only a reference here: ``pip install supervisor`` in the
benchmark environment, never a dependency of pycm (see supervisord.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from benchmarks.common import (
    SERVER_CPU,
    Children,
    LineClient,
    LoadMeter,
    Missing,
    cpuSeconds,
    expectOK,
    median,
    percentile,
    raiseFileLimit,
    rssMiB,
)
from benchmarks.daemon import Daemon, daemonEnv, startProcessDaemon
from benchmarks.report import Report
from benchmarks.supervisord import Strays, Supervisord, supervisorVersion

SECTION = "process"
#: pycm's rates against supervisord's (issue 12), and its list's speed-up.
START_TARGET = 5.0
STOP_TARGET = 3.0
LIST_TARGET = 30.0


@dataclass
class Settings:
    containers: int = 200
    #: Interleaved rounds of the start rate (the median is reported).
    rounds: int = 3
    listRequests: int = 100
    manyContainers: int = 1000
    floodBytes: int = 100_000_000
    #: The issue-3 flood figure (PYCM_BENCH_NO_FLOOD=1 leaves it out, for
    #: repeated runs of the rates: the flood section measures it too).
    flood: bool = True
    #: The issue-3 RSS with 1,000 running (PYCM_BENCH_PROCESS_RATES_ONLY=1
    #: leaves it and the flood out: only the rates and the list).
    many: bool = True

    @classmethod
    def quick(cls) -> Settings:
        return cls(containers=50, rounds=1, listRequests=30, manyContainers=300,
                   floodBytes=20_000_000)

    def __post_init__(self) -> None:
        ratesOnly = os.environ.get("PYCM_BENCH_PROCESS_RATES_ONLY", "") not in ("", "0")
        self.flood = not ratesOnly and os.environ.get("PYCM_BENCH_NO_FLOOD", "") in ("", "0")
        self.many = not ratesOnly


def checkPrerequisites() -> None:
    try:
        import supervisor  # noqa: F401
    except ImportError:
        raise Missing("supervisord is the reference: `pip install supervisor` "
                      "(for the benchmark only)") from None
    probe = subprocess.run(
        [sys.executable, "-c", "import pycm.backends.process.backend"],
        env=daemonEnv(), capture_output=True, text=True,
    )
    if probe.returncode != 0:
        raise Missing("the process backend does not import: "
                      + (probe.stderr.strip().splitlines() or ["?"])[-1])


# pycm


def pycmRun(client: LineClient, name: str, strays: Strays, command: str = "sleep 1000") -> dict:
    reply = expectOK(client.request(f"run {name} host {command}"), f"run {name}")
    container = json.loads(reply[3:])
    strays.add(container.get("pid"))
    return container


def pycmStartAll(client: LineClient, s: Settings, strays: Strays) -> float:
    """Run N containers, one after another on one connection: the rate."""
    t0 = time.perf_counter()
    for i in range(s.containers):
        pycmRun(client, f"c{i:04d}", strays)
    return s.containers / (time.perf_counter() - t0)


def pycmStopEach(client: LineClient, names: list[str]) -> float:
    """Stop these containers, one after another on one connection: the rate."""
    t0 = time.perf_counter()
    for name in names:
        reply = json.loads(expectOK(client.request(f"stop {name}"), f"stop {name}")[3:])
        if reply["state"] != "exited":
            raise RuntimeError(f"stop {name}: {reply['state']}")
    return len(names) / (time.perf_counter() - t0)


@dataclass
class Window:
    """One timed burst of requests: its rate, and what it cost each side."""

    rate: float
    #: The server's CPU time (user + system, /proc/PID/stat) per request, ms.
    serverMs: float
    #: This process's CPU share (the load generator) over the burst, cores.
    loadShare: float


def window(burst: Callable[[], float], count: int, serverPid: int) -> Window:
    """Time C{burst} (which returns its rate), with the CPU of both sides."""
    server0, load = cpuSeconds(serverPid), LoadMeter()
    rate = burst()
    return Window(rate, (cpuSeconds(serverPid) - server0) / count * 1000, load.cores())


def processFloor(children: Children, mode: str, count: int) -> dict[str, float]:
    """One round of L{benchmarks.processfloor}, pinned as the daemon is."""
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "processfloor.py")
    proc = children.start([sys.executable, script, mode, str(count)],
                          cpu=SERVER_CPU, stdout=subprocess.PIPE)
    out, _ = proc.communicate(timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"the {mode} process floor failed ({proc.returncode})")
    return dict(json.loads(out))


def rates(report: Report, s: Settings, sup: Supervisord, daemon: Daemon,
          client: LineClient, strays: Strays, children: Children) -> tuple[dict, list[float]]:
    """
    Interleaved rounds: supervisord starts its N programs one at a time then
    stops them one at a time; then pycm runs N containers and stops them
    (then removes them, untimed); then both process floors do the same.
    The last round also measures both lists with N running.  The medians
    of the rates, and their ratios, against the targets and the floors.
    """
    n = s.containers
    names = [f"c{i:04d}" for i in range(n)]
    w: dict[str, list[Window]] = {"sup start": [], "sup stop": [], "pycm start": [],
                                  "pycm stop": []}
    floors: dict[str, list[dict[str, float]]] = {"raw": [], "twisted": []}
    supList: dict = {}
    pycmTimes: list[float] = []
    for round_ in range(s.rounds):
        last = round_ == s.rounds - 1
        w["sup start"].append(window(sup.startAll, n, sup.proc.pid))
        if last:
            supList = sup.listFigures(s.listRequests)
        w["sup stop"].append(window(sup.stopEach, n, sup.proc.pid))
        w["pycm start"].append(window(lambda: pycmStartAll(client, s, strays), n, daemon.pid))
        if last:
            pycmTimes = pycmListTimes(s, client)
        w["pycm stop"].append(window(lambda: pycmStopEach(client, names), n, daemon.pid))
        removeAll(client, names)
        for mode, rounds in floors.items():
            rounds.append(processFloor(children, mode, n))

    def median_(key: str) -> float:
        return median([x.rate for x in w[key]])

    def note(key: str, server: str) -> str:
        return (f"median of {s.rounds}; rounds {', '.join(f'{x.rate:,.0f}' for x in w[key])}; "
                f"{server} CPU {median([x.serverMs for x in w[key]]):.2f} ms a request "
                f"(busy {median([x.serverMs * x.rate / 1000 for x in w[key]]):.0%}); "
                f"load generator CPU {max(x.loadShare for x in w[key]):.0%} at most")

    for verb, supName, pycmName, target in (
            ("start", "startProcess(wait)", "run", START_TARGET),
            ("stop", "stopProcess(wait)", "stop", STOP_TARGET)):
        supRate, pycmRate = median_(f"sup {verb}"), median_(f"pycm {verb}")
        report.add(SECTION, f"supervisord {supName} x {n} (per s)", f"{supRate:,.1f}",
                   note=note(f"sup {verb}", "supervisord"))
        report.add(SECTION, f"pycm {pycmName} x {n}, one connection (per s)",
                   f"{pycmRate:,.1f}", note=note(f"pycm {verb}", "daemon"))
        each = [p.rate / r.rate for p, r in zip(w[f"pycm {verb}"], w[f"sup {verb}"])]
        ratio = pycmRate / supRate
        report.add(SECTION, f"{verb} rate ratio pycm/supervisord", f"{ratio:.2f}x",
                   target=f">= {target:g}x", passed=ratio >= target,
                   note="ratio of the medians; each round's: "
                        + ", ".join(f"{x:.2f}x" for x in each))
        floorFigures(report, n, verb, target * supRate, pycmRate, floors)
    return supList, pycmTimes


FLOOR_NAMES = {
    ("raw", "start"): "posix_spawn", ("raw", "stop"): "kill + waitpid",
    ("twisted", "start"): "Twisted spawnProcess", ("twisted", "stop"): "Twisted signal + end",
}


def floorFigures(report: Report, n: int, verb: str, targetRate: float, pycmRate: float,
                 floors: dict[str, list[dict[str, float]]]) -> None:
    """
    The floors' rates for C{verb}, and where pycm and the target stand
    against each: a target above a floor asks more than that floor can do.
    """
    for mode in ("raw", "twisted"):
        rate = median([r[verb] for r in floors[mode]])
        report.add(SECTION, f"floor: {FLOOR_NAMES[mode, verb]} x {n}, nothing else (per s)",
                   f"{rate:,.1f}",
                   note=f"median of {len(floors[mode])}; rounds "
                        + ", ".join(f"{r[verb]:,.0f}" for r in floors[mode])
                        + f"; pycm {pycmRate / rate:.0%} of it; the {verb} target "
                          f"({targetRate:,.0f}/s) {targetRate / rate:.0%} of it")


def pycmListTimes(s: Settings, client: LineClient) -> list[float]:
    """C{list} with N running, each to its last byte (ms)."""
    n = s.containers
    states = [c["state"] for c in json.loads(expectOK(client.request("list"), "list")[3:])]
    if states.count("running") != n:
        raise RuntimeError(f"{states.count('running')} of {n} containers running")
    for _ in range(3):
        client.request("list")
    return [client.timed("list")[0] * 1000 for _ in range(s.listRequests)]


def pycmList(report: Report, s: Settings, times: list[float], sup: dict) -> None:
    """list with N running, against supervisord's getAllProcessInfo."""
    n = s.containers
    listMs = median(times)
    report.add(SECTION, f"supervisord getAllProcessInfo, {n} running (median ms)",
               f"{sup['list_ms']:.2f}", note=f"p90 {sup['list_p90']:.2f} ms, "
               f"{s.listRequests} calls; {sup['list_cpu']:.1f} ms of supervisord CPU "
               f"per call; supervisord RSS {sup['rss']:.1f} MiB")
    report.add(SECTION, f"pycm list, {n} running (median ms)", f"{listMs:.2f}",
               note=f"p90 {percentile(times, 90):.2f} ms, {s.listRequests} requests")
    ratio = sup["list_ms"] / listMs
    report.add(SECTION, "list speed ratio pycm/supervisord", f"{ratio:.2f}x",
               target=f">= {LIST_TARGET:g}x", passed=ratio >= LIST_TARGET)


def pycmMany(report: Report, s: Settings, daemon: Daemon, client: LineClient,
             strays: Strays) -> None:
    # Pipelined in batches: this measures memory, not the start rate.
    for start in range(0, s.manyContainers, 50):
        names = [f"c{i:04d}" for i in range(start, min(s.manyContainers, start + 50))]
        client.sock.sendall(b"".join(f"run {n} host sleep 1000\n".encode() for n in names))
        for n in names:
            strays.add(json.loads(expectOK(client.readLine(), f"run {n}")[3:]).get("pid"))
    listed = json.loads(expectOK(client.request("list"), "list")[3:])
    running = sum(1 for c in listed if c["state"] == "running")
    rss = rssMiB(daemon.pid)
    report.add(SECTION, f"daemon RSS, {running} running containers (MiB)", f"{rss:.1f}",
               target="< 100 MiB", passed=rss < 100 and running >= s.manyContainers,
               note=f"{running} of {s.manyContainers} running")
    removeAll(client, [c["name"] for c in listed])


def removeAll(client: LineClient, names: list[str]) -> None:
    for start in range(0, len(names), 50):
        batch = names[start:start + 50]
        client.sock.sendall(b"".join(f"rm --force {n}\n".encode() for n in batch))
        for _ in batch:
            client.readLine()


def pycmFlood(report: Report, s: Settings, daemon: Daemon, strays: Strays) -> None:
    """A container floods its output; another connection pings every 10 ms."""
    line = "x" * 99
    command = f'sh -c "yes {line} | head -c {s.floodBytes}"'
    probe = LineClient(daemon.port)
    expectOK(probe.request("ping"), "ping")
    rss0 = rssMiB(daemon.pid)
    waiter = LineClient(daemon.port, timeout=600)
    starter = LineClient(daemon.port, timeout=60)
    pycmRun(starter, "flood", strays, command)
    done: dict[str, object] = {}

    def wait() -> None:
        try:
            done["reply"] = waiter.request("wait flood")
        except Exception as e:  # reported below
            done["reply"] = repr(e).encode()

    t0 = time.perf_counter()
    thread = threading.Thread(target=wait, daemon=True)
    thread.start()
    times, peak = [], rss0
    deadline = time.monotonic() + 300
    while thread.is_alive() and time.monotonic() < deadline:
        times.append(probe.timed("ping")[0] * 1000)
        peak = max(peak, rssMiB(daemon.pid))
        time.sleep(0.01)
    elapsed = time.perf_counter() - t0
    thread.join(1)
    reply = done.get("reply", b"(still running after 300 s)")
    if not isinstance(reply, bytes) or not reply.startswith(b"OK"):
        report.notes.append(f"process: flood container did not finish cleanly: {reply!r:.200}")
    last = json.loads(expectOK(starter.request("logs --tail=1 flood"), "logs")[3:])
    if not last or last[-1].get("line") != line:
        report.notes.append(f"process: the flood's last log line is not what it wrote: "
                            f"{last!r:.200}")
    mb = s.floodBytes / 1e6
    report.add(SECTION, f"flood {mb:.0f} MB of output: daemon RSS peak (MiB)", f"{peak:.1f}",
               target="< 150 MiB", passed=peak < 150,
               note=f"from {rss0:.1f} MiB; the flood took {elapsed:.1f} s "
                    f"({mb / elapsed:.0f} MB/s)")
    if times:
        report.add(SECTION, "flood: other client's ping (median/p99/max ms)",
                   f"{median(times):.2f} / {percentile(times, 99):.2f} / {max(times):.2f}",
                   target="max < 100 ms", passed=max(times) < 100,
                   note=f"{len(times)} pings, one every 10 ms")
    starter.request("rm --force flood")
    for c in (probe, waiter, starter):
        c.close()


def run(report: Report, quick: bool, children: Children) -> None:
    s = Settings.quick() if quick else Settings()
    raiseFileLimit(max(4096, s.manyContainers * 4 + 200))
    strays = Strays()
    sup: Supervisord | None = None
    load = LoadMeter()
    try:
        checkPrerequisites()
        sup = Supervisord(s.containers, children, strays)
        report.notes.append(
            f"process: reference = supervisord {supervisorVersion()}, driven by "
            f"xmlrpc.client over its UNIX socket as supervisorctl does; {s.containers} "
            "programs `sleep 1000`, startsecs=0, autostart=false, stopsignal TERM (both "
            "sides' default), default log capture; start and stop rates: "
            f"{s.rounds} interleaved rounds, each server starting from none running "
            "while the other has none")
        daemon = startProcessDaemon(children, "process")
        report.add(SECTION, "daemon RSS at start, process backend (MiB)",
                   f"{rssMiB(daemon.pid):.1f}")
        client = LineClient(daemon.port, timeout=120)
        client.request("ping")
        supList, pycmTimes = rates(report, s, sup, daemon, client, strays, children)
        sup.close()
        sup = None
        pycmList(report, s, pycmTimes, supList)
        if s.many:
            pycmMany(report, s, daemon, client, strays)
        client.close()
        if s.flood:
            pycmFlood(report, s, daemon, strays)
        children.stop(daemon.proc, timeout=20)
        report.add(SECTION, "load generator CPU share, whole section",
                   f"{load.cores():.0%}", note="this process (the XML-RPC and line clients)")
    finally:
        if sup is not None:
            sup.close()
        children.killAll()
        left = strays.killAll()
        if left:
            report.notes.append(f"process: {left} container processes outlived their "
                                "server and were killed by the benchmark")
