"""
L{ProcessRuntime}: the process backend's L{IRuntime}.  It starts runs as
host processes in their own sessions (and cgroups), hands each run what it
needs, and reclaims what a dead daemon left.  See docs/process-backend.md.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Collection
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.posixbase import PosixReactorBase
from twisted.logger import Logger
from zope.interface import implementer

from pycm.backends.process import procfs
from pycm.backends.process.cgroups import NO_CGROUPS, Cgroups
from pycm.backends.process.health import (
    STATUS_FD,
    CheckProtocol,
    CheckSetup,
    HealthProber,
    checkSetup,
)
from pycm.backends.process.markjournal import MarkJournal
from pycm.backends.process.output import OutputPacer
from pycm.backends.process.reclaim import (
    MARK_LATER_DELAY,
    CgroupReleaser,
    MarkSweep,
    killMarked,
    reclaimRun,
    sweepLeftovers,
)
from pycm.backends.process.run import ProcessRun, RunProtocol
from pycm.backends.process.spawn import (
    Spawner,
    baseEnvironment,
    findExecutable,
    findLauncher,
    runEnvironment,
    spawnFailure,
)
from pycm.backends.process.usage import UsageReader
from pycm.backends.process.users import RunUser, checkAllowed, findSetpriv, resolveUser
from pycm.capabilities import ALL_OPTIONS, STATS_FIGURES, Capabilities
from pycm.errors import BackendError, BadRequest, PycmError
from pycm.health import HealthResult
from pycm.interfaces import (
    IRun,
    IRunObserver,
    IRuntime,
    IRuntimeHealth,
    IRuntimeStats,
    IRuntimeSweep,
)
from pycm.model import Container
from pycm.statedir import UnsafeStateDir
from pycm.stats import Usage

#: The process backend's only image.
HOST_IMAGE = "host"
DEFAULT_COMMAND = ("sleep", "infinity")
DEFAULT_WORKDIR = "/"
#: How often, and at most how long, spawn looks whether a run leads its session.
SESSION_POLL = 0.001
SESSION_WAIT = 5.0

_FIND = object()


def describeContainment(cgroups: Cgroups) -> str:
    """What C{info} says about the host image: which guarantee holds."""
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
    return "host: commands run as processes on the host's own filesystem; " + containment


@implementer(IRuntime, IRuntimeSweep, IRuntimeStats, IRuntimeHealth)
class ProcessRuntime:
    """
    Starts runs as host processes (see docs/process-backend.md).

    @param reactor: an C{IReactorProcess} and C{IReactorTime}.
    @param defaultCommand: the command of containers created without one.
    @param cgroups: what limits can be enforced (see
        L{pycm.backends.process.cgroupdetect.detect}).
    @param defaultWorkdir: the workdir of containers created without one.
    @param python: the interpreter that runs the exec helper.
    @param launcher: the C{env} and C{setsid} executables for runs without
        limits when not native (see L{findLauncher}, the default); None:
        use the Python helper.
    @param native: start runs without limits with
        L{pycm.backends.process.spawn.SpawnedProcess} on a POSIX reactor
        (False: the launcher or the helper, for tests).
    @param setpriv: the C{setpriv} executable that switches a run to its
        C{--user} (default: found on this machine when first needed, see
        L{findSetpriv}); None: there is none.
    @param markSweepDelay: how long after a run's end the look for its
        marker comes, when its exit need not wait for it (see L{MarkSweep}).
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
        setpriv: str | None | object = _FIND,
        markSweepDelay: float = MARK_LATER_DELAY,
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
        self.native = native
        self.bootId = procfs.bootId(proc)
        #: Starts the runs' processes.
        self.spawner = Spawner(reactor)
        #: Removes the runs' cgroups once they are empty.
        self.cgroupReleaser = CgroupReleaser(reactor, cgroups)
        #: Kills what still carries the marker of runs that ended.
        self.markSweep = MarkSweep(reactor, self.killMarked, laterDelay=markSweepDelay)
        #: The main processes of this daemon's runs, not reaped yet: the
        #: marker sweep does not read them (see L{killMarked}).
        self.livePids: set[int] = set()
        #: Reads the runs' usage for C{stats}.
        self.usageReader = UsageReader(cgroups, proc)
        #: The daemon's time budget for its containers' output.
        self.pacer = OutputPacer(reactor)
        self._setpriv = setpriv
        #: Runs the containers' health checks (and kills them at the end).
        self.prober = HealthProber(reactor, self._spawnCheck)
        self.capabilities = Capabilities(
            options=ALL_OPTIONS - ({"memory", "cpus"} - cgroups.limits),
            limits=cgroups.limits,
            images=describeContainment(cgroups),
            stats=STATS_FIGURES,
        )
        self.baseEnvironment = baseEnvironment()
        #: This daemon's state directory, carried by every run (C{PYCM_STATE})
        #: so that a run whose record is lost can still be told from another
        #: daemon's container of the same name (None: not marked).
        self.stateMarker: str | None = None

    def environment(
        self, container: Container, runId: str | None = None, user: RunUser | None = None
    ) -> dict[str, str]:
        """
        The whole environment of a run of C{container} as C{user} (see
        L{runEnvironment}).
        """
        login = None if user is None else user.loginEnvironment()
        return runEnvironment(self.baseEnvironment, container, self.stateMarker, runId, login)

    @property
    def setpriv(self) -> str | None:
        """The C{setpriv} executable, or None (looked for once, when first needed)."""
        if self._setpriv is _FIND:
            self._setpriv = findSetpriv()
        return self._setpriv  # type: ignore[return-value]

    def checkUser(self, user: str | None) -> RunUser | None:
        """
        Who C{--user} names, if this daemon can run containers as it.

        @raise BadRequest: an unknown user or group, or another user for a
            daemon that is not root or has no C{setpriv}.
        """
        if user is None:
            return None
        runUser = resolveUser(user)
        checkAllowed(user, runUser)
        if self.switchArgs(runUser) is None:
            raise BadRequest(
                f"cannot run containers as another user (--user {user}):"
                " setpriv (util-linux) is missing on this machine"
            )
        return runUser

    def switchArgs(self, runUser: RunUser | None) -> list[str] | None:
        """
        What switches a process to C{runUser} (C{setpriv ... --}): empty
        when there is nothing to switch (no C{--user}, or a daemon that is
        not root running it as itself); None if C{setpriv} is missing.
        """
        if runUser is None or os.geteuid() != 0:
            return []
        setpriv = self.setpriv
        return None if setpriv is None else runUser.setprivArgs(setpriv)

    def _runUser(self, container: Container) -> tuple[RunUser | None, list[str]]:
        """C{container}'s user and what switches to it (L{switchArgs})."""
        try:
            runUser = self.checkUser(container.user)
        except BadRequest as e:
            raise BackendError(e.message) from None
        switch = self.switchArgs(runUser)
        assert switch is not None
        return runUser, switch

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
        command = list(container.command)
        if not command:
            raise BackendError("no command to run")
        runUser, switch = self._runUser(container)
        env = self.environment(container, runId, runUser)
        workdir = container.workdir or self.defaultWorkdir
        if not os.path.isabs(workdir):
            raise BackendError(f"workdir {workdir!r} is not an absolute path")
        if not os.path.isdir(workdir):
            raise BackendError(f"workdir {workdir!r} does not exist")
        if runUser is not None:
            denied = runUser.cannotEnter(workdir)
            if denied is not None:
                raise BackendError(
                    f"user {runUser.name or runUser.uid} cannot enter workdir {workdir!r}: "
                    f"no search permission on {denied}"
                )
        executable = findExecutable(command[0], env.get("PATH", ""), workdir)
        group = None
        procs: list[str] = []
        limited = container.memory is not None or container.cpus is not None
        if limited or self.cgroups.tracking is not None:
            group = self.groupName(container)
            # Refuses limits this daemon cannot enforce (BadRequest).
            procs = self.cgroups.prepare(group, container.memory, container.cpus)
        protocol = RunProtocol(
            observer,
            clock=self.reactor,
            pacer=self.pacer,
            sweepMarked=self.markSweep.kill,
            killCgroup=self.cgroups.killAll,
            releaseCgroup=self.cgroupReleaser.release,
            settleMarked=self.markSweep.settle,
            proc=self.proc,
            bootId=self.bootId,
            group=group,
            runId=runId,
            name=container.name,
            endChecks=self.prober.killRunChecks,
            livePids=self.livePids, oomCount=self.cgroups.oomCount,
        )
        native = self.native and not limited and isinstance(self.reactor, PosixReactorBase)
        fast = not native and not procs and self.launcher is not None
        try:
            if native:
                self.spawner.spawnNative(
                    protocol,
                    executable,
                    command,
                    env,
                    workdir,
                    join=procs[0] if procs else None,
                    home=self.cgroups.home,
                    prefix=switch,
                )
            elif fast:
                assert self.launcher is not None
                self.spawner.spawnLauncher(
                    protocol, self.launcher, command, env, workdir, prefix=switch
                )
            else:
                ids = None
                if switch and runUser is not None:
                    ids = (runUser.uid, runUser.gid, runUser.groups)
                self.spawner.spawnHelper(
                    protocol, self.python, executable, command, env, workdir, procs, ids
                )
        except BaseException as e:
            # Nothing was started: the group made for the run goes too.
            if group is not None:
                self.cgroupReleaser.release(group)
            if not isinstance(e, OSError):
                raise
            raise spawnFailure(container.name, executable if native else None, e) from e
        if native:
            if not protocol.started.called and protocol.run is not None:
                protocol.started.callback(protocol.run)
        elif fast:
            self._awaitSession(protocol, SESSION_WAIT / SESSION_POLL)
        return protocol.started  # type: ignore[return-value]

    def _awaitSession(self, protocol: RunProtocol, attempts: float) -> None:
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

    def probe(self, container: Container, run: IRun, timeout: float) -> Deferred[HealthResult]:
        """
        Run C{container}'s health check once; see L{IRuntimeHealth.probe}
        and L{pycm.backends.process.health}.
        """
        check = container.healthcheck
        if check is None or check.cmd is None:
            return self.prober.failed("no health check")
        if not isinstance(run, ProcessRun) or run.exited:
            return self.prober.failed("the container is not running")
        if not isinstance(self.reactor, PosixReactorBase):
            return self.prober.failed("health checks need a POSIX reactor")
        setup = run.checkSetup
        if setup is None or setup.cmd != check.cmd:
            try:
                setup = run.checkSetup = self._checkSetup(container, run, check.cmd)
            except PycmError as e:
                return self.prober.failed(f"cannot start the health check: {e.message}")
        return self.prober.probe(run, setup, timeout)

    def _checkSetup(self, container: Container, run: ProcessRun, cmd: str) -> CheckSetup:
        """How every check of C{run} starts: its cgroup, user, environment, workdir."""
        runUser, switch = self._runUser(container)
        env = self.environment(container, run.runId, runUser)
        workdir = container.workdir or self.defaultWorkdir
        procs: list[str] = []
        if run.group is not None:
            dirs = self.cgroups.groupDirs(
                run.group, container.memory is not None, container.cpus is not None
            )
            procs = [os.path.join(path, "cgroup.procs") for path in dirs]
        return checkSetup(cmd, env, workdir, procs, switch)

    def _spawnCheck(self, check: CheckProtocol, setup: CheckSetup) -> None:
        self.spawner.spawnCheck(
            check,
            setup.executable,
            setup.argv,
            setup.env,
            setup.workdir,
            STATUS_FD if setup.status else None,
        )

    def useJournal(self, path: str) -> None:
        """
        Write the ids of runs whose exits are told before the look for
        their markers in C{path} (a L{MarkJournal}), read at the next
        start; without one (it cannot be opened), every exit waits for it.

        @raise UnsafeStateDir: if C{path} is not what pycm makes (a link, a
            FIFO, another user's file): refused, as every state file.
        """
        try:
            self.markSweep.journal = MarkJournal(path)
        except UnsafeStateDir:
            raise
        except OSError as e:
            self.log.warn(
                "cannot open {path} ({error}): every stop waits for the look at /proc"
                " for its run's marker",
                path=path,
                error=e.strerror,
            )

    def close(self) -> None:
        """Release what the runtime holds (not the runs; their health checks)."""
        self.prober.close()
        self.markSweep.close()
        if self.markSweep.journal is not None:
            self.markSweep.journal.close()
        self.cgroupReleaser.close()
        self.spawner.close()

    def killMarked(
        self, runIds: Collection[str], notBefore: int | None = None
    ) -> dict[str, list[int]]:
        """
        SIGKILL every live process carrying one of C{runIds} as its marker
        (see L{pycm.backends.process.reclaim.killMarked}), but the main
        processes of live runs (L{livePids}): with 2,000 runs, a look reads
        only what else runs on the machine.
        """
        return killMarked(runIds, notBefore, self.proc, self.livePids)

    def sweep(
        self, runs: dict[str, Container], strays: Collection[str] = ()
    ) -> Deferred[list[str]]:
        """
        After a daemon restart: kill what is left of C{runs} and of runs of
        the containers named in C{strays}; see L{IRuntimeSweep.sweep} and
        L{pycm.backends.process.reclaim.sweepLeftovers}.
        """
        journal = self.markSweep.journal
        ended = journal.left if journal is not None else []
        try:
            found = sweepLeftovers(
                runs,
                strays,
                proc=self.proc,
                stateMarker=self.stateMarker,
                cgroups=self.cgroups,
                releaser=self.cgroupReleaser,
                groupName=self.groupName,
                ended=ended,
            )
        except Exception:
            # The journal's ids are looked for again later, kept till then.
            self.markSweep.lookAgain(ended)
            self.markSweep.leftLookedFor()
            raise
        self.markSweep.leftLookedFor()
        return succeed(found)

    def reclaim(
        self, container: Container, pid: int | None, startTime: Any
    ) -> Deferred[bool | int]:
        """
        Stop a run a dead daemon left: see L{IRuntime.reclaim} and
        L{pycm.backends.process.reclaim.reclaimRun}.
        """
        return reclaimRun(
            container,
            pid,
            startTime,
            clock=self.reactor,
            proc=self.proc,
            bootId=self.bootId,
            group=self.groupName(container),
            cgroups=self.cgroups,
            releaser=self.cgroupReleaser,
        )
