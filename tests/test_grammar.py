"""
Tests for L{pycm.grammar} and the one command grammar built on it: the
daemon's table, its C{help} reply, and the client's copy of the table.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from pycm.client import commandtable
from pycm.daemon import commands
from pycm.daemon.runoptions import RUN_OPTIONS, SPEC_FIELDS, specFromRequest
from pycm.errors import BadRequest
from pycm.grammar import CommandSyntax, Option, splitOptions, syntaxFromHelp
from pycm.model import ContainerSpec, RestartPolicy
from pycm.testing.server import FakeServer


class OptionTests(SynchronousTestCase):
    """An option's spellings and what C{help} says of it."""

    def test_spellings(self) -> None:
        """The long spelling first, then the short one if any."""
        self.assertEqual(Option("time", "t").spellings(), ("--time", "-t"))
        self.assertEqual(Option("since").spellings(), ("--since",))

    def test_jsonRoundTrip(self) -> None:
        """C{fromJSON(toJSON())} gives back the option's words and kind."""
        for option in (Option("env", "e", repeat=True), Option("force", "f", takesValue=False),
                       Option("since")):
            self.assertEqual(Option.fromJSON(option.toJSON()), option)

    def test_valueSpellings(self) -> None:
        """Only options that take a value, in both spellings."""
        row = CommandSyntax("logs", options=(Option("tail", "n"),
                                             Option("follow", "f", takesValue=False)))
        self.assertEqual(row.valueSpellings(), frozenset({"--tail", "-n"}))
        self.assertEqual(row.optionSpellings(), ("--tail", "-n", "--follow", "-f"))


class SplitOptionsTests(SynchronousTestCase):
    """L{splitOptions} ends the options where the daemon does."""

    def test_split(self) -> None:
        """A value option takes the next word; a plain word or C{--} ends them."""
        values = frozenset({"-t", "--time"})
        self.assertEqual(splitOptions(["-t", "5", "web"], values), (["-t", "5"], ["web"]))
        self.assertEqual(splitOptions(["-f", "web"], values), (["-f"], ["web"]))
        self.assertEqual(splitOptions(["--", "-odd"], values), (["--"], ["-odd"]))
        self.assertEqual(splitOptions(["-", "x"], values), ([], ["-", "x"]))
        self.assertEqual(splitOptions([], values), ([], []))


class HelpTests(SynchronousTestCase):
    """C{help} carries each command's options, and the client reads them."""

    def test_helpCarriesOptions(self) -> None:
        """Each command in C{help} lists its options and whether each takes a value."""
        reply = FakeServer().connect().ok("help")
        stop = next(row for row in reply["commands"] if row["name"] == "stop")
        self.assertEqual(stop["options"], [
            {"name": "time", "short": "t", "takes_value": True, "repeat": False},
        ])
        self.assertIn("usage", stop)

    def test_clientTableIsTheDaemons(self) -> None:
        """The client's copy of the table is what the daemon's C{help} says."""
        reply = FakeServer().connect().ok("help")
        self.assertEqual(syntaxFromHelp(reply), commandtable.COMMANDS)
        self.assertEqual(commandtable.COMMANDS, tuple(c.syntax() for c in commands.COMMANDS))
        self.assertEqual(sorted(commandtable.BY_WORD), sorted(commands.BY_WORD))

    def test_oldHelp(self) -> None:
        """A C{help} reply without options, or no help reply at all, gives None."""
        self.assertIsNone(syntaxFromHelp({"commands": [{"name": "ping", "usage": "ping"}]}))
        self.assertIsNone(syntaxFromHelp("pong"))
        self.assertIsNone(syntaxFromHelp({"name": "stop"}))


class RunOptionsTests(SynchronousTestCase):
    """C{run}/C{create}'s options: one table from request to spec."""

    def test_fieldsAreTheSpecs(self) -> None:
        """Every option names the L{ContainerSpec} field the model says it fills."""
        self.assertEqual(SPEC_FIELDS, ContainerSpec.OPTION_FIELDS)
        for option in RUN_OPTIONS:
            self.assertIsNotNone(option.read, option.name)
        self.assertEqual(commands.BY_WORD["create"].options, RUN_OPTIONS)

    def test_spec(self) -> None:
        """Each option's value is read by its grammar into its field."""
        spec = specFromRequest(
            {"env": ["A=1"], "label": ["t=x"], "restart": "on-failure:2",
             "stop-timeout": "1.5", "stop-signal": "term", "memory": "1.5g",
             "cpus": "0.5", "workdir": "/tmp"},
            ("web", "img", "sh", "-c", "true"),
        )
        self.assertEqual(spec, ContainerSpec(
            name="web", image="img", command=("sh", "-c", "true"), env={"A": "1"},
            labels={"t": "x"}, restartPolicy=RestartPolicy("on-failure", 2),
            stopTimeout=1.5, stopSignal="SIGTERM", memory=1536 << 20, cpus=0.5, workdir="/tmp",
        ))
        self.assertEqual(specFromRequest({}, ("web",)), ContainerSpec(name="web"))

    def test_badValues(self) -> None:
        """A bad value is refused, naming the option."""
        for name, value in (("cpus", "0"), ("cpus", "inf"), ("stop-timeout", "-1"),
                            ("memory", "lots"), ("restart", "maybe")):
            error = self.assertRaises(BadRequest, specFromRequest, {name: value}, ("web",))
            self.assertIn(value, str(error))
