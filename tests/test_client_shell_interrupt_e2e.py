"""
End-to-end tests of Ctrl-C in the interactive shell: the real C{pycm} on a
pseudo-terminal against the real daemon (memory backend, a free loopback
port and a UNIX socket, a token required), with real time: a C{wait} in
flight is given up and the prompt is back.

Skipped where the daemon's plugin is not available.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from twisted.trial.unittest import TestCase

from tests.e2e import Terminal, waitFor
from tests.test_client_e2e import TIMEOUT, Daemon, shortTempDir


class ShellInterruptE2ETests(TestCase):
    """Ctrl-C with a request in flight, in the shell on a pseudo-terminal."""

    def setUp(self) -> None:
        base = os.path.abspath(self.mktemp())
        # The default state directory of a user whose XDG_STATE_HOME is base.
        state = os.path.join(base, "pycm")
        os.makedirs(state)
        self.daemon = Daemon(state, auth=True, socketDir=shortTempDir(self))
        self.addCleanup(self.daemon.stop)
        with open(os.path.join(state, "token")) as f:
            token = f.read().strip()
        self.env = dict(os.environ, HOME=base, XDG_STATE_HOME=os.path.join(base, "other"),
                        TERM="xterm", PYCM_TOKEN=token, PYCM_HISTORY="")

    def pycm(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pycm.client.cli", "--host", self.daemon.endpoint, *args],
            capture_output=True, text=True, timeout=TIMEOUT, env=self.env,
            stdin=subprocess.DEVNULL)

    def connections(self) -> int:
        """How many connections the daemon has (this one asking included)."""
        return int(json.loads(self.pycm("--json", "info").stdout)["connections"])

    def interruptWait(self, endpoint: str) -> Terminal:
        """
        The shell on C{endpoint}, a C{wait} in flight on a running
        container, a line typed behind it, then Ctrl-C: what it says, and
        the prompt back with C{ping} answered (over an authenticated new
        connection: C{ps} needs the token).
        """
        self.assertEqual(self.pycm("run", "slow", "host", "sleep", "600").returncode, 0)
        terminal = Terminal(self, [sys.executable, "-m", "pycm.client.cli",
                                   "--host", endpoint], self.env)
        terminal.readUntil(b"pycm> ")
        terminal.mark()
        terminal.type(b"wait slow\r")
        terminal.readUntil("waiting for slow\N{HORIZONTAL ELLIPSIS}".encode())
        terminal.type(b"rm -f slow\r")
        terminal.mark()
        terminal.type(b"\x03")
        terminal.readUntil(b"Interrupted before the reply (a wait changes nothing): "
                           b"wait slow")
        terminal.readUntil(b"Not sent: the 1 line typed while waiting")
        terminal.readUntil(b"pycm> ")
        terminal.mark()
        terminal.type(b"ping\r")
        terminal.readUntil(b"pong\r\n")
        terminal.readUntil(b"pycm> ")
        terminal.mark()
        terminal.type(b"ps\r")
        terminal.readUntil(b"slow")
        terminal.readUntil(b"pycm> ")
        return terminal

    def test_waitInterrupted(self) -> None:
        """
        Over TCP, Ctrl-C during C{wait NAME} resets the connection: the
        daemon lets it (and its wait) go, and the shell goes on over a new
        one; the line typed behind the wait was not sent (the container
        is still there).
        """
        terminal = self.interruptWait(self.daemon.endpoint)
        # The shell's new connection and this one asking: the old is gone.
        waitFor(lambda: self.connections() == 2,
                "the daemon to give the interrupted wait up")
        self.assertIn("slow", self.pycm("ps").stdout)
        terminal.type(b"exit\r")
        self.assertEqual(terminal.process.wait(TIMEOUT), 0)
        self.assertEqual(terminal.settings(), terminal.settingsBefore)

    def test_waitInterruptedOverUNIXSocket(self) -> None:
        """
        Over a UNIX socket there is no reset, but the daemon sees the old
        connection closed while its wait is in flight (within half a
        second) and lets it go; the shell is back all the same.
        """
        assert self.daemon.unixEndpoint is not None
        terminal = self.interruptWait(self.daemon.unixEndpoint)
        waitFor(lambda: self.connections() == 2,
                "the daemon to give the interrupted wait up")
        terminal.type(b"\x04")
        self.assertEqual(terminal.process.wait(TIMEOUT), 0)
