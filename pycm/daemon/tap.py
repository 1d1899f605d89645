"""
C{twistd pycm}: the daemon's command line (L{Options}) and the assembly of
its service (L{makeService}): the state directory checked and locked, the
token, the backend, the event log, and one listener service a C{--listen}.
The service itself is L{pycm.daemon.service.PycmService}; how start-up
ends is told by L{pycm.daemon.startup}.
"""

from __future__ import annotations

import grp
import os
import resource
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.application.service import IService
from twisted.logger import Logger
from twisted.python import usage
from twisted.python.filepath import FilePath

import pycm
from pycm.backends import availableBackends, checkOptions, loadBackendFactory
from pycm.daemon.auth import loadOrCreateToken, readToken
from pycm.daemon.connectionlimit import ConnectionLimit
from pycm.daemon.eventlog import EventIdMark, EventLog
from pycm.daemon.handlers.applying import (
    applyOnceReady,
    checkServicesOption,
    loadServicesOption,
)
from pycm.daemon.legacyframing import LEGACY_PAUSE
from pycm.daemon.listeners import (
    Listener,
    ListenerService,
    classifyListener,
)
from pycm.daemon.notify import SystemdNotifier
from pycm.daemon.protocol import (
    DEFAULT_AUTH_TIMEOUT,
    DEFAULT_MAX_EVENT_BACKLOG,
    DEFAULT_MAX_LINE_LENGTH,
    PREAUTH_MAX_LINE_LENGTH,
    PycmServerFactory,
)
from pycm.daemon.service import PycmService
from pycm.daemon.session import DaemonState
from pycm.daemon.startup import (
    StartupReport,
    freezeStartupObjects,
    makeLogFilePrivate,
    rootWithoutToken,
    startFailure,
    twistdLogPath,
)
from pycm.errors import BadRequest, PycmError
from pycm.interfaces import IJournaledEvents
from pycm.statedir import checkStateDir
from pycm.statepaths import LISTENERS_FILE, TOKEN_FILE, defaultStateDir, otherDaemonEntry

