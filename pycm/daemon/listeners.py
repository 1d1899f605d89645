"""
What pycm makes of a C{--listen} endpoint string (L{classifyListener}):
what kind of listener it is, whether it is on loopback and wants the token,
and the service that listens on it (L{ListenerService}).
"""

from __future__ import annotations

import grp
import ipaddress
import os
import socket
from collections.abc import Mapping
from typing import Any

import attrs
from twisted.application.internet import StreamServerEndpointService
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.endpoints import UNIXServerEndpoint, serverFromString
from twisted.logger import Logger
from twisted.python import usage

from pycm.daemon.activation import PassedSockets, inspectSocket
from pycm.daemon.adoption import PassedSocketEndpoint
from pycm.daemon.unixlock import afterFailedListen, prepareLock
from pycm.endpoints import splitEndpoint

#: Kinds whose connections are encrypted.
ENCRYPTED = frozenset({"ssl", "tls"})
#: Kinds that listen on TCP in the clear.
PLAINTEXT_TCP = frozenset({"tcp", "tcp6"})

#: Where each kind takes its interface among the positional parameters
#: (after the kind itself), as Twisted's parsers define them.
_INTERFACE_POSITION = {"tcp": 2, "tcp6": 2, "ssl": 5}

#: Where each kind takes its listen backlog among the positional
#: parameters (after the kind itself), as Twisted's parsers define them.
_BACKLOG_POSITION = {"tcp": 3, "tcp6": 2, "ssl": 6, "unix": 3}

#: The largest listen backlog pycm asks for by default.
MAX_DEFAULT_BACKLOG = 1024

#: The most connections a listener accepts in one reactor turn.  Twisted's
#: port starts at 100 and grows by 20 while a burst of connects lasts, each
#: accept building a protocol and reading its first bytes in that turn: a
#: burst of 3,000 held every other client up for 60-90 ms.  Sixteen keep a
#: turn to a few milliseconds; the backlog holds the rest for the next.
MAX_ACCEPTS_PER_TURN = 16


def defaultBacklog(somaxconn: str = "/proc/sys/net/core/somaxconn") -> int:
    """
    The listen backlog when the endpoint string gives none: the kernel's
    C{net.core.somaxconn} (the most it grants), at most
    L{MAX_DEFAULT_BACKLOG}.
    """
    try:
        with open(somaxconn) as limit:
            kernel = int(limit.read())
    except (OSError, ValueError):
        return MAX_DEFAULT_BACKLOG
    return max(1, min(MAX_DEFAULT_BACKLOG, kernel))


def givenBacklog(kind: str, args: list[str], kwargs: dict[str, str]) -> str | None:
    """The backlog an endpoint string gives, by keyword or position."""
    position = _BACKLOG_POSITION.get(kind)
    if "backlog" in kwargs:
        return kwargs["backlog"]
    if position is not None and len(args) > position:
        return args[position]
    return None


class InsecureListener(Exception):
    """A listener bound where it must not: plaintext TCP off loopback."""


def isLoopback(host: str) -> bool:
    """
    Is C{host} a loopback address (names other than localhost: no)?  An
    IPv4-mapped IPv6 address (C{::ffff:127.0.0.1}) is the IPv4 address it
    maps.
    """
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def _unescapedAddress(args: list[str], kwargs: Mapping[str, str]) -> str | None:
    """
    The IPv6 address an C{interface=} was meant to be when its colons were
    not escaped (C{tcp:8080:interface=::1} splits into C{interface=""} and
    the positional C{""}, C{"1"}), or None.
    """
    if "interface" not in kwargs or len(args) <= 2:
        return None
    meant = ":".join([kwargs["interface"], *args[2:]])
    try:
        ipaddress.IPv6Address(meant.strip("[]"))
    except ValueError:
        return None
    return meant.strip("[]")


