"""
A service's log lines from the swarm manager (C{GET /services/ID/logs}),
each tagged with its task and node, read at once or followed as they come
(L{ServiceLogReader}).

The manager gathers the lines from every task's node: C{tail} counts per
task, in the order each task's lines were written, and the lines come task
by task, not in time order.  With
C{details=true} each line carries the swarm's attributes between its
timestamp and its text::

    2026-11-30T21:05:29.958969697Z com.docker.swarm.node.id=N,com.docker.swarm.
    service.id=S,com.docker.swarm.task.id=T text

(one line, cut here).

A backlog is merged across tasks in time order and cut to C{tail} here.  A
follow is the backlog, then a C{follow} stream from a little before where
each task's backlog ended, filtered per task (L{TaskCursor}) so that no
line is both in the backlog and followed; the stream does not end when the
service stops (nor when it is removed), so the follow ends when the
caller's C{stopped} fires: the stream is closed, and one last read gives
what the stream had not yet delivered.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from pycm.backends.docker.engine import EngineError
from pycm.backends.docker.follow import REPLY_BUDGET
from pycm.backends.docker.interfaces import IDockerEngine
from pycm.backends.docker.logbody import readLogBody
from pycm.backends.docker.stream import Demultiplexer, LogLineSplitter, StreamFormatError
from pycm.backends.docker.translate import mapEngineError
from pycm.backends.swarm.loglines import (
    CLOCK_MARGIN,
    NewestRawLines,
    NodeNames,
    RawLine,
    TaskCursor,
    inTimeOrder,
    mergeInTimeOrder,
    nanosParam,
    newestThatFit,
    rawLine,
)
from pycm.logreply import overReply
from pycm.model import LogFollow, LogLine
from pycm.slicedwork import SlicedWork

#: Lines asked for beyond a tail, per task (see L{ServiceLogReader._backlog}).
TAIL_SLACK = 16


class ServiceLogReader:
    """Reads and follows services' logs on one swarm manager."""

    log = Logger()

    def __init__(
        self,
        clock: Any,
        engine: IDockerEngine,
        nodes: Callable[[], Mapping[str, str]] = dict,
        budget: int = REPLY_BUDGET,
    ) -> None:
        """
        @param nodes: node id -> hostname as the latest snapshot has them.
        @param budget: the most bytes of reply one read keeps (L{NewestRawLines}).
        """
        self.clock = clock
        self.engine = engine
        self.budget = budget
        self.nodeNames = NodeNames(engine, nodes)
        self.slices = SlicedWork(clock)

    def stop(self) -> None:
        """The backend is closed: no read goes on."""
        self.slices.stop()

    def request(self, sid: str, name: str, params: dict[str, Any]) -> Deferred[NewestRawLines]:
        """
        The lines of one C{logs} request (L{RawLine}s), the newest a reply
        can carry (L{NewestRawLines}), read and split a slice at a time;
        cancelling it closes the connection.
        """
        query = {"details": True, "stdout": True, "stderr": True, "timestamps": True}
        query.update(params)
        lines = NewestRawLines(self.budget)
        d = readLogBody(
            self.engine,
            self.clock,
            self.slices,
            f"/services/{sid}/logs",
            query,
            lambda s, ts, text: lines.append(rawLine(s, ts, text)),
            name,
        )

        def failed(failure: Failure) -> NewestRawLines:
            if failure.check(EngineError):
                e = failure.value
                raise mapEngineError(e.status, e.message, name=name) from None
            failure.trap(StreamFormatError)
            self.log.warn(
                "{name}'s logs are not a multiplexed stream: {error}",
                name=name,
                error=failure.value,
            )
            return NewestRawLines(self.budget)

        return d.addCallbacks(lambda _: lines, failed)

    @defer.inlineCallbacks
    def _backlog(self, sid: str, name: str, tail: int | None, since: float | None) -> Any:
        """
        The lines as read (for the cursor), the backlog: the last C{tail}
        of those at or after C{since}, in time order (merged a slice at a
        time), how many lines were asked for, and whether the budget left
        the backlog short of them (L{NewestRawLines}).
        """
        if since is not None:
            # The engine takes its tail before its since: ask for every line
            # since then (a microsecond early), and cut here.
            params: dict[str, Any] = {"tail": "all", "since": f"{max(since - 1e-6, 0.0):.9f}"}
        else:
            # A task's log is in the order its lines were written, and its two
            # streams' lines can be out of their times' order by a line or
            # two: ask for more, so that the cut by time here is exact.
            params = {"tail": "all" if tail is None else max(tail, 0) + TAIL_SLACK}
        read = yield self.request(sid, name, params)
        raw = read.items()
        backlog = yield self.slices.run(
            mergeInTimeOrder(raw, lambda line: since is None or line.nanos / 1e9 >= since)
        )
        if tail is not None:
            backlog = backlog[-tail:] if tail > 0 else []
        # Older lines of those asked for went for the budget?
        short = read.cut and (tail is None or len(backlog) < tail)
        asked = (read.received if tail is None else tail) if short else len(backlog)
        return raw, backlog, asked, short

    @defer.inlineCallbacks
    def _replyLines(self, backlog: list[RawLine], asked: int, short: bool) -> Any:
        """
        The L{LogLine}s of C{backlog}, their nodes named, if a reply can
        carry them and the budget did not leave them C{short} of the
        C{asked}; else L{BadRequest} saying how many of the newest fit.
        """
        names = yield self.nodeNames.resolve(line.nodeId for line in backlog)
        lines = [line.logLine(names) for line in backlog]
        fit = yield self.slices.run(newestThatFit(lines, self.budget))
        if short or fit < len(lines):
            raise overReply(asked, fit, self.budget)
        return lines

    @defer.inlineCallbacks
    def read(self, sid: str, name: str, tail: int | None, since: float | None = None) -> Any:
        """
        The last C{tail} lines of service C{sid} (pycm's C{name}), of those
        at or after C{since}, merged across its tasks in time order.

        @return: Deferred firing with a list of L{LogLine}; L{NotFound}
            when the service is gone.
        """
        _, backlog, asked, short = yield self._backlog(sid, name, tail, since)
        lines = yield self._replyLines(backlog, asked, short)
        return lines

    def follow(
        self,
        sid: str,
        name: str,
        tail: int | None,
        observer: Callable[[LogLine], None],
        stopped: Deferred[Any],
        since: float | None = None,
        ended: Callable[[str], bool] = lambda task: False,
    ) -> Deferred[LogFollow]:
        """
        The backlog as L{read} gives it, then each new line to C{observer}
        (from the next turn of the clock on, after the L{LogFollow} is
        handed on) until C{stopped} fires (the service no longer runs, or
        is gone) or the follow is cancelled.

        @param stopped: fires when the service stops running or is removed
            (from the snapshots); cancelled when the follow ends first.
        @param ended: is this task over (it writes no more lines)?  The
            stream does not start before its last line.
        @return: Deferred firing with a L{LogFollow}; L{NotFound} when the
            service is gone.
        """
        stopped.addErrback(_cancelledIsNoError)
        follow = _Follow(self, sid, name, observer, stopped, since)
        d = self._openFollow(follow, tail, since, ended)

        def opened(backlog: list[LogLine]) -> LogFollow:
            follow.beginning = self.clock.callLater(0, follow.begin)
            return LogFollow(backlog, follow.ended, follow.cancel)

        def failed(failure: Any) -> Any:
            stopped.cancel()
            return failure

        return d.addCallbacks(opened, failed)

    @defer.inlineCallbacks
    def _openFollow(
        self,
        follow: _Follow,
        tail: int | None,
        since: float | None,
        ended: Callable[[str], bool],
    ) -> Any:
        """Read the backlog, open the stream; fire with the backlog."""
        readAt = self.clock.seconds()
        # With no backlog asked for, each task's last line still says where
        # its new lines begin.
        askTail = 1 if tail == 0 else tail
        raw, backlog, asked, short = yield self._backlog(follow.sid, follow.name, askTail, since)
        for line in raw:
            follow.cursor.given(line)
        if backlog:
            # A line the engine's answer lacked, written after it though
            # older than its task's last there (the other stream's), is
            # new if it is not older than the backlog.
            follow.cursor.startFrom(backlog[0].nanos)
        if tail == 0:
            backlog, short = [], False
        lines = yield self._replyLines(backlog, asked, short)
        running = [task for task in follow.cursor.last if task is None or not ended(task)]
        start = follow.cursor.earliest(running)
        lower = int((readAt - CLOCK_MARGIN) * 1e9)
        if since is not None:
            lower = max(lower, int(since * 1e9))
        follow.fromNanos = lower if start is None else min(start, lower)
        yield follow.open()
        return lines


