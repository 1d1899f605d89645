"""
The scale benchmark (issue 12), on the process backend:

  - the ``stop`` rate with 2,000 running containers against the rate with
    200: two daemons, one holding 200 ``sleep 1000`` containers and the
    other 2,000, measured in interleaved rounds (who goes first
    alternates); in each round each daemon gets K more containers
    (pipelined, untimed), then stops those K one at a time on one
    connection (timed), then removes them; the ratio of the median rates;
  - ``list`` of the 2,000 (median of 100, each timed to the last byte of
    its reply);
  - that daemon's RSS with 2,000 running.

Two daemons, so that each measures the same daemon in the same state in
every round (no 1,800 containers to start and remove between rounds), and
both run with the same 2,200+ processes on the machine.
"""

from __future__ import annotations

import json
import os
import sys
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
    raiseFileLimit,
    rssMiB,
)
from benchmarks.daemon import Daemon, startProcessDaemon  # noqa: E402
from benchmarks.process import Window, pycmStopEach  # noqa: E402
from benchmarks.report import Report, runAlone  # noqa: E402

SECTION = "scale"
#: The stop rate with many running, at least this share of the rate with few.
STOP_SHARE = 0.90
LIST_MS = 10.0
RSS_MIB = 100.0


@dataclass
class Settings:
    few: int = 200
    many: int = 2000
    #: Containers stopped (timed) in each round.
    stops: int = 100
    rounds: int = 3
    listRequests: int = 100

    @classmethod
    def quick(cls) -> Settings:
        return cls(many=600, stops=30, rounds=1, listRequests=20)


def runMany(client: LineClient, names: list[str]) -> None:
    """Run these containers, pipelined in batches of 50 (untimed)."""
    for start in range(0, len(names), 50):
        batch = names[start:start + 50]
        client.sock.sendall(b"".join(f"run {n} host sleep 1000\n".encode() for n in batch))
        for n in batch:
            expectOK(client.readLine(), f"run {n}")


def removeMany(client: LineClient, names: list[str]) -> None:
    for start in range(0, len(names), 50):
        batch = names[start:start + 50]
        client.sock.sendall(b"".join(f"rm --force {n}\n".encode() for n in batch))
        for n in batch:
            expectOK(client.readLine(), f"rm {n}")


class Side:
    """One daemon holding C{held} running containers."""

    def __init__(self, children: Children, label: str, held: int) -> None:
        self.label = label
        self.held = held
        self.daemon: Daemon = startProcessDaemon(children, f"scale{label}")
        self.client = LineClient(self.daemon.port, timeout=300)
        runMany(self.client, [f"h{i:04d}" for i in range(held)])
        self.windows: list[Window] = []

    def round(self, k: int, stops: int) -> None:
        names = [f"s{k}-{i:03d}" for i in range(stops)]
        runMany(self.client, names)
        pid = self.daemon.pid
        cpu0, load = cpuSeconds(pid), LoadMeter()
        rate = pycmStopEach(self.client, names)
        self.windows.append(Window(rate, (cpuSeconds(pid) - cpu0) / stops * 1000,
                                   load.cores()))
        removeMany(self.client, names)

    def rate(self) -> float:
        return median([w.rate for w in self.windows])

    def note(self) -> str:
        w = self.windows
        return (f"median of {len(w)}; rounds {', '.join(f'{x.rate:,.0f}' for x in w)}; "
                f"daemon CPU {median([x.serverMs for x in w]):.2f} ms a stop (busy "
                f"{median([x.serverMs * x.rate / 1000 for x in w]):.0%}); load generator "
                f"CPU {max(x.loadShare for x in w):.0%} at most")


def run(report: Report, quick: bool, children: Children) -> None:
    s = Settings.quick() if quick else Settings()
    raiseFileLimit(min(20_000, (s.many + s.stops) * 6 + 1000))
    load = LoadMeter()
    few = Side(children, "few", s.few)
    many = Side(children, "many", s.many)
    for k in range(s.rounds):
        for side in ((few, many) if k % 2 == 0 else (many, few)):
            side.round(k, s.stops)
    fewRate, manyRate = few.rate(), many.rate()
    report.add(SECTION, f"stop x {s.stops}, {s.few} running (per s)", f"{fewRate:,.1f}",
               note=few.note())
    report.add(SECTION, f"stop x {s.stops}, {s.many} running (per s)", f"{manyRate:,.1f}",
               note=many.note())
    share = manyRate / fewRate
    report.add(SECTION, f"stop rate with {s.many} against {s.few}", f"{share:.2f}",
               target=f">= {STOP_SHARE:.2f}", passed=share >= STOP_SHARE,
               note="ratio of the medians; each round's: " + ", ".join(
                   f"{m.rate / f.rate:.2f}" for m, f in zip(many.windows, few.windows)))

    client = many.client
    listed = json.loads(expectOK(client.request("list"), "list")[3:])
    running = sum(1 for c in listed if c["state"] == "running")
    if running != s.many:
        raise RuntimeError(f"{running} of {s.many} containers running")
    for _ in range(3):
        client.request("list")
    pid = many.daemon.pid
    cpu0 = cpuSeconds(pid)
    times = [client.timed("list")[0] * 1000 for _ in range(s.listRequests)]
    listCpu = (cpuSeconds(pid) - cpu0) / s.listRequests * 1000
    listMs = median(times)
    size = len(client.request("list"))
    report.add(SECTION, f"list, {s.many} running, whole (median ms)", f"{listMs:.2f}",
               target=f"< {LIST_MS:g} ms", passed=listMs < LIST_MS,
               note=f"p90 {percentile(times, 90):.2f} ms, {s.listRequests} requests, each "
                    f"to the last byte of its reply ({size / 1024:.0f} KiB); daemon CPU "
                    f"{listCpu:.2f} ms a list")
    rss = rssMiB(pid)
    report.add(SECTION, f"daemon RSS, {s.many} running (MiB)", f"{rss:.1f}",
               target=f"< {RSS_MIB:g} MiB", passed=rss < RSS_MIB,
               note=f"the daemon with {s.few}: {rssMiB(few.daemon.pid):.1f} MiB")
    report.add(SECTION, "load generator CPU share, whole section", f"{load.cores():.0%}",
               note="this process (the line clients)")
    for side in (few, many):
        side.client.close()
        children.stop(side.daemon.proc, timeout=60)


if __name__ == "__main__":
    sys.exit(runAlone(run, "--quick" in sys.argv))
