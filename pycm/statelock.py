"""
The state directory's lock (L{StateDirLock}): one daemon a directory, and
the next one told which pid holds it.
"""

from __future__ import annotations

import errno
import fcntl
import os

from pycm.errors import BackendError
from pycm.statedir import openNoFollow


class StateDirLocked(BackendError):
    """Another daemon holds the lock of this state directory."""


class StateDirLock:
    """
    An exclusive C{flock} on C{DIR/lock}, held while a daemon uses a state
    directory.  The lock file holds the holder's pid, for the message the
    next daemon gets (L{recordHolder}).  The descriptor is close-on-exec,
    so container processes never inherit (and never keep) the lock.
    """

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.path = os.path.join(directory, "lock")
        self._fd: int | None = None

    @property
    def locked(self) -> bool:
        return self._fd is not None

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
            fd = openNoFollow(self.path, os.O_RDWR | os.O_CREAT)
        except OSError as e:
            raise BackendError(f"cannot use state directory {self.directory}: {e.strerror}") from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = ""
            try:
                text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
                if text.isdigit():
                    holder = f" (pid {text})"
            except OSError:
                pass
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise StateDirLocked(
                    f"another pycm daemon{holder} is using state directory "
                    f"{self.directory}; stop it first or choose another --state-dir"
                ) from e
            raise BackendError(f"cannot lock {self.path}: {e.strerror}") from e
        self._fd = fd
        self.recordHolder()

    def recordHolder(self) -> None:
        """
        Write this process's pid in the lock file.  twistd forks after the
        lock is taken, so the daemon records itself again once it runs: the
        next daemon is told a pid that exists.
        """
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        """Release the lock (idempotent)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                os.ftruncate(fd, 0)
            except OSError:
                pass
            os.close(fd)
