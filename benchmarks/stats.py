"""
The stats benchmark (issue 11): C{stats} of 200 running containers on the
process backend must answer in under 50 ms.

200 containers C{sleep 1000} are started (pipelined), then 100 C{stats}
requests are timed one after another on one connection, one every 50 ms
(a C{pycm top} polls once a second; back to back would measure the CPU
sampler's fast path only).  Target: the median under 50 ms (p90 and max
shown, and the daemon's CPU time per request, from C{/proc/PID/stat}, which
a machine busy with other work does not inflate).  Every figure is read
from the real cgroup files and /proc: as root, from the containers'
cgroups; otherwise from /proc per process group.

No reference server: the target is absolute.
"""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import dataclass

from benchmarks.common import (
    Children,
    LineClient,
    cpuSeconds,
    expectOK,
    median,
    percentile,
    rssMiB,
)
from benchmarks.daemon import startDaemon
from benchmarks.report import Report

SECTION = "stats"
TARGET_MS = 50.0


@dataclass
class Settings:
    containers: int = 200
    requests: int = 100
    pause: float = 0.05

    @classmethod
    def quick(cls) -> Settings:
        return cls(requests=30)


def run(report: Report, quick: bool, children: Children) -> None:
    s = Settings.quick() if quick else Settings()
    daemon = startDaemon(children, "process")
    client = LineClient(daemon.port, timeout=120)
    pids: list[int] = []
    names = [f"s{i:04d}" for i in range(s.containers)]
    try:
        for start in range(0, len(names), 50):
            batch = names[start : start + 50]
            client.sock.sendall(b"".join(f"run {n} host sleep 1000\n".encode() for n in batch))
            for n in batch:
                pids.append(json.loads(expectOK(client.readLine(), f"run {n}")[3:])["pid"])
        rows = json.loads(expectOK(client.request("stats"), "stats")[3:])
        running = sum(1 for row in rows if row["state"] == "running")
        known = sum(1 for row in rows if row["memory"] is not None and row["pids"])
        if running != s.containers:
            raise RuntimeError(f"{running} of {s.containers} containers running")
        times = []
        cpu0 = cpuSeconds(daemon.pid)
        for _ in range(s.requests):
            time.sleep(s.pause)
            elapsed, reply = client.timed("stats")
            expectOK(reply, "stats")
            times.append(elapsed * 1000)
        cpuMs = (cpuSeconds(daemon.pid) - cpu0) * 1000 / s.requests
        typical = median(times)
        where = "cgroups" if os.geteuid() == 0 else "/proc (not root: no cgroups)"
        report.add(
            SECTION,
            f"stats, {s.containers} running, process backend (median ms)",
            f"{typical:.2f}",
            target=f"< {TARGET_MS:.0f} ms",
            passed=typical < TARGET_MS,
            note=f"p90 {percentile(times, 90):.2f} ms, max {max(times):.2f} ms, "
            f"daemon CPU {cpuMs:.2f} ms a request, "
            f"{s.requests} requests, one every {s.pause * 1000:.0f} ms; "
            f"figures from {where}; {known} rows with memory and pids; "
            f"daemon RSS {rssMiB(daemon.pid):.1f} MiB; reply "
            f"{len(reply) / 1024:.0f} KiB",
        )
    finally:
        try:
            for start in range(0, len(names), 50):
                batch = names[start : start + 50]
                client.sock.sendall(b"".join(f"rm --force {n}\n".encode() for n in batch))
                for _ in batch:
                    client.readLine()
        except OSError:
            pass
        client.close()
        children.stop(daemon.proc, timeout=20)
        for pid in pids:
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass
