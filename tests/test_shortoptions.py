"""
Short options written together, as Docker's CLI takes them (C{ps -aq},
C{logs -tf}, C{run -eKEY=VALUE}): one reading in L{pycm.grammar}, used by
the daemon for any request and by the client before it plans a line.
"""

from __future__ import annotations

import os

from twisted.trial.unittest import SynchronousTestCase, TestCase

from pycm.client.plan import planCommand
from pycm.daemon.commands import BY_WORD
from pycm.daemon.requestline import parseOptions
from pycm.errors import BadRequest
from pycm.grammar import Option, separateShortOptions, separateShortWord
from pycm.testing.server import FakeServer

from .e2e import RealDaemon

LOGS = (Option("tail", "n"), Option("follow", "f", takesValue=False),
        Option("timestamps", "t", takesValue=False), Option("env", "e", repeat=True))


class SeparateTests(SynchronousTestCase):
    """L{separateShortOptions} writes apart what Docker's CLI reads apart."""

    def separate(self, *words: str) -> list[str]:
        return separateShortOptions(words, LOGS)

    def test_flags(self) -> None:
        """Flags written together are each a word."""
        self.assertEqual(self.separate("-tf", "web"), ["-t", "-f", "web"])

    def test_attachedValue(self) -> None:
        """
        The first letter that takes a value takes the rest of the word, its
        C{=} dropped, or the next word when nothing is left.
        """
        self.assertEqual(self.separate("-eA=1", "-e=B=2", "-fn5", "-tn", "7", "web"),
                         ["-e", "A=1", "-e", "B=2", "-f", "-n", "5", "-t", "-n", "7", "web"])
        self.assertEqual(self.separate("-e="), ["-e", ""])
        self.assertEqual(self.separate("-e-f"), ["-e", "-f"])

    def test_valuesAndArgumentsUntouched(self) -> None:
        """An option's value, and every word after the options, stay whole."""
        self.assertEqual(self.separate("-e", "-tf", "--tail", "-tf", "web", "-tf"),
                         ["-e", "-tf", "--tail", "-tf", "web", "-tf"])
        self.assertEqual(self.separate("--", "-tf"), ["--", "-tf"])
        self.assertEqual(self.separate("-", "-tf"), ["-", "-tf"])

    def test_unknownLetterLeftWhole(self) -> None:
        """A word with a letter that is no option stays whole, for the reader to refuse."""
        self.assertEqual(self.separate("-tx", "web"), ["-tx", "web"])
        self.assertIsNone(separateShortWord("-xeA=1", {o.short: o for o in LOGS if o.short}))


class DaemonTests(SynchronousTestCase):
    """The daemon reads them so in any request, whatever client sent it."""

    def test_parse(self) -> None:
        """C{-deA=1 -w/tmp} is C{-d -e A=1 -w /tmp}."""
        given, rest = parseOptions(["-deA=1", "-e=B=2", "-w/tmp", "web", "-dx"],
                                   BY_WORD["run"].options)
        self.assertEqual(given, {"detach": True, "env": ["A=1", "B=2"], "workdir": "/tmp"})
        self.assertEqual(rest, ["web", "-dx"])

    def test_unknownLetterNamedAlone(self) -> None:
        """
        An unknown letter is named alone: what follows it in the word may be
        a value (C{-ESECRET=...}, a slip of C{-e}), which no reply repeats.
        """
        error = self.assertRaises(BadRequest, parseOptions, ["-dESECRET=x", "web"],
                                  BY_WORD["run"].options)
        self.assertEqual(error.message, "unknown option '-E'")

    def test_valueStillNeeded(self) -> None:
        """A value letter last with no next word needs its value, as C{-e} alone does."""
        error = self.assertRaises(BadRequest, parseOptions, ["-de"], BY_WORD["run"].options)
        self.assertEqual(error.message, "option --env needs a value")

    def test_overTheProtocol(self) -> None:
        """A raw request line (C{nc}) with C{-eKEY=VALUE} runs with KEY set."""
        client = FakeServer().connect()
        client.ok("run -eGREETING=hi -lrole=web web")
        detail = client.ok("inspect web")
        self.assertEqual(detail["env"], {"GREETING": "hi"})
        self.assertEqual(detail["labels"], {"role": "web"})


class ClientTests(SynchronousTestCase):
    """The client writes them apart before it plans, so its habits see them."""

    def test_habits(self) -> None:
        """C{logs -tf}: timestamps and follow; C{ps -qa}: names only; C{rm -f a b}."""
        plan = planCommand(["logs", "-tfn5", "web"])
        self.assertEqual(plan.requests, (("logs", "-f", "-n", "5", "web"),))
        self.assertTrue(plan.timestamps)
        self.assertTrue(plan.follow)
        self.assertTrue(planCommand(["ps", "-qa"]).quiet)
        self.assertEqual(planCommand(["rm", "-f", "a", "b"]).requests,
                         (("rm", "-f", "a"), ("rm", "-f", "b")))

    def test_passOnKey(self) -> None:
        """C{run -eKEY} passes this process's KEY on, as C{-e KEY} does."""
        self.patch(os, "environ", {"KEY": "from here"})
        self.assertEqual(planCommand(["run", "-deKEY", "web"]).requests,
                         (("run", "-e", "KEY=from here", "web"),))

    def test_clientOptionValueUntouched(self) -> None:
        """The value of an option the client reads itself stays whole too."""
        self.assertEqual(planCommand(["ps", "--format", "-aq"]).template.render(  # type: ignore
            {"name": "web"}), "-aq")


class OneShotE2ETests(TestCase):
    """The installed C{pycm} client against a real daemon (process backend)."""

    def test_runLogsAndList(self) -> None:
        """
        C{pycm run -deGREETING=hi -w/tmp ...}: the command sees both; then
        C{pycm logs -tn1}: the last line, with its time; C{pycm ps -aq}:
        the name alone.
        """
        daemon = RealDaemon(self, backend="process").start()
        env = dict(daemon.clientEnv(), NO_COLOR="1")
        run = daemon.pycm("run", "-deGREETING=hi", "-w/tmp", "greeter", "host", "sh", "-c",
                          "echo $GREETING; pwd", env=env)
        self.assertEqual(run.returncode, 0, run.stderr)
        client = daemon.connect()
        self.assertEqual(client.ok("wait greeter")["exit_code"], 0)
        self.assertEqual([entry["line"] for entry in client.ok("logs greeter")], ["hi", "/tmp"])
        logs = daemon.pycm("logs", "-tn1", "greeter", env=env)
        self.assertEqual(logs.returncode, 0, logs.stderr)
        self.assertRegex(logs.stdout.decode(), r"^\d{4}-\d\d-\d\dT\S+ /tmp\n$")
        ps = daemon.pycm("ps", "-aq", env=env)
        self.assertEqual((ps.returncode, ps.stdout), (0, b"greeter\n"))
