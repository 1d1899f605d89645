"""
One command from the command line, carried out by L{runCommand}: its
L{Plan}'s requests sent one after the other, each reply printed (and, for
C{events} and C{logs --follow}, the events that follow), the exit status
the worst of them.  The same coroutine runs in the reactor with a
L{ClientProtocol} and on the one-shot path's blocking socket.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TextIO

from pycm.client import format as fmt
from pycm.client.applying import (
    isApplyProgress,
    isOwnProgress,
    oldDaemonHint,
    progressIdOf,
    progressLine,
    watchApply,
    withoutOwnProgressId,
)
from pycm.client.exits import (
    EXIT_OK,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    errorStatus,
    explainError,
    interruptedBeforeReply,
    reportError,
    writeLines,
)
from pycm.client.logfit import fittingLogs
from pycm.client.plan import Plan, planCommand
from pycm.client.template import formatContainers
from pycm.client.wire import ConnectionGone, ProtocolError
from pycm.errors import PycmError

if TYPE_CHECKING:
    from twisted.internet.interfaces import IReactorTime

    from pycm.client.arguments import CommandLine
    from pycm.client.oneshot import BlockingClient
    from pycm.client.protocol import ClientProtocol

def logStream(entry: Any, out: TextIO, err: TextIO) -> TextIO:
    """Where a log line goes: stderr for the container's stderr."""
    if isinstance(entry, dict) and entry.get("stream") == "stderr":
        return err
    return out



def interruptions(reactor: Any) -> list[bool]:
    """
    A list that becomes C{[True]} when the reactor begins to shut down
    (Ctrl-C or SIGTERM under L{task.react}), which also closes the
    connection: what tells an interruption from a lost daemon.
    """
    interrupted: list[bool] = []
    addTrigger = getattr(reactor, "addSystemEventTrigger", None)
    if addTrigger is not None:
        addTrigger("before", "shutdown", lambda: interrupted.append(True))
    return interrupted


