"""
Environment files (C{--env-file=FILE}, a services file's C{env_file}): the
variables they set, read where the file is (the client; the daemon only for
its own C{--services FILE}), so that the daemon receives variables and never
a path on the client's machine.

The format is Docker's C{--env-file}:
  - C{KEY=VALUE} sets KEY; the value is everything after the first C{=}, as
    written: quotes, spaces and C{#} are part of it, nothing is expanded
    (a file saved with CRLF line ends loses the CR);
  - a bare C{KEY} takes KEY's value from the environment of the process
    reading the file, and is left out if that has no KEY;
  - blank lines and lines whose first character (after blanks) is C{#} are
    skipped; blanks before a key are too;
  - a key is any non-empty name without blanks (spaces, tabs) or NUL, as
    Docker's parser takes (C{1A} and C{a-b} too, as C{-e} takes them); a
    later line for the same key wins.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping

from pycm.errors import BadRequest
from pycm.printable import printable

#: The largest environment file read, in bytes: far more than any request
#: line can carry (64 KiB), so a mistaken path fails at once.
MAX_ENV_FILE = 1024 * 1024

#: The most bytes of environment files one services file, or one C{run} or
#: C{create}, reads (L{EnvFiles}): all of them together, a file counted each
#: time it is named, so that a file named thousands of times fails at once.
MAX_ENV_FILES = MAX_ENV_FILE

#: What a key cannot hold (Docker's parser refuses blanks; NUL cannot reach
#: an environment).
_NOT_IN_KEY = re.compile(r"[ \t\0]")


def isVariableName(key: str) -> bool:
    """Whether C{key} may name a variable: not empty, no blank or NUL in it."""
    return bool(key) and not _NOT_IN_KEY.search(key)


class EnvFileError(BadRequest):
    """An environment file cannot be read, or a line of it is wrong (C{FILE:LINE: why})."""


def readTextFile(path: str, what: str, limit: int,
                 error: type[BadRequest] = EnvFileError) -> str:
    """
    The text of the regular file C{path}, UTF-8, at most C{limit} bytes.

    @param what: what the file is, for errors (C{"environment file"}).
    @param error: the exception to raise.
    @raise EnvFileError: (or C{error}) naming C{path} (L{printable}), if it
        cannot be opened, is not a regular file (a directory, a FIFO, a
        device), is too big or is not UTF-8.
    """
    shown = printable(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise error(f"{shown}: cannot read the {what}: {e.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise error(f"{shown}: the {what} is not a regular file")
        if info.st_size > limit:
            raise error(f"{shown}: the {what} is too big ({info.st_size} bytes; "
                        f"at most {limit})")
        chunks = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, limit + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as e:
        raise error(f"{shown}: cannot read the {what}: {e.strerror}") from None
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > limit:
        raise error(f"{shown}: the {what} is too big (at most {limit} bytes)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise error(f"{shown}:{line}: the {what} is not UTF-8") from None


def parseEnvText(text: str, path: str,
                 environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """
    The variables the environment file text C{text} sets (see the module's
    docstring); C{path} names it in errors; a bare C{KEY} reads C{environ}
    (C{os.environ} by default).

    @raise EnvFileError: C{path:LINE: why}, for a key that is empty or
        holds a blank or NUL, or a value holding a NUL (the line itself is
        not quoted).
    """
    if environ is None:
        environ = os.environ
    variables: dict[str, str] = {}
    for number, line in enumerate(text.split("\n"), 1):
        if line.endswith("\r"):
            line = line[:-1]
        line = line.lstrip(" \t")
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            key = key.rstrip(" \t")
        # An error says the line's number and what is wrong, never its text:
        # a file named by mistake may hold a secret on it.
        if not isVariableName(key):
            if not sep:
                why = "not a KEY=VALUE line, nor a KEY alone (a KEY holds no blank)"
            elif not key:
                why = "no variable name before '='"
            else:
                why = "the name before '=' is not a variable name (it holds a blank or NUL)"
            raise EnvFileError(f"{printable(path)}:{number}: {why}")
        if "\0" in value:
            raise EnvFileError(f"{printable(path)}:{number}: the value holds a NUL character")
        if sep:
            variables[key] = value
        elif key in environ:
            variables[key] = environ[key]
    return variables


def readEnvFile(path: str, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """
    The variables the environment file at C{path} sets, in its order (a
    later line for a key wins); see the module's docstring for the format.

    @param environ: where a bare C{KEY} takes its value (C{os.environ} by
        default).
    @raise EnvFileError: naming C{path} (and the line), if it cannot be
        read, is not a regular file, is over L{MAX_ENV_FILE} bytes, is not
        UTF-8, or has a wrong line.
    """
    return EnvFiles(environ).read(path)


class EnvFiles:
    """
    The environment files one services file (or one C{run}/C{create})
    names: each path read once, and at most L{MAX_ENV_FILES} bytes of them
    in all, a file counted each time it is named.

    @ivar total: the bytes counted so far.
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self.environ = environ
        self.total = 0
        self._read: dict[str, tuple[int, dict[str, str]]] = {}

    def read(self, path: str) -> dict[str, str]:
        """
        The variables the environment file at C{path} sets (as
        L{readEnvFile}), read once whatever the number of times it is asked
        for: the caller does not change them.

        @raise EnvFileError: as L{readEnvFile}, and once the files asked for
            come to over L{MAX_ENV_FILES} bytes.
        """
        known = self._read.get(path)
        if known is None:
            text = readTextFile(path, "environment file", MAX_ENV_FILE)
            size = len(text.encode("utf-8"))
            self._count(path, size)
            known = self._read[path] = (size, parseEnvText(text, path, self.environ))
        else:
            self._count(path, known[0])
        return known[1]

    def _count(self, path: str, size: int) -> None:
        self.total += size
        if self.total > MAX_ENV_FILES:
            raise EnvFileError(
                f"{printable(path)}: too much to read: the environment files named come to "
                f"over {MAX_ENV_FILES:,} bytes, each counted every time it is named "
                "(a request carries 64 KiB at most)")
