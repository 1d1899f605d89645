"""
What one request costs the daemon, counted rather than timed: Python
function calls (cProfile's count, which no other load on the machine
changes) and system calls (C{strace -c}) per C{run}, C{stop} and C{rm} on
the process backend (or another), optionally beside another checkout
measured in the same run, as ratios.

Rates and CPU times move by 10-30% on a shared or virtual machine; these
counts move by less than 1%, so a change that saves 3% of a request's work
shows here when no rate can show it.  They say nothing of what a call or a
system call costs (a C{posix_spawn} is one of each): read them beside the
timed figures of C{run.py}, never instead.

    python benchmarks/requestcost.py                        # this checkout
    python benchmarks/requestcost.py --reference ../old     # and another, with ratios
    python benchmarks/requestcost.py --profiles DIR         # keep each verb's pstats file
    python benchmarks/requestcost.py --running 2000         # with 2,000 other containers running

The daemon runs under a launcher that turns cProfile on at C{SIGUSR1} and
writes its statistics at C{SIGUSR2}, around each verb's burst of requests
(one connection, one request at a time, as the process section).  Without
C{strace} on the machine only the calls are counted.
"""

from __future__ import annotations

import argparse
import os
import pstats
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import REPO, Children, LineClient, expectOK, raiseFileLimit
from benchmarks.daemon import startDaemon, startProcessDaemon
from benchmarks.scale import runMany

#: Runs twistd with cProfile off until SIGUSR1; SIGUSR2 writes what it
#: counted since to $PYCM_BENCH_PROFILE_OUT and starts afresh.
PROFILING_LAUNCHER = """\
import cProfile, os, signal, sys
sys.argv[0] = "twistd"
profile = cProfile.Profile()
def start(*_):
    profile.enable()
def stop(*_):
    profile.disable()
    profile.dump_stats(os.environ["PYCM_BENCH_PROFILE_OUT"])
    profile.clear()
signal.signal(signal.SIGUSR1, start)
signal.signal(signal.SIGUSR2, stop)
from twisted.scripts.twistd import run
run()
"""

VERBS = ("run", "stop", "rm")
_STRACE_TOTAL = re.compile(r"^100\.00\s+\S+\s+\S+\s+(\d+)", re.M)


def requestLine(verb: str, name: str) -> str:
    return f"run {name} host sleep 1000" if verb == "run" else f"{verb} {name}"


def syscallTotal(text: str) -> int | None:
    """The total of calls in C{strace -c}'s summary, or None if it has none."""
    match = _STRACE_TOTAL.search(text)
    return int(match.group(1)) if match else None


