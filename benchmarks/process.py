"""
The process benchmark (issue 3, item 9): the process backend against
supervisord, both running ``sleep 1000`` programs, in the same run.

  - starting N containers one after another on one connection (``run cN
    host sleep 1000``, waiting for each reply) against supervisord's
    ``startProcess(name, wait=True)`` over XML-RPC (programs with
    ``startsecs=0``, ``autostart=false``): the ratio of the median rates
    of interleaved rounds;
  - ``list`` with those N running against ``getAllProcessInfo``: the ratio
    of the median latencies;
  - daemon RSS with 1,000 running containers;
  - a container writing 100 MB of output as fast as it can: the daemon's
    RSS peak, and ``ping`` latency on another connection, sampled every
    10 ms while it floods.

supervisord is only a reference here: ``pip install supervisor`` in the
benchmark environment, never a dependency of pycm.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import xmlrpc.client
from dataclasses import dataclass

from benchmarks.common import (
    SERVER_CPU,
    Children,
    LineClient,
    Missing,
    cpuSeconds,
    expectOK,
    freePort,
    median,
    percentile,
    raiseFileLimit,
    rssMiB,
    tail,
)
from benchmarks.daemon import Daemon, daemonEnv, startDaemon
from benchmarks.report import Report

SECTION = "process"
SLEEP = ("sleep", "1000")


@dataclass
class Settings:
    containers: int = 200
    #: Interleaved rounds of the start rate (the median is reported).
    rounds: int = 3
    listRequests: int = 100
    manyContainers: int = 1000
    floodBytes: int = 100_000_000

    @classmethod
    def quick(cls) -> Settings:
        return cls(containers=50, rounds=1, listRequests=30, manyContainers=300,
                   floodBytes=20_000_000)


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


class Strays:
    """
    Processes a server spawned in their own process groups, which killing
    the server's group does not reach: killed at the end if still there and
    still running what we started (so a recycled pid is never hit).
    """

    def __init__(self) -> None:
        self.pids: set[int] = set()

    def add(self, pid: int | None) -> None:
        if pid:
            self.pids.add(pid)

    def killAll(self) -> int:
        killed = 0
        for pid in self.pids:
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    argv = tuple(a.decode() for a in f.read().split(b"\0") if a)
            except OSError:
                continue
            if argv == SLEEP or (argv[:2] == ("sh", "-c") and "head -c" in " ".join(argv)):
                try:
                    os.killpg(pid, signal.SIGKILL)
                except OSError:
                    pass
                try:
                    os.kill(pid, signal.SIGKILL)
                    killed += 1
                except OSError:
                    pass
        self.pids.clear()
        return killed


# supervisord


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost")
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)


class UnixTransport(xmlrpc.client.Transport):
    """XML-RPC over supervisord's UNIX socket, as supervisorctl talks to it."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path

    def make_connection(self, host):  # type: ignore[override]
        if self._connection and host == self._connection[0]:
            return self._connection[1]
        self._connection = host, _UnixHTTPConnection(self.path)
        return self._connection[1]


def supervisordProxy(where: str) -> xmlrpc.client.ServerProxy:
    if where.startswith("unix:"):
        return xmlrpc.client.ServerProxy("http://localhost/RPC2",
                                         transport=UnixTransport(where[5:]))
    return xmlrpc.client.ServerProxy(f"http://{where}/RPC2")


def startSupervisord(children: Children, count: int,
                     transport: str) -> tuple[subprocess.Popen, xmlrpc.client.ServerProxy]:
    base = children.tempdir("supervisord")
    os.mkdir(os.path.join(base, "logs"))
    if transport == "unix":
        where = f"unix:{base}/supervisor.sock"
        listen = ["[unix_http_server]", f"file={where[5:]}"]
    else:
        where = f"127.0.0.1:{freePort()}"
        listen = ["[inet_http_server]", f"port={where}"]
    conf = [
        *listen,
        "[supervisord]",
        f"logfile={base}/supervisord.log",
        f"pidfile={base}/supervisord.pid",
        f"childlogdir={base}/logs",
        "nodaemon=true",
        "minfds=1024",
        "minprocs=200",
        "loglevel=warn",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
    ]
    for i in range(count):
        conf += [
            f"[program:p{i:04d}]",
            "command=" + " ".join(SLEEP),
            "startsecs=0",
            "autostart=false",
            "autorestart=false",
            "stopsignal=KILL",
        ]
    path = os.path.join(base, "supervisord.conf")
    with open(path, "w") as f:
        f.write("\n".join(conf) + "\n")
    logPath = os.path.join(base, "stdout.log")
    proc = children.start([sys.executable, "-m", "supervisor.supervisord", "-n", "-c", path],
                          cpu=SERVER_CPU, logPath=logPath, cwd=base)
    server = supervisordProxy(where)
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"supervisord exited with {proc.returncode}" + tail(logPath))
        try:
            if server.supervisor.getState()["statename"] == "RUNNING":
                break
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("supervisord did not reach RUNNING" + tail(logPath))
        time.sleep(0.1)
    return proc, server


