"""
Where each key of a TOML document is written: L{keyLines} maps every key
path (C{("services", "web", "healthcheck", "cmd")}) to the line that
defines it, so that an error found in the parsed value (an unknown key, a
wrong type) can name its line, which C{tomllib} does not give.

The text is scanned only after C{tomllib} accepted it, so the scanner can
trust its syntax: it follows table headers (C{[a.b]}, C{[[a]]}), dotted
keys (C{a.b = 1}), quoted keys, inline tables, arrays and every kind of
string, and skips comments.

Key paths deeper than L{MAX_DEPTH} are recorded at that depth (a services
file has none so deep: the reader refuses what is below it, naming the
line of the deepest recorded table above).  So a hostile file of a
megabyte of nested arrays costs one pass over its text, not a path copied
for every item at every depth (minutes of CPU and gigabytes).
"""

from __future__ import annotations

import bisect
import re
import tomllib

#: A key path: table and key names, with an array's index where a table
#: sits in an array (C{[[a]]}, or an inline table in an array value).
KeyPath = tuple[str | int, ...]

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
#: A number, boolean or date: up to what ends a value.
_SCALAR = re.compile(r"[^,\]}#\r\n]*")
#: Key paths are recorded down to this depth (see the module docstring).
MAX_DEPTH = 16
_BLANK = " \t"


class _Scanner:
    """One pass over a TOML text, recording where each key path is defined."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.lineStarts = [0] + [m.end() for m in re.finditer("\n", text)]
        self.lines: dict[KeyPath, int] = {}
        self.arrayCounts: dict[KeyPath, int] = {}

    def line(self, pos: int) -> int:
        return bisect.bisect_right(self.lineStarts, pos)

    def record(self, path: KeyPath, pos: int) -> None:
        """
        C{path} (cut at L{MAX_DEPTH}) and each table above it are written at
        C{pos}, if not before: a path is recorded only with every path
        above it, so the first one found recorded ends the walk up.
        """
        path = path[:MAX_DEPTH]
        if path in self.lines:
            return
        line = self.line(pos)
        for end in range(len(path), 0, -1):
            above = path[:end]
            if above in self.lines:
                return
            self.lines[above] = line

    @staticmethod
    def below(path: KeyPath, *parts: str | int) -> KeyPath:
        """C{path} extended by C{parts}, no deeper than L{MAX_DEPTH}."""
        return path if len(path) >= MAX_DEPTH else (*path, *parts)[:MAX_DEPTH]

    def peek(self, offset: int = 0) -> str:
        return self.text[self.pos + offset: self.pos + offset + 1]

    def skipBlank(self) -> None:
        while self.peek() and self.peek() in _BLANK:
            self.pos += 1

    def skipSpaceAndComments(self) -> None:
        """Blanks, newlines and comments: what may sit between array items."""
        while True:
            char = self.peek()
            if char and char in " \t\r\n":
                self.pos += 1
            elif char == "#":
                self.skipComment()
            else:
                return

    def skipComment(self) -> None:
        end = self.text.find("\n", self.pos)
        self.pos = len(self.text) if end < 0 else end

    def document(self) -> dict[KeyPath, int]:
        table: KeyPath = ()
        while self.pos < len(self.text):
            self.skipSpaceAndComments()
            if self.pos >= len(self.text):
                break
            if self.peek() == "[":
                table = self.header()
            else:
                self.keyValue(table)
            self.skipBlank()
            if self.peek() == "#":
                self.skipComment()
        return self.lines

    def header(self) -> KeyPath:
        start = self.pos
        isArray = self.peek(1) == "["
        self.pos += 2 if isArray else 1
        path = self.key()
        self.pos += 2 if isArray else 1
        if isArray:
            index = self.arrayCounts.get(path, 0)
            self.arrayCounts[path] = index + 1
            self.record(path, start)
            path = (*path, index)
        self.record(path, start)
        return path

    def keyValue(self, table: KeyPath) -> None:
        start = self.pos
        path = self.below(table, *self.key())
        self.record(path, start)
        self.skipBlank()
        self.pos += 1  # "="
        self.skipBlank()
        self.value(path)

    def key(self) -> KeyPath:
        """A dotted key, each part bare or quoted."""
        parts: list[str | int] = []
        while True:
            self.skipBlank()
            parts.append(self.keyPart())
            self.skipBlank()
            if self.peek() != ".":
                return tuple(parts)
            self.pos += 1

    def keyPart(self) -> str:
        char = self.peek()
        if char in "\"'":
            start = self.pos
            self.string()
            return _decodeString(self.text[start: self.pos])
        match = _BARE_KEY.match(self.text, self.pos)
        if match is None:
            raise ValueError(f"no key at offset {self.pos}")
        self.pos = match.end()
        return match.group()

    def value(self, path: KeyPath) -> None:
        char = self.peek()
        if char in "\"'":
            self.string()
        elif char == "{":
            self.inlineTable(path)
        elif char == "[":
            self.array(path)
        else:
            match = _SCALAR.match(self.text, self.pos)
            assert match is not None  # it matches the empty string too
            self.pos = match.end()

    def inlineTable(self, path: KeyPath) -> None:
        self.pos += 1
        while True:
            self.skipSpaceAndComments()
            if self.peek() in ("}", ""):
                self.pos += 1
                return
            if self.peek() == ",":
                self.pos += 1
                continue
            self.keyValue(path)

    def array(self, path: KeyPath) -> None:
        self.pos += 1
        index = 0
        while True:
            self.skipSpaceAndComments()
            char = self.peek()
            if char in ("]", ""):
                self.pos += 1
                return
            if char == ",":
                self.pos += 1
                index += 1
                continue
            item = self.below(path, index)
            self.record(item, self.pos)
            self.value(item)

    def string(self) -> None:
        quote = self.peek()
        if self.text.startswith(quote * 3, self.pos):
            self.pos += 3
            while True:
                if self.peek() == "\\" and quote == '"':
                    self.pos += 2
                elif self.text.startswith(quote * 3, self.pos):
                    # Up to two more quotes may end the string's content.
                    self.pos += 3
                    while self.peek() == quote:
                        self.pos += 1
                    return
                elif not self.peek():
                    return
                else:
                    self.pos += 1
        self.pos += 1
        while self.peek() and self.peek() != quote:
            self.pos += 2 if self.peek() == "\\" and quote == '"' else 1
        self.pos += 1


def _decodeString(raw: str) -> str:
    """A quoted key's text, escapes and all, as TOML reads it."""
    value = tomllib.loads(f"k = {raw}")["k"]
    assert isinstance(value, str)
    return value


def keyLines(text: str) -> dict[KeyPath, int]:
    """
    Each key path of the TOML C{text} (which C{tomllib} has accepted) and
    the 1-based line that first defines it: a table's header, or the first
    dotted key that makes it; an array item's path ends in its index.
    """
    return _Scanner(text).document()


def lineOf(lines: dict[KeyPath, int], path: KeyPath) -> int | None:
    """The line of C{path}, or of the nearest table above it that has one."""
    while path:
        if path in lines:
            return lines[path]
        path = path[:-1]
    return None
