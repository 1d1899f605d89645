"""
Starting a run's process: the three ways (C{posix_spawn} of the command,
C{env -C DIR setsid}, the Python exec helper), finding the executable, and
the environment a run gets.  docs/process-backend.md says which way when.
"""

from __future__ import annotations

import errno
import os
import pwd
import resource
import shutil
import stat
import subprocess
from typing import Any

from twisted.internet.posixbase import PosixReactorBase
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger

from pycm.backends.process.cgroups import movePid
from pycm.backends.process.childfds import (
    HandedOnProcess,
    closeOnExecOnce,
    fileActions,
    ignoredSignals,
)
from pycm.backends.process.reaping import ReapedProcess
from pycm.backends.process.runcpus import RunCpus, spawnWide
from pycm.backends.process.spawnclock import timedSpawn
from pycm.errors import BackendError
from pycm.model import DEFAULT_PATH, Container

#: The exec helper's status pipe: closes empty once the command executes.
STATUS_FD = 3
#: The exit status of the helper when it could not execute the command.
EXEC_FAILED = 127

#: The exec helper (see docs/process-backend.md).  argv: workdir, executable,
#: the user to switch to ("-": none; else "UID:GID:G1,G2,..."), the number N
#: of cgroup.procs files, those N files, "--", the command.
EXEC_HELPER = r"""
import os, signal, sys
def main(argv):
    os.set_inheritable(3, False)
    workdir, executable, user, count = argv[1], argv[2], argv[3], int(argv[4])
    procs, command = argv[5:5 + count], argv[6 + count:]
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
        if user != "-":
            stage = "switch to user " + user
            uid, gid, groups = user.split(":")
            os.setgroups([int(g) for g in groups.split(",") if g])
            os.setgid(int(gid))
            os.setuid(int(uid))
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
        # One stat a candidate (this runs for every start): a name that is
        # not there costs one failed system call.
        try:
            mode = os.stat(candidate).st_mode
        except OSError:
            continue
        if stat.S_ISDIR(mode):
            if "/" in command:
                raise BackendError(f"exec: {command!r}: is a directory")
            continue
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


def baseEnvironment() -> dict[str, str]:
    """What every run's environment starts from: C{PATH}, C{HOME}, C{LANG}."""
    try:
        home = pwd.getpwuid(os.geteuid()).pw_dir
    except KeyError:
        home = "/"
    return {"PATH": DEFAULT_PATH, "HOME": home, "LANG": "C.UTF-8"}


def runEnvironment(
    base: dict[str, str],
    container: Container,
    stateMarker: str | None,
    runId: str | None,
    login: dict[str, str] | None = None,
) -> dict[str, str]:
    """
    The whole environment of a run of C{container}: C{base}, what a login
    as its C{--user} sets (C{login}), its C{--env}, then the markers, last
    so that C{--env} cannot override them.
    """
    env = dict(base)
    if login:
        env.update(login)
    env.update(container.env)
    env["PYCM_CONTAINER"] = container.name
    env.pop("PYCM_STATE", None)
    if stateMarker is not None:
        env["PYCM_STATE"] = stateMarker
    env.pop("PYCM_RUN_ID", None)
    if runId is not None:
        env["PYCM_RUN_ID"] = runId
    return env


#: The descriptors a running container holds in the daemon: its output's
#: two pipes and its pidfd.
FILES_PER_RUN = 3


def spawnFailure(name: str, executable: str | None, error: OSError) -> BackendError:
    """
    The error of a spawn of container C{name} that failed with C{error}:
    the C{exec} of C{executable} (None: the helper's spawn) failed; or,
    when the daemon (or the machine) is out of open files, that and what
    to do, rather than a message that blames the container's program.
    """
    if error.errno == errno.EMFILE:
        limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        problem = (
            f"the daemon has as many files open as its limit allows ({limit};"
            f" each running container holds {FILES_PER_RUN}): raise its limit"
            " (LimitNOFILE= in its systemd unit, ulimit -Hn where twistd starts)"
        )
    elif error.errno == errno.ENFILE:
        problem = "the system's table of open files is full (sysctl fs.file-max)"
    else:
        what = f"exec {executable}" if executable else "spawn"
        problem = f"{what}: {error.strerror}"
    return BackendError(f"could not start {name}: {problem}")


