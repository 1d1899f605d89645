"""
The connections benchmark (issue 7, item 12), on the memory backend, with
the token required:

  - 3,000 connections that never authenticate, each holding the most it may
    send before C{auth} (an unfinished line of the pre-auth limit): the
    daemon's RSS growth, and an authenticated client's C{ping} meanwhile;
  - the RSS once they have closed (what was given back);
  - 2,000 clients connecting at once: how many waited a SYN retry (the
    listen backlog), and a fresh connect, auth and ping while others open
    and close connections as fast as they can.

The benchmark raises its soft open-file limit (the daemon inherits it), so
that both ends can hold 3,000 sockets; the daemon's default
C{--max-connections}, derived from that limit, must let them in.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import dataclass

from benchmarks.common import (
    Children,
    LineClient,
    Missing,
    expectOK,
    fileLimit,
    median,
    raiseFileLimit,
    rssMiB,
)
from benchmarks.daemon import Daemon, startDaemon
from benchmarks.report import Report

SECTION = "connections"

#: The most an unauthenticated connection may hold: an unfinished line of
#: pycm.daemon.protocol.PREAUTH_MAX_LINE_LENGTH bytes (one more is refused).
PREAUTH_BYTES = 4096


@dataclass
class Settings:
    connections: int = 3000
    openers: int = 4
    pings: int = 200


def _connections(probe: LineClient) -> int:
    reply = expectOK(probe.request("info"), "info")
    import json

    return int(json.loads(reply[3:])["connections"])


def _waitForConnections(probe: LineClient, wanted: int, timeout: float = 30.0) -> int:
    deadline = time.monotonic() + timeout
    while True:
        count = _connections(probe)
        if count == wanted or time.monotonic() > deadline:
            return count
        time.sleep(0.05)


def _openHeld(port: int, count: int, line: bytes, held: list[socket.socket],
              errors: list[str]) -> None:
    """Open C{count} connections, each sending C{line} without its newline."""
    try:
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", port), timeout=30)
            sock.sendall(line)
            held.append(sock)
    except OSError as e:
        errors.append(repr(e))


def unauthenticated(report: Report, s: Settings, daemon: Daemon) -> float:
    with open(os.path.join(daemon.stateDir, "token")) as tokenFile:
        token = tokenFile.read().strip()
    probe = LineClient(daemon.port)
    expectOK(probe.request(f"auth {token}"), "auth")
    expectOK(probe.request("ping"), "ping")
    time.sleep(0.2)
    rss0 = rssMiB(daemon.pid)
    held: list[socket.socket] = []
    errors: list[str] = []
    times: list[float] = []
    line = b"auth " + b"x" * (PREAUTH_BYTES - 5)
    # Several openers: a SYN the kernel drops now and then costs its
    # opener a second (the SYN is sent again), not the whole run.
    openers = [
        threading.Thread(target=_openHeld, daemon=True,
                         args=(daemon.port, s.connections // s.openers, line, held, errors))
        for _ in range(s.openers)
    ]
    started = time.monotonic()
    try:
        for opener in openers:
            opener.start()
        while any(opener.is_alive() for opener in openers):
            times.append(probe.timed("ping")[0] * 1000)
            time.sleep(0.01)
        opening = time.monotonic() - started
        if errors:
            raise RuntimeError(f"opening connections failed: {errors[0]}")
        count = _waitForConnections(probe, s.connections + 1)
        if count != s.connections + 1:
            raise RuntimeError(f"the daemon holds {count} connections, not {s.connections + 1}")
        for _ in range(s.pings):
            times.append(probe.timed("ping")[0] * 1000)
            time.sleep(0.002)
        rss1 = rssMiB(daemon.pid)
        # Still open, every one of them: the daemon refused none.
        count = _connections(probe)
    finally:
        for sock in held:
            sock.close()
    growth = rss1 - rss0
    report.add(SECTION, f"{s.connections} unauthenticated conns x {PREAUTH_BYTES} B held: "
               "RSS growth (MiB)", f"{growth:.1f}", target="< 32 MiB", passed=growth < 32,
               note=f"{rss0:.1f} -> {rss1:.1f} MiB; {count - 1} held at the end; daemon fd "
                    f"limit {fileLimit(daemon.pid)}")
    report.add(SECTION, "authenticated client's ping meanwhile (median/max ms)",
               f"{median(times):.2f} / {max(times):.2f}", target="max < 50 ms",
               passed=max(times) < 50,
               note=f"{len(times)} pings, one every 10 ms while opening them "
                    f"({opening:.1f} s), then {s.pings} while holding")
    _waitForConnections(probe, 1)
    time.sleep(0.5)
    rss2 = rssMiB(daemon.pid)
    report.add(SECTION, "RSS after they closed (MiB)", f"{rss2:.1f}",
               note=f"{rss2 - rss0:+.1f} MiB against before they came")
    probe.close()
    return rss2


def secondRound(report: Report, s: Settings, daemon: Daemon, rss2: float) -> None:
    """The same again: memory kept after the first round is used again."""
    held: list[socket.socket] = []
    errors: list[str] = []
    line = b"auth " + b"x" * (PREAUTH_BYTES - 5)
    openers = [
        threading.Thread(target=_openHeld, daemon=True,
                         args=(daemon.port, s.connections // s.openers, line, held, errors))
        for _ in range(s.openers)
    ]
    with open(os.path.join(daemon.stateDir, "token")) as tokenFile:
        token = tokenFile.read().strip()
    probe = LineClient(daemon.port)
    expectOK(probe.request(f"auth {token}"), "auth")
    try:
        for opener in openers:
            opener.start()
        for opener in openers:
            opener.join()
        _waitForConnections(probe, s.connections + 1)
        rss3 = rssMiB(daemon.pid)
    finally:
        for sock in held:
            sock.close()
    _waitForConnections(probe, 1)
    probe.close()
    time.sleep(0.5)
    rss4 = rssMiB(daemon.pid)
    report.add(SECTION, "second round: RSS growth above the first's leftovers (MiB)",
               f"{rss3 - rss2:.1f}",
               note=f"{rss2:.1f} -> {rss3:.1f} MiB held, {rss4:.1f} MiB after they closed: what "
                    "the first round left is the allocator's, used again, not a leak")


def _connectTimed(port: int, count: int, held: list[socket.socket],
                  times: list[float], errors: list[str]) -> None:
    """Open C{count} connections at once, timing each connect."""
    try:
        for _ in range(count):
            started = time.monotonic()
            sock = socket.create_connection(("127.0.0.1", port), timeout=30)
            times.append(time.monotonic() - started)
            held.append(sock)
    except OSError as e:
        errors.append(repr(e))


def connectBurst(report: Report, daemon: Daemon, clients: int = 2000,
                 threads: int = 16) -> None:
    """
    Many clients connecting at once: with a short listen backlog, a SYN the
    kernel drops costs its client a second (the SYN is sent again).
    """
    held: list[socket.socket] = []
    times: list[float] = []
    errors: list[str] = []
    openers = [
        threading.Thread(target=_connectTimed, daemon=True,
                         args=(daemon.port, clients // threads, held, times, errors))
        for _ in range(threads)
    ]
    try:
        for opener in openers:
            opener.start()
        for opener in openers:
            opener.join()
    finally:
        for sock in held:
            sock.close()
    slow = sum(1 for t in times if t > 0.9)
    ordered = sorted(times)
    report.add(SECTION, f"{clients} connects at once from {threads} threads: "
               "waited a SYN retry (> 0.9 s)", str(slow), target="< 1%",
               passed=slow < clients / 100,
               note=f"p99 {ordered[int(len(ordered) * 0.99) - 1] * 1000:.1f} ms, max "
                    f"{ordered[-1] * 1000:.1f} ms; {len(errors)} failed")


def _churn(port: int, stopping: threading.Event) -> None:
    while not stopping.is_set():
        try:
            socket.create_connection(("127.0.0.1", port), timeout=30).close()
        except OSError:
            pass


def freshClientDuringChurn(report: Report, daemon: Daemon, seconds: float = 5.0) -> None:
    """A fresh connect, auth and ping while others open and close connections."""
    with open(os.path.join(daemon.stateDir, "token")) as tokenFile:
        token = tokenFile.read().strip()
    stopping = threading.Event()
    churners = [threading.Thread(target=_churn, daemon=True, args=(daemon.port, stopping))
                for _ in range(4)]
    times: list[float] = []
    for churner in churners:
        churner.start()
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            started = time.monotonic()
            client = LineClient(daemon.port)
            expectOK(client.request(f"auth {token}"), "auth")
            expectOK(client.request("ping"), "ping")
            times.append(time.monotonic() - started)
            client.close()
            time.sleep(0.05)
    finally:
        stopping.set()
        for churner in churners:
            churner.join()
    report.add(SECTION, "fresh connect + auth + ping during connection churn "
               "(median/max ms)", f"{median(times) * 1000:.1f} / {max(times) * 1000:.1f}",
               target="max < 1000 ms", passed=max(times) < 1.0,
               note=f"{len(times)} tries over {seconds:g} s, 4 threads opening and closing "
                    "connections meanwhile")


def run(report: Report, quick: bool, children: Children) -> None:
    s = Settings(connections=1000, pings=50) if quick else Settings()
    needed = 2 * s.connections + 2048
    limit = raiseFileLimit(needed)
    if limit < s.connections + 512:
        raise Missing(f"an open-file limit of {s.connections + 512} or more (the hard limit "
                      f"allows {limit}): raise it with ulimit -Hn")
    # A long --auth-timeout: this measures what they cost while held.
    daemon = startDaemon(children, "memory", auth=True, extra=["--auth-timeout", "600"])
    report.add(SECTION, "daemon RSS at start, memory backend, token required (MiB)",
               f"{rssMiB(daemon.pid):.1f}")
    connectBurst(report, daemon)
    freshClientDuringChurn(report, daemon)
    rss = unauthenticated(report, s, daemon)
    secondRound(report, s, daemon, rss)
    children.stop(daemon.proc)
