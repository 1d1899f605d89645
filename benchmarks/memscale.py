"""
The memory-backend scale benchmark (issue 12): a daemon holding 10,000
containers (``run NAME`` on the memory backend, pipelined, untimed):

  - ``list`` of the 10,000, each timed to the last byte of its reply, on
    one connection, nothing else going on: the median;
  - the daemon's RSS;
  - another client's ``ping`` (a process of its own, one every 5 ms) while
    this process sends ``list`` after ``list`` of the 10,000: its p99,
    against the same prober's p99 with no ``list`` going on, measured just
    before (the reference).
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass

if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import (  # noqa: E402
    Children,
    LineClient,
    LoadMeter,
    cpuSeconds,
    expectOK,
    median,
    percentile,
    rssMiB,
)
from benchmarks.daemon import Daemon, startDaemon  # noqa: E402
from benchmarks.report import Report, runAlone  # noqa: E402
from benchmarks.worker import Worker  # noqa: E402

SECTION = "memscale"
LIST_MS = 40.0
RSS_MIB = 150.0
PING_P99_MS = 5.0
#: The prober's period.
PING_INTERVAL = 0.005


@dataclass
class Settings:
    containers: int = 10_000
    listRequests: int = 30
    #: How long the prober runs alone, then while lists are sent.
    seconds: float = 5.0

    @classmethod
    def quick(cls) -> Settings:
        return cls(containers=3000, listRequests=10, seconds=2.0)


def createContainers(client: LineClient, count: int) -> None:
    """Run COUNT containers, pipelined in batches of 200 requests (untimed)."""
    for start in range(0, count, 200):
        names = range(start, min(count, start + 200))
        client.sock.sendall(b"".join(f"run m{i:05d}\n".encode() for i in names))
        for _ in names:
            expectOK(client.readLine(), "run")


def probe(children: Children, daemon: Daemon, seconds: float,
          client: LineClient | None) -> tuple[list[float], int, float]:
    """
    The prober's ping latencies over C{seconds}; with C{client}, this
    process sends lists back to back meanwhile.  Returns the latencies,
    how many lists were sent, and the load generator's CPU share.
    """
    prober = Worker(children, "ping", daemon.port, PING_INTERVAL)
    prober.waitReady()
    load = LoadMeter()
    prober.tell()
    lists = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if client is None:
            time.sleep(0.05)
        else:
            expectOK(client.request("list"), "list")
            lists += 1
    prober.tell("stop")
    result = prober.result()
    load.addChild(result["cpu"])
    return result["ms"], lists, load.cores()


def run(report: Report, quick: bool, children: Children) -> None:
    s = Settings.quick() if quick else Settings()
    daemon = startDaemon(children, "memory")
    client = LineClient(daemon.port, timeout=120)
    rss0 = rssMiB(daemon.pid)
    createContainers(client, s.containers)
    reply = expectOK(client.request("list"), "list")
    count = len(json.loads(reply[3:]))
    if count != s.containers:
        raise RuntimeError(f"list shows {count} containers, not {s.containers}")
    for _ in range(3):
        client.request("list")
    cpu0, load = cpuSeconds(daemon.pid), LoadMeter()
    times = [client.timed("list")[0] * 1000 for _ in range(s.listRequests)]
    listCpu = (cpuSeconds(daemon.pid) - cpu0) / s.listRequests * 1000
    listMs = median(times)
    report.add(SECTION, f"list, {count} containers, whole (median ms)", f"{listMs:.2f}",
               target=f"< {LIST_MS:g} ms", passed=listMs < LIST_MS,
               note=f"p90 {percentile(times, 90):.2f} ms, {s.listRequests} requests, each "
                    f"to the last byte of its reply ({len(reply) / 2**20:.1f} MiB); daemon "
                    f"CPU {listCpu:.2f} ms a list; load generator CPU {load.cores():.0%}")
    rss = rssMiB(daemon.pid)
    report.add(SECTION, f"daemon RSS, {count} containers (MiB)", f"{rss:.1f}",
               target=f"< {RSS_MIB:g} MiB", passed=rss < RSS_MIB,
               note=f"{rss0:.1f} MiB at start")

    idle, _, idleLoad = probe(children, daemon, s.seconds, None)
    busy, lists, busyLoad = probe(children, daemon, s.seconds, client)
    p99 = percentile(busy, 99)
    report.add(SECTION, "another client's ping, no list (median/p99/max ms)",
               f"{median(idle):.2f} / {percentile(idle, 99):.2f} / {max(idle):.2f}",
               note=f"{len(idle)} pings, one every {PING_INTERVAL * 1000:g} ms; load "
                    f"generator CPU {idleLoad:.0%}")
    report.add(SECTION, f"another client's ping while lists of {count} are sent, p99 (ms)",
               f"{p99:.2f}", target=f"< {PING_P99_MS:g} ms", passed=p99 < PING_P99_MS,
               note=f"median {median(busy):.2f}, max {max(busy):.2f} ms; {len(busy)} pings "
                    f"while {lists} lists were sent back to back ({lists / s.seconds:.1f} a "
                    f"second); load generator CPU {busyLoad:.0%} (this process and the "
                    "prober)")
    client.close()
    children.stop(daemon.proc)


if __name__ == "__main__":
    sys.exit(runAlone(run, "--quick" in sys.argv))
