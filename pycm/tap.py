"""
C{twistd pycm}: the daemon's command line and its service.
"""

from __future__ import annotations

import grp
import ipaddress
import os
import re
import sys
from typing import Any

import attrs
from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import IService, MultiService, Service
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.endpoints import serverFromString
from twisted.logger import Logger
from twisted.python import usage
from twisted.python.filepath import FilePath

import pycm
from pycm.auth import loadOrCreateToken, readToken
from pycm.backends import availableBackends, loadBackendFactory
from pycm.client.config import defaultStateDir
from pycm.commands import Daemon
from pycm.errors import PycmError
from pycm.events import EventLog
from pycm.interfaces import IContainerBackend, IEventStore
from pycm.protocol import (
    DEFAULT_MAX_EVENT_BACKLOG,
    DEFAULT_MAX_LINE_LENGTH,
    PycmServerFactory,
)

DEFAULT_LISTEN = "tcp:8080:interface=127.0.0.1"

#: Options passed through to the backend, by their command-line name.
BACKEND_OPTIONS = (
    "docker-host",
    "default-image",
    "default-command",
    "pull",
    "log-max-size",
    "log-max-files",
)


@attrs.frozen
class Listener:
    """
    One C{--listen} endpoint string and what pycm makes of it.

    @ivar requireAuth: whether connections must send C{auth TOKEN} first.
    """

    description: str
    kind: str
    loopback: bool
    requireAuth: bool


def _splitEndpoint(description: str) -> tuple[str, list[str], dict[str, str]]:
    """Split an endpoint string into its kind, positional and named parts."""
    parts = [part.replace("\\:", ":") for part in re.split(r"(?<!\\):", description)]
    kind = parts[0].lower()
    args, kwargs = [], {}
    for part in parts[1:]:
        key, sep, value = part.partition("=")
        if sep:
            kwargs[key] = value
        else:
            args.append(part)
    return kind, args, kwargs


def _isLoopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def classifyListener(description: str, noAuth: bool) -> Listener:
    """
    Decide how to treat a C{--listen} string.

    @raise usage.UsageError: for a TCP listener on a non-loopback address
        without TLS.
    """
    kind, args, kwargs = _splitEndpoint(description)
    if kind in ("unix", "stdio"):
        return Listener(description, kind, loopback=True, requireAuth=False)
    if kind in ("tcp", "tcp6", "ssl", "tls"):
        interface = kwargs.get("interface", args[1] if len(args) > 1 else "")
        loopback = _isLoopback(interface)
        if kind in ("tcp", "tcp6") and not loopback:
            where = interface or "every address"
            raise usage.UsageError(
                f"refusing --listen {description}: a TCP listener on {where} "
                "without TLS would send tokens and commands in the clear; listen "
                "on a loopback address (interface=127.0.0.1), a UNIX socket, or "
                "use ssl:"
            )
        return Listener(description, kind, loopback, requireAuth=not (noAuth and loopback))
    # Anything else (systemd sockets, third-party endpoints): we cannot tell
    # where it listens, so it always wants the token.
    return Listener(description, kind, loopback=False, requireAuth=True)


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
        ["log-level", None, "info", "info, or debug to log every request."],
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
        if self["socket-group"] is not None:
            try:
                grp.getgrnam(self["socket-group"])
            except KeyError:
                raise usage.UsageError(f"no such group: {self['socket-group']}") from None
        if not self["listen"]:
            self["listen"] = [DEFAULT_LISTEN]
        self["listeners"] = [
            classifyListener(description, self["no-auth"]) for description in self["listen"]
        ]
        stateDir = self["state-dir"]
        self["state-dir"] = FilePath(stateDir) if stateDir else defaultStateDir()
        backendOptions = dict(self["backend-option"])
        for name in BACKEND_OPTIONS:
            if self[name] is not None:
                backendOptions[name] = self[name]
        self["backend-options"] = backendOptions


def _unixEndpoint(listener: Listener, group: str | None) -> str:
    """Give a UNIX listener the contract's permissions unless it set a mode."""
    if listener.kind != "unix" or ":mode=" in listener.description:
        return listener.description
    return listener.description + (":mode=660" if group else ":mode=600")