def _cancelledIsNoError(failure: Failure) -> None:
    """C{stopped} is cancelled when the follow ends first: that is no error."""
    failure.trap(defer.CancelledError)


class _Follow:
    """One follow of a service's logs (see L{ServiceLogReader.follow})."""

    log = Logger()

    def __init__(
        self,
        reader: ServiceLogReader,
        sid: str,
        name: str,
        observer: Callable[[LogLine], None],
        stopped: Deferred[Any],
        since: float | None,
    ) -> None:
        self.reader = reader
        self.sid = sid
        self.name = name
        self.observer = observer
        self.stopped = stopped
        self.sinceNanos = None if since is None else int(since * 1e9)
        self.cursor = TaskCursor()
        #: Where the stream and the last read start (nanoseconds).
        self.fromNanos = 0
        self.ended: Deferred[None] = Deferred()
        #: Lines to hand on, in order (held until L{begin}, and while a
        #: line's node is being named).
        self.queue: list[RawLine] = []
        self.started = False
        self.resolving = False
        self.done = False
        self.stream: Any = None
        self.beginning: Any = None
        self.lastRead: Deferred[Any] | None = None
        self.splitter = LogLineSplitter(self._received, True)
        self.demux = Demultiplexer(self.splitter.frameReceived)
        self.admit = self.cursor.replay()

    def _received(self, stream: str, stamp: str | None, text: str) -> None:
        if self.done:
            return
        line = rawLine(stream, stamp, text)
        if self.sinceNanos is not None and line.nanos < self.sinceNanos:
            return
        if self.admit(line):
            self._give([line])

    def _feed(self, data: bytes) -> None:
        try:
            self.demux.feed(data)
        except StreamFormatError as e:
            self.log.warn(
                "{name}'s log stream is not multiplexed: {error}", name=self.name, error=e
            )
            self.stream.cancel()

    @defer.inlineCallbacks
    def open(self) -> Any:
        """Open the stream from L{fromNanos}, its lines held until L{begin}."""
        self.admit = self.cursor.replay()
        params = {
            "details": True,
            "stdout": True,
            "stderr": True,
            "timestamps": True,
            "follow": True,
            "tail": "all",
            "since": nanosParam(self.fromNanos),
        }
        path = f"/services/{self.sid}/logs"
        try:
            self.stream = yield self.reader.engine.stream("GET", path, params, self._feed)
        except EngineError as e:
            raise mapEngineError(e.status, e.message, name=self.name) from None
        self.stream.ended.addCallback(self._streamEnded)

    def begin(self) -> None:
        """The backlog was handed on: hand on the lines, end when C{stopped} fires."""
        self.beginning = None
        self.started = True
        self._drain()
        self.stopped.addCallbacks(self._serviceStopped, lambda failure: None)

    def _give(self, lines: list[RawLine]) -> None:
        """Hand C{lines} on in order, once their nodes are named."""
        self.queue.extend(lines)
        self._drain()

    def _drain(self, unnamed: str | None = None) -> None:
        """
        Hand on the queued lines, asking the manager for a node's name first
        (none for C{unnamed}: it just could not say; those lines carry its id).
        """
        if self.resolving or not self.started:
            return
        nodeNames = self.reader.nodeNames
        names = nodeNames.names()
        while self.queue:
            line = self.queue[0]
            if line.nodeId is not None and line.nodeId not in names and line.nodeId != unnamed:
                self.resolving = True
                nodeNames.resolve([line.nodeId]).addBoth(self._resolved, line.nodeId)
                return
            del self.queue[0]
            try:
                self.observer(line.logLine(names))
            except Exception:
                self.log.failure("log observer of {name} failed", name=self.name)
        self._maybeEnd()

    def _resolved(self, names: Any, nodeId: str) -> None:
        self.resolving = False
        self._drain(unnamed=nodeId)

    def _streamEnded(self, _: Any) -> None:
        """The stream ended: closed here, or by the manager (then nothing more comes)."""
        self.splitter.flush()
        if self.lastRead is None and not self.done:
            self._finish()
            self.stopped.cancel()

    def _serviceStopped(self, _: Any) -> None:
        """
        The service stopped: close the stream, and hand on what one more
        read has that the stream had not delivered.
        """
        if self.done:
            return
        params = {"tail": "all", "since": nanosParam(self.fromNanos)}
        self.lastRead = self.reader.request(self.sid, self.name, params)
        if self.stream is not None:
            self.stream.cancel()

        def read(lines: NewestRawLines) -> None:
            # Lines that went for the budget are the oldest: the stream
            # delivered those.
            admit = self.cursor.replay()
            self._give(
                [
                    line
                    for line in inTimeOrder(lines.items())
                    if (self.sinceNanos is None or line.nanos >= self.sinceNanos) and admit(line)
                ]
            )

        def failed(failure: Any) -> None:
            if not failure.check(defer.CancelledError):
                self.log.info(
                    "{name}'s last log lines could not be read: {error}",
                    name=self.name,
                    error=failure.getErrorMessage(),
                )

        self.lastRead.addCallbacks(read, failed)
        self.lastRead.addCallback(lambda _: self._finish())

    def _finish(self) -> None:
        self.done = True
        self._maybeEnd()

    def _maybeEnd(self) -> None:
        if self.done and not self.queue and not self.ended.called:
            self.ended.callback(None)

    def cancel(self) -> None:
        """Stop following now: C{ended} fires, no line is handed on after."""
        if self.ended.called:
            return
        self.done = True
        self.queue.clear()
        if self.beginning is not None and self.beginning.active():
            self.beginning.cancel()
        self.stopped.cancel()
        if self.lastRead is not None:
            self.lastRead.cancel()
        if self.stream is not None:
            self.stream.cancel()
        self._maybeEnd()