if TYPE_CHECKING:
    from pycm.statelock import StateDirLock

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
        ["no-auth", None,
         "Require no token on loopback listeners (never on others). Every local user who "
         "can connect to them can then run commands as the daemon's user: for a daemon "
         "run as root, as root (it warns at start)."],
        ["legacy-framing", None,
         "On every listener, a request may also end with a pause (50 ms without a byte) "
         "instead of a newline, for the teaching client that sends none; lines ending in "
         "a newline are served at once as always. Changes no token rule: that client "
         "sends no token, so use it with --no-auth on loopback."],
    ]
    optParameters = [
        ["backend", "b", "process",
         "The container backend: memory, process, docker, swarm, or any installed one "
         "('--backend list' lists them)."],
        ["state-dir", "d", None,
         "Where state, logs and the token live [default: /var/lib/pycm for root, "
         "else $XDG_STATE_HOME/pycm or ~/.local/state/pycm]."],
        ["auth-token-file", None, None,
         "Use the token in this file instead of STATE_DIR/token: one word of 16 bytes or "
         "more (no spaces or control characters), the file at most 4 KiB, mode 0600."],
        ["socket-group", None, None,
         "Make UNIX sockets mode 0660 owned by this group (default: mode 0600)."],
        ["max-line-length", None, DEFAULT_MAX_LINE_LENGTH,
         "The longest request line accepted, in bytes.", int],
        ["max-event-backlog", None, DEFAULT_MAX_EVENT_BACKLOG,
         "Bytes of unread events after which a subscriber is disconnected.", int],
        ["auth-timeout", None, DEFAULT_AUTH_TIMEOUT,
         "Seconds from connect within which a connection must authenticate (auth "
         "TOKEN), whatever else it sends meanwhile, or be closed; until then its lines "
         f"may be {PREAUTH_MAX_LINE_LENGTH} bytes at most.", float],
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
         "docker and swarm backends: the engine's (swarm: a manager's) address "
         "(unix:///var/run/docker.sock, tcp://HOST:PORT) [default: $DOCKER_HOST]."],
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
        ["services", None, None,
         "A services file (TOML, as 'pycm apply FILE' reads) to apply at every start, "
         "once the backend is open and pycm listens; a file that cannot be read or is "
         "wrong stops the start. A service that fails is logged and pycm keeps serving."],
        ["services-project", None, None,
         "The project of --services' services [default: the file's directory's name]."],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["listen"] = []
        self["backend-option"] = {}
        self["swarm-node-host"] = []

    def opt_listen(self, description: str) -> None:
        """A Twisted server endpoint string to listen on (repeatable): tcp:PORT:interface=ADDR (port first, unlike a client's --host tcp:HOST:PORT), unix:PATH, ssl:PORT:privateKey=KEY, stdio:, systemd:domain=UNIX:index=0 (a socket systemd passed) [default: tcp:8080:interface=127.0.0.1]."""  # noqa: E501
        self["listen"].append(description)

    def opt_swarm_node_host(self, item: str) -> None:
        """swarm backend: NODE=ADDRESS, the engine of another node (its hostname or id), through which kill signals that node's tasks and stats reads their usage (repeatable, or comma-separated); the manager's own node needs none."""  # noqa: E501
        self["swarm-node-host"].append(item)

    def opt_backend_option(self, item: str) -> None:
        """A backend option KEY=VALUE (repeatable): the options with no flag of their own. process backend: default-workdir, cgroup-parent, cgroups, state-sync, mark-sweep-delay, shutdown-timeout (docs/process-backend.md); docker backend: init, stop-on-close, network, request-timeout, pull-timeout (docs/docker-backend.md); swarm backend: init, network, request-timeout, restart-delay, poll-interval, idle-poll-interval (docs/swarm-backend.md); and any third-party backend's. A key the backend does not know is refused."""  # noqa: E501
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
        flagsGiven = []
        for name in BACKEND_OPTIONS:
            if self[name] is not None:
                backendOptions[name] = self[name]
                flagsGiven.append(name)
        if self["swarm-node-host"]:
            backendOptions["swarm-node-host"] = ",".join(self["swarm-node-host"])
            flagsGiven.append("swarm-node-host")
        try:
            checkOptions(
                self["backend"],
                loadBackendFactory(self["backend"]),
                self["backend-option"],
                flagsGiven,
                (*BACKEND_OPTIONS, "swarm-node-host"),
            )
        except BadRequest as e:
            raise usage.UsageError(str(e)) from None
        self["backend-options"] = backendOptions
        self["service-set"] = None
        if self["services"] is not None:
            try:
                self["service-set"] = loadServicesOption(
                    self["services"], self["services-project"]
                )
            except BadRequest as e:
                raise usage.UsageError(f"--services {self['services']}: {e}") from None
        elif self["services-project"] is not None:
            raise usage.UsageError("--services-project needs --services")


def _openEventLog(
    stateDir: FilePath, closers: list[Any], reactor: Any, commits: Any = None
) -> EventLog:
    """
    The event log, kept in C{events.db}, with its high-water mark in
    C{events.mark} (so that ids never repeat, even if C{events.db} is lost);
    it joins the backend's group commits (C{commits}) if it has them.
    """
    from pycm.store import SQLiteStore

    store = SQLiteStore(stateDir.child("events.db").path, holds="events")
    closers.append(store.close)
    store.checkpointInThread(reactor)
    mark = EventIdMark(stateDir.child("events.mark").path)
    return EventLog(store, clock=reactor, mark=mark, commits=commits)


def _lockStateDir(stateDir: FilePath, closers: list[Any]) -> StateDirLock:
    from pycm.statelock import StateDirLock

    lock = StateDirLock(stateDir.path)
    lock.acquire()
    closers.append(lock.release)
    return lock


