"""
Tests for L{pycm.statedir} and the state files opened through it: a state
directory others could write to, or a link planted in it, never makes the
daemon write to a file outside it.
"""

from __future__ import annotations

import errno
import os
import signal
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from pycm.backends.process.logfiles import FileLogStore
from pycm.daemon.auth import loadOrCreateToken
from pycm.daemon.eventlog import EventIdMark
from pycm.errors import BackendError
from pycm.model import LogLine
from pycm.statedir import (
    NotRegularFile,
    UnsafeStateDir,
    checkAncestors,
    checkStateDir,
    makePrivateDir,
    openNoFollow,
)
from pycm.statelock import StateDirLock
from pycm.store import SQLiteStore

VICTIM = b"precious content\n"


class _PlantedTestCase(SynchronousTestCase):
    """A private state directory, and a victim file outside it."""

    def setUp(self) -> None:
        self.home = os.path.abspath(self.mktemp())
        os.makedirs(self.home)
        self.state = os.path.join(self.home, "state")
        os.mkdir(self.state, 0o700)
        self.victim = os.path.join(self.home, "victim")
        with open(self.victim, "wb") as f:
            f.write(VICTIM)
        os.chmod(self.victim, 0o600)

    def plant(self, name: str, target: str | None = None) -> str:
        """A symbolic link C{STATE/name} to the victim (or C{target})."""
        path = os.path.join(self.state, name)
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        os.symlink(target or self.victim, path)
        return path

    def assertVictimUntouched(self) -> None:
        with open(self.victim, "rb") as f:
            self.assertEqual(f.read(), VICTIM)


class CheckStateDirTests(_PlantedTestCase):
    """L{checkStateDir} at start: private or refused, with the fix named."""

    def test_createdPrivate(self) -> None:
        """
        A missing state directory is created 0700, and its missing parents
        0755 (nobody else may replace it), whatever the umask.
        """
        path = os.path.join(self.home, "a", "b", "new")
        old = os.umask(0)
        try:
            self.assertEqual(checkStateDir(path), [])
        finally:
            os.umask(old)
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o700)
        for parent in (os.path.dirname(path), os.path.dirname(os.path.dirname(path))):
            self.assertEqual(stat.S_IMODE(os.stat(parent).st_mode), 0o755)

    def test_readableMadePrivate(self) -> None:
        """A state directory (or subdirectory) others may read is made 0700."""
        os.chmod(self.state, 0o755)
        os.mkdir(os.path.join(self.state, "logs"), 0o750)
        self.assertEqual(len(checkStateDir(self.state)), 2)
        self.assertEqual(stat.S_IMODE(os.stat(self.state).st_mode), 0o700)
        self.assertEqual(stat.S_IMODE(os.stat(os.path.join(self.state, "logs")).st_mode), 0o700)
        self.assertEqual(checkStateDir(self.state), [])

    def test_writableRefused(self) -> None:
        """
        A state directory, or a directory under it, that group or others
        may write is refused (not quietly fixed: links may already be
        planted), and the message says what to run.
        """
        for mode in (0o777, 0o770, 0o1777):
            os.chmod(self.state, mode)
            error = self.assertRaises(UnsafeStateDir, checkStateDir, self.state)
            self.assertIn(f"chmod 700 {self.state}", str(error))
            self.assertEqual(stat.S_IMODE(os.stat(self.state).st_mode), mode)
        os.chmod(self.state, 0o700)
        logs = os.path.join(self.state, "logs")
        os.mkdir(logs)
        os.chmod(logs, 0o757)
        error = self.assertRaises(UnsafeStateDir, checkStateDir, self.state)
        self.assertIn(f"chmod 700 {logs}", str(error))

    def test_otherOwnerRefused(self) -> None:
        """A state directory or file that another user owns is refused."""
        if os.geteuid() != 0:
            raise self.skipTest("only root can give a file to another user")
        os.chown(self.state, 65534, 65534)
        error = self.assertRaises(UnsafeStateDir, checkStateDir, self.state)
        self.assertIn("belongs to uid 65534", str(error))
        self.assertIn(f"chown -R 0:{os.getegid()} {self.state}", str(error))
        os.chown(self.state, 0, 0)
        lock = os.path.join(self.state, "lock")
        open(lock, "w").close()
        os.chown(lock, 65534, 65534)
        error = self.assertRaises(UnsafeStateDir, checkStateDir, self.state)
        self.assertIn(lock, str(error))

    def test_linksRefused(self) -> None:
        """
        A symbolic link anywhere in the state directory (a file's name, a
        rotated log's, a subdirectory) is refused, naming it and how to fix.
        """
        for name in ("logs", "lock", "token", "events.db", "state.db", "state.db-wal",
                     "logs/web.log", "logs/web.log.1"):
            with self.subTest(name=name):
                target = self.home if name == "logs" else None
                path = self.plant(name, target)
                error = self.assertRaises(UnsafeStateDir, checkStateDir, self.state)
                self.assertIn(f"rm {path}", str(error))
                os.unlink(path)
        self.assertVictimUntouched()

    def test_hardLinkRefused(self) -> None:
        """A file with a second name (a planted hard link) is refused."""
        os.link(self.victim, os.path.join(self.state, "lock"))
        error = self.assertRaises(UnsafeStateDir, checkStateDir, self.state)
        self.assertIn("hard link", str(error))

    def test_stateDirThroughLink(self) -> None:
        """The state directory itself may be reached through a link."""
        link = os.path.join(self.home, "link")
        os.symlink(self.state, link)
        self.assertEqual(checkStateDir(link), [])

    def test_makePrivateDir(self) -> None:
        """A subdirectory is created 0700; a link in its place is refused."""
        logs = os.path.join(self.state, "logs")
        makePrivateDir(logs)
        self.assertEqual(stat.S_IMODE(os.stat(logs).st_mode), 0o700)
        makePrivateDir(logs)
        os.rmdir(logs)
        self.plant("logs", self.home)
        self.assertRaises(UnsafeStateDir, makePrivateDir, logs)


