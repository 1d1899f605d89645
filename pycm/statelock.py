"""
The state directory's lock (L{StateDirLock}): one daemon a directory, and
the next one told which pid holds it.
"""

from __future__ import annotations

import errno
import fcntl
import os

from twisted.logger import Logger

from pycm.errors import BackendError
from pycm.statedir import openNoFollow

#: The errors of a lock someone else holds.
_HELD = (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES)


class StateDirLocked(BackendError):
    """Another daemon holds the lock of this state directory."""


class StateDirLock:
    """
    An exclusive C{flock} on the state directory itself, and one on
    C{DIR/lock}, held while a daemon uses a state directory.

    The directory's lock is the one that counts: a file can be deleted (by
    an operator or a cleaner "removing a stale lock") while its holder
    runs, and the next daemon would then lock a new file of that name and
    share the directory; the directory cannot go while the daemon uses it.
    The file's lock is kept for an older pycm, which locks the file alone;
    and the file holds the holder's pid, for the message the next daemon
    gets (L{recordHolder}).  Both descriptors are close-on-exec, so
    container processes never inherit (and never keep) the lock.
    """

    log = Logger()

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.path = os.path.join(directory, "lock")
        self._fd: int | None = None
        self._dirFd: int | None = None

    @property
    def locked(self) -> bool:
        return self._fd is not None

    def _holder(self) -> str:
        """C{" (pid N)"} as the lock file says, or nothing."""
        try:
            fd = openNoFollow(self.path, os.O_RDONLY)
        except (OSError, BackendError):
            return ""
        try:
            text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        except OSError:
            return ""
        finally:
            os.close(fd)
        return f" (pid {text})" if text.isdigit() else ""

    def _refused(self, error: OSError) -> StateDirLocked:
        return StateDirLocked(
            f"another pycm daemon{self._holder()} is using state directory "
            f"{self.directory}; stop it first or choose another --state-dir "
            f"(removing {self.path} does not stop it)"
        )

    def _lockDirectory(self) -> int | None:
        """
        Lock the directory itself: its descriptor, or None where the
        filesystem cannot lock a directory (the file's lock alone then).

        @raise StateDirLocked: if another daemon holds it.
        """
        try:
            fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as e:
            raise BackendError(f"cannot use state directory {self.directory}: {e.strerror}") from e
        error = self._lockOrClose(fd)
        if error is not None:
            self.log.warn(
                "cannot lock the state directory {directory} itself ({error}); only "
                "its lock file {path} keeps a second daemon off it: never remove it",
                directory=self.directory, error=error.strerror, path=self.path,
            )
            return None
        return fd

    def _lockOrClose(self, fd: int) -> OSError | None:
        """
        Lock C{fd} at once, or close it and say why it could not be locked.

        @raise StateDirLocked: if another daemon (or an older pycm, which
            locks the file alone) holds it.
        """
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in _HELD:
                raise self._refused(e) from e
            return e
        return None

    def acquire(self) -> None:
        """
        Take the lock.

        @raise StateDirLocked: if another process holds it.
        @raise BackendError: if the directory cannot be used at all.
        """
        if self._fd is not None:
            return
        try:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
        except OSError as e:
            raise BackendError(f"cannot use state directory {self.directory}: {e.strerror}") from e
        dirFd = self._lockDirectory()
        try:
            try:
                fd = openNoFollow(self.path, os.O_RDWR | os.O_CREAT)
            except OSError as e:
                raise BackendError(f"cannot open {self.path}: {e.strerror}") from e
            error = self._lockOrClose(fd)
            if error is not None:
                raise BackendError(f"cannot lock {self.path}: {error.strerror}") from error
        except BaseException:
            if dirFd is not None:
                os.close(dirFd)
            raise
        self._fd = fd
        self._dirFd = dirFd
        self.recordHolder()

    def recordHolder(self) -> None:
        """
        Write this process's pid in the lock file.  twistd forks after the
        lock is taken, so the daemon records itself again once it runs: the
        next daemon is told a pid that exists.  Best effort: the pid is
        only for that message, so a file that cannot be written (a full
        disk) is a warning naming it, never a reason not to start.
        """
        if self._fd is None:
            return
        data = f"{os.getpid()}\n".encode()
        try:
            # Written over the old pid, then cut to length: in place, where
            # the old pid's block is still allocated on a full disk.
            os.pwrite(self._fd, data, 0)
            os.ftruncate(self._fd, len(data))
        except OSError as e:
            try:
                os.ftruncate(self._fd, 0)  # no stale pid (needs no space)
            except OSError:
                pass
            self.log.warn(
                "cannot write this daemon's pid in {path} ({error}); the state "
                "directory is locked all the same, and a second daemon is refused "
                "without being told this pid",
                path=self.path, error=e.strerror,
            )

    def release(self) -> None:
        """Release the lock (idempotent)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                os.ftruncate(fd, 0)
            except OSError:
                pass
            os.close(fd)
        if self._dirFd is not None:
            dirFd, self._dirFd = self._dirFd, None
            os.close(dirFd)
