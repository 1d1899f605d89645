"""L{pycm.testing.clock.TurnClock}: a clock that turns as the reactor does."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from pycm.testing.clock import TurnClock


class TurnClockTests(SynchronousTestCase):
    """C{advance} runs the calls due when it began, as one reactor turn."""

    def test_scheduledNowRunsNextTurn(self) -> None:
        """A zero-delay call made by a call runs in the next C{advance}."""
        clock = TurnClock()
        ran: list[str] = []
        clock.callLater(0, lambda: clock.callLater(0, ran.append, "second"))
        clock.advance(0)
        self.assertEqual(ran, [])
        clock.advance(0)
        self.assertEqual(ran, ["second"])

    def sameTurn(self, label: str, act: Callable[[Any], object]) -> tuple[TurnClock, list[str]]:
        """
        Two zero-delay calls of one turn, the first doing C{act} to the
        second (which appends C{label}); that turn run.
        """
        clock = TurnClock()
        ran: list[str] = []
        calls = {}
        clock.callLater(0, lambda: act(calls[label]))
        calls[label] = clock.callLater(0, ran.append, label)
        clock.advance(0)
        return clock, ran

    def test_movedByAnEarlierCall(self) -> None:
        """A call an earlier one of the same turn moved later waits for its time."""
        clock, ran = self.sameTurn("late", lambda call: call.reset(5))
        self.assertEqual(ran, [])
        clock.advance(5)
        self.assertEqual(ran, ["late"])

    def test_cancelledByAnEarlierCall(self) -> None:
        """A call an earlier one of the same turn cancelled does not run."""
        clock, ran = self.sameTurn("gone", lambda call: call.cancel())
        self.assertEqual(ran, [])
