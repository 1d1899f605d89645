"""
Request lines into words, and words into options and arguments.

A line is split by POSIX shell rules (quotes and backslashes, nothing
else); options (L{pycm.grammar.Option}) come before the positional
arguments, as C{--opt=value}, C{--opt value} or a listed short form
(C{-e K=V}); C{--} ends them.  Then the value grammars shared by commands.
"""

from __future__ import annotations

import functools
import re
import shlex
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from pycm.errors import BadRequest
from pycm.grammar import Option, separateShortOptions, separateShortWord
from pycm.units import isDuration, parseDuration

_SHELL_SPECIAL = frozenset("'\"\\")
_WORD = re.compile(r"[^ \t\r\n]+")
#: A whole number as clients may write one: ASCII digits, not too many.
_NUMBER = re.compile(r"[0-9]{1,15}")


def splitWords(line: str) -> list[str]:
    """
    Split a decoded request line into words.

    @raise BadRequest: on unbalanced quotes or a trailing backslash.
    """
    if _SHELL_SPECIAL.isdisjoint(line):
        # The fast path: most requests have no quoting at all.  It splits on
        # the same characters as shlex (not on every Unicode space), so a
        # quote elsewhere on the line never changes the words.
        return _WORD.findall(line)
    try:
        return shlex.split(line, comments=False, posix=True)
    except ValueError as e:
        raise BadRequest(f"cannot split the request into words: {e}") from None


def decodeLine(line: bytes) -> str:
    """
    Decode one request line.

    @raise BadRequest: if it is not UTF-8 or contains NUL.
    """
    if b"\0" in line:
        raise BadRequest("the request contains a NUL byte")
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadRequest(f"the request is not valid UTF-8 (byte {e.start})") from None


@functools.lru_cache(maxsize=64)
def _optionTables(
    options: tuple[Option, ...],
) -> tuple[dict[str, Option], dict[str, Option]]:
    """The options by long and by short name (made once per command)."""
    byLong = {option.name: option for option in options}
    byShort = {option.short: option for option in options if option.short}
    return byLong, byShort


_NAME_FIRST = "the name is the first word: {command} NAME [IMAGE [COMMAND...]]"
_NO_TERMINAL = "pycm attaches no terminal to a container (logs -f shows its output)"
#: Docker's options of C{docker run} and C{create} that pycm does not
#: take, and what to do instead: said with their refusal.
_RUN_HINTS = {
    "--name": _NAME_FIRST, "-m": "write --memory",
    "-p": "pycm publishes no ports", "--publish": "pycm publishes no ports",
    "-v": "pycm mounts no volumes", "--volume": "pycm mounts no volumes",
    "--rm": "pycm keeps a container until rm removes it",
    "-i": _NO_TERMINAL, "-t": _NO_TERMINAL, "--interactive": _NO_TERMINAL, "--tty": _NO_TERMINAL,
}
_INSPECT_WHOLE = "inspect shows the whole record (the client's ps --format picks fields)"
#: The same by command.
DOCKER_HINTS = {
    "run": _RUN_HINTS, "create": _RUN_HINTS,
    "inspect": {"-f": _INSPECT_WHOLE, "--format": _INSPECT_WHOLE},
}


def unknownOption(option: str, command: str = "") -> BadRequest:
    """The refusal of C{option}, with what to do instead if it is Docker's."""
    hint = DOCKER_HINTS.get(command, {}).get(option)
    message = f"unknown option {option!r}"
    return BadRequest(f"{message}: {hint.format(command=command)}" if hint else message)


