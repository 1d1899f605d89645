"""
The load generator: a separate process that keeps CONNS connections busy
with DEPTH ``ping`` requests in flight on each, for a warm-up and then for
DURATION seconds, and prints one JSON line with what it measured, including
its own CPU time so the caller can tell whether the client was the limit.

Raw non-blocking sockets on ``select.epoll`` (no framework): for each batch
of replies read, it counts the line ends and sends as many new requests in
one ``send``, so its cost per request is a fraction of the server's.

    python benchmarks/loadgen.py PORT CONNS DEPTH DURATION [WARMUP [REQUEST [SERVERPID]]]

benchmarks/loadgen.c does the same in C, at a fraction of the CPU; run.py
uses it when a C compiler is there.
"""

from __future__ import annotations

import json
import os
import select
import socket
import sys
import time


def procCpu(pid: int) -> float:
    if pid <= 0:
        return 0.0
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(port: int, conns: int, depth: int, duration: float, warmup: float,
        request: bytes, serverPid: int = 0) -> dict:
    ep = select.epoll()
    socks: dict[int, socket.socket] = {}
    pending: dict[int, bytes] = {}
    for _ in range(conns):
        s = socket.create_connection(("127.0.0.1", port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setblocking(False)
        socks[s.fileno()] = s
        pending[s.fileno()] = b""
        ep.register(s.fileno(), select.EPOLLIN)
    batches = {n: request * n for n in range(1, depth * 4 + 1)}
    for s in socks.values():
        s.send(batches[depth])
    count = 0
    start = time.perf_counter()
    measuring = False
    t0 = start
    cpu0 = os.times()
    server0 = procCpu(serverPid)
    endWarmup = start + warmup
    end = endWarmup + duration
    poll = ep.poll
    while True:
        now = time.perf_counter()
        if not measuring and now >= endWarmup:
            measuring = True
            count = 0
            t0 = now
            cpu0 = os.times()
            server0 = procCpu(serverPid)
        if now >= end:
            break
        for fd, _ in poll(0.2):
            s = socks[fd]
            data = s.recv(262144)
            if not data:
                raise SystemExit("server closed a connection")
            n = data.count(b"\n")
            if not n:
                continue
            count += n
            out = pending[fd] + (batches.get(n) or request * n)
            sent = s.send(out)
            pending[fd] = out[sent:]
    elapsed = time.perf_counter() - t0
    cpu1 = os.times()
    server = procCpu(serverPid) - server0
    cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    for s in socks.values():
        s.close()
    return {"requests": count, "seconds": elapsed, "rate": count / elapsed,
            "cpu": cpu, "cpu_share": cpu / elapsed,
            "server_cpu_share": server / elapsed, "client": "python"}


def main() -> None:
    port, conns, depth = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    duration = float(sys.argv[4])
    warmup = float(sys.argv[5]) if len(sys.argv) > 5 else 0.5
    request = (sys.argv[6] if len(sys.argv) > 6 else "ping").encode() + b"\n"
    serverPid = int(sys.argv[7]) if len(sys.argv) > 7 else 0
    print(json.dumps(run(port, conns, depth, duration, warmup, request, serverPid)),
          flush=True)


if __name__ == "__main__":
    main()
