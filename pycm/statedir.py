"""
The state directory is the daemon's alone: checked at start
(L{checkStateDir}, L{checkAncestors}), and every file in it opened without
following a link (L{openNoFollow}).  The daemon often runs as root and
writes there: had anyone else been able to plant a link or swap the
directory, they could make it overwrite any file.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from collections.abc import Callable, Iterator

from pycm.errors import BackendError


class UnsafeStateDir(BackendError):
    """The state directory, or something in it, is not the daemon's alone."""


class NotRegularFile(UnsafeStateDir, OSError):
    """
    A state file is a FIFO, a directory, a socket or a device: never read
    or written (a FIFO would block start-up for ever).  An C{OSError} too,
    for the callers that count every failure to open as one.
    """

    def __init__(self, path: str, mode: int, code: int = errno.EINVAL) -> None:
        message = (
            f"{path} is {fileKind(mode)}, not a regular file (pycm makes only regular "
            f"files there): move it away (mv {path} {path}.old) and start again"
        )
        OSError.__init__(self, code, message)

    def __str__(self) -> str:
        return str(self.strerror)


def fileKind(mode: int) -> str:
    """What a file of C{mode} is, for a message (C{a FIFO}, C{a directory}...)."""
    for test, kind in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISLNK, "a symbolic link"),
    ):
        if test(mode):
            return kind
    return f"of type {stat.S_IFMT(mode):o}"


def _fix(path: str) -> str:
    return f"chown -R {os.geteuid()}:{os.getegid()} {path} && chmod -R go-rwx {path}"


def _checkEntry(path: str, status: os.stat_result, root: str) -> None:
    """Refuse one entry of the tree that someone else could have put there."""
    if stat.S_ISLNK(status.st_mode):
        raise UnsafeStateDir(
            f"{path} in the state directory is a symbolic link (pycm never makes "
            f"one): someone else may have planted it; remove it (rm {path}) and "
            f"make sure nobody else can write to {root}"
        )
    if status.st_uid != os.geteuid():
        raise UnsafeStateDir(
            f"{path} in the state directory belongs to uid {status.st_uid}, not to "
            f"this user ({os.geteuid()}): someone else may have put it there; check "
            f"the directory, then fix it: {_fix(root)}"
        )
    if stat.S_ISDIR(status.st_mode):
        if status.st_mode & 0o022:
            raise UnsafeStateDir(
                f"the state directory {path} may be written by group or others "
                f"(mode {stat.S_IMODE(status.st_mode):o}), so links planted there "
                f"could make pycm overwrite any file; check that it holds nothing "
                f"you did not put there, then: chmod 700 {path}"
            )
    elif stat.S_ISREG(status.st_mode) and status.st_mode & 0o022:
        raise UnsafeStateDir(
            f"{path} in the state directory may be written by group or others "
            f"(mode {stat.S_IMODE(status.st_mode):o}; pycm makes its files 600): "
            f"someone else may have changed what it holds; check it, then: "
            f"chmod go-w {path}"
        )
    elif status.st_nlink > 1:
        raise UnsafeStateDir(
            f"{path} in the state directory has {status.st_nlink} names (a hard "
            f"link, which pycm never makes): someone else may have planted it; "
            f"remove it (rm {path})"
        )


def _lookedUpIn(path: str) -> Iterator[str]:
    """
    Every directory in which a name is looked up on the way to C{path}
    (that of each component, resolved, and all the directories above it),
    nearest first.
    """
    seen: set[str] = set()
    prefix = os.path.abspath(path)
    while True:
        parent = os.path.dirname(prefix)
        if parent == prefix:
            return
        directory = os.path.realpath(parent)
        while directory not in seen:
            seen.add(directory)
            yield directory
            above = os.path.dirname(directory)
            if above == directory:
                break
            directory = above
        prefix = parent


def checkAncestors(
    path: str,
    lookup: Callable[[str], os.stat_result] = os.stat,
    uid: int | None = None,
    what: str = "the state directory",
    option: str = "--state-dir",
) -> None:
    """
    Refuse a state directory that someone else could replace: one under a
    directory (its resolved path and every directory above, up to C{/})
    that group or others may write without the sticky bit, or that belongs
    to a user other than root or this one.  A directory not made yet is
    skipped (the daemon makes it).  Whoever may write a directory above can
    rename the state directory away and put one of their own in its place,
    links and all; sshd's C{StrictModes} refuses the same.

    @param lookup: C{os.stat}, or a fake in tests.
    @param uid: this user (C{os.geteuid()} by default).
    @param what: what C{path} is, and C{option} the option naming it, for
        the messages (the log file, C{--logfile}).
    @raise UnsafeStateDir: naming the directory and the fix.
    """
    if uid is None:
        uid = os.geteuid()
    for directory in _lookedUpIn(path):
        try:
            status = lookup(directory)
        except FileNotFoundError:
            continue
        if status.st_uid not in (0, uid):
            raise UnsafeStateDir(
                f"{what} {path} is under {directory}, which belongs to "
                f"uid {status.st_uid} (not root, not this user {uid}): that user could "
                f"replace {what} with one of their own; choose another "
                f"{option}, under directories only root or this user own"
            )
        writable = status.st_mode & 0o022
        if writable and not status.st_mode & stat.S_ISVTX:
            who = "go" if writable & 0o020 else "o"
            raise UnsafeStateDir(
                f"{what} {path} is under {directory}, which group or "
                f"others may write (mode {stat.S_IMODE(status.st_mode):o}, no sticky "
                f"bit): they could rename {what} away and put one of "
                f"their own in its place; fix it (chmod {who}-w {directory}) or "
                f"choose another {option}"
            )


