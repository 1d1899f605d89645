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
import secrets
import shlex
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pycm.client.health import stateText
from pycm.client.wire import ConnectionGone, ProtocolError
from pycm.errors import PycmError

if TYPE_CHECKING:
    from pycm.client.oneshot import BlockingClient
    from pycm.client.protocol import ClientProtocol

#: The longest request line the daemon takes, in bytes, without its line
#: end (its default C{DEFAULT_MAX_LINE_LENGTH}).
MAX_REQUEST_LINE = 65_536

_USAGE = "usage: apply [--dry-run] [--prune] [--project=NAME] [--progress-id=ID] FILE"


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
    client shows those only, L{isOwnProgress}), then the document of FILE
    as compact JSON (one word, which the sender shell-quotes).

    @raise ApplyUsageError: for a wrong option, no FILE or more than one, a
        mistake in the file or an env file (C{FILE:LINE: why}), or a
        document too big for one request line.
    """
    flags: list[str] = []
    files: list[str] = []
    project: str | None = None
    progressId = secrets.token_hex(8)
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
            given = word.partition("=")[2] if "=" in word else next(rest, None)
            if not given:
                raise ApplyUsageError(f"apply: --progress-id needs an ID; {_USAGE}")
            progressId = given
        else:
            raise ApplyUsageError(f"apply: unknown option {word}; {_USAGE}")
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
            f"{files[0]}: too big to apply in one request: its services make a "
            f"request line of {size:,} bytes, and the daemon takes {MAX_REQUEST_LINE:,} "
            "at most; split it into several files, each with its own --project",
            hint=False)
    return request


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
