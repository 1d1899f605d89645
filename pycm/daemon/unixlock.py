"""
The lock file Twisted keeps beside a C{unix:} socket (C{PATH.lock}, a
link to the pid of the daemon listening there): who holds it, letting go
of one a listen took before it failed, and breaking one that names no
live holder which Twisted's own check would take for one.
"""

from __future__ import annotations

import os

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


def breakDeadHolders(lock: str | None, proc: str = "/proc") -> None:
    """
    Before a C{unix:} listen: remove C{lock} if the pid it names cannot
    be the daemon that made it, which Twisted (asking C{kill(pid, 0)})
    would take for a live holder, failing the listen:
      - a zombie: a daemon killed (C{kill -9}) that its parent has not
        reaped yet, as when a supervisor starts the next one at once;
      - a process that started after the link was made: the pid was
        recycled (after a reboot, with the socket on a lasting disk).
    A live process older than the link may hold it (another daemon on
    the same path): it is left, and the listen says so.
    """
    owner = lockOwner(lock)
    if lock is None or owner is None or not owner.isdigit() or int(owner) == os.getpid():
        return
    started = _startedAt(int(owner), proc)
    if started is None:
        return  # No such process: Twisted breaks it itself.
    state, since = started
    try:
        made = os.lstat(lock).st_mtime
    except OSError:
        return
    # Boot time has whole seconds: a second of slack keeps a real holder.
    if state not in ("Z", "X", "x") and since <= made + 1.0:
        return
    try:
        os.remove(lock)
    except OSError as e:
        log.warn("could not remove {lock}: {error}", lock=lock, error=e.strerror)
        return
    log.info(
        "removed {lock}: the pid it names ({pid}) is {why}",
        lock=lock, pid=owner,
        why="a process that exited" if state in ("Z", "X", "x")
        else "a later process's (recycled)",
    )


def _startedAt(pid: int, proc: str) -> tuple[str, float] | None:
    """The state and start time (seconds since the epoch) of C{pid}, or None."""
    try:
        with open(f"{proc}/{pid}/stat", "rb") as f:
            fields = f.read().decode("utf-8", "replace").rpartition(")")[2].split()
        with open(f"{proc}/stat", "rb") as f:
            boot = next(
                float(line.split()[1]) for line in f if line.startswith(b"btime ")
            )
        return fields[0], boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None