def _makeParents(directory: str) -> None:
    """
    Make C{directory} and its missing parents 0755 whatever the umask
    (under umask 0 they would be 0777: anyone could replace what is below).
    """
    if os.path.lexists(directory):
        return
    _makeParents(os.path.dirname(directory))
    try:
        os.mkdir(directory, 0o755)
    except FileExistsError:
        return
    os.chmod(directory, 0o755)


def checkStateDir(path: str) -> list[str]:
    """
    Make the state directory (created 0700 if missing) and every
    directory under it private to this user, or refuse it.

    A directory that group or others may read is made 0700 (a warning is
    returned); one that they may write, a file that they may write (it
    may have been tampered with; one they may only read, as an older pycm
    made under umask 022, is fine), an entry owned by another user,
    any symbolic link and any file with more than one name is refused, with
    the command that fixes it: any of them may have been planted (a link
    C{lock -> /etc/shadow} would make the daemon overwrite that file).  The
    state directory itself may be reached through a link (an operator's
    choice); nothing under it may.  So is one that someone else could
    replace (L{checkAncestors}).

    @return: warnings to log (what was changed).
    @raise UnsafeStateDir: naming the entry and the command that fixes it.
    """
    checkAncestors(path)
    if not os.path.lexists(path):
        _makeParents(os.path.dirname(os.path.abspath(path)))
        os.mkdir(path, 0o700)
        os.chmod(path, 0o700)  # whatever the umask
        return []
    status = os.stat(path)
    if not stat.S_ISDIR(status.st_mode):
        raise UnsafeStateDir(f"the state directory {path} is not a directory")
    _checkEntry(path, status, path)
    warnings: list[str] = []
    pending = [path]
    while pending:
        directory = pending.pop()
        status = os.stat(directory, follow_symlinks=directory == path)
        if status.st_mode & 0o077:
            os.chmod(directory, 0o700)
            warnings.append(
                f"the state directory {directory} had mode "
                f"{stat.S_IMODE(status.st_mode):o}; it is now 700"
            )
        with os.scandir(directory) as entries:
            for entry in entries:
                entryStatus = entry.stat(follow_symlinks=False)
                _checkEntry(entry.path, entryStatus, path)
                if stat.S_ISDIR(entryStatus.st_mode):
                    pending.append(entry.path)
    return warnings


def makePrivateDir(path: str) -> None:
    """
    Create the subdirectory C{path} 0700 (whatever the umask) if it is
    missing, its missing parents too; refuse it if it is a link, not a
    directory, or not this user's alone to write.

    @raise UnsafeStateDir: if it is not safe to use.
    @raise OSError: if it cannot be created.
    """
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    else:
        os.chmod(path, 0o700)
        return
    status = os.lstat(path)
    _checkEntry(path, status, os.path.dirname(path) or ".")
    if not stat.S_ISDIR(status.st_mode):
        raise UnsafeStateDir(f"{path} in the state directory is not a directory")


def openNoFollow(path: str, flags: int, mode: int = 0o600, checkOwner: bool = True) -> int:
    """
    C{os.open} a file never through a symbolic link (C{O_NOFOLLOW},
    close-on-exec), and refuse what is not a plain file of this user's
    with a single name.  It is opened C{O_NONBLOCK} (cleared after, unless
    asked for), so that a FIFO is refused at once rather than waited on.

    @param checkOwner: False to skip that refusal, for a caller that checks
        what it needs itself (a token file outside the state directory,
        twistd's log file) or must see every failure as an C{OSError}
        (container log files, written on the reactor): a link is then an
        C{OSError} (C{ELOOP}) too.  A file that is not a regular file is
        refused either way, with L{NotRegularFile} (an C{OSError}).
    @return: the descriptor.
    @raise UnsafeStateDir: for a link or a file that is not the daemon's.
    @raise OSError: for any other failure (e.g. C{FileNotFoundError}).
    """
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, mode)
    except OSError as e:
        if checkOwner and e.errno == errno.ELOOP:
            _checkEntry(path, os.lstat(path), os.path.dirname(path) or ".")
        if e.errno in (errno.EISDIR, errno.ENXIO, errno.ENODEV, errno.ENOTSUP):
            # A directory opened for writing, a FIFO with no reader, a socket.
            try:
                status = os.lstat(path)
            except OSError:
                raise e from None
            if not stat.S_ISREG(status.st_mode):
                raise NotRegularFile(path, status.st_mode, e.errno) from None
        raise
    try:
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode):
            raise NotRegularFile(path, status.st_mode)
        if not flags & os.O_NONBLOCK:
            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        if checkOwner:
            _checkEntry(path, status, os.path.dirname(path) or ".")
    except BaseException:
        os.close(fd)
        raise
    return fd
