"""
What a state database that cannot be opened is told as: damaged (move it
aside, say what is lost), on a full disk (free space: the file is fine), or
otherwise; with SQLite's own report cut to a few lines.  And the checks of
its files before SQLite opens them (L{checkDatabaseFile}).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable

from pycm.errors import BackendError
from pycm.statedir import NotRegularFile, UnsafeStateDir, openNoFollow

#: SQLite's primary result codes that say the file itself is damaged.
SQLITE_CORRUPT = 11
SQLITE_NOTADB = 26
#: ... and those a full disk gives (SQLITE_FULL; SQLITE_IOERR, e.g. the
#: shared-memory file that could not be given its pages).
SQLITE_FULL = 13
SQLITE_IOERR = 10

_SQLITE_MAGIC = b"SQLite format 3\x00"

#: At most about this many characters of SQLite's C{quick_check} report in
#: a message (its first row alone can hold dozens of lines).
CHECK_REPORT_LENGTH = 300


class StoreCorrupt(BackendError):
    """The state file is corrupt or truncated; nothing was loaded from it."""


class StoreDiskFull(BackendError):
    """The state file cannot be opened for want of room on its disk."""


def describe(path: str, holds: str) -> str:
    """What the file is, for a message: the state database or the event log."""
    if holds == "events":
        return f"the event log {path}"
    return f"the state database {path}"


def moveAside(path: str, holds: str) -> str:
    """What to do with a damaged file: move it aside, and what follows."""
    aside = f"mv {path} {path}.damaged"
    if holds == "events":
        return (
            f"it was left untouched; move it aside ({aside}) and start again: a new "
            f"event log is made (the events it held are no longer replayed; new "
            f"ids go on above those in events.mark)"
        )
    return (
        f"it was left untouched; restore a copy you made of it, or move it aside "
        f"({aside}) and start again: the records it held are lost (the processes "
        f"they left running are stopped at start), and pycm keeps no copy of its own"
    )


def checkReport(rows: list[str], length: int = CHECK_REPORT_LENGTH) -> str:
    """
    SQLite's C{quick_check} report, on one line and at most about
    C{length} characters: its first problems, and whether there are more.
    """
    problems = [
        line.strip()
        for row in rows
        for line in str(row).splitlines()
        if line.strip() and not line.startswith("***")  # "*** in database main ***"
    ]
    shown: list[str] = []
    size = 0
    for problem in problems:
        if shown and size + len(problem) > length:
            break
        shown.append(problem[:length])
        size += len(problem) + 2
    report = "; ".join(shown)
    if len(shown) < len(problems):
        report += "; and more"
    return report


def diskFull(path: str) -> bool:
    """Is the disk of the file C{path} full (or out of inodes)?"""
    try:
        status = os.statvfs(os.path.dirname(os.path.abspath(path)))
    except OSError:
        return False
    return (
        status.f_bfree == 0
        or status.f_bavail == 0
        or (status.f_files > 0 and status.f_ffree == 0)
    )


def cannotOpen(
    error: sqlite3.DatabaseError, path: str, holds: str, full: bool | None = None
) -> BackendError:
    """
    The error for a database SQLite would not open: L{StoreCorrupt} if it
    is damaged (move it aside); a full disk (free space: the file is
    fine), or another failure, a plain L{BackendError}.

    @param full: whether the disk is full (L{diskFull} by default).
    """
    code = getattr(error, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    what = describe(path, holds)
    if primary == SQLITE_FULL or primary == SQLITE_IOERR and (
        diskFull(path) if full is None else full
    ):
        return StoreDiskFull(
            f"cannot open {what}: its disk is full ({error}; SQLite needs room for "
            f"{os.path.basename(path)}-wal and -shm beside it); free some space there "
            f"and start again (the file itself is not damaged: do not remove it)"
        )
    if primary in (None, SQLITE_CORRUPT, SQLITE_NOTADB):
        return StoreCorrupt(f"{what} is corrupt: {error}; {moveAside(path, holds)}")
    return BackendError(f"cannot open {what}: {error}")


def connect(
    path: str, holds: str, setUp: Callable[[sqlite3.Connection], None]
) -> tuple[sqlite3.Connection, bool]:
    """
    Open the database C{path} and C{setUp} the connection.  On a full disk
    (SQLite could not give its C{-shm} index file its pages) it is opened
    again in exclusive locking mode, which keeps that index in memory: a
    daemon restarted on a full disk with its state intact starts.

    @return: the connection, and whether it is in exclusive mode.
    @raise BackendError: L{StoreCorrupt}, L{StoreDiskFull} or another, as
        L{cannotOpen} says.
    """
    for exclusive in (False, True):
        try:
            db = sqlite3.connect(path, isolation_level=None)
        except sqlite3.Error as e:
            raise BackendError(f"cannot open {describe(path, holds)}: {e}") from e
        try:
            if exclusive:
                db.execute("PRAGMA locking_mode=EXCLUSIVE")
            setUp(db)
        except sqlite3.DatabaseError as e:
            db.close()
            error = cannotOpen(e, path, holds)
            if isinstance(error, StoreDiskFull) and not exclusive:
                continue
            raise error from e
        except BaseException:
            db.close()
            raise
        return db, exclusive
    raise AssertionError("unreachable")


def checkDatabaseFile(path: str, holds: str) -> None:
    """
    Refuse a file that exists but cannot be one of ours, and a link
    anywhere a file of this database goes; create a missing database
    file 0600 ourselves (SQLite would follow a planted link).
    """
    for suffix in ("-wal", "-shm", "-journal"):
        side = path + suffix
        if os.path.islink(side):
            raise UnsafeStateDir(
                f"{side} is a symbolic link (pycm never makes one): someone else "
                f"may have planted it; remove it (rm {side})"
            )
        if os.path.lexists(side) and not os.path.isfile(side):
            # SQLite would open a FIFO there and wait for ever.
            raise NotRegularFile(side, os.lstat(side).st_mode)
    try:
        fd = openNoFollow(path, os.O_RDWR | os.O_CREAT | os.O_EXCL)
    except FileExistsError:
        pass
    except OSError as e:
        raise BackendError(f"cannot create state database {path}: {e.strerror}") from e
    else:
        os.close(fd)
        return
    try:
        fd = openNoFollow(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    except OSError as e:
        raise BackendError(f"cannot read state database {path}: {e.strerror}") from e
    try:
        header = os.pread(fd, len(_SQLITE_MAGIC), 0)
    finally:
        os.close(fd)
    if not header:
        raise StoreCorrupt(
            f"{describe(path, holds)} is empty (truncated to 0 bytes), so pycm does not "
            f"start without the {holds} it held; {moveAside(path, holds)}"
        )
    if header != _SQLITE_MAGIC:
        raise StoreCorrupt(
            f"{describe(path, holds)} is not an SQLite database (truncated or "
            f"overwritten); {moveAside(path, holds)}"
        )
