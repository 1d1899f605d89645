"""
Where the client finds the daemon and its token: C{--host} or
C{$PYCM_HOST}, and the token from C{--token}, C{$PYCM_TOKEN} or the token
file of the daemon that listens on that endpoint with a token required, as
a listeners file of the user's says (L{pycm.statepaths}): the default state
directory's, or a copy a daemon on another state directory left in its
C{listeners.d}.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Mapping
from typing import TYPE_CHECKING, NamedTuple

from pycm import tokenfile
from pycm.statepaths import (
    OTHER_DAEMONS_DIR,
    defaultListenersPath,
    defaultStateDirPath,
    defaultTokenPath,
)

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
    """
    The token in C{path}, or None when it is missing, unreadable or empty.

    @raise BadTokenFile: when it breaks the rules of token files
        (L{pycm.tokenfile}): too large (no more than one byte beyond is
        read), too short, a space or control character inside, not UTF-8,
        not a regular file.
    """
    if not isinstance(path, str):
        path = path.path
    try:
        return tokenfile.readTokenFile(path)
    except (OSError, tokenfile.EmptyTokenFile):
        return None


def usedTokenFile(path: str) -> str | None:
    """
    The token in C{path}, the token file of the daemon listening on the
    endpoint the client connects to, or None when it is missing, unreadable
    or empty.

    @raise UsageError: when it breaks the rules of token files, saying
        which file and what is wrong (exit status 2): the token is not sent.
    """
    try:
        return readTokenFile(path)
    except tokenfile.BadTokenFile as e:
        from pycm.client.exits import UsageError

        raise UsageError(f"{e} (the token was not sent)", hint=False) from None


def chosenToken(token: str, source: str) -> str:
    """
    C{token}, given with C{source} (C{--token} or C{$PYCM_TOKEN}), when
    it can be sent: one word of UTF-8 text (L{tokenfile.badCharacters}),
    which a request line can carry.

    @raise UsageError: saying where it came from and what is wrong, never
        the token (exit status 2): it is not sent.
    """
    wrong = tokenfile.badCharacters(token)
    if wrong is None:
        return token
    from pycm.client.exits import UsageError

    raise UsageError(f"the token from {source} {wrong} (the token was not sent)",
                     hint=False)


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
    try:
        return readTokenFile(defaultTokenPath(environ, uid))
    except tokenfile.BadTokenFile:
        # Offered to no daemon unless one listens on the endpoint given,
        # and then daemonToken reads it again and says what is wrong.
        return None


#: The kinds of listener (the daemon's C{--listen}) that speak TLS, and
#: those that speak the protocol in the clear: a token found for one goes
#: only to a client endpoint that speaks the same (C{tls:}, C{tcp:}); a
#: listener of any other kind gets none.
TLS_KINDS = frozenset({"ssl", "tls"})
CLEAR_KINDS = frozenset({"tcp", "tcp6"})


class ListenerRecord(NamedTuple):
    """
    One TCP or TLS listener as the daemon's listeners file records it.

    @ivar kind: the listener's kind (C{tcp}, C{ssl}...), in lower case.
    @ivar tokenFile: the token file the daemon names, or None.
    """

    host: str
    port: int
    token: bool
    tokenFile: str | None
    kind: str


def readListeners(path: str) -> list[tuple[str, int, bool]]:
    """
    The listeners the daemon wrote in C{path}: (host, port, wants a token)
    for each TCP or TLS listener; C{[]} when it is missing or unreadable.
    """
    return [(r.host, r.port, r.token) for r in readListenerRecords(path)]


def readListenerRecords(path: str) -> list[ListenerRecord]:
    """
    As L{readListeners}, each with the token file the daemon names (None
    when it names none) and its kind; a record without a kind is passed
    over (what it speaks is not known).
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
        kind = record.get("kind")
        tokenFile = record.get("token_file")
        if not (isinstance(tokenFile, str) and os.path.isabs(tokenFile)):
            tokenFile = None
        if (isinstance(host, str) and type(port) is int and isinstance(token, bool)
                and isinstance(kind, str)):
            listeners.append(ListenerRecord(host, port, token, tokenFile, kind.lower()))
    return listeners


