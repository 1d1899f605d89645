"""
The CPUs a run may use: every one its own cgroup allows, whatever CPUs the
daemon itself is pinned to (C{taskset}, systemd's C{CPUAffinity=}).

A child inherits the CPU mask its parent asked for, and keeps it when it
joins a cgroup (since Linux 6.2 even one with other CPUs): without this,
every container of a pinned daemon would be confined to the daemon's CPUs.
(runc and crun reset the mask of a container's process for the same
reason.)  So the daemon asks for every CPU for the length of the
C{posix_spawn} and puts its own mask back after, as it borrows the run's
workdir and cgroup: the child starts wide, before it runs any code of its
own, so nothing it forks keeps the pin.

What is put back is the mask the kernel applied, which is all Python can
read: CPUs the pin named that were offline or outside the daemon's cgroup
at that moment are no longer asked for.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import TypeVar

from twisted.logger import Logger

_T = TypeVar("_T")

#: The kernel's lists of CPUs.
POSSIBLE = "/sys/devices/system/cpu/possible"
ONLINE = "/sys/devices/system/cpu/online"


def cpuList(text: str) -> set[int]:
    """The CPUs of a kernel CPU list (C{0-3,5,7-9})."""
    cpus: set[int] = set()
    for part in text.strip().split(","):
        if part:
            first, _, last = part.partition("-")
            cpus.update(range(int(first), int(last or first) + 1))
    return cpus


def readCpuList(path: str) -> set[int] | None:
    """The CPUs of the kernel's list at C{path}, or None if it cannot be read."""
    try:
        with open(path) as f:
            return cpuList(f.read()) or None
    except (OSError, ValueError):
        return None


def everyCpu(path: str = POSSIBLE) -> range:
    """
    Every CPU number the kernel may bring online: a mask of them all asks
    for every CPU, which the kernel narrows to those the cgroup allows.
    """
    possible = readCpuList(path)
    return range(max(possible) + 1 if possible else max(os.cpu_count() or 1, 1024))


def onlineCpus(path: str = ONLINE) -> set[int]:
    """The CPUs online now (0 to the CPU count, if the list cannot be read)."""
    return readCpuList(path) or set(range(os.cpu_count() or 1))


class RunCpus:
    """
    Asks for every CPU around a spawn (L{spawnWide}) while the daemon is
    pinned.  A daemon that is not (its mask holds every online CPU) pays
    one look at its mask a spawn.

    @param every: the mask that asks for every CPU (L{everyCpu}).
    @param online: reads the CPUs online now (L{onlineCpus}).
    """

    log = Logger()

    def __init__(
        self,
        every: Iterable[int] | None = None,
        online: Callable[[], set[int]] = onlineCpus,
        getAffinity: Callable[[int], set[int]] = os.sched_getaffinity,
        setAffinity: Callable[[int, Iterable[int]], None] = os.sched_setaffinity,
    ) -> None:
        self._every = list(everyCpu() if every is None else every)
        self._readOnline = online
        self._online = online()
        self._get = getAffinity
        self._set = setAffinity
        #: A refusal was logged (once is enough: each spawn tries again).
        self._warned = False

    def spawnWide(self, spawn: Callable[[], _T]) -> _T:
        """Call C{spawn} with every CPU asked for, then put the daemon's mask back."""
        own = self._get(0)
        if own >= self._online or self._everyOnline(own):
            return spawn()
        try:
            self._set(0, self._every)
        except OSError as e:
            self._refused(e)
            return spawn()
        try:
            return spawn()
        finally:
            self._restore(own)

    def _everyOnline(self, own: set[int]) -> bool:
        """Whether C{own} holds every CPU online now (one may have gone offline)."""
        self._online = self._readOnline()
        return own >= self._online

    def _refused(self, error: OSError) -> None:
        if not self._warned:
            self._warned = True
            self.log.warn(
                "cannot ask for every CPU for the daemon's containers ({error}): they run"
                " on the daemon's CPUs, {cpus}",
                error=error.strerror or str(error),
                cpus=sorted(self._get(0)),
            )

    def _restore(self, own: set[int]) -> None:
        try:
            self._set(0, own)
        except OSError as e:
            self.log.critical(
                "cannot put the daemon's CPU mask back to {cpus} ({error}): it now runs"
                " on any CPU",
                cpus=sorted(own),
                error=e.strerror or str(e),
            )


def spawnWide(cpus: RunCpus | None, spawn: Callable[[], _T]) -> _T:
    """C{cpus.spawnWide(spawn)}, or C{spawn()} with the daemon's mask if C{cpus} is None."""
    return spawn() if cpus is None else cpus.spawnWide(spawn)
