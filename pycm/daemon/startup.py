"""
Start-up under twistd: how it ended, told to whoever ran C{twistd pycm}
(L{StartupReport}: the reason on the terminal's stderr, a non-zero exit
status, no pidfile left behind); twistd's log file checked and made
private before twistd opens it; the objects of start-up frozen once ready.
"""

from __future__ import annotations

import atexit
import errno
import gc
import os
import signal
import socket
import stat
import sys
from collections.abc import Callable, Iterable, MutableMapping
from typing import TYPE_CHECKING, Any, TextIO

from twisted.internet.error import ReactorNotRunning
from twisted.logger import Logger

from pycm.errors import PycmError
from pycm.statedir import UnsafeStateDir, checkAncestors

if TYPE_CHECKING:
    from twisted.python import usage

    from pycm.daemon.listeners import Listener

#: What pycm sends twistd's waiting parent when the reason itself already
#: reached the terminal: it then prints nothing more (L{waitForStart}).
SEE_ABOVE = "pycm did not start (the reason is above)"

#: twistd's parent reads at most this many bytes of status.
_STATUS_LENGTH = 100


def _stopOnce(reactor: Any) -> None:
    """Stop the reactor, unless a stop is under way already (a second signal)."""
    try:
        reactor.stop()
    except ReactorNotRunning:
        pass