class SpawnedProcess(ReapedProcess):
    """
    Twisted's L{Process}, started with C{posix_spawn} in a new session, in
    the run's workdir and tracking cgroup (the daemon borrows both around
    the spawn and goes back to C{homeDirectory} and the C{home} cgroup),
    reaped through a pidfd (L{ReapedProcess}).

    @param sameAs: child descriptors (not in C{childFDs}) that get the
        same pipe as another (C{{2: 1}}: stderr into stdout's pipe).
    @param cpus: asks for every CPU around the spawn (None: the daemon's).
    """

    log = Logger()

    def __init__(
        self,
        reactor: Any,
        executable: str,
        args: list[str],
        environment: dict[str, str],
        proto: ProcessProtocol,
        childFDs: dict[int, Any],
        *,
        workdir: str,
        join: str | None,
        home: str | None,
        homeDirectory: int,
        ignoredSignals: list[int],
        sameAs: dict[int, int] | None = None,
        cpus: RunCpus | None = None,
    ) -> None:
        self._sameAs = sameAs or {}
        self._cpus = cpus
        self._workdir = workdir
        self._join = join
        self._home = home
        self._homeDirectory = homeDirectory
        self._ignoredSignals = ignoredSignals
        super().__init__(reactor, executable, args, environment, None, proto, childFDs=childFDs)

    def _trySpawnInsteadOfFork(
        self, path: Any, uid: Any, gid: Any, executable: str, args: Any, environment: Any,
        kwargs: Any,
    ) -> bool:  # fmt: skip
        fdmap: dict[int, int] = kwargs["fdmap"]
        if self._sameAs:
            fdmap = dict(fdmap)
            for childFD, otherFD in self._sameAs.items():
                fdmap[childFD] = fdmap[otherFD]
        actions = fileActions(fdmap)
        me = os.getpid()
        os.chdir(self._workdir)
        try:
            if self._join is not None:
                movePid(self._join, me)
            try:
                self.pid, self.spawnTicks = spawnWide(  # type: ignore[assignment]
                    self._cpus,
                    lambda: timedSpawn(
                        lambda: os.posix_spawn(
                            executable,
                            args,
                            environment,
                            file_actions=actions,
                            setsigdef=self._ignoredSignals,
                            setsid=True,
                        )
                    ),
                )
            finally:
                if self._join is not None:
                    self._goHome()
        finally:
            os.fchdir(self._homeDirectory)
        self.status = -1
        return True

    def _goHome(self) -> None:
        """Move the daemon back to its own tracking cgroup after the spawn."""
        if self._home is None:
            return
        try:
            movePid(self._home, os.getpid())
        except OSError:
            self.log.critical(
                "cannot move the daemon back to its cgroup ({home}):"
                " stopping a container may now hit the daemon's group",
                home=self._home,
            )


