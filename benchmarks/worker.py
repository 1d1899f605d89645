"""
Client processes of the issue-12 sections, so that the clients of a figure
do not share this process's interpreter (and its lock) with each other or
with the prober measuring latency:

    python benchmarks/worker.py runs PORT PREFIX COUNT
    python benchmarks/worker.py ping PORT INTERVAL
    python benchmarks/worker.py subscribe PORT CONNECTIONS LASTNAME

Each one connects first, prints ``ready``, waits for a line on its stdin
(``go``: every worker of a figure starts at once), works, and prints one
line of JSON with its figures and its own CPU time since it was told to go
(``cpu``, user + system seconds), which the section adds to the load
generator's share:

  - ``runs``: COUNT ``run PREFIXNNNN host sleep 1000``, one at a time on
    one connection; ``t0``/``t1`` on CLOCK_MONOTONIC (one clock for every
    process), ``errors`` (the first one's reply in ``error``);
  - ``ping``: a ``ping`` every INTERVAL seconds until a second line comes
    on its stdin; ``ms``, each one's latency;
  - ``subscribe``: CONNECTIONS connections each subscribed with
    ``events``; each connection's reads are stamped with the wall clock
    (the events' ``time`` is the daemon's wall clock) and kept raw until
    that connection has seen ``start`` of the container LASTNAME (or a
    second line comes on stdin); its ``cpu`` is its CPU time until then
    (not the parsing after); then, per connection: ``last_id`` of its
    ``OK``, its events' ids, names and actions in the order received, each
    one's delivery latency in ms, and whether the daemon closed it.
"""

from __future__ import annotations

import json
import os
import resource
import selectors
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime

if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import CLIENT_CPU, HERE, Children, affinityPrefix  # noqa: E402


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=120)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


