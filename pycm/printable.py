"""
Text made safe to show on a terminal (L{printable}): what the daemon sent,
and what a services file or an env file holds, quoted in an error.

The standard library only: the one-shot client imports it.
"""

from __future__ import annotations

import re

#: C0 controls, DEL and C1 controls: what a terminal would act on rather
#: than show (an escape sequence, a line break, a carriage return).
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f]")
_NAMED_CONTROLS = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _escaped(match: re.Match[str]) -> str:
    character = match.group()
    return _NAMED_CONTROLS.get(character) or f"\\x{ord(character):02x}"


def printable(text: str) -> str:
    """
    C{text} with each control character written out, as C{ls -b} and
    C{systemctl} show them: C{\\n}, C{\\t}, C{\\r}, else C{\\xNN}
    (C{\\x1b} for ESC), so that what the daemon sent cannot move the
    cursor, clear the screen or start a line of its own.
    """
    if _CONTROLS.search(text) is None:
        return text
    return _CONTROLS.sub(_escaped, text)
