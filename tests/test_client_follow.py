"""
C{logs --follow}: told apart among any options, and its lines shown alike
before and after the reply where events share the output (the shell,
piped lines).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from pycm.client.plan import isFollow, planCommand
from pycm.client.testing import FakeDaemon, event, ok
from tests.test_client_cli import FastHarness, Harness, options, pipeInto
from tests.test_client_shell import ShellHarness

BACKLOG = [{"time": "t", "stream": "stdout", "line": "old"}]
NEW = {"type": "log", "name": "web", "line": "new"}


def following(words: list[str]) -> Any:
    """The backlog, then (for a follow) a new line."""
    return [ok(BACKLOG), event(NEW)] if isFollow(words) else ok(BACKLOG)


class IsFollowTests(SynchronousTestCase):
    def test_amongOptions(self) -> None:
        """C{-f} or C{--follow} anywhere among the options, after a value option too."""
        for words in (["logs", "-f", "web"], ["logs", "--tail", "5", "-f", "web"],
                      ["logs", "--since=10m", "--follow", "web"], ["logs", "-n", "2", "-f", "a"]):
            self.assertTrue(isFollow(words), words)
            self.assertTrue(planCommand(words).follow, words)
        for words in (["logs", "web"], ["logs", "--tail", "-f", "web"], ["logs", "web", "-f"]):
            self.assertFalse(isFollow(words), words)
        # As the daemon reads them, long options in any case.
        self.assertTrue(isFollow(["logs", "--TAIL", "5", "--Follow", "web"]))


class OneShotFollowTests(SynchronousTestCase):
    """C{pycm logs --tail N -f NAME} follows, on both paths."""

    def check(self, harness: Any) -> None:
        held: Deferred[Any] = Deferred()
        h = harness(FakeDaemon({"logs": lambda words: held}))
        d = h.run(options("logs", "--tail", "5", "-f", "web"))
        held.callback([ok(BACKLOG), event(NEW)])
        h.flush()
        self.assertNoResult(d)
        h.daemon.sendEvent({"type": "log_end", "name": "web"})
        h.flush()
        self.assertEqual(self.successResultOf(d), 0)
        self.assertEqual(h.out.getvalue(), "old\nnew\n")

    def test_reactor(self) -> None:
        self.check(Harness)

    def test_fast(self) -> None:
        self.check(FastHarness)


class SharedOutputTests(SynchronousTestCase):
    """Where events share the output, every line of a followed log has its prefix."""

    def test_shell(self) -> None:
        h = ShellHarness(FakeDaemon({"logs": following}))
        h.type(b"logs -f web\r")
        screen = h.screen()
        self.assertIn(b"web | old\r\n", screen)
        self.assertIn(b"web | new\r\n", screen)

    def test_shellTimestamps(self) -> None:
        """With C{-t}, the same (and each line's time)."""
        h = ShellHarness(FakeDaemon({"logs": following}))
        h.type(b"logs -t -f web\r")
        self.assertIn(b"web | t old\r\n", h.screen())

    def test_piped(self) -> None:
        data = b"logs -f web\nlogs -t -f web\nlogs web\n"
        _, out, status = pipeInto(self, FakeDaemon({"logs": following}), data)
        self.assertEqual(status, 0)
        self.assertEqual(out.splitlines(),
                         ["web | old", "web | new", "web | t old", "web | new", "old"])
