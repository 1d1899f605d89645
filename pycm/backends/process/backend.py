"""
The process backend: the shared L{Supervisor} over a L{ProcessRuntime},
with logs in rotating files and records in SQLite; L{makeBackend} is its
C{pycm.backends} entry point.  See docs/process-backend.md.
"""

from __future__ import annotations

import os
import resource
import shlex
from collections.abc import Mapping
from typing import Any

from twisted.internet.defer import Deferred, fail
from twisted.logger import Logger
from twisted.python.filepath import FilePath

from pycm.backends import takesOptions
from pycm.backends.process.cgroupdetect import detect
from pycm.backends.process.logfiles import DEFAULT_MAX_FILES, DEFAULT_MAX_SIZE, FileLogStore
from pycm.backends.process.markjournal import JOURNAL_NAME
from pycm.backends.process.reclaim import MARK_LATER_DELAY
from pycm.backends.process.runtime import (
    DEFAULT_COMMAND,
    DEFAULT_WORKDIR,
    HOST_IMAGE,
    ProcessRuntime,
)
from pycm.backends.supervisor.backend import Supervisor, defaultIdFactory
from pycm.backends.supervisor.runs import SHUTDOWN_TIMEOUT
from pycm.errors import BackendError, BadRequest
from pycm.groupcommit import GroupCommit
from pycm.model import Container, ContainerSpec
from pycm.store import SQLiteStore
from pycm.units import MAX_STOP_TIMEOUT, parseSize

log = Logger()


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
        commits: GroupCommit | None = None,
        shutdownTimeout: float = SHUTDOWN_TIMEOUT,
    ) -> None:
        self.runtime = runtime if runtime is not None else ProcessRuntime(reactor)
        try:
            os.makedirs(stateDir, mode=0o700, exist_ok=True)
        except OSError as e:
            raise BackendError(f"cannot use state directory {stateDir}: {e}") from e
        if self.runtime.stateMarker is None:
            self.runtime.stateMarker = os.path.realpath(stateDir)
        self.store = SQLiteStore(os.path.join(stateDir, "state.db"), sync=sync)
        self.store.checkpointInThread(reactor)
        try:
            self.logStore = FileLogStore(
                os.path.join(stateDir, "logs"), maxSize=logMaxSize, maxFiles=logMaxFiles
            )
            if self.runtime.markSweep.journal is None:
                self.runtime.useJournal(os.path.join(stateDir, JOURNAL_NAME))
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
            commits=commits,
            shutdownTimeout=shutdownTimeout,
        )

    @property
    def eventStore(self) -> SQLiteStore:
        """The same SQLite file, as an L{IEventStore}."""
        return self.store

    def create(self, spec: ContainerSpec) -> Deferred[Container]:
        """
        Refuse limits that cannot be enforced and a C{--user} that cannot
        be run as, with the reason, then create.
        """
        try:
            self._check(spec)
        except BadRequest as e:
            return fail(e)
        return super().create(spec)

    def createAndStart(self, spec: ContainerSpec) -> Deferred[Container]:
        """As L{create}, then start it (see L{Supervisor.createAndStart})."""
        try:
            self._check(spec)
        except BadRequest as e:
            return fail(e)
        return super().createAndStart(spec)

    def _check(self, spec: ContainerSpec) -> None:
        self.runtime.cgroups.check(spec.memory, spec.cpus)
        self.runtime.checkUser(spec.user)

    def refusals(self, spec: ContainerSpec) -> dict[str, str]:
        """
        See L{pycm.capabilities.ISpecCheck.refusals}: the supervisor's, then
        the limits (each against this machine: C{cpus} over its CPUs) and
        the user (one this machine has, that this daemon can run as).
        """
        found = super().refusals(spec)
        checks = (
            ("memory", lambda: self.runtime.cgroups.check(spec.memory, None)),
            ("cpus", lambda: self.runtime.cgroups.check(None, spec.cpus)),
            ("user", lambda: self.runtime.checkUser(spec.user)),
        )
        for option, check in checks:
            try:
                check()
            except BadRequest as e:
                found[option] = e.message
        return found

    def open(self) -> Deferred[None]:
        """
        Load the records and settle what a dead daemon left (see
        L{Supervisor.open}), then warn about log files no record owns: a
        sign of lost records (they are kept).
        """
        return super().open().addCallback(self._warnUnownedLogs)

    def _warnUnownedLogs(self, result: None) -> None:
        owned = set(self._records) | {entry["name"] for entry in self.quarantined}
        unowned = sorted(self.logStore.names() - owned)
        if unowned:
            log.warn(
                "{count} log files in {directory} have no record in {database}"
                " (lost records?), kept: {names}",
                count=len(unowned),
                directory=self.logStore.directory,
                database=self.store.path,
                names=", ".join(f"{name}.log" for name in unowned[:20])
                + (", ..." if len(unowned) > 20 else ""),
            )
        return result

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


