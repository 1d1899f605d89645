"""
Docker's C{--format} for C{pycm ps}: a L{Template} of C{{{.Field}}}
placeholders (L{TEMPLATE_FIELDS}), and L{formatContainers}, which gives the
lines of C{ps -q}, C{ps --format json} and C{ps --format TEMPLATE}.

Every function returns text; none prints.  (Imported by the one-shot
client, which must stay quick to start: no Twisted, no attrs.)
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Sequence
from typing import Any

from pycm.client import services
from pycm.client.format import scalar
from pycm.client.health import healthStatus, stateText
from pycm.printable import printable


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
    "Status": stateText,
    "Health": lambda container: healthStatus(container) or "",
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
    "Replicas": lambda container: services.replicasText(container) or "",
}

_PLACEHOLDER = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_FIELD_NAME = re.compile(r"\s*\.([A-Za-z]+)\s*")


class TemplateError(ValueError):
    """A C{--format} template names an unknown field, or is not a template."""


class Template:
    """
    A C{--format} template: text with C{{{.Field}}} placeholders (the
    fields of L{TEMPLATE_FIELDS}), C{\\t} and C{\\n} as in Docker's.  Only
    fields: no functions, no pipelines, nothing is executed.  As Docker's
    does, C{table TEMPLATE} prints a header line first and aligns the
    columns its tabs separate; the header is each field's own name in
    capitals (C{ID}, where Docker says C{CONTAINER ID}).  Each field's
    value is L{printable}, as a table's cells are, on a terminal or not:
    a label or a command the daemon sent cannot act on a terminal, nor
    add a line or a column.

    @ivar parts: literal text and field names, alternately (text first).
    @ivar table: whether it is a C{table} template.
    """

    def __init__(self, parts: tuple[str, ...], table: bool = False) -> None:
        self.parts = parts
        self.table = table

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Template) and other.parts == self.parts
                and other.table == self.table)

    def __hash__(self) -> int:
        return hash((self.parts, self.table))

    def __repr__(self) -> str:
        return f"Template({self.parts!r}, table={self.table!r})"

    @classmethod
    def parse(cls, text: str) -> Template:
        """@raise TemplateError: for an unknown field or anything but fields."""
        table = isTableFormat(text)
        if table:
            text = text.lstrip()[len("table"):].lstrip(" \t")
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
        return cls(tuple(parts), table)

    def render(self, container: dict[str, Any]) -> str:
        out = []
        for index, part in enumerate(self.parts):
            out.append(printable(TEMPLATE_FIELDS[part](container)) if index % 2 else part)
        return "".join(out)

    def header(self) -> str:
        """The header line of a C{table} template: each field's name in capitals."""
        return "".join(part.upper() if index % 2 else part
                       for index, part in enumerate(self.parts))


def isTableFormat(text: str) -> bool:
    """Whether C{--format TEXT} is Docker's C{table} or C{table TEMPLATE}."""
    word = text.lstrip()
    return word[:5].lower() == "table" and (len(word) == 5 or word[5] in " \t")


def alignColumns(lines: Sequence[str]) -> list[str]:
    """
    The tab-separated columns of C{lines} padded to a common width, three
    spaces apart, as Docker's tables are (the last column is not padded).
    """
    rows = [line.split("\t") for line in lines]
    widths: list[int] = []
    for row in rows:
        for column, cell in enumerate(row[:-1]):
            if column == len(widths):
                widths.append(0)
            widths[column] = max(widths[column], len(cell))
    return ["".join(cell.ljust(widths[column] + 3) for column, cell in enumerate(row[:-1]))
            + row[-1] for row in rows]


def formatContainers(
    containers: Sequence[dict[str, Any]],
    quiet: bool = False,
    template: Template | None = None,
    jsonLines: bool = False,
) -> list[str] | None:
    """
    C{ps -q}, C{ps --format json} and C{ps --format TEMPLATE}: the lines,
    or None when none of them is asked for (the table then); L{printable}
    but for the JSON, escaped already.
    """
    if jsonLines:
        return [json.dumps(c, ensure_ascii=False, separators=(",", ":"))
                for c in containers]
    if template is not None and template.table:
        return alignColumns([template.header(), *(template.render(c) for c in containers)])
    if template is not None:
        return [template.render(c) for c in containers]
    if quiet:
        return [printable(str(c.get("name"))) for c in containers]
    return None

