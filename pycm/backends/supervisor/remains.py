"""
What can still be read of a damaged container record, so that the run it
describes can be stopped although the record is put aside.

A record is quarantined when it cannot be loaded (bad JSON, a missing or
wrong field), but the process of its last run may still be running, left by
a daemon that died.  L{salvage} reads what identifies that run -- the run
id (the C{PYCM_RUN_ID} marker), the pid and its start time, the container's
id (its cgroup's name) -- from the parsed record when it parses, else from
the raw text with patterns that only accept a field written once, as a JSON
key of the right type.  Whatever is unsure is left out: a pid is only ever
used with its start time, a run id and a container id only as the markers
they are.
"""

from __future__ import annotations

import json
import re
from typing import Any

import attrs

from pycm.model import DEFAULT_STOP_SIGNAL, DEFAULT_STOP_TIMEOUT


def _keyed(key: str) -> str:
    """A pattern of C{key} as a key of the record's object, up to its value."""
    return r'(?:^|[{,])\s*"' + key + r'"\s*:\s*'


#: The shape of the string fields L{salvage} reads.
_STRINGS = {"id": "[0-9a-f]{12,64}", "runId": "[0-9a-f]{32}", "stopSignal": "[A-Z0-9+-]{1,16}"}

#: The raw-text patterns of the fields L{salvage} reads.
_PATTERNS = {
    **{key: f'"({shape})"' for key, shape in _STRINGS.items()},
    "pid": r"([1-9][0-9]{0,9})\s*[,}]",
    "startTime": r'(\[\s*"[0-9a-f-]{1,64}"\s*,\s*[0-9]{1,20}\s*\]|[0-9]{1,20}\s*[,}])',
    "stopTimeout": r"([0-9]{1,9}(?:\.[0-9]{1,9})?)\s*[,}]",
}


@attrs.frozen
class Remains:
    """What identifies the last run of a quarantined record (None: unknown)."""

    name: str
    id: str | None = None
    runId: str | None = None
    pid: int | None = None
    startTime: Any = None
    stopSignal: str = DEFAULT_STOP_SIGNAL
    stopTimeout: float = DEFAULT_STOP_TIMEOUT

    @property
    def traceable(self) -> bool:
        """Whether anything of its run can be found (a run id, a container id)."""
        return self.runId is not None or self.id is not None


def _fromDict(name: str, data: dict[str, Any]) -> Remains:
    """The fields of a parsed record that have the right type and shape."""
    fields: dict[str, Any] = {}
    for key in _PATTERNS:
        value = data.get(key)
        if isinstance(value, bool) or value is None:
            continue
        if key in ("pid", "stopTimeout"):
            if isinstance(value, (int, float)) and value > 0:
                fields[key] = int(value) if key == "pid" else float(value)
            continue
        if key == "startTime":
            if isinstance(value, int) or (
                isinstance(value, list)
                and len(value) == 2
                and isinstance(value[0], str)
                and isinstance(value[1], int)
                and not isinstance(value[1], bool)
            ):
                fields[key] = value
            continue
        if isinstance(value, str) and re.fullmatch(_STRINGS[key], value) is not None:
            fields[key] = value
    return Remains(name=name, **fields)


def _fromText(name: str, text: str) -> Remains:
    """The fields found once, in their place and shape, in unparsable text."""
    fields: dict[str, Any] = {}
    for key, pattern in _PATTERNS.items():
        found = re.findall(_keyed(key) + pattern, text)
        if len(found) != 1:
            continue  # missing, or written twice: unsure
        value = found[0].rstrip(",} \t\r\n")
        if key in ("pid",):
            fields[key] = int(value)
        elif key == "stopTimeout":
            fields[key] = float(value)
        elif key == "startTime":
            fields[key] = json.loads(value)
        else:
            fields[key] = value
    return Remains(name=name, **fields)


def quarantineName(data: dict[str, Any]) -> str:
    """
    The name a damaged record C{data} is put aside under: its own, or for
    one that has none, C{<no name, id ID>} (C{<no name, no id>} without a
    readable id).  Never a container's name, so a served record is never
    put aside in its place (a record missing its name was put aside as
    C{None}, the name a container may have).  The stores put such a record
    aside themselves, by its key (L{pycm.store.nameProblem}):
    this is for one that would not.
    """
    name = data.get("name")
    if isinstance(name, str):
        return name
    found = data.get("id")
    if isinstance(found, str) and re.fullmatch(_STRINGS["id"], found) is not None:
        return f"<no name, id {found}>"
    return "<no name, no id>"


def salvage(name: str, raw: bytes | str | dict[str, Any]) -> Remains:
    """
    What identifies the last run of the damaged record C{raw} of C{name}:
    read from the record when it parses as a JSON object, else found in
    its text.
    """
    data: object = raw
    if not isinstance(raw, dict):
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        try:
            data = json.loads(text)
        except ValueError:
            return _fromText(name, text)
    if not isinstance(data, dict):
        return Remains(name=name)
    return _fromDict(name, data)
