"""
Reaping the daemon's children through pidfds (L{ReapedProcess}).

Twisted reaps its children by calling C{waitpid(pid, WNOHANG)} for every
process it started on each C{SIGCHLD}: with 2,000 runs, each exit (of a run,
a health check, a helper) costs 2,000 system calls.  A L{ReapedProcess}
instead opens a pidfd for its child (C{pidfd_open}, Linux 5.3) and leaves
Twisted's list: the reactor tells it, through the pidfd becoming readable,
when its own child exited, and it is reaped then, once.  Where no pidfd can
be opened, the process stays with Twisted's reaping, as before.

Races, and why none loses an exit or reaps a stranger:
  - A child that exited before its pidfd was opened is a zombie still (only
    this process reaps it, and nothing reaps between the spawn and the
    C{pidfd_open} in the same reactor turn): its pidfd is readable at once.
  - The pid cannot be reused while the pidfd is watched: the child is not
    reaped until L{ReapedProcess.reapProcess} reaps it, and it then stops
    watching before telling anyone.
  - Its pipes may close first: Twisted then calls C{reapProcess} itself,
    which reaps if the child has exited (and stops watching) or waits for
    the pidfd.
  - The reactor removing every reader (its shutdown) hands the process back
    to Twisted's reaping (C{registerReapProcessHandler}, which reaps at once
    a child that already exited).
  - A child that never exits costs one open descriptor and nothing per
    C{SIGCHLD}.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet import process as _process
from twisted.logger import Logger
from twisted.python.failure import Failure

#: The wait status told for a child that someone else reaped (its own
#: status is lost): as if it exited with 255.
LOST_STATUS = 255 << 8


def openPidfd(pid: int) -> int | None:
    """
    A pidfd (close-on-exec) of C{pid}, or None if this system cannot open
    one (Linux before 5.3, a Python without C{os.pidfd_open}, a limit).
    """
    opener = getattr(os, "pidfd_open", None)
    if opener is None:
        return None
    try:
        fd: int = opener(pid)
    except OSError:
        return None
    return fd


class ExitWatch:
    """
    The reactor's reader of one child's pidfd: readable once the child
    exited (L{twisted.internet.interfaces.IReadDescriptor}).
    """

    def __init__(self, process: ReapedProcess, fd: int) -> None:
        self.process = process
        self.fd = fd

    def fileno(self) -> int:
        return self.fd

    def logPrefix(self) -> str:
        return "pidfd"

    def doRead(self) -> None:
        """The child exited: reap it."""
        self.process.reapProcess()

    def connectionLost(self, reason: Failure) -> None:
        """The reactor dropped this reader (its shutdown): see L{ReapedProcess}."""
        self.process._watchLost(self)

    def close(self) -> None:
        """Close the pidfd (once)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class ReapedProcess(_process.Process):
    """
    Twisted's L{twisted.internet.process.Process}, reaped when its pidfd
    says it exited (see this module) rather than on every C{SIGCHLD}.

    """

    log = Logger()
    #: The pidfd being watched, or None (Twisted's reaping, or reaped).
    exitWatch: ExitWatch | None = None
    #: The child's start time in clock ticks, from the clock read around
    #: its C{posix_spawn} (L{pycm.backends.process.spawnclock.timedSpawn},
    #: which the subclasses use), or None: ask /proc.
    spawnTicks: int | None = None

    def __init__(self, reactor: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(reactor, *args, **kwargs)
        self._watchExit()

    def openPidfd(self, pid: int) -> int | None:
        """A pidfd of C{pid} or None (L{openPidfd}; a seam for tests)."""
        return openPidfd(pid)

    def _watchExit(self) -> None:
        """Move from Twisted's reaping to a pidfd, if one can be opened."""
        pid = self.pid
        if pid is None or _process.reapProcessHandlers.get(pid) is not self:
            return  # already reaped, inside Process.__init__
        fd = self.openPidfd(pid)
        if fd is None:
            return
        watch = ExitWatch(self, fd)
        try:
            self._reactor.addReader(watch)
        except BaseException:
            watch.close()
            raise
        _process.unregisterReapProcessHandler(pid, self)
        self.exitWatch = watch

    def reapProcess(self) -> None:
        """
        Reap the child if it exited (its pidfd is readable, or its pipes
        closed); without a pidfd, Twisted's own.
        """
        watch = self.exitWatch
        if watch is None:
            super().reapProcess()
            return
        pid = self.pid
        assert pid is not None
        try:
            reaped, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            self.log.error("pid {pid}: reaped by someone else; its status is lost", pid=pid)
            reaped, status = pid, LOST_STATUS
        if not reaped:
            return
        self._unwatch(watch)
        self.processEnded(status)

    def _unwatch(self, watch: ExitWatch) -> None:
        self.exitWatch = None
        self._reactor.removeReader(watch)
        watch.close()

    def _watchLost(self, watch: ExitWatch) -> None:
        """
        The reactor removed the pidfd's reader: close it and give the child
        back to Twisted's reaping (which reaps it now if it exited).
        """
        if self.exitWatch is not watch:
            return
        self.exitWatch = None
        watch.close()
        if self.pid is not None:
            _process.registerReapProcessHandler(self.pid, self)
