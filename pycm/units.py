"""
Sizes as people write them (C{512m}, C{1.5g}, C{10MiB}), in one grammar
for every option that takes one: C{--memory} on a request line and the
backends' C{log-max-size}.
"""

from __future__ import annotations

import re

from pycm.errors import BadRequest

_SIZE = re.compile(r"([0-9]{1,15})(?:\.([0-9]{1,9}))?\s*([kmgt]?)(?:i?b)?")
_FACTORS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


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
    return size
