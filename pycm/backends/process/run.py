"""
One run of a container as host processes: L{ProcessRun} (what the
supervisor signals) and L{RunProtocol} (its pipes, its output and its
exit).  Both are handed what they need; neither knows the runtime.
"""

from __future__ import annotations

import os
import signal as _signal
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from pycm.backends.process import procfs
from pycm.backends.process.cgroups import OomCount
from pycm.backends.process.output import LineSplitter, OutputPacer
from pycm.backends.process.spawn import STATUS_FD
from pycm.errors import BackendError
from pycm.interfaces import IRun, IRunObserver

#: Seconds to wait, after the main process exited, for its pipes to close,
#: and the most bytes then read from each before it is closed.
LINGER = 1.0
LINGER_DRAIN = 1024 * 1024

_STREAMS = {1: "stdout", 2: "stderr"}

#: Kills every process in the named cgroup.
KillCgroup = Callable[[str], object]
#: Kills, at the end of this reactor turn, what carries a run's marker:
#: (run id, earliest start time in ticks or None, container name).
SweepMarked = Callable[[str, "int | None", str], Deferred[None]]
#: The OOM count of the named cgroup (L{pycm.backends.process.cgroups.Cgroups.oomCount}).
ReadOomCount = Callable[[str], "OomCount | None"]
#: (run id, is its cgroup empty and removed) -> may the run's exit be told
#: before that is done (see L{pycm.backends.process.reclaim.MarkSweep.settle}).
SettleMarked = Callable[[str, bool], bool]


def exitCode(reason: Failure) -> int | None:
    """The status of an ended process, or minus the signal that ended it."""
    value = reason.value
    signum = getattr(value, "signal", None)
    if signum is not None:
        return -int(signum)
    code = getattr(value, "exitCode", None)
    return None if code is None else int(code)


@implementer(IRun)
class ProcessRun:
    """
    One run: a session and process group led by C{pid}.

    @ivar pid: the main process id (also the group and session id).
    @ivar startTime: C{[BOOT_ID, TICKS]}: the boot id and its start time
        in clock ticks (C{/proc/PID/stat}); None if it was already gone.
    @ivar group: the run's cgroup, or None.
    @ivar runId: the run's marker, or None.
    @ivar checkSetup: how its health checks start, worked out at the
        first (L{pycm.backends.process.health.CheckSetup}), or None.
    @ivar oomKilled: once it has exited, whether the kernel's OOM killer
        killed a process of its cgroup during the run (its memory limit).
    """

    def __init__(
        self,
        pid: int,
        startTime: Any,
        group: str | None,
        killCgroup: KillCgroup,
        runId: str | None = None,
    ) -> None:
        self.pid = pid
        self.startTime = startTime
        self.group = group
        self._killCgroup = killCgroup
        self.runId = runId
        self.checkSetup: Any = None
        #: The main process has been reaped: its pid may be reused.
        self.exited = False
        self.oomKilled = False

    def signal(self, signum: int) -> None:
        """Send C{signum} to the whole group; ignored once it has exited."""
        if self.exited:
            return
        if not procfs.signalGroup(self.pid, signum):
            # Before its setsid() the helper is not yet a group leader.
            try:
                os.kill(self.pid, signum)
            except OSError:
                pass
        if signum == _signal.SIGKILL and self.group is not None:
            self._killCgroup(self.group)

    def __repr__(self) -> str:
        return f"<ProcessRun pid={self.pid} startTime={self.startTime}>"


