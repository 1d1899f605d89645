"""
How a call of C{pycm} ends: its exit status (0 when every reply was C{OK},
1 when one was C{ERR}, 2 for a usage error: the client's own, or a request
the daemon refuses as malformed, L{pycm.client.wire.USAGE_CODES}; 3 when the daemon cannot be
reached or the connection to it is lost; the worst of them for several
requests), the exceptions behind 2 and 3, and the error lines written on
stderr (as JSON with C{--json}).
"""

from __future__ import annotations

import errno
import json
import shlex
from collections.abc import Sequence
from typing import TYPE_CHECKING, TextIO

from pycm.client import format as fmt
from pycm.client.wire import isUsageError
from pycm.errors import PycmError, Unauthorized
from pycm.statepaths import defaultTokenPath

if TYPE_CHECKING:
    from pycm.client.arguments import CommandLine
    from pycm.client.oneshot import BlockingClient
    from pycm.client.protocol import ClientProtocol

EXIT_OK = 0
EXIT_ERR = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
#: Interrupted (Ctrl-C) while waiting for a reply, as shells count SIGINT.
EXIT_INTERRUPTED = 130
#: The reader of standard output went away (C{pycm logs web | head}): the
#: shell's 128 + SIGPIPE, as C{git} and C{docker} end then, and quietly.
EXIT_READER_GONE = 141


def errorStatus(error: PycmError) -> int:
    """
    The exit status an C{ERR} reply makes: 2 for a request the daemon
    refuses as malformed (L{pycm.client.wire.USAGE_CODES}), else 1.
    """
    return EXIT_USAGE if isUsageError(error) else EXIT_ERR


class UsageError(Exception):
    """The command line is wrong (exit status 2)."""

    def __init__(self, message: str, hint: bool = True) -> None:
        super().__init__(message)
        #: Whether C{Try 'pycm --help'} helps (not for a mistake in a file).
        self.hint = hint


class CannotConnect(Exception):
    """The daemon cannot be reached (exit status 3)."""

    def __init__(self, endpoint: str, reason: BaseException) -> None:
        super().__init__(endpoint, reason)
        self.endpoint = endpoint
        self.reason = reason

    def __str__(self) -> str:
        from twisted.internet.error import ConnectionRefusedError, DNSLookupError

        number = getattr(self.reason, "osError", None)
        if isinstance(self.reason, ConnectionRefusedError):
            reason = "connection refused (is the daemon running?)"
        elif isinstance(self.reason, DNSLookupError):
            reason = "no such host"
        elif number in (errno.ENOENT, errno.ENOTDIR):
            reason = "no such socket (is the daemon running? is this its --listen path?)"
        elif number in (errno.EACCES, errno.EPERM):
            reason = ("permission denied (the socket is mode 0600, or 0660 with the "
                      "daemon's --socket-group: run as its user or join that group)")
        else:
            reason = str(self.reason).strip() or type(self.reason).__name__
        return f"cannot reach the pycm daemon at {self.endpoint}: {reason}"


#: pycm's own options, which go before the command (C{pycm --json ls}).
_OWN_OPTIONS = frozenset({"--json", "--host", "-H", "--token"})


def requestHint(error: BaseException, words: Sequence[str]) -> str:
    """
    What to do about an C{ERR} reply to the request C{words} that a docker
    user is likely to have made: pycm's own option after the command, or
    an image word that is the command (C{pycm run ubuntu echo hi}).
    """
    code = getattr(error, "code", None)
    if code == "bad_request" and words:
        for word in words[1:]:
            option = word.partition("=")[0]
            if option in _OWN_OPTIONS and repr(option) in str(error):
                return (f" (pycm's own {option} goes before the command: "
                        f"pycm {option}{' ...' if option != '--json' else ''} {words[0]} ...)")
    if code == "no_image" and words and words[0] in ("run", "create"):
        return (f" (usage: pycm {words[0]} [OPTIONS] NAME [IMAGE [COMMAND...]]: the first "
                "word after the options is the container's name, the next its image; "
                "`pycm info` lists the daemon's images)")
    return ""


