"""
Reading a C{GET .../logs} answer (no C{follow}) as it comes off the
engine's socket (L{readLogBody}): the multiplexed body is split into lines
a slice at a time (L{pycm.slicedwork}), between other connections'
requests, so that a log of tens of megabytes holds up no one; cancelled
(the client has gone), or given up on an engine that stopped sending
(L{IdleLimit}), the read closes the engine's connection.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Generator
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.python.failure import Failure

from pycm.backends.docker.engine import Stream
from pycm.backends.docker.interfaces import IDockerEngine
from pycm.backends.docker.stream import Demultiplexer, LogLineSplitter
from pycm.errors import Unavailable
from pycm.slicedwork import Job, SlicedWork, runWaiting

#: Bytes of the body split into lines in one slice (a few milliseconds).
SLICE_BYTES = 32 * 1024
#: Bytes of the body come and not split yet past which the engine's
#: connection is read no more until they are split (to a quarter of it):
#: however many reads share the slices, what waits is bounded.
UNSPLIT_LIMIT = 8 * SLICE_BYTES

#: What is called with each line: its stream, timestamp (or None), text.
LineReceiver = Callable[[str, "str | None", str], None]


class IdleLimit:
    """
    Calls C{expired} once C{seconds} of C{clock} have passed with nothing
    received: counted from L{start}, and again from each L{received},
    until L{stop}.
    """

    def __init__(self, clock: IReactorTime, seconds: float, expired: Callable[[], None]) -> None:
        self.seconds = seconds
        self._clock = clock
        self._expired = expired
        self._call: IDelayedCall | None = None

    def start(self) -> None:
        """Start counting."""
        self._call = self._clock.callLater(self.seconds, self._expired)

    def received(self) -> None:
        """Something came: count from now again (once started, until stopped)."""
        if self._call is not None and self._call.active():
            self._call.reset(self.seconds)

    def stop(self) -> None:
        """Count no more (idempotent)."""
        if self._call is not None and self._call.active():
            self._call.cancel()


class _Body:
    """
    The pieces of a body come and not split yet, and a wake-up for who
    waits on more.  Past C{limit} bytes of them it calls C{pause}, and
    C{resume} once they are down to a quarter of it.

    @ivar stopped: why the body was given up on (L{stop}), or None.
    """

    def __init__(self, limit: int = UNSPLIT_LIMIT) -> None:
        self.pieces: deque[bytes] = deque()
        self.size = 0
        self.limit = limit
        self.paused = False
        self.pause: Callable[[], None] = lambda: None
        self.resume: Callable[[], None] = lambda: None
        self.ended = False
        self.stopped: Exception | None = None
        self._waiting: Deferred[None] | None = None

    def received(self, data: bytes) -> None:
        self.pieces.append(data)
        self.size += len(data)
        if not self.paused and self.size > self.limit:
            self.paused = True
            self.pause()
        self._wake()

    def take(self, most: int) -> bytes:
        """The next piece, cut to C{most} bytes (the rest stays first)."""
        piece = self.pieces.popleft()
        if len(piece) > most:
            self.pieces.appendleft(piece[most:])
            piece = piece[:most]
        self.size -= len(piece)
        if self.paused and self.size <= self.limit // 4:
            self.paused = False
            self.resume()
        return piece

    def end(self, _: object = None) -> None:
        self.ended = True
        self._wake()

    def stop(self, reason: Exception) -> None:
        """Give up on the body: its splitting fails with C{reason} at its next step."""
        self.stopped = reason
        self._wake()

    def more(self) -> Deferred[None]:
        """Fires once a piece comes or the body ends."""
        self._waiting = Deferred()
        return self._waiting

    def _wake(self) -> None:
        waiting, self._waiting = self._waiting, None
        if waiting is not None:
            waiting.callback(None)


def splitBody(
    body: _Body, lineReceived: LineReceiver, sliceBytes: int = SLICE_BYTES
) -> Generator[Deferred[None] | None, None, None]:
    """
    The job splitting C{body} into lines for C{lineReceived}: at most
    C{sliceBytes} of it a slice (a piece is cut to that), waiting while
    the engine has sent nothing more.

    @raise pycm.backends.docker.stream.StreamFormatError: the body is not
        a multiplexed stream.
    @raise Exception: the body's C{stopped}, once it is given up on.
    """
    splitter = LogLineSplitter(lineReceived, True)
    demux = Demultiplexer(splitter.frameReceived)
    done = 0
    while True:
        if body.stopped is not None:
            raise body.stopped
        if not body.pieces:
            if body.ended:
                break
            yield body.more()
            done = 0
            continue
        if done >= sliceBytes:
            yield None
            done = 0
        piece = body.take(sliceBytes)
        demux.feed(piece)
        done += len(piece)
    splitter.flush()


def stalled(name: str, seconds: float) -> Unavailable:
    """Why a read of C{name}'s log is given up on: nothing came for C{seconds}."""
    return Unavailable(
        f"the docker engine stopped sending the log of {name}: "
        f"nothing came for {seconds:g} s (request-timeout)"
    )


