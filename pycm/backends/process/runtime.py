"""
The process backend: containers are host processes, supervised by the
shared L{Supervisor}, with logs in rotating files, records in SQLite and
limits through cgroups.

The only image is C{host} (the host's own filesystem).  Without a command a
container runs the C{default-command} option (default C{sleep infinity}).

How a run starts (L{ProcessRuntime.spawn}):
  1. Checks up front, so the client gets a clear C{ERR backend}: the
     workdir exists and the executable is found (the container's C{PATH},
     relative to its workdir) and executable.  Limits are refused with
     C{BadRequest} when this daemon cannot enforce them.
  2. The process is started from an argument list, never through a shell:
       - a container without limits, on the real (POSIX) reactor: the
         command itself, with C{posix_spawn} (L{_SpawnedProcess}): in a
         session and process group of its own (C{POSIX_SPAWN_SETSID}),
         born in its tracking cgroup (the daemon moves itself into the
         group around the spawn, and back), in its workdir (the daemon
         changes its own directory around the spawn), with C{/dev/null} on
         stdin.  The daemon is single-threaded there, so nothing sees its
         borrowed group or directory; no Python code runs in the child;
         an executable that cannot be run fails the spawn at once.  No
         per-spawn scan of open descriptors: every descriptor of the
         daemon is close-on-exec (L{ProcessRuntime} makes sure at start).
       - otherwise, without limits (a fake reactor in tests):
         C{env -C WORKDIR setsid -- COMMAND...}
         (coreutils and util-linux, on every Linux), with C{/dev/null} on
         stdin, started with C{posix_spawn}.  C{setsid} makes the run the
         leader of its own session and process group (whose id is its pid)
         and C{execvp}s the command.  The spawn fires once C{/proc} shows
         the run leading its session (a few milliseconds).  Should the exec
         still fail after the checks of step 1, C{setsid} says why on stderr
         (a log line) and exits 126 or 127.
       - a container with C{--memory}/C{--cpus} (or no C{setsid} on the
         machine): the exec helper C{python -I -S -c EXEC_HELPER ...}, which
         calls C{setsid()}, joins the container's cgroups (so every process
         it ever forks is inside), puts C{/dev/null} on stdin, changes to the
         workdir and C{execve}s the command.  A status pipe (fd 3,
         close-on-exec in the helper) says whether the exec worked: it closes
         empty on success; on failure the helper writes the reason and exits
         127, the spawn fails with L{BackendError} and the supervisor leaves
         the container C{dead} with that C{error}.  Python costs ~10-20 ms a
         start, so it is only used where it is needed.

Environment: C{PATH}, C{HOME}, C{LANG=C.UTF-8}, then the container's
C{--env}, then C{PYCM_CONTAINER=NAME} and C{PYCM_RUN_ID=ID} (the run's
marker, which C{--env} cannot override).  Workdir: C{--workdir}, else the
C{default-workdir} option (default C{/}).

Containment: a run is its process group; every container is also in a
tracking cgroup when the daemon can make one (see L{pycm.backends.process.cgroups}); and
every process of a run carries the run's marker (C{PYCM_RUN_ID}) in its
environment.  SIGKILL and the end of a run -- so C{stop}, C{rm --force},
C{kill} and the daemon's shutdown -- kill the whole process group and the
whole cgroup at once, then (L{MarkSweep}: one look at C{/proc} per reactor
turn for every run that ended in it) every process that still carries the
run's marker: one that called C{setsid} and also moved itself out of the
cgroup (root can write any C{cgroup.procs}) is found that way.  The exit is
reported once that is done.  Reclaiming after a crash does the same
(L{ProcessRuntime.sweep}).  A process is signalled through a pidfd opened
before its environment is read, so a pid reused meanwhile is never hit.
What can still escape: a process that leaves the process group and the
cgroup (or runs without cgroups) I{and} drops the marker (it executes a
program with a new environment, C{env -i ...}, or overwrites the memory
its environment is in); and, for a daemon that is not root, a process it
may not read or signal (a set-user-id program).  C{info} says which
guarantee holds.

Output: stdout and stderr are split into lines (a newline ends a line; a
final line without one is kept; a line longer than 64 KiB is cut into
several lines of at most 64 KiB, so nothing is lost and nothing grows
without bound: L{pycm.backends.process.output.LineSplitter}).  Each
chunk read is handed on as one batch of lines.  The time the daemon spends
on output is kept under a share of its time, summed over every container
(L{pycm.backends.process.output.OutputPacer}): past it, reading is paused, so a
container that floods its output blocks on its full pipe (as under Docker)
and the daemon stays responsive; nothing the container wrote is lost.

After a daemon crash (L{ProcessRuntime.reclaim}): a run is recognised by
its pid, its start time from C{/proc/PID/stat} (a recycled pid has
another start time) and the boot id (after a reboot the same pid and start
time can name another process: then nothing is signalled), and stopped:
the stop signal to its group, SIGKILL after the stop timeout.  Then
L{ProcessRuntime.sweep} looks at every process once and kills those that
carry the run id of one of the daemon's records (runs a dead daemon was
starting, escapees), and kills and removes the records' leftover cgroups.
"""

from __future__ import annotations

import fcntl
import os
import pwd
import resource
import shlex
import shutil
import signal as _signal
import subprocess
import sys
from collections.abc import Collection, Mapping
from typing import Any

