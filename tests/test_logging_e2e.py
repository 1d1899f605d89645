"""
End-to-end tests of the daemon's log file: the real C{twistd pycm}, real
sockets, the memory backend.  The log file is private whatever the umask,
daemonized or not; thrown-away input and refusals leave a line in it; and
no token or option value reaches it, even at C{--log-level debug}.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import stat
import subprocess
import tempfile

from twisted.trial.unittest import SynchronousTestCase

from .e2e import DEADLINE, RealDaemon, twistdCommand, waitFor

WRONG = "wr0ng-t0ken-tried"


def _alive(pid: int) -> bool:
    """Is C{pid} running (not gone, not a zombie nobody has reaped yet)?"""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


class LogFileModeE2ETests(SynchronousTestCase):
    def test_foregroundUnderUmask022(self) -> None:
        """C{twistd -n --logfile} under umask 022 creates the log file 0600."""
        daemon = RealDaemon(self, umask=0o022).start()
        self.assertEqual(stat.S_IMODE(os.stat(daemon.logPath).st_mode), 0o600)

    def test_daemonizedUnderUmask022(self) -> None:
        """
        Daemonized twistd opens its log file before it forks, under the
        caller's umask: under 022 it is still created 0600.
        """
        home = tempfile.mkdtemp(prefix="pycm-e2e-")
        self.addCleanup(shutil.rmtree, home, ignore_errors=True)
        pidPath = os.path.join(home, "pycm.pid")
        logPath = os.path.join(home, "pycm.log")
        parent = subprocess.run(
            [*twistdCommand(), "--pidfile", pidPath, "--logfile", logPath,
             "pycm", "--backend", "memory", "--state-dir", os.path.join(home, "state"),
             "--listen", "tcp:0:interface=127.0.0.1"],
            cwd=home, umask=0o022, stdin=subprocess.DEVNULL, capture_output=True,
            timeout=DEADLINE,
        )
        self.assertEqual(parent.returncode, 0, parent.stderr)
        pid = int(waitFor(lambda: (_read(pidPath) or "").strip().isdigit() and _read(pidPath),
                          "the pid file"))
        self.addCleanup(_stop, pid)

        def ready() -> bool:
            return "pycm is ready" in (_read(logPath) or "")

        waitFor(ready, "the daemon to be ready")
        self.assertEqual(stat.S_IMODE(os.stat(logPath).st_mode), 0o600)


class LogContentE2ETests(SynchronousTestCase):
    def test_thrownAwayInputLogged(self) -> None:
        """
        A client that sends no line end, one refused for want of a token and
        a wrong token each leave a line at info, with the peer; never the
        bytes sent or the token tried.
        """
        daemon = RealDaemon(self, auth=True).start()
        silent = daemon.connect()
        silent.send("run web")
        silent.close()
        halfClosed = daemon.connect()
        halfClosed.send("ping\nrun db-x")
        halfClosed.sock.shutdown(socket.SHUT_WR)
        self.assertEqual(halfClosed.reply(), ("OK", "pong"))
        waitFor(halfClosed.isClosed, "the daemon to close the half-closed connection")
        refused = daemon.connect()
        self.assertEqual(refused.err("list"), "unauthorized")
        self.assertEqual(refused.err(f"auth {WRONG}"), "unauthorized")
        waitFor(lambda: "wrong token" in daemon.log(), "the failed auth in the log")
        waitFor(lambda: "unfinished line" in daemon.log(), "the thrown-away line in the log")
        log = daemon.log()
        self.assertIn("; 7 bytes of an unfinished line (no line end) discarded", log)
        self.assertIn("; 8 bytes of an unfinished line (no line end) discarded", log)
        self.assertIn("'list' refused: not authenticated", log)
        self.assertIn("wrong token (failed auth attempt 1 of 3)", log)
        self.assertNotIn(WRONG, log)
        self.assertNotIn("run web", log)
        self.assertNotIn("db-x", log)

    def test_debugLogRedacted(self) -> None:
        """
        At C{--log-level debug} the log shows each request's command, option
        names and container, and never the token, a wrong token or an
        option's value.
        """
        daemon = RealDaemon(self, auth=True, args=["--log-level", "debug"]).start()
        with open(os.path.join(daemon.stateDir, "token")) as tokenFile:
            token = tokenFile.read().strip()
        client = daemon.connect()
        self.assertEqual(client.ok(f"auth {token}"), "authenticated")
        client.ok("run -e PASSWORD=hunter2 db host sleep 1000")
        self.assertEqual(client.err("run --cpus=hunter2 db2"), "bad_request")
        other = daemon.connect()
        self.assertEqual(other.err(f"auth {WRONG}"), "unauthorized")
        other.send(f"{token}\n")
        self.assertEqual(other.reply()[1][0], "bad_request")
        daemon.stop()
        log = daemon.log()
        self.assertIn("request: auth <redacted>", log)
        self.assertIn("request: run --env=<redacted> db host <redacted> <redacted>", log)
        self.assertIn("request: <unknown command,", log)
        for secret in (token, "hunter2", WRONG, "PASSWORD"):
            self.assertNotIn(secret, log)


class LogPeerAndOutcomeE2ETests(SynchronousTestCase):
    def test_unixPeerNamed(self) -> None:
        """
        A connection on the UNIX socket is logged with the socket's path,
        its descriptor and the pid and uid of the process that connected.
        """
        daemon = RealDaemon(self).start()
        self.assertEqual(daemon.connect(unix=True).ok("ping"), "pong")
        named = f"connection from unix:{daemon.socketPath}#"
        waitFor(lambda: named in daemon.log(), "the UNIX connection in the log")
        [line] = [line for line in daemon.log().splitlines() if named in line]
        self.assertIn(f" pid={os.getpid()} uid={os.getuid()} on unix:", line)

    def test_failedStartShowsNoContainerSecret(self) -> None:
        """
        C{start} of a container whose stored command cannot run: the
        client gets the engine's message, the log only C{backend}, never
        the command, its arguments or the environment.
        """
        daemon = RealDaemon(self, backend="process").start()
        client = daemon.connect()
        client.ok("create -e PASSWORD=hunter9 web host /nonexistent-SECRETCMD --token=SECRETARG")
        kind, (code, message) = client.request("start web")
        self.assertEqual((kind, code), ("ERR", "backend"))
        self.assertIn("SECRETCMD", message)
        client.ok("rm -f web")
        daemon.stop()
        log = daemon.log()
        self.assertIn(": start web: backend\n", log)
        for secret in ("SECRETCMD", "SECRETARG", "hunter9", "PASSWORD"):
            self.assertNotIn(secret, log)


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return None


def _stop(pid: int) -> None:
    """SIGTERM the daemonized twistd and wait until it is gone."""
    if _alive(pid):
        os.kill(pid, signal.SIGTERM)
        try:
            waitFor(lambda: not _alive(pid), "the daemon to exit")
        except AssertionError:
            os.kill(pid, signal.SIGKILL)
