"""
Opening a container's log file only if pycm made it (L{openLogFile}): never
through a link, never a file with two names, another user's, or one that
is not a regular file, any of which someone else may have planted.
"""

from __future__ import annotations

import errno
import os
import stat

from pycm.statedir import NotRegularFile, UnsafeStateDir, fileKind, openNoFollow


class UnsafeLogFile(UnsafeStateDir, OSError):
    """
    A container's log file that pycm will not open: a symbolic link, a
    file with more than one name (a hard link), another user's file, or
    not a regular file (a FIFO, a directory...).  pycm makes none of them,
    so someone else may have planted it, to have the daemon write into (or
    show) another file.  An L{UnsafeStateDir}, so a request that meets it
    fails with a C{backend} error, and an C{OSError}, so the writers count
    the lines they cannot write as dropped (see L{FileLogStore}).

    @ivar path: the file.
    @ivar what: what is wrong with it, e.g. C{is a FIFO}.
    @param remove: the command that removes it (C{rm -r} for a directory).
    """

    def __init__(self, path: str, what: str, remove: str = "rm") -> None:
        self.path = path
        self.what = what
        self.message = (
            f"the log file {path} {what}: pycm makes only regular files of its own, "
            f"with one name, there, so someone else may have put it there; pycm "
            f"neither writes nor reads it: remove it ({remove} {path}), or move it "
            f"out of {os.path.dirname(path)}"
        )
        OSError.__init__(self, errno.EPERM, self.message)

    def __str__(self) -> str:
        return self.message


def openLogFile(path: str, flags: int) -> int:
    """
    Open a log file with C{flags} (C{O_CREAT} makes it 0600), never
    through a link, and only if it is a regular file of this user's with a
    single name: what pycm makes.  Anything else may have been planted (a
    hard link to C{/etc/shadow} would have a root daemon append to it).

    @return: the descriptor.
    @raise UnsafeLogFile: for a file that is not one pycm made.
    @raise OSError: for any other failure (e.g. C{FileNotFoundError}).
    """
    try:
        # What the writers need is an OSError for every failure; what is
        # refused here is told apart below, with its own message.
        fd = openNoFollow(path, flags, checkOwner=False)
    except NotRegularFile:
        try:
            mode = os.lstat(path).st_mode
        except OSError:
            mode = 0
        remove = "rm -r" if stat.S_ISDIR(mode) else "rm"
        raise UnsafeLogFile(path, f"is {fileKind(mode)}", remove) from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise UnsafeLogFile(path, "is a symbolic link") from None
        raise
    try:
        status = os.fstat(fd)
        if status.st_nlink > 1:
            raise UnsafeLogFile(path, f"has {status.st_nlink} names (a hard link)")
        if status.st_uid != os.geteuid():
            raise UnsafeLogFile(
                path, f"belongs to uid {status.st_uid}, not to this user ({os.geteuid()})"
            )
    except BaseException:
        os.close(fd)
        raise
    return fd
