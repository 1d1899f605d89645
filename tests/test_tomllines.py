"""
Tests for L{pycm.services.tomllines} on hostile shapes: what it records is
bounded by L{MAX_DEPTH}, whatever the nesting (the ordinary shapes are in
L{tests.test_servicefile.KeyLinesTests}).
"""

from __future__ import annotations

import tomllib

from twisted.trial.unittest import SynchronousTestCase

from pycm.errors import BadRequest
from pycm.services.servicefile import parseServices
from pycm.services.tomllines import MAX_DEPTH, keyLines, lineOf


def nestedArrays(depth: int, items: int) -> str:
    """C{command} as C{items} numbers inside C{depth} nested arrays."""
    inner = ",".join("1" for _ in range(items))
    return "[services.web]\ncommand = " + "[" * depth + inner + "]" * depth + "\n"


class DepthTests(SynchronousTestCase):
    """Paths deeper than L{MAX_DEPTH} are recorded cut at that depth."""

    def test_nestedArraysBounded(self) -> None:
        """
        Numbers 200 arrays deep are recorded as one path of L{MAX_DEPTH}
        parts, not one path of 203 parts each (a copy of the path for
        every item at every depth: minutes and gigabytes for a megabyte).
        """
        text = nestedArrays(200, 1000)
        tomllib.loads(text)  # what the scanner is given: accepted TOML
        lines = keyLines(text)
        self.assertLessEqual(max(len(path) for path in lines), MAX_DEPTH)
        self.assertLessEqual(len(lines), MAX_DEPTH + 1)
        self.assertEqual(lines[("services", "web", "command")], 2)
        self.assertEqual(lineOf(lines, ("services", "web", "command", *[0] * 300)), 2)

    def test_wideArray(self) -> None:
        """Items of a shallow array each have their path and line."""
        text = "[services.web]\ncommand = [\n" + "".join('"x",\n' for _ in range(50)) + "]\n"
        lines = keyLines(text)
        self.assertEqual(lines[("services", "web", "command", 0)], 3)
        self.assertEqual(lines[("services", "web", "command", 49)], 52)

    def test_deepDottedKey(self) -> None:
        """A dotted key deeper than the bound records the tables above it, cut."""
        parts = [f"k{i}" for i in range(40)]
        lines = keyLines("[t]\n\n" + ".".join(parts) + " = 1\n")
        self.assertEqual(lines[("t",)], 1)
        self.assertEqual(lines[("t", *parts[:MAX_DEPTH - 1])], 3)
        self.assertLessEqual(max(len(path) for path in lines), MAX_DEPTH)

    def test_deepInlineTables(self) -> None:
        """Inline tables nested past the bound are followed to their end."""
        depth = 100
        text = "a = " + "{ b = " * depth + "1" + " }" * depth + "\nafter = 2\n"
        tomllib.loads(text)
        lines = keyLines(text)
        self.assertEqual(lines[("after",)], 2)
        self.assertLessEqual(max(len(path) for path in lines), MAX_DEPTH)

    def test_refusedWithItsLine(self) -> None:
        """
        The reader refuses the deep C{command} of the attack's shape, naming
        its line, as for any wrong C{command}.
        """
        with self.assertRaises(BadRequest) as caught:
            parseServices(nestedArrays(300, 2000), "services.toml", "shop")
        self.assertIn("services.toml:2:", str(caught.exception))
        self.assertIn('"command" in [services.web]', str(caught.exception))
