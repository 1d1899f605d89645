"""
The events benchmark (issue 12, section ``events``): 100 subscribers
(``events`` on 100 connections, held by 4 client processes of 25 each)
while one client creates and removes 1,000 containers, one request at a
time (``run eNNNN`` then ``rm --force eNNNN``; memory backend by default,
``PYCM_BENCH_EVENTS_BACKEND=process`` for the process backend):

  - every subscriber gets every event, in order: each one's ids are
    compared with the daemon's own record of them (``events --since`` the
    ``last_id`` of the subscribers' ``OK``, read after the burst), id for id
    with names and actions; no subscriber may be disconnected;
  - delivery latency: the time a subscriber read the event (wall clock)
    minus the event's ``time`` (the daemon's wall clock, to the
    millisecond); p99 over every event of every subscriber;
  - the daemon's RSS growth: its peak (sampled every 20 ms) minus its RSS
    before the subscribers connected.
"""

from __future__ import annotations

import json
import os
import sys
import threading
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
)
from benchmarks.daemon import startDaemon, startProcessDaemon  # noqa: E402
from benchmarks.report import Report, runAlone  # noqa: E402
from benchmarks.worker import Worker  # noqa: E402

SECTION = "events"
P99_MS = 50.0
RSS_MIB = 20.0
#: The container whose start ends the burst (every subscriber reads until it).
LAST = "zz-last"


@dataclass
class Settings:
    subscribers: int = 100
    processes: int = 4
    containers: int = 1000

    @classmethod
    def quick(cls) -> Settings:
        return cls(subscribers=20, processes=2, containers=100)


def expected(client: LineClient, since: int) -> list[tuple[int, str, str]]:
    """The daemon's own record of the events after C{since}, up to LAST's start."""
    expectOK(client.request(f"events --since={since}"), "events --since")
    events = []
    while True:
        line = client.readLine()
        if not line.startswith(b"EVENT "):
            continue
        event = json.loads(line[6:])
        if event.get("type") != "container":
            continue
        events.append((event["id"], event["name"], event["action"]))
        if event["name"] == LAST and event["action"] == "start":
            return events


def check(subscriber: dict, want: list[tuple[int, str, str]]) -> str:
    """What is wrong with one subscriber's events; '' when nothing."""
    got = list(zip(subscriber["ids"], subscriber["names"], subscriber["actions"]))
    if subscriber["closed"]:
        return f"disconnected after {len(got)} of {len(want)} events"
    if got == want:
        return ""
    ids = subscriber["ids"]
    if any(b <= a for a, b in zip(ids, ids[1:])):
        return "ids out of order"
    missing = len({e[0] for e in want} - set(ids))
    return f"{missing} of {len(want)} events missing" if missing else "events differ"


class Sampler(threading.Thread):
    """The daemon's RSS every 20 ms, until stopped: the peak."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = rssMiB(pid)
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(0.02):
            self.peak = max(self.peak, rssMiB(self.pid))


def run(report: Report, quick: bool, children: Children) -> None:
    s = Settings.quick() if quick else Settings()
    raiseFileLimit(4096)
    backend = os.environ.get("PYCM_BENCH_EVENTS_BACKEND", "memory")
    if backend == "process":
        daemon = startProcessDaemon(children, "events")
        image = " host sleep 1000"
    else:
        daemon = startDaemon(children, backend)
        image = ""
    driver = LineClient(daemon.port, timeout=120)
    expectOK(driver.request("ping"), "ping")
    time.sleep(0.2)
    rss0 = rssMiB(daemon.pid)
    per = s.subscribers // s.processes
    workers = [Worker(children, "subscribe", daemon.port, per, LAST)
               for _ in range(s.processes)]
    for worker in workers:
        worker.waitReady()
    sampler = Sampler(daemon.pid)
    sampler.start()
    load = LoadMeter()
    cpu0 = cpuSeconds(daemon.pid)
    t0 = time.monotonic()
    for i in range(s.containers):
        expectOK(driver.request(f"run e{i:04d}{image}"), "run")
        expectOK(driver.request(f"rm --force e{i:04d}"), "rm")
    expectOK(driver.request(f"run {LAST}{image}"), "run")
    elapsed = time.monotonic() - t0
    load.stop()
    for worker in workers:
        worker.tell()  # "go" (ignored)
    results = []
    for worker in workers:
        try:
            results.append(worker.result(timeout=30))
        except Exception:
            worker.tell("stop")
            raise
    daemonCpu = cpuSeconds(daemon.pid) - cpu0
    sampler.stopped.set()
    sampler.join()
    for result in results:
        load.addChild(result["cpu"])
    subscribers = [sub for result in results for sub in result["subscribers"]]
    lastIds = {sub["last_id"] for sub in subscribers}
    if len(lastIds) != 1 or None in lastIds:
        raise RuntimeError(f"the subscribers started at different events: {lastIds}")
    want = expected(LineClient(daemon.port, timeout=60), lastIds.pop())
    problems = [p for p in (check(sub, want) for sub in subscribers) if p]
    ms = [x for sub in subscribers for x in sub["ms"]]
    delivered = sum(len(sub["ids"]) for sub in subscribers)
    report.add(SECTION, f"{len(subscribers)} subscribers get every event in order",
               f"{len(subscribers) - len(problems)} of {len(subscribers)}",
               target="all", passed=not problems and len(subscribers) == s.subscribers,
               note=(f"{len(want)} events each ({s.containers} containers created and "
                     f"removed on the {backend} backend in {elapsed:.1f} s, "
                     f"{len(want) / elapsed:,.0f} events a second)")
               + (f"; {problems[0]}" + (f" (and {len(problems) - 1} more)"
                                        if len(problems) > 1 else "") if problems else ""))
    p99 = percentile(ms, 99)
    report.add(SECTION, "event delivery latency, p99 (ms)", f"{p99:.1f}",
               target=f"< {P99_MS:g} ms", passed=p99 < P99_MS,
               note=f"median {median(ms):.1f}, max {max(ms):.1f} ms over {delivered:,} "
                    "deliveries (read time minus the event's time, ms resolution); daemon "
                    f"CPU {daemonCpu / max(delivered, 1) * 1e6:.0f} us a delivery; load "
                    f"generator CPU {load.cores():.0%} over the burst (this process and "
                    f"{s.processes} subscriber processes while they read)")
    growth = sampler.peak - rss0
    report.add(SECTION, "daemon RSS growth (MiB)", f"{growth:.1f}",
               target=f"< {RSS_MIB:g} MiB", passed=growth < RSS_MIB,
               note=f"{rss0:.1f} MiB before the subscribers connected, peak "
                    f"{sampler.peak:.1f} MiB")
    driver.close()
    children.stop(daemon.proc)


if __name__ == "__main__":
    sys.exit(runAlone(run, "--quick" in sys.argv))
