"""
The lock file Twisted keeps beside a C{unix:} socket (C{PATH.lock}, a
link to the pid of the daemon listening there): who holds it, letting go
of one a listen took before it failed, and taking over one whose daemon
has exited but is not yet reaped, which Twisted takes for a live holder.
"""

from __future__ import annotations

import errno
import os
import socket
import stat

from twisted.logger import Logger

log = Logger()


def lockOwner(lock: str | None) -> str | None:
    """The pid a C{PATH.lock} link names, or None if there is none."""
    if lock is None:
        return None
    try:
        return os.readlink(lock)
    except OSError:
        return None


def releaseTakenLock(lock: str | None, before: str | None) -> None:
    """
    After a failed C{unix:} listen: remove the lock Twisted took for it
    (it keeps it when the bind fails because the path is taken), never one
    it did not take: another daemon's, or one this daemon held C{before}.
    """
    ours = str(os.getpid())
    if lock is None or before == ours or lockOwner(lock) != ours:
        return
    try:
        os.remove(lock)
    except OSError as e:
        log.warn("could not remove {lock}: {error}", lock=lock, error=e.strerror)


def takeOverFromZombie(lock: str | None, proc: str = "/proc") -> None:
    """
    Before a C{unix:} listen: if C{lock} names a zombie (a daemon killed,
    whose parent has not waited for it yet), remove the lock, and the
    socket file beside it if nothing listens there.  Twisted asks
    C{kill(pid, 0)}, which a zombie answers as a live process does: it
    would refuse the listen until the zombie is reaped, and leave the dead
    daemon's socket file, which only it removes when it breaks a lock.

    A zombie holds nothing, whichever process it is (the daemon, or a later
    one given its pid): the daemon that made the lock has exited.  A live
    holder, or none at all, is left to Twisted.
    """
    owner = lockOwner(lock)
    if lock is None or owner is None or not owner.isdigit() or owner == str(os.getpid()):
        return
    if processState(int(owner), proc) not in ("Z", "X"):
        return
    try:
        os.remove(lock)
    except FileNotFoundError:
        pass
    except OSError as e:
        log.warn("could not remove {lock}: {error}", lock=lock, error=e.strerror)
        return
    path = lock[: -len(".lock")]
    gone = removeDeadSocket(path)
    log.info(
        "removed {lock}{andSocket}: the daemon it names ({pid}) has exited"
        " (its parent has not reaped it yet)",
        lock=lock, andSocket=f" and {path}" if gone else "", pid=owner,
    )


def processState(pid: int, proc: str = "/proc") -> str | None:
    """The state letter of C{pid} (C{Z}: a zombie), or None if there is no such process."""
    try:
        with open(f"{proc}/{pid}/stat", "rb") as f:
            fields = f.read().rpartition(b")")[2].split()
        return fields[0].decode("ascii")
    except (OSError, IndexError, UnicodeDecodeError):
        return None


def removeDeadSocket(path: str) -> bool:
    """
    Remove the socket file at C{path} if connecting to it is refused:
    nothing listens there.  A file that is not a socket, or one that
    answers (or whose backlog is full), is left for the bind to refuse.

    @return: whether it was removed.
    """
    try:
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            return False
    except OSError:
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.setblocking(False)
        if probe.connect_ex(path) != errno.ECONNREFUSED:
            return False
    try:
        os.remove(path)
    except OSError as e:
        log.warn("could not remove {path}: {error}", path=path, error=e.strerror)
        return False
    return True
