"""
The scale benchmark (issue 12), on the process backend:

  - the ``stop`` rate with 2,000 running containers against the rate with
    200, on one daemon, in interleaved rounds (who goes first alternates;
    the daemon grows from 200 ``sleep 1000`` containers to 2,000 and back
    between the two, pipelined, untimed; each window waits for a quiet
    machine); each
    measurement runs K more containers, stops those K, one at a time on
    one connection (both timed), then removes them; the ratio of the
    median rates;
  - the same for ``run`` (no target: how a start scales);
  - ``list`` of the 2,000 (median of 100, each timed to the last byte of
    its reply);
  - the daemon's RSS with 2,000 running.

One daemon, not one holding 200 and another 2,000 side by side: a stop's
marker sweep looks at the machine's processes except its own live runs, so
a daemon with 200 would pay for the other's 2,000 and flatter the ratio.
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
    raiseFileLimit,
    rssMiB,
    settle,
)
from benchmarks.daemon import startProcessDaemon  # noqa: E402
from benchmarks.process import Window, pycmStopEach, window  # noqa: E402
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


def runMany(client: LineClient, names: list[str], options: str = "") -> None:
    """Run these containers (with C{options}), pipelined in batches of 50 (untimed)."""
    for start in range(0, len(names), 50):
        batch = names[start:start + 50]
        client.sock.sendall(
            b"".join(f"run {options}{n} host sleep 1000\n".encode() for n in batch))
        for n in batch:
            expectOK(client.readLine(), f"run {n}")


def removeMany(client: LineClient, names: list[str]) -> None:
    for start in range(0, len(names), 50):
        batch = names[start:start + 50]
        client.sock.sendall(b"".join(f"rm --force {n}\n".encode() for n in batch))
        for n in batch:
            expectOK(client.readLine(), f"rm {n}")


def runEach(client: LineClient, names: list[str]) -> float:
    """Run these containers, one after another on one connection: the rate."""
    t0 = time.perf_counter()
    for name in names:
        expectOK(client.request(f"run {name} host sleep 1000"), f"run {name}")
    return len(names) / (time.perf_counter() - t0)


def stopWindow(client: LineClient, pid: int, tag: str, stops: int) -> tuple[Window, Window]:
    """
    K more containers run, then stopped, one at a time (both timed), then
    removed: the two windows.
    """
    names = [f"s{tag}-{i:03d}" for i in range(stops)]
    runs = window(lambda: runEach(client, names), stops, pid)
    stopped = window(lambda: pycmStopEach(client, names), stops, pid)
    removeMany(client, names)
    return runs, stopped


def note(windows: list[Window], verb: str = "stop") -> str:
    w = windows
    return (f"median of {len(w)}; rounds {', '.join(f'{x.rate:,.0f}' for x in w)}; "
            f"daemon CPU {median([x.serverMs for x in w]):.2f} ms a {verb} (busy "
            f"{median([x.serverMs * x.rate / 1000 for x in w]):.0%}); load generator "
            f"CPU {max(x.loadShare for x in w):.0%} at most")


def run(report: Report, quick: bool, children: Children) -> None:
    s = Settings.quick() if quick else Settings()
    raiseFileLimit(min(20_000, (s.many + s.stops) * 6 + 1000))
    load = LoadMeter()
    daemon = startProcessDaemon(children, "scale")
    client = LineClient(daemon.port, timeout=600)
    pid = daemon.pid
    base = [f"h{i:04d}" for i in range(s.few)]
    extra = [f"h{i:04d}" for i in range(s.few, s.many)]
    runMany(client, base)
    windows: dict[str, list[Window]] = {"few": [], "many": []}
    runWindows: dict[str, list[Window]] = {"few": [], "many": []}
    rss, grown = 0.0, False
    for k in range(s.rounds):
        # Who goes first alternates; the daemon grows to MANY and back
        # (untimed) between the two.  Each timed window waits for a quiet
        # machine: after growing or shrinking, the kernel is still busy
        # with the 1,800 processes started or ended (their start-up, their
        # exit, their cgroups).
        for kind in (("few", "many") if k % 2 == 0 else ("many", "few")):
            if (kind == "many") != grown:
                (runMany if kind == "many" else removeMany)(client, extra)
                grown = kind == "many"
            settle()
            runs, stops = stopWindow(client, pid, f"{k}{kind[0]}", s.stops)
            runWindows[kind].append(runs)
            windows[kind].append(stops)
            if kind == "many" and k == s.rounds - 1:
                rss = listAndMemory(report, s, client, pid)
    reportRuns(report, s, runWindows)
    few, many = windows["few"], windows["many"]
    fewRate, manyRate = median([w.rate for w in few]), median([w.rate for w in many])
    report.add(SECTION, f"stop x {s.stops}, {s.few} running (per s)", f"{fewRate:,.1f}",
               note=note(few))
    report.add(SECTION, f"stop x {s.stops}, {s.many} running (per s)", f"{manyRate:,.1f}",
               note=note(many))
    share = manyRate / fewRate
    report.add(SECTION, f"stop rate with {s.many} against {s.few}", f"{share:.2f}",
               target=f">= {STOP_SHARE:.2f}", passed=share >= STOP_SHARE,
               note="ratio of the medians; each round's: " + ", ".join(
                   f"{m.rate / f.rate:.2f}" for m, f in zip(many, few)))
    report.add(SECTION, f"daemon RSS, {s.many} running (MiB)", f"{rss:.1f}",
               target=f"< {RSS_MIB:g} MiB", passed=rss < RSS_MIB)
    report.add(SECTION, "load generator CPU share, whole section", f"{load.cores():.0%}",
               note="this process (the line client)")
    client.close()
    children.stop(daemon.proc, timeout=60)


def reportRuns(report: Report, s: Settings, windows: dict[str, list[Window]]) -> None:
    """The C{run} rates with FEW and MANY running (no target: for scale)."""
    few, many = windows["few"], windows["many"]
    fewRate, manyRate = median([w.rate for w in few]), median([w.rate for w in many])
    report.add(SECTION, f"run x {s.stops}, {s.few} running (per s)", f"{fewRate:,.1f}",
               note=note(few, "run"))
    report.add(SECTION, f"run x {s.stops}, {s.many} running (per s)", f"{manyRate:,.1f}",
               note=note(many, "run"))
    report.add(SECTION, f"run rate with {s.many} against {s.few}", f"{manyRate / fewRate:.2f}",
               note="no target; ratio of the medians; each round's: " + ", ".join(
                   f"{m.rate / f.rate:.2f}" for m, f in zip(many, few)))


def listAndMemory(report: Report, s: Settings, client: LineClient, pid: int) -> float:
    """C{list} of MANY running, each to its last byte; the daemon's RSS."""
    listed = json.loads(expectOK(client.request("list"), "list")[3:])
    running = sum(1 for c in listed if c["state"] == "running")
    if running != s.many:
        raise RuntimeError(f"{running} of {s.many} containers running")
    for _ in range(3):
        client.request("list")
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
    return rssMiB(pid)


if __name__ == "__main__":
    sys.exit(runAlone(run, "--quick" in sys.argv))
