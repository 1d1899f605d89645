"""
C{pycm apply [--dry-run] [--prune] [--project NAME] FILE}: the services
file read on the client's side (L{pycm.services.servicefile}) into one
C{apply} request (L{planApply}), the progress the daemon reports while it
works (L{watchApply}, L{progressLine}), and its outcome as a table
(L{outcomeLines}).

Every function here but L{watchApply} returns text; none prints.  (Imported
by the one-shot client, which must stay quick to start: the services file
reader, which needs attrs, is imported only when a file is read.)
"""

from __future__ import annotations

import json
import re
import secrets
import shlex
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from pycm.client.health import stateText
from pycm.client.wire import ConnectionGone, ProtocolError
from pycm.errors import PycmError
from pycm.printable import printable

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred
    from twisted.python.failure import Failure

    from pycm.client.oneshot import BlockingClient
    from pycm.client.protocol import ClientProtocol

#: The longest request line the daemon takes, in bytes, without its line
#: end (its default C{DEFAULT_MAX_LINE_LENGTH}).
MAX_REQUEST_LINE = 65_536

_USAGE = "usage: apply [--dry-run] [--prune] [--project=NAME] [--progress-id=ID] FILE"

#: A C{--progress-id} the daemon takes (its
#: C{pycm.daemon.handlers.applying.PROGRESS_ID}, which a test keeps the
#: same): a wrong one is a usage error before anything is sent.
PROGRESS_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")

#: How a daemon older than C{--progress-id} refuses an apply that has one
#: (C{ERR bad_request ...}: it refuses every option it does not know).
OLD_DAEMON_REFUSAL = "unknown option '--progress-id'"

_Reply = TypeVar("_Reply")


class ApplyUsageError(ValueError):
    """C{apply}'s words are wrong, or its file is (a usage error: exit status 2)."""

    def __init__(self, message: str, hint: bool = True) -> None:
        super().__init__(message)
        #: Whether C{Try 'pycm --help'} helps (not for a mistake in the file).
        self.hint = hint


def planApply(words: Sequence[str]) -> tuple[str, ...]:
    """
    The words of the C{apply} request for C{apply [OPTIONS] FILE}: its
    options as given, a C{--progress-id} (the one given, else a random
    word: the daemon tags this apply's progress events with it, and the
    client shows those only, L{isOwnProgress}; a daemon older than that
    option gets the apply again without it, L{withoutOwnProgressId}), then
    the document of FILE as compact JSON (one word, which the sender
    shell-quotes).

    @raise ApplyUsageError: for a wrong option (or C{--progress-id}), no FILE or more than one, a
        mistake in the file or an env file (C{FILE:LINE: why}), or a
        document too big for one request line.
    """
    flags, files, project, given = _applyOptions(words)
    progressId = secrets.token_hex(8) if given is None else given
    if len(files) != 1:
        raise ApplyUsageError(f"apply takes one services FILE; {_USAGE}")
    from pycm.services.servicefile import loadServicesFile

    try:
        document = loadServicesFile(files[0], project)
    except PycmError as e:
        raise ApplyUsageError(e.message, hint=False) from None
    if project is not None:
        flags.append(f"--project={project}")
    flags.append(f"--progress-id={progressId}")
    request = (words[0], *flags, json.dumps(document, ensure_ascii=False,
                                            separators=(",", ":")))
    size = len(shlex.join(request).encode("utf-8"))
    if size > MAX_REQUEST_LINE:
        raise ApplyUsageError(
            f"{printable(files[0])}: too big to apply in one request: its services make a "
            f"request line of {size:,} bytes, and the daemon takes {MAX_REQUEST_LINE:,} "
            "at most; split it into several files, each with its own --project",
            hint=False)
    return request


def _applyOptions(
    words: Sequence[str],
) -> tuple[list[str], list[str], str | None, str | None]:
    """
    C{apply [OPTIONS] FILE}'s words read: its flags, its files, its
    C{--project} and its C{--progress-id} (None where not given).

    @raise ApplyUsageError: for a wrong option.
    """
    flags: list[str] = []
    files: list[str] = []
    project: str | None = None
    progressId: str | None = None
    rest = iter(words[1:])
    optionsDone = False
    for word in rest:
        if optionsDone or not word.startswith("-") or word == "-":
            files.append(word)
        elif word == "--":
            optionsDone = True
        elif word in ("--dry-run", "--prune"):
            if word not in flags:
                flags.append(word)
        elif word == "--project" or word.startswith("--project="):
            project = word.partition("=")[2] if "=" in word else next(rest, None)
            if not project:
                raise ApplyUsageError(f"apply: --project needs a NAME; {_USAGE}")
        elif word == "--progress-id" or word.startswith("--progress-id="):
            progressId = word.partition("=")[2] if "=" in word else next(rest, None)
            if not progressId:
                raise ApplyUsageError(f"apply: --progress-id needs an ID; {_USAGE}")
            if not PROGRESS_ID.fullmatch(progressId):
                raise ApplyUsageError(
                    f"apply: bad --progress-id {progressId!r}: expected 1 to 64 letters, "
                    f"digits, '_', '.' or '-'; {_USAGE}")
        else:
            raise ApplyUsageError(f"apply: unknown option {word}; {_USAGE}")
    return flags, files, project, progressId


