"""
End-to-end tests of the daemon: the real C{twistd pycm}, real sockets, the
memory backend.  They catch what unit tests cannot: packaging, plugin
discovery, listeners, the token file, start-up refusals.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import textwrap
import time

from twisted.trial.unittest import SynchronousTestCase

from .e2e import DEADLINE, RealDaemon, defaultStopSignals, twistdCommand, waitFor

#: A start-up that fails must say so within this many seconds.
REFUSAL_DEADLINE = 10.0


class DaemonE2ETests(SynchronousTestCase):
    def test_contractSession(self) -> None:
        """The contract's example session works over a real TCP socket."""
        daemon = RealDaemon(self).start()
        client = daemon.connect()
        self.assertEqual(client.ok("ping"), "pong")
        web = client.ok("run web host sleep 1000")
        self.assertEqual(web["state"], "running")
        self.assertEqual(client.err("run web"), "conflict")
        self.assertEqual([c["name"] for c in client.ok("list")], ["web"])
        stopped = client.ok("stop web")
        self.assertEqual((stopped["state"], stopped["exit_code"]), ("exited", -15))
        self.assertEqual(client.ok("exit"), "bye")
        waitFor(client.isClosed, "the daemon to close the connection")

    def test_pipelinedOverSocket(self) -> None:
        """Many pipelined requests in one write get their replies in order."""
        client = RealDaemon(self).start().connect()
        client.send("".join(f"create c{i:03d}\n" for i in range(200)) + "list\n")
        for i in range(200):
            kind, value = client.reply()
            self.assertEqual((kind, value["name"]), ("OK", f"c{i:03d}"))
        kind, listed = client.reply()
        self.assertEqual(len(listed), 200)

    def test_tokenOnTCP(self) -> None:
        """
        A TCP listener wants the token from the state directory's token file
        (mode 0600); the UNIX socket (mode 0600) does not.
        """
        daemon = RealDaemon(self, auth=True).start()
        tokenPath = os.path.join(daemon.stateDir, "token")
        self.assertEqual(stat.S_IMODE(os.stat(tokenPath).st_mode), 0o600)
        self.assertEqual(stat.S_IMODE(os.stat(daemon.socketPath).st_mode), 0o600)
        token = open(tokenPath).read().strip()
        tcp = daemon.connect()
        self.assertEqual(tcp.err("list"), "unauthorized")
        self.assertEqual(tcp.ok(f"auth {token}"), "authenticated")
        self.assertEqual(tcp.ok("list"), [])
        unix = daemon.connect(unix=True)
        self.assertEqual(unix.ok("list"), [])

    def test_tokenReused(self) -> None:
        """The token made at the first start is reused at the next."""
        daemon = RealDaemon(self, auth=True).start()
        tokenPath = os.path.join(daemon.stateDir, "token")
        first = open(tokenPath).read()
        daemon.stop()
        daemon.start()
        self.assertEqual(open(tokenPath).read(), first)

    def test_crossProtocolGuard(self) -> None:
        """A browser's HTTP request is dropped without a reply or an action."""
        daemon = RealDaemon(self).start()
        client = daemon.connect()
        client.send("POST / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nrun evil\n")
        waitFor(client.isClosed, "the daemon to close the connection")
        self.assertEqual(daemon.connect().ok("list"), [])

    def test_tooLongLine(self) -> None:
        """A line over the limit gets ERR too_long and the connection closes."""
        client = RealDaemon(self, args=["--max-line-length", "4096"]).start().connect()
        client.send(b"x" * 10_000 + b"\n")
        self.assertEqual(client.reply()[1][0], "too_long")
        waitFor(client.isClosed, "the daemon to close the connection")

    def test_eventIdsSurviveRestart(self) -> None:
        """Event ids keep increasing across a daemon restart."""
        daemon = RealDaemon(self).start()
        client = daemon.connect()
        client.ok("create a1")
        client.ok("create a2")
        lastId = client.ok("events")["last_id"]
        self.assertGreaterEqual(lastId, 2)
        daemon.stop()
        daemon.start()
        client = daemon.connect()
        self.assertEqual(client.ok("events --since=0")["last_id"], lastId)
        client.ok("create a3")
        ids = [e["id"] for e in waitFor(lambda: _eventsUntil(client, lastId + 1), "events")]
        self.assertEqual(ids[-1], lastId + 1)

    def test_stdioListener(self) -> None:
        """--listen stdio: serves the protocol on the daemon's stdin and stdout."""
        import tempfile

        home = tempfile.mkdtemp(prefix="pycm-e2e-")
        process = subprocess.Popen(
            [*twistdCommand(), "-n", "--pidfile=", "--logfile", os.path.join(home, "log"),
             "pycm", "--backend", "memory", "--state-dir", os.path.join(home, "s"),
             "--listen", "stdio:"],
            cwd=home, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        )
        self.addCleanup(process.wait)
        self.addCleanup(process.kill)
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write(b"ping\nrun web\nlist\nexit\n")
        process.stdin.flush()
        self.assertEqual(process.stdout.readline(), b'OK "pong"\n')
        self.assertTrue(process.stdout.readline().startswith(b'OK {"name":"web"'))
        self.assertTrue(process.stdout.readline().startswith(b'OK [{"name":"web"'))
        self.assertEqual(process.stdout.readline(), b'OK "bye"\n')

    def test_portInUse(self) -> None:
        """A port that is taken stops the daemon at once, with a message."""
        import socket

        taken = socket.socket()
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        self.addCleanup(taken.close)
        port = taken.getsockname()[1]
        result = _runTwistd(["--no-auth", "--listen", f"tcp:{port}:interface=127.0.0.1"])
        self.assertNotEqual(result.returncode, 0)
        output = result.stdout + result.stderr
        self.assertIn(b"cannot listen", output)
        self.assertNotIn(b"pycm is ready", output)

    def test_nonLoopbackTCPRefused(self) -> None:
        """
        A TCP listener on every address without TLS is refused at start-up:
        exit 1, the reason on stderr (on every supported Twisted: 24.3's
        twistd exited 0 on a refused option).
        """
        result = _runTwistd(["--listen", "tcp:0"])
        self.assertEqual(result.returncode, 1)
        self.assertIn(b"without TLS", result.stderr)

    def test_unknownBackend(self) -> None:
        """An unknown backend name is refused, naming the available ones."""
        result = _runTwistd(["--backend", "nosuch"])
        self.assertEqual(result.returncode, 1)
        self.assertIn(b"unknown backend 'nosuch'", result.stderr)
        self.assertIn(b"memory", result.stderr)
        self.assertIn(b"process", result.stderr)

    def test_secondDaemonRefused(self) -> None:
        """A second daemon on the same state directory is refused."""
        daemon = RealDaemon(self).start()
        result = _runTwistd(
            ["--state-dir", daemon.stateDir, "--listen", "tcp:0:interface=127.0.0.1", "--no-auth"]
        )
        self.assertNotEqual(result.returncode, 0)
        output = result.stdout + result.stderr
        self.assertIn(b"another pycm daemon", output)
        self.assertNotIn(b"Traceback", output)

    def test_sigtermStopsCleanly(self) -> None:
        """
        SIGTERM stops the containers, then the daemon, which exits as
        twistd does on a signal: by that signal, after a clean shutdown.
        """
        daemon = RealDaemon(self).start()
        daemon.connect().ok("run web")
        daemon.signal(signal.SIGTERM)
        self.assertEqual(daemon.exitCode(), -signal.SIGTERM)
        log = daemon.log()
        self.assertIn("web exited with -15", log)
        self.assertIn("Server Shut Down", log)

    def test_helpDocumentsEveryOption(self) -> None:
        """twistd pycm --help lists every option of the contract."""
        output = _runTwistd(["--help"], memory=False).stdout.decode()
        for option in ("--listen", "--backend", "--state-dir", "--no-auth",
                       "--auth-token-file", "--docker-host", "--default-image"):
            self.assertIn(option, output)


