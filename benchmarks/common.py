"""
Shared helpers of the benchmarks: starting and killing child processes,
reading their memory and CPU from /proc, a blocking line client, statistics.

Every child is started in its own session (its own process group) and
registered with L{Children}, whose C{killAll} kills every group; run.py calls
it in a C{finally}, so nothing is left running even when a measurement fails.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

#: The CPU the servers (pycm, the floor, supervisord) are pinned to, and the
#: one the load generators are pinned to, with --pin on a machine with two or
#: more.  Off by default: on the 2-CPU VM this was written on, splitting them
#: made every wake-up a cross-CPU one and left the server idle 25-50% of the
#: time, so it measured wake-up latency rather than the server's CPU cost.
SERVER_CPU = 0
CLIENT_CPU = 1
PIN = False

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpuCount() -> int:
    return os.cpu_count() or 1


def pinnable() -> bool:
    return PIN and hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) >= 2


def affinityPrefix(cpu: int) -> list[int] | None:
    """The CPU set to pin a child to, or None when there is only one CPU."""
    if not pinnable():
        return None
    cpus = sorted(os.sched_getaffinity(0))
    return [cpus[cpu % len(cpus)]]


def raiseFileLimit(want: int = 10_000) -> int:
    """Raise RLIMIT_NOFILE (children inherit it); return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class Children:
    """Every child process the benchmark started, to kill them all at the end."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []
        self.tempdirs: list[str] = []
        #: Called once every process is stopped (such as removing a cgroup).
        self.atEnd: list[Callable[[], None]] = []

    def tempdir(self, prefix: str) -> str:
        # Under /tmp whatever $TMPDIR says: sockets live here, and their
        # paths must stay under 108 bytes.
        path = tempfile.mkdtemp(prefix=f"pycm-bench-{prefix}-", dir="/tmp")
        self.tempdirs.append(path)
        return path

    def start(
        self,
        argv: Sequence[str],
        cpu: int | None = None,
        logPath: str | None = None,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        stdout: int | None = None,
    ) -> subprocess.Popen:
        cpus = affinityPrefix(cpu) if cpu is not None else None

        def preexec() -> None:
            if cpus is not None:
                os.sched_setaffinity(0, cpus)

        out = open(logPath, "wb") if logPath else subprocess.DEVNULL
        try:
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=stdout if stdout is not None else out,
                stderr=out,
                start_new_session=True,
                preexec_fn=preexec,
                env=env,
                cwd=cwd,
            )
        finally:
            if logPath:
                out.close()
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen, timeout: float = 5.0) -> None:
        """TERM the child's process group, then KILL it after C{timeout}."""
        _signalGroup(proc, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        _signalGroup(proc, signal.SIGKILL)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        if proc in self.procs:
            self.procs.remove(proc)

    def killAll(self) -> None:
        for proc in list(self.procs):
            self.stop(proc, timeout=3.0)
        for path in self.tempdirs:
            shutil.rmtree(path, ignore_errors=True)
        self.tempdirs = []
        while self.atEnd:
            self.atEnd.pop()()


def _signalGroup(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def freePort() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def waitForPort(port: int, proc: subprocess.Popen, timeout: float = 20.0,
                logPath: str | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}" + tail(logPath))
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on port {port} after {timeout}s" + tail(logPath))


def tail(path: str | None, lines: int = 15) -> str:
    if not path or not os.path.exists(path):
        return ""
    with open(path, "rb") as f:
        text = f.read().decode("utf-8", "replace").splitlines()[-lines:]
    return "\n  log tail:\n    " + "\n    ".join(text)


def rssMiB(pid: int) -> float:
    """The resident set size of a process, from /proc/PID/status, in MiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"no VmRSS for {pid}")


def fileLimit(pid: int) -> int:
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith("Max open files"):
                return int(line.split()[3])
    return -1


def cpuSeconds(pid: int) -> float:
    """User + system CPU time of a process so far, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def percentile(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, int(round(p / 100.0 * (len(ordered) - 1)))))
    return ordered[k]


class LineClient:
    """A blocking client: send one line, read one reply line."""

    def __init__(self, port: int, timeout: float = 30.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def request(self, line: str | bytes) -> bytes:
        if isinstance(line, str):
            line = line.encode()
        self.sock.sendall(line + b"\n")
        return self.readLine()

    def readLine(self) -> bytes:
        i = self.buf.find(b"\n")
        if i >= 0:
            line, self.buf = self.buf[:i], self.buf[i + 1:]
            return line
        # A reply of megabytes comes in many chunks: look for the newline in
        # each new chunk only, and join them once (the time to the last byte
        # is what is measured, not this client's copying).
        chunks = [self.buf]
        while True:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("server closed the connection")
            i = chunk.find(b"\n")
            if i >= 0:
                chunks.append(chunk[:i])
                self.buf = chunk[i + 1:]
                return b"".join(chunks)
            chunks.append(chunk)

    def timed(self, line: str | bytes) -> tuple[float, bytes]:
        """(seconds, reply) for one request."""
        t0 = time.perf_counter()
        reply = self.request(line)
        return time.perf_counter() - t0, reply

    def close(self) -> None:
        self.sock.close()


def expectOK(reply: bytes, what: str) -> bytes:
    if not reply.startswith(b"OK"):
        raise RuntimeError(f"{what}: {reply[:300]!r}")
    return reply


def python() -> str:
    return sys.executable


def selfCpuSeconds() -> float:
    """This process's user + system CPU time so far (every thread)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def loadAverage() -> str:
    """The machine's load averages (1, 5, 15 minutes), for the notes."""
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


#: A machine is quiet when its CPUs were busy at most this share of a
#: window (L{settle}); the longest L{settle} waits for that.
QUIET_SHARE = 0.10
SETTLE_MAX = 30.0
SETTLE_WINDOW = 0.5


def cpuTimes(text: str) -> tuple[int, int]:
    """(busy, total) jiffies of every CPU, from the text of C{/proc/stat}."""
    fields = [int(x) for x in text.split("\n", 1)[0].split()[1:]]
    # user nice system idle iowait irq softirq steal (guest time is in user):
    # steal is the host running others, not this machine being busy.
    idle = sum(fields[3:5]) + sum(fields[7:8])
    total = sum(fields[:8])
    return total - idle, total


def busyShare(before: tuple[int, int], after: tuple[int, int]) -> float:
    """The share of the machine's CPU time that was busy between two L{cpuTimes}."""
    total = after[1] - before[1]
    return (after[0] - before[0]) / total if total > 0 else 0.0


def machineCpuTimes() -> tuple[int, int]:
    """L{cpuTimes} of this machine now."""
    with open("/proc/stat") as f:
        return cpuTimes(f.read())


def settle(quiet: float = QUIET_SHARE, longest: float = SETTLE_MAX,
           window: float = SETTLE_WINDOW) -> tuple[float, float]:
    """
    Wait until the machine is quiet (its CPUs busy at most C{quiet} of a
    C{window}), at most C{longest} seconds: a section's first round must
    not pay for the teardown of the one before (a daemon's thousands of
    processes reaped, its cgroups removed), which goes on after it returns.
    Returns the seconds waited and the busy share of the last window.
    """
    started = time.monotonic()
    before = machineCpuTimes()
    while True:
        time.sleep(window)  # sampling the machine's own clock: nothing to wait on
        after = machineCpuTimes()
        share = busyShare(before, after)
        waited = time.monotonic() - started
        if share <= quiet or waited >= longest:
            return waited, share
        before = after


class LoadMeter:
    """
    The load generator's own CPU share over a window: this process (every
    thread) plus the client processes it ran (their own CPU time, which
    they report, added with L{addChild}), over the wall time, in cores.
    """

    def __init__(self) -> None:
        self.wall0 = time.monotonic()
        self.cpu0 = selfCpuSeconds()
        self.children = 0.0
        self.stopped: tuple[float, float] | None = None

    def addChild(self, seconds: float) -> None:
        self.children += seconds

    def stop(self) -> None:
        """End the window now (children's CPU may still be added after)."""
        self.stopped = time.monotonic(), selfCpuSeconds()

    def cores(self) -> float:
        wall1, cpu1 = self.stopped or (time.monotonic(), selfCpuSeconds())
        wall = max(wall1 - self.wall0, 1e-6)
        return (cpu1 - self.cpu0 + self.children) / wall


class Missing(Exception):
    """A prerequisite of a section is not installed: the section is skipped."""
