"""
The concurrency benchmark (issue 12), on the process backend:

  - 10 clients, each a process of its own with one connection, start 100
    containers each (``run NAME host sleep 1000``, one at a time per
    client), all at once: the aggregate rate, 1,000 starts over the time
    from the first client's first request to the last client's last reply;
  - the reference, in the same run: one client starting the same number of
    containers, one at a time, on the same daemon (the one-client rate).

Rounds interleave the two, each burst on a fresh daemon (started before it
and stopped after it, untimed); the medians are reported, with the daemon's
CPU time per start and the load generator's CPU share (this process and its
client processes).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import (  # noqa: E402
    Children,
    LineClient,
    LoadMeter,
    busyShare,
    cpuSeconds,
    expectOK,
    machineCpuTimes,
    median,
    raiseFileLimit,
    rssMiB,
)
from benchmarks.daemon import Daemon, startProcessDaemon  # noqa: E402
from benchmarks.report import Report, runAlone  # noqa: E402
from benchmarks.worker import Worker  # noqa: E402

SECTION = "concurrency"
#: Aggregate starts a second of 10 clients.
TARGET = 1200.0


@dataclass
class Settings:
    clients: int = 10
    each: int = 100
    rounds: int = 3

    @classmethod
    def quick(cls) -> Settings:
        return cls(each=20, rounds=1)


@dataclass
class Burst:
    """
    One timed burst: its rate, the daemon's CPU per start, the load's share,
    and how busy the whole machine was (every process: the daemon, the
    starting children, the clients, the kernel).
    """

    rate: float
    daemonMs: float
    loadShare: float
    errors: int
    machineBusy: float = 0.0


def burst(children: Children, daemon: Daemon, clients: int, each: int, tag: str) -> Burst:
    """C{clients} processes start C{each} containers each, all at once."""
    workers = [Worker(children, "runs", daemon.port, f"{tag}{k:02d}-", each)
               for k in range(clients)]
    for worker in workers:
        worker.waitReady()
    load = LoadMeter()
    cpu0 = cpuSeconds(daemon.pid)
    machine0 = machineCpuTimes()
    for worker in workers:
        worker.tell()
    results = [worker.result() for worker in workers]
    machineBusy = busyShare(machine0, machineCpuTimes())
    daemonCpu = cpuSeconds(daemon.pid) - cpu0
    for result in results:
        load.addChild(result["cpu"])
    errors = sum(r["errors"] for r in results)
    if errors:
        first = next(r["error"] for r in results if r["errors"])
        raise RuntimeError(f"{errors} runs failed, the first: {first}")
    elapsed = max(r["t1"] for r in results) - min(r["t0"] for r in results)
    total = clients * each
    return Burst(total / elapsed, daemonCpu / total * 1000, load.cores(), errors, machineBusy)


def run(report: Report, quick: bool, children: Children) -> None:
    s = Settings.quick() if quick else Settings()
    raiseFileLimit(4096)
    total = s.clients * s.each
    many: list[Burst] = []
    one: list[Burst] = []
    rss = 0.0
    for round_ in range(s.rounds):
        # Who goes first alternates.
        order = [("many", s.clients, s.each), ("one", 1, total)]
        if round_ % 2:
            order.reverse()
        for kind, clients, each in order:
            # A fresh daemon for each burst (untimed): every burst starts from
            # the same state, and no 1,000 containers to remove one by one.
            daemon = startProcessDaemon(children, f"concurrency-{round_}{kind}")
            probe = LineClient(daemon.port)
            expectOK(probe.request("ping"), "ping")
            probe.close()
            (many if kind == "many" else one).append(
                burst(children, daemon, clients, each, kind[0]))
            if kind == "many":
                rss = rssMiB(daemon.pid)
            children.stop(daemon.proc, timeout=60)

    def note(xs: list[Burst]) -> str:
        return (f"median of {len(xs)}; rounds {', '.join(f'{x.rate:,.0f}' for x in xs)}; "
                f"daemon CPU {median([x.daemonMs for x in xs]):.2f} ms a start (busy "
                f"{median([x.daemonMs * x.rate / 1000 for x in xs]):.0%} of the time); load "
                f"generator CPU {max(x.loadShare for x in xs):.0%} at most; the machine's "
                f"{os.cpu_count()} CPUs busy {median([x.machineBusy for x in xs]):.0%}")

    oneRate = median([x.rate for x in one])
    manyRate = median([x.rate for x in many])
    report.add(SECTION, f"1 client x {total} runs (per s)", f"{oneRate:,.0f}", note=note(one))
    report.add(SECTION, f"{s.clients} clients x {s.each} runs, aggregate (per s)",
               f"{manyRate:,.0f}", target=f">= {TARGET:,.0f}/s", passed=manyRate >= TARGET,
               note=note(many))
    report.add(SECTION, f"{s.clients} clients against 1 client", f"{manyRate / oneRate:.2f}x",
               note="ratio of the medians")
    report.add(SECTION, f"daemon RSS, {total} running (MiB)", f"{rss:.1f}")


if __name__ == "__main__":
    sys.exit(runAlone(run, "--quick" in sys.argv))