class DaemonizedStartTests(SynchronousTestCase):
    """
    The README's quick start: C{twistd --pidfile P --logfile L pycm}, which
    daemonizes.  A start that fails exits non-zero within seconds, with its
    reason on stderr and no pidfile left; one that succeeds exits 0 once
    pycm is ready.
    """

    def setUp(self) -> None:
        self.home = tempfile.mkdtemp(prefix="pycm-e2e-")
        self.addCleanup(shutil.rmtree, self.home, ignore_errors=True)
        self.pidfile = os.path.join(self.home, "pycm.pid")
        self.stateDir = os.path.join(self.home, "state")

    def start(
        self, args: list[str], foreground: bool = False, pidfile: str | None = None,
        env: dict[str, str] | None = None,
    ) -> tuple[subprocess.CompletedProcess[bytes], float]:
        """Run twistd as the README does; its result and how long it took."""
        command = [
            *twistdCommand(), *(["-n"] if foreground else []),
            "--pidfile", pidfile or self.pidfile,
            "--logfile", os.path.join(self.home, "pycm.log"),
            "pycm", "--backend", "memory", "--state-dir", self.stateDir, "--no-auth", *args,
        ]
        started = time.monotonic()
        result = subprocess.run(
            command, cwd=self.home, capture_output=True, timeout=DEADLINE,
            stdin=subprocess.DEVNULL, env=dict(os.environ, **(env or {})),
            preexec_fn=defaultStopSignals,
        )
        return result, time.monotonic() - started

    def assertRefused(
        self, result: subprocess.CompletedProcess[bytes], took: float, *reasons: bytes
    ) -> None:
        self.assertNotEqual(result.returncode, 0, result)
        self.assertLess(took, REFUSAL_DEADLINE)
        for reason in reasons:
            self.assertIn(reason, result.stderr)
        self.assertNotIn(b"Traceback", result.stderr)
        # Text, never Twisted's bytes repr of the status (b'...').
        self.assertNotIn(b"An error has occurred: b'", result.stderr)
        self.assertFalse(os.path.exists(self.pidfile), "a stale pidfile was left")

    def daemonPid(self) -> int:
        """The pid twistd wrote; the daemon is stopped at cleanup."""
        with open(self.pidfile) as f:
            pid = int(f.read())
        self.addCleanup(_stopProcess, pid)
        return pid

    def test_portInUse(self) -> None:
        """A TCP port already taken: refused at once, the reason on stderr."""
        taken = socket.socket()
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        self.addCleanup(taken.close)
        port = taken.getsockname()[1]
        result, took = self.start(["--listen", f"tcp:{port}:interface=127.0.0.1"])
        self.assertRefused(result, took, b"cannot listen", b"Address already in use")
        # The reason, as text, last: nothing of twistd's waiting parent after
        # it (a warning may come before it when the tests run as root).
        lines = result.stderr.decode().splitlines()
        self.assertTrue(lines[-1].startswith("twistd pycm: cannot listen on tcp:"), lines)
        self.assertEqual(len([line for line in lines if "cannot listen" in line]), 1)

    def test_unixPathTooLong(self) -> None:
        """A UNIX socket path over 108 bytes: refused, naming the limit."""
        path = os.path.join(self.home, "d" * 60, "s" * 60 + ".sock")
        os.makedirs(os.path.dirname(path))
        self.assertGreater(len(os.fsencode(path)), 108)
        result, took = self.start(["--listen", f"unix:{path}"])
        self.assertRefused(result, took, b"cannot listen", b"107 at most")

    def test_foregroundWithLogFile(self) -> None:
        """
        In the foreground with a log file, the reason reaches the terminal's
        stderr too (twistd sends Python's stderr to the log file).
        """
        taken = socket.socket()
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        self.addCleanup(taken.close)
        port = taken.getsockname()[1]
        result, took = self.start(
            ["--listen", f"tcp:{port}:interface=127.0.0.1"], foreground=True
        )
        self.assertRefused(result, took, b"cannot listen", b"Address already in use")

    def test_stateDirUnusable(self) -> None:
        """A state directory that is a file: refused with the reason."""
        open(self.stateDir, "w").close()
        result, took = self.start(["--listen", "tcp:0:interface=127.0.0.1"])
        self.assertRefused(result, took, self.stateDir.encode())

    def test_refusedOptions(self) -> None:
        """Refused options: exit 1 before daemonizing, the reason on stderr."""
        for args, reason in (
            (["--listen", "tcp:0"], b"without TLS"),
            (["--backend", "nosuch"], b"unknown backend 'nosuch'"),
        ):
            result, took = self.start(args)
            self.assertRefused(result, took, reason)

    def test_backendFailsToOpen(self) -> None:
        """
        A backend whose open fails once the reactor runs (a third-party
        backend, installed through the entry point on PYTHONPATH): the
        waiting parent exits non-zero with the reason, daemonized or in the
        foreground, and no pidfile is left.
        """
        path = [_failingBackendPath(self.home), os.environ.get("PYTHONPATH", "")]
        env = {"PYTHONPATH": os.pathsep.join(filter(None, path))}
        for foreground in (False, True):
            result, took = self.start(
                ["--backend", "failing", "--listen", "tcp:0:interface=127.0.0.1"],
                foreground=foreground, env=env,
            )
            self.assertRefused(result, took, b"backend could not start", b"no engine here")

    def test_stoppedBeforeReady(self) -> None:
        """
        A daemon stopped (SIGTERM) while its backend is still opening: the
        waiting parent exits non-zero, never waits for ever.
        """
        path = [_failingBackendPath(self.home), os.environ.get("PYTHONPATH", "")]
        command = [
            *twistdCommand(), "--pidfile", self.pidfile,
            "--logfile", os.path.join(self.home, "pycm.log"),
            "pycm", "--backend", "slow", "--state-dir", self.stateDir,
            "--no-auth", "--listen", "tcp:0:interface=127.0.0.1",
        ]
        parent = subprocess.Popen(
            command, cwd=self.home, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, path))),
        )
        self.addCleanup(parent.wait)
        self.addCleanup(parent.kill)
        waitFor(lambda: os.path.exists(self.pidfile) and os.path.getsize(self.pidfile),
                "the daemon's pidfile")
        pid = self.daemonPid()
        waitFor(lambda: "starting on the" in _read(os.path.join(self.home, "pycm.log")),
                "the backend to start opening")
        self.assertIsNone(parent.poll(), "twistd returned before pycm was ready")
        os.kill(pid, signal.SIGTERM)
        _, stderr = parent.communicate(timeout=REFUSAL_DEADLINE)
        self.assertNotEqual(parent.returncode, 0)
        self.assertIn(b"was stopped before it was ready", stderr)
        waitFor(lambda: not _alive(pid), "the daemon to exit")
        self.assertFalse(os.path.exists(self.pidfile))

    def test_readyWhenExited(self) -> None:
        """
        A good start exits 0 once pycm listens: the UNIX socket answers at
        once, and the pidfile names the daemon.
        """
        path = os.path.join(self.home, "pycm.sock")
        result, took = self.start(["--listen", f"unix:{path}"])
        self.assertEqual(result.returncode, 0, result)
        pid = self.daemonPid()
        self.assertTrue(_alive(pid))
        sock = socket.socket(socket.AF_UNIX)
        self.addCleanup(sock.close)
        sock.settimeout(DEADLINE)
        sock.connect(path)
        sock.sendall(b"ping\n")
        self.assertEqual(sock.recv(100), b'OK "pong"\n')

    def askOK(self, path: str, request: bytes) -> socket.socket:
        """A connection to the UNIX socket C{path} that sent C{request} and got an OK."""
        sock = socket.socket(socket.AF_UNIX)
        self.addCleanup(sock.close)
        sock.settimeout(DEADLINE)
        sock.connect(path)
        sock.sendall(request)
        self.assertTrue(sock.recv(4096).startswith(b"OK "))
        return sock

    def test_interruptAndHangUpStopGracefully(self) -> None:
        """
        SIGINT and SIGHUP stop a daemonized pycm as SIGTERM does, not at
        once: a subscriber gets the running container's C{die} event before
        the end of its stream, the daemon logs its stop, and the pidfile
        goes.  (They killed it at once, leaving containers behind: twistd
        takes SIGINT over only from Python's default handler, SIGHUP never.)
        """
        for signum in (signal.SIGINT, signal.SIGHUP):
            path = os.path.join(self.home, f"pycm-{signum}.sock")
            result, _ = self.start(["--listen", f"unix:{path}"])
            self.assertEqual(result.returncode, 0, result)
            pid = self.daemonPid()
            self.askOK(path, b"run web memory sleep 1000\n")
            subscriber = self.askOK(path, b"events\n")
            os.kill(pid, signum)
            received = b""
            while chunk := subscriber.recv(65536):
                received += chunk
            self.assertIn(b'"action":"die"', received)
            waitFor(lambda pid=pid: not _alive(pid), "the daemon to exit")
            self.assertFalse(os.path.exists(self.pidfile))
            with open(os.path.join(self.home, "pycm.log")) as f:
                log = f.read()
            self.assertIn(f"{signal.Signals(signum).name}: pycm stops as on SIGTERM", log)
            shutil.rmtree(self.stateDir)

    def test_secondTermDuringTheStop(self) -> None:
        """
        A second SIGTERM while pycm stops (an impatient operator, a service
        manager and a shell both) is no error: the stop goes on, and the
        log has no traceback (the reactor's own handler logged a critical
        ReactorNotRunning).
        """
        path = os.path.join(self.home, "pycm-term.sock")
        result, _ = self.start(["--listen", f"unix:{path}"])
        self.assertEqual(result.returncode, 0, result)
        pid = self.daemonPid()
        for name in ("web1", "web2", "web3"):
            self.askOK(path, f"run {name} memory sleep 1000\n".encode())
        subscriber = self.askOK(path, b"events\n")
        os.kill(pid, signal.SIGTERM)
        received = b""
        # The second once the stop is under way: its first die event came.
        while b'"action":"die"' not in received:
            chunk = subscriber.recv(65536)
            self.assertTrue(chunk, received)
            received += chunk
        os.kill(pid, signal.SIGTERM)
        while chunk := subscriber.recv(65536):
            received += chunk
        self.assertEqual(received.count(b'"action":"die"'), 3)
        waitFor(lambda: not _alive(pid), "the daemon to exit")
        with open(os.path.join(self.home, "pycm.log")) as f:
            log = f.read()
        self.assertIn("Received SIGTERM, shutting down", log)
        self.assertNotIn("Traceback", log)
        self.assertNotIn("critical", log)

    def test_lockNamesTheDaemon(self) -> None:
        """
        The state directory's lock records the daemon's pid (not the one
        twistd had before it forked), and a second daemon on the same state
        directory is refused naming that live process.
        """
        result, _ = self.start(["--listen", "tcp:0:interface=127.0.0.1"])
        self.assertEqual(result.returncode, 0, result)
        pid = self.daemonPid()
        with open(os.path.join(self.stateDir, "lock")) as f:
            self.assertEqual(f.read().strip(), str(pid))
        second = os.path.join(self.home, "second.pid")
        result, took = self.start(["--listen", "tcp:0:interface=127.0.0.1"], pidfile=second)
        self.assertNotEqual(result.returncode, 0)
        self.assertLess(took, REFUSAL_DEADLINE)
        self.assertIn(f"another pycm daemon (pid {pid})".encode(), result.stderr)
        self.assertFalse(os.path.exists(second))
        self.assertTrue(_alive(pid))


