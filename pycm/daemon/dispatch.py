"""
Dispatch: a request line to its row of the command table and the row's
handler, with the authentication check, the cache of parsed lines, and the
logs of requests (L{audited} at info, L{describeLine} for debug).  Nothing
here knows about bytes on the wire, or which backend it drives.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from pycm.daemon.commands import BY_WORD, Command
from pycm.daemon.replies import STRING_REPLIES
from pycm.daemon.requestline import decodeLine, parseOptions, splitWords
from pycm.daemon.session import Session
from pycm.errors import BadRequest, PycmError
from pycm.model import validateName
from pycm.redact import REDACTED, describeRequest, isImageReference

#: Request lines whose reply is always the same, whoever sends them and
#: whenever (a public command without options or arguments that answers a
#: constant), and that reply's line, LF included: the protocol writes it
#: without parsing, dispatching or encoding anything.
FIXED_REPLIES: Mapping[bytes, bytes] = MappingProxyType({b"ping": STRING_REPLIES["pong"] + b"\n"})

#: The log of requests that change containers (see L{audited}).
requestLog = Logger(namespace="pycm.requests")


def handleLine(session: Session, line: bytes) -> Any:
    """
    Run one request line (without its line end).

    Parsing a line gives the same command, options and arguments every
    time, so short lines are parsed once and remembered: a client repeating
    C{ping} or C{list} pays for a dictionary look-up, not for decoding and
    splitting.  Authentication is checked on every request.

    @return: a JSON-able result or a Deferred firing with one.
    @raise pycm.errors.PycmError: for a request that fails at once.
    """
    parsed = _parsedLines.get(line)
    if parsed is None:
        parsed = parseRequest(session, splitWords(decodeLine(line)))
        if len(line) <= _CACHED_LINE_LENGTH:
            if len(_parsedLines) >= _CACHED_LINES:
                _parsedLines.clear()
            _parsedLines[line] = parsed
    command, options, args = parsed
    if not (command.public or session.authenticated):
        raise session.unauthenticated(command.name)
    if command.changes:
        return audited(session, command, options, args)
    return command.handler(session, options, args)


def audited(
    session: Session, command: Command, options: Mapping[str, Any], args: Sequence[str]
) -> Any:
    """
    Run a request that changes a container, and log (at info) who asked
    what of which container, and how it ended.  Only the command and the
    container's name are logged: never its options or other arguments
    (C{--env} may hold a secret), nor an error's message (see
    L{_logOutcome}).
    """
    name = _loggedName(args[0]) if args else ""
    try:
        result = command.handler(session, options, args)
    except Exception as error:
        _logOutcome(session, command, name, error)
        raise
    if isinstance(result, Deferred):

        def logged(outcome: Any) -> Any:
            error = outcome.value if isinstance(outcome, Failure) else None
            _logOutcome(session, command, name, error)
            return outcome

        return result.addBoth(logged)
    _logOutcome(session, command, name, None)
    return result


def _isName(word: str) -> bool:
    try:
        validateName(word)
    except PycmError:
        return False
    return True


def _loggedName(word: str) -> str:
    """A container name as the log shows it: only a valid name is shown."""
    return word if _isName(word) else REDACTED


def _logOutcome(
    session: Session,
    command: Command,
    name: str,
    error: BaseException | None,
) -> None:
    """
    Log how a request that changes a container ended: C{ok}, the error's
    code, C{cancelled} (given up as its client left), or C{internal} and
    the exception's type.  Never an error's
    message: it may quote the request (an option's value) or what the
    container was made with (its command, its environment), which the
    request does not show; the client has the message.
    """
    if error is None:
        outcome = "ok"
    elif isinstance(error, PycmError):
        outcome = error.code
    elif isinstance(error, CancelledError) and session.closed:
        # Its client went away (or gave up with Ctrl-C) before the reply.
        outcome = "cancelled"
    else:
        outcome = f"{PycmError.code} ({type(error).__name__})"
    peer = session.peer or "-"
    # The text is made here, in one f-string, and the format only places
    # it: the log file's observer formats a format string field by field
    # through string.Formatter (four fields: about a tenth of a create's
    # time in the daemon).  The fields stay in the event for observers
    # that read them.
    requestLog.info(
        "{request}",
        request=f"{peer}: {command.name} {name}: {outcome}",
        peer=peer,
        command=command.name,
        name=name,
        outcome=outcome,
    )


def describeLine(line: bytes) -> str:
    """
    A request line as the debug log shows it (see L{pycm.redact}): the
    command, its options' names and the container's name; never a value.
    """
    try:
        words = splitWords(decodeLine(line))
    except BadRequest:
        return f"<unreadable request, {len(line)} bytes>"
    command = BY_WORD.get(words[0].lower()) if words else None
    if command is None:
        # The word may be a token pasted on a line of its own.
        return f"<unknown command, {len(line)} bytes>"
    if command.literal:
        options: dict[str, Any] = {}
        args = words[1:]
    else:
        try:
            options, args = parseOptions(words[1:], command.options)
        except BadRequest:
            return f"{command.name} <bad options, {len(words) - 1} words redacted>"
    return describeRequest(command.name, options, args, _visibleArgs(command, args))


def _visibleArgs(command: Command, args: Sequence[str]) -> int:
    """How many leading arguments are a valid name, then an image, to show."""
    checks = (_isName, isImageReference)[: command.loggedArgs]
    visible = 0
    for check, arg in zip(checks, args):
        if not check(arg):
            break
        visible += 1
    return visible


def parseRequest(session: Session, words: Sequence[str]) -> ParsedRequest:
    """
    The command, options and arguments of a request's words.

    @raise BadRequest: for an unknown command, options or arguments.
    @raise Unauthorized: for a command that needs C{auth} first (checked
        before its options, so that an unauthenticated client learns
        nothing more).
    """
    if not words:
        raise BadRequest("empty request")
    command = BY_WORD.get(words[0].lower())
    if command is None:
        raise BadRequest(f"unknown command {words[0]!r}; try 'help'")
    if not (command.public or session.authenticated):
        raise session.unauthenticated(command.name)
    if len(words) == 1 or command.literal:
        options: dict[str, Any] = {}
        args: list[str] = list(words[1:])
    else:
        options, args = parseOptions(words[1:], command.options, command.name)
    if len(args) < command.minArgs:
        raise BadRequest(f"not enough arguments; usage: {command.usage()}")
    if command.maxArgs is not None and len(args) > command.maxArgs:
        if any(arg.startswith("-") for arg in args[command.maxArgs :]):
            raise BadRequest(f"options must come before the arguments; usage: {command.usage()}")
        raise BadRequest(f"too many arguments; usage: {command.usage()}")
    # Read-only: one parse may serve many requests.
    return command, MappingProxyType(options), tuple(args)


ParsedRequest = tuple["Command", Mapping[str, Any], tuple[str, ...]]

#: Parsed request lines, by their bytes (see L{handleLine}).
_parsedLines: dict[bytes, ParsedRequest] = {}
_CACHED_LINES = 1024
_CACHED_LINE_LENGTH = 128
