"""
The lock file Twisted keeps beside a C{unix:} socket (C{PATH.lock}, a
link to the pid of the daemon listening there): who holds it, letting go
of one a listen took before it failed, and taking over one whose daemon
has exited but is not yet reaped, which Twisted takes for a live holder.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket

from twisted.internet.error import CannotListenError
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


#: A pid no process can have (Linux's pids are at most 2**22): a lock that
#: names it is one Twisted finds stale and breaks.
NO_SUCH_PID = 2**22 + 1


def takeOverFromZombie(lock: str | None, proc: str = "/proc") -> None:
    """
    Before a C{unix:} listen: if C{lock} names a zombie (a daemon killed,
    whose parent has not waited for it yet) and nothing answers on the
    socket, make the lock name L{NO_SUCH_PID} instead, in one rename.
    Twisted asks C{kill(pid, 0)}, which a zombie answers as a live process
    does, and refuses the listen until the zombie is reaped; for a pid
    that is not there it breaks the lock itself, then removes the dead
    daemon's socket file under the lock it took, as for a daemon reaped.

    A zombie holds nothing, whichever process it is (the daemon, or a later
    one given its pid): the daemon that made the lock has exited.  A live
    holder, a socket that answers (a daemon listening without a lock), or
    no lock at all is left as it is, for the listen to say why it fails.
    """
    owner = lockOwner(lock)
    if lock is None or owner is None or not isPid(owner) or owner == str(os.getpid()):
        return
    if not isZombie(int(owner), proc) or answers(lock[: -len(".lock")]):
        return
    stale = f"{lock}.{os.getpid()}.stale"
    try:
        os.symlink(str(NO_SUCH_PID), stale)
        # Not if another daemon took the lock over meanwhile.
        if lockOwner(lock) == owner:
            os.rename(stale, lock)
            log.info(
                "{lock} names {pid}, a daemon that exited and is not reaped yet:"
                " taken as a dead daemon's lock",
                lock=lock, pid=owner,
            )
    except OSError as e:
        log.warn("could not take over {lock}: {error}", lock=lock, error=e.strerror)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(stale)


def isZombie(pid: int, proc: str = "/proc") -> bool:
    """
    Has process C{pid} exited, not reaped yet?  Its state is C{Z} and it
    has no thread left (a process whose first thread exited reads C{Z}
    too while its other threads run).
    """
    try:
        with open(f"{proc}/{pid}/status", "rb") as f:
            fields = dict(line.partition(b":")[::2] for line in f)
        return fields[b"State"].split()[0] in (b"Z", b"X") and int(fields[b"Threads"]) <= 1
    except (OSError, KeyError, IndexError, ValueError):
        return False


def answers(path: str) -> bool:
    """Does something accept connections on the UNIX socket at C{path} (or queue them)?"""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.setblocking(False)
        return probe.connect_ex(path) in (0, errno.EAGAIN, errno.EINPROGRESS)


class LockProblem(Exception):
    """Why a C{unix:} listener's lock keeps it from listening, for a person."""


def checkLockFile(lock: str | None) -> None:
    """
    Before a C{unix:} listen: C{lock}, if there, must be what Twisted
    makes (a link naming a pid), which it can judge.

    @raise LockProblem: saying what is there instead and what to do.
    """
    if lock is None or not os.path.lexists(lock):
        return
    path = lock[: -len(".lock")]
    remedy = f"if no daemon listens on {path}, remove {lock}"
    if not os.path.islink(lock):
        raise LockProblem(
            f"{lock} is not the lock Twisted keeps beside the socket (a link naming"
            f" the pid of the daemon listening there): {remedy}"
        )
    owner = lockOwner(lock)
    if owner is not None and not isPid(owner):
        raise LockProblem(f"{lock} names {owner!r}, not a pid: {remedy}")


def isPid(text: str) -> bool:
    """Is C{text} a pid as a lock names one (1 to L{NO_SUCH_PID}, in ASCII digits)?"""
    return text.isascii() and text.isdigit() and 1 <= int(text) <= NO_SUCH_PID


def heldBy(lock: str | None) -> LockProblem | None:
    """After Twisted could not take C{lock}: who holds it, and what to do."""
    owner = lockOwner(lock)
    if lock is None or owner is None:
        return None
    path = lock[: -len(".lock")]
    return LockProblem(
        f"{lock} names pid {owner}, a running process: another daemon listens on {path}?"
        f" If none does, remove {lock}"
    )


def prepareLock(lock: str | None) -> str | None:
    """
    Before a C{unix:} listen: refuse a lock file Twisted cannot judge
    (L{checkLockFile}), take one over from a zombie (L{takeOverFromZombie});
    who holds it now (for L{afterFailedListen}).

    @raise CannotListenError: for a lock file that is not Twisted's.
    """
    try:
        checkLockFile(lock)
    except LockProblem as e:
        raise CannotListenError(None, lock, e) from None
    takeOverFromZombie(lock)
    return lockOwner(lock)


def afterFailedListen(lock: str | None, before: str | None, error: Exception) -> None:
    """
    After a C{unix:} listen failed with C{error}: let go of the lock it
    took (L{releaseTakenLock}); if it could not take it, say who holds it.

    @raise CannotListenError: naming the lock's holder, for a lock held.
    """
    releaseTakenLock(lock, before)
    if isinstance(error, CannotListenError) and error.socketError == "Cannot acquire lock":
        held = heldBy(lock)
        if held is not None:
            raise CannotListenError(error.interface, error.port, held) from None
