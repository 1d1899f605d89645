"""L{pycm.testing.clock.TurnClock}: a clock that turns as the reactor does."""

from __future__ import annotations

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

    def test_movedByAnEarlierCall(self) -> None:
        """A call an earlier one of the same turn moved later waits for its time."""
        clock = TurnClock()
        ran: list[str] = []
        calls = {}
        clock.callLater(0, lambda: calls["late"].reset(5))
        calls["late"] = clock.callLater(0, ran.append, "late")
        clock.advance(0)
        self.assertEqual(ran, [])
        clock.advance(5)
        self.assertEqual(ran, ["late"])

    def test_cancelledByAnEarlierCall(self) -> None:
        """A call an earlier one of the same turn cancelled does not run."""
        clock = TurnClock()
        ran: list[str] = []
        calls = {}
        clock.callLater(0, lambda: calls["gone"].cancel())
        calls["gone"] = clock.callLater(0, ran.append, "gone")
        clock.advance(0)
        self.assertEqual(ran, [])
