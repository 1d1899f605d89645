"""
Human output, shared by the one-shot command line and the shell.

Every function returns text (lines without newlines); none prints.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

# Imported by the one-shot client, which must stay quick to start: no
# Twisted here, nor attrs (pycm.model), directly or not.
from pycm.client.stats import statsTable
from pycm.errors import PycmError
from pycm.timestamps import parseTime

LIST_COMMANDS = frozenset({"list", "ls", "ps"})
TABLE_COLUMNS = (
    "NAME", "STATE", "IMAGE", "COMMAND", "PID", "EXIT", "CREATED", "RESTARTS",
)
COMMAND_WIDTH = 30


def ago(when: str | None, now: float) -> str:
    """C{"5 minutes ago"} for an RFC 3339 time, like C{docker ps}."""
    if not when:
        return "-"
    try:
        seconds = now - (parseTime(when) or 0.0)
    except ValueError:
        return when
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


def truncate(text: str, width: int) -> str:
    """Cut C{text} to C{width} characters, ending with an ellipsis if cut."""
    if len(text) <= width:
        return text
    return text[: width - 1] + "\N{HORIZONTAL ELLIPSIS}"


def _cell(value: Any) -> str:
    return "-" if value is None or value == "" else str(value)


def containerTable(containers: Sequence[dict[str, Any]], now: float) -> list[str]:
    """A C{docker ps}-like table: a header line, then one line per container."""
    rows = [list(TABLE_COLUMNS)]
    for c in containers:
        command = c.get("command") or []
        if isinstance(command, list):
            command = shlex.join(str(word) for word in command)
        rows.append([
            _cell(c.get("name")),
            _cell(c.get("state")),
            _cell(c.get("image")),
            '"' + truncate(str(command), COMMAND_WIDTH) + '"' if command else "-",
            _cell(c.get("pid")),
            _cell(c.get("exit_code")),
            ago(c.get("created"), now),
            _cell(c.get("restart_count", 0)),
        ])
    widths = [max(len(row[i]) for row in rows) for i in range(len(TABLE_COLUMNS))]
    return [
        "   ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
        for row in rows
    ]


def keyValues(value: dict[str, Any], indent: int = 0) -> list[str]:
    """C{key: value} lines, nested objects indented under their key."""
    lines = []
    pad = "  " * indent
    width = max((len(str(k)) for k in value), default=0) + 1
    for key, item in value.items():
        label = f"{key}:".ljust(width)
        if isinstance(item, dict) and item:
            lines.append(f"{pad}{key}:")
            lines.extend(keyValues(item, indent + 1))
        elif isinstance(item, list) and item and any(
            isinstance(x, (dict, list)) for x in item
        ):
            lines.append(f"{pad}{key}:")
            for x in item:
                lines.append(f"{pad}  - {scalar(x)}")
        else:
            lines.append(f"{pad}{label} {scalar(item)}")
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


def commandName(line: str) -> str:
    """The lower-cased command word of a request line (C{""} if none)."""
    try:
        words = shlex.split(line)
    except ValueError:
        words = line.split()
    return words[0].lower() if words else ""


def formatReply(command: str, value: Any, now: float) -> list[str]:
    """The lines to show a person for the C{OK} reply to C{command}."""
    if command in LIST_COMMANDS and isinstance(value, list):
        return containerTable(value, now)
    if command == "logs" and isinstance(value, list):
        return [formatLogLine(entry) for entry in value]
    if command == "wait" and isinstance(value, dict):
        return [formatWait(value)]
    if command == "rm" and isinstance(value, dict) and value.get("removed"):
        return [f"{value.get('name')} removed" + notSaved(value)]
    if command == "events" and isinstance(value, dict):
        if value.get("events"):
            return [f"Watching events (last id {value.get('last_id')})"]
        return ["Stopped watching events"]
    if command == "help":
        return formatHelp(value)
    if command == "stats" and isinstance(value, list):
        return statsTable(value)
    if isContainer(value) and command != "inspect":
        return [containerLine(value)]
    if isContainer(value):
        return keyValues(value)
    if isinstance(value, str):
        return value.splitlines() or [""]
    if isinstance(value, dict):
        return keyValues(value)
    if isinstance(value, list):
        return [scalar(item) for item in value]
    return [scalar(value)]


def containerLine(container: dict[str, Any]) -> str:
    """
    One line for a container that a command acted on (C{run}, C{stop}...):
    C{web  running  pid 4242}, C{web  exited  exit code -15}; C{inspect}
    shows every field.
    """
    parts = [str(container.get("name")), str(container.get("state"))]
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
        lines = [f"usage: {value['usage']}"]
        if value.get("summary"):
            lines.append(f"  {value['summary']}")
        if value.get("aliases"):
            lines.append(f"  aliases: {', '.join(value['aliases'])}")
        return lines
    if isinstance(value, str):
        return value.splitlines()
    if isinstance(value, list):
        return [scalar(item) for item in value]
    if isinstance(value, dict):
        return keyValues(value)
    return [scalar(value)]


def formatWait(value: dict[str, Any]) -> str:
    """C{web: exited, exit code 0}."""
    text = f"{value.get('name')}: {value.get('state')}"
    if value.get("exit_code") is not None:
        text += f", exit code {value['exit_code']}"
    return text


def formatLogLine(entry: Any) -> str:
    """The text of a log line (what the container wrote)."""
    if isinstance(entry, dict):
        return str(entry.get("line", ""))
    return str(entry)


def formatEvent(event: Any) -> str:
    """One line for an C{EVENT}: a container event, a log line, a log end."""
    if not isinstance(event, dict):
        return scalar(event)
    kind = event.get("type")
    if kind == "log":
        return f"{event.get('name')} | {event.get('line', '')}"
    if kind == "progress":
        return f"{event.get('name')}: {event.get('action')} {event.get('detail', '')}".rstrip()
    if kind == "log_end":
        return f"{event.get('name')}: end of logs"
    if kind == "container":
        text = (f"{event.get('time') or '-'}  #{event.get('id')}  "
                f"{event.get('name')}  {event.get('action')}")
        if event.get("exit_code") is not None:
            text += f" (exit code {event['exit_code']})"
        return text
    return json.dumps(event, ensure_ascii=False)


def formatError(error: BaseException) -> str:
    """C{Error: not_found: no such container: web}."""
    if isinstance(error, PycmError):
        return f"Error: {error.code}: {error.message}"
    return f"Error: {error}"


# -- Docker's --format -------------------------------------------------------


def _labels(container: dict[str, Any]) -> str:
    labels = container.get("labels") or {}
    if not isinstance(labels, dict):
        return scalar(labels)
    return ",".join(f"{key}={value}" for key, value in sorted(labels.items()))


def _command(container: dict[str, Any]) -> str:
    command = container.get("command") or []
    if isinstance(command, list):
        return shlex.join(str(word) for word in command)
    return str(command)


def _field(key: str) -> Any:
    def get(container: dict[str, Any]) -> str:
        value = container.get(key)
        return "" if value is None else scalar(value)

    return get


#: The fields a C{--format} template may name, as C{{{.Name}}}, and what
#: each shows of a container.
TEMPLATE_FIELDS: dict[str, Any] = {
    "Name": _field("name"),
    "ID": _field("id"),
    "State": _field("state"),
    "Image": _field("image"),
    "Command": _command,
    "Pid": _field("pid"),
    "ExitCode": _field("exit_code"),
    "Created": _field("created"),
    "Started": _field("started"),
    "Finished": _field("finished"),
    "Restarts": _field("restart_count"),
    "RestartPolicy": _field("restart_policy"),
    "Labels": _labels,
    "Backend": _field("backend"),
}

_PLACEHOLDER = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_FIELD_NAME = re.compile(r"\s*\.([A-Za-z]+)\s*")


class TemplateError(ValueError):
    """A C{--format} template names an unknown field, or is not a template."""


class Template:
    """
    A C{--format} template: text with C{{{.Field}}} placeholders (the
    fields of L{TEMPLATE_FIELDS}), C{\\t} and C{\\n} as in Docker's.  Only
    fields: no functions, no pipelines, nothing is executed.

    @ivar parts: literal text and field names, alternately (text first).
    """

    def __init__(self, parts: tuple[str, ...]) -> None:
        self.parts = parts

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Template) and other.parts == self.parts

    def __hash__(self) -> int:
        return hash(self.parts)

    def __repr__(self) -> str:
        return f"Template({self.parts!r})"

    @classmethod
    def parse(cls, text: str) -> Template:
        """@raise TemplateError: for an unknown field or anything but fields."""
        text = text.replace("\\t", "\t").replace("\\n", "\n")
        parts: list[str] = []
        position = 0
        for match in _PLACEHOLDER.finditer(text):
            parts.append(text[position:match.start()])
            field = _FIELD_NAME.fullmatch(match.group(1))
            if field is None:
                raise TemplateError(
                    f"bad --format {match.group(0)!r}: only fields like {{{{.Name}}}} "
                    "are supported; fields: " + ", ".join(TEMPLATE_FIELDS)
                )
            if field.group(1) not in TEMPLATE_FIELDS:
                raise TemplateError(
                    f"bad --format: no field {field.group(1)!r}; fields: "
                    + ", ".join(TEMPLATE_FIELDS)
                )
            parts.append(field.group(1))
            position = match.end()
        rest = text[position:]
        if "{{" in rest or "}}" in rest:
            raise TemplateError(f"bad --format {text!r}: an unclosed {{{{")
        parts.append(rest)
        return cls(tuple(parts))

    def render(self, container: dict[str, Any]) -> str:
        out = []
        for index, part in enumerate(self.parts):
            out.append(TEMPLATE_FIELDS[part](container) if index % 2 else part)
        return "".join(out)


def formatContainers(
    containers: Sequence[dict[str, Any]],
    quiet: bool = False,
    template: Template | None = None,
    jsonLines: bool = False,
) -> list[str] | None:
    """
    C{ps -q}, C{ps --format json} and C{ps --format TEMPLATE}: the lines,
    or None when none of them is asked for (the table then).
    """
    if jsonLines:
        return [json.dumps(c, ensure_ascii=False, separators=(",", ":"))
                for c in containers]
    if template is not None:
        return [template.render(c) for c in containers]
    if quiet:
        return [str(c.get("name")) for c in containers]
    return None


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
    """

    def __init__(self, names: tuple[str, ...], colour: bool = False) -> None:
        self.names = names
        self.colour = colour

    def prefix(self, name: str) -> str:
        if not self.names:
            return ""
        width = max(len(n) for n in self.names)
        text = f"{name.ljust(width)} | "
        if not self.colour:
            return text
        index = self.names.index(name) if name in self.names else 0
        code = PREFIX_COLOURS[index % len(PREFIX_COLOURS)]
        return f"\x1b[{code}m{text}\x1b[0m"


def formatLogEntry(
    entry: Any, name: str = "", prefixes: LogPrefixes | None = None,
    timestamps: bool = False,
) -> str:
    """A log line with, as asked, its container's prefix and its time."""
    text = formatLogLine(entry)
    if timestamps and isinstance(entry, dict) and entry.get("time"):
        text = f"{entry['time']} {text}"
    if prefixes is not None:
        text = prefixes.prefix(name) + text
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
