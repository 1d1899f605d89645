"""
Incremental parsers for the Docker Engine's streamed bodies.

Each takes bytes in chunks of any size (as they come off the socket) and
calls back with whole items: L{Demultiplexer} for the 8-byte framed
stdout/stderr stream of C{/logs} and C{/attach}, L{LogLineSplitter} for the
lines inside it, L{JSONLines} for C{/events} and C{/images/create}.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from typing import Any

#: Stream numbers of the multiplexed format's header.
STREAMS = {0: "stdin", 1: "stdout", 2: "stderr"}
_HEADER = struct.Struct(">BxxxL")


class StreamFormatError(Exception):
    """The bytes are not a multiplexed stream."""


class Demultiplexer:
    """
    Split the engine's multiplexed stream into C{(stream, payload)} frames.

    Each frame is an 8-byte header (stream number, three zero bytes, a
    big-endian 32-bit length) and that many bytes of payload.
    """

    def __init__(self, frameReceived: Callable[[str, bytes], None]) -> None:
        self._frameReceived = frameReceived
        self._buffer = bytearray()

    def feed(self, data: bytes) -> None:
        """Take more bytes; deliver every frame they complete."""
        self._buffer += data
        while len(self._buffer) >= _HEADER.size:
            number, length = _HEADER.unpack_from(self._buffer)
            if number not in STREAMS:
                raise StreamFormatError(f"bad stream number {number}")
            end = _HEADER.size + length
            if len(self._buffer) < end:
                return
            payload = bytes(self._buffer[_HEADER.size : end])
            del self._buffer[:end]
            self._frameReceived(STREAMS[number], payload)

    @property
    def pending(self) -> int:
        """How many bytes of an incomplete frame are buffered."""
        return len(self._buffer)


class LogLineSplitter:
    """
    Turn frames into lines, one buffer per stream, for C{logs?timestamps=1}.

    Calls C{lineReceived(stream, timestamp, text)} for each line: the
    engine's RFC 3339 timestamp prefix (or None if there is none) and the
    text without its newline, decoded as UTF-8 with replacement.

    @ivar maxLength: a line longer than this is cut into pieces of this
        length, so a stream without newlines cannot grow a buffer forever.
    """

    maxLength = 65536

    def __init__(
        self, lineReceived: Callable[[str, str | None, str], None], timestamps: bool
    ) -> None:
        self._lineReceived = lineReceived
        self._timestamps = timestamps
        self._buffers: dict[str, bytearray] = {}

    def frameReceived(self, stream: str, payload: bytes) -> None:
        """Take one frame of C{stream}; deliver the lines it completes."""
        buffer = self._buffers.setdefault(stream, bytearray())
        buffer += payload
        while True:
            index = buffer.find(b"\n")
            if index < 0:
                break
            line = bytes(buffer[:index])
            del buffer[: index + 1]
            self._deliver(stream, line)
        while len(buffer) > self.maxLength:
            line = bytes(buffer[: self.maxLength])
            del buffer[: self.maxLength]
            self._deliver(stream, line)

    def flush(self) -> None:
        """The stream ended: deliver what is left as last lines."""
        for stream, buffer in self._buffers.items():
            if buffer:
                line = bytes(buffer)
                buffer.clear()
                self._deliver(stream, line)

    def _deliver(self, stream: str, line: bytes) -> None:
        timestamp = None
        if self._timestamps:
            head, sep, rest = line.partition(b" ")
            if sep and head[:1].isdigit():
                timestamp = head.decode("ascii", "replace")
                line = rest
        if line.endswith(b"\r"):
            line = line[:-1]
        self._lineReceived(stream, timestamp, line.decode("utf-8", "replace"))


class JSONLines:
    """
    Split a stream of JSON values, one per line, calling C{valueReceived}
    with each decoded value.  A line that is not JSON is skipped.
    """

    maxLength = 1 << 20

    def __init__(self, valueReceived: Callable[[Any], None]) -> None:
        self._valueReceived = valueReceived
        self._buffer = bytearray()

    def feed(self, data: bytes) -> None:
        """Take more bytes; deliver every value they complete."""
        self._buffer += data
        while True:
            index = self._buffer.find(b"\n")
            if index < 0:
                break
            line = bytes(self._buffer[:index])
            del self._buffer[: index + 1]
            self._decode(line)
        if len(self._buffer) > self.maxLength:
            self._buffer.clear()

    def flush(self) -> None:
        """The stream ended: decode a last line without its newline."""
        line = bytes(self._buffer)
        self._buffer.clear()
        self._decode(line)

    def _decode(self, line: bytes) -> None:
        line = line.strip()
        if not line:
            return
        try:
            value = json.loads(line)
        except ValueError:
            return
        self._valueReceived(value)