def isOldDaemonRefusal(error: BaseException) -> bool:
    """
    Is C{error} how a daemon older than C{--progress-id} refuses an apply
    that has one (L{OLD_DAEMON_REFUSAL})?
    """
    return isinstance(error, PycmError) and error.code == "bad_request" \
        and error.message == OLD_DAEMON_REFUSAL


def withoutOwnProgressId(error: BaseException, request: Sequence[str],
                         typed: Sequence[str]) -> tuple[str, ...] | None:
    """
    The C{apply} request C{request} without the C{--progress-id} the
    client added to it by itself, when C{error} says the daemon is older
    than that option (L{isOldDaemonRefusal}): sent again, it applies as
    before, and its progress events carry no id (show them all, as
    clients did before).  None otherwise: another request or error, or
    an id the user gave (C{typed}: their words), which that daemon cannot
    honour.
    """
    if not request or request[0].lower() != "apply" or not isOldDaemonRefusal(error):
        return None
    kept = typedProgressIdOnly(request, typed)
    return kept if len(kept) < len(request) else None


def typedProgressIdOnly(request: Sequence[str], typed: Sequence[str]) -> tuple[str, ...]:
    """
    The C{apply} request C{request} without the C{--progress-id} the
    client added by itself (where no progress is watched), keeping one the
    user gave (C{typed}: their words).
    """
    try:
        if _applyOptions(typed)[3] is not None:
            return tuple(request)
    except ApplyUsageError:
        return tuple(request)
    return tuple(word for word in request if not word.startswith("--progress-id="))


def oldDaemonHint(error: BaseException, request: Sequence[str]) -> str:
    """
    What to say when the daemon refused the C{--progress-id} the user gave
    (L{isOldDaemonRefusal}): it is older than that option.
    """
    if request and request[0].lower() == "apply" and isOldDaemonRefusal(error) \
            and any(word.startswith("--progress-id=") for word in request):
        return (" (this daemon is older than apply's --progress-id: apply without it, "
                "and pycm shows every progress event of the project's applies)")
    return ""


def sendApply(send: Callable[[str, Sequence[str]], Deferred[_Reply]],
              request: Sequence[str], typed: Sequence[str]) -> Deferred[_Reply]:
    """
    C{send(line, request)}, and once more without the client's own
    C{--progress-id} if the daemon is older than it
    (L{withoutOwnProgressId}): the shell's way to send a planned request.
    """
    def olderDaemon(failure: Failure) -> Any:  # the failure, or the second reply
        older = withoutOwnProgressId(failure.value, request, typed)
        if older is None:
            return failure
        return send(shlex.join(older), older)

    return send(shlex.join(request), request).addErrback(olderDaemon)


async def watchApply(client: ClientProtocol | BlockingClient) -> bool:
    """
    Ask the daemon for the progress of applies, before the C{apply} is
    sent: True if it will send them (as C{EVENT}s of type C{progress},
    action C{apply}), False if it will not say.
    """
    try:
        await client.request(shlex.join(["events", "--filter", "action=apply"]))
    except (PycmError, ValueError, ConnectionGone, ProtocolError):
        # The apply itself says what is wrong with the connection.
        return False
    return True


def isApplyProgress(event: Any) -> bool:
    """Is C{event} the progress of an apply?"""
    return isinstance(event, Mapping) and event.get("type") == "progress" \
        and event.get("action") == "apply"


def progressIdOf(words: Sequence[str]) -> str | None:
    """The C{--progress-id} of the C{apply} request C{words}, if it has one."""
    for word in words[1:]:
        if word.startswith("--progress-id="):
            return word.partition("=")[2]
    return None


def isOwnProgress(event: Mapping[str, Any], progressId: str | None) -> bool:
    """
    Is the apply progress C{event} that of the apply sent with
    C{progressId}?  Another client's apply of the same project (waiting
    for this one, or this one for it) has its own id, or none.
    """
    return progressId is None or event.get("apply") == progressId


def progressLine(event: Mapping[str, Any]) -> str:
    """C{db: waiting for cache to be healthy}."""
    return f"{event.get('name')}: {event.get('detail', '')}".rstrip()


#: The columns of L{outcomeLines}.
OUTCOME_COLUMNS = ("SERVICE", "ACTION", "CHANGES", "STATE")


def outcomeLines(reply: Mapping[str, Any]) -> list[str]:
    """
    The C{apply} reply as a table, one line a service in start order,
    removals last: C{SERVICE ACTION CHANGES STATE} (the state with its
    health, as C{pycm ls} shows it), under a line naming the project (and
    saying that a dry run changed nothing).
    """
    project = reply.get("project")
    if reply.get("dry_run"):
        title = f"project {project}: the plan (dry run: nothing was changed)"
    else:
        title = f"project {project}"
    rows = [list(OUTCOME_COLUMNS)]
    services = reply.get("services")
    for service in services if isinstance(services, list) else ():
        if not isinstance(service, Mapping):
            continue
        changes = service.get("changes")
        rows.append([
            _cell(service.get("name")),
            _cell(service.get("action")),
            ", ".join(str(c) for c in changes) if isinstance(changes, list) and changes
            else "-",
            stateText(service) or "-",
        ])
    widths = [max(len(row[i]) for row in rows) for i in range(len(OUTCOME_COLUMNS))]
    return [title, *(
        "   ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
        for row in rows
    )]


def _cell(value: Any) -> str:
    return "-" if value is None or value == "" else str(value)