def parseOptions(
    words: Sequence[str], options: Sequence[Option], command: str = ""
) -> tuple[dict[str, Any], list[str]]:
    """
    Take the leading options off C{words}: C{--name VALUE}, C{--name=VALUE},
    C{-n VALUE}, and short options written together as Docker's CLI takes
    them (C{-aq}, C{-eKEY=VALUE}: L{pycm.grammar.separateShortWord}).

    @param command: the command's name, for the hint that comes with the
        refusal of one of Docker's options (L{DOCKER_HINTS}).
    @return: the options given (flags as True, repeatable ones as lists,
        others as strings) and the remaining positional words.
    @raise BadRequest: for an unknown option, a missing value, a flag given
        a value, or a non-repeatable option given twice.
    """
    byLong, byShort = _optionTables(tuple(options))
    given: dict[str, Any] = {}
    separated = False
    index = 0
    while index < len(words):
        word = words[index]
        if word == "--":
            index += 1
            break
        if not word.startswith("-") or word == "-":
            break
        value: str | None = None
        if word.startswith("--"):
            name, sep, attached = word[2:].partition("=")
            option = byLong.get(name.lower())
            if sep:
                value = attached
        else:
            name = word[1:]
            option = byShort.get(name)
            if option is None and len(name) > 1:
                if separateShortWord(word, byShort) is None or separated:
                    # Named alone: the rest of the word may be a value.
                    at = next((i for i, c in enumerate(name) if c not in byShort), 0)
                    if name[at] == "=" and at:
                        # -d=true: pycm's flags take no value at all.
                        raise BadRequest(f"option --{byShort[name[at - 1]].name} takes no value")
                    raise unknownOption(f"-{name[at]}", command)
                # -aq, -eKEY=VALUE: the rest of the options read as the
                # words written apart (all of them at once: linear).
                words = [*words[:index], *separateShortOptions(words[index:], options)]
                separated = True
                continue
        if option is None:
            raise unknownOption(word.partition("=")[0], command)
        index += 1
        if option.takesValue:
            if value is None:
                if index >= len(words):
                    raise BadRequest(f"option --{option.name} needs a value")
                value = words[index]
                index += 1
            if option.repeat:
                given.setdefault(option.name, []).append(value)
                continue
        elif value is not None:
            raise BadRequest(f"option --{option.name} takes no value")
        else:
            value = True  # type: ignore[assignment]
        if option.name in given:
            raise BadRequest(f"option --{option.name} given twice")
        given[option.name] = value
    return given, list(words[index:])


def parseKeyValues(values: Sequence[str], what: str) -> dict[str, str]:
    """Turn C{["A=1", "B=2"]} into a dict; C{what} names the option."""
    result = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise BadRequest(f"bad --{what} {item!r}: expected KEY=VALUE")
        result[key] = value
    return result


def parseSeconds(text: str, what: str) -> float:
    """Parse a non-negative number of seconds."""
    try:
        seconds = float(text)
    except ValueError:
        raise BadRequest(f"bad --{what} {text!r}: expected seconds") from None
    if not (seconds >= 0) or seconds == float("inf"):
        raise BadRequest(f"bad --{what} {text!r}: expected seconds")
    return seconds


def parseCount(text: str, what: str, meaning: str = "a whole number") -> int:
    """Parse a non-negative whole number (C{meaning} says what it stands for)."""
    if not _NUMBER.fullmatch(text):
        raise BadRequest(f"bad --{what} {text!r}: expected {meaning}")
    return int(text)


_TIMESTAMP = re.compile(r"[0-9]{1,12}(?:\.[0-9]{1,9})?")
_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}(?:[Tt ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]{1,9})?)?"
    r"(?:[Zz]|[+-][0-9]{2}:[0-9]{2})?)?"
)


def parseSince(text: str, now: float, what: str = "since") -> float:
    """
    The POSIX time C{--since} names, as C{docker logs --since} takes it: a
    duration before C{now} (C{10m}, C{1h30m}, C{45s}, C{1.5h}, C{500ms}),
    an RFC 3339 time (C{2026-11-30T15:00:00Z}, with an offset, or a date
    alone; without an offset it is UTC), or seconds since the epoch
    (C{1764514800}, C{1764514800.5}).

    @raise BadRequest: for anything else.
    """
    if isDuration(text):
        return now - parseDuration(text, what)
    if _TIMESTAMP.fullmatch(text):
        return float(text)
    if _RFC3339.fullmatch(text):
        iso = text.replace("z", "Z").replace("t", "T")
        if iso.endswith("Z"):
            iso = iso[:-1] + "+00:00"
        # datetime takes at most microseconds.
        iso = re.sub(r"(\.[0-9]{6})[0-9]+", r"\1", iso)
        try:
            when = datetime.fromisoformat(iso)
        except ValueError:
            pass
        else:
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            return when.timestamp()
    raise BadRequest(
        f"bad --{what} {text!r}: expected a duration (10m, 1h30m), an RFC 3339 "
        "time (2026-11-30T15:00:00Z) or seconds since the epoch"
    )
