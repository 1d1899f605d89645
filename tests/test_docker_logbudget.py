"""
Tests for the bound on what a Docker log read holds
(L{pycm.backends.docker.follow.NewestLines}): the newest lines a reply can
carry, counted as the daemon counts its reply; on a scripted engine.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from pycm.backends.docker.engine import Stream
from pycm.backends.docker.follow import REPLY_BUDGET, LogReader, NewestLines, replyCost
from pycm.daemon.handlers.observing import MAX_LOGS_REPLY, encodeLogLines
from pycm.errors import BadRequest
from pycm.model import LogLine
from pycm.slicedwork import runAtOnce
from tests.stubengine import StubEngine, wholeStream


def line(n: int, text: str = "x" * 40) -> LogLine:
    return LogLine(1_764_000_000.0 + n, "stdout", f"{n} {text}")


class NewestLinesTests(SynchronousTestCase):
    def test_budgetIsTheReplys(self) -> None:
        """The budget is the most a reply may carry, as the daemon counts it."""
        self.assertEqual(REPLY_BUDGET, MAX_LOGS_REPLY)
        lines = [line(n) for n in range(3)]
        reply = runAtOnce(encodeLogLines(lines))
        self.assertEqual(sum(replyCost(x) for x in lines), sum(len(x) + 1 for x in reply.items))

    def test_costIsTheEncodersBytes(self) -> None:
        """Whatever a line holds, its cost is what the daemon's reply gives it."""
        texts = ["", "plain", 'quote " and \\ back', "caf\u00e9 \u2603", "tab\tnul\x00\x1b[31m",
                 "lone \ud800 surrogate", "x" * 5000]
        lines = [LogLine(when, stream, text, task=task, node=node)
                 for text in texts for stream in ("stdout", "stderr")
                 for when in (0.0, 1_764_000_000.123, 1e12)
                 for task, node in ((None, None), ("t1", "n1"))]
        reply = runAtOnce(encodeLogLines(lines))
        self.assertEqual([replyCost(x) for x in lines], [len(x) + 1 for x in reply.items])

    def test_newestKeptWithinTheBudget(self) -> None:
        """Past the budget the oldest go; what is kept fits, and the read is cut."""
        budget = sum(replyCost(line(n)) for n in range(15, 25))
        kept = NewestLines(None, budget)
        for n in range(25):
            kept.append(f"ts{n}", line(n))
        self.assertEqual([x.line.split()[0] for _, x in kept.items()],
                         [str(n) for n in range(15, 25)])
        self.assertEqual([ts for ts, _ in kept.items()][0], "ts15")
        self.assertLessEqual(kept.size, budget)
        self.assertTrue(kept.cut)
        self.assertEqual(
            str(kept.tooMany()),
            "the last 25 lines are over the 0 MiB a reply may carry; the last 10 fit: "
            "use --tail=10",
        )

    def test_countIsNoCut(self) -> None:
        """Lines that go for the count (C{--tail} with C{--since}) do not cut the read."""
        kept = NewestLines(3)
        for n in range(10):
            kept.append(None, line(n))
        self.assertEqual([x.line.split()[0] for _, x in kept.items()], ["7", "8", "9"])
        self.assertFalse(kept.cut)
        self.assertEqual(kept.size, sum(replyCost(line(n)) for n in (7, 8, 9)))

    def test_countAndBudget(self) -> None:
        """With both, the error names the lines asked for, not every line read."""
        kept = NewestLines(5, replyCost(line(8)) + replyCost(line(9)))
        for n in range(10):
            kept.append(None, line(n))
        self.assertTrue(kept.cut)
        self.assertIn("the last 5 lines are over", str(kept.tooMany()))
        self.assertIn("use --tail=2", str(kept.tooMany()))

    def test_sinceWithATail(self) -> None:
        """
        With C{--since} and C{--tail=N} (the count kept here): long lines
        the budget dropped early are no cut if the last N fit.
        """
        kept = NewestLines(2, replyCost(line(1, "y" * 100)) + 1)
        for n in range(5):
            kept.append(None, line(n, "y" * 100))
        for n in range(5, 7):
            kept.append(None, line(n, "z"))
        self.assertFalse(kept.cut)
        self.assertEqual([x.line for _, x in kept.items()], ["5 z", "6 z"])

    def test_noneAsked(self) -> None:
        """C{--tail=0}: nothing is kept, nothing is cut."""
        kept = NewestLines(0)
        kept.append(None, line(1))
        self.assertEqual((kept.items(), kept.cut, kept.size), ([], False, 0))

    def test_oneLineOverTheBudget(self) -> None:
        """A single line bigger than the budget is not kept: none fit."""
        kept = NewestLines(None, 10)
        kept.append(None, line(1))
        self.assertEqual(kept.items(), [])
        self.assertIn("the last 0 fit", str(kept.tooMany()))


def frame(text: str) -> bytes:
    payload = text.encode()
    return struct.pack(">BxxxL", 1, len(payload)) + payload


class Engine(StubEngine):
    """An engine whose log holds C{count} lines."""

    def __init__(self, count: int) -> None:
        self.count = count

    def stream(  # type: ignore[override]
        self, method: str, path: str, params: Any, onData: Callable[[bytes], object],
        *a: Any, **kw: Any,
    ) -> Deferred[Stream]:
        tail = params.get("tail", "all")
        first = 0 if tail == "all" else max(self.count - int(tail), 0)
        body = b"".join(
            frame(f"2025-11-24T16:00:{n % 60:02d}.{n:09d}Z {n} {'y' * 40}\n")
            for n in range(first, self.count)
        )
        return wholeStream(onData, body)


class ReadTests(SynchronousTestCase):
    def test_fits(self) -> None:
        """A log within the budget is read whole."""
        reader = LogReader(Engine(30), Clock(), budget=10_000)
        lines = self.successResultOf(reader.read("c1d", None, name="web"))
        self.assertEqual(len(lines), 30)

    def test_overTheBudget(self) -> None:
        """
        A log over the budget fails the read with C{bad_request}, saying
        how many of the newest lines fit: that many are read whole.
        """
        reader = LogReader(Engine(300), Clock(), budget=10_000)
        error = self.failureResultOf(reader.read("c1d", None, name="web"), BadRequest).value
        self.assertIn("the last 300 lines are over", str(error))
        fits = int(str(error).rsplit("--tail=", 1)[1])
        self.assertGreater(fits, 50)
        lines = self.successResultOf(reader.read("c1d", fits, name="web"))
        self.assertEqual(len(lines), fits)
        self.assertEqual(lines[-1][1].line.split()[0], "299")
        self.failureResultOf(reader.read("c1d", fits + 1, name="web"), BadRequest)
