"""
Where the client finds the daemon and its token: C{--host} or
C{$PYCM_HOST}, and the token from C{--token}, C{$PYCM_TOKEN} or the token
file in the daemon's default state directory (L{pycm.statepaths}), sent
only to an endpoint that daemon's listeners file says wants it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from pycm.statepaths import defaultTokenPath

if TYPE_CHECKING:
    from twisted.python.filepath import FilePath

DEFAULT_ENDPOINT = "tcp:127.0.0.1:8080"
#: Addresses a listener on every address answers on from this machine.
_WILDCARDS = {"0.0.0.0": ("127.",), "::": ("127.", "::1", "::ffff:127.")}


def defaultEndpoint(environ: Mapping[str, str] | None = None) -> str:
    """C{$PYCM_HOST}, else C{tcp:127.0.0.1:8080}."""
    if environ is None:
        environ = os.environ
    return environ.get("PYCM_HOST") or DEFAULT_ENDPOINT


def readTokenFile(path: FilePath[str] | str) -> str | None:
    """The token in C{path}, or None when it is missing, unreadable or empty."""
    if not isinstance(path, str):
        path = path.path
    try:
        with open(path, "rb") as f:
            token = f.read().decode("utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return token or None


def findToken(
    explicit: str | None = None,
    environ: Mapping[str, str] | None = None,
    uid: int | None = None,
) -> str | None:
    """
    The token to authenticate with: C{explicit} (C{--token}), else
    C{$PYCM_TOKEN}, else the token file of the default state directory when
    readable, else None.
    """
    if explicit:
        return explicit
    if environ is None:
        environ = os.environ
    if environ.get("PYCM_TOKEN"):
        return environ["PYCM_TOKEN"]
    return readTokenFile(defaultTokenPath(environ, uid))


def readListeners(path: str) -> list[tuple[str, int, bool]]:
    """
    The listeners the daemon wrote in C{path}: (host, port, wants a token)
    for each TCP or TLS listener; C{[]} when it is missing or unreadable.
    """
    try:
        with open(path, "rb") as f:
            records = json.loads(f.read().decode("utf-8"))
    except (OSError, ValueError):
        return []
    listeners = []
    for record in records if isinstance(records, list) else []:
        if not isinstance(record, dict):
            continue
        host, port, token = record.get("host"), record.get("port"), record.get("token")
        if isinstance(host, str) and type(port) is int and isinstance(token, bool):
            listeners.append((host, port, token))
    return listeners


def endpointAddress(description: str) -> tuple[str, int] | None:
    """
    The host and port a C{tcp:}, C{tls:} or C{ssl:} client endpoint string
    connects to (positional or C{host=}/C{port=}), or None for any other
    (a UNIX socket, a string pycm cannot read for certain).
    """
    kind, sep, rest = description.partition(":")
    if not sep or kind not in ("tcp", "tls", "ssl") or "\\" in rest:
        return None
    positional: list[str] = []
    keywords: dict[str, str] = {}
    for part in rest.split(":"):
        key, equals, value = part.partition("=")
        if not equals:
            positional.append(part)
        elif key in keywords:
            return None
        else:
            keywords[key] = value
    host = keywords.get("host", positional[0] if positional else "")
    port = keywords.get("port", positional[1] if len(positional) > 1 else "")
    if "host" in keywords and "port" not in keywords and positional:
        port = positional[0]
    if not host or not port.isdigit():
        return None
    return host.strip("[]").lower(), int(port)


def _reaches(host: str, bound: str) -> bool:
    """Whether connecting to C{host} reaches a listener bound on C{bound}."""
    if host in ("localhost", "localhost."):
        host = "127.0.0.1"
    if host == bound.lower():
        return True
    return host.startswith(_WILDCARDS.get(bound, ()))


def tokenWanted(description: str, listeners: list[tuple[str, int, bool]]) -> bool:
    """
    Whether the endpoint C{description} is one the daemon of C{listeners}
    listens on with a token required: only then is a token found in its
    token file sent there.
    """
    address = endpointAddress(description)
    if address is None:
        return False
    host, port = address
    return any(
        token and port == boundPort and _reaches(host, boundHost)
        for boundHost, boundPort, token in listeners
    )
