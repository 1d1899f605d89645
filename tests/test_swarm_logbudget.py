"""
Tests for the bound on what a read of a service's log holds
(L{pycm.backends.swarm.loglines.NewestRawLines}): the newest lines by time
that a reply can carry, whatever order the manager sends them in; on a
scripted manager.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from pycm.backends.docker.follow import replyCost
from pycm.backends.swarm.loglines import NewestRawLines, RawLine
from pycm.backends.swarm.logs import ServiceLogReader
from pycm.errors import BadRequest
from tests.test_swarm_logs import S, ScriptedManager

#: Task by task, as a manager sends them: task a's lines are the newest.
LINES = [
    (1 * S, "b", "n1", "b1"),
    (2 * S, "b", "n1", "b2"),
    (5 * S, "b", "n1", "b5"),
    (3 * S, "a", "n1", "a3"),
    (4 * S, "a", "n1", "a4"),
    (6 * S, "a", "n1", "a6"),
]


def raw(nanos: int, task: str, text: str) -> RawLine:
    return RawLine(task, "n1", None, nanos, "stdout", text)


def cost(*texts: str) -> int:
    """What the lines of C{LINES} with these texts cost together."""
    return sum(
        replyCost(raw(n, task, text).logLine({})) for n, task, _, text in LINES if text in texts
    )


class NewestRawLinesTests(SynchronousTestCase):
    def test_newestByTime(self) -> None:
        """The oldest by time go, not the first to come; the rest keep their order."""
        kept = NewestRawLines(cost("a4", "b5", "a6"))
        for n, task, _, text in LINES:
            kept.append(raw(n, task, text))
        self.assertEqual([x.text for x in kept.items()], ["b5", "a4", "a6"])
        self.assertEqual((kept.received, kept.cut), (6, True))

    def test_withinTheBudget(self) -> None:
        kept = NewestRawLines(cost(*(text for *_, text in LINES)))
        for n, task, _, text in LINES:
            kept.append(raw(n, task, text))
        self.assertEqual(len(kept.items()), 6)
        self.assertFalse(kept.cut)


class ServiceReadTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.manager = ScriptedManager()
        self.manager.lines = list(LINES)

    def reader(self, budget: int) -> ServiceLogReader:
        return ServiceLogReader(Clock(), self.manager, lambda: {"n1": "one"}, budget=budget)

    def test_allOverTheBudget(self) -> None:
        """
        C{--tail=all} of a log over the budget is C{bad_request}, saying
        how many of the newest lines fit.
        """
        d = self.reader(cost("a4", "b5", "a6")).read("sid", "web", None)
        error = self.failureResultOf(d, BadRequest).value
        self.assertEqual(
            str(error),
            "the last 6 lines are over the 0 MiB a reply may carry; the last 3 fit: "
            "use --tail=3",
        )

    def test_tailThatFits(self) -> None:
        """The tail that fits is read: the newest lines by time, across the tasks."""
        lines = self.successResultOf(self.reader(cost("a4", "b5", "a6")).read("sid", "web", 3))
        self.assertEqual([x.line for x in lines], ["a4", "b5", "a6"])
        d = self.reader(cost("a4", "b5", "a6")).read("sid", "web", 4)
        self.assertIn("use --tail=3", str(self.failureResultOf(d, BadRequest).value))
