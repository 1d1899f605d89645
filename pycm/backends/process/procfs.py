"""
What Linux's C{/proc} says about processes: enough to recognise one of our
runs after a daemon restart (its pid and its start time, so a recycled pid
is never mistaken for it), to find what is left of a process group, and to
find (and kill) the processes that carry a run's marker in their
environment.
"""

from __future__ import annotations

import os
import signal as _signal
from collections.abc import Callable, Container
from typing import TypeVar

import attrs

PROC = "/proc"

_T = TypeVar("_T")


@attrs.frozen
class ProcStat:
    """
    The fields of C{/proc/PID/stat} pycm uses.

    @ivar startTime: field 22, the start time in clock ticks since boot.
    """

    pid: int
    state: str
    ppid: int
    pgrp: int
    session: int
    startTime: int

    @property
    def alive(self) -> bool:
        """False for a zombie (exited, not reaped yet) or a dead task."""
        return self.state not in ("Z", "X", "x")


def parseStat(text: str) -> ProcStat:
    """
    Parse the text of C{/proc/PID/stat}.  The command name (field 2) is in
    parentheses and may itself contain spaces and parentheses, so the other
    fields are counted from the last C{)}.

    @raise ValueError: if the text is not a stat line.
    """
    open_ = text.index("(")
    close = text.rindex(")")
    pid = int(text[:open_].strip())
    rest = text[close + 1 :].split()
    # rest[0] is field 3 (state); field N is rest[N - 3].
    return ProcStat(
        pid=pid,
        state=rest[0],
        ppid=int(rest[1]),
        pgrp=int(rest[2]),
        session=int(rest[3]),
        startTime=int(rest[19]),
    )


