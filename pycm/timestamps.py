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


def parseTime(text: str | None) -> float | None:
    """The inverse of L{formatTime} (also accepts other RFC 3339 forms)."""
    if text is None:
        return None
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    from datetime import datetime  # not needed to format: imported when used

    # Engines may give nanoseconds; datetime takes at most microseconds.
    text = re.sub(r"(\.\d{6})\d+", r"\1", text)
    return datetime.fromisoformat(text).timestamp()