_FAILING_BACKEND = """
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater

from pycm.backends.memory import makeBackend as makeMemoryBackend
from pycm.errors import BackendError


def makeBackend(reactor, stateDir, options):
    backend = makeMemoryBackend(reactor, stateDir, options)

    def fail():
        raise BackendError("no engine here")

    backend.open = lambda: deferLater(reactor, 0.05, fail)
    return backend


def makeSlowBackend(reactor, stateDir, options):
    backend = makeMemoryBackend(reactor, stateDir, options)
    backend.open = Deferred
    return backend
"""


def _failingBackendPath(home: str) -> str:
    """
    A directory holding third-party backends, registered through their
    entry point: C{failing}, whose open fails after the reactor has started,
    and C{slow}, whose open never ends.
    """
    where = os.path.join(home, "site")
    info = os.path.join(where, "pycm_failing-0.dist-info")
    os.makedirs(info)
    with open(os.path.join(where, "pycm_failing.py"), "w") as f:
        f.write(textwrap.dedent(_FAILING_BACKEND))
    with open(os.path.join(info, "METADATA"), "w") as f:
        f.write("Metadata-Version: 2.1\nName: pycm-failing\nVersion: 0\n")
    with open(os.path.join(info, "entry_points.txt"), "w") as f:
        f.write(
            "[pycm.backends]\nfailing = pycm_failing:makeBackend\n"
            "slow = pycm_failing:makeSlowBackend\n"
        )
    return where


def _read(path: str) -> str:
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def _stopProcess(pid: int) -> None:
    """SIGTERM a daemon that is not our child; wait until it is gone."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    waitFor(lambda: not _alive(pid), f"pid {pid} to exit")


def _alive(pid: int) -> bool:
    """Is C{pid} running (a zombie nobody reaped yet is not)?"""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def _eventsUntil(client: object, wanted: int) -> list[dict[str, object]] | None:
    events = [e for e in client.events if e.get("type") == "container"]  # type: ignore[attr-defined]
    if events and events[-1]["id"] >= wanted:
        return events
    client.ok("ping")  # type: ignore[attr-defined]
    return None


def _runTwistd(args: list[str], memory: bool = True) -> subprocess.CompletedProcess[bytes]:
    import tempfile

    home = tempfile.mkdtemp(prefix="pycm-e2e-")
    extra = ["--backend", "memory", "--state-dir", os.path.join(home, "s")] if memory else []
    if "--state-dir" in args:
        extra = ["--backend", "memory"]
    return subprocess.run(
        [*twistdCommand(), "-n", "--pidfile=", "--logfile", "-", "pycm", *extra, *args],
        cwd=home, capture_output=True, timeout=DEADLINE, stdin=subprocess.DEVNULL,
    )