class StartupReport:
    """
    Tells the person (or service manager) who started the daemon how its
    start-up ended, once: L{ready} or L{failed}, whether twistd daemonized
    or not.

    twistd daemonizes before it starts the service: its first process waits
    on a status pipe (C{config["statusPipe"]}) for C{b"0"} (started, exit 0)
    or C{b"1 MESSAGE"} (exit 1); the daemon's own stderr is C{/dev/null} by
    then.  twistd writes C{b"0"} as soon as C{startService} returns, before
    the reactor runs (so before the backend has opened), and reports only
    an C{Exception} raised on the way: a C{SystemExit} left the parent
    waiting for ever and the pidfile behind.  So the report takes that pipe
    over once twistd has forked, keeps a copy of the terminal's stderr from
    before the fork, and answers the waiting parent only when pycm is ready
    or has failed.  In the foreground it writes the reason to the terminal
    (twistd sends C{sys.stderr} to the log file).

    @ivar outcome: C{None} until the start-up ended, then C{"ready"} or
        C{"failed"}.
    """

    log = Logger()

    def __init__(
        self,
        stderr: int | None = None,
        twistdConfig: MutableMapping[str, Any] | None = None,
        atExit: Callable[[Callable[[], None]], object] = atexit.register,
        kill: Callable[[int, int], None] = os.kill,
    ) -> None:
        """
        @param stderr: a descriptor of the terminal's stderr, taken before
            twistd forked; the report closes it when the start-up ends.
        @param twistdConfig: twistd's own options (the parent of pycm's
            options): where its status pipe and pidfile are.
        @param atExit: registers what runs at interpreter exit.
        @param kill: C{os.kill}, to die of a signal caught before the
            reactor runs.
        """
        self._stderr = stderr
        self._config = twistdConfig
        self._atExit = atExit
        self._kill = kill
        self._statusPipe: int | None = None
        self.outcome: str | None = None

    @classmethod
    def fromOptions(cls, options: Any) -> StartupReport:
        """
        The report for C{twistd pycm} with these options; outside twistd
        (no parent options) a report that tells nobody.
        """
        twistdConfig = getattr(options, "parent", None)
        if twistdConfig is None:
            return cls()
        # In twistd's first process, which waits if twistd daemonizes.
        plainStartStatus()
        try:
            stderr: int | None = os.dup(2)
        except OSError:
            stderr = None
        return cls(stderr, twistdConfig)

    def daemonized(self) -> None:
        """
        twistd has forked (or chose not to): take its status pipe, if any,
        so that twistd does not answer the waiting parent before pycm is
        ready.
        """
        if self._config is not None and self._statusPipe is None:
            self._statusPipe = self._config.pop("statusPipe", None)
            if self._statusPipe is not None:
                self._atExit(self._exitedUnready)
                # Until the reactor runs and takes them over (a stop then
                # goes through stopService), these signals would kill the
                # daemon at once, leaving twistd's parent waiting for ever.
                for signum in (signal.SIGTERM, signal.SIGINT):
                    signal.signal(signum, self._signalledEarly)

    def takeStopSignals(self, reactor: Any) -> None:
        """Under twistd, once C{reactor} runs: L{reactorRunning}."""
        if self._config is not None:
            reactor.callWhenRunning(self.reactorRunning, reactor)

    def reactorRunning(self, reactor: Any) -> None:
        """
        The reactor runs, and has taken SIGTERM over: under twistd, SIGINT
        and SIGHUP stop pycm as SIGTERM does (its containers stopped, its
        connections closed) instead of killing it at once.  twistd's
        reactor takes SIGINT only from Python's own default handler (not
        from L{_signalledEarly}, which a daemonized start installs), and
        SIGHUP not at all; a daemon has nothing to reload.
        """
        if self._config is None:
            return  # not under twistd: the caller's signals
        reactorsOwn = signal.getsignal(signal.SIGTERM)
        if callable(reactorsOwn):
            # The reactor's own handler (which makes twistd exit by the
            # signal) raises ReactorNotRunning, a critical traceback in
            # the log, at a second SIGTERM during the stop: only the first
            # goes to it.
            stopping: list[bool] = []

            def onTerm(signum: int, frame: Any) -> None:
                if stopping:
                    self.log.info("SIGTERM again: pycm is stopping already")
                    return
                stopping.append(True)
                reactorsOwn(signum, frame)

            signal.signal(signal.SIGTERM, onTerm)
        if signal.getsignal(signal.SIGINT) == self._signalledEarly:
            signal.signal(signal.SIGINT, lambda signum, frame: self._stop(reactor, "SIGINT"))
        if signal.getsignal(signal.SIGHUP) == signal.SIG_DFL:
            signal.signal(signal.SIGHUP, lambda signum, frame: self._stop(reactor, "SIGHUP"))

    def _stop(self, reactor: Any, name: str) -> None:
        """A stop signal under the running reactor: stop as on SIGTERM."""
        self.log.info("{signal}: pycm stops as on SIGTERM", signal=name)
        reactor.callFromThread(_stopOnce, reactor)

    def _signalledEarly(self, signum: int, frame: object) -> None:
        """Stopped before the reactor ran: say so, then die of the signal."""
        self.failed("pycm was stopped before it was ready")
        signal.signal(signum, signal.SIG_DFL)
        self._kill(os.getpid(), signum)

    def _exitedUnready(self) -> None:
        """
        The daemon exits before the start-up ended (an error that reached
        twistd): twistd's parent holds the pipe's other end too, so it would
        wait for ever unless told.
        """
        self.failed("pycm exited before it was ready (the log says why)")

    def ready(self) -> None:
        """pycm listens and its backend is open: the parent exits 0."""
        if self.outcome is None:
            self.outcome = "ready"
            self._finish(b"0")

    def failed(self, reason: str) -> None:
        """
        pycm cannot start: the reason goes to the terminal, the pidfile is
        removed, the waiting parent exits 1.  (The daemon's own exit status
        is its caller's business.)
        """
        if self.outcome is not None:
            return
        self.outcome = "failed"
        told = self._tell(f"twistd pycm: {reason}\n")
        self._removePidfile()
        status = (SEE_ABOVE if told else reason).encode("utf-8", "backslashreplace")
        self._finish(b"1 " + status[: _STATUS_LENGTH - 2])

    def _tell(self, text: str) -> bool:
        if self._stderr is None:
            return False
        data = text.encode("utf-8", "backslashreplace")
        try:
            while data:
                data = data[os.write(self._stderr, data) :]
        except OSError:
            return False
        return True

    def _removePidfile(self) -> None:
        """
        Remove twistd's pidfile if it names this process, and tell twistd
        it is gone (twistd removes it only on a clean exit).
        """
        if self._config is None:
            return
        pidfile = self._config.get("pidfile")
        if not pidfile:
            return
        try:
            with open(pidfile, "rb") as f:
                mine = f.read().strip() == str(os.getpid()).encode()
            if mine:
                os.unlink(pidfile)
                self._config["pidfile"] = ""
        except FileNotFoundError:
            pass
        except OSError as e:
            self.log.warn("cannot remove pidfile {path}: {error}", path=pidfile, error=e)

    def _finish(self, status: bytes) -> None:
        if self._statusPipe is not None:
            pipe, self._statusPipe = self._statusPipe, None
            try:
                os.write(pipe, status)
            except OSError:
                pass
            os.close(pipe)
        if self._stderr is not None:
            stderr, self._stderr = self._stderr, None
            os.close(stderr)


