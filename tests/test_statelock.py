"""
Tests for L{pycm.statelock}: the lock holds even when its file is deleted,
and recording the holder's pid never keeps a daemon from starting.
"""

from __future__ import annotations

import errno
import fcntl
import os

from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from pycm.statelock import StateDirLock, StateDirLocked


def _lockFile(testCase: SynchronousTestCase, directory: str) -> int:
    """Lock C{directory}/lock as an older pycm does (the file alone)."""
    fd = os.open(os.path.join(directory, "lock"), os.O_RDWR | os.O_CREAT, 0o600)
    testCase.addCleanup(os.close, fd)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.write(fd, b"4242\n")
    return fd


class DeletedLockFileTests(SynchronousTestCase):
    """
    Deleting C{lock} while a daemon holds it (an operator or a tmp cleaner
    "removing a stale lock") does not let a second daemon share the
    directory: the directory itself is locked too.
    """

    def test_secondRefusedAfterDelete(self) -> None:
        """The lock file deleted, a second lock is still refused, naming the fix."""
        directory = self.mktemp()
        first = StateDirLock(directory)
        first.acquire()
        self.addCleanup(first.release)
        os.unlink(first.path)
        second = StateDirLock(directory)
        error = self.assertRaises(StateDirLocked, second.acquire)
        self.assertIn(directory, str(error))
        self.assertIn(f"removing {first.path} does not stop it", str(error))
        self.assertFalse(second.locked)

    def test_olderPycmRefused(self) -> None:
        """
        A lock file held by an older pycm (which locks the file alone) is
        still refused, with its pid: the file's lock is kept.
        """
        directory = self.mktemp()
        os.mkdir(directory, 0o700)
        _lockFile(self, directory)
        error = self.assertRaises(StateDirLocked, StateDirLock(directory).acquire)
        self.assertIn("(pid 4242)", str(error))

    def test_olderPycmSeesTheLock(self) -> None:
        """An older pycm, locking the file alone, is kept off too."""
        directory = self.mktemp()
        lock = StateDirLock(directory)
        lock.acquire()
        self.addCleanup(lock.release)
        error = self.assertRaises(OSError, _lockFile, self, directory)
        self.assertEqual(error.errno, errno.EWOULDBLOCK)

    def test_releaseUnlocksDirectory(self) -> None:
        """After release, another lock takes the directory (and its file)."""
        directory = self.mktemp()
        first = StateDirLock(directory)
        first.acquire()
        first.release()
        second = StateDirLock(directory)
        second.acquire()
        self.addCleanup(second.release)
        self.assertTrue(second.locked)

    def test_refusedKeepsNoDescriptor(self) -> None:
        """A refused lock leaves no descriptor open (of the directory or file)."""
        directory = self.mktemp()
        first = StateDirLock(directory)
        first.acquire()
        self.addCleanup(first.release)
        before = len(os.listdir("/proc/self/fd"))
        for _ in range(5):
            self.assertRaises(StateDirLocked, StateDirLock(directory).acquire)
        self.assertEqual(len(os.listdir("/proc/self/fd")), before)


class RecordHolderTests(SynchronousTestCase):
    """Recording the holder's pid is best effort (a full disk)."""

    def setUp(self) -> None:
        self.logged: list[dict[str, object]] = []
        globalLogPublisher.addObserver(self.logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.logged.append)

    def test_pidOverwritesInPlace(self) -> None:
        """The pid replaces an older, longer one: nothing of the old one is left."""
        directory = self.mktemp()
        os.mkdir(directory, 0o700)
        with open(os.path.join(directory, "lock"), "w") as f:
            f.write("123456789012\n")
        lock = StateDirLock(directory)
        lock.acquire()
        self.addCleanup(lock.release)
        with open(lock.path) as f:
            self.assertEqual(f.read(), f"{os.getpid()}\n")

    def test_unwritableIsAWarning(self) -> None:
        """
        When the pid cannot be written (ENOSPC; C{os.pwrite} is replaced:
        a full disk cannot be made here without root), the lock is taken
        all the same, the file holds no stale pid, and a warning names it.
        """
        directory = self.mktemp()
        os.mkdir(directory, 0o700)
        with open(os.path.join(directory, "lock"), "w") as f:
            f.write("99999\n")

        def full(fd: int, data: bytes, offset: int) -> int:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        self.patch(os, "pwrite", full)
        lock = StateDirLock(directory)
        lock.acquire()
        self.addCleanup(lock.release)
        self.assertTrue(lock.locked)
        self.assertEqual(os.path.getsize(lock.path), 0)
        warnings = [e for e in self.logged if e.get("log_level") == LogLevel.warn]
        self.assertEqual(len(warnings), 1)
        self.assertEqual(warnings[0]["path"], lock.path)
        self.assertEqual(warnings[0]["error"], os.strerror(errno.ENOSPC))
        lock.recordHolder()  # after twistd's fork: never raises either
