"""
A child's start time read from the boot clock around its spawn, not from
C{/proc/PID/stat}.

Linux gives a process's start time (field 22 of C{/proc/PID/stat}) as its
C{CLOCK_BOOTTIME} when it was created, in clock ticks: the nanoseconds over
1e9 / C{SC_CLK_TCK}, rounded down.  A child created between two readings of
that clock started at or after the first and at or before the second, so if
both fall in one tick, so does its start.

Why not read C{/proc/PID/stat}: just after C{posix_spawn} returns, the
child is still inside C{execve}, closing every descriptor it got from the
daemon, and the read waits (spinning on a kernel lock) until that is done.
The daemon holds three descriptors for each running container, so with
2,000 running that wait was about 1 ms of daemon CPU a start.

Either reading within L{MARGIN} of a tick's edge counts as the other tick
too, so a clock read a little early or late cannot give a wrong tick; the
caller then reads C{/proc} (about one spawn in fifteen).
"""

from __future__ import annotations

import os
import time

#: Nanoseconds in one clock tick (the unit of the start time in /proc).
TICK_NS = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
#: How near a tick's edge a reading may be and still count (nanoseconds).
MARGIN = 100_000

_BOOTTIME = getattr(time, "CLOCK_BOOTTIME", None)


def bootNanoseconds() -> int | None:
    """C{CLOCK_BOOTTIME} now, or None where the system has no such clock."""
    if _BOOTTIME is None:
        return None
    try:
        return time.clock_gettime_ns(_BOOTTIME)
    except OSError:
        return None


def tickBetween(before: int | None, after: int | None) -> int | None:
    """
    The start time, in clock ticks, of a process created between two
    readings of L{bootNanoseconds}; None unless both readings, widened by
    L{MARGIN}, fall in one tick.
    """
    if before is None or after is None or after < before:
        return None
    first = (before - MARGIN) // TICK_NS
    if first != (after + MARGIN) // TICK_NS:
        return None
    return first
