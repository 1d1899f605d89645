"""
Tests for L{pycm.services.envfile}: Docker's C{--env-file} format read on
the client's side, with errors naming the file and line.
"""

from __future__ import annotations

import os

from twisted.trial.unittest import SynchronousTestCase

from pycm.errors import BadRequest
from pycm.services.envfile import (
    MAX_ENV_FILE,
    EnvFileError,
    parseEnvText,
    readEnvFile,
    readTextFile,
)


class ParseEnvTextTests(SynchronousTestCase):
    """The lines of an environment file."""

    def test_keyValues(self) -> None:
        """C{KEY=VALUE} lines set variables, in order; a later line for a key wins."""
        text = "A=1\nB=two words\nA=3\n"
        self.assertEqual(parseEnvText(text, "x.env", {}), {"A": "3", "B": "two words"})
        self.assertEqual(list(parseEnvText(text, "x.env", {})), ["A", "B"])

    def test_valuesLiteral(self) -> None:
        """
        The value is everything after the first C{=}, as written: quotes,
        C{#}, C{$} and blanks stay, and nothing is expanded.
        """
        text = "Q=\"quoted\"\nH=a # not a comment\nD=$HOME\nE=a=b\nS= x \nN=\n"
        self.assertEqual(parseEnvText(text, "x.env", {"HOME": "/root"}), {
            "Q": '"quoted"', "H": "a # not a comment", "D": "$HOME", "E": "a=b",
            "S": " x ", "N": "",
        })

    def test_commentsAndBlanks(self) -> None:
        """Blank lines and C{#} lines (after blanks) are skipped; blanks before a key too."""
        text = "# a comment\n\n   \n  # indented comment\n  A=1\n\tB=2"
        self.assertEqual(parseEnvText(text, "x.env", {}), {"A": "1", "B": "2"})

    def test_crlf(self) -> None:
        """A file saved with CRLF line ends gives the same values."""
        self.assertEqual(parseEnvText("A=1\r\nB=2\r\n", "x.env", {}), {"A": "1", "B": "2"})

    def test_bareKey(self) -> None:
        """
        A bare C{KEY} takes its value from the reader's environment, as
        Docker's C{--env-file} does, and is left out when that has none.
        """
        environ = {"TOKEN": "secret"}
        self.assertEqual(parseEnvText("TOKEN\nMISSING\nTOKEN2 \n", "x.env", environ),
                         {"TOKEN": "secret"})

    def test_badKey(self) -> None:
        """
        An empty key, or one holding a blank or NUL, is an error naming the
        file and line (Docker's parser refuses the first two).
        """
        for line in ("A B=x", "A =x", "=x", "export A=1", "A\tB=1", "A\0B=1", "= x"):
            error = self.assertRaises(EnvFileError, parseEnvText, f"# ok\nA=1\n{line}\n",
                                      "dir/x.env", {})
            self.assertTrue(str(error).startswith("dir/x.env:3: "), str(error))
            self.assertIn("variable name", str(error))

    def test_keysAsDocker(self) -> None:
        """
        Any other key is taken, as Docker's C{--env-file} and pycm's C{-e}
        take it: one starting with a digit, a dash, a dot, a non-ASCII letter.
        """
        text = "1A=x\na-b=y\na.b=z\né=1\n"
        self.assertEqual(parseEnvText(text, "x.env", {}),
                         {"1A": "x", "a-b": "y", "a.b": "z", "é": "1"})

    def test_nul(self) -> None:
        """A value holding NUL cannot reach an environment: refused, with its line."""
        error = self.assertRaises(EnvFileError, parseEnvText, "A=a\0b", "x.env", {})
        self.assertEqual(str(error), "x.env:1: the value holds a NUL character")

    def test_lineNotShown(self) -> None:
        """
        An error says which line and what is wrong, never the line's text: a
        file named by mistake (C{/proc/self/status}, a key file) may hold a
        secret on it.
        """
        for line, why in (
                ("Name:\tsecret", "not a KEY=VALUE line, nor a KEY alone (a KEY holds no "
                                  "blank)"),
                ("my secret=x", "the name before '=' is not a variable name (it holds a "
                                "blank or NUL)"),
                ("=secret", "no variable name before '='"),
                ("A=secret\0", "the value holds a NUL character")):
            error = self.assertRaises(EnvFileError, parseEnvText, f"# ok\n{line}\n",
                                      "x.env", {})
            self.assertEqual(str(error), f"x.env:2: {why}")
            self.assertNotIn("secret", str(error))

    def test_isBadRequest(self) -> None:
        """The error is a L{BadRequest}: one code, whoever reads the file."""
        self.assertTrue(issubclass(EnvFileError, BadRequest))


class ReadEnvFileTests(SynchronousTestCase):
    """Reading the file itself."""

    def write(self, data: bytes) -> str:
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(data)
        return path

    def test_read(self) -> None:
        """The file's variables; a bare key reads the given environment."""
        path = self.write(b"A=1\nUSER\n")
        self.assertEqual(readEnvFile(path, {"USER": "me"}), {"A": "1", "USER": "me"})

    def test_missing(self) -> None:
        """A file that cannot be opened: the error names it and says why."""
        path = self.mktemp()
        error = self.assertRaises(EnvFileError, readEnvFile, path)
        self.assertEqual(str(error),
                         f"{path}: cannot read the environment file: No such file or directory")

    def test_directory(self) -> None:
        """A directory is not a regular file."""
        path = self.mktemp()
        os.mkdir(path)
        error = self.assertRaises(EnvFileError, readEnvFile, path)
        self.assertEqual(str(error), f"{path}: the environment file is not a regular file")

    def test_fifo(self) -> None:
        """A FIFO is refused without waiting for a writer."""
        path = self.mktemp()
        os.mkfifo(path)
        error = self.assertRaises(EnvFileError, readEnvFile, path)
        self.assertIn("not a regular file", str(error))

    def test_tooBig(self) -> None:
        """A file over L{MAX_ENV_FILE} bytes is refused, saying so."""
        path = self.write(b"A=" + b"x" * MAX_ENV_FILE + b"\n")
        error = self.assertRaises(EnvFileError, readEnvFile, path)
        self.assertIn("too big", str(error))

    def test_notUTF8(self) -> None:
        """A file that is not UTF-8 is refused, naming the first bad line."""
        path = self.write(b"A=1\nB=\xff\n")
        error = self.assertRaises(EnvFileError, readEnvFile, path)
        self.assertEqual(str(error), f"{path}:2: the environment file is not UTF-8")

    def test_controlCharacters(self) -> None:
        """
        A path holding control characters is named with them written out
        (C{\\x1b}), whether the file cannot be read or a line is wrong.
        """
        path = os.path.join(self.mktemp(), "\x1b[2J.env")
        error = self.assertRaises(EnvFileError, readEnvFile, path)
        self.assertTrue(str(error).startswith(path.replace("\x1b", "\\x1b") + ": cannot"))
        error = self.assertRaises(EnvFileError, parseEnvText, "=1\n", "\x1b]0;T\x07", {})
        self.assertTrue(str(error).startswith("\\x1b]0;T\\x07:1: "), str(error))

    def test_errorClass(self) -> None:
        """L{readTextFile} raises the error class it is given."""

        class Other(BadRequest):
            pass

        self.assertRaises(Other, readTextFile, self.mktemp(), "thing", 10, Other)