@attrs.frozen
class Listener:
    """
    One C{--listen} endpoint string and what pycm makes of it.

    @ivar kind: C{tcp}, C{tcp6}, C{ssl}, C{tls}, C{unix}, C{stdio}, or another
        installed endpoint type.
    @ivar loopback: whether it listens on loopback only (or is not a
        network listener at all).
    @ivar requireAuth: whether connections must send C{auth TOKEN} first.
    @ivar unixMode: for a UNIX socket, the mode it gets.
    @ivar fileno: for a socket systemd passed (C{systemd:}), its descriptor.
    @ivar family: for a socket systemd passed, its address family.
    """

    description: str
    kind: str
    loopback: bool
    requireAuth: bool
    unixMode: int | None = None
    fileno: int | None = None
    family: int | None = None

    @property
    def capped(self) -> bool:
        """
        Are connections beyond the daemon's cap refused here?  Every
        listener but a UNIX socket (pycm's or systemd's) and stdio, with or
        without the token: on those an operator can always get in.
        """
        return self.kind not in ("unix", "stdio") and self.family != socket.AF_UNIX

    def lockPath(self) -> str | None:
        """
        The lock file Twisted makes beside a C{unix:} socket
        (C{PATH.lock}, a link to the daemon's pid; C{lockfile=0} makes
        none), or None.
        """
        if self.kind != "unix" or self.fileno is not None:
            return None
        args, kwargs = splitEndpoint(self.description)
        address = kwargs.get("address", args[1] if len(args) > 1 else "")
        lockfile = kwargs.get("lockfile", args[4] if len(args) > 4 else "1")
        return address + ".lock" if bool(int(lockfile)) else None

    def endpoint(self, reactor: Any) -> Any:
        """The Twisted server endpoint to listen on."""
        if self.fileno is not None:
            assert self.family is not None
            return PassedSocketEndpoint(reactor, self.fileno, self.family)
        args, kwargs = splitEndpoint(self.description)
        given = givenBacklog(self.kind, args, kwargs)
        if self.kind == "unix":
            address = kwargs.get("address", args[1] if len(args) > 1 else "")
            backlog = defaultBacklog() if given is None else int(given)
            lockfile = kwargs.get("lockfile", args[4] if len(args) > 4 else "1")
            return UNIXServerEndpoint(
                reactor, address, backlog=backlog, mode=self.unixMode, wantPID=bool(int(lockfile))
            )
        if given is None and self.kind in _BACKLOG_POSITION:
            return serverFromString(reactor, f"{self.description}:backlog={defaultBacklog()}")
        return serverFromString(reactor, self.description)


def classifyListener(
    description: str,
    noAuth: bool,
    socketGroup: str | None = None,
    passed: PassedSockets | None = None,
) -> Listener:
    """
    Decide how to treat a C{--listen} string.  It is split exactly as
    Twisted splits it (L{pycm.endpoints.splitEndpoint}), so that what pycm
    checks is what Twisted opens.  TCP, TLS and UNIX listeners get a listen
    backlog of L{defaultBacklog} unless the string gives one (C{backlog=}):
    Twisted's 50 makes about one connect in 50 wait a second for the SYN to
    be sent again when many clients connect at once.

    @param noAuth: the operator's C{--no-auth}: no token on loopback.
    @param socketGroup: C{--socket-group}: UNIX sockets get mode 0660
        instead of 0600.
    @param passed: the sockets systemd passed (for tests; by default as
        Twisted read them, L{PassedSockets.fromTwisted}).
    @raise usage.UsageError: for plaintext TCP on a non-loopback address, a
        UNIX socket that others could use, or a malformed string.
    """
    args, kwargs = splitEndpoint(description)
    kind = args[0] if args else ""
    if kind == "systemd":
        return classifyPassed(description, args, kwargs, noAuth, passed)
    if kind == "stdio":
        return Listener(description, kind, loopback=True, requireAuth=False)
    if kind == "unix":
        if len(args) < 2 and "address" not in kwargs:
            raise usage.UsageError(f"--listen {description}: unix: needs a path")
        given = kwargs.get("mode", args[2] if len(args) > 2 else None)
        if given is None:
            mode = 0o660 if socketGroup else 0o600
        else:
            try:
                mode = int(given, 8)
            except ValueError:
                raise usage.UsageError(f"--listen {description}: bad mode {given!r}") from None
        if mode & 0o007:
            raise usage.UsageError(
                f"refusing --listen {description}: a UNIX socket with mode {mode:o} "
                "lets every local user control pycm without a token; use 600, or 660 "
                "with --socket-group"
            )
        return Listener(description, kind, loopback=True, requireAuth=False, unixMode=mode)
    if kind in PLAINTEXT_TCP or kind in ENCRYPTED:
        checkPort(description, kind, args, kwargs)
        cut = _unescapedAddress(args, kwargs)
        if cut is not None:
            raise usage.UsageError(
                f"--listen {description}: the colons of the interface {cut} separate the "
                "parameters of an endpoint string: escape them with a backslash, as in "
                f"--listen {kind}:{args[1] if len(args) > 1 else kwargs.get('port', '')}"
                f":interface={_escape(cut)}"
            )
        position = _INTERFACE_POSITION.get(kind)
        positional = args[position] if position is not None and len(args) > position else ""
        interface = kwargs.get("interface", positional)
        loopback = isLoopback(interface)
        if kind in PLAINTEXT_TCP and not loopback:
            where = interface or "every address"
            raise usage.UsageError(
                f"refusing --listen {description}: a TCP listener on {where} "
                "without TLS would send tokens and commands in the clear; listen "
                "on a loopback address (interface=127.0.0.1), a UNIX socket, or "
                "use ssl:"
            )
        return Listener(description, kind, loopback, requireAuth=not (noAuth and loopback))
    # Anything else (third-party endpoints): pycm cannot
    # tell where it listens, so it always wants the token, and the address
    # it binds is checked once listening.
    return Listener(description, kind, loopback=False, requireAuth=True)


