"""
Human output, shared by the one-shot command line and the shell.

Every function returns text (lines without newlines); none prints.  What
the daemon sent is shown with its control characters escaped
(L{printable}), except a container's log lines, shown as written, and
C{--json}'s output, escaped by JSON already.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

# Imported by the one-shot client, which must stay quick to start: no
# Twisted here, nor attrs (pycm.model), directly or not.
from pycm.client import services
from pycm.client.applying import outcomeLines
from pycm.client.commandtable import (
    COMMAND_NOTES,
    MULTI_NAME,
    MULTI_NAME_NOTE,
    clientUsageLine,
)
from pycm.client.health import eventStatus, healthLines, oomText, stateText
from pycm.client.stats import statsTable
from pycm.errors import PycmError
from pycm.printable import printable
from pycm.timestamps import parseTime

LIST_COMMANDS = frozenset({"list", "ls", "ps"})
TABLE_COLUMNS = (
    "NAME", "STATE", "IMAGE", "COMMAND", "PID", "EXIT", "CREATED", "RESTARTS",
)
COMMAND_WIDTH = 30


def ago(when: str | None, now: float) -> str:
    """
    C{"5 minutes ago"} for an RFC 3339 time, like C{docker ps}; under a
    second, C{"Less than a second ago"}, capital L and all, as C{docker ps}
    prints it (Docker's go-units C{HumanDuration}).
    """
    if not when:
        return "-"
    try:
        seconds = now - (parseTime(when) or 0.0)
    except ValueError:
        return printable(when)
    if seconds < 1:
        return "Less than a second ago"
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60),
                       ("second", 1)):
        if seconds >= size:
            count = int(seconds // size)
            if unit == "day" and count >= 14:
                weeks = count // 7
                return f"{weeks} weeks ago"
            return f"{count} {unit}{'s' if count != 1 else ''} ago"
    return "-"  # unreachable


def duration(seconds: float) -> str:
    """
    C{"1m20s"} for 80.149 seconds: whole seconds in Go's C{time.Duration}
    form, as docker prints durations (C{"1h0m5s"}, C{"0s"}).
    """
    minutes, secs = divmod(max(0, int(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return (f"{hours}h" if hours else "") + (f"{minutes}m" if hours or minutes else "") + f"{secs}s"


def humanInfo(value: dict[str, Any]) -> dict[str, Any]:
    """C{info}'s reply with its uptime (seconds) as a L{duration}."""
    uptime = value.get("uptime")
    if isinstance(uptime, (int, float)) and not isinstance(uptime, bool):
        return {**value, "uptime": duration(uptime)}
    return value


def truncate(text: str, width: int) -> str:
    """Cut C{text} to C{width} characters, ending with an ellipsis if cut."""
    if len(text) <= width:
        return text
    return text[: width - 1] + "\N{HORIZONTAL ELLIPSIS}"


def _cell(value: Any) -> str:
    return "-" if value is None or value == "" else printable(str(value))


def containerTable(containers: Sequence[dict[str, Any]], now: float) -> list[str]:
    """
    A C{docker ps}-like table: a header line, then one line per container;
    with a REPLICAS column (C{2/3}, as C{docker service ls}) after STATE
    when any container has replica counts.
    """
    replicas = services.anyReplicas(containers)
    columns = list(TABLE_COLUMNS)
    if replicas:
        columns.insert(2, "REPLICAS")
    rows = [columns]
    for c in containers:
        command = c.get("command") or []
        if isinstance(command, list):
            command = shlex.join(str(word) for word in command)
        rows.append([
            _cell(c.get("name")),
            _cell(stateText(c)),
            *([_cell(services.replicasText(c))] if replicas else []),
            _cell(c.get("image")),
            '"' + truncate(printable(str(command)), COMMAND_WIDTH) + '"' if command else "-",
            _cell(c.get("pid")),
            _cell(c.get("exit_code")),
            ago(c.get("created"), now),
            _cell(c.get("restart_count", 0)),
        ])
    widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
    return [
        "   ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
        for row in rows
    ]


def containerDetail(container: dict[str, Any]) -> list[str]:
    """
    C{inspect}'s C{key: value} lines; replica counts as C{2/3}; the health
    (status, failing streak, last results) after the rest; and the tasks,
    when there are any, last, as a table.
    """
    shown = dict(container)
    replicas = services.replicasText(container)
    if replicas is not None:
        shown["replicas"] = replicas
    health = shown.get("health")
    extra: list[str] = []
    if isinstance(health, dict):
        del shown["health"]
        extra = healthLines(health)
    tasks = shown.get("tasks")
    if not (isinstance(tasks, list) and tasks):
        return [*keyValues(shown), *extra]
    del shown["tasks"]
    return [*keyValues(shown), *extra, "tasks:",
            *("  " + row for row in services.taskTable(tasks))]


def keyValues(value: dict[str, Any], indent: int = 0) -> list[str]:
    """
    C{key: value} lines, nested objects indented under their key; keys and
    values L{printable}.
    """
    lines = []
    pad = "  " * indent
    width = max((len(printable(str(k))) for k in value), default=0) + 1
    for rawKey, item in value.items():
        key = printable(str(rawKey))
        label = f"{key}:".ljust(width)
        if isinstance(item, dict) and item:
            lines.append(f"{pad}{key}:")
            lines.extend(keyValues(item, indent + 1))
        elif isinstance(item, list) and item and any(
            isinstance(x, (dict, list)) for x in item
        ):
            lines.append(f"{pad}{key}:")
            for x in item:
                lines.append(f"{pad}  - {printable(scalar(x))}")
        else:
            lines.append(f"{pad}{label} {printable(scalar(item))}")
    return lines


def scalar(value: Any) -> str:
    """One value on one line: strings bare, C{null} as C{-}, else JSON."""
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list) and all(isinstance(x, str) for x in value):
        return shlex.join(value) if value else "[]"
    if isinstance(value, dict) and not value:
        return "{}"
    return json.dumps(value, ensure_ascii=False)


