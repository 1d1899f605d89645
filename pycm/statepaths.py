"""
Where the state directory is by default, and the names of the files in it
that both sides read: the daemon makes its token and listeners files
there, and a client run by the same user finds them without being told.

The standard library only, and C{os} at that: the one-shot client finds its
token with this before it imports anything else.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    # Imported when used: the one-shot client finds its token without
    # importing Twisted.
    from twisted.python.filepath import FilePath

TOKEN_FILE = "token"
#: Beside the token: the daemon's TCP and TLS listeners, as bound.
LISTENERS_FILE = "listeners"


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


def defaultListenersPath(
    environ: Mapping[str, str] | None = None, uid: int | None = None
) -> str:
    """The daemon's listeners file in its default state directory."""
    return os.path.join(defaultStateDirPath(environ, uid), LISTENERS_FILE)


def xdgStateHome(environ: Mapping[str, str]) -> str:
    """C{$XDG_STATE_HOME}, else C{~/.local/state}."""
    base = environ.get("XDG_STATE_HOME", "")
    # The XDG spec says a relative path is invalid and must be ignored.
    if not os.path.isabs(base):
        home = environ.get("HOME") or os.path.expanduser("~")
        base = os.path.join(home, ".local", "state")
    return base
