"""
Reading containers' output: lines out of a byte stream (L{LineSplitter}),
and a budget on the daemon's time spent on it (L{OutputPacer}), so that a
container flooding its output cannot take the daemon's CPU.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime

#: The longest line kept as one line; longer ones are cut into pieces.
MAX_LINE = 64 * 1024
#: The share of its time the daemon spends on containers' output, at most.
OUTPUT_SHARE = 0.3
#: The handling time, in seconds, that may be spent in one go after a
#: quiet spell before reading is paused.
OUTPUT_BURST = 0.02


def _cut(line: bytes, maxLine: int) -> list[bytes]:
    """C{line} in pieces of at most C{maxLine} bytes (an empty line stays one)."""
    if len(line) <= maxLine:
        return [line]
    return [line[i : i + maxLine] for i in range(0, len(line), maxLine)]


class LineSplitter:
    """
    One stream's bytes in, complete lines out: a newline ends a line (and
    is dropped); a line longer than C{maxLine} bytes is cut into several of
    at most C{maxLine} bytes, as soon as it is that long, so nothing grows
    without bound and nothing is lost.
    """

    def __init__(self, maxLine: int = MAX_LINE) -> None:
        self.maxLine = maxLine
        self._partial = b""

    def feed(self, data: bytes) -> list[bytes]:
        """The lines C{data} completes, in order."""
        if self._partial:
            data = self._partial + data
        lines = data.split(b"\n")
        rest = lines.pop()
        maxLine = self.maxLine
        if lines and max(map(len, lines)) > maxLine:
            lines = [piece for line in lines for piece in _cut(line, maxLine)]
        while len(rest) > maxLine:
            lines.append(rest[:maxLine])
            rest = rest[maxLine:]
        self._partial = rest
        return lines

    def flush(self) -> list[bytes]:
        """The last line, without a newline, if there is one (at the end)."""
        partial, self._partial = self._partial, b""
        return [partial] if partial else []

    def __len__(self) -> int:
        """How many bytes wait for their newline."""
        return len(self._partial)


class OutputPacer:
    """
    A budget of the daemon's time for containers' output, shared by every
    reader: a bucket of seconds that fills at C{share} seconds per second
    (on C{clock}) up to C{burst}, and that each handled chunk of output
    empties by the time it took (measured on C{clock}: the reactor's, so
    it is wall time, which never undercounts the CPU).

    A reader asks L{spend} after each chunk; when that says the bucket is
    empty, the reader pauses and L{hold}s: it is resumed, with every other
    paused reader, once the bucket is half full again.
    """

    def __init__(
        self, clock: IReactorTime, share: float = OUTPUT_SHARE, burst: float = OUTPUT_BURST
    ) -> None:
        if not 0 < share <= 1 or burst <= 0:
            raise ValueError("share must be in (0, 1] and burst positive")
        self.clock = clock
        self.share = share
        self.burst = burst
        self._balance = burst
        self._last = clock.seconds()
        self._held: dict[Callable[[], None], None] = {}
        self._wake: IDelayedCall | None = None

    def _refill(self, until: float | None = None) -> float:
        now = self.clock.seconds() if until is None else until
        elapsed = max(now - self._last, 0.0)
        self._last = max(now, self._last)
        self._balance = min(self.burst, self._balance + elapsed * self.share)
        return self._balance

    def spend(self, seconds: float) -> bool:
        """
        Count C{seconds} of handling time, which just ended.

        @return: whether the reader may go on (False: pause, then L{hold}).
        """
        seconds = max(seconds, 0.0)
        now = self.clock.seconds()
        self._refill(now - seconds)
        # The bucket fills while the handling goes on too.
        self._balance -= seconds * (1 - self.share)
        self._last = max(now, self._last)
        return self._balance > 0

    def hold(self, resume: Callable[[], None]) -> None:
        """Call C{resume} once the bucket is half full again."""
        self._held[resume] = None
        if self._wake is None:
            self._schedule()

    def release(self, resume: Callable[[], None]) -> None:
        """Forget a reader that has ended."""
        self._held.pop(resume, None)
        if not self._held and self._wake is not None:
            if self._wake.active():
                self._wake.cancel()
            self._wake = None

    def _schedule(self) -> None:
        missing = self.burst / 2 - self._refill()
        self._wake = self.clock.callLater(max(missing, 0.0) / self.share, self._wakeUp)

    def _wakeUp(self) -> None:
        self._wake = None
        if self._refill() < self.burst / 2 * 0.999:
            self._schedule()
            return
        held, self._held = list(self._held), {}
        for resume in held:
            resume()

    @property
    def holding(self) -> int:
        """How many readers are paused."""
        return len(self._held)