@takesOptions(
    "default-workdir", "cgroup-parent", "cgroups", "state-sync", "mark-sweep-delay",
    "shutdown-timeout",
    "default-command", "default-image", "log-max-size", "log-max-files",
)
def makeBackend(
    reactor: Any, stateDir: FilePath[Any] | str, options: Mapping[str, str | None]
) -> ProcessBackend:
    """
    The C{pycm.backends} entry point.

    Options (all optional): C{default-command} (split like a shell would,
    default C{sleep infinity}); C{log-max-size} (bytes or with k/m/g,
    default 10m) and C{log-max-files} (default 3); C{default-workdir}
    (default C{/}); C{cgroups} (C{auto} or C{off}) and C{cgroup-parent}
    (default C{/pycm}; under systemd, below the daemon's own cgroup);
    C{state-sync} (C{normal} or C{full}, see L{pycm.store});
    C{default-image} (only C{host} is accepted); C{mark-sweep-delay}
    (seconds, default 1: how long after a run's end the look for its
    escaped processes comes when the stop need not wait for it);
    C{shutdown-timeout} (seconds, default 30, at most 3600: the longest a
    container's stop signal is given before SIGKILL at the daemon's
    shutdown, and for the runs a dead daemon left, at start).

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
    delayText = option("mark-sweep-delay", str(MARK_LATER_DELAY))
    try:
        markSweepDelay = float(delayText)
    except ValueError:
        markSweepDelay = -1.0
    if not 0 <= markSweepDelay <= 86400:
        raise BadRequest(f"bad mark-sweep-delay {delayText!r}: expected seconds, from 0 to 86400")
    shutdownText = option("shutdown-timeout", f"{SHUTDOWN_TIMEOUT:g}")
    try:
        shutdownTimeout = float(shutdownText)
    except ValueError:
        shutdownTimeout = -1.0
    if not 0 <= shutdownTimeout <= MAX_STOP_TIMEOUT:
        raise BadRequest(
            f"bad shutdown-timeout {shutdownText!r}: expected seconds,"
            f" from 0 to {MAX_STOP_TIMEOUT:g}"
        )
    raiseFileLimit()
    # No cgroup-parent: below the daemon's own cgroup under systemd, else /pycm.
    cgroups = detect(option("cgroup-parent", "") or None, enabled=cgroupMode == "auto")
    log.info("process backend limits: {what}", what=cgroups.describe())
    runtime = ProcessRuntime(
        reactor,
        defaultCommand=defaultCommand,
        cgroups=cgroups,
        defaultWorkdir=workdir,
        markSweepDelay=markSweepDelay,
    )
    return ProcessBackend(
        reactor,
        path,
        runtime=runtime,
        logMaxSize=logMaxSize,
        logMaxFiles=int(filesText),
        sync=sync,
        # One durable transaction for the changes of a reactor turn.
        commits=GroupCommit(reactor),
        shutdownTimeout=shutdownTimeout,
    )