def _isPort(word: str) -> bool:
    return word.isascii() and word.isdigit() and int(word) <= 65535


def _escape(value: str) -> str:
    """C{value} as a parameter of an endpoint string (its colons escaped)."""
    return value.replace("\\", "\\\\").replace(":", "\\:")


def checkPort(
    description: str, kind: str, args: list[str], kwargs: Mapping[str, str]
) -> None:
    """
    The port of a C{tcp:}, C{tcp6:} or C{ssl:} listener must be a whole
    number from 0 to 65535.  Twisted's server strings take the port first
    (C{tcp:PORT:interface=HOST}); C{tcp:HOST:PORT}, the form of a client's
    C{--host} (and of the address the daemon logs), would make the host the
    port and the port the interface: it is recognised and the string meant
    is suggested, never guessed.

    @raise usage.UsageError: saying so.
    """
    if kind not in _INTERFACE_POSITION:
        return
    port = kwargs.get("port", args[1] if len(args) > 1 else "")
    if _isPort(port):
        return
    if "port" not in kwargs and len(args) >= 3 and _isPort(args[-1]):
        host = ":".join(args[1:-1]).strip("[]")
        if host and "interface" not in kwargs:
            rest = "".join(f":{key}={_escape(value)}" for key, value in kwargs.items())
            meant = f"{kind}:{args[-1]}:interface={_escape(host)}{rest}"
            raise usage.UsageError(
                f"--listen {description}: {kind}: takes the port first, then the "
                f"interface: did you mean --listen {meant}? ({kind}:HOST:PORT is the "
                "form of a client's --host, not of --listen)"
            )
    raise usage.UsageError(
        f"--listen {description}: the port {port!r} is not a whole number from 0 to "
        f"65535 ({kind}:PORT:interface=HOST, as in tcp:8080:interface=127.0.0.1)"
    )


def classifyPassed(
    description: str,
    args: list[str],
    kwargs: Mapping[str, str],
    noAuth: bool,
    passed: PassedSockets | None = None,
) -> Listener:
    """
    Classify a socket systemd passed (C{systemd:domain=UNIX:index=0}) by
    what it is: a UNIX socket is guarded by its file's permissions (no
    token, as C{unix:}; refused if every user may connect; an abstract one
    has no permissions and wants the token); an INET one follows the TCP
    rules for the address it is bound to (C{getsockname}): loopback only
    (pycm cannot put TLS on a passed socket), the token unless C{--no-auth}.

    @raise usage.UsageError: saying what is wrong with the string or the
        socket.
    """
    given = dict(zip(("domain", "index", "name"), args[1:]))
    given.update(kwargs)
    domain = given.get("domain", "")
    if not domain:
        raise usage.UsageError(f"--listen {description}: systemd: needs domain=UNIX or INET")
    if passed is None:
        passed = PassedSockets.fromTwisted()
    sock = inspectSocket(description, passed.find(description, given), domain)
    if sock.family == socket.AF_UNIX:
        if sock.mode is None:
            # Abstract or unnamed: no file permission keeps anyone out.
            return Listener(description, "systemd", loopback=True, requireAuth=True,
                            fileno=sock.fileno, family=sock.family)
        if sock.mode & 0o002:
            raise usage.UsageError(
                f"refusing --listen {description}: the socket passed, {sock.path}, has mode "
                f"{sock.mode:o}: every local user could control pycm without a token; set "
                "SocketMode=0660 (or 0600) in the socket unit"
            )
        return Listener(description, "systemd", loopback=True, requireAuth=False,
                        fileno=sock.fileno, family=sock.family)
    if not isLoopback(sock.host):
        where = sock.host if sock.host not in ("0.0.0.0", "::") else "every address"
        raise usage.UsageError(
            f"refusing --listen {description}: the TCP socket passed listens on {where}, and "
            "pycm cannot add TLS to a passed socket: tokens and commands would go in the "
            "clear; bind it to loopback in the socket unit (ListenStream=127.0.0.1:8080), "
            "or pass a UNIX socket"
        )
    return Listener(description, "systemd", loopback=True, requireAuth=not noAuth,
                    fileno=sock.fileno, family=sock.family)


def checkBoundAddress(listener: Listener, address: Any) -> None:
    """
    Check the address a listener really bound, once listening: a listener
    that turns out to be plaintext TCP on a non-loopback address stops the
    daemon.

    @raise InsecureListener: for plaintext on a non-loopback address, or a
        listener classified as loopback that is not.
    """
    if not isinstance(address, IPv4Address | IPv6Address):
        return
    loopback = isLoopback(address.host)
    if not loopback and (listener.loopback or listener.kind not in ENCRYPTED):
        raise InsecureListener(
            f"--listen {listener.description} is listening on {address.host}, "
            "which is not loopback, without TLS or without the token: refusing to serve"
        )