class NoFollowTests(_PlantedTestCase):
    """
    Links planted after the start-up check (or by someone who could write
    the directory before) are never followed by the files pycm opens.
    """

    def test_openNoFollow(self) -> None:
        """L{openNoFollow} refuses a link, naming it; the victim is untouched."""
        path = self.plant("lock")
        error = self.assertRaises(
            UnsafeStateDir, openNoFollow, path, os.O_RDWR | os.O_CREAT | os.O_TRUNC
        )
        self.assertIn(f"rm {path}", str(error))
        self.assertVictimUntouched()

    def test_openNoFollowUnchecked(self) -> None:
        """
        Without C{checkOwner}, L{openNoFollow} still never follows a link
        (an C{OSError}, C{ELOOP}), but opens a file with two names, which
        the checked open refuses.
        """
        path = self.plant("token")
        error = self.assertRaises(OSError, openNoFollow, path, os.O_RDONLY, checkOwner=False)
        self.assertEqual(error.errno, errno.ELOOP)
        os.unlink(path)
        named = os.path.join(self.state, "twice")
        with open(named, "w") as f:
            f.write("x")
        os.link(named, os.path.join(self.state, "again"))
        self.assertRaises(UnsafeStateDir, openNoFollow, named, os.O_RDONLY)
        os.close(openNoFollow(named, os.O_RDONLY, checkOwner=False))
        self.assertVictimUntouched()

    def test_logDirectoryLinkRefused(self) -> None:
        """
        The log directory is made with L{makePrivateDir}: a link in its
        place (planted before the start) is refused, not written through.
        """
        self.plant("logs", self.home)
        error = self.assertRaises(
            BackendError, FileLogStore, os.path.join(self.state, "logs")
        )
        self.assertIn("symbolic link", str(error))

    def test_lock(self) -> None:
        """The state directory's lock never truncates a file a link names."""
        self.plant("lock")
        lock = StateDirLock(self.state)
        error = self.assertRaises(BackendError, lock.acquire)
        self.assertIn("symbolic link", str(error))
        self.assertVictimUntouched()

    def test_database(self) -> None:
        """
        The SQLite file is never opened (nor created) through a link, and a
        link in place of its WAL, shared-memory or journal file is refused.
        """
        for name in ("events.db", "events.db-wal", "events.db-shm", "events.db-journal"):
            with self.subTest(name=name):
                path = self.plant(name)
                error = self.assertRaises(
                    BackendError, SQLiteStore, os.path.join(self.state, "events.db")
                )
                self.assertIn("symbolic link", str(error))
                os.unlink(path)
                self.assertVictimUntouched()
        dangling = self.plant("events.db", os.path.join(self.home, "made-by-pycm"))
        self.assertRaises(BackendError, SQLiteStore, dangling)
        self.assertFalse(os.path.exists(os.path.join(self.home, "made-by-pycm")))

    def test_databaseCreatedPrivate(self) -> None:
        """A new state database is created 0600, whatever the umask."""
        old = os.umask(0)
        try:
            SQLiteStore(os.path.join(self.state, "events.db")).close()
        finally:
            os.umask(old)
        mode = os.stat(os.path.join(self.state, "events.db")).st_mode
        self.assertEqual(stat.S_IMODE(mode), 0o600)

    def test_logFiles(self) -> None:
        """
        A container's log file, or a rotated one, that is a link is neither
        written nor read: no container output reaches another file, and
        no other file's content reaches the client.
        """
        store = FileLogStore(os.path.join(self.state, "logs"), maxSize=200, maxFiles=2)
        self.addCleanup(store.close)
        self.plant("logs/web.log")
        self.plant("logs/old.log.1")
        store.append("web", LogLine(1.0, "stdout", "secret output"))
        self.assertVictimUntouched()
        self.assertRaises(OSError, store.tail, "old", None)
        self.assertVictimUntouched()


