"""
End-to-end tests of the daemon: the real C{twistd pycm}, real sockets, the
memory backend.  They catch what unit tests cannot: packaging, plugin
discovery, listeners, the token file, start-up refusals.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess

from twisted.trial.unittest import SynchronousTestCase

from .e2e import DEADLINE, RealDaemon, twistdCommand, waitFor


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
        """A TCP listener on every address without TLS is refused at start-up."""
        result = _runTwistd(["--listen", "tcp:0"])
        self.assertNotEqual(result.returncode, 0)
        self.assertIn(b"without TLS", result.stdout + result.stderr)

    def test_unknownBackend(self) -> None:
        """An unknown backend name is refused, naming the available ones."""
        result = _runTwistd(["--backend", "nosuch"])
        self.assertNotEqual(result.returncode, 0)
        output = result.stdout + result.stderr
        self.assertIn(b"memory", output)
        self.assertIn(b"process", output)

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
