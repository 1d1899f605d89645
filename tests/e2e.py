"""
Helpers for end-to-end tests: the real C{twistd pycm} in a subprocess, and a
blocking line client over a real socket.

These tests use real time and real sockets on purpose; they wait by polling
with a deadline, never by sleeping a fixed time.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import termios
import time
from collections.abc import Callable, Sequence
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from pycm.backends.process import procfs

#: How long to wait for the daemon and for replies, in seconds.
DEADLINE = 30.0

_LISTENING = re.compile(r"pycm listening on (tcp|unix):(\S+)")


def twistdCommand() -> list[str]:
    """The installed C{twistd} of this interpreter (what a user runs)."""
    candidate = os.path.join(os.path.dirname(sys.executable), "twistd")
    if os.path.exists(candidate):
        return [candidate]
    found = shutil.which("twistd")
    if found is None:
        raise RuntimeError("twistd is not installed")
    return [found]


def pycmCommand() -> list[str]:
    """The installed C{pycm} client of this interpreter."""
    candidate = os.path.join(os.path.dirname(sys.executable), "pycm")
    if os.path.exists(candidate):
        return [candidate]
    return [sys.executable, "-m", "pycm.client.cli"]


def defaultSIGINT() -> None:
    """
    A C{preexec_fn}: in the child, Ctrl-C acts as a terminal gives it,
    whatever the test runner inherited (a shell's background job ignores
    SIGINT, and a pycm started from it would too, as it should).
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def defaultStopSignals() -> None:
    """
    A C{preexec_fn}: in the child, SIGINT and SIGHUP act as a terminal's
    shell gives them, whatever the test runner inherited (a background job
    ignores SIGINT, C{nohup} SIGHUP, and a pycm started so keeps them
    ignored, as it should).
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


def memoryOf(pid: int, field: str = "VmRSS") -> int:
    """A memory figure of process C{pid} (C{VmRSS}, C{VmHWM}: its peak), in bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} for {pid}")


def waitFor(predicate: Callable[[], Any], what: str, deadline: float = DEADLINE) -> Any:
    """Poll C{predicate} until it returns something true, or fail."""
    end = time.monotonic() + deadline
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


