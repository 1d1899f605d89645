"""
The daemon's token: created once in the state directory, readable only by
the daemon's user, compared in constant time.
"""

from __future__ import annotations

import hmac
import os
import secrets
import stat

from twisted.python.filepath import FilePath

from pycm.errors import BadRequest
from pycm.statedir import openNoFollow
from pycm.tokenfile import (
    MAX_TOKEN_FILE_SIZE,
    MIN_TOKEN_LENGTH,
    BadTokenFile,
    readTokenFrom,
)

#: How many wrong tokens a connection may send before it is closed.
MAX_FAILED_AUTH = 3

#: The token rules are L{pycm.tokenfile}'s, shared with the client.
__all__ = ["MAX_FAILED_AUTH", "MAX_TOKEN_FILE_SIZE", "MIN_TOKEN_LENGTH", "loadOrCreateToken",
           "newToken", "readToken", "tokensMatch"]


def readToken(path: FilePath) -> str:
    """
    Read the daemon's token file, which must be a regular file (not a link)
    of this user's that nobody else can read or write, and follow the rules
    of every token file (L{pycm.tokenfile}: one token of
    L{MIN_TOKEN_LENGTH} bytes or more, one word, in at most
    L{MAX_TOKEN_FILE_SIZE} bytes).

    @raise BadRequest: if it is empty, too large, a weak or malformed
        token, or others could read or change it.
    @raise OSError: if it cannot be read.
    """
    fd = openNoFollow(path.path, os.O_RDONLY, checkOwner=False)
    try:
        status = os.fstat(fd)
        if stat.S_ISREG(status.st_mode) and (
                status.st_uid != os.geteuid() or status.st_mode & 0o077):
            raise BadRequest(
                f"the token file {path.path} must belong to this user and be readable "
                f"by it alone (chmod 600): it has mode {stat.S_IMODE(status.st_mode):o}"
            )
    except BaseException:
        os.close(fd)
        raise
    try:
        return readTokenFrom(path.path, fd)
    except BadTokenFile as e:
        raise BadRequest(str(e)) from None


def newToken() -> str:
    """
    A fresh random token (256 bits, URL-safe), never starting with C{-}, so
    that no command line or tool can take it for an option.
    """
    while True:
        token = secrets.token_urlsafe(32)
        if not token.startswith("-"):
            return token


def loadOrCreateToken(path: FilePath) -> str:
    """
    Return the token in C{path}, creating it first (mode 0600, a fresh
    random token) if it does not exist.  The directory is created 0700.
    """
    if os.path.lexists(path.path):
        return readToken(path)
    parent = path.parent()
    if not parent.exists():
        parent.makedirs()
        os.chmod(parent.path, 0o700)
    token = newToken()
    try:
        fd = openNoFollow(path.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    except FileExistsError:
        # Another process made it between our check and our open.
        return readToken(path)
    with os.fdopen(fd, "w") as tokenFile:
        tokenFile.write(token + "\n")
        tokenFile.flush()
        os.fsync(tokenFile.fileno())
    return token


def tokensMatch(expected: str, given: str) -> bool:
    """Compare two tokens in constant time."""
    return hmac.compare_digest(expected.encode("utf-8"), given.encode("utf-8"))
