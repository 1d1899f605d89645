"""
C{twistd pycm}: the daemon's command line and its service.
"""

from __future__ import annotations

import atexit
import gc
import grp
import json
import os
import resource
import stat
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.application.service import IService, MultiService, Service
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.error import CannotListenError
from twisted.logger import Logger
from twisted.python import usage
from twisted.python.filepath import FilePath

import pycm
from pycm.backends import availableBackends, loadBackendFactory
from pycm.client.config import defaultStateDir
from pycm.daemon.auth import loadOrCreateToken, readToken
from pycm.daemon.eventlog import EventIdMark, EventLog
from pycm.daemon.legacyframing import LEGACY_PAUSE
from pycm.daemon.listeners import (
    InsecureListener,
    Listener,
    ListenerService,
    boundListener,
    classifyListener,
)
from pycm.daemon.protocol import (
    DEFAULT_AUTH_TIMEOUT,
    DEFAULT_MAX_EVENT_BACKLOG,
    DEFAULT_MAX_LINE_LENGTH,
    PREAUTH_MAX_LINE_LENGTH,
    ConnectionLimit,
    PycmServerFactory,
)
from pycm.daemon.session import Daemon
from pycm.daemon.startup import StartupReport
from pycm.errors import PycmError
from pycm.files import replacePrivately
from pycm.statedir import checkStateDir, openNoFollow

if TYPE_CHECKING:
    from pycm.store import StateDirLock

DEFAULT_LISTEN = "tcp:8080:interface=127.0.0.1"

log = Logger()

#: Descriptors kept out of the default connection cap for the daemon's own
#: files (state database, logs, listeners, lock) before halving the rest
#: between connections and containers.
RESERVED_FILES = 256

#: The default connection cap never goes above this, whatever the limit.
MAX_DEFAULT_CONNECTIONS = 10_000