def _read(
    engine: IDockerEngine,
    clock: IReactorTime,
    path: str,
    params: dict[str, Any],
    lineReceived: LineReceiver,
    name: str,
) -> Job[None]:
    """
    The whole read: open the stream, split it, close it at the end, or
    once nothing came for the engine's C{timeout}.
    """
    body = _Body()
    idle = IdleLimit(clock, engine.timeout, lambda: body.stop(stalled(name, engine.timeout)))

    def received(data: bytes) -> None:
        idle.received()
        body.received(data)

    def ended(_: object) -> None:
        idle.stop()
        body.end()

    opening = engine.stream("GET", path, params, received)
    outcome: list[Any] = []
    try:
        # Waiting must not fail: the opening's failure (EngineError, ...)
        # is raised here.
        opening.addBoth(outcome.append)
        if not outcome:
            yield opening
        if isinstance(outcome[0], Failure):
            outcome.pop().raiseException()
        stream: Stream = outcome[0]

        def pause() -> None:
            # Not the engine's pause: no limit on it meanwhile.
            idle.stop()
            stream.pause()

        def resume() -> None:
            stream.resume()
            if not stream.ended.called:
                idle.start()

        body.pause, body.resume = pause, resume
        if body.paused:
            pause()  # it came with the answer
        else:
            idle.start()
        stream.ended.addCallback(ended)
        yield from splitBody(body, lineReceived)
        if stream.failure is not None:
            raise Unavailable(f"the engine's answer to GET {path} was cut: "
                              f"{stream.failure.getErrorMessage()}")
    finally:
        idle.stop()
        if not outcome:
            opening.cancel()
        elif isinstance(outcome[0], Stream):
            outcome[0].cancel()


def readLogBody(
    engine: IDockerEngine,
    clock: IReactorTime,
    slices: SlicedWork | None,
    path: str,
    params: dict[str, Any],
    lineReceived: LineReceiver,
    name: str,
) -> Deferred[None]:
    """
    Ask C{engine} for C{GET path} (the log of the container or service
    C{name}, C{timestamps} on, no C{follow}) and call C{lineReceived} with
    each of its lines, a slice at a time on C{slices} (None: without
    slices, for a few lines).  The body may take as long as it takes, but
    not a pause longer than the engine's C{timeout} (request-timeout) on
    C{clock}: the read is then given up on.

    @return: a Deferred firing with None after the last line; failing as
        L{IDockerEngine.stream} does, with
        L{pycm.backends.docker.stream.StreamFormatError} for a body that is
        not multiplexed, L{Unavailable} for one cut short or one the engine
        stopped sending (its connection closed).  Cancelling it closes the
        engine's connection and stops the work.
    """
    job = _read(engine, clock, path, params, lineReceived, name)
    return runWaiting(job) if slices is None else slices.run(job)


__all__ = ["SLICE_BYTES", "UNSPLIT_LIMIT", "IdleLimit", "readLogBody", "splitBody", "stalled"]
