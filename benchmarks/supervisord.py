"""
supervisord, the process section's reference (and its stray processes):
started with N ``sleep 1000`` programs from a generated config in a temp
dir, driven over XML-RPC on its UNIX socket as supervisorctl does.

supervisord is only a reference here: ``pip install supervisor`` in the
benchmark environment, never a dependency of pycm.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
import xmlrpc.client

from benchmarks.common import (
    SERVER_CPU,
    Children,
    cpuSeconds,
    freePort,
    median,
    percentile,
    rssMiB,
    tail,
)

SLEEP = ("sleep", "1000")


class Strays:
    """
    Processes a server spawned in their own process groups, which killing
    the server's group does not reach: killed at the end if still there and
    still running what we started (so a recycled pid is never hit).
    """

    def __init__(self) -> None:
        self.pids: set[int] = set()

    def add(self, pid: int | None) -> None:
        if pid:
            self.pids.add(pid)

    def killAll(self) -> int:
        killed = 0
        for pid in self.pids:
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    argv = tuple(a.decode() for a in f.read().split(b"\0") if a)
            except OSError:
                continue
            if argv == SLEEP or (argv[:2] == ("sh", "-c") and "head -c" in " ".join(argv)):
                try:
                    os.killpg(pid, signal.SIGKILL)
                except OSError:
                    pass
                try:
                    os.kill(pid, signal.SIGKILL)
                    killed += 1
                except OSError:
                    pass
        self.pids.clear()
        return killed


# supervisord


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost")
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)


class UnixTransport(xmlrpc.client.Transport):
    """XML-RPC over supervisord's UNIX socket, as supervisorctl talks to it."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path

    def make_connection(self, host):  # type: ignore[override]
        if self._connection and host == self._connection[0]:
            return self._connection[1]
        self._connection = host, _UnixHTTPConnection(self.path)
        return self._connection[1]


def supervisordProxy(where: str) -> xmlrpc.client.ServerProxy:
    if where.startswith("unix:"):
        return xmlrpc.client.ServerProxy("http://localhost/RPC2",
                                         transport=UnixTransport(where[5:]))
    return xmlrpc.client.ServerProxy(f"http://{where}/RPC2")


def launchSupervisord(
    children: Children, base: str, conf: list[str]
) -> tuple[subprocess.Popen, str, str]:
    """
    Write C{conf} (its lines) as C{base}/supervisord.conf and start
    supervisord on it in the foreground: the process, the configuration's
    path and the path of its output.
    """
    path = os.path.join(base, "supervisord.conf")
    with open(path, "w") as f:
        f.write("\n".join(conf) + "\n")
    logPath = os.path.join(base, "stdout.log")
    proc = children.start([sys.executable, "-m", "supervisor.supervisord", "-n", "-c", path],
                          cpu=SERVER_CPU, logPath=logPath, cwd=base)
    return proc, path, logPath


def startSupervisord(children: Children, count: int,
                     transport: str) -> tuple[subprocess.Popen, xmlrpc.client.ServerProxy]:
    base = children.tempdir("supervisord")
    os.mkdir(os.path.join(base, "logs"))
    if transport == "unix":
        where = f"unix:{base}/supervisor.sock"
        listen = ["[unix_http_server]", f"file={where[5:]}"]
    else:
        where = f"127.0.0.1:{freePort()}"
        listen = ["[inet_http_server]", f"port={where}"]
    conf = [
        *listen,
        "[supervisord]",
        f"logfile={base}/supervisord.log",
        f"pidfile={base}/supervisord.pid",
        f"childlogdir={base}/logs",
        "nodaemon=true",
        "minfds=1024",
        "minprocs=200",
        "loglevel=warn",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
    ]
    for i in range(count):
        conf += [
            f"[program:p{i:04d}]",
            "command=" + " ".join(SLEEP),
            "startsecs=0",
            "autostart=false",
            "autorestart=false",
        ]
    proc, _, logPath = launchSupervisord(children, base, conf)
    server = supervisordProxy(where)
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"supervisord exited with {proc.returncode}" + tail(logPath))
        try:
            if server.supervisor.getState()["statename"] == "RUNNING":
                break
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("supervisord did not reach RUNNING" + tail(logPath))
        time.sleep(0.1)
    return proc, server


class Supervisord:
    """The reference: supervisord with N programs, driven over XML-RPC."""

    def __init__(self, count: int, children: Children, strays: Strays,
                 transport: str = "unix") -> None:
        self.count = count
        self.children = children
        self.strays = strays
        self.proc, self.server = startSupervisord(children, count, transport)

    def cpu(self) -> float:
        """supervisord's CPU time so far (user + system), in seconds."""
        return cpuSeconds(self.proc.pid)

    def startAll(self) -> float:
        """Start every program, one after another, waiting for each: the rate."""
        t0 = time.perf_counter()
        for i in range(self.count):
            self.server.supervisor.startProcess(f"p{i:04d}", True)
        elapsed = time.perf_counter() - t0
        infos = self.server.supervisor.getAllProcessInfo()
        for info in infos:
            self.strays.add(info.get("pid"))
        running = sum(1 for info in infos if info["statename"] == "RUNNING")
        if running != self.count:
            raise RuntimeError(f"supervisord runs {running} of {self.count}")
        return self.count / elapsed

    def stopEach(self) -> float:
        """Stop every program, one after another, waiting for each: the rate."""
        t0 = time.perf_counter()
        for i in range(self.count):
            self.server.supervisor.stopProcess(f"p{i:04d}", True)
        elapsed = time.perf_counter() - t0
        infos = self.server.supervisor.getAllProcessInfo()
        running = sum(1 for info in infos if info["statename"] != "STOPPED")
        if running:
            raise RuntimeError(f"supervisord has {running} programs not STOPPED")
        return self.count / elapsed

    def listFigures(self, requests: int) -> dict:
        """getAllProcessInfo with every program running."""
        server = self.server.supervisor
        for _ in range(3):
            server.getAllProcessInfo()
        times = []
        for _ in range(requests):
            t = time.perf_counter()
            server.getAllProcessInfo()
            times.append((time.perf_counter() - t) * 1000)
        cpu0 = cpuSeconds(self.proc.pid)
        for _ in range(10):
            server.getAllProcessInfo()
        listCpu = (cpuSeconds(self.proc.pid) - cpu0) / 10 * 1000
        return {"list_cpu": listCpu, "list_ms": median(times),
                "list_p90": percentile(times, 90), "rss": rssMiB(self.proc.pid)}

    def stopAll(self) -> None:
        self.server.supervisor.stopAllProcesses(True)

    def close(self) -> None:
        self.children.stop(self.proc, timeout=10)


def supervisorVersion() -> str:
    try:
        from importlib.metadata import version

        return version("supervisor")
    except Exception:
        return "?"
