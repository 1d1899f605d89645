"""
A container's log lines from the engine (C{GET /containers/ID/logs}): read
(a slice at a time, L{pycm.backends.docker.logbody}), or followed as they
come (L{LogReader}).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from json.encoder import encode_basestring
from typing import Any

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from pycm.backends.docker.engine import EngineError, Stream
from pycm.backends.docker.interfaces import IDockerEngine
from pycm.backends.docker.logbody import readLogBody
from pycm.backends.docker.stream import Demultiplexer, LogLineSplitter, StreamFormatError
from pycm.backends.docker.translate import mapEngineError, sinceParam
from pycm.errors import BackendError, BadRequest
from pycm.logreply import REPLY_BYTES, overReply
from pycm.model import LogFollow, LogLine, parseTime
from pycm.slicedwork import SlicedWork
from pycm.wirejson import encodeJSONBytes

#: The most bytes of log lines one reply may carry, counted as the daemon
#: counts its reply (L{pycm.daemon.handlers.observing.encodeLogLines}: each
#: line's JSON and a separator): a read keeps no more of a log than that.
REPLY_BUDGET = REPLY_BYTES


#: The cost of a line of each stream with no text, no task and no node.
_BARE: dict[str, int] = {}
#: Times (POSIX seconds) that L{formatTime} writes with a four-digit year:
#: all of the same width.
_FOUR_DIGIT_YEARS = (0.0, 253402300800.0)


def replyCost(line: LogLine) -> int:
    """
    The bytes C{line} takes in a C{logs} reply: its JSON and a separator.
    Most lines (no task, no node) are counted from the escaped text alone,
    without encoding the whole line, a tenth of a read's time.
    """
    low, high = _FOUR_DIGIT_YEARS
    if line.task is not None or line.node is not None or not low <= line.time < high:
        return len(encodeJSONBytes(line.toJSON())) + 1
    bare = _BARE.get(line.stream)
    if bare is None:
        empty = LogLine(0.0, line.stream, "")
        bare = _BARE[line.stream] = len(encodeJSONBytes(empty.toJSON())) + 1 - len('""')
    text = encode_basestring(line.line)
    return bare + (len(text) if text.isascii() else len(text.encode("utf-8", "replace")))


class NewestLines:
    """
    The newest lines of a read as they come, C{(timestamp, LogLine)}
    pairs: past C{count} lines (None: no count), or past C{budget} bytes of
    reply (L{replyCost}), the oldest go.  Whatever the size of the log,
    what is kept is bounded, and it is exactly what a reply can carry.

    @ivar received: how many lines were given.
    """

    def __init__(self, count: int | None, budget: int = REPLY_BUDGET) -> None:
        self._lines: deque[tuple[str | None, LogLine, int]] = deque(maxlen=count)
        self.budget = budget
        self.size = 0
        self.received = 0

    @property
    def asked(self) -> int:
        """How many of the lines given the count keeps (all of them without one)."""
        count = self._lines.maxlen
        return self.received if count is None else min(self.received, count)

    @property
    def cut(self) -> bool:
        """
        Did the budget drop a line the count would have kept?  (What is
        kept is the longest run of newest lines that fits: only a line
        that did not fit went before its time.)
        """
        return len(self._lines) < self.asked

    def append(self, ts: str | None, line: LogLine) -> None:
        """Keep C{line}, stamped C{ts}, dropping the oldest past the count or the budget."""
        self.received += 1
        lines = self._lines
        if lines.maxlen == 0:
            return
        if len(lines) == lines.maxlen:
            self.size -= lines[0][2]
        cost = replyCost(line)
        lines.append((ts, line, cost))
        self.size += cost
        while self.size > self.budget and lines:
            self.size -= lines.popleft()[2]

    def items(self) -> list[tuple[str | None, LogLine]]:
        """The lines kept, oldest first."""
        return [(ts, line) for ts, line, _ in self._lines]

    def tooMany(self) -> BadRequest:
        """The error of a read that was L{cut}: how many of the newest lines fit."""
        return overReply(self.asked, len(self._lines), self.budget)


def engineSince(since: float) -> str:
    """
    The engine's C{since} for lines at or after C{since}, a microsecond
    early: near today's epoch a float is exact to a quarter of one, so the
    nanosecond time of the very line C{since} came from could fall just
    before it and be left out.  The lines kept are then cut here, on the
    same floats.
    """
    return f"{max(since - 1e-6, 0.0):.9f}"


def logLine(stream: str, ts: str | None, text: str) -> LogLine:
    """The L{LogLine} of one line of C{stream} stamped C{ts} (0 if none)."""
    when = 0.0
    if ts is not None:
        try:
            when = parseTime(ts) or 0.0
        except ValueError:
            when = 0.0
    return LogLine(when, stream, text)


def _notMultiplexed(failure: Failure, name: str) -> Failure:
    """A log's answer that is not a multiplexed stream: the engine failed (L{BackendError})."""
    if failure.check(StreamFormatError):
        return Failure(BackendError(
            f"the docker engine sent the log of {name} not as a multiplexed stream: "
            f"{failure.getErrorMessage()}"
        ))
    return failure


