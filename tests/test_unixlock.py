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
import subprocess
import tempfile

from twisted.internet.error import CannotListenError
from twisted.internet.protocol import Factory
from twisted.trial.unittest import SynchronousTestCase, TestCase

from pycm.daemon.listeners import ListenerService, classifyListener
from pycm.daemon.unixlock import NO_SUCH_PID, answers, isZombie, takeOverFromZombie

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


class TakeOverTests(TestCase):
    """On the real reactor: a listener is stopped at the end of its test."""

    def setUp(self) -> None:
        # Under /tmp, not the clone: a socket's path must stay under 108 bytes.
        directory = tempfile.mkdtemp(prefix="pycm-zlock-", dir="/tmp")
        self.addCleanup(shutil.rmtree, directory, True)
        self.path = os.path.join(directory, "s")
        self.lock = self.path + ".lock"

    def listen(self) -> ListenerService:
        """Listen on C{self.path} on the real reactor, as the daemon does (its lock too)."""
        from twisted.internet import reactor

        service = ListenerService(reactor, classifyListener(f"unix:{self.path}", False),
                                  Factory(), None)
        service.privilegedStartService()
        self.addCleanup(service.stopService)
        return service

    def test_zombie(self) -> None:
        """A child that exited and is not reaped is a zombie; this process is not."""
        self.assertTrue(isZombie(zombie(self)))
        self.assertFalse(isZombie(os.getpid()))
        self.assertFalse(isZombie(NO_SUCH_PID))

    def test_zombieHolderTakenOver(self) -> None:
        """
        The lock names a zombie and nothing answers on the socket: the
        listen takes both over (Twisted breaks the lock as a dead
        daemon's and removes its socket file).
        """
        leftSocket(self.path)
        os.symlink(str(zombie(self)), self.lock)
        self.listen()
        self.assertEqual(os.readlink(self.lock), str(os.getpid()))
        self.assertTrue(answers(self.path))
        self.assertFalse([name for name in os.listdir(os.path.dirname(self.path))
                          if name.endswith(".stale")])

    def test_zombieHolderThroughALink(self) -> None:
        """The socket path is a link to the dead daemon's socket: taken over too."""
        leftSocket(self.path + "-real")
        os.symlink(self.path + "-real", self.path)
        os.symlink(str(zombie(self)), self.lock)
        self.listen()
        self.assertTrue(answers(self.path))

    def test_lockNamesNoSuchPid(self) -> None:
        """What Twisted is handed: a lock naming a pid no process can have."""
        os.symlink(str(zombie(self)), self.lock)
        takeOverFromZombie(self.lock)
        self.assertEqual(os.readlink(self.lock), str(NO_SUCH_PID))
        self.assertRaises(ProcessLookupError, os.kill, NO_SUCH_PID, 0)

    def test_liveListenerKept(self) -> None:
        """
        The lock names a zombie but something answers on the path (a
        daemon without a lock file): nothing is taken over, and the
        listen fails as before, its socket kept.
        """
        live = socket.socket(socket.AF_UNIX)
        self.addCleanup(live.close)
        live.bind(self.path)
        live.listen(1)
        holder = str(zombie(self))
        os.symlink(holder, self.lock)
        self.assertRaises(CannotListenError, self.listen)
        self.assertEqual(os.readlink(self.lock), holder)
        self.assertTrue(answers(self.path))

    def test_takenMeanwhile(self) -> None:
        """
        Another daemon took the lock over between the look at its holder
        and the rename: its lock is left as it is.
        """
        from pycm.daemon import unixlock

        def anotherTakesIt(path: str) -> bool:
            os.remove(self.lock)
            os.symlink(str(os.getppid()), self.lock)
            return False

        os.symlink(str(zombie(self)), self.lock)
        self.patch(unixlock, "answers", anotherTakesIt)
        takeOverFromZombie(self.lock)
        self.assertEqual(os.readlink(self.lock), str(os.getppid()))
        self.assertEqual(sorted(os.listdir(os.path.dirname(self.lock))), ["s.lock"])

    def test_liveHolderKept(self) -> None:
        """A lock naming a live process (another daemon) is left, and its socket."""
        leftSocket(self.path)
        os.symlink(str(os.getppid()), self.lock)
        takeOverFromZombie(self.lock)
        self.assertEqual(os.readlink(self.lock), str(os.getppid()))
        self.assertTrue(os.path.lexists(self.path))

    def test_notALockFile(self) -> None:
        """
        A lock that is a regular file, or a link naming no pid: the listen
        is refused saying what is there and what to do, the file left.
        """
        with open(self.lock, "w") as f:
            f.write("123")
        error = self.assertRaises(CannotListenError, self.listen)
        self.assertEqual(str(error.socketError),
                         f"{self.lock} is not the lock Twisted keeps beside the socket (a link "
                         f"naming the pid of the daemon listening there): if no daemon listens "
                         f"on {self.path}, remove {self.lock}")
        os.remove(self.lock)
        os.symlink("abc", self.lock)
        error = self.assertRaises(CannotListenError, self.listen)
        self.assertEqual(str(error.socketError), f"{self.lock} names 'abc', not a pid: if no "
                         f"daemon listens on {self.path}, remove {self.lock}")
        self.assertEqual(os.readlink(self.lock), "abc")

    def test_notAPid(self) -> None:
        """Digits that are no pid (0, others' digits, past any pid) are refused so too."""
        for text in ("0", "\u00b2", "99999999999999999999"):
            os.symlink(text, self.lock)
            error = self.assertRaises(CannotListenError, self.listen)
            self.assertIn(f"names {text!r}, not a pid", str(error.socketError))
            os.remove(self.lock)

    def test_heldByALiveProcess(self) -> None:
        """A lock naming a running process: the refusal names it, and the way out."""
        os.symlink(str(os.getppid()), self.lock)
        error = self.assertRaises(CannotListenError, self.listen)
        self.assertEqual(str(error.socketError),
                         f"{self.lock} names pid {os.getppid()}, a running process: another "
                         f"daemon listens on {self.path}? If none does, remove {self.lock}")

    def test_nothingToDo(self) -> None:
        """No lock, no lock file, a lock naming this process or no pid: nothing changes."""
        takeOverFromZombie(None)
        takeOverFromZombie(self.lock)
        self.assertFalse(os.path.lexists(self.lock))
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
        self.assertIn(f"names {dead.pid}, a daemon that exited and is not reaped yet",
                      daemon.log())
