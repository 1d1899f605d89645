"""
Reaching the daemon: a C{--host} endpoint string checked (a Docker-style
address gets a hint, a UNIX socket path too long to connect to is refused
before Twisted sees it), connected to and authenticated in the reactor; and
where the client ended up connected, as the shell's banner names it.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any, TextIO

from pycm.client.exits import CannotConnect, UsageError
from pycm.client.wire import ProtocolError

if TYPE_CHECKING:
    from twisted.internet.interfaces import IStreamClientEndpoint

    from pycm.client.arguments import CommandLine
    from pycm.client.protocol import ClientProtocol

#: The longest UNIX socket path a connection can name: the size of
#: C{sun_path} (108 bytes on Linux, 104 on macOS and the BSDs) less the
#: terminating NUL.  Twisted meets a longer one with a traceback and a
#: connection attempt that never ends, so it is refused before connecting.
MAX_UNIX_PATH = (104 if sys.platform == "darwin" or "bsd" in sys.platform else 108) - 1


#: What C{--host} takes, told when it is given something else.
EXPECTED_ENDPOINT = (
    "--host takes a Twisted client endpoint string: tcp:HOST:PORT, unix:PATH "
    "or tls:HOST:PORT"
)


def endpointFor(reactor: Any, description: str) -> IStreamClientEndpoint:
    """
    The client endpoint for C{description}.

    @raise UsageError: when it is not a valid endpoint string, or names a
        UNIX socket path too long to connect to.
    """
    if description.startswith("tcp://"):
        # Twisted would take "//HOST" for the host name.
        hint = endpointHint(description) or "tcp:HOST:PORT"
        raise UsageError(
            f"bad endpoint {description!r}: Twisted endpoint strings have no '//' "
            f"(did you mean {hint}?)"
        )
    kind = endpointKind(description)
    if kind == "ssl":
        raise UsageError(unverifiedSSL(description))
    if kind == "tls":
        from pycm.client.tlsverify import CheckedTLSEndpoint, parseTLSEndpoint

        parsed = parseTLSEndpoint(description)
        wrapped = None if parsed.endpoint is None else endpointFor(reactor, parsed.endpoint)
        return CheckedTLSEndpoint(reactor, parsed, wrapped)
    from twisted.internet.endpoints import UNIXClientEndpoint, clientFromString

    try:
        endpoint = clientFromString(reactor, description)
    except Exception as e:
        meant = endpointHint(description)
        message = f"bad endpoint {description!r}: {e}"
        raise UsageError(
            message + (f" (did you mean {meant}?)" if meant else f" ({EXPECTED_ENDPOINT})")
        ) from None
    if isinstance(endpoint, UNIXClientEndpoint):
        checkSocketPath(description, unixSocketPath(description))
    return endpoint


def endpointKind(description: str) -> str:
    """
    The type of an endpoint string (C{tcp}, C{tls}...), in lower case as
    Twisted matches it (C{TLS:} is C{tls:} to Twisted).
    """
    return description.partition(":")[0].lower()


def unverifiedSSL(description: str) -> str:
    """Why an C{ssl:} endpoint is refused, and what to use instead."""
    from pycm.client.config import endpointAddress

    address = endpointAddress(description)
    instead = f"tls:{address[0]}:{address[1]}" if address else "tls:HOST:PORT"
    return (f"bad endpoint {description!r}: an ssl: client endpoint does not check the "
            "daemon's certificate, so whoever answers would be sent the token and "
            f"every request; use {instead}, which does (add :trustRoots=DIR for a "
            "certificate of your own)")


def unixSocketPath(description: str) -> str:
    """
    The socket path of a C{unix:} endpoint string Twisted has parsed: its
    C{path=} or first argument, unquoted by the same rules.
    """
    from twisted.python import usage

    from pycm.endpoints import splitEndpoint

    try:
        args, kwargs = splitEndpoint(description)
    except usage.UsageError:
        raise UsageError(f"bad endpoint {description!r}: a keyword is given twice") from None
    return kwargs.get("path", args[1] if len(args) > 1 else "")


def checkSocketPath(description: str, path: str | bytes) -> None:
    """
    Refuse a UNIX socket path too long to connect to.

    @raise UsageError: when C{path} is over L{MAX_UNIX_PATH} bytes.
    """
    size = len(os.fsencode(path))
    if size > MAX_UNIX_PATH:
        raise UsageError(
            f"bad endpoint {description!r}: the socket path is {size} bytes, and a "
            f"UNIX socket path can have at most {MAX_UNIX_PATH} (name it by a "
            "shorter path: a relative one, or a symbolic link to its directory)"
        )


def endpointHint(description: str) -> str | None:
    """
    The endpoint string a Docker-style address means, if it is one:
    C{HOST:PORT} and C{tcp://HOST:PORT} are C{tcp:HOST:PORT}.
    """
    if description.startswith("tcp://"):
        description = description[len("tcp://") :]
    host, sep, port = description.rpartition(":")
    if sep and host and port.isdigit() and ":" not in host:
        return f"tcp:{host}:{port}"
    return None


async def connectTo(reactor: Any, options: CommandLine,
                    err: TextIO | None = None) -> ClientProtocol:
    """
    Connect, and authenticate when a token is known: one found in the
    token file only when the socket at the other end is its owner's
    (L{pycm.client.tokensafety}), else it is not sent and C{err} (standard
    error by default) says why.

    @raise UsageError: for a bad endpoint string.
    @raise CannotConnect: when the daemon cannot be reached.
    """
    from twisted.internet.error import ConnectError, DNSLookupError

    from pycm.client.protocol import Disconnected, connect
    from pycm.client.tokensafety import transportEnds, whyWithheld
    from pycm.errors import PycmError

    endpoint = endpointFor(reactor, options.host)
    try:
        client = await connect(endpoint)
        if endpointKind(options.host) == "tls":
            from pycm.client.tlsverify import CheckedTLSEndpoint, handshake

            if isinstance(endpoint, CheckedTLSEndpoint):
                await handshake(reactor, client, endpoint.check, options.host,
                                endpoint.parsed.address, endpoint.parsed.timeout)
        token = options.token
        withheld = token and whyWithheld(options, *transportEnds(client.transport))
        if withheld:
            (sys.stderr if err is None else err).write(f"pycm: {withheld}\n")
        elif token:
            try:
                await client.authenticate(token)
            except PycmError as e:
                client.authError = e
        return client
    except (ConnectError, DNSLookupError, OSError, Disconnected,
            ProtocolError) as e:
        raise CannotConnect(options.host, e) from None


def daemonAddress(client: ClientProtocol, fallback: str) -> str:
    """C{127.0.0.1:8080} or a socket path: where the client is connected."""
    try:
        peer = client.transport.getPeer()  # type: ignore[union-attr]
    except Exception:
        return fallback
    host = getattr(peer, "host", None)
    port = getattr(peer, "port", None)
    if host is not None and port is not None:
        if ":" in host:
            return f"[{host}]:{port}"
        return f"{host}:{port}"
    name = getattr(peer, "name", None)
    if name:
        return name.decode() if isinstance(name, bytes) else str(name)
    return fallback
