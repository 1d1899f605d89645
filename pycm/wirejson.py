"""
The JSON of the wire, in one place: compact, UTF-8, non-ASCII kept as is
(L{encodeJSON}, L{encodeJSONBytes}); and a JSON array whose items are
already encoded (L{EncodedArray}), which a reply splices in as it is.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

#: Compact JSON, non-ASCII kept as is: the text of every reply value.
encodeJSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def encodeJSONBytes(value: Any) -> bytes:
    """L{encodeJSON} as the bytes on the wire (a lone surrogate replaced)."""
    return encodeJSON(value).encode("utf-8", "replace")


class EncodedArray:
    """
    A JSON array of values encoded already (each with L{encodeJSONBytes}):
    a handler's result that the reply joins instead of encoding again.
    """

    __slots__ = ("items", "_line")

    def __init__(self, items: Sequence[bytes]) -> None:
        self.items = items
        #: The last line made (prefix, suffix, line): a list asked again
        #: with nothing changed is sent as it is.
        self._line: tuple[bytes, bytes, bytes] | None = None

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

    def decode(self) -> list[Any]:
        """The values (for tests and in-process callers)."""
        return [json.loads(item) for item in self.items]
