"""
C{run}/C{create -e KEY}: the client sends its own KEY's value, as
Docker's C{-e} does (L{pycm.client.plan.passOnKeys}).
"""

from __future__ import annotations

import os

from twisted.trial.unittest import SynchronousTestCase

from pycm.client.plan import PlanError, passOnKeys, planCommand
from pycm.client.testing import FakeDaemon, ok
from tests.test_client_cli import Harness, options
from tests.test_client_shell import ShellHarness

ENVIRON = {"FOO": "it's here", "EMPTY": ""}


class PassOnKeysTests(SynchronousTestCase):
    def request(self, *words: str) -> tuple[str, ...]:
        self.patch(os, "environ", dict(ENVIRON))
        (request,) = planCommand(list(words)).requests
        return request

    def test_everySpelling(self) -> None:
        """C{-e KEY}, C{--env KEY} and C{--env=KEY} send KEY's value here, in place."""
        self.assertEqual(
            self.request("run", "-e", "FOO", "--restart", "always", "--env", "EMPTY",
                         "--env=FOO", "-e", "A=1", "web", "host", "env"),
            ("run", "-e", "FOO=it's here", "--restart", "always", "--env", "EMPTY=",
             "--env=FOO=it's here", "-e", "A=1", "web", "host", "env"),
        )
        self.assertEqual(self.request("create", "-e", "FOO", "web"),
                         ("create", "-e", "FOO=it's here", "web"))

    def test_anyCase(self) -> None:
        """C{--ENV KEY}, as the daemon reads long options in any case."""
        self.assertEqual(self.request("run", "--ENV", "FOO", "--Env=FOO", "web"),
                         ("run", "--ENV", "FOO=it's here", "--Env=FOO=it's here", "web"))

    def test_unsetLeftOut(self) -> None:
        """A KEY this process does not have is left out, as Docker leaves it."""
        self.assertEqual(self.request("run", "-e", "NOPE", "--env=NOPE", "web"), ("run", "web"))

    def test_notAName(self) -> None:
        """
        What is no variable name (empty, with a blank) goes as it is, for the
        daemon to refuse with its own message; so does another option's value.
        """
        self.assertEqual(passOnKeys(["-e", "A B", "--env=", "-l", "-e", "--"], ENVIRON),
                         ["-e", "A B", "--env=", "-l", "-e", "--"])
        self.assertEqual(self.request("run", "--label", "-e", "FOO"), ("run", "--label", "-e",
                                                                     "FOO"))

    def test_envFileAndKeys(self) -> None:
        """
        C{-e KEY} wins over an env file's KEY, as C{-e KEY=VALUE} does; an
        unset one leaves the file's.
        """
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("FOO=from file\nNOPE=from file\n")
        self.assertEqual(
            self.request("run", "--env-file", path, "-e", "FOO", "-e", "NOPE", "web"),
            ("run", "-e", "NOPE=from file", "-e", "FOO=it's here", "web"),
        )

    def test_onTheWire(self) -> None:
        """A one-shot C{run -e KEY} sends the value, quoted like any argument."""
        self.patch(os, "environ", dict(ENVIRON))
        h = Harness(FakeDaemon({"run": ok({"name": "web", "state": "running", "image": "host"})}))
        self.successResultOf(h.run(options("run", "-e", "FOO", "web")))
        self.assertEqual(h.daemon.received, ["run -e 'FOO=it'\"'\"'s here' web"])

    def test_inTheShell(self) -> None:
        """Typed in the shell, the same."""
        self.patch(os, "environ", dict(ENVIRON))
        h = ShellHarness(FakeDaemon({"run": ok({"name": "web", "state": "running",
                                                "image": "host"})}))
        h.type(b"run -e EMPTY web\r")
        self.assertEqual(h.daemon.received, ["run -e EMPTY= web"])


class LineBreakTests(SynchronousTestCase):
    """A value with a line break cannot go on a request line: said, naming it."""

    def test_passedOn(self) -> None:
        """C{-e KEY} whose value here holds a line break is a usage error naming KEY."""
        self.patch(os, "environ", {"MULTI": "a\nb", "CR": "a\rb"})
        for words, key in ((["run", "-e", "MULTI", "web"], "MULTI"),
                           (["create", "--env=CR", "web"], "CR")):
            error = self.assertRaises(PlanError, planCommand, words)
            self.assertTrue(str(error).startswith(f"-e {key}: its value holds a line break"))
            self.assertNotIn("a\n", str(error))

    def test_envFile(self) -> None:
        """So does an env file's bare KEY, naming the file and KEY."""
        self.patch(os, "environ", {"MULTI": "a\nb"})
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("A=1\nMULTI\n")
        error = self.assertRaises(PlanError, planCommand, ["run", "--env-file", path, "web"])
        self.assertTrue(str(error).startswith(f"{path}: MULTI: its value holds a line break"))

    def test_controlCharacters(self) -> None:
        """The file's path and the KEY are named with control characters written out."""
        path = os.path.join(self.mktemp(), "\x1b[2J.env")
        os.mkdir(os.path.dirname(path))
        with open(path, "w") as f:
            f.write("\x1b]0;T=a\rb\n")
        error = self.assertRaises(PlanError, planCommand, ["run", "--env-file", path, "web"])
        self.assertEqual(str(error), path.replace("\x1b", "\\x1b") + ": \\x1b]0;T: its "
                         "value holds a line break, which run and create cannot send (a "
                         "request is one line)")
