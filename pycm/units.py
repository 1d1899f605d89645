"""
Sizes and durations as people write them, each in one grammar for every
option that takes one: sizes (C{512m}, C{1.5g}, C{10MiB}) for C{--memory}
(at least L{MIN_MEMORY}) and the backends' C{log-max-size}; durations (C{500ms}, C{10s}, C{1m},
C{1h30m}) for C{logs --since} and the C{--health-*} options.
"""

from __future__ import annotations

import re

from pycm.errors import BadRequest

#: The longest stop timeout a client may ask for (C{--stop-timeout}, C{stop
#: -t}): an hour.  (The daemon's own shutdown is bounded apart from it.)
MAX_STOP_TIMEOUT = 3600.0

_SIZE = re.compile(r"([0-9]{1,15})(?:\.([0-9]{1,9}))?\s*([kmgt]?)(?:i?b)?")
_FACTORS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


#: The largest size: what a record (a 64-bit integer) and the kernel hold.
MAX_SIZE = 2**63 - 1


def parseSize(text: str) -> int:
    """
    Bytes from C{1048576}, C{512k}, C{10m}, C{1.5g}, C{10MiB} or C{64kb}
    (units are powers of 1024, as Docker's C{--memory} reads them).

    @raise BadRequest: for anything else, or a size under one byte.
    """
    match = _SIZE.fullmatch(text.strip().lower())
    if match is None:
        raise BadRequest(f"bad size {text!r}: expected bytes, or a number with k, m, g or t")
    whole, fraction, unit = match.groups()
    factor = _FACTORS[unit]
    size = int(whole) * factor
    if fraction:
        size += int(fraction) * factor // 10 ** len(fraction)
    if size <= 0:
        raise BadRequest(f"bad size {text!r}: it must be positive")
    if size > MAX_SIZE:
        raise BadRequest(f"bad size {text!r}: it must be at most 8388607t (2**63 - 1 bytes)")
    return size


#: The smallest C{--memory} accepted: Docker's floor, 6 MiB.  A smaller limit
#: cannot hold even a shell (the kernel's OOM killer ends it at once).
MIN_MEMORY = 6 * 1024**2


def checkMemory(size: int, given: object, what: str = "--memory") -> int:
    """
    C{size} (bytes, as C{given}) if it is a memory limit of at least
    L{MIN_MEMORY}.

    @param what: the option or key it came from, for the error.
    @raise BadRequest: naming C{what} and the floor.
    """
    if size < MIN_MEMORY:
        raise BadRequest(
            f"bad {what} {given!r}: it must be at least 6m (6 MiB), the smallest memory"
            " limit (as Docker's)"
        )
    if size > MAX_SIZE:
        raise BadRequest(f"bad {what} {given!r}: it must be at most 2**63 - 1 bytes")
    return size


def parseMemory(text: str, what: str = "--memory") -> int:
    """
    A memory limit: a size (L{parseSize}) of at least L{MIN_MEMORY}.

    @raise BadRequest: for a bad size, or one under the floor.
    """
    return checkMemory(parseSize(text), text, what)


_DURATION_PART = re.compile(r"([0-9]{1,9}(?:\.[0-9]{1,9})?)(ms|s|m|h)")
_DURATION = re.compile(r"(?:[0-9]{1,9}(?:\.[0-9]{1,9})?(?:ms|s|m|h))+")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def isDuration(text: str) -> bool:
    """True if C{text} is written as a duration (C{1h30m}, C{500ms})."""
    return _DURATION.fullmatch(text) is not None


def parseDuration(text: str, what: str = "duration") -> float:
    """
    Seconds from C{500ms}, C{10s}, C{1m}, C{1h30m} or C{1.5h} (parts add
    up), or from a bare number of seconds (C{30}, C{2.5}).

    @param what: the option it came from, for the error (C{health-interval}).
    @raise BadRequest: for anything else.
    """
    text = text.strip()
    if _DURATION.fullmatch(text):
        return sum(
            float(number) * _DURATION_UNITS[unit]
            for number, unit in _DURATION_PART.findall(text)
        )
    if re.fullmatch(r"[0-9]{1,9}(?:\.[0-9]{1,9})?", text):
        return float(text)
    raise BadRequest(
        f"bad --{what} {text!r}: expected a duration such as 500ms, 10s, 1m or 1h30m"
    )


def formatDuration(seconds: float) -> str:
    """The shortest of C{500ms}, C{10s}, C{1m30s}, C{1h30m} for C{seconds}."""
    if seconds < 1 and seconds != 0:
        return f"{round(seconds * 1000)}ms"
    whole = int(seconds)
    if whole != seconds:
        return f"{seconds:g}s"
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    text = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "")
    return text + (f"{secs}s" if secs or not text else "")