def _fakeLookup(
    overrides: dict[str, tuple[int, int]],
) -> Callable[[str], os.stat_result]:
    """
    C{os.stat}, but with the (mode, owner) of some directories replaced:
    a directory of another user's cannot be made here without root.
    """

    def lookup(path: str) -> os.stat_result:
        status = os.stat(path)
        if path not in overrides:
            return status
        mode, uid = overrides[path]
        fields = list(status)
        fields[stat.ST_MODE] = stat.S_IFDIR | mode
        fields[stat.ST_UID] = uid
        return os.stat_result(fields)

    return lookup


class AncestorTests(_PlantedTestCase):
    """
    A state directory someone else could replace (a writable, non-sticky
    directory above it, or one of another user's) is refused at start.
    """

    def test_writableParentRefused(self) -> None:
        """
        A parent that group and others may write (0777, not sticky) is
        refused by L{checkStateDir}, naming it and the fix; the state
        directory, missing, is not made.
        """
        shared = os.path.join(self.home, "shared")
        os.mkdir(shared)
        os.chmod(shared, 0o777)
        state = os.path.join(shared, "state")
        error = self.assertRaises(UnsafeStateDir, checkStateDir, state)
        self.assertIn(f"under {shared},", str(error))
        self.assertIn(f"chmod go-w {shared}", str(error))
        self.assertIn("--state-dir", str(error))
        self.assertFalse(os.path.lexists(state))
        os.mkdir(state, 0o700)
        self.assertRaises(UnsafeStateDir, checkStateDir, state)

    def test_othersWritableParentRefused(self) -> None:
        """A parent others (not group) may write: the fix is C{chmod o-w}."""
        os.chmod(self.home, 0o757)
        error = self.assertRaises(UnsafeStateDir, checkStateDir, self.state)
        self.assertIn(f"chmod o-w {self.home}", str(error))

    def test_stickyParentAccepted(self) -> None:
        """
        Under a sticky world-writable directory (as C{/tmp}), others cannot
        rename what is not theirs: the state directory is accepted.
        """
        shared = os.path.join(self.home, "shared")
        os.mkdir(shared)
        os.chmod(shared, 0o1777)
        self.assertEqual(checkStateDir(os.path.join(shared, "state")), [])
        self.assertTrue(os.path.isdir(os.path.join(shared, "state")))

    def test_everyAncestorChecked(self) -> None:
        """
        Every directory up to C{/} is looked at, not just the parent: one
        writable two levels up is refused.
        """
        above = os.path.dirname(self.home)
        lookup = _fakeLookup({above: (0o777, 0)})
        error = self.assertRaises(UnsafeStateDir, checkAncestors, self.state, lookup)
        self.assertIn(f"under {above},", str(error))
        checkAncestors(self.state, _fakeLookup({"/": (0o1777, 0)}))
        groupWritable = _fakeLookup({"/": (0o775, 0)})
        self.assertRaises(UnsafeStateDir, checkAncestors, self.state, groupWritable)

    def test_otherOwnerRefused(self) -> None:
        """
        An ancestor of another user's (not root, not this user) is refused;
        one of root's or of this user's is accepted.
        """
        uid = os.geteuid()
        other = uid + 4242
        lookup = _fakeLookup({self.home: (0o755, other)})
        error = self.assertRaises(UnsafeStateDir, checkAncestors, self.state, lookup)
        self.assertIn(f"under {self.home},", str(error))
        self.assertIn(f"uid {other}", str(error))
        checkAncestors(self.state, _fakeLookup({self.home: (0o755, 0)}), uid=other)
        checkAncestors(self.state, _fakeLookup({self.home: (0o700, other)}), uid=other)

    def test_throughLink(self) -> None:
        """
        A state directory named through a link is checked on both ways to
        it: the directory holding the link, and those above its target.
        """
        real = os.path.join(self.home, "real")
        os.makedirs(os.path.join(real, "state"), 0o700)
        links = os.path.join(self.home, "links")
        os.mkdir(links)
        os.symlink(real, os.path.join(links, "to-real"))
        state = os.path.join(links, "to-real", "state")
        checkAncestors(state)
        for unsafe in (links, real):
            with self.subTest(unsafe=unsafe):
                lookup = _fakeLookup({unsafe: (0o777, 0)})
                error = self.assertRaises(UnsafeStateDir, checkAncestors, state, lookup)
                self.assertIn(f"under {unsafe},", str(error))


