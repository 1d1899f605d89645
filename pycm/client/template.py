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

