"""
Health checks of the process backend (L{HealthProber}): one check is
C{/bin/sh -c CMD}, a host process started with C{posix_spawn} in a session
of its own, in the run's cgroup, with the run's environment, working
directory and user; its output (stdout and stderr in one pipe) is kept up
to L{pycm.health.MAX_OUTPUT} bytes; at its timeout its whole process group
is killed.  See docs/process-backend.md.
"""

from __future__ import annotations

import signal as _signal
from collections.abc import Callable
from typing import Any

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from pycm.backends.process import procfs
from pycm.backends.process.run import exitCode
from pycm.health import MAX_OUTPUT, HealthResult
from pycm.units import formatDuration

#: The shell a check runs in.
SHELL = "/bin/sh"
#: The most bytes of a check's output read (past L{MAX_OUTPUT}, only to be
#: dropped); past them the daemon closes the pipe (the check's next write
#: fails, as into a closed pipe).
READ_LIMIT = 1024 * 1024
#: Seconds, after a check's shell exited, to wait for its pipe to close (a
#: child that left its process group may still hold it).
LINGER = 1.0
#: The descriptor on which the join script says why it could not start.
STATUS_FD = 3

#: Run by C{/bin/sh} before the check when it must join cgroups: argv is
#: N, N cgroup.procs files, then the command (C{setpriv ...} and/or the
#: check's own C{/bin/sh -c CMD}).  A failure is told on L{STATUS_FD}.
JOIN_SCRIPT = (
    'n=$1; shift; while [ "$n" -gt 0 ]; do'
    ' { echo $$ >"$1"; } 2>&3 || { echo "cannot join the cgroup $1" >&3; exit 126; };'
    ' shift; n=$((n - 1)); done; exec "$@" 3>&-'
)


@attrs.frozen
class CheckSetup:
    """
    How every check of one run is started (worked out once per run).

    @ivar cmd: the check's command, which this setup is for.
    @ivar executable: what is spawned; C{argv} its arguments.
    @ivar env: the environment; C{workdir}: the working directory.
    @ivar status: whether the join script's L{STATUS_FD} is used.
    """

    cmd: str
    executable: str
    argv: list[str]
    env: dict[str, str]
    workdir: str
    status: bool


def checkSetup(
    cmd: str, env: dict[str, str], workdir: str, procs: list[str], switch: list[str]
) -> CheckSetup:
    """
    The setup of C{cmd}'s checks: joining C{procs} (cgroup.procs files)
    first if there are any, then C{switch} (C{setpriv ... --}, or empty).
    """
    argv = [*switch, SHELL, "-c", cmd]
    if procs:
        argv = [SHELL, "-c", JOIN_SCRIPT, "pycm-health", str(len(procs)), *procs, *argv]
    return CheckSetup(cmd, argv[0], argv, env, workdir, bool(procs))