def makeService(
    options: Options,
    reactor: Any = None,
    whenReady: Callable[[], None] | None = None,
    notifier: SystemdNotifier | None = None,
) -> IService:
    """
    Build the daemon's service from its options.

    twistd calls it with the options alone: the global reactor,
    L{freezeStartupObjects} once the daemon is ready, and systemd told
    through C{NOTIFY_SOCKET} if it is set.  Tests pass their own reactor,
    and no C{whenReady} nor C{notifier} unless they want one.
    """
    if reactor is None:
        from twisted.internet import reactor as globalReactor

        reactor = globalReactor
        if whenReady is None:
            whenReady = freezeStartupObjects
        if notifier is None:
            notifier = SystemdNotifier.fromEnvironment(reactor, os.environ)
    stateDir: FilePath = options["state-dir"]
    closers: list[Any] = []
    try:
        logPath = twistdLogPath(options)
        if logPath is not None:
            warning = makeLogFilePrivate(logPath)
            if warning:
                log.warn("{warning}", warning=warning)
        for warning in checkStateDir(stateDir.path):
            log.warn("{warning}", warning=warning)
        stateLock = _lockStateDir(stateDir, closers)
        if options["auth-token-file"]:
            token = readToken(FilePath(options["auth-token-file"]))
        else:
            token = loadOrCreateToken(stateDir.child(TOKEN_FILE))
        factory = loadBackendFactory(options["backend"])
        backend = factory(reactor, stateDir, options["backend-options"])
        journaled = IJournaledEvents(backend, None)
        commits = journaled.commits if journaled is not None else None
        events = _openEventLog(stateDir, closers, reactor, commits)
        if options["service-set"] is not None:
            checkServicesOption(options["services"], options["service-set"], backend)
    except (PycmError, OSError) as e:
        for closer in reversed(closers):
            closer()
        # twistd reports option errors only while parsing options; past
        # that point the clean way out is a message and a non-zero status.
        raise SystemExit(f"twistd pycm: {startFailure(e, stateDir.path)}") from None
    listeners: list[Listener] = options["listeners"]
    danger = rootWithoutToken(listeners, os.geteuid())
    if danger is not None:
        # On the terminal too: under twistd the log may be a file nobody reads.
        # (Not a "warning" key: trial's observer takes that for a Python warning.)
        log.warn("{danger}", danger=danger)
        if options.parent is not None:
            print(f"twistd pycm: warning: {danger}", file=sys.stderr, flush=True)
    state = DaemonState(
        clock=reactor,
        backend=backend,
        events=events,
        token=token,
        listeners=[listener.description for listener in listeners],
        ready=False,
    )
    service = PycmService(
        reactor,
        state,
        closers,
        StartupReport.fromOptions(options),
        stateLock,
        whenReady=applyOnceReady(whenReady or (lambda: None), state, options["service-set"]),
        listenersFile=stateDir.child(LISTENERS_FILE).path,
        notifier=notifier,
        tokenFile=os.path.abspath(options["auth-token-file"] or stateDir.child(TOKEN_FILE).path),
        # Run by twistd (not a test's makeService): its client finds it.
        listenersCopy=otherDaemonEntry(stateDir.path) if options.parent is not None else None,
    )
    maxConnections = options["max-connections"]
    if maxConnections is None:
        # Read after the backend is made: it may have raised the limit.
        maxConnections = defaultMaxConnections(resource.getrlimit(resource.RLIMIT_NOFILE)[0])
    connectionLimit = ConnectionLimit(state, maxConnections)
    if options["legacy-framing"]:
        log.info(
            "legacy framing: on every listener a pause of {pause:g} ms after an "
            "unfinished line ends a request",
            pause=LEGACY_PAUSE * 1000,
        )
    for listener in listeners:
        serverFactory = PycmServerFactory(
            state,
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