from twisted.internet import process as _process
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.posixbase import PosixReactorBase
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.filepath import FilePath
from zope.interface import implementer

from pycm.backends.process import procfs
from pycm.backends.process.cgroups import NO_CGROUPS, Cgroups, detect, movePid
from pycm.backends.process.logfiles import DEFAULT_MAX_FILES, DEFAULT_MAX_SIZE, FileLogStore
from pycm.backends.process.output import LineSplitter, OutputPacer
from pycm.backends.process.usage import UsageReader
from pycm.backends.supervisor.backend import Supervisor, defaultIdFactory
from pycm.errors import BackendError, BadRequest, PycmError
from pycm.interfaces import IRun, IRunObserver, IRuntime, IRuntimeStats, IRuntimeSweep
from pycm.model import (
    ALL_OPTIONS,
    DEFAULT_PATH,
    STATS_FIGURES,
    Capabilities,
    Container,
    ContainerSpec,
    parseSignal,
)
from pycm.stats import Usage
from pycm.store import SQLiteStore
from pycm.units import parseSize

#: The process backend's only image.
HOST_IMAGE = "host"
DEFAULT_COMMAND = ("sleep", "infinity")
DEFAULT_WORKDIR = "/"
#: Seconds to wait, after the main process exited, for its pipes to close,
#: and the most bytes then read from each before it is closed.
LINGER = 1.0
LINGER_DRAIN = 1024 * 1024
#: How often L{ProcessRuntime.reclaim} looks whether a process is gone.
RECLAIM_POLL = 0.05
#: The most looks at /proc for processes carrying a run marker, while new
#: ones turn up (each look kills what it finds).
MARK_ROUNDS = 10
#: The most of its time the daemon spends looking for processes carrying
#: the marker of runs that ended (see L{MarkSweep}), and the longest it
#: makes a run's end wait for a look.
MARK_DUTY = 0.5
MARK_MAX_DELAY = 1.0
#: How long reclaim waits after SIGKILL before giving up.
RECLAIM_KILL_WAIT = 5.0
#: How often, and at most how long, spawn looks whether a run leads its session.
SESSION_POLL = 0.001
SESSION_WAIT = 5.0
#: The exit status of the helper when it could not execute the command.
EXEC_FAILED = 127

_STATUS_FD = 3
_FIND = object()
_STREAMS = {1: "stdout", 2: "stderr"}

#: The exec helper (see the module docstring).  argv: workdir, executable,
#: the number N of cgroup.procs files, those N files, "--", the command.
EXEC_HELPER = r"""
import os, signal, sys
def main(argv):
    os.set_inheritable(3, False)
    workdir, executable, count = argv[1], argv[2], int(argv[3])
    procs, command = argv[4:4 + count], argv[5 + count:]
    stage = "setsid"
    try:
        os.setsid()
        stage = "join cgroup"
        for path in procs:
            fd = os.open(path, os.O_WRONLY)
            try:
                os.write(fd, str(os.getpid()).encode())
            finally:
                os.close(fd)
        stage = "open /dev/null"
        null = os.open("/dev/null", os.O_RDONLY)
        if null != 0:
            os.dup2(null, 0)
            os.close(null)
        else:
            os.set_inheritable(0, True)
        stage = "chdir to " + workdir
        os.chdir(workdir)
        # Python ignores these; a command must start with the defaults.
        for name in ("SIGPIPE", "SIGXFSZ"):
            if hasattr(signal, name):
                signal.signal(getattr(signal, name), signal.SIG_DFL)
        stage = "exec " + executable
        os.execve(executable, command, os.environ)
    except OSError as e:
        os.write(3, (stage + ": " + (e.strerror or str(e))).encode("utf-8", "replace"))
        os._exit(127)
main(sys.argv)
"""

MiB = 1024 * 1024


def findExecutable(command: str, path: str, workdir: str) -> str:
    """
    Resolve C{command} as C{execvp} would, with C{path} as C{PATH} and
    relative names taken from C{workdir}.

    @return: the absolute path of the executable.
    @raise BackendError: saying why it cannot be executed.
    """
    if not command:
        raise BackendError("exec: empty command")
    if "/" in command:
        candidates = [os.path.join(workdir, command)]
    else:
        candidates = [
            os.path.join(workdir, directory or ".", command) for directory in path.split(os.pathsep)
        ]
    denied = None
    for candidate in candidates:
        if os.path.isdir(candidate):
            if "/" in command:
                raise BackendError(f"exec: {command!r}: is a directory")
            continue
        if os.path.exists(candidate):
            if os.access(candidate, os.X_OK):
                return os.path.normpath(candidate)
            denied = candidate
    if denied is not None:
        raise BackendError(f"exec: {command!r}: permission denied ({denied})")
    if "/" in command:
        raise BackendError(f"exec: {command!r}: no such file or directory")
    raise BackendError(f"exec: {command!r}: executable file not found in $PATH")


_launcher: list[tuple[str, str] | None] = []


def findLauncher() -> tuple[str, str] | None:
    """
    The C{env} (with C{-C DIR}) and C{setsid} executables of this machine,
    or None if either is missing or too old (checked once, by running them).
    """
    if not _launcher:
        envPath = shutil.which("env", path=DEFAULT_PATH)
        setsidPath = shutil.which("setsid", path=DEFAULT_PATH)
        found = None
        if envPath and setsidPath:
            try:
                result = subprocess.run(
                    [envPath, "-C", "/", setsidPath, "--", "true"],
                    stdin=subprocess.DEVNULL,
                    capture_output=True,
                    timeout=10,
                )
                if result.returncode == 0:
                    found = (envPath, setsidPath)
            except (OSError, subprocess.SubprocessError):
                pass
        _launcher.append(found)
    return _launcher[0]


