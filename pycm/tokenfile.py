"""
Token files, as the daemon and the client both read them: one token of
L{MIN_TOKEN_LENGTH} bytes or more, one word of UTF-8 text (no space or
control character inside; surrounding whitespace, as a final newline, is
not part of it), in a file of at most L{MAX_TOKEN_FILE_SIZE} bytes, of
which no more than one byte beyond is ever read.

What the daemon asks of its own token file besides (a file of its user's
that nobody else may read) is L{pycm.daemon.auth}'s; what the client asks
of a daemon before it sends the token is L{pycm.client.tokensafety}'s.

The standard library only: the one-shot client reads a token file before
it imports anything else.
"""

from __future__ import annotations

import os
import stat

#: The shortest token accepted from a file, in bytes (a fresh one has 43).
MIN_TOKEN_LENGTH = 16

#: The largest token file read, in bytes: a larger one is refused unread.
MAX_TOKEN_FILE_SIZE = 4096


class BadTokenFile(ValueError):
    """
    A token file that breaks the rules.  Its message names the file and
    what is wrong, never the token (a bad one may be close to the real one).

    @ivar path: the file.
    """

    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path


class EmptyTokenFile(BadTokenFile):
    """A token file that holds nothing but whitespace."""


class NotRegularFile(ValueError):
    """A file read by L{readRegularFile} that is not a regular file."""


def tokenIn(path: str, data: bytes) -> str:
    """
    The token C{data}, the start of the file C{path} (at most
    C{MAX_TOKEN_FILE_SIZE + 1} bytes of it), holds.

    @raise BadTokenFile: when it breaks the rules.
    """
    if len(data) > MAX_TOKEN_FILE_SIZE:
        raise BadTokenFile(
            path, f"the token file {path} is larger than {MAX_TOKEN_FILE_SIZE} bytes: "
            "it should hold one token")
    try:
        token = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise BadTokenFile(path, f"the token file {path} is not UTF-8 text") from None
    if token.startswith("\ufeff"):
        raise BadTokenFile(
            path, f"the token file {path} starts with a byte-order mark (an editor's "
            "invisible character): remove it")
    if not token:
        raise EmptyTokenFile(path, f"the token file {path} is empty")
    if not all(map(_inWord, token)):
        raise BadTokenFile(
            path, f"the token in {path} has a space or a control character in it: "
            "a token is one word")
    size = len(token.encode("utf-8"))
    if size < MIN_TOKEN_LENGTH:
        raise BadTokenFile(
            path, f"the token in {path} is too short to be safe: it has {size} bytes, "
            f"at least {MIN_TOKEN_LENGTH} are needed (a fresh one: "
            "python3 -c 'import secrets; print(secrets.token_urlsafe(32))')")
    return token


def badCharacters(token: str) -> str | None:
    """
    Why C{token}, given rather than read from a file, is no token, as the
    end of a sentence (C{has a line break in it...}); None when it may be
    one.  A token is one word of UTF-8 text: an environment variable or an
    argument that was no UTF-8 comes with surrogate escapes, and is not.
    """
    try:
        token.encode("utf-8")
    except UnicodeEncodeError:
        return "is not UTF-8 text"
    if "\n" in token or "\r" in token:
        return "has a line break in it: a token is one word"
    if not all(map(_inWord, token)):
        return "has a space or a control character in it: a token is one word"
    return None


def _inWord(character: str) -> bool:
    """Whether a token may hold C{character}: no space or control character."""
    return not character.isspace() and character.isprintable()


def couldBeToken(word: str) -> bool:
    """
    Whether C{word} could be a token (a pasted one, say): one word of
    text and at least L{MIN_TOKEN_LENGTH} bytes, by the rules of token files.
    """
    return badCharacters(word) is None and len(word.encode("utf-8")) >= MIN_TOKEN_LENGTH


def readRegularFrom(fd: int, limit: int) -> bytes:
    """
    The start of the regular file open on C{fd} (not closed here): at most
    C{limit + 1} bytes, so that a caller tells a file over C{limit} bytes
    without reading it all.

    @raise NotRegularFile: when it is not a regular file (a FIFO, a
        device such as C{/dev/zero}, a directory).
    @raise OSError: when it cannot be read.
    """
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        raise NotRegularFile(fd)
    # Unbuffered: a buffered reader would read a whole buffer (8 KiB).
    data = b""
    while len(data) <= limit:
        piece = os.read(fd, limit + 1 - len(data))
        if not piece:
            break
        data += piece
    return data


def readRegularFile(path: str, limit: int) -> bytes:
    """
    The start of the regular file C{path}, read by L{readRegularFrom}.  It
    is opened without blocking, so that a FIFO in its place is refused
    rather than waited on.

    @raise NotRegularFile: when it is not a regular file.
    @raise OSError: when it cannot be opened or read.
    """
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        return readRegularFrom(fd, limit)
    finally:
        os.close(fd)


def readTokenFrom(path: str, fd: int) -> str:
    """
    The token in the file C{path}, open on C{fd} (which is closed here):
    a regular file, of which at most C{MAX_TOKEN_FILE_SIZE + 1} bytes are
    read.

    @raise BadTokenFile: when it is not a regular file or breaks the rules.
    @raise OSError: when it cannot be read.
    """
    try:
        data = readRegularFrom(fd, MAX_TOKEN_FILE_SIZE)
    except NotRegularFile:
        raise BadTokenFile(path, f"the token file {path} is not a regular file") from None
    finally:
        os.close(fd)
    return tokenIn(path, data)


def readTokenFile(path: str) -> str:
    """
    The token in the file C{path}, read by L{readTokenFrom}.  It is opened
    without blocking, so that a FIFO in its place is refused rather than
    waited on.

    @raise BadTokenFile: when it is not a regular file or breaks the rules.
    @raise OSError: when it cannot be opened or read.
    """
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    return readTokenFrom(path, fd)
