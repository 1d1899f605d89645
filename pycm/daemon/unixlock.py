"""
The lock file Twisted keeps beside a C{unix:} socket (C{PATH.lock}, a
link to the pid of the daemon listening there): who holds it, and letting
go of one a listen took before it failed.
"""

from __future__ import annotations

import os

from twisted.logger import Logger

log = Logger()


def lockOwner(lock: str | None) -> str | None:
    """The pid a C{PATH.lock} link names, or None if there is none."""
    if lock is None:
        return None
    try:
        return os.readlink(lock)
    except OSError:
        return None


def releaseTakenLock(lock: str | None, before: str | None) -> None:
    """
    After a failed C{unix:} listen: remove the lock Twisted took for it
    (it keeps it when the bind fails because the path is taken), never one
    it did not take: another daemon's, or one this daemon held C{before}.
    """
    ours = str(os.getpid())
    if lock is None or before == ours or lockOwner(lock) != ours:
        return
    try:
        os.remove(lock)
    except OSError as e:
        log.warn("could not remove {lock}: {error}", lock=lock, error=e.strerror)