def explainError(error: BaseException, client: ClientProtocol | BlockingClient,
                 options: CommandLine, words: Sequence[str] = ()) -> str:
    """
    L{fmt.formatError}, with a hint for C{unauthorized}; when the daemon
    refused the token, its refusal (C{wrong token}) and where the token
    came from, not the request's own C{authenticate first}; with the
    request's C{words}, L{requestHint}.
    """
    text = fmt.formatError(error) + requestHint(error, words)
    if isinstance(error, Unauthorized):
        if client.authError is not None and options.tokenSource:
            text = f"{fmt.formatError(client.authError)} (from {options.tokenSource})"
        elif options.tokenWithheld:
            text += (f" (the token in {options.tokenWithheld} was not sent: "
                     f"{options.host} is not an endpoint the local daemon listens on "
                     "with a token; to send it, use --token or set PYCM_TOKEN)")
        elif not options.token:
            path = defaultTokenPath()
            text += (f" (no token: use --token, set PYCM_TOKEN, or make {path} "
                     "readable)")
    return text


def writeLines(stream: TextIO, lines: Sequence[str]) -> None:
    """Write each line, ended by a newline, and flush: output is seen at once."""
    for line in lines:
        stream.write(line + "\n")
    flush = getattr(stream, "flush", None)
    if flush is not None:
        flush()


def interruptedBeforeReply(line: str, err: TextIO, command: str = "",
                           reset: bool = False) -> int:
    """
    Ctrl-C before the reply to C{line} (its C{command}): say what the
    daemon does with it, which depends on whether the connection was
    C{reset} (TCP: the daemon abandons an C{apply} or a C{wait}) or only
    closed (a UNIX socket: it goes on); exit status 130.
    """
    writeLines(err, [f"pycm: interrupted before the reply ({fateOf(command, reset)}): {line}"])
    return EXIT_INTERRUPTED


def fateOf(command: str, reset: bool) -> str:
    """
    What the daemon does with a C{command} given up before its reply, its
    connection C{reset} (TCP, TLS) or only closed (a UNIX socket).
    """
    if command == "wait":
        return "a wait changes nothing"
    if command == "apply" and reset:
        return "the daemon abandons the apply where it is (what it made stays)"
    if command == "apply":
        return "the daemon finishes the apply (over a UNIX socket it cannot be abandoned)"
    return "the daemon may still carry it out"


def interruptedBeforeSending(line: str, err: TextIO) -> int:
    """
    Ctrl-C while connecting or authenticating, before the request was
    sent: say nothing was sent; exit status 130.
    """
    writeLines(err, [f"pycm: interrupted before the request was sent (while connecting): "
                     f"nothing was sent: {line}"])
    return EXIT_INTERRUPTED


def reportError(err: TextIO, options: CommandLine, code: str, message: str,
                text: str | None = None) -> None:
    """
    Print an error on C{err}: C{text} (default C{Error: MESSAGE}) for a
    person, or C{{"error":CODE,"message":MESSAGE}} with C{--json}.
    """
    if options.json:
        writeLines(err, [json.dumps({"error": code, "message": message},
                                    ensure_ascii=False)])
    else:
        writeLines(err, [text if text is not None else f"Error: {message}"])


def reportUsageError(err: TextIO, options: CommandLine, error: UsageError) -> int:
    """
    Report a usage error found after parsing (a bad endpoint, a socket
    path too long); exit status 2.
    """
    reportError(err, options, "usage", str(error), f"pycm: {error}")
    return EXIT_USAGE


def reportUnreachable(err: TextIO, options: CommandLine, error: CannotConnect,
                      interrupted: bool = False) -> int:
    """
    Report that the daemon cannot be reached; exit status 3.  When Ctrl-C
    closed the connection while connecting, in the TLS handshake or
    authenticating (C{interrupted}), the request was not sent: say so
    (L{interruptedBeforeSending}).
    """
    if interrupted and options.command:
        return interruptedBeforeSending(shlex.join(options.command), err)
    reportError(err, options, "unreachable", str(error))
    return EXIT_UNREACHABLE
