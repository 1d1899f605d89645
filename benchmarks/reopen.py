"""
The reopen benchmark, on the process backend (no target):

  - a daemon runs 2,000 ``--restart always`` containers (``sleep 1000``,
    pipelined, untimed) and is killed with SIGKILL;
  - another daemon is started on the same state directory and port: how
    long after its exec it listens and answers its first ``ping``, how long
    a ``ping`` takes (one every 10 ms, one at a time) while it brings the
    containers back, and how long until ``list`` (every 5 pings) shows all
    of them running; then it removes them (untimed).

What it shows is how long a daemon with many containers is deaf after a
crash or an upgrade, and how deaf while its containers come back
(L{pycm.backends.supervisor.comeback}).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import (  # noqa: E402
    Children,
    LineClient,
    expectOK,
    median,
    percentile,
    raiseFileLimit,
    settle,
)
from benchmarks.daemon import daemonEnv, startProcessDaemon  # noqa: E402
from benchmarks.report import Report, runAlone  # noqa: E402
from benchmarks.scale import removeMany, runMany  # noqa: E402

SECTION = "reopen"
#: The longest a reopened daemon is given to bring every container back.
DEADLINE = 120.0
#: Pings between two looks at how many run (about 0.1 s apart).
LIST_EVERY = 5


@dataclass
class Settings:
    containers: int = 2000

    @classmethod
    def quick(cls) -> Settings:
        return cls(containers=200)


def names(count: int) -> list[str]:
    """The names of the section's containers."""
    return [f"a{i}" for i in range(count)]


def countRunning(client: LineClient) -> int:
    """How many containers C{list} shows running."""
    return sum(1 for c in json.loads(client.request("list")[3:]) if c["state"] == "running")


def connectWhenListening(
    port: int, proc: subprocess.Popen, since: float
) -> tuple[LineClient, float]:
    """A client of the daemon on C{port} as soon as it listens, and when that was."""
    while True:
        try:
            return LineClient(port, timeout=DEADLINE), time.perf_counter() - since
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError("the reopened daemon exited") from None
            if time.perf_counter() - since > DEADLINE:
                raise RuntimeError("the reopened daemon never listened") from None
            time.sleep(0.002)


def run(report: Report, quick: bool, children: Children) -> None:
    s = Settings.quick() if quick else Settings()
    raiseFileLimit(4 * s.containers + 1024)
    daemon = startProcessDaemon(children, "reopen")
    runMany(LineClient(daemon.port, timeout=DEADLINE), names(s.containers), "--restart always ")
    with open(f"/proc/{daemon.pid}/cmdline") as f:
        argv = f.read().split("\0")[:-1]
    os.kill(daemon.pid, signal.SIGKILL)
    daemon.proc.wait()
    settle()
    began = time.perf_counter()
    proc = children.start(argv, logPath=daemon.logPath + ".reopened", env=daemonEnv(),
                          cwd=os.path.dirname(daemon.stateDir))
    client, listening = connectWhenListening(daemon.port, proc, began)
    expectOK(client.request("ping"), "ping")
    answered = time.perf_counter() - began
    pings: list[float] = []
    # The pings up to the last list that still found some to bring back:
    # later ones met a daemon with nothing left to do.
    whileComingBack = 0
    running = 0
    while running < s.containers and time.perf_counter() - began < DEADLINE:
        t0 = time.perf_counter()
        expectOK(client.request("ping"), "ping")
        pings.append(time.perf_counter() - t0)
        if len(pings) % LIST_EVERY == 0:
            running = countRunning(client)
            if running < s.containers:
                whileComingBack = len(pings)
        time.sleep(0.01)
    allBack = time.perf_counter() - began
    pings = pings[:whileComingBack]
    removeMany(client, names(s.containers))
    n = s.containers
    report.add(SECTION, f"reopened on {n:,} always containers: listening after (ms)",
               f"{listening * 1000:,.0f}", note="from the exec of the new daemon")
    report.add(SECTION, f"reopened on {n:,}: first ping answered after (ms)",
               f"{answered * 1000:,.0f}",
               note="after the dead daemon's runs are reclaimed and the first batch runs")
    report.add(SECTION, f"reopened on {n:,}: ping while they come back (ms)",
               f"{median(pings) * 1000:.1f}" if pings else "-",
               note=(f"median of {len(pings)}, one every 10 ms; p99 "
                     f"{percentile(pings, 99) * 1000:.1f} ms, max {max(pings) * 1000:.1f} ms"
                     if pings else "no ping while they came back"))
    report.add(SECTION, f"reopened on {n:,}: all running after (s)",
               f"{allBack:.1f}" if running >= n else f"> {DEADLINE:.0f}",
               note=f"{running:,} of {n:,} running at the end")


if __name__ == "__main__":
    sys.exit(runAlone(run, "--quick" in sys.argv))