def closeOnExecAll() -> None:
    """Make every descriptor above 2 close-on-exec (see L{_SpawnedProcess})."""
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


class _SpawnedProcess(_process.Process):
    """
    Twisted's L{Process}, started with C{posix_spawn} in a new session, in
    the run's workdir and tracking cgroup; see the module docstring.
    """

    def __init__(
        self,
        reactor: Any,
        runtime: ProcessRuntime,
        executable: str,
        args: list[str],
        environment: dict[str, str],
        proto: ProcessProtocol,
        childFDs: dict[int, Any],
        workdir: str,
        join: str | None,
    ) -> None:
        self._runtime = runtime
        self._workdir = workdir
        self._join = join
        super().__init__(reactor, executable, args, environment, None, proto, childFDs=childFDs)

    def _trySpawnInsteadOfFork(
        self, path: Any, uid: Any, gid: Any, executable: str, args: Any, environment: Any,
        kwargs: Any,
    ) -> bool:  # fmt: skip
        fdmap: dict[int, int] = kwargs["fdmap"]
        used = set(fdmap) | set(fdmap.values())
        fdState = []
        for fd in used:
            try:
                fdState.append((fd, bool(fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC)))
            except OSError:
                pass
        actions = _process._getFileActions(
            fdState, fdmap, doClose=os.POSIX_SPAWN_CLOSE, doDup2=os.POSIX_SPAWN_DUP2
        )
        runtime = self._runtime
        me = os.getpid()
        os.chdir(self._workdir)
        try:
            if self._join is not None:
                movePid(self._join, me)
            try:
                self.pid = os.posix_spawn(  # type: ignore[assignment]
                    executable,
                    args,
                    environment,
                    file_actions=actions,
                    setsigdef=runtime.ignoredSignals(),
                    setsid=True,
                )
            finally:
                if self._join is not None:
                    runtime.goHome()
        finally:
            runtime.restoreDirectory()
        self.status = -1
        return True


def _exitCode(reason: Failure) -> int | None:
    """The status of an ended process, or minus the signal that ended it."""
    value = reason.value
    signum = getattr(value, "signal", None)
    if signum is not None:
        return -int(signum)
    code = getattr(value, "exitCode", None)
    return None if code is None else int(code)


def _killpg(pgid: int, signum: int) -> bool:
    """Signal a process group; False if it does not exist."""
    try:
        os.killpg(pgid, signum)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return False


@implementer(IRun)
class ProcessRun:
    """
    One run: a session and process group led by C{pid}.

    @ivar pid: the main process id (also the group and session id).
    @ivar startTime: C{[BOOT_ID, TICKS]}: the boot id and its start time
        in clock ticks (C{/proc/PID/stat}); None if it was already gone.
    """

    def __init__(
        self, runtime: ProcessRuntime, pid: int, startTime: Any, group: str | None
    ) -> None:
        self._runtime = runtime
        self.pid = pid
        self.startTime = startTime
        self.group = group
        #: The main process has been reaped: its pid may be reused.
        self.exited = False

    def signal(self, signum: int) -> None:
        """Send C{signum} to the whole group; ignored once it has exited."""
        if self.exited:
            return
        if not _killpg(self.pid, signum):
            # Before its setsid() the helper is not yet a group leader.
            try:
                os.kill(self.pid, signum)
            except OSError:
                pass
        if signum == _signal.SIGKILL and self.group is not None:
            self._runtime.cgroups.killAll(self.group)

    def __repr__(self) -> str:
        return f"<ProcessRun pid={self.pid} startTime={self.startTime}>"


