"""
The services section: issue 10's two targets, on the process backend,
each against a reference measured in the same run.

    python benchmarks/run.py --only services [--quick]
    python benchmarks/bench_services.py [--quick]          # the section alone

  - C{apply}: one C{pycm apply FILE} of 100 independent services (each
    C{sleep 1000}), timed from spawning the client until it exits (every
    service running), against starting the same 100 one C{pycm run NAME
    host sleep 1000} at a time, a new client process each, as a user's
    script does.  Interleaved rounds (who goes first alternates), every
    container removed (and its process seen gone) between them; the
    ratio of the medians.  Target: apply at least 3x faster.
  - health checks: the daemon's own CPU (utime + stime of its pid, from
    C{/proc/PID/stat}) over a window (15 s) with 200 containers running a
    health check C{true} every second, against the same 200 without a
    health check.  Interleaved rounds, medians.  Target: under 10% of one
    core with the checks (the difference is shown too).  The checks'
    actual cadence is read back from the containers' health logs.

C{PYCM_BENCH_PROFILE=DIR} runs each daemon under twistd's cProfile
(C{--profile DIR/services-PART.prof --savestats}) and prints its top
functions when it stops: for finding the time, not for quoting figures
(the profiler slows the daemon).
"""

from __future__ import annotations

import json
import os
import pstats
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from benchmarks.common import (  # noqa: E402
    CLK_TCK,
    Children,
    LineClient,
    expectOK,
    median,
)
from benchmarks.daemon import Daemon, startDaemon  # noqa: E402
from benchmarks.report import Report, runAlone  # noqa: E402

SECTION = "services"
#: apply of N independent services at least this many times faster than
#: N one-at-a-time C{pycm run}s.
APPLY_TARGET = 3.0
#: The daemon's CPU with 200 containers checked every second, in cores.
HEALTH_TARGET = 0.10
#: The cgroup parent of the benchmark's daemons (not the default /pycm of
#: a daemon that may run on this machine).
CGROUP_PARENT = "/pycm-bench-services"
PROFILE_ENV = "PYCM_BENCH_PROFILE"
TIMEOUT = 120.0


@dataclass
class Settings:
    services: int = 100
    applyRounds: int = 3
    containers: int = 200
    #: Seconds of each health window.
    window: float = 15.0
    healthRounds: int = 3

    @classmethod
    def quick(cls) -> Settings:
        return cls(applyRounds=1, window=3.0, healthRounds=1)


