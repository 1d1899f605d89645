"""
Drive a L{twisted.internet.task.Clock} the way a test of a backend needs:
from one scheduled call to the next, until a Deferred fires or some
simulated time has passed; L{ClockPerTest}, a fixture's clock for each test;
L{TurnClock}, a clock whose zero-delay calls wait for the next turn, as the
reactor's do.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

__all__ = ["ClockPerTest", "TurnClock", "advanceClock", "settleClock"]


class TurnClock(Clock):
    """
    A L{Clock} whose C{advance} runs only the calls due when it began:
    what they schedule for now runs in the next one, as in the reactor's
    turns (a L{Clock} would run a whole sliced job, or a chain of group
    commits, in one advance).
    """

    def advance(self, amount: float) -> None:
        self.rightNow += amount
        due = [call for call in self.calls if call.getTime() <= self.seconds()]
        for call in due:
            # One an earlier call cancelled or moved (reset) is not due.
            if call in self.calls and call.getTime() <= self.seconds():
                self.calls.remove(call)
                call.called = 1
                call.func(*call.args, **call.kw)


def settleClock(clock: Clock, d: Deferred[Any], timeout: float = 60.0) -> Deferred[Any]:
    """
    Advance C{clock} from one scheduled call to the next until C{d} fires,
    at most C{timeout} simulated seconds.

    @return: a Deferred that has already fired: with C{d}'s result, or (C{d}
        then cancelled) with L{defer.TimeoutError}.
    """
    results: list[Any] = []
    d.addBoth(results.append)
    deadline = clock.seconds() + timeout
    for _ in range(1_000_000):
        if results:
            break
        clock.advance(0)
        if results:
            break
        times = [c.getTime() for c in clock.getDelayedCalls() if c.active()]
        if not times or min(times) > deadline:
            break
        clock.advance(max(0.0, min(times) - clock.seconds()))
    if not results:
        d.cancel()
        results.clear()
        return defer.fail(defer.TimeoutError(f"no result after {timeout} simulated seconds"))
    result = results[0]
    if isinstance(result, Failure):
        return defer.fail(result)
    return defer.succeed(result)


def advanceClock(clock: Clock, seconds: float) -> None:
    """Let C{seconds} pass on C{clock}, one scheduled call at a time."""
    target = clock.seconds() + seconds
    clock.advance(0)
    while True:
        times = [c.getTime() for c in clock.getDelayedCalls() if c.active()]
        if not times or min(times) > target:
            break
        clock.advance(max(0.0, min(times) - clock.seconds()))
    clock.advance(max(0.0, target - clock.seconds()))


class ClockPerTest:
    """
    A base for the fixtures of shared suites that give each test a L{Clock}
    of its own: C{settle} turns it until a Deferred fires, C{sleep} lets
    simulated time pass on it.
    """

    def __init__(self) -> None:
        self._clocks: dict[TestCase, Clock] = {}

    def newClock(self, testCase: TestCase, now: float = 0.0) -> Clock:
        """A new clock at C{now} for C{testCase}, forgotten when it ends."""
        clock = self._clocks[testCase] = Clock()
        clock.advance(now)
        testCase.addCleanup(self._clocks.pop, testCase, None)
        return clock

    def clock(self, testCase: TestCase) -> Clock:
        """The clock of C{testCase}."""
        return self._clocks[testCase]

    def settle(self, testCase: TestCase, d: Deferred[Any], timeout: float) -> Deferred[Any]:
        return settleClock(self._clocks[testCase], d, timeout)

    def sleep(self, testCase: TestCase, seconds: float) -> Deferred[None]:
        advanceClock(self._clocks[testCase], seconds)
        return defer.succeed(None)