class Supervisord:
    """The reference: supervisord with N programs, driven over XML-RPC."""

    def __init__(self, s: Settings, children: Children, strays: Strays,
                 transport: str = "unix") -> None:
        self.s = s
        self.children = children
        self.strays = strays
        self.proc, self.server = startSupervisord(children, s.containers, transport)

    def startAll(self) -> float:
        """Start every program, one after another, waiting for each: the rate."""
        t0 = time.perf_counter()
        for i in range(self.s.containers):
            self.server.supervisor.startProcess(f"p{i:04d}", True)
        elapsed = time.perf_counter() - t0
        infos = self.server.supervisor.getAllProcessInfo()
        for info in infos:
            self.strays.add(info.get("pid"))
        running = sum(1 for info in infos if info["statename"] == "RUNNING")
        if running != self.s.containers:
            raise RuntimeError(f"supervisord runs {running} of {self.s.containers}")
        return self.s.containers / elapsed

    def listFigures(self) -> dict:
        """getAllProcessInfo with every program running."""
        server = self.server.supervisor
        for _ in range(3):
            server.getAllProcessInfo()
        times = []
        for _ in range(self.s.listRequests):
            t = time.perf_counter()
            server.getAllProcessInfo()
            times.append((time.perf_counter() - t) * 1000)
        cpu0 = cpuSeconds(self.proc.pid)
        for _ in range(10):
            server.getAllProcessInfo()
        listCpu = (cpuSeconds(self.proc.pid) - cpu0) / 10 * 1000
        return {"list_cpu": listCpu, "list_ms": median(times),
                "list_p90": percentile(times, 90), "rss": rssMiB(self.proc.pid)}

    def stopAll(self) -> None:
        self.server.supervisor.stopAllProcesses(True)

    def close(self) -> None:
        self.children.stop(self.proc, timeout=10)


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


def startRates(report: Report, s: Settings, sup: Supervisord, client: LineClient) -> dict:
    """
    Interleaved rounds (supervisord, then pycm, each from none running),
    median rates; the last round leaves both with N running, for the list
    figures, measured then (supervisord's, then stopped before pycm starts).
    """
    rates: dict[str, list[float]] = {"sup": [], "pycm": []}
    supList: dict = {}
    for round_ in range(s.rounds):
        last = round_ == s.rounds - 1
        rates["sup"].append(sup.startAll())
        if last:
            supList = sup.listFigures()
        sup.stopAll()
        rates["pycm"].append(pycmStartAll(client, s, sup.strays))
        if not last:
            removeAll(client, [f"c{i:04d}" for i in range(s.containers)])
    n = s.containers
    supRate, pycmRate = median(rates["sup"]), median(rates["pycm"])

    def each(key: str) -> str:
        return f"rounds: {', '.join(f'{r:,.0f}' for r in rates[key])}"

    report.add(SECTION, f"supervisord startProcess(wait) x {n} (per s)",
               f"{supRate:,.1f}", note=f"median of {s.rounds}; {each('sup')}")
    report.add(SECTION, f"pycm run x {n}, one connection (per s)", f"{pycmRate:,.1f}",
               note=f"median of {s.rounds}; {each('pycm')}")
    ratio = pycmRate / supRate
    report.add(SECTION, "start rate ratio pycm/supervisord", f"{ratio:.1f}x",
               target=">= 3x", passed=ratio >= 3)
    return supList


def pycmList(report: Report, s: Settings, client: LineClient, sup: dict) -> None:
    """list with N running, against supervisord's getAllProcessInfo."""
    n = s.containers
    states = [c["state"] for c in json.loads(expectOK(client.request("list"), "list")[3:])]
    if states.count("running") != n:
        raise RuntimeError(f"{states.count('running')} of {n} containers running")
    for _ in range(3):
        client.request("list")
    times = [client.timed("list")[0] * 1000 for _ in range(s.listRequests)]
    listMs = median(times)
    report.add(SECTION, f"supervisord getAllProcessInfo, {n} running (median ms)",
               f"{sup['list_ms']:.2f}", note=f"p90 {sup['list_p90']:.2f} ms, "
               f"{s.listRequests} calls; {sup['list_cpu']:.1f} ms of supervisord CPU "
               f"per call; supervisord RSS {sup['rss']:.1f} MiB")
    report.add(SECTION, f"pycm list, {n} running (median ms)", f"{listMs:.2f}",
               note=f"p90 {percentile(times, 90):.2f} ms, {s.listRequests} requests")
    ratio = sup["list_ms"] / listMs
    report.add(SECTION, "list speed ratio pycm/supervisord", f"{ratio:.1f}x",
               target=">= 10x", passed=ratio >= 10)


def pycmMany(report: Report, s: Settings, daemon: Daemon, client: LineClient,
             strays: Strays) -> None:
    # Pipelined in batches: this measures memory, not the start rate.
    for start in range(s.containers, s.manyContainers, 50):
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
    try:
        try:
            import supervisor  # noqa: F401
        except ImportError:
            raise Missing("supervisord is the reference: `pip install supervisor` "
                          "(for the benchmark only)") from None
        checkPrerequisites()
        sup = Supervisord(s, children, strays)
        report.notes.append(
            f"process: reference = supervisord {supervisorVersion()}, driven by "
            f"xmlrpc.client over its UNIX socket as supervisorctl does; {s.containers} "
            "programs `sleep 1000`, startsecs=0, autostart=false, default log capture; "
            f"start rates: {s.rounds} interleaved rounds, each server starting from none "
            "running while the other has none")
        daemon = startDaemon(children, "process")
        report.add(SECTION, "daemon RSS at start, process backend (MiB)",
                   f"{rssMiB(daemon.pid):.1f}")
        client = LineClient(daemon.port, timeout=120)
        client.request("ping")
        supList = startRates(report, s, sup, client)
        sup.close()
        sup = None
        pycmList(report, s, client, supList)
        pycmMany(report, s, daemon, client, strays)
        client.close()
        pycmFlood(report, s, daemon, strays)
        children.stop(daemon.proc, timeout=20)
    finally:
        if sup is not None:
            sup.close()
        children.killAll()
        left = strays.killAll()
        if left:
            report.notes.append(f"process: {left} container processes outlived their "
                                "server and were killed by the benchmark")


def supervisorVersion() -> str:
    try:
        from importlib.metadata import version

        return version("supervisor")
    except Exception:
        return "?"