async def runCommand(
    reactor: IReactorTime,
    client: ClientProtocol | BlockingClient,
    options: CommandLine,
    out: TextIO,
    err: TextIO,
    environ: Mapping[str, str] | None = None,
    interrupted: list[bool] | None = None,
) -> int:
    """
    Carry out C{options.command}'s L{Plan}: send its requests one after
    the other, print each reply (and, for C{events} and C{logs --follow},
    the events that follow), return the exit status: the worst of them.

    The same coroutine serves both paths: in the reactor with a
    L{ClientProtocol}, and on a blocking socket with a
    L{pycm.client.oneshot.BlockingClient}, whose awaitables finish before
    they return; so the output is the same by construction.

    @param interrupted: becomes C{[True]} on Ctrl-C (L{interruptions} by
        default).
    """
    plan = options.plan if options.plan is not None else planCommand(options.command)
    if environ is None:
        environ = os.environ
    name = plan.command
    follow = plan.follow
    streaming = name == "events" and "--off" not in plan.requests[0]
    # Several containers' lines get their name first; lines tagged with
    # a task or node get NAME.TASK@NODE first, with one container too.
    several = name == "logs" and len(plan.requests) > 1
    isatty = getattr(out, "isatty", None)
    prefixes = fmt.LogPrefixes(
        plan.names if several else (),
        several and fmt.useColour(bool(isatty and isatty()), environ),
    )
    finished: list[bool] = []
    early: list[tuple[Any, str]] = []
    following: set[str] = set()
    replied = False

    def showEvent(event: Any, payload: str) -> None:
        if not replied:
            early.append((event, payload))
            return
        if follow:
            if not isinstance(event, dict) or event.get("type") not in (
                "log", "log_end"
            ):
                return
            if event["type"] == "log_end":
                following.discard(str(event.get("name")))
                if not following:
                    finished.append(True)
                return
            text = fmt.formatLogEntry(event, str(event.get("name")), prefixes,
                                      plan.timestamps)
        else:
            text = fmt.formatEvent(event)
        if options.json:
            writeLines(out, [payload])
        else:
            writeLines(logStream(event, out, err), [text])

    progress = await _watchPull(client, options, plan, err)
    # An apply's progress is printed as it comes, on stderr (stdout keeps
    # the outcome); as JSON lines with --json.
    applying = name == "apply" and await watchApply(client)
    progressId = progressIdOf(plan.requests[0]) if applying and plan.requests else None

    def listener(event: Any) -> None:
        if progress is not None and isinstance(event, dict) \
                and event.get("type") == "progress":
            err.write(progress.update(event))
            err.flush()
            return
        if applying and isApplyProgress(event):
            # Only this apply's: another client's of the project may overlap.
            if isOwnProgress(event, progressId):
                writeLines(err, [client.payload if options.json else progressLine(event)])
            return
        showEvent(event, client.payload)

    if interrupted is None:
        interrupted = interruptions(reactor)
    client.addEventListener(listener)
    code = EXIT_OK
    logLines: list[tuple[str, int, str, Any]] = []
    for index, words in enumerate(plan.requests):
        line = shlex.join(words)
        try:
            try:
                value = await client.request(line)
            except PycmError as e:
                older = withoutOwnProgressId(e, words, options.command)
                fitting = None if options.json else fittingLogs(words, e)
                if older is not None:
                    # A daemon older than --progress-id: the apply once more
                    # without it, and all of its progress shown, as before.
                    words, line, progressId = older, shlex.join(older), None
                    value = await client.request(line)
                elif fitting is not None:
                    # A log over what a reply may carry: its newest lines.
                    words, notice = fitting
                    line = shlex.join(words)
                    value = await client.request(line)
                    writeLines(err, [notice])
                else:
                    raise
        except PycmError as e:
            reportError(err, options, e.code, e.message,
                        explainError(e, client, options, words) + oldDaemonHint(e, words))
            code = max(code, errorStatus(e))
            continue
        except ConnectionGone:
            if interrupted:
                return interruptedBeforeReply(
                    _typed(line, words, options), err, name,
                    reset=not options.host.lower().startswith("unix:"))
            reportError(err, options, "unreachable",
                        f"lost the connection to the pycm daemon at {options.host}")
            return EXIT_UNREACHABLE
        except ProtocolError as e:
            reportError(err, options, "unreachable",
                        f"{options.host} does not answer like a pycm daemon: {e}")
            return EXIT_UNREACHABLE
        except ValueError as e:
            reportError(err, options, "usage", str(e), f"pycm: {e}")
            client.disconnect()
            return EXIT_USAGE
        if follow:
            following.add(words[-1])
        if options.json:
            writeLines(out, [client.payload])
        elif name == "logs" and isinstance(value, list):
            prefixes.widen(words[-1], value)
            if not several:
                # Like `docker logs`: what the container wrote to stderr
                # goes to stderr.
                for entry in value:
                    writeLines(logStream(entry, out, err), [fmt.formatLogEntry(
                        entry, words[-1], prefixes, plan.timestamps)])
            else:
                for entry in value:
                    when = entry.get("time") if isinstance(entry, dict) else None
                    logLines.append((_sortTime(when), index, words[-1], entry))
        else:
            lines = fmt.actedOn(name, value)
            if isinstance(value, list) and name in fmt.LIST_COMMANDS:
                lines = formatContainers(value, plan.quiet, plan.template,
                                             plan.jsonLines)
            if lines is None:
                lines = fmt.formatReply(name, value, reactor.seconds())
            # The events banner goes to stderr so `pycm events | grep` sees
            # only events.
            writeLines(err if streaming else out, lines)
    # Several containers' lines, merged by time (each one's stay in order).
    logLines.sort(key=lambda item: (item[0], item[1]))
    for _, _, container, entry in logLines:
        writeLines(logStream(entry, out, err),
                   [fmt.formatLogEntry(entry, container, prefixes, plan.timestamps)])
    replied = True
    # A refused `events` (a bad filter) has nothing to stream.
    streaming = streaming and code == EXIT_OK
    for event, payload in early:
        showEvent(event, payload)
    if not ((follow and following) or streaming) or finished:
        client.disconnect()
        return code

    # Ctrl-C (or SIGTERM) stops the reactor, which closes the connection:
    # that is the normal end of `events`, not a lost daemon.
    await client.waitUntil(lambda: bool(finished))
    if finished or interrupted:
        client.disconnect()
        return code
    reportError(err, options, "unreachable",
                f"lost the connection to the pycm daemon at {options.host}")
    return EXIT_UNREACHABLE


async def _watchPull(client: ClientProtocol | BlockingClient, options: CommandLine,
                     plan: Plan, err: TextIO) -> fmt.PullProgress | None:
    """
    For C{run} or C{create} with a terminal on stderr: ask the daemon for
    the progress of pulls for this container, and return what draws them;
    None otherwise (piped, C{--json}, or a daemon that will not say).
    """
    isatty = getattr(err, "isatty", None)
    if plan.command not in ("run", "create") or options.json \
            or not (isatty and isatty()) or not plan.names:
        return None
    watch = ["events", "--filter", "action=pull", "--filter", f"name={plan.names[0]}"]
    try:
        await client.request(shlex.join(watch))
    except (PycmError, ValueError):
        return None
    except (ConnectionGone, ProtocolError):
        # The request itself will say so.
        return None
    return fmt.PullProgress(_terminalColumns(err))


def _terminalColumns(stream: TextIO) -> int:
    """The width of the terminal C{stream} writes to; 0 if it will not say."""
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError):
        return 0


def _sortTime(when: Any) -> str:
    # The daemon's times are all of one form (UTC, milliseconds): their
    # text sorts as they do.
    return when if isinstance(when, str) else ""


def _typed(line: str, words: Sequence[str], options: CommandLine) -> str:
    """
    The request an interruption names: C{line} as sent, unless the client
    may have put in it what the user never typed (C{apply}'s document, the
    variables of C{--env-file} or of C{-e KEY}, which may be secrets): then
    the user's own words.
    """
    if words and words[0].lower() in ("apply", "run", "create"):
        return shlex.join(options.command)
    return line