@contextmanager
def noHang(seconds: float = 5.0) -> Iterator[None]:
    """
    Fail, rather than hang for ever, if the code inside blocks (an open of
    a FIFO waits for a writer): an alarm interrupts the system call.
    """

    def expire(signum: int, frame: object) -> None:
        raise AssertionError(f"blocked for more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class NotRegularTests(_PlantedTestCase):
    """
    A FIFO or a directory where a state file goes is refused at once (not
    waited on for ever), naming the file and the fix.
    """

    def makeNotRegular(self, name: str, kind: str) -> str:
        path = os.path.join(self.state, name)
        if kind == "FIFO":
            os.mkfifo(path, 0o600)
        else:
            os.mkdir(path, 0o700)
        return path

    def removeNotRegular(self, path: str) -> None:
        (os.rmdir if os.path.isdir(path) else os.unlink)(path)

    def assertRefused(self, kind: str, path: str, error: Exception) -> None:
        self.assertIn(f"{path} is a {kind}, not a regular file", str(error))
        self.assertIn(f"mv {path} {path}.old", str(error))

    def test_openNoFollow(self) -> None:
        """
        L{openNoFollow}, for reading, writing or both, checked or not: a
        FIFO or a directory is a L{NotRegularFile}, both an
        L{UnsafeStateDir} and an C{OSError}.
        """
        for kind in ("FIFO", "directory"):
            path = self.makeNotRegular("thing", kind)
            for flags in (os.O_RDONLY, os.O_WRONLY, os.O_RDWR | os.O_CREAT):
                for checkOwner in (True, False):
                    with self.subTest(kind=kind, flags=flags, checkOwner=checkOwner), noHang():
                        error = self.assertRaises(
                            NotRegularFile, openNoFollow, path, flags, checkOwner=checkOwner
                        )
                        self.assertIsInstance(error, OSError)
                        self.assertIsInstance(error, UnsafeStateDir)
                        self.assertRefused(kind, path, error)
            self.removeNotRegular(path)

    def test_blockingClearedAfter(self) -> None:
        """A regular file is opened blocking, as asked, and non-blocking if asked."""
        path = os.path.join(self.state, "plain")
        fd = openNoFollow(path, os.O_RDWR | os.O_CREAT)
        self.addCleanup(os.close, fd)
        self.assertTrue(os.get_blocking(fd))
        fd2 = openNoFollow(path, os.O_RDWR | os.O_NONBLOCK)
        self.addCleanup(os.close, fd2)
        self.assertFalse(os.get_blocking(fd2))

    def test_token(self) -> None:
        """The token: a FIFO or a directory is refused, never waited on."""
        for kind in ("FIFO", "directory"):
            with self.subTest(kind=kind), noHang():
                path = self.makeNotRegular("token", kind)
                error = self.assertRaises(OSError, loadOrCreateToken, FilePath(path))
                self.assertRefused(kind, path, error)
                self.removeNotRegular(path)

    def test_lock(self) -> None:
        """The lock: a FIFO or a directory is refused."""
        for kind in ("FIFO", "directory"):
            with self.subTest(kind=kind), noHang():
                path = self.makeNotRegular("lock", kind)
                error = self.assertRaises(BackendError, StateDirLock(self.state).acquire)
                self.assertRefused(kind, path, error)
                self.removeNotRegular(path)

    def test_eventMark(self) -> None:
        """The event id mark: a FIFO or a directory is refused."""
        for kind in ("FIFO", "directory"):
            with self.subTest(kind=kind), noHang():
                path = self.makeNotRegular("events.mark", kind)
                error = self.assertRaises(UnsafeStateDir, EventIdMark, path)
                self.assertRefused(kind, path, error)
                self.removeNotRegular(path)

    def test_database(self) -> None:
        """The database and its side files: a FIFO or a directory is refused."""
        for name in ("events.db", "events.db-wal", "events.db-journal"):
            for kind in ("FIFO", "directory"):
                with self.subTest(name=name, kind=kind), noHang():
                    path = self.makeNotRegular(name, kind)
                    error = self.assertRaises(
                        BackendError, SQLiteStore, os.path.join(self.state, "events.db")
                    )
                    self.assertRefused(kind, path, error)
                    self.removeNotRegular(path)

    def test_logFile(self) -> None:
        """
        A container's log file that is a FIFO: its lines are dropped (an
        C{OSError} to the writer), never written into the FIFO.
        """
        store = FileLogStore(os.path.join(self.state, "logs"))
        self.addCleanup(store.close)
        path = os.path.join(self.state, "logs", "web.log")
        os.mkfifo(path, 0o600)
        with noHang():
            reader = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
            self.addCleanup(os.close, reader)
            store.append("web", LogLine(1.0, "stdout", "hello"))
            self.assertEqual(os.read(reader, 100), b"")