class Terminal:
    """
    A program on a new pseudo-terminal, the test holding the master side,
    read as a person watches a screen: until what the test expects shows up.

    @ivar output: what was read since the last L{mark}.
    @ivar settingsBefore: the terminal's settings before the program ran.
    """

    def __init__(
        self,
        testCase: SynchronousTestCase,
        argv: Sequence[str],
        env: dict[str, str] | None = None,
        size: tuple[int, int] | None = None,
        stdout: int | None = None,
    ) -> None:
        """
        @param size: the terminal's rows and columns (None: the kernel's 0x0).
        @param stdout: where the program's stdout goes instead of the
            terminal (C{subprocess.PIPE}: L{process}'s C{stdout}).
        """
        master, slave = os.openpty()
        testCase.addCleanup(os.close, master)
        testCase.addCleanup(os.close, slave)
        if size is not None:
            rows, columns = size
            fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
        self.master, self.slave = master, slave
        self.settingsBefore = termios.tcgetattr(slave)
        self.process = subprocess.Popen(
            list(argv), stdin=slave, stdout=slave if stdout is None else stdout,
            stderr=slave, env=env, start_new_session=True,
        )
        if self.process.stdout is not None:
            testCase.addCleanup(self.process.stdout.close)
        testCase.addCleanup(self._reap)
        self.output = b""

    def _reap(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()

    def settings(self) -> list[Any]:
        """The terminal's settings now."""
        return termios.tcgetattr(self.slave)

    def readUntil(self, expected: bytes, timeout: float = DEADLINE) -> bytes:
        """Read until C{expected} shows up; all read since the last L{mark}."""
        deadline = time.monotonic() + timeout
        while expected not in self.output:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{expected!r} not seen in {self.output[-3000:]!r}")
            ready, _, _ = select.select([self.master], [], [], min(left, 0.2))
            if ready:
                try:
                    data = os.read(self.master, 65536)
                except OSError:
                    data = b""
                if not data:
                    raise AssertionError(
                        f"{expected!r} not seen before EOF: {self.output[-3000:]!r}"
                    )
                self.output += data
        return self.output

    def readToEnd(self, timeout: float = DEADLINE) -> bytes:
        """Read until the program has exited and written all; all read since L{mark}."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"the program did not exit: {self.output[-3000:]!r}")
            ready, _, _ = select.select([self.master], [], [], min(left, 0.2))
            if not ready:
                if self.process.poll() is not None:
                    return self.output
                continue
            try:
                data = os.read(self.master, 65536)
            except OSError:
                data = b""
            if not data:
                return self.output
            self.output += data

    def readPast(self, expected: bytes) -> None:
        """Read until C{expected} shows up, then forget it and all before it."""
        self.readUntil(expected)
        self.output = self.output[self.output.index(expected) + len(expected) :]

    def type(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def mark(self) -> None:
        """Forget what was read (so the next readUntil looks at new output)."""
        self.output = b""


class LineClient:
    """A blocking client: one request line out, one reply line back."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sock.settimeout(DEADLINE)
        self._buffer = b""
        self.events: list[Any] = []

    def send(self, data: bytes | str) -> None:
        if isinstance(data, str):
            data = data.encode("utf-8")
        self.sock.sendall(data)

    def readLine(self) -> bytes:
        while b"\n" not in self._buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the daemon closed the connection")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line

    def reply(self) -> tuple[str, Any]:
        """The next OK or ERR reply; EVENT lines on the way go to C{events}."""
        while True:
            kind, _, rest = self.readLine().decode("utf-8").partition(" ")
            if kind == "EVENT":
                self.events.append(json.loads(rest))
                continue
            if kind == "ERR":
                code, _, message = rest.partition(" ")
                return kind, (code, message)
            return kind, json.loads(rest)

    def request(self, line: str) -> tuple[str, Any]:
        self.send(line + "\n")
        return self.reply()

    def ok(self, line: str) -> Any:
        kind, value = self.request(line)
        assert kind == "OK", (line, value)
        return value

    def err(self, line: str) -> str:
        kind, value = self.request(line)
        assert kind == "ERR", (line, value)
        return value[0]

    def isClosed(self) -> bool:
        """True once the daemon has closed this connection."""
        try:
            return self.sock.recv(1) == b""
        except (TimeoutError, BlockingIOError):
            return False
        except OSError:
            return True

    def close(self) -> None:
        self.sock.close()


class RealDaemon:
    """
    C{twistd -n pycm} in a subprocess, on a TCP port chosen by the kernel
    and a UNIX socket, both in a private temporary directory.
    """

    def __init__(
        self,
        testCase: SynchronousTestCase,
        backend: str = "memory",
        args: Sequence[str] = (),
        stateDir: str | None = None,
        auth: bool = False,
        env: dict[str, str] | None = None,
        umask: int = -1,
        fileLimit: int | None = None,
        cpus: set[int] | None = None,
    ) -> None:
        self.testCase = testCase
        self.backend = backend
        self.args = list(args)
        # Under /tmp whatever $TMPDIR says: the socket's path must stay
        # under 108 bytes.
        self.home = tempfile.mkdtemp(prefix="pycm-e2e-", dir="/tmp")
        testCase.addCleanup(shutil.rmtree, self.home, ignore_errors=True)
        self.stateDir = stateDir or os.path.join(self.home, "state")
        self.socketPath = os.path.join(self.home, "pycm.sock")
        self.auth = auth
        self.env = env
        #: The umask twistd starts under (-1: this process's own).
        self.umask = umask
        #: Soft and hard RLIMIT_NOFILE of the daemon, if not inherited.
        self.fileLimit = fileLimit
        #: The CPUs the daemon is pinned to, if not inherited.
        self.cpus = cpus
        self.process: subprocess.Popen[bytes] | None = None
        self.logPath = ""
        self.port = 0
        self._starts = 0

    def start(self, expectFailure: bool = False) -> RealDaemon:
        self._starts += 1
        self.logPath = os.path.join(self.home, f"twistd-{self._starts}.log")
        command = [
            *twistdCommand(), "-n", "--pidfile=", "--logfile", self.logPath,
            "pycm", "--backend", self.backend, "--state-dir", self.stateDir,
            "--listen", "tcp:0:interface=127.0.0.1",
            "--listen", f"unix:{self.socketPath}",
            *([] if self.auth else ["--no-auth"]),
            *self.args,
        ]
        env = dict(os.environ, **(self.env or {}))
        self.process = subprocess.Popen(
            command, cwd=self.home, env=env,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True, umask=self.umask,
            preexec_fn=None if self.fileLimit is None and self.cpus is None else self._limit,
        )
        self.testCase.addCleanup(self.stop)
        if expectFailure:
            return self
        waitFor(self._ready, "the daemon to listen")
        return self

    def _limit(self) -> None:
        """In the child: the open-file limit and the CPUs the daemon is to run under."""
        import resource

        if self.fileLimit is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (self.fileLimit, self.fileLimit))
        if self.cpus is not None:
            os.sched_setaffinity(0, self.cpus)

    def _ready(self) -> bool:
        assert self.process is not None
        log = self.log()
        if self.process.poll() is not None:
            output = self.process.stdout.read().decode() if self.process.stdout else ""
            raise AssertionError(f"the daemon exited early:\n{output}\n{log}")
        if "pycm is ready" not in log:
            return False
        for kind, where in _LISTENING.findall(log):
            if kind == "tcp":
                self.port = int(where.rsplit(":", 1)[1])
        return True

    def log(self) -> str:
        try:
            with open(self.logPath, encoding="utf-8", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def connect(self, unix: bool = False) -> LineClient:
        if unix:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(self.socketPath)
        else:
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=DEADLINE)
        client = LineClient(sock)
        self.testCase.addCleanup(client.close)
        return client

    def clientEnv(self) -> dict[str, str]:
        """Environment for the real C{pycm} client to reach this daemon."""
        return dict(os.environ, PYCM_HOST=f"unix:{self.socketPath}")

    def pycm(self, *args: str, input: bytes | None = None,
             env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
        """Run the real C{pycm} client against this daemon."""
        return subprocess.run(
            [*pycmCommand(), *args], input=input, capture_output=True,
            env=env or self.clientEnv(), timeout=DEADLINE,
        )

    def exitCode(self, deadline: float = DEADLINE) -> int:
        """Wait for the daemon to exit; its exit status."""
        assert self.process is not None
        return self.process.wait(timeout=deadline)

    def signal(self, signum: int) -> None:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signum)

    def kill9(self) -> None:
        """Kill the daemon as a crash would: SIGKILL, no chance to clean up."""
        self.signal(signal.SIGKILL)
        self.exitCode()

    def stop(self) -> None:
        """SIGTERM, as an operator or init would; wait for it to exit."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def marked(stateMarker: str) -> dict[int, tuple[str | None, str | None]]:
    """
    The live processes started by a daemon of this state directory (its
    C{PYCM_STATE}): pid -> (C{PYCM_CONTAINER}, C{PYCM_RUN_ID}).
    """
    found = {}
    for stat in procfs.allStats():
        if not stat.alive:
            continue
        environ = procfs.environ(stat.pid) or b""
        if procfs.environValue(environ, "PYCM_STATE") == stateMarker:
            found[stat.pid] = (
                procfs.environValue(environ, "PYCM_CONTAINER"),
                procfs.runId(environ),
            )
    return found


def killAll(stateMarker: str) -> None:
    """Kill whatever a daemon of this state directory left (cleanup)."""
    for pid in marked(stateMarker):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