def isContainer(value: Any) -> bool:
    return isinstance(value, dict) and "name" in value and "state" in value \
        and "image" in value


def requestWords(line: str) -> list[str]:
    """The words of a request line, as the daemon splits them (or near)."""
    try:
        return shlex.split(line)
    except ValueError:
        return line.split()


def commandName(line: str) -> str:
    """The lower-cased command word of a request line (C{""} if none)."""
    words = requestWords(line)
    return words[0].lower() if words else ""


def formatReply(command: str, value: Any, now: float, words: Sequence[str] = ()) -> list[str]:
    """
    The lines to show a person for the C{OK} reply to C{command}: a log's
    lines as the container wrote them, any other's L{printable}.

    @param words: the request's words, when known (the container's name
        then prefixes the log lines of its tasks).
    """
    if command == "logs" and isinstance(value, list):
        name = words[-1] if words else ""
        prefixes = LogPrefixes(()).widen(name, value)
        return [formatLogEntry(entry, name, prefixes) for entry in value]
    # Tables and key/value lines escape each field first (their columns
    # line up); this catches the rest.
    return [printable(line) for line in _replyLines(command, value, now)]


def _replyLines(command: str, value: Any, now: float) -> list[str]:
    if command in LIST_COMMANDS and isinstance(value, list):
        return containerTable(value, now)
    if command == "wait" and isinstance(value, dict):
        return [formatWait(value)]
    if command == "apply" and isinstance(value, dict):
        return outcomeLines(value)
    if command == "rm" and isinstance(value, dict) and value.get("removed"):
        return [f"{value.get('name')} removed" + notSaved(value)]
    if command == "events" and isinstance(value, dict):
        if value.get("events"):
            return [f"Watching events (last id {value.get('last_id')})"]
        return ["Stopped watching events"]
    if command == "help":
        return formatHelp(value)
    if command == "info" and isinstance(value, dict):
        return keyValues(humanInfo(value))
    if command == "stats" and isinstance(value, list):
        return statsTable(value)
    if isContainer(value) and command != "inspect":
        return [containerLine(value)]
    if isContainer(value):
        return containerDetail(value)
    if isinstance(value, str):
        return value.splitlines() or [""]
    if isinstance(value, dict):
        return keyValues(value)
    if isinstance(value, list):
        return [scalar(item) for item in value]
    return [scalar(value)]


#: The commands whose one-shot output is the container's name alone, as
#: C{docker stop} prints it: the state in the reply may be the one before
#: the change took effect (C{kill} answers once the signal is sent).
NAME_ONLY_COMMANDS = frozenset({"start", "stop", "restart", "kill", "rm"})


