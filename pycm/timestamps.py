"""
RFC 3339 times on the wire, to and from POSIX seconds.

Standard library only: the one-shot client formats times without loading
attrs or Twisted (see L{pycm.client.oneshot}).
"""

from __future__ import annotations

import functools
import re
import time


def formatTime(seconds: float | None) -> str | None:
    """Format POSIX seconds as RFC 3339 UTC with milliseconds, or None."""
    if seconds is None:
        return None
    return _formatTime(seconds)


@functools.lru_cache(maxsize=8192)
def _formatTime(seconds: float) -> str:
    # Cached: a list of 1,000 containers formats the same few thousand
    # times again and again, and strftime is most of a list's cost.
    whole = int(seconds // 1)
    millis = int((seconds - whole) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{millis:03d}Z"


#: The form engines give (UTC, C{Z}, up to nanoseconds): read by
#: L{parseTime} without datetime (a swarm list reads four a service).
_UTC_TIME = re.compile(r"(\d{4}-\d\d-\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?Z\Z", re.ASCII)
#: C{date(1970, 1, 1).toordinal()}.
_EPOCH_ORDINAL = 719163


@functools.lru_cache(maxsize=256)
def _dayStart(day: str) -> int:
    """POSIX seconds at the start of C{day} (C{YYYY-MM-DD}, UTC)."""
    from datetime import date

    return (date.fromisoformat(day).toordinal() - _EPOCH_ORDINAL) * 86400


def parseTime(text: str | None) -> float | None:
    """The inverse of L{formatTime} (also accepts other RFC 3339 forms)."""
    if text is None:
        return None
    match = _UTC_TIME.match(text)
    if match is not None:
        day, hours, minutes, seconds, fraction = match.groups()
        if int(hours) < 24 and int(minutes) < 60 and int(seconds) < 60:
            # As datetime's timestamp(): whole microseconds over 10**6.
            whole = _dayStart(day) + int(hours) * 3600 + int(minutes) * 60 + int(seconds)
            micros = int(fraction[:6].ljust(6, "0")) if fraction else 0
            return (whole * 1_000_000 + micros) / 1_000_000
        # Out of range: the general parser says why.
    return _parseAny(text)


def _parseAny(text: str) -> float:
    """Any RFC 3339 form datetime reads (L{parseTime} without its fast path)."""
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    from datetime import datetime  # not needed to format: imported when used

    # Engines may give nanoseconds; datetime takes at most microseconds.
    text = re.sub(r"(\.\d{6})\d+", r"\1", text)
    return datetime.fromisoformat(text).timestamp()
