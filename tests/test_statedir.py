"""
Tests for L{pycm.statedir} and the state files opened through it: a state
directory others could write to, or a link planted in it, never makes the
daemon write to a file outside it.
"""

from __future__ import annotations

import errno
import os
import stat

from twisted.trial.unittest import SynchronousTestCase

from pycm.errors import BackendError
from pycm.logfiles import FileLogStore
from pycm.model import LogLine
from pycm.statedir import UnsafeStateDir, checkStateDir, makePrivateDir, openNoFollow
from pycm.store import SQLiteStore, StateDirLock

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
        """A missing state directory is created 0700, whatever the umask."""
        path = os.path.join(self.home, "a", "new")
        old = os.umask(0)
        try:
            self.assertEqual(checkStateDir(path), [])
        finally:
            os.umask(old)
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o700)

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
