"""
pycm benchmarks: one command, every figure and ratio measured in the same run.

    python benchmarks/run.py [--only core|process|concurrency|scale|reopen|memscale
                                     |events|connections|flood|stats|client|services
                                     |docker|swarm]
                             [--runs N] [--quick] [--pin] [--client-baseline OLD_PYCM]

Prints a table of figures, ratios against references measured in the same
run (the Twisted floor for the core section, supervisord for the process
section, supervisorctl for the client section, one C{pycm run} at a time and
containers without health checks for the services section, the docker SDK
for the docker and swarm sections), and PASS/FAIL against each target of
issues 2, 3, 4, 7, 9, 10, 11 and 12.  With ``--runs N`` each section
runs N times and a target passes only if it passed in every run.  Exit status:
0 when every section ran (whether or not targets were met), 1 on an error,
2 when a section could not run for want of a prerequisite (it says which).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from benchmarks import common  # noqa: E402
from benchmarks.report import Report  # noqa: E402


def machine() -> str:
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    import twisted

    pinned = (f"servers pinned to CPU {common.SERVER_CPU}, load generators to CPU "
              f"{common.CLIENT_CPU}" if common.pinnable() else "no CPU pinning")
    return (f"{platform.node()}: {common.cpuCount()} CPUs ({model or platform.machine()}), "
            f"Linux {platform.release()}, Python {platform.python_version()}, "
            f"Twisted {twisted.__version__}; {pinned}")


#: Each section and the module that measures it (its C{run(report, quick,
#: children)}).
SECTIONS = {
    "core": "core", "process": "process", "concurrency": "concurrency", "scale": "scale",
    "reopen": "reopen", "memscale": "memscale", "events": "fanout", "connections": "connections",
    "flood": "flood", "stats": "stats", "client": "client", "services": "bench_services",
    "docker": "bench_docker", "swarm": "bench_swarm",
}
DEFAULT = ["core", "process", "concurrency", "scale", "reopen", "memscale", "events",
           "connections", "flood", "stats", "client", "services"]


def runSection(report: Report, name: str, quick: bool) -> bool:
    """Run one section once; False when it could not (skipped or failed)."""
    import importlib

    children = common.Children()
    try:
        module = importlib.import_module(f"benchmarks.{SECTIONS[name]}")
        if name == "client":
            module.BASELINE = CLIENT_BASELINE
        module.run(report, quick, children)
        return True
    except KeyboardInterrupt:
        children.killAll()
        raise
    except Exception as e:
        if isinstance(e, common.Missing):
            report.skipped.append(f"{name}: {e}")
            print(f"  SKIPPED: {e}", flush=True)
        else:
            report.errors.append(f"{name}: {e!r}")
            traceback.print_exc()
        return False
    finally:
        children.killAll()


CLIENT_BASELINE: str | None = None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only",
                        choices=tuple(SECTIONS),
                        action="append",
                        help="run only this section (repeatable); default: "
                             + ", ".join(DEFAULT) + " (docker needs an engine, swarm a "
                             "swarm manager: see bench_docker.py and bench_swarm.py)")
    parser.add_argument("--runs", type=int, default=1, metavar="N",
                        help="run each section N times in a row, each run's figures "
                             "shown; then one row per target that passes only if it "
                             "passed in every run")
    parser.add_argument("--quick", action="store_true",
                        help="fewer and shorter rounds (under a minute): a smoke test "
                             "of the benchmark, not figures to quote")
    parser.add_argument("--pin", action="store_true",
                        help="pin the servers to CPU 0 and the load generators to CPU 1")
    parser.add_argument("--client-baseline", metavar="OLD_PYCM",
                        help="the client section also times this older pycm console "
                             "script (its list and its shell's start-up)")
    args = parser.parse_args(argv)
    common.PIN = args.pin
    sections = args.only or DEFAULT
    if args.runs < 1:
        parser.error("--runs wants 1 or more")
    global CLIENT_BASELINE
    CLIENT_BASELINE = args.client_baseline

    if sys.platform != "linux":
        print("the benchmarks read /proc and use epoll: Linux only", file=sys.stderr)
        return 1
    from benchmarks.daemon import pycmSource

    report = Report()
    print(f"machine: {machine()}")
    print(f"pycm under test: {pycmSource()}")
    print(f"mode: {'quick (smoke test; figures are rough)' if args.quick else 'full'}\n",
          flush=True)
    started = time.monotonic()
    for name in sections:
        for run in range(1, args.runs + 1):
            report.run = run if args.runs > 1 else 0
            waited, busy = common.settle()
            print(f"== {name}" + (f" (run {run} of {args.runs})" if args.runs > 1 else "")
                  + f"; load average {common.loadAverage()}; {waited:.1f} s waited for the "
                  f"machine to settle (CPUs {busy:.0%} busy)", flush=True)
            if not runSection(report, name, args.quick):
                break
        report.run = 0
        if args.runs > 1:
            print(f"== {name}: every run", flush=True)
            report.everyRun(name, args.runs)

    print(f"\n== results ({time.monotonic() - started:.0f} s)")
    print(f"machine: {machine()}; load average now {common.loadAverage()}")
    print(report.table())
    for note in dict.fromkeys(report.notes):
        print(f"note: {note}")
    failed = [r for r in report.rows if r.passed is False]
    passed = [r for r in report.rows if r.passed]
    print(f"\ntargets: {len(passed)} PASS, {len(failed)} FAIL")
    for line in report.skipped:
        print(f"SKIPPED {line}")
    for line in report.errors:
        print(f"ERROR {line}")
    if report.errors:
        return 1
    if report.skipped:
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
