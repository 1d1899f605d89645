"""
The lock Twisted keeps beside a C{unix:} socket when the daemon it names
has exited but is not reaped yet (L{pycm.daemon.unixlock.takeOverFromZombie}):
a daemon killed with C{kill -9} leaves its lock and its socket file, and its
pid stays a zombie until its parent waits for it.  Real zombies, sockets
and daemons.
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

from pycm.daemon.unixlock import processState, removeDeadSocket, takeOverFromZombie

from .e2e import RealDaemon


def zombie(testCase: SynchronousTestCase) -> int:
    """A child that has exited and is not reaped (until the test's cleanup): its pid."""
    child = subprocess.Popen(["true"])
    testCase.addCleanup(child.wait)
    os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)
    return child.pid


def leftSocket(path: str) -> None:
    """A socket file at C{path} that nothing listens on, as a killed daemon leaves."""
    with socket.socket(socket.AF_UNIX) as dead:
        dead.bind(path)
        dead.listen(1)


class TakeOverTests(SynchronousTestCase):
    def setUp(self) -> None:
        # Under /tmp, not the clone: a socket's path must stay under 108 bytes.
        directory = tempfile.mkdtemp(prefix="pycm-zlock-", dir="/tmp")
        self.addCleanup(shutil.rmtree, directory, True)
        self.path = os.path.join(directory, "s")
        self.lock = self.path + ".lock"

    def test_zombieState(self) -> None:
        """A child that exited and is not reaped reads as C{Z}; this process does not."""
        self.assertEqual(processState(zombie(self)), "Z")
        self.assertNotIn(processState(os.getpid()), ("Z", "X", None))

    def test_zombieHolderAndItsSocketGo(self) -> None:
        """The lock names a zombie and nothing listens on the socket: both go."""
        leftSocket(self.path)
        os.symlink(str(zombie(self)), self.lock)
        takeOverFromZombie(self.lock)
        self.assertFalse(os.path.lexists(self.lock))
        self.assertFalse(os.path.lexists(self.path))

    def test_liveListenerKept(self) -> None:
        """
        The lock names a zombie but something listens on the path (a
        daemon without a lock file): the lock goes, the socket stays, for
        the bind to refuse.
        """
        live = socket.socket(socket.AF_UNIX)
        self.addCleanup(live.close)
        live.bind(self.path)
        live.listen(1)
        os.symlink(str(zombie(self)), self.lock)
        takeOverFromZombie(self.lock)
        self.assertFalse(os.path.lexists(self.lock))
        self.assertTrue(stat.S_ISSOCK(os.lstat(self.path).st_mode))

    def test_liveHolderKept(self) -> None:
        """A lock naming a live process (another daemon) is left, and its socket."""
        leftSocket(self.path)
        os.symlink(str(os.getppid()), self.lock)
        takeOverFromZombie(self.lock)
        self.assertEqual(os.readlink(self.lock), str(os.getppid()))
        self.assertTrue(os.path.lexists(self.path))

    def test_notASocketKept(self) -> None:
        """A file that is not a socket is never removed (the bind will say so)."""
        with open(self.path, "w") as f:
            f.write("data")
        self.assertFalse(removeDeadSocket(self.path))
        self.assertTrue(os.path.exists(self.path))

    def test_nothingToDo(self) -> None:
        """No lock, no lock file, a lock naming this process or no pid: nothing changes."""
        takeOverFromZombie(None)
        takeOverFromZombie(self.lock)
        for name in (str(os.getpid()), "not-a-pid"):
            os.symlink(name, self.lock)
            takeOverFromZombie(self.lock)
            self.assertEqual(os.readlink(self.lock), name)
            os.remove(self.lock)


class KilledDaemonTests(SynchronousTestCase):
    """A real daemon killed with C{kill -9} and left unreaped, then started again."""

    def test_startsAgainBeforeTheDeadOneIsReaped(self) -> None:
        """
        The next daemon on the same C{unix:} socket listens at once, as a
        supervisor that starts it before reaping the dead one would have
        it; before, it failed (C{Cannot acquire lock}) until the zombie was
        reaped.
        """
        daemon = RealDaemon(self).start()
        dead = daemon.process
        assert dead is not None
        self.addCleanup(dead.wait)
        dead.send_signal(signal.SIGKILL)
        os.waitid(os.P_PID, dead.pid, os.WEXITED | os.WNOWAIT)
        self.assertEqual(os.readlink(daemon.socketPath + ".lock"), str(dead.pid))
        daemon.start()
        self.assertEqual(daemon.connect(unix=True).ok("ping"), "pong")
        self.assertEqual(os.readlink(daemon.socketPath + ".lock"), str(daemon.pid))
        self.assertIn(f"the daemon it names ({dead.pid}) has exited", daemon.log())