def actedOn(command: str, value: Any) -> list[str] | None:
    """
    The one-shot output for a container that C{start}, C{stop},
    C{restart}, C{kill} or C{rm} acted on: its name (L{notSaved} after it);
    None for any other command or reply (L{formatReply} then says).
    """
    if command not in NAME_ONLY_COMMANDS or not isinstance(value, dict) \
            or not isinstance(value.get("name"), str):
        return None
    return [value["name"] + notSaved(value)]


def containerLine(container: dict[str, Any]) -> str:
    """
    One line for a container that a command acted on (C{run}, C{stop}...):
    C{web  running  pid 4242}, C{web  exited  exit code -15}, C{web
    running  replicas 3/3}; C{inspect} shows every field.
    """
    parts = [str(container.get("name")), stateText(container) or str(container.get("state"))]
    replicas = services.replicasText(container)
    if replicas is not None:
        parts.append(f"replicas {replicas}")
    if container.get("pid") is not None:
        parts.append(f"pid {container['pid']}")
    if container.get("exit_code") is not None:
        parts.append(f"exit code {container['exit_code']}")
    if container.get("error"):
        parts.append(f"({container['error']})")
    return "  ".join(parts) + notSaved(container)


#: What a person is told of a change the daemon could not write yet.
NOT_SAVED = "  (not saved yet: the daemon's disk is full; it writes it when it can)"


def notSaved(value: dict[str, Any]) -> str:
    """L{NOT_SAVED} for a reply whose change is not on disk yet, else C{""}."""
    return NOT_SAVED if value.get("saved") is False else ""


def formatHelp(value: Any) -> list[str]:
    """
    The server's help: C{{"commands": [{name, usage, summary, aliases}]}}
    as a two-column list, one command's C{{name, usage, ...}} as its usage;
    any other shape generically.
    """
    if isinstance(value, dict) and isinstance(value.get("commands"), list):
        entries = [c for c in value["commands"] if isinstance(c, dict)]
        width = max((len(str(c.get("name", ""))) for c in entries), default=0)
        lines = ["Commands:"]
        for c in entries:
            text = f"  {str(c.get('name', '')).ljust(width)}  {c.get('summary', '')}"
            if c.get("aliases"):
                text += f" (also {', '.join(c['aliases'])})"
            lines.append(text.rstrip())
        lines.append("Type `help COMMAND` for one command's usage.")
        return lines
    if isinstance(value, dict) and isinstance(value.get("usage"), str):
        usage = value["usage"]
        several = value.get("name") in MULTI_NAME and usage.endswith(" NAME")
        if several:
            # The client sends one request a name: the daemon's takes one.
            usage += "..."
        usage = clientUsageLine(str(value.get("name")), usage)
        lines = [f"usage: {usage}"]
        if value.get("summary"):
            lines.append(f"  {value['summary']}")
        if value.get("aliases"):
            lines.append(f"  aliases: {', '.join(value['aliases'])}")
        lines.extend(COMMAND_NOTES.get(str(value.get("name")), ()))
        if several:
            lines.extend(MULTI_NAME_NOTE)
        return lines
    if isinstance(value, str):
        return value.splitlines()
    if isinstance(value, list):
        return [scalar(item) for item in value]
    if isinstance(value, dict):
        return keyValues(value)
    return [scalar(value)]


def formatWait(value: dict[str, Any]) -> str:
    """C{web: exited, exit code 0}; C{web: running, healthy} (C{wait --for=healthy})."""
    text = f"{value.get('name')}: {value.get('state')}"
    if value.get("exit_code") is not None:
        text += f", exit code {value['exit_code']}"
    health = value.get("health")
    if isinstance(health, dict):
        health = health.get("status")
    if isinstance(health, str) and health:
        text += f", {health}"
    return text


def formatLogLine(entry: Any) -> str:
    """The text of a log line (what the container wrote)."""
    if isinstance(entry, dict):
        return str(entry.get("line", ""))
    return str(entry)


def formatEvent(event: Any) -> str:
    """
    One line for an C{EVENT}: a container event, a log line (as written),
    a log end; L{printable} but for the log line.
    """
    if isinstance(event, dict) and event.get("type") == "log":
        tag = services.taskTag(str(event.get("name")), event)
        return f"{printable(str(tag or event.get('name')))} | {event.get('line', '')}"
    return printable(_eventLine(event))