class Counter:
    """Counts one daemon's calls and system calls over bursts of requests."""

    def __init__(self, pid: int, client: LineClient, workdir: str) -> None:
        self.pid = pid
        self.client = client
        self.workdir = workdir
        self.strace = shutil.which("strace")

    def burst(self, verb: str, names: list[str]) -> tuple[float, float | None, str]:
        """C{verb} on each of C{names}: calls and system calls per request."""
        written = os.path.join(self.workdir, "out.prof")
        profile = os.path.join(self.workdir, f"{verb}.prof")
        trace = os.path.join(self.workdir, f"{verb}.strace")
        tracer = None
        if self.strace:
            tracer = subprocess.Popen(
                [self.strace, "-c", "-o", trace, "-p", str(self.pid)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            time.sleep(0.5)  # strace attaches asynchronously; nothing to wait on
        os.kill(self.pid, signal.SIGUSR1)
        expectOK(self.client.request("ping"), "ping")  # the signal handler has run
        for name in names:
            line = requestLine(verb, name)
            expectOK(self.client.request(line), line)
        os.kill(self.pid, signal.SIGUSR2)
        expectOK(self.client.request("ping"), "ping")  # the statistics are written
        os.replace(written, profile)
        syscalls = None
        if tracer is not None:
            tracer.send_signal(signal.SIGINT)
            tracer.wait(30)
            with open(trace) as f:
                total = syscallTotal(f.read())
            # The two pings' own calls are in the count; at 200 requests a
            # ping's 20-odd system calls move it by 0.2.
            syscalls = None if total is None else total / len(names)
        calls = pstats.Stats(profile).total_calls / len(names)  # type: ignore[attr-defined]
        return calls, syscalls, profile


def measure(tree: str, backend: str, requests: int, profiles: str | None,
            label: str, running: int = 0) -> dict[str, tuple[float, float | None]]:
    """
    Each verb's counts for the pycm of C{tree}, with C{running} other
    containers running (started first, pipelined, uncounted): a request
    whose cost grows with them shows as a count that grows.
    """
    children = Children()
    workdir = tempfile.mkdtemp(prefix="pycm-requestcost-")
    # Read by the daemon's launcher, which inherits it.
    os.environ["PYCM_BENCH_PROFILE_OUT"] = os.path.join(workdir, "out.prof")
    try:
        options = {"tree": tree, "launcher": PROFILING_LAUNCHER}
        if backend == "process":
            daemon = startProcessDaemon(children, f"cost{label}", **options)
        else:
            daemon = startDaemon(children, backend, **options)
        client = LineClient(daemon.port, timeout=600)
        runMany(client, [f"other{i}" for i in range(running)])
        # Warm up: first imports and first-time set-up stay out of the count.
        for i in range(20):
            for verb in VERBS:
                line = requestLine(verb, f"warm{i}")
                expectOK(client.request(line), line)
        counter = Counter(daemon.pid, client, workdir)
        result = {}
        names = [f"c{i}" for i in range(requests)]
        for verb in VERBS:
            calls, syscalls, profile = counter.burst(verb, names)
            if profiles:
                os.makedirs(profiles, exist_ok=True)
                shutil.copy(profile, os.path.join(profiles, f"{label}-{verb}.prof"))
            result[verb] = (calls, syscalls)
        return result
    finally:
        children.killAll()
        for atEnd in children.atEnd:
            atEnd()
        shutil.rmtree(workdir, ignore_errors=True)


def show(counts: float | None, reference: float | None) -> str:
    if counts is None:
        return "-"
    text = f"{counts:,.1f}"
    if reference:
        text += f" ({counts / reference:.3f}x)"
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200, metavar="N",
                        help="requests of each verb (default 200)")
    parser.add_argument("--backend", default="process", help="default: process")
    parser.add_argument("--reference", metavar="TREE",
                        help="another checkout (with pycm/) counted in the same run")
    parser.add_argument("--running", type=int, default=0, metavar="N",
                        help="other containers running meanwhile (default 0)")
    parser.add_argument("--profiles", metavar="DIR",
                        help="keep each verb's pstats file in DIR (LABEL-VERB.prof)")
    args = parser.parse_args()
    if args.reference and not os.path.isdir(os.path.join(args.reference, "pycm")):
        parser.error(f"--reference {args.reference}: no pycm/ there")
    raiseFileLimit(max(10_000, 4 * args.running + 1024))
    trees = [("this", REPO)] + ([("reference", args.reference)] if args.reference else [])
    results = {label: measure(tree, args.backend, args.requests, args.profiles, label,
                              args.running)
               for label, tree in trees}
    print(f"backend {args.backend}, {args.requests} requests of each verb, one at a time, "
          f"{args.running} other containers running; "
          f"this checkout {REPO}" + (f", reference {args.reference}" if args.reference else ""))
    if not shutil.which("strace"):
        print("strace not found: system calls not counted")
    print(f"{'verb':5}  {'Python calls/request':>26}  {'system calls/request':>26}")
    reference = results.get("reference", {})
    for verb in VERBS:
        calls, syscalls = results["this"][verb]
        refCalls, refSyscalls = reference.get(verb, (None, None))
        print(f"{verb:5}  {show(calls, refCalls):>26}  {show(syscalls, refSyscalls):>26}")
        if reference:
            print(f"{'':5}  {show(refCalls, None):>26}  {show(refSyscalls, None):>26}"
                  "   (reference)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
