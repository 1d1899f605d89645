"""
The words of a request that both sides read: a command's options and where
they end.  The daemon's command table is made of these rows and its C{help}
reply carries them; the client reads them back from that reply (or from its
own copy, L{pycm.client.commandtable}) to split, plan and complete lines.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple


class Option:
    """
    One option a command accepts.

    @ivar name: the long name, without dashes (C{"env"}).
    @ivar short: the one-letter short form, without its dash, or None.
    @ivar takesValue: False for a flag (C{--force}).
    @ivar repeat: True if it may be given more than once (values collect
        into a list).
    @ivar metavar: how C{help} names its value.
    @ivar field: the L{pycm.model.ContainerSpec} field its value fills (the
        daemon's C{run}/C{create} options), or None.
    @ivar read: the daemon's grammar of its value: C{read(value, name)} gives
        the field's value or raises L{pycm.errors.BadRequest}; None where the
        handler reads the value itself.

    Two options are equal when a line spells and splits them alike: the
    metavar and the daemon's reading are not compared.  (A plain class, not
    attrs: the one-shot client's fast path imports this module.)
    """

    __slots__ = ("name", "short", "takesValue", "repeat", "metavar", "field", "read", "_hash")

    def __init__(
        self,
        name: str,
        short: str | None = None,
        takesValue: bool = True,
        repeat: bool = False,
        metavar: str = "VALUE",
        field: str | None = None,
        read: Callable[[Any, str], Any] | None = None,
    ) -> None:
        self.name = name
        self.short = short
        self.takesValue = takesValue
        self.repeat = repeat
        self.metavar = metavar
        self.field = field
        self.read = read
        # Made once: parsing looks a command's options up by their tuple.
        self._hash = hash(self._key())

    def _key(self) -> tuple[str, str | None, bool, bool]:
        return (self.name, self.short, self.takesValue, self.repeat)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Option):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return self._hash

    def __repr__(self) -> str:
        return "Option({!r}, {!r}, takesValue={!r}, repeat={!r})".format(*self._key())

    def spellings(self) -> tuple[str, ...]:
        """C{("--time", "-t")}: every way a line may write it."""
        if self.short:
            return (f"--{self.name}", f"-{self.short}")
        return (f"--{self.name}",)

    def usage(self) -> str:
        text = f"--{self.name}"
        if self.takesValue:
            text += f"={self.metavar}"
        if self.short:
            text = f"-{self.short}|{text}"
        return f"[{text}]" + ("..." if self.repeat else "")

    def toJSON(self) -> dict[str, Any]:
        """What C{help} says of it: enough to split and complete a line."""
        return {
            "name": self.name,
            "short": self.short,
            "takes_value": self.takesValue,
            "repeat": self.repeat,
        }

    @classmethod
    def fromJSON(cls, data: Mapping[str, Any]) -> Option:
        return cls(
            name=str(data["name"]),
            short=data.get("short") or None,
            takesValue=bool(data.get("takes_value", True)),
            repeat=bool(data.get("repeat", False)),
        )


def valueSpellings(options: Iterable[Option]) -> frozenset[str]:
    """The spellings of those of C{options} that take the next word as value."""
    return frozenset(
        spelling for option in options if option.takesValue for spelling in option.spellings()
    )


def spelling(word: str) -> str:
    """An option word as the daemon reads it: a long option in any case."""
    return word.lower() if word.startswith("--") else word


class CommandSyntax(NamedTuple):
    """
    What a client needs to know of one command: its words and its options,
    as C{help} says them.
    """

    name: str
    summary: str = ""
    aliases: tuple[str, ...] = ()
    options: tuple[Option, ...] = ()

    @property
    def words(self) -> tuple[str, ...]:
        """Its name, then its aliases."""
        return (self.name, *self.aliases)

    def optionSpellings(self) -> tuple[str, ...]:
        """Every option spelling, long then short, in the table's order."""
        return tuple(spelling for option in self.options for spelling in option.spellings())

    def valueSpellings(self) -> frozenset[str]:
        """The spellings of the options that take the next word as value."""
        return valueSpellings(self.options)

    def toJSON(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "summary": self.summary,
            "aliases": list(self.aliases),
            "options": [option.toJSON() for option in self.options],
        }

    @classmethod
    def fromJSON(cls, data: Mapping[str, Any]) -> CommandSyntax:
        return cls(
            name=str(data["name"]),
            summary=str(data.get("summary", "")),
            aliases=tuple(str(alias) for alias in data.get("aliases", ())),
            options=tuple(Option.fromJSON(option) for option in data.get("options", ())),
        )


def syntaxFromHelp(reply: Any) -> tuple[CommandSyntax, ...] | None:
    """
    The commands of a C{help} reply, or None if it does not carry their
    options (a daemon from before they were added) or is not one.
    """
    try:
        rows = reply["commands"]
        if not all("options" in row for row in rows):
            return None
        return tuple(CommandSyntax.fromJSON(row) for row in rows)
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def commandsByWord(table: Iterable[CommandSyntax]) -> dict[str, CommandSyntax]:
    """Each command word and alias (lower case) to its row."""
    return {word: row for row in table for word in row.words}


def splitOptions(
    words: Sequence[str], valueSpellings: frozenset[str]
) -> tuple[list[str], list[str]]:
    """
    The leading option words (each with its value) and the rest, as the
    daemon splits them: the first word not starting with C{-} ends the
    options, C{--} too (and is kept with them).  C{valueSpellings} are the
    options whose value is the next word (a long one in any case, as the
    daemon reads it).
    """
    index = 0
    while index < len(words):
        word = words[index]
        if word == "--":
            index += 1
            break
        if not word.startswith("-") or word == "-":
            break
        index += 2 if spelling(word) in valueSpellings else 1
    return list(words[:index]), list(words[index:])



def separateShortWord(word: str, byShort: Mapping[str, Option]) -> list[str] | None:
    """
    A word of short options written together, as Docker's CLI reads it,
    written apart: C{-aq} is C{-a -q}; C{-eKEY=VALUE} and C{-e=KEY=VALUE}
    are C{-e KEY=VALUE}; C{-fn5} is C{-f -n 5}.  Letters are read in turn,
    and the first that takes a value takes the rest of the word (its C{=}
    dropped, unless nothing follows it), or the next word if nothing is
    left.  None if a letter is no
    option of C{byShort} (short name to option): the word is then unknown.
    """
    separated = _separated(word, byShort)
    return None if separated is None else separated[0]


def _separated(word: str, byShort: Mapping[str, Option]) -> tuple[list[str], bool] | None:
    """L{separateShortWord}'s words, and whether the next word is a value."""
    separated: list[str] = []
    letters = word[1:]
    for index, letter in enumerate(letters):
        option = byShort.get(letter)
        if option is None:
            return None
        separated.append(f"-{letter}")
        if option.takesValue:
            rest = letters[index + 1:]
            if not rest:
                return separated, True
            # pflag's rule: "-e=V" is V, but "-e=" alone is "=".
            separated.append(rest[1:] if rest.startswith("=") and len(rest) > 1 else rest)
            break
    return separated, False


def separateShortOptions(words: Sequence[str], options: Iterable[Option]) -> list[str]:
    """
    C{words} (a command's, after its name) with each of its leading short
    option words written apart (L{separateShortWord}); an option's value
    and what follows the options are left as they are, and so is a word
    with a letter that is no option, for the reader to refuse.
    """
    options = tuple(options)
    byShort = {option.short: option for option in options if option.short}
    values = valueSpellings(options)
    separated: list[str] = []
    index = 0
    while index < len(words):
        word = words[index]
        index += 1
        if word == "--" or not word.startswith("-") or word == "-":
            index -= 1
            break
        apart = _separated(word, byShort) if not word.startswith("--") else None
        if apart is None:
            separated.append(word)
            takesNext = spelling(word) in values
        else:
            separated.extend(apart[0])
            takesNext = apart[1]
        if takesNext and index < len(words):
            separated.append(words[index])
            index += 1
    separated.extend(words[index:])
    return separated


def takesNextWord(word: str, options: Iterable[Option]) -> bool:
    """
    Whether the option word C{word} takes the next word as its value:
    C{--tail}, C{-n}, or short options written together that end with one
    (C{-fn}).
    """
    options = tuple(options)
    if word.startswith("--"):
        return spelling(word) in valueSpellings(options)
    if not word.startswith("-") or word == "-":
        return False
    separated = _separated(word, {option.short: option for option in options if option.short})
    return separated is not None and separated[1]
