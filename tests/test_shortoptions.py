"""
Short options written together, as Docker's CLI takes them (C{ps -aq},
C{logs -tf}, C{run -eKEY=VALUE}): one reading in L{pycm.grammar}, used by
the daemon for any request and by the client before it plans a line.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.trial.unittest import SynchronousTestCase, TestCase

from pycm.client.plan import asksForName, hasPositional, planCommand
from pycm.daemon import requestline
from pycm.daemon.commands import BY_WORD
from pycm.daemon.dispatch import describeLine
from pycm.daemon.requestline import parseOptions
from pycm.errors import BadRequest
from pycm.grammar import Option, separateShortOptions, separateShortWord, takesNextWord
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
        # pflag's rule: "=" is dropped only when something follows it.
        self.assertEqual(self.separate("-e="), ["-e", "="])
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

    def test_manyWords(self) -> None:
        """
        A line of many such words is read whole, once: the words are
        written apart in one pass (not the rest of the line again for each).
        """
        calls = []
        real = requestline.separateShortOptions

        def counted(*args: Any) -> list[str]:
            calls.append(args)
            return real(*args)

        self.patch(requestline, "separateShortOptions", counted)
        given, rest = parseOptions(["-eA=1"] * 5000 + ["-dw/tmp", "web"],
                                   BY_WORD["run"].options)
        self.assertEqual((len(given["env"]), given["workdir"], rest), (5000, "/tmp", ["web"]))
        self.assertEqual(len(calls), 1)

    def test_flagGivenAValue(self) -> None:
        """C{-d=true}: said as for C{--detach=true}, not as an unknown C{=}."""
        error = self.assertRaises(BadRequest, parseOptions, ["-d=true", "web"],
                                  BY_WORD["run"].options)
        self.assertEqual(error.message, "option --detach takes no value")

    def test_logsRedacted(self) -> None:
        """
        The debug log's account of a request names the options, never
        their values, written together or not.
        """
        line = describeLine(b"run -deSECRET=hunter2 -w/srv web host true")
        self.assertNotIn("hunter2", line)
        self.assertNotIn("/srv", line)
        self.assertIn("web", line)
        self.assertNotIn("hunter2", describeLine(b"run -dESECRET=hunter2 web"))

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

    def test_help(self) -> None:
        """C{-h} among letters written together asks for help, as C{ps -ah} does in Docker."""
        for words in (["ps", "-ah"], ["logs", "-fh", "web"], ["stop", "-ht5", "web"]):
            self.assertEqual(planCommand(words).requests, (("help", words[0]),), words)
        # Help among letters is no bare run: nothing is asked.
        self.assertFalse(asksForName(["run", "-dh"]))
        self.assertTrue(asksForName(["run", "-d"]))
        # A value letter before it takes it as its value.
        self.assertEqual(planCommand(["logs", "-nh", "web"]).requests,
                         (("logs", "-n", "h", "web"),))

    def test_passOnKey(self) -> None:
        """C{run -eKEY} passes this process's KEY on, as C{-e KEY} does."""
        self.patch(os, "environ", {"KEY": "from here"})
        self.assertEqual(planCommand(["run", "-deKEY", "web"]).requests,
                         (("run", "-e", "KEY=from here", "web"),))

    def test_flagAsAValue(self) -> None:
        """
        A value that is spelt like a flag the client drops (C{-d}, C{-t}) is
        kept: it is another option's value.
        """
        self.assertEqual(planCommand(["run", "-l-d", "web", "img"]).requests,
                         (("run", "-l", "-d", "web", "img"),))
        self.assertEqual(planCommand(["run", "-w", "-d", "web"]).requests,
                         (("run", "-w", "-d", "web"),))
        plan = planCommand(["logs", "-n-t", "web"])
        self.assertEqual((plan.requests, plan.timestamps), ((("logs", "-n", "-t", "web"),), False))

    def test_shellAsksForTheName(self) -> None:
        """
        The shell asks for a name when a line has none, C{run -de KEY=1}
        (whose C{-e} takes C{KEY=1}) too, and not when it has one.
        """
        self.assertFalse(hasPositional(["-de", "KEY=1"]))
        self.assertFalse(hasPositional(["-d", "-e", "KEY=1"]))
        self.assertTrue(hasPositional(["-deKEY=1", "web"]))
        self.assertTrue(hasPositional(["-de", "KEY=1", "web"]))

    def test_completionAfterAValueLetter(self) -> None:
        """Tab after C{logs -fn} completes no name: the word is C{-n}'s value."""
        self.assertTrue(takesNextWord("-fn", BY_WORD["logs"].options))
        self.assertTrue(takesNextWord("--TAIL", BY_WORD["logs"].options))
        self.assertFalse(takesNextWord("-fn5", BY_WORD["logs"].options))
        self.assertFalse(takesNextWord("-f", BY_WORD["logs"].options))
        self.assertFalse(takesNextWord("web", BY_WORD["logs"].options))

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
