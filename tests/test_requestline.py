"""Tests for L{pycm.daemon.requestline}: splitting request lines and parsing options."""

from twisted.trial.unittest import SynchronousTestCase

from pycm.daemon.requestline import (
    decodeLine,
    parseKeyValues,
    parseOptions,
    parseSeconds,
    splitWords,
)
from pycm.errors import BadRequest
from pycm.grammar import Option
from pycm.units import parseSize

RUN = (Option("env", "e", repeat=True), Option("restart"), Option("force", "f", takesValue=False))


class SplitWordsTests(SynchronousTestCase):
    def test_plain(self) -> None:
        """Unquoted words split on any run of white space."""
        self.assertEqual(splitWords(" run  web\thost "), ["run", "web", "host"])

    def test_quotes(self) -> None:
        """Single and double quotes and backslashes follow POSIX shell rules."""
        self.assertEqual(
            splitWords("""run web busybox sh -c "echo hi; sleep 5" 'a b' c\\ d"""),
            ["run", "web", "busybox", "sh", "-c", "echo hi; sleep 5", "a b", "c d"],
        )

    def test_noExpansion(self) -> None:
        """Variables, globs and command substitution are left as they are."""
        self.assertEqual(splitWords("run w h echo $HOME * `id` '#'"),
                         ["run", "w", "h", "echo", "$HOME", "*", "`id`", "#"])

    def test_unbalancedQuotes(self) -> None:
        """An unbalanced quote is a bad request."""
        self.assertRaises(BadRequest, splitWords, 'run web "oops')
        self.assertRaises(BadRequest, splitWords, "run web 'oops")

    def test_decodeBadUTF8(self) -> None:
        """Bytes that are not UTF-8 are a bad request, and so is NUL."""
        self.assertRaises(BadRequest, decodeLine, b"run \xff")
        self.assertRaises(BadRequest, decodeLine, b"run \x00web")
        self.assertEqual(decodeLine("run caf\u00e9".encode()), "run caf\u00e9")


class ParseOptionsTests(SynchronousTestCase):
    def test_forms(self) -> None:
        """--opt=value, --opt value and the short form all work."""
        given, rest = parseOptions(
            ["-e", "A=1", "--env=B=2", "--env", "C=3", "--restart", "always", "-f", "web"], RUN
        )
        self.assertEqual(given, {"env": ["A=1", "B=2", "C=3"], "restart": "always", "force": True})
        self.assertEqual(rest, ["web"])

    def test_optionsStopAtFirstPositional(self) -> None:
        """Everything after the first positional word is left untouched."""
        given, rest = parseOptions(["web", "img", "ls", "-l", "--env=x"], RUN)
        self.assertEqual((given, rest), ({}, ["web", "img", "ls", "-l", "--env=x"]))

    def test_doubleDash(self) -> None:
        """-- ends the options, so a name may start with a dash."""
        self.assertEqual(parseOptions(["--", "-x"], RUN), ({}, ["-x"]))

    def test_errors(self) -> None:
        """Unknown options, missing values, flags with values and repeats fail."""
        for words in (["--nope"], ["-z"], ["--restart"], ["--force=yes"],
                      ["--restart=a", "--restart=b"]):
            self.assertRaises(BadRequest, parseOptions, words, RUN)

    def test_values(self) -> None:
        """Sizes, seconds and KEY=VALUE lists parse, and reject junk."""
        self.assertEqual(parseSize("512m"), 512 * 1024**2)
        self.assertEqual(parseSize("1G"), 1024**3)
        self.assertEqual(parseSize("100"), 100)
        self.assertEqual(parseSize("1.5g"), 3 * 1024**3 // 2)
        for bad in ("", "m", "-1", "1.5.5g", "0"):
            self.assertRaises(BadRequest, parseSize, bad)
        self.assertEqual(parseSeconds("2.5", "time"), 2.5)
        for bad in ("-1", "nan", "inf", "x"):
            self.assertRaises(BadRequest, parseSeconds, bad, "time")
        self.assertEqual(parseKeyValues(["A=1", "B=x=y", "C="], "env"),
                         {"A": "1", "B": "x=y", "C": ""})
        self.assertRaises(BadRequest, parseKeyValues, ["A"], "env")
        self.assertRaises(BadRequest, parseKeyValues, ["=1"], "env")