def readStat(pid: int, proc: str = PROC) -> ProcStat | None:
    """The stat of C{pid}, or None if there is no such process."""
    try:
        fd = os.open(f"{proc}/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        text = os.read(fd, 4096).decode("utf-8", "replace")
    except OSError:
        return None
    finally:
        os.close(fd)
    try:
        return parseStat(text)
    except (ValueError, IndexError):
        return None


def startTime(pid: int, proc: str = PROC) -> int | None:
    """The start time (clock ticks since boot) of C{pid}, or None if gone."""
    stat = readStat(pid, proc)
    return None if stat is None else stat.startTime


def isSameProcess(pid: int, start: int | None, proc: str = PROC) -> bool:
    """
    Whether C{pid} is still the live (not zombie) process that started at
    C{start}.  An unknown C{start} (None) never matches: a pid alone could
    have been recycled.
    """
    if start is None:
        return False
    stat = readStat(pid, proc)
    return stat is not None and stat.alive and stat.startTime == start


def allStats(proc: str = PROC, skip: Container[int] = ()) -> list[ProcStat]:
    """
    The stat of every process but those in C{skip} (not read at all),
    skipping those that vanish meanwhile.
    """
    stats: list[ProcStat] = []
    try:
        names = os.listdir(proc)
    except OSError:
        return stats
    for name in names:
        if name.isdigit():
            pid = int(name)
            if pid in skip:
                continue
            stat = readStat(pid, proc)
            if stat is not None:
                stats.append(stat)
    return stats


def groupMembers(pgid: int, proc: str = PROC) -> list[int]:
    """The live processes whose process group is C{pgid}."""
    return sorted(s.pid for s in allStats(proc) if s.pgrp == pgid and s.alive)


def sessionMembers(sid: int, proc: str = PROC) -> list[int]:
    """The live processes whose session is C{sid}."""
    return sorted(s.pid for s in allStats(proc) if s.session == sid and s.alive)


def environ(pid: int, proc: str = PROC) -> bytes | None:
    """The environment C{pid} was started with (NUL-separated), or None."""
    try:
        with open(f"{proc}/{pid}/environ", "rb") as f:
            return f.read()
    except OSError:
        return None


def cgroupPaths(pid: int, proc: str = PROC) -> list[str] | None:
    """
    The cgroups C{pid} is in, one path a hierarchy (C{/proc/PID/cgroup},
    relative to the hierarchy's root), or None if it cannot be read.
    """
    try:
        with open(f"{proc}/{pid}/cgroup", "rb") as f:
            text = f.read().decode("utf-8", "surrogateescape")
    except OSError:
        return None
    return [line.split(":", 2)[2] for line in text.splitlines() if line.count(":") >= 2]


def environValue(environ: bytes, name: str) -> str | None:
    """The value of C{name} in a NUL-separated environment, None if none."""
    key = name.encode("ascii") + b"="
    start = environ.find(key)
    while start > 0 and environ[start - 1] != 0:
        start = environ.find(key, start + 1)
    if start < 0:
        return None
    end = environ.find(b"\0", start)
    value = environ[start + len(key) : end if end >= 0 else None]
    return value.decode("utf-8", "surrogateescape")


def runId(environ: bytes) -> str | None:
    """The C{PYCM_RUN_ID} of a NUL-separated environment, None if none."""
    return environValue(environ, "PYCM_RUN_ID")


def _pidfd(pid: int) -> int | None:
    """
    A pidfd of C{pid}, or None if it is gone.

    @raise OSError: with C{ENOSYS} where the kernel has none (before 5.3).
    """
    opener = getattr(os, "pidfd_open", None)
    if opener is None:
        raise OSError(38, "no pidfd_open")
    try:
        return int(opener(pid))
    except ProcessLookupError:
        return None


def killIfMarked(
    pid: int, runIds: Container[str], signum: int = _signal.SIGKILL, proc: str = PROC
) -> str | None:
    """
    Send C{signum} to C{pid} if its environment carries one of C{runIds} as
    C{PYCM_RUN_ID}.

    The signal never reaches another process that took over the pid: it
    goes through a pidfd opened before the environment is read (if the
    process ends meanwhile, the signal reaches nobody).  Where the kernel
    has no pidfds, the start time is read again after the environment and
    the signal is sent only if it did not change.

    @return: the run id it carried, if it was signalled; None if it carries
        none of them, is gone, or its environment cannot be read (another
        user's process, for a daemon that is not root).
    """

    def marked(environ: bytes) -> str | None:
        found = runId(environ)
        return found if found is not None and found in runIds else None

    return killIf(pid, marked, signum, proc)


def _hold(pid: int) -> int | None:
    """
    A pidfd of C{pid} to act through; -1 where the kernel gives none (its
    start time then tells it from a process that took the pid over); None
    if it is gone.
    """
    try:
        return _pidfd(pid)
    except OSError:
        return -1


def killIf(
    pid: int,
    marked: Callable[[bytes], str | None],
    signum: int = _signal.SIGKILL,
    proc: str = PROC,
) -> str | None:
    """
    Send C{signum} to C{pid} if C{marked} finds a mark in its environment,
    never to another process that took over the pid (see L{killIfMarked}).

    @return: the mark, if it was signalled; else None.
    """
    pidfd = _hold(pid)
    if pidfd is None:
        return None
    try:
        before = startTime(pid, proc) if pidfd < 0 else None
        found = marked(environ(pid, proc) or b"")
        if found is None:
            return None
        if pidfd >= 0:
            _signal.pidfd_send_signal(pidfd, signum)
        else:
            if before is None or startTime(pid, proc) != before:
                return None
            os.kill(pid, signum)
        return found
    except OSError:
        return None
    finally:
        if pidfd >= 0:
            os.close(pidfd)


def readWhileAlive(pid: int, read: Callable[[], _T], proc: str = PROC) -> _T | None:
    """
    C{read()} (of C{pid}'s files), if it read one process throughout: one
    that lives from before to after it, held by a pidfd (where the kernel
    has none, by its start time, read before and after), so that no other
    process took the pid over meanwhile.  None if it is gone.
    """
    pidfd = _hold(pid)
    if pidfd is None:
        return None
    try:
        before = startTime(pid, proc) if pidfd < 0 else None
        if pidfd < 0 and before is None:
            return None
        found = read()
        if pidfd >= 0:
            _signal.pidfd_send_signal(pidfd, 0)  # ESRCH once it is gone
        elif startTime(pid, proc) != before:
            return None
        return found
    except OSError:
        return None
    finally:
        if pidfd >= 0:
            os.close(pidfd)


def bootId(proc: str = PROC) -> str | None:
    """This boot's id (C{/proc/sys/kernel/random/boot_id}), None if unknown."""
    try:
        with open(f"{proc}/sys/kernel/random/boot_id") as f:
            return f.read().strip() or None
    except OSError:
        return None


def signalGroup(pgid: int, signum: int) -> bool:
    """Signal a process group; False if it does not exist (or may not be signalled)."""
    try:
        os.killpg(pgid, signum)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return False