class _RunProtocol(ProcessProtocol):
    """Reads one run's status pipe and output; reports to its observer."""

    def __init__(
        self,
        runtime: ProcessRuntime,
        observer: IRunObserver,
        group: str | None,
        runId: str | None = None,
        name: str = "",
    ):
        super().__init__()
        self._runtime = runtime
        self._observer = observer
        self._group = group
        self._runId = runId
        self._name = name
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
        None), so its pid and start time are known here.
        """
        pid = self.transport.pid  # type: ignore[union-attr]
        ticks = procfs.startTime(pid, self._runtime.proc)
        self.run = ProcessRun(
            self._runtime,
            pid,
            None if ticks is None else [self._runtime.bootId, ticks],
            self._group,
        )

    # -- status pipe --------------------------------------------------------

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        if childFD == _STATUS_FD:
            if len(self._status) < 4096:
                self._status += data
            return
        stream = _STREAMS.get(childFD)
        if stream is None or self._failed:
            return
        clock = self._runtime.reactor
        began = clock.seconds()
        lines = self._lines[stream].feed(data)
        if lines:
            self._emit(stream, lines)
        if not self._runtime.pacer.spend(clock.seconds() - began):
            self._pause()

    def childConnectionLost(self, childFD: int) -> None:
        if childFD == _STATUS_FD:
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
            self._runtime.log.failure("run observer failed on output")

    def _pause(self) -> None:
        """Stop reading until the output budget allows it again."""
        transport = self.transport
        if self._paused or transport is None:
            return
        self._paused = True
        transport.pauseProducing()  # type: ignore[attr-defined]
        self._runtime.pacer.hold(self._resume)

    def _resume(self) -> None:
        if not self._paused:
            return
        self._paused = False
        self._runtime.pacer.release(self._resume)
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
        cgroup now, and (at the end of this reactor turn, one look at
        C{/proc} for every run that ended in it) whatever still carries its
        run marker: processes that left both.
        """
        if self._runId is not None:
            notBefore = None
            if self.run is not None and isinstance(self.run.startTime, list):
                notBefore = self.run.startTime[1]
            self._marked = self._runtime.markSweep.kill(self._runId, notBefore, self._name)
        if self.run is None:
            return
        self.run.exited = True
        _killpg(self.run.pid, _signal.SIGKILL)
        if self._group is not None:
            self._runtime.cgroups.killAll(self._group)
        self._lingerCall = self._runtime.reactor.callLater(LINGER, self._closePipes)

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
        self._runtime.log.warn(
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
        for fd in (1, 2, _STATUS_FD):
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
            self._runtime.pacer.release(self._resume)
        if self.run is not None and not self.run.exited:
            self.run.exited = True
        self._statusDone()
        for stream in ("stdout", "stderr"):
            self._flushPartial(stream)
        if self._group is not None:
            self._runtime._releaseGroup(self._group)
        if self._failed:
            return
        code = _exitCode(reason)
        marked = self._marked
        if marked is not None and not marked.called:
            # The exit is told once nothing of the run is left.
            marked.addCallback(lambda _: self._reportExit(code))
        else:
            self._reportExit(code)

    def _reportExit(self, code: int | None) -> None:
        try:
            self._observer.exited(code)
        except Exception:
            self._runtime.log.failure("run observer failed on exit")


class MarkSweep:
    """
    Kills the processes still carrying the run marker (C{PYCM_RUN_ID}) of
    runs that ended: those that left both the run's process group and its
    cgroup.  The runs that end in one reactor turn share one look at
    C{/proc} (at the end of that turn), and a look that took T seconds is
    followed by at least T/L{MARK_DUTY} - T seconds without one: stopping
    many containers at once gathers them into fewer looks instead of
    reading every process once per container.
    """

    def __init__(self, runtime: ProcessRuntime) -> None:
        self._runtime = runtime
        #: run id -> (earliest start time, container name, waiters)
        self._pending: dict[str, tuple[int | None, str, list[Deferred[None]]]] = {}
        self._call: IDelayedCall | None = None
        #: No look before this time (reactor seconds).
        self._notUntil = 0.0

    def kill(self, runId: str, notBefore: int | None, name: str) -> Deferred[None]:
        """
        Kill what carries C{runId} at the end of this reactor turn.

        @param notBefore: the run's start time in clock ticks (older
            processes cannot carry its marker and are not read), or None.
        @return: a Deferred that fires once that is done.
        """
        done: Deferred[None] = Deferred()
        _, _, waiters = self._pending.setdefault(runId, (notBefore, name, []))
        waiters.append(done)
        if self._call is None:
            clock = self._runtime.reactor
            delay = min(max(self._notUntil - clock.seconds(), 0.0), MARK_MAX_DELAY)
            self._call = clock.callLater(delay, self.sweep)
        return done

    def sweep(self) -> None:
        """Do the pending work now (also what L{ProcessRuntime.close} calls)."""
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        pending, self._pending = self._pending, {}
        if not pending:
            return
        starts = [notBefore for notBefore, _, _ in pending.values()]
        notBefore = None if None in starts else min(s for s in starts if s is not None)
        clock = self._runtime.reactor
        began = clock.seconds()
        try:
            killed = self._runtime.killMarked(set(pending), notBefore)
        except Exception:
            self._runtime.log.failure("looking for processes of ended runs")
            killed = {}
        ended = clock.seconds()
        self._notUntil = ended + max(ended - began, 0.0) * (1 / MARK_DUTY - 1)
        for runId, pids in killed.items():
            self._runtime.log.info(
                "{name}: killed {pids}, which outlived the container"
                " (out of its process group and cgroup, found by its run marker)",
                name=pending[runId][1],
                pids=pids,
            )
        for _, _, waiters in pending.values():
            for waiter in waiters:
                waiter.callback(None)


@implementer(IRuntime, IRuntimeSweep, IRuntimeStats)
class ProcessRuntime:
    """
    Starts runs as host processes: see the module docstring.

    @param reactor: an C{IReactorProcess} and C{IReactorTime}.
    @param defaultCommand: the command of containers created without one.
    @param cgroups: what limits can be enforced (see L{pycm.backends.process.cgroups.detect}).
    @param defaultWorkdir: the workdir of containers created without one.
    @param python: the interpreter that runs the exec helper.
    @param launcher: the C{env} and C{setsid} executables for runs without
        limits when not native (see L{findLauncher}, the default); None:
        use the Python helper.
    @param native: start runs without limits with L{_SpawnedProcess} on a
        POSIX reactor (False: the launcher or the helper, for tests).
    """

    images = frozenset({HOST_IMAGE})
    defaultImage = HOST_IMAGE
    log = Logger()

    def __init__(
        self,
        reactor: Any,
        defaultCommand: tuple[str, ...] = DEFAULT_COMMAND,
        cgroups: Cgroups = NO_CGROUPS,
        defaultWorkdir: str = DEFAULT_WORKDIR,
        python: str = sys.executable,
        proc: str = procfs.PROC,
        launcher: tuple[str, str] | None | object = _FIND,
        native: bool = True,
    ) -> None:
        if not defaultCommand:
            raise BadRequest("the default command must not be empty")
        self.reactor = reactor
        self.defaultCommand = tuple(defaultCommand)
        self.cgroups = cgroups
        self.defaultWorkdir = defaultWorkdir
        self.python = python
        self.proc = proc
        if launcher is _FIND:
            launcher = findLauncher()
        self.launcher: tuple[str, str] | None = launcher  # type: ignore[assignment]
        self._devnull: int | None = None
        #: Retries of cgroup removals, by group: finished or dropped by close.
        self._releaseCalls: dict[str, Any] = {}
        #: Kills what still carries the marker of runs that ended.
        self.markSweep = MarkSweep(self)
        #: Reads the runs' usage for C{stats}.
        self.usageReader = UsageReader(cgroups, proc)
        #: The daemon's time budget for its containers' output.
        self.pacer = OutputPacer(reactor)
        self._cwd: int | None = None
        self._ignored: list[int] | None = None
        self.native = native
        self.bootId = procfs.bootId(proc)
        unenforced = {"memory", "cpus"} - cgroups.limits
        if cgroups.tracking is not None:
            containment = (
                "containment: process group, cgroup and run marker (stop, rm and kill"
                " reach the run's process group, every process in its cgroup, and"
                " every process that still carries the run's marker in its"
                " environment; a process that both leaves the cgroup and drops its"
                " environment, e.g. env -i, is out of reach: without namespaces, a"
                " container run as root can always do that)"
            )
        else:
            containment = (
                "containment: process group and run marker, no cgroup (stop, rm and"
                " kill reach the run's process group and every process that still"
                " carries the run's marker in its environment; a process that leaves"
                " its session and drops its environment, e.g. env -i, is out of reach)"
            )
        if "memory" in cgroups.limits and not cgroups.swapLimited:
            containment += "; --memory bounds RAM only (no swap accounting: it may swap)"
        self.capabilities = Capabilities(
            options=ALL_OPTIONS - unenforced,
            limits=cgroups.limits,
            images="host: commands run as processes on the host's own filesystem; " + containment,
            stats=STATS_FIGURES,
        )
        try:
            home = pwd.getpwuid(os.geteuid()).pw_dir
        except KeyError:
            home = "/"
        self.baseEnvironment = {"PATH": DEFAULT_PATH, "HOME": home, "LANG": "C.UTF-8"}
        #: This daemon's state directory, carried by every run (C{PYCM_STATE})
        #: so that a run whose record is lost can still be told from another
        #: daemon's container of the same name (None: not marked).
        self.stateMarker: str | None = None

    def environment(self, container: Container, runId: str | None = None) -> dict[str, str]:
        """
        The whole environment of a run of C{container}: the markers come
        last, so C{--env} cannot override them.
        """
        env = dict(self.baseEnvironment)
        env.update(container.env)
        env["PYCM_CONTAINER"] = container.name
        env.pop("PYCM_STATE", None)
        if self.stateMarker is not None:
            env["PYCM_STATE"] = self.stateMarker
        env.pop("PYCM_RUN_ID", None)
        if runId is not None:
            env["PYCM_RUN_ID"] = runId
        return env

    def ignoredSignals(self) -> list[int]:
        """
        The signals the daemon ignores, so that a child starts with the
        defaults (looked up once: the daemon does not change them later).
        """
        if self._ignored is None:
            self._ignored = [
                signum
                for signum in range(1, _signal.NSIG)
                if _signal.getsignal(signum) == _signal.SIG_IGN
            ]
        return self._ignored

    def goHome(self) -> None:
        """Move the daemon back to its own tracking cgroup after a spawn."""
        home = self.cgroups.home
        if home is None:
            return
        try:
            movePid(home, os.getpid())
        except OSError:
            self.log.critical(
                "cannot move the daemon back to its cgroup ({home}):"
                " stopping a container may now hit the daemon's group",
                home=home,
            )

    def restoreDirectory(self) -> None:
        """Go back to the daemon's own working directory after a spawn."""
        if self._cwd is not None:
            os.fchdir(self._cwd)

    @staticmethod
    def groupName(container: Container) -> str:
        """The name of C{container}'s cgroup."""
        return f"{container.name}-{container.id[:12]}"

    def spawn(
        self, container: Container, observer: IRunObserver, runId: str | None = None
    ) -> Deferred[IRun]:
        """
        Start one run of C{container}; see L{IRuntime.spawn}.

        @param runId: the run's marker (C{PYCM_RUN_ID}), which
            L{sweep} and runs without cgroups find its processes by.
        """
        try:
            return self._spawn(container, observer, runId)
        except PycmError as e:
            return fail(e)
        except Exception as e:
            return fail(BackendError(f"could not start {container.name}: {e}"))

    def _spawn(
        self, container: Container, observer: IRunObserver, runId: str | None
    ) -> Deferred[IRun]:
        if container.image not in self.images:
            raise BackendError(f"the process backend cannot run image {container.image!r}")
        self.cgroups.check(container.memory, container.cpus)
        command = list(container.command)
        if not command:
            raise BackendError("no command to run")
        env = self.environment(container, runId)
        workdir = container.workdir or self.defaultWorkdir
        if not os.path.isabs(workdir):
            raise BackendError(f"workdir {workdir!r} is not an absolute path")
        if not os.path.isdir(workdir):
            raise BackendError(f"workdir {workdir!r} does not exist")
        executable = findExecutable(command[0], env.get("PATH", ""), workdir)
        group = None
        procs: list[str] = []
        limited = container.memory is not None or container.cpus is not None
        if limited or self.cgroups.tracking is not None:
            group = self.groupName(container)
            procs = self.cgroups.prepare(group, container.memory, container.cpus)
        protocol = _RunProtocol(self, observer, group, runId, container.name)
        native = self.native and not limited and isinstance(self.reactor, PosixReactorBase)
        fast = not native and not procs and self.launcher is not None
        try:
            if native:
                if self._cwd is None:
                    closeOnExecAll()
                    self._cwd = os.open(".", os.O_RDONLY | os.O_CLOEXEC)
                _SpawnedProcess(
                    self.reactor,
                    self,
                    executable,
                    command,
                    env,
                    protocol,
                    {0: self._nullFD(), 1: "r", 2: "r"},
                    workdir,
                    procs[0] if procs else None,
                )
                transport = None
            elif fast:
                # setsid execvp()s with the container's PATH, from the workdir,
                # as findExecutable did.  No path=: Twisted then uses
                # posix_spawn, whose child runs no Python code before exec
                # (a fork()ed child could swallow an early SIGTERM).
                envPath, setsidPath = self.launcher  # type: ignore[misc]
                transport = self.reactor.spawnProcess(
                    protocol,
                    envPath,
                    ["env", "-C", workdir, setsidPath, "--", *command],
                    env=env,
                    path=None,
                    usePTY=False,
                    childFDs={0: self._nullFD(), 1: "r", 2: "r"},
                )
            else:
                argv = [self.python, "-I", "-S", "-c", EXEC_HELPER, workdir, executable]
                argv += [str(len(procs)), *procs, "--", *command]
                transport = self.reactor.spawnProcess(
                    protocol,
                    self.python,
                    argv,
                    env=env,
                    path=None,
                    usePTY=False,
                    childFDs={1: "r", 2: "r", _STATUS_FD: "r"},
                )
        except BaseException as e:
            # Nothing was started: the group made for the run goes too.
            if group is not None:
                self._releaseGroup(group)
            if not isinstance(e, OSError):
                raise
            what = f"exec {executable}" if native else "spawn"
            raise BackendError(f"could not start {container.name}: {what}: {e.strerror}") from e
        del transport  # its pid is None once reaped: the run keeps it
        if native:
            if not protocol.started.called and protocol.run is not None:
                protocol.started.callback(protocol.run)
        elif fast:
            self._awaitSession(protocol, SESSION_WAIT / SESSION_POLL)
        return protocol.started  # type: ignore[return-value]

    def _awaitSession(self, protocol: _RunProtocol, attempts: float) -> None:
        """
        Fire C{protocol.started} once the run leads its own session (so
        every signal reaches its group), or has already exited.
        """
        run = protocol.run
        if protocol.started.called or run is None:
            return
        stat = procfs.readStat(run.pid, self.proc)
        if stat is None or not stat.alive or stat.session == run.pid or attempts <= 0:
            protocol.started.callback(run)
            return
        protocol.sessionCall = self.reactor.callLater(
            SESSION_POLL, self._awaitSession, protocol, attempts - 1
        )

    def usage(self, runs: list[tuple[Container, IRun]]) -> list[Usage | None]:
        """
        Each run's usage, from its cgroups, else C{/proc}
        (L{pycm.backends.process.usage}).
        """
        wanted = [
            (getattr(run, "group", None), run.pid, container.memory, container.cpus)
            for container, run in runs
        ]
        return list(self.usageReader.read(wanted))

    def _nullFD(self) -> int:
        """A descriptor of /dev/null, kept open, for the runs' stdin."""
        if self._devnull is None:
            self._devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        return self._devnull

    def close(self) -> None:
        """Release what the runtime holds (not the runs)."""
        self.markSweep.sweep()
        for group, call in list(self._releaseCalls.items()):
            call.cancel()
            self.cgroups.killAll(group)
            self.cgroups.release(group)
        self._releaseCalls.clear()
        if self._devnull is not None:
            os.close(self._devnull)
            self._devnull = None
        if self._cwd is not None:
            os.close(self._cwd)
            self._cwd = None

    def _releaseGroup(self, group: str, attempts: int = 20) -> None:
        """Remove a run's cgroup once its processes are gone (retrying)."""
        self._releaseCalls.pop(group, None)
        self.cgroups.killAll(group)
        if not self.cgroups.release(group) and attempts > 0:
            self._releaseCalls[group] = self.reactor.callLater(
                0.1, self._releaseGroup, group, attempts - 1
            )

    def killMarked(
        self, runIds: Collection[str], notBefore: int | None = None
    ) -> dict[str, list[int]]:
        """
        SIGKILL every live process started with one of C{runIds} as its
        C{PYCM_RUN_ID}, whatever its session, process group, cgroup or
        user (see L{procfs.killIfMarked}: never a process that reused a
        pid); look again while new ones turn up (one may fork while it is
        being killed), at most L{MARK_ROUNDS} looks.

        @param notBefore: the earliest start time of the runs, in clock
            ticks: older processes cannot carry their markers and their
            environments are not read.  None: read every process's.
        @return: the pids killed, by run id.
        """
        found: dict[str, list[int]] = {}
        if not runIds:
            return found
        me = os.getpid()
        signalled: set[tuple[int, int]] = set()
        for _ in range(MARK_ROUNDS):
            fresh = False
            for stat in procfs.allStats(self.proc):
                key = (stat.pid, stat.startTime)
                if stat.pid == me or not stat.alive or key in signalled:
                    continue
                if notBefore is not None and stat.startTime < notBefore:
                    continue
                runId = procfs.killIfMarked(stat.pid, runIds, proc=self.proc)
                if runId is None:
                    continue
                signalled.add(key)
                fresh = True
                found.setdefault(runId, []).append(stat.pid)
            if not fresh:
                break
        return found

    def killStrays(self, names: Collection[str]) -> list[int]:
        """
        SIGKILL every live process of a run of this daemon's (its
        C{PYCM_STATE} is L{stateMarker}) of a container named in C{names},
        whatever its run: for records put aside with no run id left to
        read.  Only ever called before any run of those names is started.

        @return: the pids killed.
        """
        if self.stateMarker is None or not names:
            return []

        def stray(environ: bytes) -> str | None:
            if procfs.environValue(environ, "PYCM_STATE") != self.stateMarker:
                return None
            name = procfs.environValue(environ, "PYCM_CONTAINER")
            return name if name is not None and name in names else None

        me = os.getpid()
        killed: list[int] = []
        for _ in range(MARK_ROUNDS):
            fresh = [
                stat.pid
                for stat in procfs.allStats(self.proc)
                if stat.pid != me
                and stat.alive
                and stat.pid not in killed
                and procfs.killIf(stat.pid, stray, proc=self.proc) is not None
            ]
            if not fresh:
                break
            killed += fresh
        return killed

    def sweep(
        self, runs: dict[str, Container], strays: Collection[str] = ()
    ) -> Deferred[list[str]]:
        """
        After a daemon restart, once every leftover run was reclaimed: kill
        whatever still carries the run id of one of C{runs} (run id ->
        container), and kill and remove their leftover cgroups; kill what
        runs of the containers named in C{strays} (see L{killStrays}).

        @return: Deferred firing with the run ids something was found of.
        """
        strayed = self.killStrays(strays)
        if strayed:
            self.log.info(
                "killed {pids}, left running by a previous daemon for {names}"
                " (their records are quarantined)",
                pids=strayed,
                names=sorted(strays),
            )
        killed = self.killMarked(set(runs))
        for runId, pids in killed.items():
            self.log.info(
                "{name}: killed {pids}, left over from run {runId} of a previous daemon",
                name=runs[runId].name,
                pids=pids,
                runId=runId,
            )
        found = set(killed)
        present = self.cgroups.groups()
        for runId, container in runs.items():
            group = self.groupName(container)
            if group in present:
                if self.cgroups.killAll(group):
                    found.add(runId)
                self._releaseGroup(group)
        return succeed(sorted(found))

    def reclaim(self, container: Container, pid: int | None, startTime: Any) -> Deferred[bool]:
        """
        Stop a run a dead daemon left: see L{IRuntime.reclaim}.  A pid whose
        start time or boot id differs (or is unknown) is not touched.
        """
        group = self.groupName(container)
        ticks: int | None = None
        if isinstance(startTime, list) and len(startTime) == 2:
            boot, ticks = startTime
            if boot is None or boot != self.bootId:
                ticks = None  # another boot: whatever has this pid is not ours
        elif isinstance(startTime, int):
            ticks = startTime
        if pid is None or not procfs.isSameProcess(pid, ticks, self.proc):
            self._releaseGroup(group, attempts=0)
            return succeed(False)
        try:
            stopSignal = parseSignal(container.stopSignal)
        except PycmError:
            stopSignal = _signal.SIGTERM
        self.log.info(
            "stopping {name} (pid {pid}), left running by a previous daemon",
            name=container.name,
            pid=pid,
        )
        _killpg(pid, stopSignal)
        done: Deferred[bool] = Deferred()
        now = self.reactor.seconds()
        killAt = now + max(container.stopTimeout, 0)
        giveUpAt = killAt + RECLAIM_KILL_WAIT

        def poll(killed: bool) -> None:
            alive = procfs.isSameProcess(pid, ticks, self.proc)
            if not alive:
                # The leader is gone: its pid may be reused, so no killpg;
                # what is left of the run is in its cgroup or carries its
                # run id (L{sweep}).
                self._releaseGroup(group)
                done.callback(True)
                return
            current = self.reactor.seconds()
            if not killed and current >= killAt:
                self.log.info("{name}: SIGKILL after the stop timeout", name=container.name)
                _killpg(pid, _signal.SIGKILL)
                self.cgroups.killAll(group)
                killed = True
            if killed and current >= giveUpAt:
                done.errback(BackendError(f"pid {pid} of {container.name} survived SIGKILL"))
                return
            self.reactor.callLater(RECLAIM_POLL, poll, killed)

        poll(False)
        return done


class ProcessBackend(Supervisor):
    """
    The process backend: a L{Supervisor} over a L{ProcessRuntime}, a
    L{FileLogStore} in C{STATE/logs} and a L{SQLiteStore} in
    C{STATE/state.db}.

    The state directory's lock is the daemon's business (L{pycm.daemon.tap} takes
    it before making the backend).

    @ivar store: the SQLite store; also an L{IEventStore} (C{eventStore}).
    """

    def __init__(
        self,
        reactor: Any,
        stateDir: str,
        runtime: ProcessRuntime | None = None,
        logMaxSize: int = DEFAULT_MAX_SIZE,
        logMaxFiles: int = DEFAULT_MAX_FILES,
        sync: str = "normal",
        idFactory: Any = defaultIdFactory,
    ) -> None:
        self.runtime = runtime if runtime is not None else ProcessRuntime(reactor)
        try:
            os.makedirs(stateDir, mode=0o700, exist_ok=True)
        except OSError as e:
            raise BackendError(f"cannot use state directory {stateDir}: {e}") from e
        if self.runtime.stateMarker is None:
            self.runtime.stateMarker = os.path.realpath(stateDir)
        self.store = SQLiteStore(os.path.join(stateDir, "state.db"), sync=sync)
        try:
            self.logStore = FileLogStore(
                os.path.join(stateDir, "logs"), maxSize=logMaxSize, maxFiles=logMaxFiles
            )
        except BaseException:
            self.store.close()
            raise
        super().__init__(
            clock=reactor,
            backendName="process",
            runtime=self.runtime,
            logStore=self.logStore,
            recordStore=self.store,
            idFactory=idFactory,
        )

    @property
    def eventStore(self) -> SQLiteStore:
        """The same SQLite file, as an L{IEventStore}."""
        return self.store

    def create(self, spec: ContainerSpec) -> Deferred[Container]:
        """Refuse limits that cannot be enforced with the reason, then create."""
        try:
            self.runtime.cgroups.check(spec.memory, spec.cpus)
        except BadRequest as e:
            return fail(e)
        return super().create(spec)

    def close(self) -> Deferred[None]:
        """Stop every container, then close the files."""

        def closeFiles(result: object) -> object:
            self.runtime.close()
            self.logStore.close()
            self.store.close()
            return result

        return super().close().addBoth(closeFiles)


def raiseFileLimit(wanted: int = 1 << 20) -> int:
    """
    Raise this process's soft limit of open files towards its hard limit:
    each running container holds two pipes, and the common default of 1,024
    would stop the daemon near 500 containers.  (Containers inherit it, as
    they do Docker's.)

    @return: the soft limit now in force.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(hard, wanted)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            return target
        except (OSError, ValueError):
            pass
    return soft


def makeBackend(
    reactor: Any, stateDir: FilePath[Any] | str, options: Mapping[str, str | None]
) -> ProcessBackend:
    """
    The C{pycm.backends} entry point.

    Options (all optional): C{default-command} (split like a shell would,
    default C{sleep infinity}); C{log-max-size} (bytes or with k/m/g,
    default 10m) and C{log-max-files} (default 3); C{default-workdir}
    (default C{/}); C{cgroups} (C{auto} or C{off}) and C{cgroup-parent}
    (default C{/pycm}); C{state-sync} (C{normal} or C{full}, see
    L{pycm.store}); C{default-image} (only C{host} is accepted).

    @raise BadRequest: for a bad option value.
    @raise BackendError: if the state cannot be used (e.g. it is corrupt).
    """
    path = stateDir.path if isinstance(stateDir, FilePath) else str(stateDir)

    def option(name: str, default: str) -> str:
        value = options.get(name)
        return default if value is None or value == "" else value

    image = option("default-image", HOST_IMAGE)
    if image != HOST_IMAGE:
        raise BadRequest(f"the process backend's only image is {HOST_IMAGE!r}, not {image!r}")
    command = option("default-command", shlex.join(DEFAULT_COMMAND))
    try:
        defaultCommand = tuple(shlex.split(command))
    except ValueError as e:
        raise BadRequest(f"bad default-command {command!r}: {e}") from None
    if not defaultCommand:
        raise BadRequest("default-command must not be empty")
    logMaxSize = parseSize(option("log-max-size", "10m"))
    filesText = option("log-max-files", str(DEFAULT_MAX_FILES))
    if not filesText.isdigit() or int(filesText) < 1:
        raise BadRequest(f"bad log-max-files {filesText!r}: expected a positive integer")
    cgroupMode = option("cgroups", "auto")
    if cgroupMode not in ("auto", "off"):
        raise BadRequest(f"bad cgroups {cgroupMode!r}: expected auto or off")
    sync = option("state-sync", "normal")
    if sync not in ("normal", "full"):
        raise BadRequest(f"bad state-sync {sync!r}: expected normal or full")
    workdir = option("default-workdir", DEFAULT_WORKDIR)
    if not os.path.isabs(workdir):
        raise BadRequest(f"bad default-workdir {workdir!r}: not an absolute path")
    raiseFileLimit()
    cgroups = detect(option("cgroup-parent", "/pycm"), enabled=cgroupMode == "auto")
    ProcessRuntime.log.info("process backend limits: {what}", what=cgroups.describe())
    runtime = ProcessRuntime(
        reactor, defaultCommand=defaultCommand, cgroups=cgroups, defaultWorkdir=workdir
    )
    return ProcessBackend(
        reactor,
        path,
        runtime=runtime,
        logMaxSize=logMaxSize,
        logMaxFiles=int(filesText),
        sync=sync,
    )
