"""
The shell's history file: the lines typed in earlier sessions, so that Up
recalls them as in any shell.  Private (0600, never followed through a
symlink), without C{auth TOKEN} lines or a token pasted alone; failing to read or write it never
stops the shell.
"""

from __future__ import annotations

import os
import shlex
import stat
from collections.abc import Container, Mapping, Sequence

from pycm.client.commandtable import BY_WORD as COMMAND_WORDS
from pycm.client.masking import maskedFrom
from pycm.errors import InvalidName
from pycm.files import replacePrivately
from pycm.model import validateName
from pycm.statepaths import xdgStateHome
from pycm.tokenfile import couldBeToken

#: Lines kept across sessions.
MAX_LINES = 1000

#: Why a token pasted at the prompt (L{isPastedToken}), or an auth line
#: given as a container name (L{isPrivateName}), is not sent: never with it.
NOT_A_COMMAND = "that looks like a token, not a command: not sent (type auth TOKEN)"
NOT_A_NAME = "that looks like an auth line, not a container name: not sent"


def defaultHistoryPath(environ: Mapping[str, str] | None = None) -> str | None:
    """
    Where the history is kept: C{$PYCM_HISTORY}, else
    C{$XDG_STATE_HOME/pycm/history}, else C{~/.local/state/pycm/history};
    None when C{PYCM_HISTORY} is set empty.
    """
    if environ is None:
        environ = os.environ
    if "PYCM_HISTORY" in environ:
        return environ["PYCM_HISTORY"] or None
    return os.path.join(xdgStateHome(environ), "pycm", "history")


def _words(line: str) -> list[str]:
    """The words of C{line}, split as the shell splits it (by blanks if it cannot)."""
    try:
        return shlex.split(line)
    except ValueError:
        return line.split()


def isPrivate(line: str, commands: Container[str] = COMMAND_WORDS,
              tokens: Sequence[str] = ()) -> bool:
    """
    True for a line that must never be written down: an C{auth} line
    (L{isAuthLine}), or one that holds one (C{stop 'auth TOKEN'}, which
    an older pycm wrote for an answer to "Enter container name:"), a token
    pasted on a line of its own (L{isPastedToken}), or a line that holds
    one of C{tokens} (those the client knows, L{holdsToken}).
    """
    quoted = [word for word in _words(line)[1:] if len(word.split()) > 1]
    return (isAuthLine(line) or any(isAuthLine(word) for word in quoted)
            or isPastedToken(line, commands) or holdsToken(line, tokens))


def holdsToken(text: str, tokens: Sequence[str]) -> bool:
    """Whether C{text} holds one of C{tokens} (the client's own) anywhere."""
    return any(token in text for token in tokens if token)


def isAuthLine(line: str) -> bool:
    """
    True for an C{auth} line (it holds a token), however it is quoted
    (C{'auth' TOKEN}, C{"auth TOKEN"}), split as the shell splits it.
    """
    words = _words(line)
    first = words[0].split() if words else []
    return bool(first) and first[0].lower() == "auth"


def isPastedToken(line: str, commands: Container[str] = COMMAND_WORDS) -> bool:
    """
    True for a line that is one word that could be a token
    (L{pycm.tokenfile.couldBeToken}) and is no command word: a token
    pasted at the prompt, which the daemon's log does not show either.
    """
    words = _words(line)
    return len(words) == 1 and words[0].lower() not in commands \
        and couldBeToken(words[0])


def isTokenLine(line: str, commands: Container[str], tokens: Sequence[str]) -> bool:
    """A line not to send: one of C{tokens} alone, or a word that could be one."""
    return line.strip() in tokens or isPastedToken(line, commands)


def isPrivateAnswer(answer: str, tokens: Sequence[str]) -> bool:
    """An answer to "Enter container name:" not to send: L{isPrivateName}, or holding a token."""
    return isPrivateName(answer) or holdsToken(answer, tokens)


def isPrivateName(answer: str) -> bool:
    """
    True for an answer to "Enter container name:" that must be neither
    sent as a name nor written down: an C{auth} line (L{isAuthLine}) or
    one hidden as it is typed (L{maskedFrom}: C{auth:TOKEN}), that is no
    valid name (L{validateName}); C{auth} or C{authdb} alone is a name.
    """
    try:
        validateName(answer)
    except InvalidName:
        pass
    else:
        return False
    characters = [bytes([byte]) for byte in answer.encode("utf-8")]
    return isAuthLine(answer) or maskedFrom(characters) is not None


class HistoryFile:
    """
    One user's shell history on disk, cut back to its last L{maxLines}
    lines when loaded; when it cannot be read or written the history is
    kept for the session only.

    @ivar problem: why the file could not be used (then it no longer is),
        or None.
    """

    maxLines = MAX_LINES

    def __init__(self, path: str, tokens: Sequence[str] = ()) -> None:
        """
        @param tokens: the tokens the client knows: a line holding one is
            neither kept nor, if an older pycm kept it, loaded.
        """
        self.path = path
        self.tokens = tuple(tokens)
        self.problem: str | None = None
        self._last: str | None = None

    def load(self) -> list[str]:
        """The saved lines, oldest first (cut back to L{maxLines} on disk)."""
        try:
            fd = self._open(os.O_RDONLY | os.O_NONBLOCK)
        except FileNotFoundError:
            return []
        except OSError as e:
            self._keepProblem("read", e)
            return []
        try:
            with os.fdopen(fd, "rb") as f:
                data = f.read()
        except OSError as e:
            self._keepProblem("read", e)
            return []
        given = [line for line in data.decode("utf-8", "replace").split("\n") if line.strip()]
        lines = [line for line in given if not isPrivate(line, tokens=self.tokens)]
        if len(lines) > self.maxLines or len(lines) < len(given):
            # Cut back, or rid of what an older pycm kept that it should not.
            lines = lines[-self.maxLines:]
            self._rewrite(lines)
        self._last = lines[-1] if lines else None
        return lines

    def append(self, line: str) -> None:
        """Add a typed line (not blank ones, repeats of the last, or C{auth})."""
        if self.problem is not None or not line.strip() \
                or isPrivate(line, tokens=self.tokens):
            return
        if line == self._last or "\n" in line:
            return
        self._last = line
        try:
            self._makeDirectory()
            fd = self._open(os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK)
            try:
                os.write(fd, line.encode("utf-8", "replace") + b"\n")
            finally:
                os.close(fd)
        except OSError as e:
            self._keepProblem("write", e)

    def _open(self, flags: int) -> int:
        """
        Open the file (never through a symlink), and make sure it is a
        regular file of this user's, readable by nobody else.

        @raise OSError: if it cannot be opened, or is not such a file.
        """
        fd = os.open(self.path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise OSError(f"{self.path} is not a regular file")
            if info.st_uid != os.geteuid():
                raise OSError(f"{self.path} belongs to another user")
            if info.st_mode & 0o077:
                os.fchmod(fd, 0o600)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _makeDirectory(self) -> None:
        directory = os.path.dirname(self.path)
        if directory:
            os.makedirs(directory, mode=0o700, exist_ok=True)

    def _rewrite(self, lines: list[str]) -> None:
        """Replace the file with C{lines}, atomically."""
        data = "".join(line + "\n" for line in lines).encode("utf-8", "replace")
        try:
            replacePrivately(self.path, data)
        except OSError as e:
            self._keepProblem("write", e)

    def _keepProblem(self, what: str, error: OSError) -> None:
        """Keep the first reason the file cannot be used in L{problem}."""
        if self.problem is None:
            reason = error.strerror or str(error)
            self.problem = f"cannot {what} the history file {self.path}: {reason}"