class LogReader:
    """
    Reads and follows containers' logs on one engine: a read's answer is
    split into lines a slice at a time on C{slices} (None: without slices,
    for the few lines of an exec check), given up on after a pause of the
    engine's C{timeout} on C{clock}.
    """

    log = Logger()

    def __init__(
        self,
        engine: IDockerEngine,
        clock: IReactorTime,
        slices: SlicedWork | None = None,
        budget: int = REPLY_BUDGET,
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.slices = slices
        self.budget = budget

    def read(
        self, cid: str, tail: int | None, since: float | None = None, name: str | None = None
    ) -> Deferred[list[tuple[str | None, LogLine]]]:
        """
        The last C{tail} lines (of those at or after C{since}) as
        C{(timestamp, LogLine)} pairs, read as the engine sends them
        (L{readLogBody}: C{name}, else C{cid}, is the container its
        failures name); cancelling it closes the engine's connection.  An
        answer that is not a multiplexed stream fails it with
        L{BackendError}; one over C{budget} bytes of reply, with
        L{BadRequest} saying how many of the newest lines fit (only those
        are held meanwhile: L{NewestLines}).
        """
        params: dict[str, Any] = {
            "stdout": True,
            "stderr": True,
            "timestamps": True,
            "tail": "all" if tail is None else max(tail, 0),
        }
        keep: int | None = None
        if since is not None:
            # The engine takes its tail before its since: ask for every line
            # since then, and keep the last C{tail} here.
            params["since"] = engineSince(since)
            params["tail"] = "all"
            keep = None if tail is None else max(tail, 0)
        lines = NewestLines(keep, self.budget)

        def received(stream: str, ts: str | None, text: str) -> None:
            line = logLine(stream, ts, text)
            if since is None or line.time >= since:
                lines.append(ts, line)

        path = f"/containers/{cid}/logs"
        d = readLogBody(self.engine, self.clock, self.slices, path, params, received, name or cid)

        def kept(_: Any) -> list[tuple[str | None, LogLine]]:
            if lines.cut:
                raise lines.tooMany()
            return lines.items()

        return d.addCallbacks(kept, _notMultiplexed, errbackArgs=(name or cid,))

    @defer.inlineCallbacks
    def follow(
        self,
        cid: str,
        name: str,
        tail: int | None,
        observer: Callable[[LogLine], None],
        since: float | None = None,
    ) -> Any:
        """
        The backlog from one C{logs} request, then a C{logs?follow=1}
        stream from the backlog's last timestamp, skipping the lines at
        that very timestamp that the backlog already had.

        @return: Deferred firing with a L{LogFollow}.
        """
        try:
            backlog = yield self.read(cid, tail, since, name)
        except EngineError as e:
            raise mapEngineError(e.status, e.message, name=name) from None
        params: dict[str, Any] = {
            "stdout": True,
            "stderr": True,
            "timestamps": True,
            "follow": True,
        }
        lastStamp = backlog[-1][0] if backlog else None
        skip = 0
        if lastStamp is not None:
            params["since"] = sinceParam(lastStamp)
            skip = sum(1 for ts, _ in backlog if ts == lastStamp)
        else:
            params["tail"] = 0 if tail == 0 else "all"
            if since is not None:
                params["since"] = engineSince(since)
        state = {"skip": skip}

        def lineReceived(stream: str, ts: str | None, text: str) -> None:
            if lastStamp is not None and ts is not None:
                if ts < lastStamp and len(ts) == len(lastStamp):
                    return
                if ts == lastStamp and state["skip"] > 0:
                    state["skip"] -= 1
                    return
            line = logLine(stream, ts, text)
            if lastStamp is None and since is not None and line.time < since:
                return
            observer(line)

        splitter = LogLineSplitter(lineReceived, True)
        demux = Demultiplexer(splitter.frameReceived)
        ended: Deferred[None] = Deferred()

        def done(_: Any) -> None:
            splitter.flush()
            if not ended.called:
                ended.callback(None)

        path = f"/containers/{cid}/logs"
        lines = [line for _, line in backlog]
        if not self.engine.isPodman:
            try:
                stream = yield self.engine.stream("GET", path, params, demux.feed)
            except EngineError as e:
                raise mapEngineError(e.status, e.message, name=name) from None
            stream.ended.addCallback(done)
            return LogFollow(lines, ended, stream.cancel)
        return self._podmanFollow(name, path, params, demux, done, lines, ended)

    def _podmanFollow(
        self,
        name: str,
        path: str,
        params: dict[str, Any],
        demux: Demultiplexer,
        done: Callable[[Any], None],
        backlog: list[LogLine],
        ended: Deferred[None],
    ) -> LogFollow:
        """
        Podman answers a log follow only with its first line: open it in
        the background, with no limit on the wait for that answer.
        """
        opening = self.engine.stream("GET", path, params, demux.feed, headerTimeout=0)
        opened: list[Stream] = []

        def streaming(stream: Stream) -> None:
            opened.append(stream)
            stream.ended.addCallback(done)

        def failed(failure: Any) -> None:
            if not failure.check(defer.CancelledError):
                self.log.info(
                    "following {name}'s logs failed: {why}",
                    name=name,
                    why=failure.getErrorMessage(),
                )
            done(None)

        opening.addCallbacks(streaming, failed)

        def cancel() -> None:
            if opened:
                opened[0].cancel()
            else:
                opening.cancel()

        return LogFollow(backlog, ended, cancel)
