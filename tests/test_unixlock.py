"""
The lock Twisted keeps beside a C{unix:} socket, naming a holder that is
gone (L{pycm.daemon.unixlock.breakDeadHolders}): a daemon killed and not
yet reaped, or a pid recycled, no longer keeps the next daemon from
listening.
"""

from __future__ import annotations

import os
import subprocess
import time

from twisted.trial.unittest import SynchronousTestCase, TestCase

from pycm.daemon.unixlock import breakDeadHolders

from .e2e import RealDaemon

TICKS = os.sysconf("SC_CLK_TCK")


class FakeProc:
    """A C{/proc} of a few processes, each with its state and start time."""

    def __init__(self, path: str, boot: float) -> None:
        self.path = path
        os.makedirs(path)
        with open(os.path.join(path, "stat"), "w") as f:
            f.write(f"cpu  1 2 3\nbtime {int(boot)}\nprocesses 9\n")
        self.boot = int(boot)

    def add(self, pid: int, state: str, started: float) -> None:
        os.makedirs(os.path.join(self.path, str(pid)))
        ticks = int((started - self.boot) * TICKS)
        fields = [state, *["0"] * 18, str(ticks), "0"]
        with open(os.path.join(self.path, str(pid), "stat"), "w") as f:
            f.write(f"{pid} (twistd) {' '.join(fields)}\n")


class BreakDeadHoldersTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.dir = self.mktemp()
        os.makedirs(self.dir)
        self.lock = os.path.join(self.dir, "pycm.sock.lock")
        now = time.time()
        self.proc = FakeProc(os.path.join(self.dir, "proc"), now - 1000)
        self.made = now - 100
        os.symlink("4242", self.lock)
        os.utime(self.lock, (self.made, self.made), follow_symlinks=False)

    def test_zombie(self) -> None:
        """A holder that exited (a zombie, not reaped yet) holds nothing."""
        self.proc.add(4242, "Z", self.made - 10)
        breakDeadHolders(self.lock, self.proc.path)
        self.assertFalse(os.path.lexists(self.lock))

    def test_recycled(self) -> None:
        """A live process that started after the link was made is not its maker."""
        self.proc.add(4242, "S", self.made + 50)
        breakDeadHolders(self.lock, self.proc.path)
        self.assertFalse(os.path.lexists(self.lock))

    def test_liveHolderKept(self) -> None:
        """A live process older than the link may hold it: left for the listen to say."""
        self.proc.add(4242, "S", self.made - 10)
        breakDeadHolders(self.lock, self.proc.path)
        self.assertEqual(os.readlink(self.lock), "4242")

    def test_noSuchProcess(self) -> None:
        """No process at all: Twisted breaks that one itself; nothing is done here."""
        breakDeadHolders(self.lock, self.proc.path)
        self.assertEqual(os.readlink(self.lock), "4242")

    def test_noLockOrOurs(self) -> None:
        """No lock, or one naming this process: nothing to do."""
        breakDeadHolders(None, self.proc.path)
        breakDeadHolders(os.path.join(self.dir, "none.lock"), self.proc.path)
        os.remove(self.lock)
        os.symlink(str(os.getpid()), self.lock)
        breakDeadHolders(self.lock, "/proc")
        self.assertEqual(os.readlink(self.lock), str(os.getpid()))


class ZombieHolderE2ETests(TestCase):
    """A real daemon, and a real zombie named by the socket's lock."""

    def test_listensPastAZombie(self) -> None:
        """
        The lock names a process that exited and was not reaped, as a
        daemon killed with C{kill -9} is until its parent waits for it: the
        next daemon listens all the same.
        """
        daemon = RealDaemon(self)
        exited = subprocess.Popen(["true"])  # Not waited for: a zombie.
        self.addCleanup(exited.wait)
        # Until it has exited, but leaving it unreaped.
        os.waitid(os.P_PID, exited.pid, os.WEXITED | os.WNOWAIT)
        os.symlink(str(exited.pid), daemon.socketPath + ".lock")
        daemon.start()
        self.assertEqual(daemon.connect(unix=True).ok("ping"), "pong")
        self.assertIn("a process that exited", daemon.log())