class ListenerService(StreamServerEndpointService):
    """Listens on one endpoint; gives a UNIX socket its group."""

    log = Logger()

    def __init__(self, reactor: Any, listener: Listener, factory: Any, group: str | None):
        endpoint = serverFromString(reactor, _unixEndpoint(listener, group))
        super().__init__(endpoint, factory)
        self.listener = listener
        self._group = group

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        assert self._waitingForPort is not None
        self._waitingForPort.addCallback(self._listening)

    def _listening(self, port: Any) -> Any:
        address = "stdio" if self.listener.kind == "stdio" else _describeAddress(port)
        if self.listener.kind == "unix" and self._group:
            path = _splitEndpoint(self.listener.description)[1][0]
            os.chown(path, -1, grp.getgrnam(self._group).gr_gid)
        self.log.info(
            "pycm listening on {address} (token {auth})",
            address=address,
            auth="required" if self.listener.requireAuth else "not required",
        )
        return port


def _describeAddress(port: Any) -> str:
    """C{tcp:127.0.0.1:8080}, C{unix:/run/pycm.sock} or C{stdio}."""
    try:
        address = port.getHost()
    except Exception:
        return "stdio"
    if hasattr(address, "port"):
        return f"{address.type.lower()}:{address.host}:{address.port}"
    name = getattr(address, "name", b"")
    return "unix:" + (name.decode() if isinstance(name, bytes) else str(name))


class PycmService(MultiService):
    """
    The daemon: opens the backend, then starts listening; on stop, stops
    listening, then closes the backend (which stops its containers).
    """

    log = Logger()

    def __init__(self, reactor: Any, backend: IContainerBackend, closers: list[Any]) -> None:
        super().__init__()
        self._reactor = reactor
        self.backend = backend
        self._closers = closers
        self.ready: Deferred[None] = Deferred()

    def startService(self) -> None:
        Service.startService(self)
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
            child.privilegedStartService()
            child.startService()
        self.log.info("pycm is ready")
        self.ready.callback(None)

    def _failedToOpen(self, failure: Any) -> None:
        self.log.failure(
            "the {backend} backend could not start; pycm is stopping",
            failure,
            backend=self.backend.name,
        )
        self.ready.errback(failure)
        self._reactor.stop()

    def privilegedStartService(self) -> None:
        # Listening waits until the backend is open (see startService).
        pass

    def _runClosers(self, result: object) -> object:
        for closer in self._closers:
            closer()
        return result

    def stopService(self) -> Deferred[Any]:
        stopping = super().stopService()

        def closeBackend(_: object) -> Deferred[Any]:
            d = maybeDeferred(self.backend.close)
            d.addBoth(self._runClosers)
            return d

        stopping.addBoth(closeBackend)
        stopping.addErrback(
            lambda failure: self.log.failure("error while stopping", failure)
        )
        return stopping


def _openEventStore(stateDir: FilePath, closers: list[Any]) -> IEventStore:
    """The durable event store in the state directory."""
    from pycm.store import SQLiteStore

    store = SQLiteStore(stateDir.child("events.db").path)
    closers.append(store.close)
    return store


def _lockStateDir(stateDir: FilePath, closers: list[Any]) -> None:
    from pycm.store import StateDirLock

    lock = StateDirLock(stateDir.path)
    lock.acquire()
    closers.append(lock.release)


def makeService(options: Options, reactor: Any = None) -> IService:
    """Build the daemon's service from its options."""
    if reactor is None:
        from twisted.internet import reactor as globalReactor

        reactor = globalReactor
    stateDir: FilePath = options["state-dir"]
    if not stateDir.exists():
        stateDir.makedirs()
        os.chmod(stateDir.path, 0o700)
    closers: list[Any] = []
    try:
        _lockStateDir(stateDir, closers)
        if options["auth-token-file"]:
            token = readToken(FilePath(options["auth-token-file"]))
        else:
            token = loadOrCreateToken(stateDir.child("token"))
        factory = loadBackendFactory(options["backend"])
        backend = factory(reactor, stateDir, options["backend-options"])
        events = EventLog(_openEventStore(stateDir, closers))
    except (PycmError, OSError) as e:
        for closer in closers:
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
    )
    service = PycmService(reactor, backend, closers)
    for listener in listeners:
        serverFactory = PycmServerFactory(
            daemon,
            requireAuth=listener.requireAuth,
            description=listener.description,
            maxLineLength=options["max-line-length"],
            maxEventBacklog=options["max-event-backlog"],
            logRequests=options["log-level"] == "debug",
        )
        ListenerService(reactor, listener, serverFactory, options["socket-group"]).setServiceParent(
            service
        )
    return service



