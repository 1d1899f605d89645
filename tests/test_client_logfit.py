"""
A C{logs} over what one reply may carry: the one-shot client shows the
newest lines that fit, says so on stderr, and exits 0
(L{pycm.client.logfit}).
"""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from pycm.client.logfit import fittingLogs
from pycm.client.testing import FakeDaemon, ok
from pycm.errors import BadRequest, NotFound
from tests.test_client_cli import FastHarness, Harness, options

OVER = ("the last 300000 lines are over the 8 MiB a reply may carry; "
        "the last 2 fit: use --tail=2")
LINES = [{"time": "t", "stream": "stdout", "line": "one"},
         {"time": "t", "stream": "stdout", "line": "two"}]


class FittingLogsTests(SynchronousTestCase):
    def test_tailReplaced(self) -> None:
        """Whatever the tail was, and however written, it becomes the one that fits."""
        for words, retry in (
            (["logs", "--tail=all", "web"], ("logs", "--tail=2", "web")),
            (["logs", "-n", "all", "-f", "web"], ("logs", "-f", "--tail=2", "web")),
            (["logs", "--TAIL", "500000", "web"], ("logs", "--tail=2", "web")),
            (["logs", "--since=1h", "web"], ("logs", "--since=1h", "--tail=2", "web")),
            (["logs", "--since", "1h", "--", "-web"],
             ("logs", "--since", "1h", "--tail=2", "--", "-web")),
        ):
            fitting = fittingLogs(words, BadRequest(OVER))
            assert fitting is not None
            self.assertEqual(fitting[0], retry, words)
            self.assertEqual(fitting[1], "pycm: " + words[-1] + ": the last 2 lines only: "
                             "the 300000 asked for are over the 8 MiB a reply may carry")

    def test_otherwise(self) -> None:
        """Another error, another command, or not one line that fits: nothing to ask."""
        self.assertIsNone(fittingLogs(["logs", "web"], NotFound("no such container: web")))
        self.assertIsNone(fittingLogs(["logs", "web"], BadRequest("bad --tail 'x'")))
        self.assertIsNone(fittingLogs(["inspect", "web"], BadRequest(OVER)))
        self.assertIsNone(fittingLogs(["logs", "web"], BadRequest(
            OVER.replace("last 2 fit: use --tail=2", "last 0 fit: use --tail=0"))))


def overReply(words: list[str]) -> Any:
    """The daemon's C{logs}: over a reply, but for the tail that fits."""
    return ok(LINES) if "--tail=2" in words else f"ERR bad_request {OVER}"


class OneShotTests(SynchronousTestCase):
    def check(self, harness: Any) -> None:
        h = harness(FakeDaemon({"logs": overReply}))
        status = self.successResultOf(h.run(options("logs", "--tail=all", "web")))
        self.assertEqual((status, h.out.getvalue()), (0, "one\ntwo\n"))
        self.assertEqual(h.err.getvalue(), "pycm: web: the last 2 lines only: the 300000 "
                         "asked for are over the 8 MiB a reply may carry\n")
        self.assertEqual(h.daemon.received, ["logs --tail=all web", "logs --tail=2 web"])

    def test_reactor(self) -> None:
        self.check(Harness)

    def test_fast(self) -> None:
        self.check(FastHarness)

    def test_jsonKeepsTheError(self) -> None:
        """With C{--json} the daemon's error is the answer (a program decides)."""
        h = FastHarness(FakeDaemon({"logs": overReply}))
        status = self.successResultOf(h.run(options("--json", "logs", "--tail=all", "web")))
        self.assertEqual(status, 2)  # bad_request's
        self.assertIn("bad_request", h.err.getvalue())
        self.assertEqual(h.daemon.received, ["--json logs --tail=all web"])