class CheckProtocol(ProcessProtocol):
    """
    One check: its output, its timeout, its end.  C{result} fires once
    with a L{HealthResult}; cancelling it kills the check.

    @param done: called once the check's process is reaped and its pipes
        closed (it is then forgotten).
    """

    log = Logger()

    def __init__(
        self, clock: IReactorTime, timeout: float, done: Callable[[CheckProtocol], object]
    ) -> None:
        super().__init__()
        self._clock = clock
        self._timeout = timeout
        self._done = done
        self.start = clock.seconds()
        self.result: Deferred[HealthResult] = Deferred(self._cancel)
        self.pid: int | None = None
        self._output = bytearray()
        self._read = 0
        self._status = b""
        self._exitCode: int | None = None
        self._timeoutCall: IDelayedCall | None = clock.callLater(timeout, self._timedOut)
        self._lingerCall: IDelayedCall | None = None

    def connectionMade(self) -> None:
        self.pid = self.transport.pid  # type: ignore[union-attr]

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        if childFD == STATUS_FD:
            if len(self._status) < MAX_OUTPUT:
                self._status += data
            return
        room = MAX_OUTPUT - len(self._output)
        if room > 0:
            self._output += data[:room]
        self._read += len(data)
        if self._read > READ_LIMIT and self.transport is not None:
            self.transport.closeChildFD(childFD)  # type: ignore[attr-defined]

    def processExited(self, reason: Failure) -> None:
        """
        The shell is reaped: what is left of its process group goes now;
        its pipe is given L{LINGER} seconds to close.
        """
        self._exitCode = exitCode(reason)
        self._killGroup()
        if not self.result.called:
            self._lingerCall = self._clock.callLater(LINGER, self._closePipes)

    def processEnded(self, reason: Failure) -> None:
        self._cancelCalls()
        if self._exitCode is None:
            self._exitCode = exitCode(reason)
        code = -1 if self._exitCode is None else self._exitCode
        self._done(self)
        if self._status:
            why = self._status.decode("utf-8", "replace").strip()
            self._finish(-1, f"cannot start the health check: {why}")
        else:
            self._finish(code, HealthResult.capOutput(bytes(self._output)))

    def kill(self, why: str) -> None:
        """Kill the check now; its result (if not told yet) is -1 and C{why}."""
        self._cancelCalls()
        self._killGroup()
        self._closePipes()
        self._finish(-1, why)

    def _timedOut(self) -> None:
        self._timeoutCall = None
        self.kill(f"health check timed out after {formatDuration(self._timeout)}")

    def _cancel(self, result: Deferred[HealthResult]) -> None:
        self._cancelCalls()
        self._killGroup()
        self._closePipes()

    def _killGroup(self) -> None:
        if self.pid is not None:
            procfs.signalGroup(self.pid, _signal.SIGKILL)

    def _closePipes(self) -> None:
        self._lingerCall = None
        transport = self.transport
        if transport is None:
            return
        for childFD in list(getattr(transport, "pipes", {})):
            transport.closeChildFD(childFD)  # type: ignore[attr-defined]

    def _cancelCalls(self) -> None:
        for call in (self._timeoutCall, self._lingerCall):
            if call is not None and call.active():
                call.cancel()
        self._timeoutCall = self._lingerCall = None

    def _finish(self, code: int, output: str) -> None:
        if not self.result.called:
            self.result.callback(HealthResult(self.start, self._clock.seconds(), code, output))


class HealthProber:
    """
    Runs checks, keeping every live one so that none is left behind: those
    of a run go when it ends (L{killRunChecks}), all of them at L{close}.

    @param spawn: starts C{(protocol, setup)} (L{pycm.backends.process.spawn.Spawner}'s
        C{spawnCheck}); raises C{OSError} if it cannot.
    """

    log = Logger()

    def __init__(self, clock: IReactorTime, spawn: Callable[[CheckProtocol, CheckSetup], Any]):
        self._clock = clock
        self._spawn = spawn
        #: Every check whose process is not yet reaped, by run (its key).
        self._live: dict[object, set[CheckProtocol]] = {}

    def probe(self, key: object, setup: CheckSetup, timeout: float) -> Deferred[HealthResult]:
        """Start one check of the run C{key} with C{setup}."""
        checks = self._live.setdefault(key, set())

        def done(check: CheckProtocol) -> None:
            checks.discard(check)
            if not checks and self._live.get(key) is checks:
                del self._live[key]

        check = CheckProtocol(self._clock, timeout, done)
        checks.add(check)
        try:
            self._spawn(check, setup)
        except OSError as e:
            what = e.filename if e.filename is not None else setup.executable
            check.kill(f"cannot start the health check: {what}: {e.strerror or e}")
            done(check)
        return check.result

    def failed(self, why: str) -> Deferred[HealthResult]:
        """The result of a check that cannot even be tried: -1 and C{why}."""
        now = self._clock.seconds()
        result: Deferred[HealthResult] = Deferred()
        result.callback(HealthResult(now, now, -1, why))
        return result

    def killRunChecks(self, key: object, why: str = "the container stopped") -> None:
        """Kill every check of the run C{key}."""
        for check in list(self._live.get(key, ())):
            check.kill(f"health check killed: {why}")

    def live(self) -> int:
        """How many checks are not yet reaped."""
        return sum(len(checks) for checks in self._live.values())

    def close(self) -> None:
        """Kill every check (the daemon stops)."""
        for key in list(self._live):
            self.killRunChecks(key, "the daemon stopped")