def waitForStart(readPipe: int, stderr: TextIO | None) -> int:
    """
    What twistd's waiting parent does, as L{plainStartStatus} makes it:
    read the daemon's status (C{b"0"}, or C{b"1 "} and a message), say
    what went wrong on C{stderr} as text, and return the exit status (0 or
    1).  Twisted's own prints the message's Python bytes repr
    (C{An error has occurred: b'...'}).  Nothing is printed for
    L{SEE_ABOVE}: pycm wrote the reason to the terminal itself.
    """
    data = os.read(readPipe, _STATUS_LENGTH)
    if data == b"0":
        return 0
    reason = data[2:].decode("utf-8", "backslashreplace")
    if reason != SEE_ABOVE and stderr is not None:
        stderr.write(
            f"An error has occurred: {reason or 'the daemon exited without a reason'}\n"
            "Please look at log file for more information.\n"
        )
        stderr.flush()
    return 1


def plainStartStatus(runner: Any = None) -> None:
    """
    Make twistd's waiting parent (C{runner}: by default Twisted's
    C{UnixApplicationRunner}, whose C{daemonize} calls its
    C{_waitForStart}) print the daemon's start-up status as text
    (L{waitForStart}).  Twisted sends and prints the status as bytes, a
    repr; a Twisted without that method is left as it is.
    """
    if runner is None:
        from twisted.scripts import _twistd_unix

        runner = _twistd_unix.UnixApplicationRunner
    if not callable(getattr(runner, "_waitForStart", None)):
        return

    def _waitForStart(self: object, readPipe: int) -> int:
        return waitForStart(readPipe, sys.__stderr__)

    runner._waitForStart = _waitForStart


def twistdLogPath(options: usage.Options) -> str | None:
    """
    The file twistd will log to, if it logs to a file: its C{--logfile},
    or C{twistd.log} when it daemonizes without one.  None for stdout,
    syslog, a custom C{--logger}, or options not parsed by twistd.
    """
    twistd = getattr(options, "parent", None)
    if twistd is None or twistd.get("syslog") or twistd.get("logger"):
        return None
    name = twistd.get("logfile")
    if name == "-" or (not name and twistd.get("nodaemon")):
        return None
    return os.path.abspath(name or "twistd.log")


def startFailure(error: Exception, stateDir: str) -> str:
    """
    Why the daemon cannot start, from an error raised while its state was
    opened: an C{OSError} that names no file (a write to a descriptor) is
    said to be in C{stateDir}, and a full disk says to free space (the
    state is not damaged).
    """
    if not isinstance(error, OSError) or isinstance(error, PycmError):
        return str(error)
    where = error.filename or f"the state directory {stateDir}"
    reason = error.strerror or str(error)
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return (
            f"cannot write {where}: {reason}; free some space on its disk and start "
            f"again (the state in it is not damaged)"
        )
    if error.filename:
        return f"cannot use {where}: {reason}"
    return f"{reason} (in {where})"


class UnsafeLogFile(UnsafeStateDir):
    """twistd's log file is not the daemon's alone: pycm does not start."""


#: The kernel's guards (C{fs.protected_*}) that stop a link, a hard link or
#: another user's file planted in a sticky directory every user may write
#: (C{/tmp}) from being opened there, as twistd reopens the log by name at
#: each rotation.
KERNEL_GUARDS = ("protected_symlinks", "protected_hardlinks", "protected_regular")


def _readText(path: str) -> str:
    with open(path) as f:
        return f.read()


def kernelGuardsShared(read: Callable[[str], str] = _readText) -> bool:
    """Are all of L{KERNEL_GUARDS} on?  (Not on when they cannot be read.)"""
    try:
        return all(int(read(f"/proc/sys/fs/{name}")) >= 1 for name in KERNEL_GUARDS)
    except (OSError, ValueError):
        return False


def _refuseLogFile(path: str, status: os.stat_result) -> None:
    """Refuse a log file that someone else may have planted or may read."""
    remove = f"remove it (rm {path}) or choose another --logfile"
    if stat.S_ISLNK(status.st_mode):
        raise UnsafeLogFile(
            f"the log file {path} is a symbolic link: twistd would write wherever it "
            f"points, and someone else may have planted it; {remove}"
        )
    if not stat.S_ISREG(status.st_mode):
        raise UnsafeLogFile(f"the log file {path} is not a regular file; {remove}")
    if status.st_uid != os.geteuid():
        raise UnsafeLogFile(
            f"the log file {path} belongs to uid {status.st_uid}, not to this user "
            f"({os.geteuid()}): its owner could read the log or have made it a link "
            f"to another file; {remove}"
        )
    if status.st_nlink > 1:
        raise UnsafeLogFile(
            f"the log file {path} has {status.st_nlink} names (a hard link): the log "
            f"would be written into another file too; {remove}"
        )


