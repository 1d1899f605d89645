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
from pycm.backends.process.output import OutputPacer
from pycm.backends.process.reclaim import (
    CgroupReleaser,
    MarkSweep,
    killMarked,
    reclaimRun,
    sweepLeftovers,
)
from pycm.backends.process.run import RunProtocol
from pycm.backends.process.spawn import (
    Spawner,
    baseEnvironment,
    findExecutable,
    findLauncher,
    runEnvironment,
)
from pycm.backends.process.usage import UsageReader
from pycm.capabilities import ALL_OPTIONS, HEALTH_OPTIONS, STATS_FIGURES, Capabilities
from pycm.errors import BackendError, BadRequest, PycmError
from pycm.interfaces import IRun, IRunObserver, IRuntime, IRuntimeStats, IRuntimeSweep
from pycm.model import Container
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


@implementer(IRuntime, IRuntimeSweep, IRuntimeStats)
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
        self.native = native
        self.bootId = procfs.bootId(proc)
        #: Starts the runs' processes.
        self.spawner = Spawner(reactor)
        #: Removes the runs' cgroups once they are empty.
        self.cgroupReleaser = CgroupReleaser(reactor, cgroups)
        #: Kills what still carries the marker of runs that ended.
        self.markSweep = MarkSweep(reactor, self.killMarked)
        #: Reads the runs' usage for C{stats}.
        self.usageReader = UsageReader(cgroups, proc)
        #: The daemon's time budget for its containers' output.
        self.pacer = OutputPacer(reactor)
        self.capabilities = Capabilities(
            options=ALL_OPTIONS - HEALTH_OPTIONS - {"user"} - ({"memory", "cpus"} - cgroups.limits),
            limits=cgroups.limits,
            images=describeContainment(cgroups),
            stats=STATS_FIGURES,
        )
        self.baseEnvironment = baseEnvironment()
        #: This daemon's state directory, carried by every run (C{PYCM_STATE})
        #: so that a run whose record is lost can still be told from another
        #: daemon's container of the same name (None: not marked).
        self.stateMarker: str | None = None

    def environment(self, container: Container, runId: str | None = None) -> dict[str, str]:
        """The whole environment of a run of C{container} (see L{runEnvironment})."""
        return runEnvironment(self.baseEnvironment, container, self.stateMarker, runId)

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
            # Refuses limits this daemon cannot enforce (BadRequest).
            procs = self.cgroups.prepare(group, container.memory, container.cpus)
        protocol = RunProtocol(
            observer,
            clock=self.reactor,
            pacer=self.pacer,
            sweepMarked=self.markSweep.kill,
            killCgroup=self.cgroups.killAll,
            releaseCgroup=self.cgroupReleaser.release,
            proc=self.proc,
            bootId=self.bootId,
            group=group,
            runId=runId,
            name=container.name,
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
                )
            elif fast:
                assert self.launcher is not None
                self.spawner.spawnLauncher(protocol, self.launcher, command, env, workdir)
            else:
                self.spawner.spawnHelper(
                    protocol, self.python, executable, command, env, workdir, procs
                )
        except BaseException as e:
            # Nothing was started: the group made for the run goes too.
            if group is not None:
                self.cgroupReleaser.release(group)
            if not isinstance(e, OSError):
                raise
            what = f"exec {executable}" if native else "spawn"
            raise BackendError(f"could not start {container.name}: {what}: {e.strerror}") from e
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

    def close(self) -> None:
        """Release what the runtime holds (not the runs)."""
        self.markSweep.sweep()
        self.cgroupReleaser.close()
        self.spawner.close()

    def killMarked(
        self, runIds: Collection[str], notBefore: int | None = None
    ) -> dict[str, list[int]]:
        """
        SIGKILL every live process carrying one of C{runIds} as its marker
        (see L{pycm.backends.process.reclaim.killMarked}).
        """
        return killMarked(runIds, notBefore, self.proc)

    def sweep(
        self, runs: dict[str, Container], strays: Collection[str] = ()
    ) -> Deferred[list[str]]:
        """
        After a daemon restart: kill what is left of C{runs} and of runs of
        the containers named in C{strays}; see L{IRuntimeSweep.sweep} and
        L{pycm.backends.process.reclaim.sweepLeftovers}.
        """
        return succeed(
            sweepLeftovers(
                runs,
                strays,
                proc=self.proc,
                stateMarker=self.stateMarker,
                cgroups=self.cgroups,
                releaser=self.cgroupReleaser,
                groupName=self.groupName,
            )
        )

    def reclaim(self, container: Container, pid: int | None, startTime: Any) -> Deferred[bool]:
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
