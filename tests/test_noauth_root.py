"""
C{--no-auth} on a daemon run as root (L{pycm.daemon.startup.rootWithoutToken}):
every local user who can connect to a tokenless network listener runs
commands as root, so the daemon says so at start, in its log and on stderr.
"""

from __future__ import annotations

import os
import socket

from twisted.trial.unittest import SynchronousTestCase

from pycm.daemon.listeners import Listener, classifyListener
from pycm.daemon.startup import rootWithoutToken

from .e2e import RealDaemon

WARNING = "every local user who can connect can run commands as root"


class RootWithoutTokenTests(SynchronousTestCase):
    """Which listeners of which daemon are worth the warning."""

    def test_rootTcpWithoutToken(self) -> None:
        """As root, a loopback TCP listener under C{--no-auth} is named in the warning."""
        tcp = classifyListener("tcp:8080:interface=127.0.0.1", noAuth=True)
        warning = rootWithoutToken([tcp], euid=0)
        assert warning is not None
        self.assertIn(WARNING, warning)
        self.assertIn("tcp:8080:interface=127.0.0.1", warning)

    def test_nothingToWarnOf(self) -> None:
        """
        No warning for another user's daemon, for a listener that wants the
        token, nor for UNIX sockets (pycm's or systemd's) and stdio.
        """
        tcp = classifyListener("tcp:8080:interface=127.0.0.1", noAuth=True)
        self.assertIsNone(rootWithoutToken([tcp], euid=1000))
        withToken = classifyListener("tcp:8080:interface=127.0.0.1", noAuth=False)
        unix = classifyListener("unix:/run/pycm.sock", noAuth=True)
        stdio = classifyListener("stdio:", noAuth=True)
        passedUnix = Listener("systemd:domain=UNIX:index=0", "systemd", loopback=True,
                              requireAuth=False, fileno=3, family=socket.AF_UNIX)
        self.assertIsNone(rootWithoutToken([withToken, unix, stdio, passedUnix], euid=0))


class RootWithoutTokenE2ETests(SynchronousTestCase):
    """The real C{twistd -n pycm --no-auth} run as root."""

    def test_warnedInLogAndOnStderr(self) -> None:
        """
        The warning is in the log (at warn level) and on twistd's stderr.
        (Needs root, as the finding does; skipped otherwise.)
        """
        if os.geteuid() != 0:
            raise self.skipTest("the warning is for a daemon run as root")
        daemon = RealDaemon(self, auth=False).start()
        self.assertIn("#warn] --no-auth on tcp:0:interface=127.0.0.1 while pycm runs as "
                      f"root: {WARNING}", daemon.log())
        daemon.stop()
        assert daemon.process is not None and daemon.process.stdout is not None
        self.assertIn("twistd pycm: warning: --no-auth on tcp:0:interface=127.0.0.1",
                      daemon.process.stdout.read().decode())
