"""
C{logs --follow}: told apart among any options, and its lines shown alike
before and after the reply where events share the output (the shell,
piped lines).
"""

from __future__ import annotations

import os
import subprocess
from typing import Any

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase, TestCase

from pycm.client.plan import isFollow, planCommand
from pycm.client.testing import FakeDaemon, event, ok
from tests.test_client_cli import FakeStdio, FastHarness, Harness, attach, options, pipeInto
from tests.test_client_shell import ShellHarness

from .e2e import DEADLINE, RealDaemon, pycmCommand

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
        _, out, status = pipeInto(self, FakeDaemon({"logs": followedToItsEnd}), data)
        self.assertEqual(status, 0)
        self.assertEqual(out.splitlines(),
                         ["web | old", "web | new", "web: end of logs", "web | t old",
                          "web | new", "web: end of logs", "old"])


def followedToItsEnd(words: list[str]) -> Any:
    """L{following}, then (for a follow) the end of the log."""
    if not isFollow(words):
        return following(words)
    return [*following(words), event({"type": "log_end", "name": words[-1]})]


class PipedFollowTests(SynchronousTestCase):
    """
    A piped C{logs -f NAME} is printed to its end after the input ends, as
    C{docker logs -f} prints it (L{pycm.client.piped}).
    """

    def pipe(self, data: bytes, daemon: FakeDaemon, **kw: Any) -> tuple[Harness, Any, Any]:
        """Pipe C{data} in and end the input: the harness, the status, the output."""
        h = Harness(daemon)
        stdio = FakeStdio()
        d = h.run(options(**kw), attachStdio=attach(stdio))
        stdio.protocol.dataReceived(data)
        stdio.protocol.readConnectionLost()
        h.flush()
        return h, d, stdio

    def test_toItsEnd(self) -> None:
        """The client waits for each followed log's end, then leaves with 0."""
        h, d, stdio = self.pipe(b"logs -f web db\n", FakeDaemon({"logs": following}))
        self.assertNoResult(d)
        h.daemon.sendEvent({"type": "log_end", "name": "web"})
        h.flush()
        self.assertNoResult(d)
        h.daemon.sendEvent({"type": "log", "name": "db", "line": "later"})
        h.daemon.sendEvent({"type": "log_end", "name": "db"})
        h.flush()
        self.assertEqual(self.successResultOf(d), 0)
        self.assertIn(b"db | later\n", stdio.value())

    def test_json(self) -> None:
        """With C{--json} too (the line sent as written, C{-fn5} as the daemon reads it)."""
        h, d, stdio = self.pipe(b"logs -fn5 web\n", FakeDaemon({"logs": following}),
                                json=True)
        self.assertNoResult(d)
        h.daemon.sendEvent({"type": "log_end", "name": "web"})
        h.flush()
        self.assertEqual(self.successResultOf(d), 0)
        self.assertEqual(stdio.value().splitlines()[-1],
                         b'EVENT {"type": "log_end", "name": "web"}')

    def test_unfollowed(self) -> None:
        """An C{unfollow NAME} line ends it (the daemon sends its end first)."""
        daemon = FakeDaemon({
            "logs": following,
            "unfollow": [event({"type": "log_end", "name": "web"}),
                         ok({"name": "web", "following": False})],
        })
        _, out, status = pipeInto(self, daemon, b"logs -f web\nunfollow web\n")
        self.assertEqual(status, 0)
        self.assertIn("web: end of logs", out)

    def test_notFound(self) -> None:
        """A follow the daemon refused is not waited for."""
        daemon = FakeDaemon({"logs": lambda words: "ERR not_found no such container: web"})
        _, _, status = pipeInto(self, daemon, b"logs -f web\n")
        self.assertEqual(status, 1)

    def test_daemonLost(self) -> None:
        """The daemon gone while a log is followed: said, status 3."""
        h, d, stdio = self.pipe(b"logs -f web\n", FakeDaemon({"logs": following}))
        self.assertNoResult(d)
        h.daemon.disconnect()
        h.flush()
        self.assertEqual(self.successResultOf(d), 3)
        self.assertIn("lost the connection", h.err.getvalue())


