"""
Log lines about single connections, bounded (L{ConnectionLog}): a client
that opens and closes connections as fast as it can must not fill the disk
with the daemon's log.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger


class LogBudget:
    """
    How many lines of one kind may be logged now: a token bucket on the
    daemon's clock, a burst of L{burst} lines, then L{rate} a second.  Lines
    beyond it are not dropped silently: they are counted, and one summary
    line says how many there were, L{interval} seconds after the first.

    @ivar rate: lines a second, once the burst is spent.
    @ivar burst: lines that may be logged at once.
    @ivar interval: seconds from the first line not logged to the summary.
    """

    log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        summary: str,
        rate: float = 2.0,
        burst: int = 20,
        interval: float = 10.0,
    ) -> None:
        """
        @param summary: the summary's format string; it gets C{count},
            C{seconds} and C{reasons} (C{"why: count, ..."}).
        """
        self._clock = clock
        self._summary = summary
        self.rate = rate
        self.burst = burst
        self.interval = interval
        self._tokens = float(burst)
        self._filled = clock.seconds()
        self._skipped: Counter[str] = Counter()
        self._summaryCall: IDelayedCall | None = None

    def allow(self, reason: str = "") -> bool:
        """May one more line be logged?  If not, it is counted for the summary."""
        now = self._clock.seconds()
        self._tokens = min(float(self.burst), self._tokens + (now - self._filled) * self.rate)
        self._filled = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        self._skipped[reason] += 1
        if self._summaryCall is None:
            self._summaryCall = self._clock.callLater(self.interval, self._summarize)
        return False

    def _summarize(self) -> None:
        self._summaryCall = None
        skipped, self._skipped = self._skipped, Counter()
        reasons = ", ".join(f"{reason}: {count}" for reason, count in skipped.most_common())
        self.log.info(
            self._summary,
            count=sum(skipped.values()),
            seconds=self.interval,
            reasons=reasons,
        )

    def stop(self) -> None:
        """Log the summary now if one is due (the daemon is stopping)."""
        if self._summaryCall is not None:
            self._summaryCall.cancel()
            self._summarize()


class ConnectionLog:
    """
    The budgets of a daemon's connection lines, shared by all its listeners:
    one each for connections opened and closed, connections the daemon
    closed itself, and wrong tokens and requests refused before C{auth}.
    """

    def __init__(self, clock: IReactorTime, **budget: Any) -> None:
        self.connections = LogBudget(
            clock,
            "{count} more connections opened and closed in the last {seconds:g} seconds "
            "(not logged one by one)",
            **budget,
        )
        self.forcedCloses = LogBudget(
            clock,
            "{count} more connections closed by the daemon in the last {seconds:g} seconds "
            "({reasons}; not logged one by one)",
            **budget,
        )
        self.authFailures = LogBudget(
            clock,
            "{count} more requests refused before auth in the last {seconds:g} seconds "
            "({reasons}; not logged one by one)",
            **budget,
        )


def describeDiscarded(buffer: bytes) -> str:
    """
    What a closing connection leaves unread, for the log: how many lines
    and bytes, never the bytes themselves.
    """
    if not buffer:
        return ""
    lines = buffer.count(b"\n")
    unfinished = len(buffer) - (buffer.rfind(b"\n") + 1)
    parts = []
    if lines:
        parts.append(f"{lines} request line{'s' if lines > 1 else ''} not yet served")
    if unfinished:
        parts.append(f"{unfinished} bytes of an unfinished line (no line end)")
    return " and ".join(parts)