def cpuSplit(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process so far, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def childrenCpu() -> float:
    """CPU seconds of this process's reaped children so far (the clients)."""
    times = os.times()
    return times.children_user + times.children_system


def clientEnv() -> dict[str, str]:
    """The environment of the measured clients: no token, host or history."""
    env = dict(os.environ, PYCM_HISTORY="", TERM="dumb")
    for name in ("PYCM_HOST", "PYCM_CLIENT", "PYCM_TOKEN", "PYTHONPATH"):
        env.pop(name, None)
    return env


def profiled(part: str) -> list[str]:
    """twistd's options to profile the daemon of C{part}, if asked."""
    where = os.environ.get(PROFILE_ENV)
    if not where:
        return []
    os.makedirs(where, exist_ok=True)
    return [f"--profile={os.path.join(where, f'services-{part}.prof')}",
            "--profiler=cprofile", "--savestats"]


def showProfile(part: str, top: int = 25) -> None:
    """Print the top functions of the daemon's profile of C{part}, if any."""
    where = os.environ.get(PROFILE_ENV)
    path = os.path.join(where, f"services-{part}.prof") if where else ""
    if not path or not os.path.exists(path):
        return
    print(f"  profile of the daemon ({part}), by own time: {path}")
    stats = pstats.Stats(path, stream=sys.stdout)
    stats.sort_stats("tottime").print_stats(top)


def startProcessDaemon(children: Children, part: str) -> Daemon:
    return startDaemon(children, "process",
                       ["--backend-option", f"cgroup-parent={CGROUP_PARENT}"],
                       twistdOptions=profiled(part))


def pipelined(client: LineClient, lines: Sequence[str], what: str,
              tolerate: Sequence[bytes] = ()) -> list[Any]:
    """Send C{lines} 50 at a time; the replies' JSON (an error tolerated: None)."""
    replies: list[Any] = []
    for start in range(0, len(lines), 50):
        batch = lines[start : start + 50]
        client.sock.sendall(b"".join(f"{line}\n".encode() for line in batch))
        # Every reply of the batch is read before an error is raised: the
        # connection stays in step for what comes after.
        raw = [client.readLine() for _ in batch]
        for line, reply in zip(batch, raw, strict=True):
            if any(reply.startswith(b"ERR " + code) for code in tolerate):
                replies.append(None)
                continue
            replies.append(json.loads(expectOK(reply, f"{what}: {line}")[3:]))
    return replies


def processGone(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def removeAll(client: LineClient, names: Sequence[str]) -> None:
    """Remove C{names} (those that exist) and wait until their processes are gone."""
    listed = {c["name"]: c for c in json.loads(expectOK(client.request("list"), "list")[3:])}
    present = [name for name in names if name in listed]
    pids = [listed[name]["pid"] for name in present if listed[name].get("pid")]
    pipelined(client, [f"rm --force {name}" for name in present], "rm", tolerate=[b"not_found"])
    deadline = time.monotonic() + 30
    while not all(processGone(pid) for pid in pids):
        if time.monotonic() > deadline:
            for pid in pids:
                try:
                    os.killpg(pid, signal.SIGKILL)
                except OSError:
                    pass
            raise RuntimeError("containers' processes still there 30 s after rm --force")
        time.sleep(0.05)


def runningCount(client: LineClient, names: Sequence[str]) -> int:
    wanted = set(names)
    listed = json.loads(expectOK(client.request("list"), "list")[3:])
    return sum(1 for c in listed if c["name"] in wanted and c["state"] == "running")


def servicesDocument(names: Sequence[str]) -> str:
    """A services file of independent C{sleep 1000} services."""
    return "".join(f'[services.{name}]\ncommand = ["sleep", "1000"]\n\n' for name in names)


def removeCgroupParent() -> None:
    """Remove the benchmark's cgroup parent (empty once its daemons stopped)."""
    root = "/sys/fs/cgroup"
    if not os.path.isdir(root):
        return
    for hierarchy in os.listdir(root):
        top = os.path.join(root, hierarchy, CGROUP_PARENT.lstrip("/"))
        for path, _, _ in sorted(os.walk(top), key=lambda w: -len(w[0])):
            try:
                os.rmdir(path)
            except OSError:
                pass


def run(report: Report, quick: bool, children: Children) -> None:
    s = Settings.quick() if quick else Settings()
    load0 = os.getloadavg()[0]
    try:
        benchApply(report, s, children)
        benchHealth(report, s, children)
    finally:
        children.killAll()
        removeCgroupParent()
    report.notes.append(f"services: load average {load0:.2f} at the start, "
                        f"{os.getloadavg()[0]:.2f} at the end")


def benchApply(report: Report, s: Settings, children: Children) -> None:
    from benchmarks.client import clientSource, script

    daemon = startProcessDaemon(children, "apply")
    admin = LineClient(daemon.port, timeout=TIMEOUT)
    env = clientEnv()
    pycm = [*script("pycm"), "-H", f"tcp:127.0.0.1:{daemon.port}"]
    base = children.tempdir("services")
    projectDir = os.path.join(base, "apply100")
    os.mkdir(projectDir)
    path = os.path.join(projectDir, "services.toml")
    applied = [f"a{i:03d}" for i in range(s.services)]
    ran = [f"r{i:03d}" for i in range(s.services)]
    with open(path, "w") as f:
        f.write(servicesDocument(applied))
    print(f"  {s.applyRounds} interleaved rounds of {s.services} services; "
          f"pycm: {' '.join(script('pycm'))} ({clientSource(env)})", flush=True)

    def call(argv: Sequence[str]) -> None:
        r = subprocess.run([*pycm, *argv], env=env, stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=TIMEOUT)
        if r.returncode != 0:
            raise RuntimeError(f"pycm {' '.join(argv)} exited {r.returncode}: "
                               f"{r.stdout[-300:]}{r.stderr[-700:]}")

    times: dict[str, list[float]] = {"apply": [], "run": []}
    daemonCpu: dict[str, list[float]] = {"apply": [], "run": []}
    clientCpu: dict[str, list[float]] = {"apply": [], "run": []}

    def timed(kind: str, names: Sequence[str]) -> None:
        cpu0, client0, t0 = sum(cpuSplit(daemon.pid)), childrenCpu(), time.perf_counter()
        if kind == "apply":
            call(["apply", path])
        else:
            for name in names:
                call(["run", name, "host", "sleep", "1000"])
        elapsed = time.perf_counter() - t0
        times[kind].append(elapsed)
        daemonCpu[kind].append(sum(cpuSplit(daemon.pid)) - cpu0)
        clientCpu[kind].append((childrenCpu() - client0) / elapsed)
        running = runningCount(admin, names)
        if running != len(names):
            raise RuntimeError(f"{kind}: {running} of {len(names)} running")
        removeAll(admin, names)

    try:
        # Untimed: the client's and the daemon's first calls, the page cache.
        call(["run", "warm", "host", "sleep", "1000"])
        removeAll(admin, ["warm"])
        for i in range(s.applyRounds):
            order = [("apply", applied), ("run", ran)]
            for kind, names in order if i % 2 == 0 else order[::-1]:
                timed(kind, names)
    finally:
        try:
            removeAll(admin, [*applied, *ran, "warm"])
        except (OSError, RuntimeError):
            pass
        admin.close()
        children.stop(daemon.proc, timeout=30)
    showProfile("apply")

    applyTime, runTime = median(times["apply"]), median(times["run"])
    ratio = runTime / applyTime
    rounds = ", ".join(f"{r / a:.1f}x" for a, r in zip(times["apply"], times["run"], strict=True))
    report.add(SECTION, f"`pycm apply` of {s.services} independent services (median s)",
               f"{applyTime:.2f}",
               note=f"daemon CPU {median(daemonCpu['apply']):.2f} s, the client's CPU share "
                    f"{median(clientCpu['apply']):.0%}")
    report.add(SECTION, f"{s.services} x `pycm run`, a client each (median s)", f"{runTime:.2f}",
               note=f"daemon CPU {median(daemonCpu['run']):.2f} s, the clients' CPU share "
                    f"{median(clientCpu['run']):.0%}")
    report.add(SECTION, "apply speed-up over one `run` at a time", f"{ratio:.2f}x",
               target=f">= {APPLY_TARGET:g}x", passed=ratio >= APPLY_TARGET,
               note=f"ratio of the medians of {s.applyRounds} interleaved rounds; "
                    f"each round's: {rounds}")


def healthWindow(daemon: Daemon, admin: LineClient, s: Settings,
                 checks: bool) -> dict[str, Any]:
    """
    Start C{s.containers} containers (with a health check C{true} every
    second when C{checks}), wait until they run (and are healthy), then
    measure the daemon's CPU over C{s.window} seconds; remove them.
    """
    names = [f"h{i:03d}" for i in range(s.containers)]
    options = "--health-cmd=true --health-interval=1s " if checks else ""
    try:
        pipelined(admin, [f"run {options}{name} host sleep 1000" for name in names], "run")
        if checks:
            pipelined(admin, [f"wait --for=healthy --timeout=60 {name}" for name in names],
                      "wait")
        # Untimed: the starts' own work (reaping, logs, saving) settles.
        time.sleep(1.0)
        (user0, system0), mine0, t0 = cpuSplit(daemon.pid), time.process_time(), time.monotonic()
        time.sleep(s.window)
        (user1, system1), mine1, t1 = cpuSplit(daemon.pid), time.process_time(), time.monotonic()
        wall = t1 - t0
        listed = json.loads(expectOK(admin.request("list"), "list")[3:])
        mine = [c for c in listed if c["name"] in set(names)]
        running = sum(1 for c in mine if c["state"] == "running")
        if running != len(names):
            raise RuntimeError(f"{running} of {len(names)} running at the end of the window")
        result: dict[str, Any] = {
            "share": (user1 - user0 + system1 - system0) / wall,
            "user": (user1 - user0) / wall,
            "system": (system1 - system0) / wall,
            "generator": (mine1 - mine0) / wall,
        }
        if checks:
            result.update(cadence(mine))
        return result
    finally:
        removeAll(admin, names)


def cadence(containers: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The checks' actual interval and health, read from their health logs."""
    from pycm.timestamps import parseTime

    gaps: list[float] = []
    healthy = 0
    for container in containers:
        health = container.get("health") or {}
        healthy += health.get("status") == "healthy"
        starts = [parseTime(r["start"]) for r in health.get("log", [])]
        known = [t for t in starts if t is not None]
        gaps += [b - a for a, b in zip(known, known[1:])]
    return {"interval": median(gaps) if gaps else float("nan"),
            "longest": max(gaps) if gaps else float("nan"), "healthy": healthy}


def benchHealth(report: Report, s: Settings, children: Children) -> None:
    daemon = startProcessDaemon(children, "health")
    admin = LineClient(daemon.port, timeout=TIMEOUT)
    results: dict[bool, list[dict[str, Any]]] = {False: [], True: []}
    print(f"  {s.healthRounds} interleaved rounds of {s.window:g} s windows, "
          f"{s.containers} containers", flush=True)
    try:
        for i in range(s.healthRounds):
            for checks in (False, True) if i % 2 == 0 else (True, False):
                results[checks].append(healthWindow(daemon, admin, s, checks))
                last = results[checks][-1]
                last["load"] = os.getloadavg()[0]
                print(f"    {'checked' if checks else 'plain'}: {last['share']:.3f} cores "
                      f"(user {last['user']:.3f}, system {last['system']:.3f}; load average "
                      f"{last['load']:.2f})", flush=True)
    finally:
        admin.close()
        children.stop(daemon.proc, timeout=30)
    showProfile("health")

    def mid(checks: bool, key: str) -> float:
        return median([r[key] for r in results[checks]])

    plain, checked = mid(False, "share"), mid(True, "share")
    windows = ", ".join(f"{r['share']:.3f} (load {r['load']:.1f})" for r in results[True])
    generator = max(mid(True, "generator"), mid(False, "generator"))
    report.add(SECTION, f"{s.containers} running, no health check: daemon CPU (cores)",
               f"{plain:.3f}",
               note=f"user {mid(False, 'user'):.3f} + system {mid(False, 'system'):.3f}; "
                    f"median of {s.healthRounds} windows of {s.window:g} s")
    report.add(SECTION, f"{s.containers} running, `true` checked every 1 s: daemon CPU (cores)",
               f"{checked:.3f}", target=f"< {HEALTH_TARGET:g} core",
               passed=checked < HEALTH_TARGET,
               note=f"user {mid(True, 'user'):.3f} + system {mid(True, 'system'):.3f}; "
                    f"checks every {mid(True, 'interval'):.2f} s (longest gap "
                    f"{max(r['longest'] for r in results[True]):.2f} s), "
                    f"{min(r['healthy'] for r in results[True])} healthy at the end; "
                    f"windows {windows}; load generator (this process) {generator:.1%}")
    perSecond = s.containers / mid(True, "interval")
    report.add(SECTION, "the health checks' cost (difference, cores)", f"{checked - plain:.3f}",
               note=f"{(checked - plain) / perSecond * 1000:.2f} ms of daemon CPU "
                    f"a check, {perSecond:.0f} checks a second")


def main() -> int:
    from benchmarks.run import machine

    print(f"machine: {machine()}")
    quick = "--quick" in sys.argv[1:]
    return runAlone(run, quick)


if __name__ == "__main__":
    sys.exit(main())
