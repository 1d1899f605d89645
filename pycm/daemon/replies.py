"""
Reply lines as they go on the wire: C{OK <json>}, C{ERR <code> <message>}
and C{EVENT <json>} (without the line end).  The one JSON encoding of the
daemon: compact, UTF-8, what every reply and every size estimate uses.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from operator import attrgetter
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime

from pycm.errors import PycmError
from pycm.model import Container, cachedSummaryJSON
from pycm.wirejson import EncodedArray, encodeJSON

__all__ = [
    "STRING_REPLIES",
    "encodeError",
    "encodeJSON",
    "encodeListing",
    "encodeReply",
    "encodeSummaries",
]

#: Up to how many summaries not encoded yet are encoded at once, in the
#: request's turn (L{encodeSummaries}): a few milliseconds.
SUMMARIES_AT_ONCE = 500
#: Beyond that, how many are encoded in one reactor turn: a millisecond.
SUMMARIES_PER_TURN = 100

#: The replies of the commands that answer with a fixed string.
STRING_REPLIES = {text: b"OK " + json.dumps(text).encode() for text in ("pong", "bye")}


def encodeReply(kind: bytes, value: Any) -> bytes:
    """Encode C{OK <json>} or C{EVENT <json>} (without the line end)."""
    if isinstance(value, EncodedArray):
        return value.line(kind + b" ", b"")
    return kind + b" " + encodeJSON(value).encode("utf-8", "replace")


#: The last C{list} of every container: the backend's containers as it
#: listed them, and the array made of them (see L{encodeListing}).
_lastListing: tuple[list[Container], EncodedArray] | None = None


def encodeListing(
    clock: IReactorTime, containers: Sequence[Container]
) -> EncodedArray | Deferred[EncodedArray]:
    """
    The JSON array of every container's summary, sorted by name.  The same
    containers as the last time, in the same order (frozen values: nothing
    changed), give the same array, neither sorted nor joined again, and
    its line is sent as it was.
    """
    global _lastListing
    last = _lastListing
    if last is not None and last[0] == containers:
        return last[1]
    # Kept as a copy: a backend may change the list it returned.
    listed = list(containers)
    result = encodeSummaries(clock, sorted(containers, key=attrgetter("name")))

    def remember(array: EncodedArray) -> EncodedArray:
        global _lastListing
        _lastListing = (listed, array)
        return array

    if isinstance(result, Deferred):
        return result.addCallback(remember)
    return remember(result)


def encodeSummaries(
    clock: IReactorTime, containers: Sequence[Container]
) -> EncodedArray | Deferred[EncodedArray]:
    """
    The JSON array of the containers' summaries, each encoded once per
    container value (L{Container.summaryJSON}) and joined.  When more than
    L{SUMMARIES_AT_ONCE} are not encoded yet (the first C{list} of
    thousands), they are encoded L{SUMMARIES_PER_TURN} a reactor turn, so that other
    connections are served meanwhile: the array is the containers as they
    were when asked (frozen values), whenever it is finished.
    """
    items = list(map(cachedSummaryJSON, containers))
    if None not in items:
        return EncodedArray(items)  # type: ignore[arg-type]
    missing = [index for index, item in enumerate(items) if item is None]
    if len(missing) <= SUMMARIES_AT_ONCE:
        for index in missing:
            items[index] = containers[index].summaryJSON()
        return EncodedArray(items)  # type: ignore[arg-type]
    done: Deferred[EncodedArray] = Deferred()

    def encodeSlice(start: int) -> None:
        for index in missing[start : start + SUMMARIES_PER_TURN]:
            items[index] = containers[index].summaryJSON()
        start += SUMMARIES_PER_TURN
        if start < len(missing):
            clock.callLater(0, encodeSlice, start)
        else:
            done.callback(EncodedArray(items))  # type: ignore[arg-type]

    encodeSlice(0)
    return done


def encodeError(error: PycmError) -> bytes:
    """Encode C{ERR <code> <message>}, the message kept on one line."""
    message = " ".join(str(error).split()) or error.code
    return b"ERR " + error.code.encode("ascii") + b" " + message.encode("utf-8", "replace")
