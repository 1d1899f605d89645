"""
The process floor (issue 12): what starting then stopping N ``sleep 1000``
programs one after another costs with nothing but Python and the kernel,
and with nothing but Twisted; no records, no protocol, no reply.  A ceiling
for the process benchmark's rates, measured in the same run:

  - ``raw``: ``os.posix_spawn`` of each (no pipes), then ``kill`` and a
    blocking ``waitpid`` of each: what any daemon written in Python pays;
  - ``twisted``: ``reactor.spawnProcess`` with stdin from /dev/null and two
    output pipes (a container's output is captured so), then
    ``signalProcess("TERM")`` and the wait for ``processEnded``: what a
    daemon on Twisted's process support pays.

Run as a script, in a process of its own (pinned as the daemon is, with
``--pin``): ``python benchmarks/processfloor.py MODE N`` prints one JSON
object, the two rates per second.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from typing import Any

SLEEP = ("/bin/sleep", ["sleep", "1000"])


def raw(count: int) -> dict[str, float]:
    """posix_spawn each, then kill and waitpid each."""
    executable, argv = SLEEP
    env = {"PATH": "/usr/bin:/bin"}
    t0 = time.perf_counter()
    pids = [os.posix_spawn(executable, argv, env, setsid=True) for _ in range(count)]
    t1 = time.perf_counter()
    for pid in pids:
        os.kill(pid, signal.SIGTERM)
        os.waitpid(pid, 0)
    t2 = time.perf_counter()
    return {"start": count / (t1 - t0), "stop": count / (t2 - t1)}


def twisted(count: int) -> dict[str, float]:
    """spawnProcess each, then signal each and wait for its end, on a reactor."""
    from twisted.internet import epollreactor

    epollreactor.install()  # as twistd uses on Linux
    from twisted.internet import defer, protocol, reactor

    class Ended(protocol.ProcessProtocol):
        def __init__(self) -> None:
            self.ended: defer.Deferred[None] = defer.Deferred()

        def processEnded(self, reason: Any) -> None:
            self.ended.callback(None)

    result: dict[str, float] = {}

    @defer.inlineCallbacks
    def measure() -> Any:
        executable, argv = SLEEP
        try:
            t0 = time.perf_counter()
            ended = []
            for _ in range(count):
                proto = Ended()
                process = reactor.spawnProcess(proto, executable, argv,
                                               env={"PATH": "/usr/bin:/bin"},
                                               childFDs={0: "w", 1: "r", 2: "r"})
                process.closeStdin()
                ended.append((process, proto))
            t1 = time.perf_counter()
            for process, proto in ended:
                process.signalProcess("TERM")
                yield proto.ended
            t2 = time.perf_counter()
            result.update(start=count / (t1 - t0), stop=count / (t2 - t1))
        finally:
            reactor.stop()

    reactor.callWhenRunning(measure)
    reactor.run()
    return result


def main(argv: list[str]) -> None:
    mode, count = argv[1], int(argv[2])
    print(json.dumps({"raw": raw, "twisted": twisted}[mode](count)), flush=True)


if __name__ == "__main__":
    main(sys.argv)
