"""
Killing processes by the markers in their environments: a run's id
(C{PYCM_RUN_ID}, L{killMarked}), or this daemon's state directory
(C{PYCM_STATE}) with a container's name (L{killStrays}) or with a run id
no record owns (L{killUnowned}).  Every kill goes through a pidfd opened
before the environment is read (L{procfs.killIf}): never a process that
reused a pid.  L{groupsOfMarked} finds the cgroups of such processes
by the same markers (never killing through them).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection

from pycm.backends.process import procfs

#: The most looks at /proc for processes carrying a run marker, while new
#: ones turn up (each look kills what it finds).
MARK_ROUNDS = 10


def killMarked(
    runIds: Collection[str],
    notBefore: int | None = None,
    proc: str = procfs.PROC,
    skip: Collection[int] = (),
) -> dict[str, list[int]]:
    """
    SIGKILL every live process started with one of C{runIds} as its
    C{PYCM_RUN_ID}, whatever its session, process group, cgroup or user
    (see L{procfs.killIfMarked}: never a process that reused a pid); look
    again while new ones turn up (one may fork while it is being killed),
    at most L{MARK_ROUNDS} looks.

    @param notBefore: the earliest start time of the runs, in clock ticks:
        older processes cannot carry their markers and their environments
        are not read.  None: read every process's.
    @param skip: pids not read at all: the main processes of this daemon's
        runs not reaped yet (an unreaped child's pid cannot be reused, and
        it carries its own, live run's marker).
    @return: the pids killed, by run id.
    """
    if not runIds:
        return {}
    return _killInRounds(
        lambda pid: procfs.killIfMarked(pid, runIds, proc=proc), proc, skip, notBefore
    )


def _killInRounds(
    killOne: Callable[[int], str | None],
    proc: str,
    skip: Collection[int] = (),
    notBefore: int | None = None,
) -> dict[str, list[int]]:
    """
    Look at every live process but this one (and C{skip}, and those older
    than C{notBefore}) and let C{killOne} kill it or not (it returns what
    the process was killed as, or None); look again while new ones turn
    up, at most L{MARK_ROUNDS} looks.  The pids killed, by what C{killOne}
    said.
    """
    found: dict[str, list[int]] = {}
    me = os.getpid()
    signalled: set[tuple[int, int]] = set()
    for _ in range(MARK_ROUNDS):
        fresh = False
        for stat in procfs.allStats(proc, skip):
            key = (stat.pid, stat.startTime)
            if stat.pid == me or not stat.alive or key in signalled:
                continue
            if notBefore is not None and stat.startTime < notBefore:
                continue
            what = killOne(stat.pid)
            if what is None:
                continue
            signalled.add(key)
            fresh = True
            found.setdefault(what, []).append(stat.pid)
        if not fresh:
            break
    return found


def killStrays(stateMarker: str | None, names: Collection[str], proc: str) -> list[int]:
    """
    SIGKILL every live process of a run of the daemon whose C{PYCM_STATE}
    is C{stateMarker}, of a container named in C{names}, whatever its run:
    for records put aside with no run id left to read.  Only ever called
    before any run of those names is started.

    @return: the pids killed.
    """
    if stateMarker is None or not names:
        return []
    stray = strayMark(stateMarker, names)
    me = os.getpid()
    killed: list[int] = []
    for _ in range(MARK_ROUNDS):
        fresh = [
            stat.pid
            for stat in procfs.allStats(proc)
            if stat.pid != me
            and stat.alive
            and stat.pid not in killed
            and procfs.killIf(stat.pid, stray, proc=proc) is not None
        ]
        if not fresh:
            break
        killed += fresh
    return killed


def killUnowned(
    stateMarker: str | None, owned: Collection[str], proc: str
) -> dict[str, list[int]]:
    """
    SIGKILL every live process of a run of the daemon whose C{PYCM_STATE}
    is C{stateMarker} whose run id (C{PYCM_RUN_ID}) is not in C{owned}:
    what runs of records that are gone (a state database that lost its
    last writes, was moved aside or restored from an older copy) left.
    Only ever called before any run is started.

    @return: the pids killed, by container name (C{PYCM_CONTAINER}, or
        C{"?"} without one).
    """
    if stateMarker is None:
        return {}

    def unowned(environ: bytes) -> str | None:
        if procfs.environValue(environ, "PYCM_STATE") != stateMarker:
            return None
        if procfs.runId(environ) in owned:
            return None
        return procfs.environValue(environ, "PYCM_CONTAINER") or "?"

    return _killInRounds(lambda pid: procfs.killIf(pid, unowned, proc=proc), proc)


def strayMark(stateMarker: str, names: Collection[str]) -> Callable[[bytes], str | None]:
    """
    What L{killStrays} kills: the container's name in an environment of
    this state directory's run of one of C{names}, else None.
    """

    def stray(environ: bytes) -> str | None:
        if procfs.environValue(environ, "PYCM_STATE") != stateMarker:
            return None
        name = procfs.environValue(environ, "PYCM_CONTAINER")
        return name if name is not None and name in names else None

    return stray


def groupsOfMarked(
    groups: Collection[str],
    pidsOf: Callable[[str], list[int]],
    dirsOf: Callable[[str], list[str]],
    mark: Callable[[bytes], str | None],
    proc: str = procfs.PROC,
) -> list[str]:
    """
    The cgroups among C{groups} that hold processes, in every one of which
    C{mark} finds a container's name (see L{strayMark}), the name the
    group bears (C{NAME-ID}, ID the container id's first 12 characters):
    the groups of those processes' runs, although no record says so.  An
    empty group is never one: a cgroup parent may be shared with daemons
    of other state directories, and nothing tells their groups apart.
    Each process must still be in the group (its C{/proc/PID/cgroup}, read
    with its environment while it lives: L{procfs.readWhileAlive}): a pid
    another process took over since the group was listed never makes
    another daemon's group look like one of these.

    @param dirsOf: the directories of a group (L{Cgroups.dirsOf}).
    """
    found = []
    for group in sorted(groups):
        pids = pidsOf(group)
        dirs = dirsOf(group)
        if pids and all(_marksGroup(pid, group, dirs, mark, proc) for pid in pids):
            found.append(group)
    return found


def _marksGroup(
    pid: int, group: str, dirs: list[str], mark: Callable[[bytes], str | None], proc: str
) -> bool:
    """
    Whether C{pid} is in C{group} (whose directories are C{dirs}) and C{mark}
    finds in its environment the container C{group} is named for.
    """
    read = procfs.readWhileAlive(
        pid, lambda: (procfs.environ(pid, proc), procfs.cgroupPaths(pid, proc)), proc
    )
    environ, paths = read or (None, None)
    name = None if environ is None else mark(environ)
    if name is None or not _namedFor(group, name):
        return False
    return any(
        path.endswith("/" + group) and any(d.endswith(path) for d in dirs) for path in paths or ()
    )


def _namedFor(group: str, name: str) -> bool:
    """Whether C{group} is named for the container C{name}: C{NAME-ID}, ID 1 to 12 characters."""
    suffix = group[len(name) + 1 :]
    return group.startswith(name + "-") and 0 < len(suffix) <= 12 and "-" not in suffix
