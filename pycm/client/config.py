"""
Where the client finds the daemon and its token.

L{defaultStateDir} is shared with the daemon (its C{--state-dir} default),
so that a client run by the same user finds the token file without being
told.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    # Imported when used: the one-shot client finds its token without
    # importing Twisted.
    from twisted.python.filepath import FilePath

DEFAULT_ENDPOINT = "tcp:127.0.0.1:8080"
TOKEN_FILE = "token"


def defaultStateDir(
    environ: Mapping[str, str] | None = None, uid: int | None = None
) -> FilePath[str]:
    """
    The daemon's default state directory: C{/var/lib/pycm} for root;
    otherwise C{$XDG_STATE_HOME/pycm}, or C{~/.local/state/pycm}.
    """
    from twisted.python.filepath import FilePath

    return FilePath(defaultStateDirPath(environ, uid))


def defaultStateDirPath(
    environ: Mapping[str, str] | None = None, uid: int | None = None
) -> str:
    """The path of L{defaultStateDir}."""
    if environ is None:
        environ = os.environ
    if uid is None:
        uid = os.getuid()
    if uid == 0:
        return "/var/lib/pycm"
    return os.path.join(os.path.abspath(xdgStateHome(environ)), "pycm")


def defaultTokenPath(
    environ: Mapping[str, str] | None = None, uid: int | None = None
) -> str:
    """The daemon's token file in its default state directory."""
    return os.path.join(defaultStateDirPath(environ, uid), TOKEN_FILE)


def xdgStateHome(environ: Mapping[str, str]) -> str:
    """C{$XDG_STATE_HOME}, else C{~/.local/state}."""
    base = environ.get("XDG_STATE_HOME", "")
    # The XDG spec says a relative path is invalid and must be ignored.
    if not os.path.isabs(base):
        home = environ.get("HOME") or os.path.expanduser("~")
        base = os.path.join(home, ".local", "state")
    return base


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
