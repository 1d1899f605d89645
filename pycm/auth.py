"""
The daemon's token: created once in the state directory, readable only by
the daemon's user, compared in constant time.
"""

from __future__ import annotations

import hmac
import os
import secrets

from twisted.python.filepath import FilePath

from pycm.errors import BadRequest

#: How many wrong tokens a connection may send before it is closed.
MAX_FAILED_AUTH = 3


def readToken(path: FilePath) -> str:
    """
    Read a token file.

    @raise BadRequest: if it is empty.
    @raise OSError: if it cannot be read.
    """
    token = path.getContent().decode("utf-8").strip()
    if not token:
        raise BadRequest(f"the token file {path.path} is empty")
    return token


def loadOrCreateToken(path: FilePath) -> str:
    """
    Return the token in C{path}, creating it first (mode 0600, a fresh
    random token) if it does not exist.  The directory is created 0700.
    """
    if path.exists():
        return readToken(path)
    parent = path.parent()
    if not parent.exists():
        parent.makedirs()
        os.chmod(parent.path, 0o700)
    token = secrets.token_urlsafe(32)
    try:
        fd = os.open(path.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
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
