"""
The JSON of the wire, in one place: compact, UTF-8, non-ASCII kept as is
(L{encodeJSON}, L{encodeJSONBytes}); and a JSON array whose items are
already encoded (L{EncodedArray}), which a reply splices in as it is,
whole or a piece at a time.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

#: Compact JSON, non-ASCII kept as is: the text of every reply value.
encodeJSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode

#: The most bytes of an array's line one piece holds (unless one item is
#: longer): what a TCP transport sends in one go (Twisted's C{SEND_LIMIT}).
PIECE_BYTES = 128 * 1024


def encodeJSONBytes(value: Any) -> bytes:
    """L{encodeJSON} as the bytes on the wire (a lone surrogate replaced)."""
    return encodeJSON(value).encode("utf-8", "replace")


class EncodedArray:
    """
    A JSON array of values encoded already (each with L{encodeJSONBytes}):
    a handler's result that the reply joins instead of encoding again.
    """

    __slots__ = ("items", "_line", "_pieces")

    def __init__(self, items: Sequence[bytes]) -> None:
        self.items = items
        #: The last line made (prefix, suffix, line): a list asked again
        #: with nothing changed is sent as it is.
        self._line: tuple[bytes, bytes, bytes] | None = None
        #: The pieces made so far of one line (prefix, suffix, the pieces,
        #: the index of the first item not in them): see L{piece}.
        self._pieces: tuple[bytes, bytes, list[bytes], list[int]] | None = None

    def encode(self) -> bytes:
        """The array's JSON, as L{encodeJSONBytes} of its values would give."""
        return self.line(b"", b"")

    def line(self, prefix: bytes, suffix: bytes) -> bytes:
        """
        C{prefix}, the array's JSON and C{suffix}, copied once: a reply of
        thousands of containers is megabytes.
        """
        cached = self._line
        if cached is not None and cached[0] == prefix and cached[1] == suffix:
            return cached[2]
        line = self._makeLine(prefix, suffix)
        self._line = (prefix, suffix, line)
        return line

    def _makeLine(self, prefix: bytes, suffix: bytes) -> bytes:
        items = self.items
        if not items:
            return prefix + b"[]" + suffix
        if len(items) == 1:
            return prefix + b"[" + items[0] + b"]" + suffix
        parts = list(items)
        parts[0] = prefix + b"[" + parts[0]
        parts[-1] = parts[-1] + b"]" + suffix
        return b",".join(parts)

    def piece(self, prefix: bytes, suffix: bytes, index: int) -> tuple[bytes, bool]:
        """
        The piece C{index} of L{line}C{(prefix, suffix)}, and whether it is
        the last: at most L{PIECE_BYTES} each (or one item), joined they are
        the line.  Each is made when first asked for (never before the
        pieces in front of it) and kept, for the next reply of the same
        array: a reply written as its client reads makes only what it
        writes, a few tens of microseconds at a time.

        @raise IndexError: for an index past the last piece.
        """
        pieces = self._pieces
        if pieces is None or pieces[0] != prefix or pieces[1] != suffix:
            pieces = self._pieces = (prefix, suffix, [], [0])
        made, cursor = pieces[2], pieces[3]
        items = self.items
        while index >= len(made):
            start = cursor[0]
            if made and start >= len(items):
                raise IndexError(index)
            end, size = start, len(prefix) + len(suffix) + 2
            while end < len(items):
                size += len(items[end]) + 1
                if size > PIECE_BYTES and end > start:
                    break
                end += 1
            made.append(self._makePiece(prefix, suffix, start, end))
            cursor[0] = end
        return made[index], index == len(made) - 1 and cursor[0] >= len(items)

    def _makePiece(self, prefix: bytes, suffix: bytes, start: int, end: int) -> bytes:
        """Items C{start} to C{end} with what goes before and after them."""
        items = self.items
        if not items:
            return prefix + b"[]" + suffix
        parts = list(items[start:end])
        parts[0] = (prefix + b"[" if start == 0 else b",") + parts[0]
        if end == len(items):
            parts[-1] = parts[-1] + b"]" + suffix
        return b",".join(parts)

    def decode(self) -> list[Any]:
        """The values (for tests and in-process callers)."""
        return [json.loads(item) for item in self.items]
