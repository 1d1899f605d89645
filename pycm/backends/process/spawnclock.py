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
from collections.abc import Callable

_CLK_TCK = os.sysconf("SC_CLK_TCK")
#: Nanoseconds in one clock tick (the unit of the start time in /proc).
TICK_NS = 1_000_000_000 // _CLK_TCK
#: How near a tick's edge a reading may be and still count (nanoseconds):
#: both readings and the kernel's use one clock, so this is only caution.
MARGIN = 100_000

#: The boot clock, unless this system has none or its ticks do not divide
#: a second (the kernel then rounds otherwise: /proc is read instead).
_BOOTTIME = getattr(time, "CLOCK_BOOTTIME", None) if 1_000_000_000 % _CLK_TCK == 0 else None


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


def timedSpawn(spawn: Callable[[], int]) -> tuple[int, int | None]:
    """
    Call C{spawn} (a C{posix_spawn}: it returns the child's pid) between two
    readings of the boot clock: the pid, and the child's start time in
    clock ticks if the readings tell it (L{tickBetween}).
    """
    before = bootNanoseconds()
    pid = spawn()
    return pid, tickBetween(before, bootNanoseconds())