def speaksAsListener(description: str, kind: str) -> bool:
    """
    Whether the client endpoint C{description} speaks what a listener of
    C{kind} does: C{tls:} (and C{ssl:}) a TLS listener's, C{tcp:} a
    clear one's.
    """
    endpointKind = description.partition(":")[0].lower()
    if endpointKind in ("tls", "ssl"):
        return kind in TLS_KINDS
    return endpointKind == "tcp" and kind in CLEAR_KINDS


def tlsListenerAt(description: str, environ: Mapping[str, str] | None = None,
                  uid: int | None = None) -> tuple[str, str] | None:
    """
    When C{description} is a C{tcp:} endpoint that reaches a TLS listener
    of the user's daemon (as a listeners file says): the C{tls:} endpoint
    string to use instead, and that listeners file; else None.
    """
    address = endpointAddress(description)
    if address is None or description.partition(":")[0].lower() != "tcp":
        return None
    host, port = address
    for path in listenersFiles(environ, uid):
        for record in readListenerRecords(path):
            if (record.kind in TLS_KINDS and record.port == port
                    and _reaches(host, record.host)):
                shown = f"[{host}]" if ":" in host else host
                return f"tls:{shown}:{port}", path
    return None


def refuseClearToTLS(description: str, environ: Mapping[str, str] | None = None,
                     uid: int | None = None) -> None:
    """
    Refuse a C{tcp:} endpoint that names the port of the user's daemon's
    TLS listener: what it would send, a token too, would go in the clear
    to a port that cannot read it.

    @raise UsageError: saying so, and the C{tls:} endpoint to use.
    """
    found = tlsListenerAt(description, environ, uid)
    if found is not None:
        from pycm.client.exits import UsageError

        instead, path = found
        raise UsageError(
            f"bad endpoint {description!r}: that port speaks TLS: use --host {instead} "
            "(add :trustRoots=DIR for a certificate of your own; the daemon's listener "
            f"there is a TLS one, as {path} says)", hint=False)


def _private(path: str, uid: int) -> bool:
    """Whether C{path} is a regular file of C{uid} that nobody else may write."""
    try:
        info = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISREG(info.st_mode) and info.st_uid == uid and not info.st_mode & 0o022


def listenersFiles(environ: Mapping[str, str] | None = None,
                   uid: int | None = None) -> list[str]:
    """
    The listeners files the client reads: the default state directory's,
    then the copies in its C{listeners.d} (each a daemon on another state
    directory), those of the user alone that nobody else may write.
    """
    if uid is None:
        uid = os.getuid()
    others = os.path.join(defaultStateDirPath(environ, uid), OTHER_DAEMONS_DIR)
    try:
        names = sorted(n for n in os.listdir(others) if n.endswith(".json"))
    except OSError:
        names = []
    paths = [defaultListenersPath(environ, uid), *(os.path.join(others, n) for n in names)]
    return [path for path in paths if _private(path, os.geteuid())]


def daemonToken(description: str, environ: Mapping[str, str] | None = None,
                uid: int | None = None) -> tuple[str, str] | None:
    """
    The token of the user's daemon that listens on the endpoint
    C{description} with a token required, and the token file it came from:
    the file its listeners file names (the default state directory's token
    file for a listeners file that names none); None when no listeners file
    names that endpoint or its token file cannot be read.

    @raise UsageError: when that token file breaks the rules of token
        files (L{usedTokenFile}).
    """
    fallback: str | None = defaultTokenPath(environ, uid)
    for path in listenersFiles(environ, uid):
        for record in readListenerRecords(path):
            if not (speaksAsListener(description, record.kind) and
                    tokenWanted(description, [(record.host, record.port, record.token)])):
                continue
            tokenFile = record.tokenFile or fallback
            token = usedTokenFile(tokenFile) if tokenFile else None
            if token and tokenFile:
                return token, tokenFile
        # Only the default state directory's file goes without naming it.
        fallback = None
    return None


def endpointAddress(description: str) -> tuple[str, int] | None:
    """
    The host and port a C{tcp:}, C{tls:} or C{ssl:} client endpoint string
    connects to (positional or C{host=}/C{port=}), or None for any other
    (a UNIX socket, a string pycm cannot read for certain).
    """
    kind, sep, rest = description.partition(":")
    if not sep or kind.lower() not in ("tcp", "tls", "ssl") or "\\" in rest:
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
