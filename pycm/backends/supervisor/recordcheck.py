"""
The checks a saved container record must pass to be loaded: each field of
the right type and in range, so that a record damaged on disk (by hand, a
bad restore, a bug of another version) is put aside when it is read, never
found later by whatever uses the field (the log's scrubbing, a stop, a
C{list}) with an error that names neither the record nor the field.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from pycm.errors import PycmError
from pycm.health import HealthCheck
from pycm.model import RestartPolicy, State, parseSignal

#: The latest time a record may hold (the year 10000): later ones cannot
#: be written as RFC 3339.
MAX_TIME = 253_402_300_800.0
#: The largest integer a record may hold (pids, counts, exit codes, bytes).
MAX_INTEGER = 2**63 - 1


class BadField(ValueError):
    """A field of a record has the wrong type or is out of range."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"field {field!r} {problem}")
        self.field = field


def _isNumber(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _isInteger(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _string(value: object) -> str | None:
    return None if isinstance(value, str) else "is not a string"


def _nonEmptyString(value: object) -> str | None:
    if not isinstance(value, str):
        return "is not a string"
    return None if value else "is empty"


def _words(value: object) -> str | None:
    if not isinstance(value, list) or not all(isinstance(word, str) for word in value):
        return "is not a list of strings"
    return None


def _strings(value: object) -> str | None:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        return "is not an object of strings"
    return None


def _time(value: object) -> str | None:
    if not _isNumber(value) or not 0 <= value <= MAX_TIME:  # type: ignore[operator]
        return "is not a time"
    return None


def _seconds(value: object) -> str | None:
    if not _isNumber(value) or not 0 <= value < math.inf:  # type: ignore[operator]
        return "is not a number of seconds"
    return None


def _count(value: object) -> str | None:
    if not _isInteger(value) or not 0 <= value <= MAX_INTEGER:  # type: ignore[operator]
        return "is not a count"
    return None


def _positive(value: object) -> str | None:
    if not _isInteger(value) or not 0 < value <= MAX_INTEGER:  # type: ignore[operator]
        return "is not a positive integer"
    return None


def _cpus(value: object) -> str | None:
    if not _isNumber(value) or not 0 < value < math.inf:  # type: ignore[operator]
        return "is not a positive number"
    return None


def _exitCode(value: object) -> str | None:
    if not _isInteger(value) or not -MAX_INTEGER <= value <= MAX_INTEGER:  # type: ignore[operator]
        return "is not an exit code"
    return None


def _boolean(value: object) -> str | None:
    return None if isinstance(value, bool) else "is not true or false"


def _state(value: object) -> str | None:
    return None if value in State.ALL else "is not a state"


def _signal(value: object) -> str | None:
    if not isinstance(value, str):
        return "is not a string"
    try:
        parseSignal(value)
    except PycmError:
        return "is not a signal"
    return None


def _restartPolicy(value: object) -> str | None:
    if not isinstance(value, str):
        return "is not a string"
    try:
        RestartPolicy.parse(value)
    except PycmError:
        return "is not a restart policy"
    return None


def _startTime(value: object) -> str | None:
    # A runtime's own token: a number, or [BOOT_ID, TICKS] for processes.
    if _isInteger(value) or isinstance(value, str):
        return None
    if isinstance(value, list) and all(
        isinstance(part, str) or _isInteger(part) for part in value
    ):
        return None
    return "is not a start time"


def _healthcheck(value: object) -> str | None:
    try:
        HealthCheck.fromJSON(value)
    except ValueError:
        return "is not a health check"
    return None


def _optional(check: Callable[[object], str | None]) -> Callable[[object], str | None]:
    def optional(value: object) -> str | None:
        return None if value is None else check(value)

    return optional


#: Every field a record must have, and its check.
REQUIRED: dict[str, Callable[[object], str | None]] = {
    "name": _nonEmptyString,
    "id": _nonEmptyString,
    "image": _string,
    "command": _words,
    "created": _time,
    "restartPolicy": _restartPolicy,
}

#: The fields a record may leave out, and their checks.
OPTIONAL: dict[str, Callable[[object], str | None]] = {
    "backend": _string,
    "state": _state,
    "pid": _optional(_positive),
    "exitCode": _optional(_exitCode),
    "started": _optional(_time),
    "finished": _optional(_time),
    "restartCount": _count,
    "labels": _strings,
    "env": _strings,
    "stopTimeout": _seconds,
    "stopSignal": _signal,
    "memory": _optional(_positive),
    "cpus": _optional(_cpus),
    "workdir": _optional(_string),
    "error": _optional(_string),
    "manuallyStopped": _boolean,
    "interrupted": _boolean,
    "oomKilled": _boolean,
    "backoff": _seconds,
    "startTime": _optional(_startTime),
    "runId": _optional(_nonEmptyString),
    "healthcheck": _optional(_healthcheck),
    "user": _optional(_nonEmptyString),
}


def checkRecord(data: dict[str, Any]) -> None:
    """
    Check every field of the saved record C{data}.

    @raise BadField: naming the first field that is missing, of the wrong
        type or out of range.
    """
    for field, check in REQUIRED.items():
        if field not in data:
            raise BadField(field, "is missing")
        problem = check(data[field])
        if problem is not None:
            raise BadField(field, problem)
    for field, check in OPTIONAL.items():
        if field in data:
            problem = check(data[field])
            if problem is not None:
                raise BadField(field, problem)
