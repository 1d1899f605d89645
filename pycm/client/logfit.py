"""
A C{logs} the daemon refused as over what one reply may carry
(C{bad_request the last N lines are over the 8 MiB a reply may carry; the
last M fit: use --tail=M}, docs/protocol.md): the one-shot client asks
again for the newest M lines, and says on stderr that the older ones are
not shown, as a log viewer shows what it can rather than nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

from pycm.client.plan import VALUE_OPTIONS
from pycm.errors import PycmError
from pycm.grammar import spelling, splitOptions
from pycm.logreply import OVER_REPLY


def fittingLogs(words: Sequence[str], error: PycmError) -> tuple[tuple[str, ...], str] | None:
    """
    For a C{logs} request C{words} refused with C{error} as over what a
    reply may carry: the same request with the C{--tail} that fits, and
    the notice to show; None for any other request or error, or when not
    one line fits.
    """
    if not words or words[0].lower() != "logs" or error.code != "bad_request":
        return None
    over = OVER_REPLY.search(error.message)
    if over is None or int(over[3]) == 0:
        return None
    asked, mib, fit = int(over[1]), over[2], int(over[3])
    options, names = splitOptions(words[1:], VALUE_OPTIONS["logs"])
    kept: list[str] = []
    index = 0
    while index < len(options):
        word = spelling(options[index])
        if word in ("--tail", "-n"):
            index += 2
            continue
        if not word.startswith("--tail="):
            kept.append(options[index])
        index += 1
    end = ["--"] if kept[-1:] == ["--"] else []
    retry = (words[0], *kept[: len(kept) - len(end)], f"--tail={fit}", *end, *names)
    name = names[-1] if names else "logs"
    notice = (f"pycm: {name}: the last {fit} lines only: the {asked} asked for are over "
              f"the {mib} MiB a reply may carry")
    return retry, notice