def defaultMaxConnections(fileLimit: int) -> int:
    """
    The connection cap for a daemon whose soft limit of open files is
    C{fileLimit}: half of what is left after L{RESERVED_FILES}, the other
    half being for containers' pipes and log files (1,024 gives 384).
    """
    if fileLimit == resource.RLIM_INFINITY or fileLimit < 0:
        return MAX_DEFAULT_CONNECTIONS
    return max(8, min(MAX_DEFAULT_CONNECTIONS, (fileLimit - RESERVED_FILES) // 2))

#: Options passed through to the backend, by their command-line name.
BACKEND_OPTIONS = (
    "docker-host",
    "default-image",
    "default-command",
    "pull",
    "log-max-size",
    "log-max-files",
)


class Options(usage.Options):
    """The options of C{twistd pycm}."""

    synopsis = "[options]"
    longdesc = (
        "Runs the pycm container manager daemon: it listens for the pycm line "
        "protocol (see docs/protocol.md) on each --listen endpoint and drives one "
        "container backend. TCP and TLS listeners want a token (auth TOKEN), kept "
        "in STATE_DIR/token; UNIX sockets are guarded by their permissions. "
        "Example: twistd -n pycm --listen unix:/run/pycm.sock --backend process"
    )

    optFlags = [
        ["no-auth", None, "Require no token on loopback listeners (never on others)."],
        ["legacy-framing", None,
         "On every listener, a request may also end with a pause (50 ms without a byte) "
         "instead of a newline, for the teaching client that sends none; lines ending in "
         "a newline are served at once as always. Changes no token rule: that client "
         "sends no token, so use it with --no-auth on loopback."],
    ]
    optParameters = [
        ["backend", "b", "process",
         "The container backend: memory, process, docker, or any installed one "
         "('--backend list' lists them)."],
        ["state-dir", "d", None,
         "Where state, logs and the token live [default: /var/lib/pycm for root, "
         "else $XDG_STATE_HOME/pycm or ~/.local/state/pycm]."],
        ["auth-token-file", None, None,
         "Use the token in this file instead of STATE_DIR/token."],
        ["socket-group", None, None,
         "Make UNIX sockets mode 0660 owned by this group (default: mode 0600)."],
        ["max-line-length", None, DEFAULT_MAX_LINE_LENGTH,
         "The longest request line accepted, in bytes.", int],
        ["max-event-backlog", None, DEFAULT_MAX_EVENT_BACKLOG,
         "Bytes of unread events after which a subscriber is disconnected.", int],
        ["auth-timeout", None, DEFAULT_AUTH_TIMEOUT,
         "Seconds a connection that has not sent auth TOKEN may stay idle (no request "
         f"line) before it is closed; until then its lines may be {PREAUTH_MAX_LINE_LENGTH} "
         "bytes at most.", float],
        ["max-connections", None, None,
         "The most connections open at once, on all listeners; more are refused at once "
         "[default: half of the open-file limit left after 256, at most 10000].", int],
        [
            "log-level",
            None,
            "info",
            "info: connections (and input left unread at close), refusals, wrong tokens, "
            "forced closes, and each request that changes a container (who, which "
            "container, the outcome); debug: every request too, redacted. No level logs "
            "a token or an option's value.",
        ],
        ["docker-host", None, None,
         "docker backend: the engine's address (unix:///var/run/docker.sock, "
         "tcp://HOST:PORT) [default: $DOCKER_HOST]."],
        ["default-image", None, None,
         "The image used when a run names none [default: the backend's own]."],
        ["default-command", None, None,
         "process backend: the command run when none is given "
         "[default: sleep infinity]."],
        ["pull", None, None,
         "docker backend: 'missing' pulls images that are not there; 'never' "
         "[default] answers no_image."],
        ["log-max-size", None, None,
         "process backend: rotate a container's log file at this size "
         "[default: 10m]."],
        ["log-max-files", None, None,
         "process backend: how many log files to keep per container [default: 3]."],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["listen"] = []
        self["backend-option"] = {}

    def opt_listen(self, description: str) -> None:
        """A Twisted server endpoint string to listen on (repeatable): tcp:PORT:interface=ADDR, unix:PATH, ssl:PORT:privateKey=KEY, stdio: [default: tcp:8080:interface=127.0.0.1]."""  # noqa: E501
        self["listen"].append(description)

    def opt_backend_option(self, item: str) -> None:
        """A backend option KEY=VALUE (repeatable), for third-party backends."""
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise usage.UsageError(f"--backend-option wants KEY=VALUE, not {item!r}")
        self["backend-option"][key] = value

    def parseOptions(self, options: list[str] | None = None) -> None:
        """
        Parse, as usage.Options does; under twistd, a refusal exits 1 with
        its reason on stderr (twistd before 26.10 printed it on stdout, with
        its whole usage, and exited 0).
        """
        try:
            super().parseOptions(options)
        except usage.UsageError as e:
            if self.parent is None:
                raise
            raise SystemExit(
                f"twistd pycm: {e}\n(twistd pycm --help lists the options)"
            ) from None

    def opt_version(self) -> None:
        """Print the version and exit."""
        print(f"pycm {pycm.__version__} (protocol {pycm.PROTOCOL_VERSION})")
        sys.exit(0)

    def postOptions(self) -> None:
        if self["backend"] == "list":
            for name in sorted(availableBackends()):
                print(name)
            sys.exit(0)
        if self["backend"] not in availableBackends():
            names = ", ".join(sorted(availableBackends()))
            raise usage.UsageError(
                f"unknown backend {self['backend']!r}; available backends: {names}"
            )
        if self["log-level"] not in ("info", "debug"):
            raise usage.UsageError("--log-level must be info or debug")
        if self["max-line-length"] < 1024:
            raise usage.UsageError("--max-line-length must be at least 1024")
        if not self["auth-timeout"] > 0:
            raise usage.UsageError("--auth-timeout must be a number of seconds above 0")
        if self["max-connections"] is not None and self["max-connections"] < 1:
            raise usage.UsageError("--max-connections must be at least 1")
        if self["socket-group"] is not None:
            try:
                grp.getgrnam(self["socket-group"])
            except KeyError:
                raise usage.UsageError(f"no such group: {self['socket-group']}") from None
        if not self["listen"]:
            self["listen"] = [DEFAULT_LISTEN]
        self["listeners"] = [
            classifyListener(description, self["no-auth"], self["socket-group"])
            for description in self["listen"]
        ]
        stateDir = self["state-dir"]
        self["state-dir"] = FilePath(stateDir) if stateDir else defaultStateDir()
        backendOptions = dict(self["backend-option"])
        for name in BACKEND_OPTIONS:
            if self[name] is not None:
                backendOptions[name] = self[name]
        self["backend-options"] = backendOptions


class PycmService(MultiService):
    """
    The daemon: opens the backend, then starts listening; on stop, stops
    listening, then closes the backend (which stops its containers).

    @param whenReady: called once the daemon is ready (twistd's path
        passes L{freezeStartupObjects}).
    """

    log = Logger()

    def __init__(
        self,
        reactor: Any,
        daemon: Daemon,
        closers: list[Any],
        report: StartupReport | None = None,
        stateLock: StateDirLock | None = None,
        whenReady: Callable[[], None] = lambda: None,
        listenersFile: str | None = None,
    ) -> None:
        super().__init__()
        self._whenReady = whenReady
        self._listenersFile = listenersFile
        self._reactor = reactor
        self._daemon = daemon
        self.backend = daemon.backend
        self._closers = closers
        self._report = report if report is not None else StartupReport()
        self._stateLock = stateLock
        self.ready: Deferred[None] = Deferred()
        #: The backend could not open; the process exits with status 1.
        self.failed = False

    def startService(self) -> None:
        Service.startService(self)
        # A crashed daemon's file never outlives this start.
        self._removeListenersFile()
        self.log.info(
            "pycm {version} starting on the {backend} backend",
            version=pycm.__version__,
            backend=self.backend.name,
        )
        d = maybeDeferred(self.backend.open)
        d.addCallback(self._listen)
        d.addErrback(self._failedToOpen)

    def _listen(self, _: object) -> None:
        for child in self:
            child.startService()
        self._writeListenersFile()
        self._daemon.setReady()
        self._whenReady()
        self.log.info("pycm is ready")
        self._report.ready()
        self.ready.callback(None)

    def _failedToOpen(self, failure: Any) -> None:
        """
        The backend could not open: stop listening, close the connections
        that were waiting for it, and end the process with status 1 (never
        a daemon that listens but cannot answer).
        """
        self.log.failure(
            "the {backend} backend could not start; pycm is stopping (exit status 1)",
            failure,
            backend=self.backend.name,
        )
        self._stopListening()
        self._daemon.setFailed()
        self.failed = True
        self._report.failed(
            f"the {self.backend.name} backend could not start: {failure.getErrorMessage()}"
        )
        self.ready.errback(failure)
        self.ready.addErrback(lambda _: None)
        # Before the reactor runs (the open failed at once, inside twistd's
        # start-up) reactor.stop() would raise and be lost, and the daemon
        # would run for ever: stop once it runs.
        self._reactor.addSystemEventTrigger("after", "shutdown", _exitAtExit, 1)
        self._reactor.callWhenRunning(self._reactor.stop)

    def _stopListening(self) -> None:
        self._removeListenersFile()
        for child in self:
            port = getattr(child, "port", None)
            if port is not None:
                child.port = None
                port.stopListening()

    def _writeListenersFile(self) -> None:
        """
        Write the listeners file (each TCP and TLS listener as bound, and
        whether it wants the token): the client sends the token it finds
        beside it only to those that do.
        """
        if self._listenersFile is None:
            return
        records = []
        for child in self:
            listener = getattr(child, "listener", None)
            if listener is not None:
                record = boundListener(listener, getattr(child, "port", None))
                if record is not None:
                    records.append(record)
        try:
            replacePrivately(self._listenersFile, json.dumps(records).encode() + b"\n")
        except OSError as e:
            self.log.error(
                "cannot write {path} ({error}): clients will not send the token they "
                "find in the token file",
                path=self._listenersFile,
                error=e,
            )

    def _removeListenersFile(self) -> None:
        if self._listenersFile is None:
            return
        try:
            os.unlink(self._listenersFile)
        except FileNotFoundError:
            pass
        except OSError as e:
            self.log.warn("cannot remove {path}: {error}", path=self._listenersFile, error=e)

    def privilegedStartService(self) -> None:
        """
        Runs in the daemon, after twistd's fork: take twistd's start-up
        report over and record the daemon's pid in the state directory's
        lock.  Then bind every listener, before the backend opens: a port in
        use or an insecure listener stops twistd with its reason on stderr
        and a non-zero status.  Connections made before the backend is open
        wait (the protocol does not read them until the daemon is ready).
        """
        self._report.daemonized()
        if self._stateLock is not None:
            self._stateLock.recordHolder()
        for child in self:
            try:
                child.privilegedStartService()
            except (CannotListenError, InsecureListener, OSError) as e:
                self._stopListening()
                self._refuse(_cannotListen(child, e))

    def _refuse(self, reason: str) -> None:
        """Stop before the reactor runs: tell why, exit 1."""
        self.log.error("pycm cannot start: {reason}", reason=reason)
        self._report.failed(reason)
        self._runClosers(None)
        raise SystemExit(1)

    def _closeEvents(self, result: object) -> object:
        """Store the events that wait (a full disk), while the store is open."""
        self._daemon.events.close()
        return result

    def _runClosers(self, result: object) -> object:
        # Last opened, first closed: the lock is released last.
        for closer in reversed(self._closers):
            closer()
        return result

    def stopService(self) -> Deferred[Any]:
        if self._report.outcome is None:
            # Stopped (a signal) while the backend was opening: twistd
            # exits by that signal.
            self._report.failed("pycm was stopped before it was ready")
        self._removeListenersFile()
        stopping = super().stopService()

        def closeBackend(_: object) -> Deferred[Any]:
            d = maybeDeferred(self.backend.close)
            d.addBoth(self._closeEvents)
            d.addBoth(self._runClosers)
            return d

        stopping.addBoth(closeBackend)
        stopping.addErrback(
            lambda failure: self.log.failure("error while stopping", failure)
        )
        return stopping


#: The longest path a UNIX socket can have on Linux (sun_path, less its NUL).
UNIX_PATH_MAX = 107


def _cannotListen(service: Any, error: Exception) -> str:
    """Why a listener could not listen, for a person."""
    listener = getattr(service, "listener", None)
    where = listener.description if listener is not None else "an endpoint"
    why = str(error)
    if isinstance(error, CannotListenError) and error.socketError is not None:
        why = str(error.socketError)
        if listener is not None and listener.kind == "unix":
            path = str(error.port.decode() if isinstance(error.port, bytes) else error.port)
            size = len(os.fsencode(path))
            if size > UNIX_PATH_MAX:
                why = f"the path is {size} bytes, a UNIX socket's may have {UNIX_PATH_MAX} at most"
    return f"cannot listen on {where}: {why}"


def _exitAtExit(status: int) -> None:
    """
    Make the process exit with C{status} once twistd is done (its pidfile
    removed, its log closed): twistd itself always exits 0 after the
    reactor stops.
    """

    def exit() -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)

    atexit.register(exit)


def _openEventLog(stateDir: FilePath, closers: list[Any], reactor: Any) -> EventLog:
    """
    The event log, kept in C{events.db}, with its high-water mark in
    C{events.mark} (so that ids never repeat, even if C{events.db} is lost).
    """
    from pycm.store import SQLiteStore

    store = SQLiteStore(stateDir.child("events.db").path)
    closers.append(store.close)
    mark = EventIdMark(stateDir.child("events.mark").path)
    return EventLog(store, clock=reactor, mark=mark)


def _lockStateDir(stateDir: FilePath, closers: list[Any]) -> StateDirLock:
    from pycm.store import StateDirLock

    lock = StateDirLock(stateDir.path)
    lock.acquire()
    closers.append(lock.release)
    return lock


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


def makeService(
    options: Options, reactor: Any = None, whenReady: Callable[[], None] | None = None
) -> IService:
    """
    Build the daemon's service from its options.

    twistd calls it with the options alone: the global reactor, and
    L{freezeStartupObjects} once the daemon is ready.  Tests pass their own
    reactor, and no C{whenReady} unless they want one.
    """
    if reactor is None:
        from twisted.internet import reactor as globalReactor

        reactor = globalReactor
        if whenReady is None:
            whenReady = freezeStartupObjects
    logPath = twistdLogPath(options)
    if logPath is not None:
        warning = makeLogFilePrivate(logPath)
        if warning:
            log.warn("{warning}", warning=warning)
    stateDir: FilePath = options["state-dir"]
    closers: list[Any] = []
    try:
        for warning in checkStateDir(stateDir.path):
            log.warn("{warning}", warning=warning)
        stateLock = _lockStateDir(stateDir, closers)
        if options["auth-token-file"]:
            token = readToken(FilePath(options["auth-token-file"]))
        else:
            token = loadOrCreateToken(stateDir.child("token"))
        factory = loadBackendFactory(options["backend"])
        backend = factory(reactor, stateDir, options["backend-options"])
        events = _openEventLog(stateDir, closers, reactor)
    except (PycmError, OSError) as e:
        for closer in reversed(closers):
            closer()
        # twistd reports option errors only while parsing options; past
        # that point the clean way out is a message and a non-zero status.
        raise SystemExit(f"twistd pycm: {e}") from None
    listeners: list[Listener] = options["listeners"]
    daemon = Daemon(
        clock=reactor,
        backend=backend,
        events=events,
        token=token,
        listeners=[listener.description for listener in listeners],
        ready=False,
    )
    service = PycmService(
        reactor,
        daemon,
        closers,
        StartupReport.fromOptions(options),
        stateLock,
        whenReady=whenReady or (lambda: None),
        listenersFile=stateDir.child("listeners").path,
    )
    maxConnections = options["max-connections"]
    if maxConnections is None:
        # Read after the backend is made: it may have raised the limit.
        maxConnections = defaultMaxConnections(resource.getrlimit(resource.RLIMIT_NOFILE)[0])
    connectionLimit = ConnectionLimit(daemon, maxConnections)
    if options["legacy-framing"]:
        log.info(
            "legacy framing: on every listener a pause of {pause:g} ms after an "
            "unfinished line ends a request",
            pause=LEGACY_PAUSE * 1000,
        )
    for listener in listeners:
        serverFactory = PycmServerFactory(
            daemon,
            requireAuth=listener.requireAuth,
            description=listener.description,
            maxLineLength=options["max-line-length"],
            maxEventBacklog=options["max-event-backlog"],
            logRequests=options["log-level"] == "debug",
            authTimeout=options["auth-timeout"],
            connectionLimit=connectionLimit,
            legacyFraming=options["legacy-framing"],
            capped=listener.capped,
        )
        try:
            listening = ListenerService(reactor, listener, serverFactory, options["socket-group"])
        except Exception as e:
            # A missing key file, a malformed endpoint string...
            raise SystemExit(f"twistd pycm: --listen {listener.description}: {e}") from None
        listening.setServiceParent(service)
    return service