class Lines:
    """Reply lines of one blocking connection."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def request(self, line: str) -> bytes:
        self.sock.sendall(line.encode() + b"\n")
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                reply, self.buf = self.buf[:i], self.buf[i + 1:]
                return reply
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("the daemon closed the connection")
            self.buf += chunk


#: This process's CPU time when it was told to go (its start-up is not the
#: load it generates).
CPU0 = 0.0


def ready() -> None:
    global CPU0
    print("ready", flush=True)
    sys.stdin.readline()
    CPU0 = cpu()


def runs(port: int, prefix: str, count: int) -> dict:
    client = Lines(connect(port))
    ready()
    errors, first = 0, ""
    t0 = time.monotonic()
    for i in range(count):
        reply = client.request(f"run {prefix}{i:04d} host sleep 1000")
        if not reply.startswith(b"OK"):
            errors += 1
            first = first or reply[:200].decode("utf-8", "replace")
    t1 = time.monotonic()
    return {"t0": t0, "t1": t1, "errors": errors, "error": first}


def ping(port: int, interval: float) -> dict:
    client = Lines(connect(port))
    ready()
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.readline(), stop.set()), daemon=True).start()
    times = []
    while not stop.is_set():
        t = time.perf_counter()
        if client.request("ping") != b'OK "pong"':
            raise RuntimeError("ping: not pong")
        times.append((time.perf_counter() - t) * 1000)
        stop.wait(interval)
    return {"ms": times}


def subscribe(port: int, connections: int, lastName: str) -> dict:
    socks = [connect(port) for _ in range(connections)]
    for sock in socks:
        sock.sendall(b"events\n")
    reads: dict[int, list[tuple[float, bytes]]] = {i: [] for i in range(connections)}
    for i, sock in enumerate(socks):
        # Its OK first: every subscriber is subscribed once this says ready.
        first = b""
        while b"\n" not in first:
            chunk = sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("the daemon closed a subscriber")
            first += chunk
        reads[i].append((time.time(), first))
    closed: set[int] = set()
    name = json.dumps(lastName).encode()
    done: set[int] = set()
    selector = selectors.DefaultSelector()
    for i, sock in enumerate(socks):
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ, i)
    stop = threading.Event()
    global CPU0
    print("ready", flush=True)
    CPU0 = cpu()
    threading.Thread(target=lambda: (sys.stdin.readline(), sys.stdin.readline(), stop.set()),
                     daemon=True).start()
    while len(done) + len(closed) < connections and not stop.is_set():
        for key, _ in selector.select(0.2):
            i = key.data
            try:
                chunk = key.fileobj.recv(1 << 18)  # type: ignore[union-attr]
            except BlockingIOError:
                continue
            except OSError:
                chunk = b""
            if not chunk:
                closed.add(i)
                selector.unregister(key.fileobj)
                continue
            reads[i].append((time.time(), chunk))
            if b"\n" in chunk and _sawLast(reads[i], name):
                done.add(i)
                selector.unregister(key.fileobj)
    # Its CPU while it read, not while it parses what it read.
    readCpu = cpu() - CPU0
    out = {"subscribers": [_parse(reads[i], i in closed) for i in range(connections)]}
    out["cpu"] = readCpu
    return out


def _sawLast(reads: list[tuple[float, bytes]], name: bytes) -> bool:
    tail = b"".join(chunk for _, chunk in reads[-2:])
    if name not in tail:
        return False
    for line in tail.split(b"\n"):
        if name in line and b'"action":"start"' in line.replace(b" ", b""):
            return True
    return False


def _parse(reads: list[tuple[float, bytes]], closed: bool) -> dict:
    lastId, ids, names, actions, ms = None, [], [], [], []
    pending = b""
    for stamp, chunk in reads:
        lines = (pending + chunk).split(b"\n")
        pending = lines.pop()
        for line in lines:
            if line.startswith(b"OK ") and lastId is None:
                lastId = json.loads(line[3:]).get("last_id")
            elif line.startswith(b"EVENT "):
                event = json.loads(line[6:])
                if event.get("type") != "container":
                    continue
                ids.append(event["id"])
                names.append(event["name"])
                actions.append(event["action"])
                when = datetime.fromisoformat(event["time"]).timestamp()
                ms.append(round((stamp - when) * 1000, 2))
    return {"last_id": lastId, "ids": ids, "names": names, "actions": actions, "ms": ms,
            "closed": closed}


class Worker:
    """One worker process, seen from the section that runs it."""

    def __init__(self, children: Children, *args: object) -> None:
        cpus = affinityPrefix(CLIENT_CPU)
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "worker.py"), *map(str, args)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True,
            preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None)
        children.procs.append(self.proc)

    def waitReady(self) -> None:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if line.strip() != b"ready":
            raise RuntimeError(f"worker {self.proc.args[2:]}: {line[:300]!r}")

    def tell(self, line: str = "go") -> None:
        """A line on its stdin (nothing if it has already ended)."""
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(line.encode() + b"\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError):
            pass

    def result(self, timeout: float = 300) -> dict:
        """
        Its line of JSON.  Past C{timeout} it is told to stop (a subscriber
        that never saw its last event then says what it got).
        """
        assert self.proc.stdout is not None
        timer = threading.Timer(timeout, self.tell, ("stop",))
        timer.daemon = True
        timer.start()
        try:
            line = self.proc.stdout.readline()
        finally:
            timer.cancel()
        self.proc.wait(30)
        if self.proc.returncode != 0 or not line.strip():
            raise RuntimeError(f"worker {self.proc.args[2:]} exited with "
                               f"{self.proc.returncode}")
        return json.loads(line)


def main(argv: list[str]) -> None:
    mode, port = argv[0], int(argv[1])
    if mode == "runs":
        out = runs(port, argv[2], int(argv[3]))
    elif mode == "ping":
        out = ping(port, float(argv[2]))
    elif mode == "subscribe":
        out = subscribe(port, int(argv[2]), argv[3])
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    out.setdefault("cpu", cpu() - CPU0)
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])
