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

#: How many wrong tokens a connection may send before it is closed.
MAX_FAILED_AUTH = 3

#: The shortest token accepted from a file, in bytes (a fresh one has 43).
MIN_TOKEN_LENGTH = 16

#: The largest token file read, in bytes: a larger one is refused unread.
MAX_TOKEN_FILE_SIZE = 4096


def readToken(path: FilePath) -> str:
    """
    Read a token file, which must be a regular file (not a link) of this
    user's that nobody else can read or write, holding one token of
    L{MIN_TOKEN_LENGTH} bytes or more, without spaces or control characters
    (surrounding whitespace, as a final newline, is not part of it), in at
    most L{MAX_TOKEN_FILE_SIZE} bytes.

    @raise BadRequest: if it is empty, too large, a weak or malformed
        token, or others could read or change it.
    @raise OSError: if it cannot be read.
    """
    fd = openNoFollow(path.path, os.O_RDONLY, checkOwner=False)
    with os.fdopen(fd, "rb") as tokenFile:
        status = os.fstat(tokenFile.fileno())
        if not stat.S_ISREG(status.st_mode):
            raise BadRequest(f"the token file {path.path} is not a regular file")
        if status.st_uid != os.geteuid() or status.st_mode & 0o077:
            raise BadRequest(
                f"the token file {path.path} must belong to this user and be readable "
                f"by it alone (chmod 600): it has mode {stat.S_IMODE(status.st_mode):o}"
            )
        data = tokenFile.read(MAX_TOKEN_FILE_SIZE + 1)
    if len(data) > MAX_TOKEN_FILE_SIZE:
        raise BadRequest(
            f"the token file {path.path} is larger than {MAX_TOKEN_FILE_SIZE} bytes: "
            "it should hold one token"
        )
    try:
        token = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise BadRequest(f"the token file {path.path} is not UTF-8 text") from None
    if not token:
        raise BadRequest(f"the token file {path.path} is empty")
    # Never the token itself in a message: it may be close to the real one.
    if any(character.isspace() or not character.isprintable() for character in token):
        raise BadRequest(
            f"the token in {path.path} has a space or a control character in it: "
            "a token is one word"
        )
    if len(token.encode("utf-8")) < MIN_TOKEN_LENGTH:
        raise BadRequest(
            f"the token in {path.path} is too short to be safe: it has "
            f"{len(token.encode('utf-8'))} bytes, at least {MIN_TOKEN_LENGTH} are needed "
            "(a fresh one: python3 -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )
    return token


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
