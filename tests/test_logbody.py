"""
Tests for L{pycm.backends.docker.logbody}: a log's answer split into lines
as it comes, a bounded slice at a time, its failures, its cancel closing
the engine's connection, and its idle limit (an engine that stopped
sending), and the Docker backend's reads of an answer that is not
multiplexed; on a scripted engine and a L{Clock}.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import CancelledError, Deferred, fail
from twisted.internet.error import ConnectionLost
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from pycm.backends.docker.engine import EngineError, Stream
from pycm.backends.docker.execcheck import ExecutableCheck
from pycm.backends.docker.follow import LogReader
from pycm.backends.docker.logbody import UNSPLIT_LIMIT, _Body, readLogBody, splitBody
from pycm.backends.docker.stream import StreamFormatError
from pycm.errors import BackendError, Unavailable
from pycm.slicedwork import SlicedWork
from tests.stubengine import StubEngine, wholeStream
from tests.test_slicedwork import StepTimer, Turns


def framed(text: str, number: int = 1) -> bytes:
    payload = text.encode()
    return struct.pack(">BxxxL", number, len(payload)) + payload


class Transport:
    """
    A stream's transport: C{stopProducing} is the connection closed,
    C{pauseProducing} and C{resumeProducing} its reading stopped and again.
    """

    def __init__(self) -> None:
        self.stopped = False
        self.paused = False
        self.pauses = 0

    def stopProducing(self) -> None:
        self.stopped = True

    def pauseProducing(self) -> None:
        self.paused = True
        self.pauses += 1

    def resumeProducing(self) -> None:
        self.paused = False


class EndingTransport(Transport):
    """A transport whose C{stopProducing} ends the stream at once (as a fake engine's does)."""

    def __init__(self, engine: OneStream) -> None:
        super().__init__()
        self._engine = engine

    def stopProducing(self) -> None:
        super().stopProducing()
        self._engine.end()


class OneStream(StubEngine):
    """An engine answering one log read: C{opening}, then what the test feeds."""

    def __init__(self, endsWhenClosed: bool = False) -> None:
        """
        @param endsWhenClosed: closing the connection ends the stream at
            once (a fake engine's), not later (the real one's).
        """
        self.opening: Deferred[Stream] = Deferred()
        self.onData: Callable[[bytes], object] | None = None
        self.transport = EndingTransport(self) if endsWhenClosed else Transport()
        self.answer = Stream(Deferred(), self.transport)

    def stream(  # type: ignore[override]
        self, method: str, path: str, params: Any, onData: Callable[[bytes], object], *a: Any,
        **kw: Any,
    ) -> Deferred[Stream]:
        self.onData = onData
        return self.opening

    def open(self) -> None:
        self.opening.callback(self.answer)

    def end(self, failure: Failure | None = None) -> None:
        self.answer.failure = failure
        self.answer.ended.callback(None)


class SplitBodyTests(SynchronousTestCase):
    """L{splitBody}: a slice takes at most C{sliceBytes} of the body."""

    def test_boundedSlices(self) -> None:
        """
        Each slice splits at most C{sliceBytes} (a bigger piece is cut), the
        job waits while nothing more came, and every line comes once.
        """
        body = _Body()
        lines: list[str] = []
        job = splitBody(body, lambda stream, ts, text: lines.append(text), sliceBytes=20)
        self.assertIsInstance(next(job), Deferred)
        data = b"".join(framed(f"2026-11-30T10:00:00Z line {i}\n") for i in range(6))
        body.received(data)
        slices = 0
        seen = [0]
        waited = next(job)
        while waited is None:
            slices += 1
            seen.append(len(lines))
            waited = next(job)
        self.assertIsInstance(waited, Deferred)
        self.assertEqual(slices, len(data) // 20)
        body.end()
        with self.assertRaises(StopIteration):
            while True:
                next(job)
        self.assertEqual(lines, [f"line {i}" for i in range(6)])
        self.assertLessEqual(max(b - a for a, b in zip(seen, seen[1:], strict=False)), 1)


class ReadLogBodyTests(SynchronousTestCase):
    """L{readLogBody} on a scripted engine and the reactor's turns."""

    def setUp(self) -> None:
        self.turns = Turns()
        turns: Any = self.turns
        self.slices = SlicedWork(turns, timer=StepTimer())
        #: The idle limit's time (the turns run what is due now).
        self.clock = Clock()
        self.engine = OneStream()
        self.lines: list[tuple[str, str | None, str]] = []

    def read(self) -> Deferred[None]:
        def received(*line: Any) -> None:
            self.lines.append(line)

        return readLogBody(
            self.engine, self.clock, self.slices, "/containers/c/logs", {}, received, "web"
        )

    def send(self, data: bytes) -> None:
        """The engine sends C{data} of the body."""
        assert self.engine.onData is not None
        self.engine.onData(data)

    def settle(self) -> None:
        for _ in range(20):
            self.turns.turn()

    def test_linesAsTheyCome(self) -> None:
        """The lines are given as the pieces come; the read fires at the body's end."""
        d = self.read()
        self.engine.open()
        assert self.engine.onData is not None
        self.engine.onData(framed("2026-11-30T10:00:00.5Z one\n2026-11-30T10:00:01Z tw"))
        self.settle()
        self.assertEqual(self.lines, [("stdout", "2026-11-30T10:00:00.5Z", "one")])
        self.engine.onData(framed("o\n") + framed("2026-11-30T10:00:02Z three", 2))
        self.engine.end()
        self.settle()
        self.assertIsNone(self.successResultOf(d))
        self.assertEqual(
            [(stream, text) for stream, _, text in self.lines],
            [("stdout", "one"), ("stdout", "two"), ("stderr", "three")],
        )

    def test_engineWaitsWhileUnsplit(self) -> None:
        """
        Past L{UNSPLIT_LIMIT} bytes not yet split (several reads share the
        slices: an engine sends faster than they split), the engine's
        connection is read no more, and its pause is not taken for a
        stalled engine; it is read again once the splitting caught up,
        and every line comes.
        """
        d = self.read()
        self.engine.open()
        self.settle()
        data = b"".join(framed(f"2026-11-30T10:00:00Z line {i:06d} " + "x" * 80 + "\n")
                        for i in range(40_000))
        sent = 0
        while not self.engine.transport.paused and sent < len(data):
            self.send(data[sent:sent + 65536])
            sent += 65536
        self.assertLessEqual(sent, UNSPLIT_LIMIT + 65536)
        self.clock.advance(self.engine.timeout * 3)
        self.assertNoResult(d)
        while sent < len(data):
            self.turns.turn()
            if not self.engine.transport.paused:
                self.send(data[sent:sent + 65536])
                sent += 65536
        self.engine.end()
        self.settle()
        self.assertIsNone(self.successResultOf(d))
        self.assertEqual(len(self.lines), 40_000)
        self.assertEqual(self.lines[-1][2][:11], "line 039999")
        self.assertGreater(self.engine.transport.pauses, 1)

    def test_pausedWithTheAnswer(self) -> None:
        """Over the limit before the read saw its stream: paused as soon as it does."""
        d = self.read()
        self.engine.open()
        self.send(framed("2026-11-30T10:00:00Z " + "y" * (UNSPLIT_LIMIT + 10) + "\n"))
        self.assertFalse(self.engine.transport.paused)
        self.settle()
        self.assertEqual(self.engine.transport.pauses, 1)
        self.engine.end()
        self.settle()
        self.assertIsNone(self.successResultOf(d))
        self.assertEqual(len(self.lines), 1)

    def test_endedWhilePaused(self) -> None:
        """
        The whole answer came while the read was paused: no idle time is
        counted after it (nothing more can come), however slow the
        splitting, and every line comes.
        """
        d = self.read()
        self.engine.open()
        self.settle()
        data = b"".join(framed(f"2026-11-30T10:00:00Z line {i} " + "z" * 200 + "\n")
                        for i in range(3000))
        self.send(data)
        self.engine.end()
        self.assertTrue(self.engine.transport.paused)
        for _ in range(200):
            self.assertEqual(self.clock.getDelayedCalls(), [])
            self.turns.turn()
        self.clock.advance(self.engine.timeout * 2)
        self.settle()
        self.assertIsNone(self.successResultOf(d))
        self.assertEqual(len(self.lines), 3000)

    def test_engineError(self) -> None:
        """The engine's refusal fails the read with it."""
        self.engine.opening = fail(EngineError(404, "No such container: c"))
        self.failureResultOf(self.read(), EngineError)

    def test_cutShort(self) -> None:
        """A body cut short (the connection lost) fails the read: no half a log."""
        d = self.read()
        self.engine.open()
        self.engine.end(Failure(ConnectionLost()))
        self.settle()
        self.assertIn("was cut", str(self.failureResultOf(d, Unavailable).value))

    def test_notMultiplexed(self) -> None:
        """A body that is not multiplexed fails the read."""
        d = self.read()
        self.engine.open()
        assert self.engine.onData is not None
        self.engine.onData(b"\x07" + b"\0" * 7)
        self.settle()
        self.failureResultOf(d, StreamFormatError)
        self.assertTrue(self.engine.transport.stopped)

    def test_cancelBeforeTheAnswer(self) -> None:
        """Cancelled before the engine answered: the request is cancelled."""
        cancelled: list[object] = []
        self.engine.opening = Deferred(cancelled.append)
        d = self.read()
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertEqual(len(cancelled), 1)

    def test_cancelClosesTheConnection(self) -> None:
        """Cancelled while the body comes: the connection is closed, no line more is made."""
        d = self.read()
        self.engine.open()
        self.settle()
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertTrue(self.engine.transport.stopped)
        assert self.engine.onData is not None
        self.engine.onData(framed("2026-11-30T10:00:00Z late\n"))
        self.settle()
        self.assertEqual(self.lines, [])

    def test_stalledBodyFails(self) -> None:
        """
        An engine that stops sending mid-body: once nothing came for its
        C{timeout}, the read fails as unavailable, naming the container,
        and the connection is closed; no line comes after.
        """
        d = self.read()
        self.engine.open()
        self.send(framed("2026-11-30T10:00:00Z one\n"))
        self.settle()
        self.clock.advance(self.engine.timeout - 0.001)
        self.settle()
        self.assertNoResult(d)
        self.assertFalse(self.engine.transport.stopped)
        self.clock.advance(0.001)
        self.settle()
        error = self.failureResultOf(d, Unavailable).value
        self.assertEqual(
            str(error),
            "the docker engine stopped sending the log of web: "
            "nothing came for 10 s (request-timeout)",
        )
        self.assertTrue(self.engine.transport.stopped)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_stalledBeforeTheFirstByte(self) -> None:
        """A body that never starts (the status came, no byte after) fails the same way."""
        d = self.read()
        self.engine.open()
        self.settle()
        self.clock.advance(self.engine.timeout)
        self.settle()
        self.assertIn("stopped sending", str(self.failureResultOf(d, Unavailable).value))
        self.assertTrue(self.engine.transport.stopped)

    def test_stalledWhileSplitting(self) -> None:
        """
        The limit counts the engine's silence, even while the lines of what
        came are still being split: the read fails at its next slice.
        """
        d = self.read()
        self.engine.open()
        self.settle()
        self.send(b"".join(framed(f"2026-11-30T10:00:00Z {i:06} " + "x" * 1000 + "\n")
                           for i in range(200)))
        self.turns.turn()
        self.turns.turn()
        self.assertTrue(self.lines)
        self.clock.advance(self.engine.timeout)
        self.settle()
        self.failureResultOf(d, Unavailable)
        self.assertLess(len(self.lines), 200)
        self.assertTrue(self.engine.transport.stopped)

    def test_tricklingBodyIsReadWhole(self) -> None:
        """
        A body that keeps coming, a piece just under the limit after the
        other, for far longer than the limit in all, is read whole.
        """
        d = self.read()
        self.engine.open()
        for i in range(30):
            self.clock.advance(self.engine.timeout - 0.01)
            self.send(framed(f"2026-11-30T10:00:{i:02}Z line {i}\n"))
            self.settle()
        self.assertNoResult(d)
        self.engine.end()
        self.settle()
        self.assertIsNone(self.successResultOf(d))
        self.assertEqual([text for _, _, text in self.lines], [f"line {i}" for i in range(30)])
        self.assertFalse(self.engine.transport.stopped)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_endedBodyIsNotTimed(self) -> None:
        """
        Once the body has come whole, the limit no longer runs: its lines
        may take longer than it to be split.
        """
        d = self.read()
        self.engine.open()
        self.settle()
        self.send(b"".join(framed(f"2026-11-30T10:00:00Z {i:06} " + "x" * 1000 + "\n")
                           for i in range(200)))
        self.engine.end()
        self.turns.turn()
        self.assertLess(len(self.lines), 200)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(self.engine.timeout * 2)
        self.settle()
        self.assertIsNone(self.successResultOf(d))
        self.assertEqual(len(self.lines), 200)

    def test_cancelStopsTheLimit(self) -> None:
        """Cancelled while the body comes: the connection is closed, and no timer is left."""
        d = self.read()
        self.engine.open()
        self.send(framed("2026-11-30T10:00:00Z one\n"))
        self.settle()
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertTrue(self.engine.transport.stopped)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_stopClosesTheConnection(self) -> None:
        """
        The backend closed (its L{SlicedWork} stopped) while a body comes:
        the engine's connection is closed and no timer is left, whether
        the stream ends then or later; the read never fires.
        """
        for endsWhenClosed in (False, True):
            turns: Any = self.turns
            self.slices = SlicedWork(turns, timer=StepTimer())
            self.engine = OneStream(endsWhenClosed)
            d = self.read()
            self.engine.open()
            self.send(framed("2026-11-30T10:00:00Z one\n"))
            self.settle()
            self.slices.stop()
            self.settle()
            self.assertTrue(self.engine.transport.stopped)
            self.assertEqual(self.clock.getDelayedCalls(), [])
            self.assertNoResult(d)

    def test_stopBeforeTheAnswer(self) -> None:
        """The backend closed before the engine answered: the request is cancelled."""
        cancelled: list[object] = []
        self.engine.opening = Deferred(cancelled.append)
        d = self.read()
        self.slices.stop()
        self.assertEqual(len(cancelled), 1)
        self.assertNoResult(d)

    def test_noSlicesCancel(self) -> None:
        """
        Without slices (an exec check's read), cancelled while the body
        comes: the read fails with C{CancelledError}, the connection is
        closed, and no timer is left, even when the stream ends as it is
        closed (that end woke the read inside its own close, and it failed
        with C{ValueError: generator already executing}).
        """
        for endsWhenClosed in (False, True):
            self.engine = OneStream(endsWhenClosed)
            d = readLogBody(
                self.engine, self.clock, None, "/containers/c/logs", {}, lambda *line: None, "c1"
            )
            self.engine.open()
            self.send(framed("2026-11-30T10:00:00Z part"))
            d.cancel()
            self.failureResultOf(d, CancelledError)
            self.assertTrue(self.engine.transport.stopped)
            self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_cancelWhenTheStreamEndsAtOnce(self) -> None:
        """Sliced, cancelled, a stream that ends as it is closed: C{CancelledError} too."""
        self.engine = OneStream(endsWhenClosed=True)
        d = self.read()
        self.engine.open()
        self.send(framed("2026-11-30T10:00:00Z part"))
        self.settle()
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertTrue(self.engine.transport.stopped)
        self.settle()
        self.assertEqual(self.lines, [])

    def test_noSlicesStalled(self) -> None:
        """Without slices (an exec check's read), a stalled body fails the same way."""
        d = readLogBody(
            self.engine, self.clock, None, "/containers/c/logs", {}, lambda *line: None, "c1"
        )
        self.engine.open()
        self.send(framed("2026-11-30T10:00:00Z one\n"))
        self.clock.advance(self.engine.timeout)
        self.assertIn("the log of c1", str(self.failureResultOf(d, Unavailable).value))
        self.assertTrue(self.engine.transport.stopped)


class NotMultiplexedTests(SynchronousTestCase):
    """
    The Docker backend's reads (L{LogReader}) of an answer that is not a
    multiplexed stream: an engine failure, not a bug.
    """

    class Engine(StubEngine):
        def stream(  # type: ignore[override]
            self, method: str, path: str, params: Any, onData: Callable[[bytes], object],
            *a: Any, **kw: Any,
        ) -> Deferred[Stream]:
            return wholeStream(onData, b"\x07" + b"\0" * 7)

    def test_read(self) -> None:
        """A read fails with L{BackendError} naming the container (the id, wanting a name)."""
        reader = LogReader(self.Engine(), Clock())
        error = self.failureResultOf(reader.read("c1d", None, name="web"), BackendError).value
        self.assertEqual(
            str(error),
            "the docker engine sent the log of web not as a multiplexed stream: "
            "bad stream number 7",
        )
        self.assertIn("log of c1d ", str(self.failureResultOf(reader.read("c1d", 5)).value))

    def test_execCheck(self) -> None:
        """An exec check's read of one finds no reason (it failed with C{StreamFormatError})."""
        engine = self.Engine()
        check = ExecutableCheck(engine, LogReader(engine, Clock()))
        self.assertIsNone(self.successResultOf(check.failure("c1d")))
