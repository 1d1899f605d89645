"""
Tests for C{pycm apply} against a daemon older than C{--progress-id}
(L{pycm.client.applying.withoutOwnProgressId}): the client sends its apply
again without the id it added by itself, on both one-shot paths and in
the shell, against a L{FakeDaemon} that refuses the option as such a
daemon does; and for the check of a C{--progress-id} the user gives.
"""

from __future__ import annotations

import io
import shlex
import sys
from typing import Any

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from pycm.client import applying, cli
from pycm.client.plan import PlanError, planCommand
from pycm.client.testing import FakeDaemon, ok
from pycm.client.wire import errorFromReply
from pycm.daemon.handlers.applying import PROGRESS_ID as DAEMON_PROGRESS_ID
from tests.test_client_apply import OUTCOME, SERVICES, FilesMixin
from tests.test_client_cli import FastHarness, Harness, options
from tests.test_client_shell import ShellHarness

#: What a daemon older than C{--progress-id} answers to an apply with it.
REFUSAL = "ERR bad_request unknown option '--progress-id'"


def oldDaemon(reply: Any = None) -> FakeDaemon:
    """
    A daemon older than C{--progress-id}: it refuses every apply that has
    the option (as its option parser refuses every option it does not
    know) and answers the others with C{reply} (L{OUTCOME} by default).
    """
    def apply(words: list[str]) -> Any:
        if any(word.startswith("--progress-id") for word in words):
            return REFUSAL
        return reply if reply is not None else ok(OUTCOME)

    return FakeDaemon({"events": ok({"events": True, "last_id": 7}), "apply": apply})


class OldDaemonCallMixin(FilesMixin):
    """C{pycm apply} against a daemon older than C{--progress-id}, on either path."""

    harness: Any

    def setUp(self: Any) -> None:
        self.directory = self.makeDirectory()
        self.path = self.write(self.directory, "services.toml", SERVICES)

    def applies(self: Any, h: Any) -> list[list[str]]:
        """The apply requests the daemon received, as words."""
        return [shlex.split(line) for line in h.daemon.received if line.startswith("apply")]

    def test_sentAgainWithoutTheId(self: Any) -> None:
        """
        The apply refused for the id the client added is sent once more
        without it; every apply progress event of the project is shown
        (such a daemon tags none), then the outcome; exit status 0.
        """
        held: Deferred[str] = Deferred()
        h = self.harness(oldDaemon(held))
        d = h.run(options("apply", "--prune", self.path))
        self.assertNoResult(d)
        first, second = self.applies(h)
        self.assertTrue(first[2].startswith("--progress-id="))
        self.assertEqual(second, [w for w in first if not w.startswith("--progress-id=")])
        self.assertEqual(second[:2], ["apply", "--prune"])
        h.daemon.sendEvent({"type": "progress", "action": "apply", "name": "db",
                            "detail": "creating", "time": "T"})
        h.flush()
        self.assertEqual(h.err.getvalue(), "db: creating\n")
        held.callback(ok(OUTCOME))
        h.flush()
        self.assertEqual(self.successResultOf(d), 0)
        self.assertEqual(h.err.getvalue(), "db: creating\n")
        self.assertIn("web       recreate   command, env   running", h.out.getvalue())

    def test_refusedAgain(self: Any) -> None:
        """
        It is sent again once only: a daemon that refuses the apply without
        the id too gets two, and its error is printed; exit status 2.
        """
        h = self.harness(FakeDaemon({"apply": REFUSAL}))
        self.assertEqual(self.successResultOf(h.run(options("apply", self.path))), 2)
        first, second = self.applies(h)
        self.assertNotIn("--progress-id", " ".join(second))
        self.assertEqual(h.err.getvalue(),
                         "Error: bad_request: unknown option '--progress-id'\n")

    def test_givenIdNotDropped(self: Any) -> None:
        """
        An id the user gave is not dropped: the refusal is printed, with
        why (the daemon is older than the option); exit status 2.
        """
        h = self.harness(oldDaemon())
        d = h.run(options("apply", "--progress-id=mine", self.path))
        self.assertEqual(self.successResultOf(d), 2)
        (request,) = self.applies(h)
        self.assertIn("--progress-id=mine", request)
        self.assertIn("Error: bad_request: unknown option '--progress-id' (this daemon is "
                      "older than apply's --progress-id: apply without it", h.err.getvalue())

    def test_otherRefusal(self: Any) -> None:
        """Another option refused is not a reason to send the apply again."""
        h = self.harness(FakeDaemon({"apply": "ERR bad_request unknown option '--prune'"}))
        self.assertEqual(self.successResultOf(h.run(options("apply", "--prune",
                                                            self.path))), 2)
        self.assertEqual(len(self.applies(h)), 1)
        self.assertEqual(h.err.getvalue(), "Error: bad_request: unknown option '--prune'\n")


