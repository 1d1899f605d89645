"""
How much of a log one C{logs} reply may carry, said once: the limit, the
error of a request over it (with the C{--tail} that fits), and how a
client reads that error.  The daemon's encoder, the backends that bound
their reads by it and the client all use these.
"""

from __future__ import annotations

import re

from pycm.errors import BadRequest

#: The most bytes of log lines one reply may carry, as JSON (clients must
#: hold a reply line in memory; pycm's client takes up to 16 MiB).
REPLY_BYTES = 8 * 2**20

#: The words of L{overReply}: the lines asked for, the MiB, the lines that fit.
OVER_REPLY = re.compile(
    r"the last (\d+) lines are over the (\d+) MiB a reply may carry; "
    r"the last (\d+) fit: use --tail=\d+$"
)


def overReply(asked: int, fit: int, budget: int = REPLY_BYTES) -> BadRequest:
    """The error of a C{logs} of C{asked} lines, of which the newest C{fit} fit in a reply."""
    return BadRequest(
        f"the last {asked} lines are over the {budget // 2**20} MiB a reply may carry; "
        f"the last {fit} fit: use --tail={fit}"
    )
