"""
Start-up under twistd: how it ended, told to whoever ran C{twistd pycm}
(L{StartupReport}: the reason on the terminal's stderr, a non-zero exit
status, no pidfile left behind); twistd's log file made private before
twistd opens it; the objects of start-up frozen once ready.
"""

from __future__ import annotations

import atexit
import gc
import os
import signal
import stat
from collections.abc import Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from twisted.logger import Logger

from pycm.statedir import openNoFollow

if TYPE_CHECKING:
    from twisted.python import usage

#: What twistd's waiting parent prints after C{An error has occurred:} when
#: the reason itself already reached the terminal.
SEE_ABOVE = "pycm did not start (the reason is above)"

#: twistd's parent reads at most this many bytes of status.
_STATUS_LENGTH = 100


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


def makeLogFilePrivate(path: str) -> str | None:
    """
    Create twistd's log file readable by its owner alone, or take group
    write and others' permissions off an existing one of this user's.

    twistd opens C{--logfile} after L{makeService}, before it daemonizes,
    under the caller's umask (0644 under the usual 022); then each rotated
    or reopened file gets the mode the file had when twistd first opened
    it.  So the mode set here holds for the file and every rotation,
    whatever the umask.  A link is left alone (never followed to change a
    file elsewhere), as is a file of another user's.

    @return: a warning to log if an existing file's mode was changed.
    """
    existed = os.path.lexists(path)
    try:
        fd = openNoFollow(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, checkOwner=False)
    except OSError:
        # A link, or a directory that is not there: twistd says so itself.
        return None
    try:
        status = os.fstat(fd)
        mode = stat.S_IMODE(status.st_mode)
        private = (mode & 0o740) | 0o600
        if not stat.S_ISREG(status.st_mode) or status.st_uid != os.geteuid() or mode == private:
            return None
        os.fchmod(fd, private)
    finally:
        os.close(fd)
    if existed:
        return f"the log file {path} had mode {mode:o}; it is now {private:o}"
    return None


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