class Spawner:
    """
    Starts a run's process one of the three ways, holding what the daemon
    keeps for that: C{/dev/null} for the runs' stdin, its own working
    directory, the signals it ignores, and what asks for every CPU
    around each spawn (L{RunCpus}: a run never keeps the daemon's pin).
    """

    def __init__(self, reactor: Any, cpus: RunCpus | None = None) -> None:
        self.reactor = reactor
        self.cpus = cpus or RunCpus()
        self._devnull: int | None = None
        self._homeDirectory: int | None = None
        self._ignored: list[int] | None = None

    def nullFD(self) -> int:
        """A descriptor of /dev/null, kept open, for the runs' stdin."""
        if self._devnull is None:
            self._devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        return self._devnull

    def ignoredSignals(self) -> list[int]:
        """
        The signals the daemon ignores, so that a child starts with the
        defaults (looked up once: the daemon does not change them later).
        """
        if self._ignored is None:
            self._ignored = ignoredSignals()
        return self._ignored

    def spawnNative(
        self,
        protocol: ProcessProtocol,
        executable: str,
        command: list[str],
        env: dict[str, str],
        workdir: str,
        join: str | None,
        home: str | None,
        prefix: list[str] | None = None,
    ) -> None:
        """
        The command itself, with C{posix_spawn} (L{SpawnedProcess}); with a
        C{prefix} (C{setpriv ... --}), that prefix, which executes it.
        """
        if prefix:
            executable, command = prefix[0], [*prefix, *command]
        SpawnedProcess(
            self.reactor,
            executable,
            command,
            env,
            protocol,
            {0: self.nullFD(), 1: "r", 2: "r"},
            workdir=workdir,
            join=join,
            home=home,
            homeDirectory=self.homeDirectory(),
            ignoredSignals=self.ignoredSignals(),
            cpus=self.cpus,
        )

    def homeDirectory(self) -> int:
        """
        A descriptor of the daemon's own working directory, to go back to
        after a spawn; the first call also makes every descriptor of the
        daemon close-on-exec (L{pycm.backends.process.childfds}).
        """
        if self._homeDirectory is None:
            closeOnExecOnce()
            self._homeDirectory = os.open(".", os.O_RDONLY | os.O_CLOEXEC)
        return self._homeDirectory

    def spawnCheck(
        self,
        protocol: ProcessProtocol,
        executable: str,
        argv: list[str],
        env: dict[str, str],
        workdir: str,
        statusFD: int | None,
    ) -> None:
        """
        A health check, with C{posix_spawn} (L{SpawnedProcess}) in a session
        of its own: stdout and stderr in one pipe, C{statusFD} (if any) a
        pipe of its own, stdin C{/dev/null}.
        """
        childFDs: dict[int, Any] = {0: self.nullFD(), 1: "r"}
        if statusFD is not None:
            childFDs[statusFD] = "r"
        SpawnedProcess(
            self.reactor,
            executable,
            argv,
            env,
            protocol,
            childFDs,
            workdir=workdir,
            join=None,
            home=None,
            homeDirectory=self.homeDirectory(),
            ignoredSignals=self.ignoredSignals(),
            cpus=self.cpus,
            sameAs={2: 1},
        )

    def spawnLauncher(
        self,
        protocol: ProcessProtocol,
        launcher: tuple[str, str],
        command: list[str],
        env: dict[str, str],
        workdir: str,
        prefix: list[str] | None = None,
    ) -> None:
        """C{env -C WORKDIR setsid -- [PREFIX...] COMMAND...}."""
        # setsid execvp()s with the container's PATH, from the workdir, as
        # findExecutable did.  No path=: Twisted then uses posix_spawn,
        # whose child runs no Python code before exec (a fork()ed child
        # could swallow an early SIGTERM).
        envPath, setsidPath = launcher
        self._spawn(
            protocol,
            envPath,
            ["env", "-C", workdir, setsidPath, "--", *(prefix or ()), *command],
            env,
            {0: self.nullFD(), 1: "r", 2: "r"},
        )

    def spawnHelper(
        self,
        protocol: ProcessProtocol,
        python: str,
        executable: str,
        command: list[str],
        env: dict[str, str],
        workdir: str,
        procs: list[str],
        user: tuple[int, int, tuple[int, ...]] | None = None,
    ) -> None:
        """
        The exec helper (L{EXEC_HELPER}), which joins C{procs} first and
        switches to C{user} (uid, gid, groups) last.
        """
        argv = [python, "-I", "-S", "-c", EXEC_HELPER, workdir, executable]
        ids = "-"
        if user is not None:
            uid, gid, groups = user
            ids = f"{uid}:{gid}:" + ",".join(str(g) for g in groups)
        argv += [ids, str(len(procs)), *procs, "--", *command]
        self._spawn(protocol, python, argv, env, {1: "r", 2: "r", STATUS_FD: "r"})

    def _spawn(
        self,
        protocol: ProcessProtocol,
        executable: str,
        argv: list[str],
        env: dict[str, str],
        childFDs: dict[int, Any],
    ) -> None:
        """
        C{reactor.spawnProcess} (no path, no PTY): on a POSIX reactor, what
        it makes, given only C{childFDs} and reaped through a pidfd
        (L{HandedOnProcess}).
        """
        if isinstance(self.reactor, PosixReactorBase):
            HandedOnProcess(
                self.reactor, executable, argv, env, None, protocol, childFDs=childFDs,
                cpus=self.cpus,
            )
        else:
            self.reactor.spawnProcess(
                protocol, executable, argv, env=env, path=None, usePTY=False, childFDs=childFDs
            )

    def close(self) -> None:
        """Close the descriptors kept for spawning."""
        if self._devnull is not None:
            os.close(self._devnull)
            self._devnull = None
        if self._homeDirectory is not None:
            os.close(self._homeDirectory)
            self._homeDirectory = None