class OldDaemonReactorTests(OldDaemonCallMixin, SynchronousTestCase):
    """L{OldDaemonCallMixin} in the reactor."""

    harness = Harness


class OldDaemonFastTests(OldDaemonCallMixin, SynchronousTestCase):
    """L{OldDaemonCallMixin} on the fast path."""

    harness = FastHarness


class OldDaemonShellTests(FilesMixin, SynchronousTestCase):
    """C{apply} typed in the shell, against a daemon older than C{--progress-id}."""

    def test_sentAgainWithoutTheId(self) -> None:
        """The shell sends the apply again without its id; the outcome is shown."""
        path = self.write(self.makeDirectory(), "services.toml", SERVICES)
        h = ShellHarness(oldDaemon())
        h.screen()
        h.type(f"apply {path}\r".encode())
        first, second = h.daemon.received
        self.assertTrue(first.startswith("apply --progress-id="))
        self.assertTrue(second.startswith("apply '{\"project\":\"shop\""))
        screen = h.screen()
        self.assertIn(b"web       recreate   command, env   running", screen)
        self.assertNotIn(b"unknown option", screen)

    def test_givenIdNotDropped(self) -> None:
        """An id typed in the shell is sent once, and the refusal shown."""
        path = self.write(self.makeDirectory(), "services.toml", SERVICES)
        h = ShellHarness(oldDaemon())
        h.screen()
        h.type(f"apply --progress-id=mine {path}\r".encode())
        self.assertEqual(len(h.daemon.received), 1)
        self.assertIn(b"unknown option '--progress-id'", h.screen())


class WithoutOwnProgressIdTests(SynchronousTestCase):
    """L{applying.withoutOwnProgressId}: when an apply is sent again, and how."""

    request = ("apply", "--dry-run", "--progress-id=0123456789abcdef", "{}")
    refusal = errorFromReply("bad_request", "unknown option '--progress-id'")

    def test_dropped(self) -> None:
        """The client's own id goes, the rest stays in order."""
        self.assertEqual(applying.withoutOwnProgressId(
            self.refusal, self.request, ["apply", "--dry-run", "FILE"]),
            ("apply", "--dry-run", "{}"))

    def test_kept(self) -> None:
        """Another error, another command, an id the user typed: nothing is sent again."""
        typed = ["apply", "FILE"]
        for error, request, words in (
            (errorFromReply("bad_request", "unknown option '--prune'"), self.request, typed),
            (errorFromReply("not_found", "unknown option '--progress-id'"), self.request,
             typed),
            (self.refusal, ("ls", "--progress-id=x"), ["ls"]),
            (self.refusal, self.request, ["apply", "--progress-id", "x", "FILE"]),
            (self.refusal, self.request, ["apply", "FILE", "--progress-id=x"]),
            (self.refusal, ("apply", "{}"), typed),
        ):
            self.assertIsNone(applying.withoutOwnProgressId(error, request, words))


class GivenProgressIdTests(FilesMixin, SynchronousTestCase):
    """A C{--progress-id} the user gives is checked before anything is sent."""

    def setUp(self) -> None:
        self.path = self.write(self.makeDirectory(), "services.toml", SERVICES)

    def test_sameAsTheDaemon(self) -> None:
        """The client takes the ids the daemon takes."""
        self.assertEqual(applying.PROGRESS_ID.pattern, DAEMON_PROGRESS_ID.pattern)

    def test_refused(self) -> None:
        """Too long, a space, a slash, a non-ASCII letter: a usage error naming the option."""
        for given in ("a" * 65, "two words", "a/b", "caf\u00e9", "x\n"):
            error = self.assertRaises(PlanError, planCommand,
                                      ["apply", f"--progress-id={given}", self.path])
            self.assertIn(f"apply: bad --progress-id {given!r}: expected 1 to 64 "
                          "letters, digits, '_', '.' or '-'", str(error))
            self.assertTrue(error.hint)

    def test_taken(self) -> None:
        """64 of the allowed characters are sent as given."""
        given = "A-z_0.9" + "x" * 57
        (request,) = planCommand(["apply", "--progress-id", given, self.path]).requests
        self.assertEqual(request[1], f"--progress-id={given}")

    def test_cli(self) -> None:
        """C{pycm apply --progress-id=BAD FILE} exits 2 before connecting."""
        err = io.StringIO()
        self.patch(sys, "stderr", err)
        exit = self.assertRaises(SystemExit, cli.main, [
            "--host", "tcp:127.0.0.1:1", "apply", "--progress-id=a/b", self.path])
        self.assertEqual(exit.code, 2)
        self.assertTrue(err.getvalue().startswith("pycm: apply: bad --progress-id 'a/b'"))
        self.assertIn("Try 'pycm --help'", err.getvalue())
