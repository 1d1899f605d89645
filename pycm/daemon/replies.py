"""
Reply lines as they go on the wire: C{OK <json>}, C{ERR <code> <message>}
and C{EVENT <json>} (without the line end).  The one JSON encoding of the
daemon: compact, UTF-8, what every reply and every size estimate uses.
"""

from __future__ import annotations

import json
from typing import Any

from pycm.errors import PycmError

#: Compact JSON, non-ASCII kept as is: the text of every reply value.
encodeJSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode

#: The replies of the commands that answer with a fixed string.
STRING_REPLIES = {text: b"OK " + json.dumps(text).encode() for text in ("pong", "bye")}


def encodeReply(kind: bytes, value: Any) -> bytes:
    """Encode C{OK <json>} or C{EVENT <json>} (without the line end)."""
    return kind + b" " + encodeJSON(value).encode("utf-8", "replace")


def encodeError(error: PycmError) -> bytes:
    """Encode C{ERR <code> <message>}, the message kept on one line."""
    message = " ".join(str(error).split()) or error.code
    return b"ERR " + error.code.encode("ascii") + b" " + message.encode("utf-8", "replace")