class PipedFollowE2ETests(TestCase):
    """The installed C{pycm} client, piped, against a real daemon (process backend)."""

    def test_toTheContainersEnd(self) -> None:
        """
        C{printf 'run ...\\nlogs -f ww\\n' | pycm}: the log's later lines are
        printed after the input ended, and the client leaves with 0 once
        the container has stopped.
        """
        daemon = RealDaemon(self, backend="process").start()
        release = os.path.join(daemon.home, "release")
        script = (
            f"run ww host sh -c 'echo first; while [ ! -e {release} ]; do sleep 0.02; done;"
            f" echo second'\nlogs -f ww\n"
        )
        client = subprocess.Popen(pycmCommand(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, env=dict(daemon.clientEnv(),
                                                                   NO_COLOR="1"))
        self.addCleanup(client.kill)
        assert client.stdin is not None and client.stdout is not None
        client.stdin.write(script.encode())
        client.stdin.close()
        lines = []
        while b"first" not in (lines[-1] if lines else b""):
            line = client.stdout.readline()
            if not line:
                self.fail(f"the client left before the first line: {client.stderr.read()!r}")
            lines.append(line)
        open(release, "w").close()
        rest = client.stdout.read()
        self.assertEqual(client.wait(timeout=DEADLINE), 0, client.stderr.read())  # type: ignore
        self.assertEqual(rest.splitlines(), [b"ww | second", b"ww: end of logs"])


STAMPED = {"type": "log", "name": "web", "time": "2026-12-02T08:00:01.000Z", "line": "new"}


class StampedFollowTests(SynchronousTestCase):
    """
    C{logs -t -f}: a line that comes after the reply (an event) is shown
    with its time too, as the backlog is, in the shell and piped.
    """

    def stamping(self, words: list[str]) -> Any:
        return [ok(BACKLOG), event(STAMPED)] if isFollow(words) else ok(BACKLOG)

    def test_shell(self) -> None:
        h = ShellHarness(FakeDaemon({"logs": self.stamping}))
        h.type(b"logs -tf web\r")
        self.assertIn(b"web | 2026-12-02T08:00:01.000Z new\r\n", h.screen())

    def test_piped(self) -> None:
        data = b"logs -t -f web\n"
        daemon = FakeDaemon({"logs": lambda words: [*self.stamping(words), event(
            {"type": "log_end", "name": "web"})]})
        _, out, status = pipeInto(self, daemon, data)
        self.assertEqual((status, out.splitlines()),
                         (0, ["web | t old", "web | 2026-12-02T08:00:01.000Z new",
                              "web: end of logs"]))

    def test_onlyWhereAsked(self) -> None:
        """Without C{-t}, and after the log's end, lines come without their time."""
        h = ShellHarness(FakeDaemon({"logs": self.stamping}))
        h.type(b"logs -f web\r")
        self.assertIn(b"web | new\r\n", h.screen())
        h = ShellHarness(FakeDaemon({"logs": self.stamping}))
        h.type(b"logs -tf web\r")
        h.daemon.sendEvent({"type": "log_end", "name": "web"})
        h.daemon.sendEvent({**STAMPED, "line": "after"})
        h.pump.flush()
        self.assertIn(b"web | after\r\n", h.screen())

    def test_followedAgainWithoutTimes(self) -> None:
        """
        C{logs -f NAME} after C{logs -t -f NAME} (the first given up, or
        lost with its connection, without a log's end): lines without time.
        """
        h = ShellHarness(FakeDaemon({"logs": self.stamping}))
        h.type(b"logs -tf web\r")
        h.screen()
        h.type(b"logs -f web\r")
        self.assertIn(b"web | new\r\n", h.screen())