def describeAddress(port: Any) -> str:
    """C{tcp:127.0.0.1:8080}, C{unix:/run/pycm.sock} or C{stdio}."""
    try:
        address = port.getHost()
    except Exception:
        return "stdio"
    if isinstance(address, IPv4Address | IPv6Address):
        return f"{address.type.lower()}:{address.host}:{address.port}"
    name = getattr(address, "name", None)
    if name is None:
        return "stdio"
    return "unix:" + (name.decode() if isinstance(name, bytes) else str(name))


def describeForms(kind: str, address: Any) -> str:
    """
    For a TCP or TLS listener's log line: the strings that name it, as a
    client's C{--host} takes it (host first) and, for plain TCP, as
    C{--listen} does (port first); Twisted's client and server strings
    differ.  Empty for another listener.
    """
    if not isinstance(address, IPv4Address | IPv6Address):
        return ""
    host = _escape(address.host)
    if kind in ENCRYPTED:
        return f"; a client's --host tls:{host}:{address.port}"
    forms = f"; a client's --host tcp:{host}:{address.port}"
    if kind in PLAINTEXT_TCP:
        forms += f", --listen {kind}:{address.port}:interface={host}"
    return forms


def boundListener(listener: Listener, port: Any) -> dict[str, Any] | None:
    """
    What the listeners file says of a bound TCP or TLS listener: its host,
    its real port (C{tcp:0} included) and whether it wants the token; None
    for a UNIX socket, stdio or a listener not bound.
    """
    if port is None:
        return None
    try:
        address = port.getHost()
    except Exception:
        return None
    if not isinstance(address, IPv4Address | IPv6Address):
        return None
    return {
        "kind": listener.kind,
        "host": address.host,
        "port": address.port,
        "token": listener.requireAuth,
    }


class ListenerService(StreamServerEndpointService):
    """
    Listens on one endpoint: binds at once (so that twistd reports a port in
    use and exits), checks what it bound, gives a UNIX socket its group.
    """

    log = Logger()

    def __init__(self, reactor: Any, listener: Listener, factory: Any, group: str | None):
        super().__init__(listener.endpoint(reactor), factory)
        self.listener = listener
        self._group = group
        self.port: Any = None

    def privilegedStartService(self) -> None:
        """
        Listen now; raise at once if that fails or the listener bound where
        it must not (twistd then reports it and exits non-zero).
        """
        lock = self.listener.lockPath()
        before = prepareLock(lock)
        waiting = self.endpoint.listen(self.factory)
        waiting.addCallback(self._listening)
        failures: list[Any] = []
        waiting.addErrback(failures.append)
        self._waitingForPort = waiting
        if failures:
            afterFailedListen(lock, before, failures[0].value)
            failures[0].raiseException()

    def _listening(self, port: Any) -> Any:
        self.port = capAccepts(port)
        if self.listener.kind == "stdio":
            address = "stdio"
        else:
            checkBoundAddress(self.listener, port.getHost())
            address = describeAddress(port)
        if self.listener.kind == "unix" and self._group:
            os.chown(address[len("unix:") :], -1, grp.getgrnam(self._group).gr_gid)
        self.log.info(
            "pycm listening on {address} (token {auth}{forms})",
            address=address,
            auth="required" if self.listener.requireAuth else "not required",
            forms=describeForms(self.listener.kind, port.getHost()),
        )
        return port


_cappedPortClasses: dict[type, type] = {}


def capAccepts(port: Any) -> Any:
    """
    Make C{port} (a Twisted TCP, TLS or UNIX C{Port}) accept at most
    L{MAX_ACCEPTS_PER_TURN} connections in one reactor turn; another kind
    of listening port is returned as it is.  Twisted keeps the count in the
    port's C{numberAccepts}, which its C{doRead} sets anew each turn: the
    port becomes an instance of a subclass whose C{numberAccepts} is a
    bounded property.
    """
    if not isinstance(getattr(port, "numberAccepts", None), int):
        return port
    cls = type(port)
    capped = _cappedPortClasses.get(cls)
    if capped is None:

        def get(self: Any) -> int:
            return int(self.__dict__.get("_acceptsPerTurn", MAX_ACCEPTS_PER_TURN))

        def set_(self: Any, count: int) -> None:
            self.__dict__["_acceptsPerTurn"] = max(1, min(count, MAX_ACCEPTS_PER_TURN))

        capped = type(f"Capped{cls.__name__}", (cls,), {"numberAccepts": property(get, set_)})
        _cappedPortClasses[cls] = capped
    port.__class__ = capped
    port.numberAccepts = MAX_ACCEPTS_PER_TURN
    return port