class RunProtocol(ProcessProtocol):
    """
    Reads one run's status pipe and output, reports to its observer, and
    cleans up after the run's end.

    @param clock: for the linger timer and the output budget.
    @param pacer: the daemon's output budget, shared by every run.
    @param sweepMarked: kills what carries the run's marker (L{SweepMarked}).
    @param killCgroup: kills everything in a cgroup.
    @param releaseCgroup: removes a cgroup once it is empty; True if it
        is gone at once.
    @param settleMarked: at the run's end, may its exit be told before
        what carries its marker is killed (L{SettleMarked}); None: no.
    @param proc: where C{/proc} is; C{bootId}: this boot's id.
    @param group: the run's cgroup, or None.
    @param runId: the run's marker, or None.
    @param endChecks: kills the run's health checks, given the run, when
        its main process exits.
    @param livePids: the main processes of runs not reaped yet: this
        run's pid is in it from its spawn to its reaping.
    @param oomCount: reads the OOM count of the run's cgroup: here, once
        the group is set up (a group an earlier run left, not yet removed,
        keeps its count), and at the main process's exit, before the group
        is removed.
    """

    log = Logger()

    def __init__(
        self,
        observer: IRunObserver,
        *,
        clock: IReactorTime,
        pacer: OutputPacer,
        sweepMarked: SweepMarked,
        killCgroup: KillCgroup,
        releaseCgroup: Callable[[str], object],
        settleMarked: SettleMarked | None = None,
        proc: str = procfs.PROC,
        bootId: str | None = None,
        group: str | None = None,
        runId: str | None = None,
        name: str = "",
        endChecks: Callable[[ProcessRun], object] | None = None,
        livePids: set[int] | None = None,
        oomCount: ReadOomCount | None = None,
    ):
        super().__init__()
        self._observer = observer
        self._clock = clock
        self._pacer = pacer
        self._sweepMarked = sweepMarked
        self._killCgroup = killCgroup
        self._releaseCgroup = releaseCgroup
        self._settleMarked = settleMarked
        #: The run's cgroup was removed (it was empty) at the main's exit.
        self._groupGone = False
        self._proc = proc
        self._bootId = bootId
        self._group = group
        self._runId = runId
        self._name = name
        self._endChecks = endChecks
        self._livePids = livePids
        self._oomCount = oomCount
        self._oomBefore: OomCount | None = None
        if oomCount is not None and group is not None:
            self._oomBefore = oomCount(group)
        #: Fires once what still carried the run's marker was killed.
        self._marked: Deferred[None] | None = None
        self._status = b""
        self.started: Deferred[ProcessRun] = Deferred()
        self.run: ProcessRun | None = None
        self._failed = False
        self._lines = {"stdout": LineSplitter(), "stderr": LineSplitter()}
        self._paused = False
        self._lingerCall: IDelayedCall | None = None
        #: The runtime's next look at whether the run leads its session.
        self.sessionCall: IDelayedCall | None = None

    def connectionMade(self) -> None:
        """
        The process exists (not yet reaped: Twisted may reap a fast one
        before spawnProcess even returns, and C{transport.pid} is then
        None), so its pid and start time are known here: the start time
        from the clock read around the spawn if that tells it, since
        C{/proc} would make the daemon wait for the child's C{execve}
        (L{pycm.backends.process.spawnclock}).
        """
        pid = self.transport.pid  # type: ignore[union-attr]
        if self._livePids is not None:
            self._livePids.add(pid)
        ticks = getattr(self.transport, "spawnTicks", None)
        if ticks is None:
            ticks = procfs.startTime(pid, self._proc)
        self.run = ProcessRun(
            pid,
            None if ticks is None else [self._bootId, ticks],
            self._group,
            self._killCgroup,
            self._runId,
        )

    # -- status pipe --------------------------------------------------------

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        if childFD == STATUS_FD:
            if len(self._status) < 4096:
                self._status += data
            return
        stream = _STREAMS.get(childFD)
        if stream is None or self._failed:
            return
        clock = self._clock
        began = clock.seconds()
        lines = self._lines[stream].feed(data)
        if lines:
            self._emit(stream, lines)
        if not self._pacer.spend(clock.seconds() - began):
            self._pause()

    def childConnectionLost(self, childFD: int) -> None:
        if childFD == STATUS_FD:
            self._statusDone()
            return
        stream = _STREAMS.get(childFD)
        if stream is not None:
            self._flushPartial(stream)

    def _statusDone(self) -> None:
        if self.started.called:
            return
        if self._status:
            self._failed = True
            message = self._status.decode("utf-8", "replace")
            self.started.errback(BackendError(message))
        else:
            assert self.run is not None
            self.started.callback(self.run)

    # -- output -------------------------------------------------------------

    def _emit(self, stream: str, lines: list[bytes]) -> None:
        try:
            self._observer.output(stream, lines)
        except Exception:
            self.log.failure("run observer failed on output")

    def _pause(self) -> None:
        """Stop reading until the output budget allows it again."""
        transport = self.transport
        if self._paused or transport is None:
            return
        self._paused = True
        transport.pauseProducing()  # type: ignore[attr-defined]
        self._pacer.hold(self._resume)

    def _resume(self) -> None:
        if not self._paused:
            return
        self._paused = False
        self._pacer.release(self._resume)
        transport = self.transport
        if transport is not None:
            transport.resumeProducing()  # type: ignore[attr-defined]

    def _flushPartial(self, stream: str) -> None:
        last = self._lines[stream].flush()
        if last and not self._failed:
            self._emit(stream, last)

    # -- exit ---------------------------------------------------------------

    def processExited(self, reason: Failure) -> None:
        """
        The main process is reaped: kill what is left of its group and its
        cgroup now, and (one look at C{/proc} for every run that ended
        meanwhile: at the end of this reactor turn, or later when the exit
        need not wait for it, see L{SettleMarked}) whatever still carries
        its run marker: processes that left both.  Whether the OOM killer
        killed something in its cgroup is read first (L{ProcessRun.oomKilled}).
        """
        if self.run is not None and self._livePids is not None:
            self._livePids.discard(self.run.pid)
        if self._runId is not None:
            notBefore = None
            if self.run is not None and isinstance(self.run.startTime, list):
                notBefore = self.run.startTime[1]
            self._marked = self._sweepMarked(self._runId, notBefore, self._name)
        if self.run is None:
            return
        self.run.exited = True
        if self._endChecks is not None:
            self._endChecks(self.run)
        procfs.signalGroup(self.run.pid, _signal.SIGKILL)
        if self._group is not None and self._oomCount is not None:
            # Read before the group is removed below, with the count.
            after = self._oomCount(self._group)
            if after is not None:
                self.run.oomKilled = after.killedSince(self._oomBefore, exitCode(reason))
        if self._group is not None:
            # Removed at once if empty (the kernel's word), else what is in
            # it is killed and the removal retried.
            self._groupGone = self._releaseCgroup(self._group) is True
        self._lingerCall = self._clock.callLater(LINGER, self._closePipes)

    def _closePipes(self) -> None:
        """
        A stray process still holds our pipes: stop waiting for it.  What
        is in them already (reading may have been paused) is read first, up
        to L{LINGER_DRAIN} bytes a pipe, so no line the run wrote is lost.
        """
        self._lingerCall = None
        transport = self.transport
        if transport is None:
            return
        self.log.warn(
            "pid {pid}: output pipes still open {linger}s after exit; closing them",
            pid=self.run.pid if self.run else None,
            linger=LINGER,
        )
        self._resume()
        pipes = getattr(transport, "pipes", {})
        for childFD, stream in _STREAMS.items():
            reader = pipes.get(childFD)
            if reader is not None:
                self._drainPipe(reader.fileno(), stream)
        for fd in (1, 2, STATUS_FD):
            transport.closeChildFD(fd)  # type: ignore[attr-defined]

    def _drainPipe(self, fd: int, stream: str) -> None:
        """Read what C{fd} (non-blocking) holds now, up to L{LINGER_DRAIN} bytes."""
        left = LINGER_DRAIN
        while left > 0:
            try:
                data = os.read(fd, min(left, 65536))
            except OSError:
                return
            if not data:
                return
            left -= len(data)
            lines = self._lines[stream].feed(data)
            if lines and not self._failed:
                self._emit(stream, lines)

    def processEnded(self, reason: Failure) -> None:
        for call in (self._lingerCall, self.sessionCall):
            if call is not None and call.active():
                call.cancel()
        self._lingerCall = self.sessionCall = None
        if self._paused:
            self._paused = False
            self._pacer.release(self._resume)
        if self.run is not None and not self.run.exited:
            self.run.exited = True
        self._statusDone()
        for stream in ("stdout", "stderr"):
            self._flushPartial(stream)
        contained = self._groupGone
        if self._group is not None and not contained:
            contained = self._releaseCgroup(self._group) is True
        if self._failed:
            return
        code = exitCode(reason)
        marked = self._marked
        if marked is not None and not marked.called:
            settle = self._settleMarked
            assert self._runId is not None
            if settle is None or not settle(self._runId, contained):
                # The exit is told once nothing of the run is left.
                marked.addCallback(lambda _: self._reportExit(code))
                return
            # The kernel says nothing is left in the run's cgroup; what left
            # it is killed by the look to come, whose run id is journaled.
        self._reportExit(code)

    def _reportExit(self, code: int | None) -> None:
        try:
            self._observer.exited(code)
        except Exception:
            self.log.failure("run observer failed on exit")
