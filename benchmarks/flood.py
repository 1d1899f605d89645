"""
The flood benchmark (issue 7, item 15): one container runs ``yes`` for N
seconds (``timeout N yes xxxxxxxxxxxxxxxxxxxx``) on the process backend,
and the daemon must not pay a core for it:

  - the daemon's CPU time (utime + stime from ``/proc/PID/stat``) over the
    wall time of the flood: target under half a core;
  - another client's ``ping``, one every 10 ms meanwhile: target p99
    under 20 ms;
  - for information: how fast the container got its output logged (lines
    and MB per second, from the log files), and the daemon's run-queue wait
    (``/proc/PID/schedstat``), which tells a daemon held back by a busy
    machine from one that paces itself.

No reference server: the targets are absolute.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass

from benchmarks.common import Children, LineClient, cpuSeconds, expectOK, median, percentile
from benchmarks.daemon import startDaemon
from benchmarks.report import Report

SECTION = "flood"
LINE = "x" * 20
#: The targets of issue 7, item 15.
CPU_TARGET = 0.5
PING_P99_TARGET_MS = 20.0


@dataclass
class Settings:
    seconds: float = 10.0

    @classmethod
    def quick(cls) -> Settings:
        return cls(seconds=3.0)


def schedstat(pid: int) -> tuple[float, float]:
    """(seconds on a CPU, seconds waiting for one) of C{pid}'s main thread."""
    try:
        with open(f"/proc/{pid}/schedstat") as f:
            run, wait = f.read().split()[:2]
        return int(run) / 1e9, int(wait) / 1e9
    except (OSError, ValueError):
        return 0.0, 0.0


def loggedLines(stateDir: str, name: str) -> tuple[int, int]:
    """(records, bytes) in C{name}'s log files (all rotations)."""
    logs = os.path.join(stateDir, "logs")
    records = size = 0
    for entry in os.listdir(logs):
        if entry == f"{name}.log" or entry.startswith(f"{name}.log."):
            with open(os.path.join(logs, entry), "rb") as f:
                data = f.read()
            records += data.count(b"\n")
            size += len(data)
    return records, size


def run(report: Report, quick: bool, children: Children) -> None:
    s = Settings.quick() if quick else Settings()
    # Enough log space for the whole flood, so the rate is countable.
    daemon = startDaemon(children, "process",
                         ["--backend-option", "log-max-size=1g", "--backend-option",
                          "log-max-files=1"])
    client = LineClient(daemon.port, timeout=60)
    pinger = LineClient(daemon.port)
    expectOK(pinger.request("ping"), "ping")
    waiter = LineClient(daemon.port, timeout=s.seconds + 60)
    cpu0, (_, wait0), t0 = cpuSeconds(daemon.pid), schedstat(daemon.pid), time.monotonic()
    reply = expectOK(client.request(f"run flood host timeout {s.seconds:g} yes {LINE}"), "run")
    pid = json.loads(reply[3:])["pid"]
    done = threading.Event()

    def wait() -> None:
        try:
            waiter.request("wait flood")
        finally:
            done.set()

    threading.Thread(target=wait, daemon=True).start()
    pings: list[float] = []
    deadline = t0 + s.seconds + 60
    try:
        while not done.is_set() and time.monotonic() < deadline:
            pings.append(pinger.timed("ping")[0] * 1000)
            time.sleep(0.01)
        wall = time.monotonic() - t0
        cpu = cpuSeconds(daemon.pid) - cpu0
        _, wait1 = schedstat(daemon.pid)
    finally:
        try:
            os.killpg(pid, 9)
        except OSError:
            pass
    lines, size = loggedLines(daemon.stateDir, "flood")
    last = json.loads(expectOK(client.request("logs --tail=1 flood"), "logs")[3:])
    if [x.get("line") for x in last] != [LINE]:
        report.notes.append(f"flood: the last log line is not what `yes` wrote: {last!r:.200}")
    share = cpu / wall
    report.add(SECTION, f"`yes` for {s.seconds:g} s: daemon CPU / wall (cores)", f"{share:.2f}",
               target=f"< {CPU_TARGET} core", passed=share < CPU_TARGET,
               note=f"{cpu:.2f} s of CPU in {wall:.2f} s; run-queue wait "
                    f"{(wait1 - wait0) / wall:.2f} of the time (a busy machine)")
    report.add(SECTION, "flood: logged by the daemon (lines/s)", f"{lines / wall:,.0f}",
               note=f"{lines:,} lines, {size / wall / 1e6:.1f} MB/s of log records; "
                    f"`yes` blocks on its pipe meanwhile")
    if pings:
        p99 = percentile(pings, 99)
        report.add(SECTION, "flood: other client's ping (median/p99/max ms)",
                   f"{median(pings):.2f} / {p99:.2f} / {max(pings):.2f}",
                   target=f"p99 < {PING_P99_TARGET_MS:g} ms",
                   passed=p99 < PING_P99_TARGET_MS,
                   note=f"{len(pings)} pings, one every 10 ms")
    client.request("rm --force flood")
    for c in (client, pinger, waiter):
        c.close()
    children.stop(daemon.proc, timeout=20)