def makeLogFilePrivate(
    path: str, guarded: Callable[[], bool] = kernelGuardsShared
) -> str | None:
    """
    Check twistd's log file, then create it readable by its owner alone, or
    take group write and others' permissions off an existing one.

    twistd opens C{--logfile} after L{makeService}, before it daemonizes,
    by name, following links, under the caller's umask (0644 under the
    usual 022); then each rotated or reopened file gets the mode the file
    had when twistd first opened it.  So the checks made here hold for what
    twistd opens, and the mode set here for the file and every rotation,
    whatever the umask.  As for the state directory, refused: a directory
    on the way that someone else could replace (L{checkAncestors}); a
    directory that group or others may write, unless it is sticky, every
    user's (C{/tmp}) and the kernel guards such directories
    (L{kernelGuardsShared}); a link, another user's file, or one with two
    names.  A new file is created without following a link, never opening
    one that appeared meanwhile.

    @param guarded: L{kernelGuardsShared}, or a fake in tests.
    @return: a warning to log if an existing file's mode was changed.
    @raise UnsafeLogFile: naming the file, what is wrong and what to do.
    """
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        return None  # twistd says so itself
    checkAncestors(path, what="the log file", option="--logfile")
    shared = os.stat(directory).st_mode
    if shared & 0o022 and not (shared & stat.S_ISVTX and shared & 0o002 and guarded()):
        raise UnsafeLogFile(
            f"the log file {path} is in {directory}, which others may write (mode "
            f"{stat.S_IMODE(shared):o}) while the kernel does not stop a link or a file "
            f"planted where twistd reopens the log at each rotation (that needs a sticky "
            f"directory every user may write, and sysctl fs.protected_symlinks, "
            f"fs.protected_hardlinks and fs.protected_regular on); choose a --logfile "
            f"in a directory only you or root may write"
        )
    flags = os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        _refuseLogFile(path, os.lstat(path))
        existed = True
        try:
            fd = os.open(path, flags | os.O_NONBLOCK)
        except OSError as e:
            # Swapped for a link (ELOOP) since, or a FIFO (ENXIO)...
            raise UnsafeLogFile(f"cannot open the log file {path}: {e.strerror}") from None
    except OSError:
        return None  # cannot create it: twistd says so itself
    else:
        existed = False
    try:
        status = os.fstat(fd)
        _refuseLogFile(path, status)
        mode = stat.S_IMODE(status.st_mode)
        private = (mode & 0o740) | 0o600 if existed else 0o600
        if mode == private:
            return None
        os.fchmod(fd, private)
    finally:
        os.close(fd)
    if existed:
        return f"the log file {path} had mode {mode:o}; it is now {private:o}"
    return None


def rootWithoutToken(listeners: Iterable[Listener], euid: int) -> str | None:
    """
    The warning for a daemon running as root (C{euid} 0) with network
    listeners that want no token (C{--no-auth} on loopback): whoever can
    connect there runs commands as root.  UNIX sockets (guarded by their
    mode) and stdio do not count.  None if there is nothing to warn of.
    """
    if euid != 0:
        return None
    tokenless = [
        listener.description
        for listener in listeners
        if not listener.requireAuth
        and listener.kind not in ("unix", "stdio")
        and listener.family != socket.AF_UNIX
    ]
    if not tokenless:
        return None
    return (
        f"--no-auth on {', '.join(tokenless)} while pycm runs as root: every local user who "
        f"can connect can run commands as root. Listen on a UNIX socket instead (its "
        f"mode is the guard), run pycm as an unprivileged user, or drop --no-auth"
    )


_frozen = False


def freezeStartupObjects() -> None:
    """
    Once per process, after start-up: collect, then move what is left (all
    of Twisted, the backend, the listeners) out of the collector's full
    passes, so that they cost in proportion to the connections and
    containers (a pass over 3,000 connections and all of Twisted held every
    client up for 100 ms).  The collection first leaves start-up's garbage
    out of the frozen set, where it would stay for ever.
    """
    global _frozen
    if _frozen:
        return
    _frozen = True
    gc.collect()
    gc.freeze()
