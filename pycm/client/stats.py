"""
C{pycm stats}: the C{stats} reply as C{docker stats} shows it, once
(C{--no-stream}, an ordinary request) or every second (L{streamStats}).
Sizes are Docker's: memory in binary units (C{MiB}), block I/O in decimal
ones (C{MB}); a figure the daemon does not know is C{--}.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TextIO

from pycm.errors import PycmError

if TYPE_CHECKING:  # The tables are used by the reactor-free one-shot path too.
    from twisted.internet.defer import Deferred
    from twisted.internet.interfaces import IReactorTime

    from pycm.client.protocol import ClientProtocol

#: What C{pycm top --help} prints (top is the client's, not the daemon's).
TOP_USAGE = [
    "usage: pycm top",
    "",
    "A full-screen live view of the containers (a terminal is needed): state,",
    "health, restarts, CPU and memory with a bar and a sparkline of the last",
    "minute, the latest events at the bottom; refreshed every second.",
    "",
    "keys: Up/Down or k/j select   c, m, n sort by CPU, memory, name",
    "      / filter by name (Enter applies, empty shows all)",
    "      s stop, r restart, d remove (rm --force) the selected one (y/n)",
    "      q or Ctrl-C quit",
]

#: Seconds between two tables of C{pycm stats}.
REFRESH = 1.0
HEADER = ("NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "PIDS", "BLOCK I/O")
UNKNOWN = "--"
# Cursor home, then the table with each line's end erased, then the rest.
_HOME, _ERASE_LINE, _ERASE_BELOW, _CLEAR = "\x1b[H", "\x1b[K", "\x1b[J", "\x1b[2J"


def _scaled(value: float, base: int, units: Sequence[str]) -> str:
    for unit in units[:-1]:
        if abs(value) < base:
            return f"{value:.4g}{unit}"
        value /= base
    return f"{value:.4g}{units[-1]}"


def binarySize(value: int | None) -> str:
    """C{1.5MiB}, as docker shows memory."""
    if value is None:
        return UNKNOWN
    return _scaled(float(value), 1024, ("B", "KiB", "MiB", "GiB", "TiB"))


def decimalSize(value: int | None) -> str:
    """C{4.1kB}, as docker shows block I/O."""
    if value is None:
        return UNKNOWN
    return _scaled(float(value), 1000, ("B", "kB", "MB", "GB", "TB"))


def percent(value: float | None) -> str:
    return UNKNOWN if value is None else f"{value:.2f}%"


def memoryPercent(row: dict[str, Any]) -> float | None:
    """The memory in use as a percentage of the limit, if both are known."""
    memory, limit = row.get("memory"), row.get("memory_limit")
    if not isinstance(memory, int) or not isinstance(limit, int) or limit <= 0:
        return None
    return 100.0 * memory / limit


def statsRow(row: dict[str, Any]) -> tuple[str, ...]:
    """The cells of one container."""
    pids = row.get("pids")
    return (
        str(row.get("name", "")),
        percent(row.get("cpu_percent")),
        f"{binarySize(row.get('memory'))} / {binarySize(row.get('memory_limit'))}",
        percent(memoryPercent(row)),
        UNKNOWN if pids is None else str(pids),
        f"{decimalSize(row.get('read_bytes'))} / {decimalSize(row.get('write_bytes'))}",
    )


def statsTable(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The table of a C{stats} reply, columns aligned, a header first."""
    cells = [HEADER, *(statsRow(row) for row in rows if isinstance(row, dict))]
    widths = [max(len(line[i]) for line in cells) for i in range(len(HEADER))]
    return ["   ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in cells]


def wantsStream(words: Sequence[str]) -> bool:
    """Is C{pycm stats ...} the streaming kind (no C{--no-stream})?"""
    return "--no-stream" not in words[1:]


def liveCommand(words: Sequence[str]) -> str | None:
    """
    C{"top"} or C{"stats"} when the command line asks for a live view that
    runs in the reactor until Ctrl-C (C{pycm top}, C{pycm stats} without
    C{--no-stream}), else None: a one-shot request like any other (so is
    C{COMMAND --help}, which is C{help COMMAND}).
    """
    if not words:
        return None
    word = words[0].lower()
    if any(arg in ("--help", "-h") for arg in words[1:] if arg != "--"):
        return None
    if word == "top" or (word == "stats" and wantsStream(words)):
        return word
    return None


async def streamStats(
    clock: IReactorTime,
    client: ClientProtocol,
    words: Sequence[str],
    out: TextIO,
    err: TextIO,
    terminal: bool,
    asJSON: bool = False,
    interrupted: Sequence[bool] = (),
) -> int:
    """
    Ask C{stats} every L{REFRESH} seconds and print each reply until
    Ctrl-C (which closes the connection and fills C{interrupted}: 0), the
    reader goes away (0), the daemon refuses (1; 2 for a malformed request,
    L{pycm.client.wire.isUsageError}) or is lost (3).  On a
    terminal the table is redrawn in place; piped, each table is printed
    after the last, with a blank line between.
    """
    from twisted.internet.defer import Deferred

    from pycm.client.protocol import Disconnected
    from pycm.client.wire import isUsageError

    line = shlex.join(["stats", *words[1:]])
    first = True
    pause: list[Deferred[None]] = []

    def wake(_: object) -> None:
        if pause and not pause[0].called:
            pause[0].callback(None)

    client.whenDisconnected().addCallback(wake)
    while client.connected:
        try:
            rows = await client.request(line)
        except PycmError as e:
            if asJSON:
                err.write(json.dumps({"error": e.code, "message": e.message},
                                     ensure_ascii=False) + "\n")
            else:
                err.write(f"Error: {e.code}: {e.message}\n")
            err.flush()
            client.disconnect()
            return 2 if isUsageError(e) else 1
        except Disconnected:
            break
        if asJSON:
            text = json.dumps(rows, ensure_ascii=False) + "\n"
        elif terminal:
            table = statsTable(rows)
            text = (_CLEAR if first else "") + _HOME
            text += "".join(row + _ERASE_LINE + "\n" for row in table) + _ERASE_BELOW
        else:
            text = ("" if first else "\n") + "\n".join(statsTable(rows)) + "\n"
        try:
            out.write(text)
            out.flush()
        except BrokenPipeError:  # `pycm stats | head`
            client.disconnect()
            return 0
        first = False
        pause[:] = [Deferred()]
        call = clock.callLater(REFRESH, wake, None)
        await pause[0]
        if call.active():
            call.cancel()
    if interrupted:
        return 0
    err.write("Error: lost the connection to the pycm daemon\n")
    err.flush()
    return 3