def _eventLine(event: Any) -> str:
    if not isinstance(event, dict):
        return scalar(event)
    kind = event.get("type")
    if kind == "progress":
        return f"{event.get('name')}: {event.get('action')} {event.get('detail', '')}".rstrip()
    if kind == "log_end":
        return f"{event.get('name')}: end of logs"
    if kind == "container":
        text = (f"{event.get('time') or '-'}  #{event.get('id')}  "
                f"{event.get('name')}  {event.get('action')}{eventStatus(event)}")
        if event.get("exit_code") is not None:
            text += f" (exit code {event['exit_code']}{oomText(event)})"
        return text + services.eventDetail(event)
    return json.dumps(event, ensure_ascii=False)


def formatError(error: BaseException) -> str:
    """C{Error: not_found: no such container: web}, L{printable}."""
    if isinstance(error, PycmError):
        return printable(f"Error: {error.code}: {error.message}")
    return printable(f"Error: {error}")


# -- logs of several containers ----------------------------------------------

#: Colours for C{NAME |} prefixes, in turn, as docker compose does.
PREFIX_COLOURS = (36, 33, 32, 35, 34, 96, 93, 92, 95, 94)


def useColour(isatty: bool, environ: Mapping[str, str]) -> bool:
    """Colours only on a terminal, and never with C{NO_COLOR} set."""
    return isatty and not environ.get("NO_COLOR") and environ.get("TERM") != "dumb"


class LogPrefixes:
    """
    The C{NAME | } prefix of each container's lines when several are
    shown: names padded to one width, each in its own colour on a terminal.
    A line tagged with its task or node (L{services.taskTag}) has
    C{NAME.TASK@NODE | } instead, as C{docker service logs} shows it, with
    one container too; the width grows to the widest prefix so far.
    """

    def __init__(self, names: tuple[str, ...], colour: bool = False) -> None:
        self.names = names
        self.colour = colour
        self.width = max((len(n) for n in names), default=0)

    def widen(self, name: str, entries: Sequence[Any]) -> LogPrefixes:
        """Make room for the tags of C{entries} (C{name}'s lines) at once."""
        for entry in entries:
            self.width = max(self.width, len(services.taskTag(name, entry) or ""))
        return self

    def prefix(self, name: str, tag: str | None = None) -> str:
        if not self.names and tag is None:
            return ""
        self.width = max(self.width, len(tag or name))
        text = f"{(tag or name).ljust(self.width)} | "
        if not self.colour:
            return text
        index = self.names.index(name) if name in self.names else 0
        code = PREFIX_COLOURS[index % len(PREFIX_COLOURS)]
        return f"\x1b[{code}m{text}\x1b[0m"


def formatLogEntry(
    entry: Any, name: str = "", prefixes: LogPrefixes | None = None,
    timestamps: bool = False,
) -> str:
    """
    A log line with, as asked, its container's prefix (or its task's, for
    a line tagged with one: see L{LogPrefixes}) and its time.
    """
    text = formatLogLine(entry)
    if timestamps and isinstance(entry, dict) and entry.get("time"):
        text = f"{entry['time']} {text}"
    if prefixes is not None:
        text = prefixes.prefix(name, services.taskTag(name, entry)) + text
    return text


# -- an image pull's progress ------------------------------------------------


class PullProgress:
    """
    An image pull's progress on a terminal, as C{docker pull} shows it:
    one line for the image and one per layer, each rewritten in place as
    its status changes (the lines drawn before are redrawn, from the
    cursor moved back up over them).

    @ivar columns: the terminal's width (0: unknown).  Each line is cut to
        fit in it, last column left free: a line that wrapped would take
        two rows, and moving up one row per line would then miss the top.
    """

    def __init__(self, columns: int = 0) -> None:
        self.columns = columns
        self.lines: dict[str, str] = {}
        self.drawn = 0

    def update(self, event: dict[str, Any]) -> str:
        """The text that redraws the progress with C{event} in it."""
        status = event.get("status")
        if isinstance(status, str) and status:
            layer = str(event.get("layer") or "")
            image = str(event.get("image") or "")
            self.lines[layer] = f"{layer or image}: {status}"
        else:
            # A daemon that sends only the detail: a line of its own.
            detail = str(event.get("detail", ""))
            self.lines[detail] = detail
        text = f"\x1b[{self.drawn}A" if self.drawn else ""
        for line in self.lines.values():
            if self.columns > 1:
                line = line[: self.columns - 1]
            text += "\r\x1b[2K" + line + "\n"
        self.drawn = len(self.lines)
        return text
