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
from pycm.model import LogLine
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


def cost(*texts: str, node: str | None = "one") -> int:
    """What the lines of C{LINES} with these texts cost in a reply, their node named so."""
    return sum(
        replyCost(LogLine(n / 1e9, "stdout", text, task=task, node=node))
        for n, task, _, text in LINES if text in texts
    )


class NewestRawLinesTests(SynchronousTestCase):
    def test_newestByTime(self) -> None:
        """
        The oldest by time go, not the first to come; the rest keep their
        order.  A line is counted without its node (named later).
        """
        kept = NewestRawLines(cost("a4", "b5", "a6", node=None))
        for n, task, _, text in LINES:
            kept.append(raw(n, task, text))
        self.assertEqual([x.text for x in kept.items()], ["b5", "a4", "a6"])
        self.assertEqual((kept.received, kept.cut), (6, True))

    def test_withinTheBudget(self) -> None:
        kept = NewestRawLines(cost(*(text for *_, text in LINES), node=None))
        for n, task, _, text in LINES:
            kept.append(raw(n, task, text))
        self.assertEqual(len(kept.items()), 6)
        self.assertFalse(kept.cut)


class ServiceReadTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.manager = ScriptedManager()
        self.manager.lines = list(LINES)

    def reader(self, budget: int, name: str = "one") -> ServiceLogReader:
        return ServiceLogReader(Clock(), self.manager, lambda: {"n1": name}, budget=budget)

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

    def test_namesCounted(self) -> None:
        """
        What fits is counted with the nodes' names, known only after the
        read: a long hostname fits fewer lines, and the C{--tail} said is
        one a reply can carry.
        """
        host = "worker-node-17.eu-west-1.compute.internal"
        budget = cost("a4", "b5", "a6", node=None) + 1
        d = self.reader(budget, host).read("sid", "web", None)
        error = str(self.failureResultOf(d, BadRequest).value)
        fits = int(error.rsplit("--tail=", 1)[1])
        self.assertLess(fits, 3)
        lines = self.successResultOf(self.reader(budget, host).read("sid", "web", fits))
        self.assertEqual([x.node for x in lines], [host] * fits)
        self.assertLessEqual(sum(replyCost(x) for x in lines), budget)
