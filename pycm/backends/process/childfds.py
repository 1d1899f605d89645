"""
The descriptors a child is given: those of its C{childFDs}, and no other.

Every other descriptor of the daemon is close-on-exec: those open before
the first spawn are made so (L{closeOnExecAll}), and Python opens every
later one so (PEP 446), as SQLite and Twisted do theirs.  So a spawn looks
only at the descriptors it hands on, not at every descriptor of the daemon
as Twisted's own C{posix_spawnp} does: the daemon holds three for each
running container, and with 2,000 running, listing them and asking each
for its flags cost about 20 ms of the reactor a start.
"""

from __future__ import annotations

import fcntl
import os
import signal as _signal
from typing import Any

from twisted.internet import process as _process

from pycm.backends.process.reaping import ReapedProcess
from pycm.backends.process.runcpus import RunCpus, spawnWide
from pycm.backends.process.spawnclock import timedSpawn

_closedOnExec: list[bool] = []


def closeOnExecAll() -> None:
    """Make every descriptor above 2 close-on-exec (once is enough: see above)."""
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        return
    for fd in fds:
        if fd > 2:
            try:
                os.set_inheritable(fd, False)
            except OSError:
                pass


def closeOnExecOnce() -> None:
    """L{closeOnExecAll}, the first time only."""
    if not _closedOnExec:
        closeOnExecAll()
        _closedOnExec.append(True)


def fileActions(fdmap: dict[int, int]) -> list[tuple[int, ...]]:
    """
    The C{posix_spawn} file actions that give the child C{fdmap} (child
    descriptor: the daemon's), looking only at those descriptors and at 0,
    1 and 2 (never close-on-exec: those the child is not given are closed).
    """
    fdState = []
    for fd in set(fdmap) | set(fdmap.values()) | {0, 1, 2}:
        try:
            fdState.append((fd, bool(fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC)))
        except OSError:
            pass
    return _process._getFileActions(
        fdState, fdmap, doClose=os.POSIX_SPAWN_CLOSE, doDup2=os.POSIX_SPAWN_DUP2
    )


def ignoredSignals() -> list[int]:
    """The signals the daemon ignores: its child starts with their defaults."""
    return [
        signum for signum in range(1, _signal.NSIG) if _signal.getsignal(signum) == _signal.SIG_IGN
    ]


class HandedOnProcess(ReapedProcess):
    """
    Twisted's process, started as Twisted starts it (C{posix_spawnp} of
    the executable, searched for on the child's C{PATH}), given only its
    C{childFDs} (L{fileActions}): the launcher and the exec helper.

    @param cpus: asks for every CPU around the spawn (None: the daemon's).
    """

    def __init__(self, reactor: Any, *args: Any, cpus: RunCpus | None = None,
                 **kwargs: Any) -> None:  # fmt: skip
        self._cpus = cpus
        super().__init__(reactor, *args, **kwargs)

    def _trySpawnInsteadOfFork(
        self, path: Any, uid: Any, gid: Any, executable: str, args: Any, environment: Any,
        kwargs: Any,
    ) -> bool:  # fmt: skip
        if uid is not None or gid is not None or path is not None:
            return False  # Twisted forks for these
        if getattr(self._reactor, "_neverUseSpawn", False):
            return False
        closeOnExecOnce()
        actions = fileActions(kwargs["fdmap"])
        ignored = ignoredSignals()
        env = os.environ if environment is None else environment
        def spawn() -> tuple[int, int | None]:
            return timedSpawn(
                lambda: os.posix_spawnp(
                    executable, args, env, file_actions=actions, setsigdef=ignored
                )
            )

        self.pid, self.spawnTicks = spawnWide(self._cpus, spawn)  # type: ignore[assignment]
        self.status = -1
        return True
