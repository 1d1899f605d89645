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

    It keeps its items and where its pieces end (a few integers), never
    the bytes of a line of more than one piece: a reply of megabytes is
    made a piece at a time as it is written, and what was written is let
    go of, however many replies share the array.
    """

    __slots__ = ("items", "_whole", "_ends")

    def __init__(self, items: Sequence[bytes]) -> None:
        self.items = items
        #: Its line when it is one piece, as last made (prefix, suffix,
        #: line): a small list asked again with nothing changed is sent as
        #: it is.
        self._whole: tuple[bytes, bytes, bytes] | None = None
        #: Where the pieces found so far end (the length of the prefix and
        #: suffix they were found for, the index after each one's last
        #: item): see L{piece}.
        self._ends: tuple[int, list[int]] | None = None

    def encode(self) -> bytes:
        """The array's JSON, as L{encodeJSONBytes} of its values would give."""
        return self.line(b"", b"")

    def line(self, prefix: bytes, suffix: bytes) -> bytes:
        """
        C{prefix}, the array's JSON and C{suffix}, copied once: a reply of
        thousands of containers is megabytes (and is kept only if it is
        one piece).
        """
        if self._pieceEnds(len(prefix) + len(suffix), 0)[0] >= len(self.items):
            return self.piece(prefix, suffix, 0)[0]
        return self._makePiece(prefix, suffix, 0, len(self.items))

    def piece(self, prefix: bytes, suffix: bytes, index: int) -> tuple[bytes, bool]:
        """
        The piece C{index} of L{line}C{(prefix, suffix)}, and whether it is
        the last: at most L{PIECE_BYTES} each (or one item), joined they are
        the line.  Each is made when asked for, a few tens of microseconds,
        and not kept (only where it ends, and a line of one piece).

        @raise IndexError: for an index past the last piece.
        """
        whole = self._whole
        if index == 0 and whole is not None and whole[0] == prefix and whole[1] == suffix:
            return whole[2], True
        items = self.items
        ends = self._pieceEnds(len(prefix) + len(suffix), index)
        end = ends[index]
        piece = self._makePiece(prefix, suffix, ends[index - 1] if index else 0, end)
        last = end >= len(items)
        if last and index == 0:
            self._whole = (prefix, suffix, piece)
        return piece, last

    def _pieceEnds(self, overhead: int, index: int) -> list[int]:
        """
        Where the pieces up to C{index} end, for a prefix and suffix of
        C{overhead} bytes: found once (never past C{index}) and kept.
        """
        found = self._ends
        if found is None or found[0] != overhead:
            found = self._ends = (overhead, [])
        ends = found[1]
        items = self.items
        while index >= len(ends):
            start = ends[-1] if ends else 0
            if ends and start >= len(items):
                raise IndexError(index)
            end, size = start, overhead + 2
            while end < len(items):
                size += len(items[end]) + 1
                if size > PIECE_BYTES and end > start:
                    break
                end += 1
            ends.append(end)
        return ends

    def _makePiece(self, prefix: bytes, suffix: bytes, start: int, end: int) -> bytes:
        """Items C{start} to C{end} with what goes before and after them."""
        items = self.items
        if not items:
            return prefix + b"[]" + suffix
        if end - start == 1:
            return (
                (prefix + b"[" if start == 0 else b",")
                + items[start]
                + (b"]" + suffix if end == len(items) else b"")
            )
        parts = list(items[start:end])
        parts[0] = (prefix + b"[" if start == 0 else b",") + parts[0]
        if end == len(items):
            parts[-1] = parts[-1] + b"]" + suffix
        return b",".join(parts)

    def decode(self) -> list[Any]:
        """The values (for tests and in-process callers)."""
        return [json.loads(item) for item in self.items]
