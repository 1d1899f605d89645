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
#: In the default state directory: a copy of the listeners file of each
#: daemon of that user on another state directory, so that its client finds
#: their token files too.
OTHER_DAEMONS_DIR = "listeners.d"


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


def otherDaemonsPath(
    environ: Mapping[str, str] | None = None, uid: int | None = None
) -> str:
    """Where daemons on other state directories copy their listeners files."""
    return os.path.join(defaultStateDirPath(environ, uid), OTHER_DAEMONS_DIR)


def otherDaemonEntry(stateDir: str, environ: Mapping[str, str] | None = None,
                     uid: int | None = None) -> str | None:
    """
    The file in L{otherDaemonsPath} for a daemon on C{stateDir} (named by a
    hash of its real path, so that a restart replaces it); None when
    C{stateDir} is the default state directory itself.
    """
    import hashlib

    real = os.path.realpath(stateDir)
    if real == os.path.realpath(defaultStateDirPath(environ, uid)):
        return None
    name = hashlib.sha256(os.fsencode(real)).hexdigest()[:24] + ".json"
    return os.path.join(otherDaemonsPath(environ, uid), name)


def xdgStateHome(environ: Mapping[str, str]) -> str:
    """C{$XDG_STATE_HOME}, else C{~/.local/state}."""
    base = environ.get("XDG_STATE_HOME", "")
    # The XDG spec says a relative path is invalid and must be ignored.
    if not os.path.isabs(base):
        home = environ.get("HOME") or os.path.expanduser("~")
        base = os.path.join(home, ".local", "state")
    return base
