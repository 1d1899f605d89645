"""
What a one-shot command line asks of the daemon: the line as it is, but
for the Docker habits the client reads itself (L{planCommand}).  Nothing
here touches the network: L{planCommand} turns words into a L{Plan}, which
the sending code carries out.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from pycm.client.commandtable import BY_WORD, MULTI_NAME, clientSyntax
from pycm.client.format import LIST_COMMANDS, LogPrefixes, formatLogEntry
from pycm.client.template import Template, TemplateError, formatContainers
from pycm.grammar import (
    CommandSyntax,
    Option,
    separateShortOptions,
    spelling,
    splitOptions,
    valueSpellings,
)
from pycm.printable import printable
from pycm.services.envfile import isVariableName

#: The commands whose option words the plan splits off (for the others all
#: of their words are sent as they are, C{--help} read among the leading
#: ones).
_SPLIT_COMMANDS = ("stop", "restart", "kill", "logs", "list", "ls", "ps", "run", "create")

#: The options of each command word as the client reads a line: the
#: daemon's table as the client knows it (L{pycm.client.commandtable}),
#: and those the client reads itself.
_OPTIONS: dict[str, tuple[Option, ...]] = {word: clientSyntax(row) for word, row in BY_WORD.items()}

#: The options that take a value as the next word, by command word (the
#: rest are flags): what tells an option's value from a name.
VALUE_OPTIONS: dict[str, frozenset[str]] = {
    word: valueSpellings(_OPTIONS[word]) for word in _SPLIT_COMMANDS
}


class PlanError(Exception):
    """The command line is wrong (a usage error: exit status 2)."""

    def __init__(self, message: str, hint: bool = True) -> None:
        super().__init__(message)
        #: Whether C{Try 'pycm --help'} helps (not for a mistake in a file).
        self.hint = hint


class Plan(NamedTuple):
    """
    The requests one command line sends, and how to show their replies.

    @ivar command: the command word, lower case (C{ps} stays C{ps}).
    @ivar requests: the words of each request, sent in order.
    @ivar quiet: C{ps -q}: the names alone.
    @ivar template: C{ps --format TEMPLATE}, or None.
    @ivar jsonLines: C{ps --format json}: one JSON object per line.
    @ivar timestamps: C{logs -t}: each line's time first.
    """

    command: str
    requests: tuple[tuple[str, ...], ...]
    quiet: bool = False
    template: Template | None = None
    jsonLines: bool = False
    timestamps: bool = False

    @property
    def follow(self) -> bool:
        """A C{logs --follow}: events go on after the replies."""
        return self.command == "logs" and any(
            isFollow(words) for words in self.requests
        )

    @property
    def names(self) -> tuple[str, ...]:
        """
        The container names: one a request for a command sent once per
        name, the new container's for C{run} and C{create}.
        """
        if self.command in ("run", "create"):
            _, positional = splitOptions(self.requests[0][1:], VALUE_OPTIONS["run"])
            return tuple(positional[:1])
        if self.command not in MULTI_NAME:
            return ()
        return tuple(words[-1] for words in self.requests)

    def lines(self, value: Any, request: Sequence[str], shared: bool = False) -> list[str] | None:
        """
        The reply C{value} to C{request} (one of this plan's) as the plan
        shows it (C{ps -q} or C{--format}; C{logs} with its prefixes and
        times), or None: as the command's replies are always shown
        (L{pycm.client.format.formatReply}).

        @param shared: events share the output (the shell, piped lines),
            where a followed log's later lines come with their prefix.
        """
        if isinstance(value, list) and self.command in LIST_COMMANDS:
            return formatContainers(value, self.quiet, self.template, self.jsonLines)
        if self.command == "logs" and isinstance(value, list):
            prefixed = len(self.requests) > 1 or (shared and self.follow)
            prefixes = LogPrefixes(self.names if prefixed else ())
            prefixes.widen(request[-1], value)
            return [formatLogEntry(entry, request[-1], prefixes, self.timestamps)
                    for entry in value]
        return None


def isFollow(words: Sequence[str]) -> bool:
    """
    Whether the C{logs} request C{words} follows: C{-f} among its options,
    written apart or not (C{-fn5}), as the daemon reads them.
    """
    values = VALUE_OPTIONS["logs"]
    options, _ = splitOptions(separateShortOptions(words[1:], _OPTIONS["logs"]), values)
    index = 0
    while index < len(options):
        word = spelling(options[index])
        if word in ("-f", "--follow"):
            return True
        index += 2 if word in values else 1
    return False


def commandOptions(
    command: str, table: Mapping[str, CommandSyntax] = BY_WORD
) -> tuple[Option, ...]:
    """The options of C{command} as the client reads a line of it."""
    row = table.get(command.lower())
    return () if row is None else clientSyntax(row)


#: The options of the commands that ask for a name (run, stop).
NAME_OPTIONS = (*commandOptions("run"), *commandOptions("stop"))


def hasPositional(args: Sequence[str], options: Sequence[Option] = NAME_OPTIONS) -> bool:
    """
    True when C{args} (the words after the command) hold a positional
    argument (a container name), not just options (C{-de KEY=1} has none).
    """
    values = valueSpellings(options)
    return bool(splitOptions(separateShortOptions(args, options), values)[1])


def wantsHelp(options: Sequence[str]) -> bool:
    """C{--help} or C{-h} among a command's options."""
    return any(word in ("--help", "-h") for word in options if word != "--")


#: Commands that ask for a container name when typed without one (the
#: shell's C{Enter container name:}; piped, the next line is the name).
NAME_REQUIRED = frozenset({"run", "stop"})


def asksForName(words: Sequence[str], table: Mapping[str, CommandSyntax] = BY_WORD) -> bool:
    """Is C{words} a command that asks for its container name, typed without one?"""
    command = words[0].lower() if words else ""
    if command not in NAME_REQUIRED:
        return False
    options = commandOptions(command, table)
    # -dh: short options written together, help among them.
    return not wantsHelp(separateShortOptions(words[1:], options)) \
        and not hasPositional(words[1:], options)


def planCommand(words: Sequence[str]) -> Plan:
    """
    The L{Plan} for the words after pycm's own options.

    C{pycm COMMAND ...} is sent as it is, except for what the Docker CLI
    has taught people to type:
      - short options written together are written apart (C{ps -aq},
        C{logs -tf}, C{run -eKEY=VALUE}: L{separateShortOptions});
      - C{COMMAND --help} (or C{-h}) is C{help COMMAND};
      - C{run -d}/C{--detach} is dropped (pycm always detaches);
      - C{ps -a}/C{--all} is dropped (pycm always lists every container);
        C{ps -q}/C{--quiet} prints the names alone, C{ps --format json} one
        JSON object per line, C{ps --format TEMPLATE} a line per container
        (see L{pycm.client.template.Template});
      - C{stop}, C{start}, C{restart}, C{kill}, C{rm} and C{logs} take
        several names: one request each, in order, the options given to
        each;
      - C{logs -t}/C{--timestamps} prints each line's time first;
      - C{scale NAME=N...}, as C{docker service scale} takes it, is one
        C{scale NAME N} a name;
      - C{run}/C{create --env-file=FILE} (repeatable) is read here and sent
        as C{-e KEY=VALUE} words, and C{-e KEY} sends this process's KEY
        (L{expandEnv});
      - C{apply FILE} reads the services file and sends its document
        (L{pycm.client.applying.planApply}).

    @raise PlanError: for a usage error (a bad C{--format}, a C{scale}
        without its NAME and N, a file that cannot be read or is wrong).
    """
    command = words[0].lower()
    syntax = _OPTIONS.get(command)
    if syntax:
        # -aq, -eKEY=VALUE: written apart, as the rest of this module reads them.
        words = (words[0], *separateShortOptions(words[1:], syntax))
    rest = list(words[1:])
    options, positional = splitOptions(rest, VALUE_OPTIONS.get(command, frozenset()))
    if wantsHelp(options):
        return Plan("help", (("help", command),))
    if command in ("run", "create"):
        kept = _without(options, ("-d", "--detach"), command) if command == "run" \
            else options
        return Plan(command, ((words[0], *expandEnv(kept), *positional),))
    if command == "apply":
        from pycm.client.applying import ApplyUsageError, planApply

        try:
            return Plan(command, (planApply(words),))
        except ApplyUsageError as e:
            raise PlanError(str(e), e.hint) from None
    if command in LIST_COMMANDS:
        return _planList(words[0], command, options, positional)
    if command == "logs":
        kept = _without(options, ("-t", "--timestamps"), command)
        timestamps = len(kept) != len(options)
        return _perName(words[0], command, kept, positional, timestamps=timestamps)
    if command in MULTI_NAME:
        return _perName(words[0], command, options, positional)
    if command == "scale" and not options:
        return _planScale(words[0], positional)
    return Plan(command, (tuple(words),))


def _without(options: list[str], flags: tuple[str, ...], command: str) -> list[str]:
    """C{options} without the flags C{flags}, but where one is another option's value."""
    values = VALUE_OPTIONS[command]
    kept: list[str] = []
    index = 0
    while index < len(options):
        word = options[index]
        index += 1
        if spelling(word) in flags:
            continue
        kept.append(word)
        if spelling(word) in values and index < len(options):
            kept.append(options[index])
            index += 1
    return kept


def expandEnv(options: list[str], environ: Mapping[str, str] | None = None) -> list[str]:
    """
    C{run}/C{create}'s option words with what the client reads for them:
    each bare C{-e KEY} given KEY's value from C{environ} (L{passOnKeys}),
    then each C{--env-file FILE} read (L{expandEnvFiles}).
    """
    return expandEnvFiles(passOnKeys(options, os.environ if environ is None else environ))


def passOnKeys(options: list[str], environ: Mapping[str, str]) -> list[str]:
    """
    C{run}/C{create}'s option words with each C{-e KEY}, C{--env KEY} or
    C{--env=KEY} (no C{=VALUE}) sent as C{KEY=VALUE} with KEY's value in
    C{environ}, or left out if it has no KEY, as Docker's C{-e} does.  A
    key that is no variable name (empty, or with a blank or NUL in it) is
    sent as it is, for the daemon to refuse; so is the value of another
    option.

    @raise PlanError: for a value with a line break (a request is one line).
    """
    values = VALUE_OPTIONS["run"]
    result: list[str] = []
    index = 0
    while index < len(options):
        word = options[index]
        spelt = spelling(word)
        index += 1
        if spelt in ("-e", "--env") and index < len(options) and _bareKey(options[index]):
            key = options[index]
            index += 1
            if key in environ:
                result += [word, f"{key}={_oneLine(key, environ[key])}"]
        elif spelt.startswith("--env=") and _bareKey(word[len("--env="):]):
            key = word[len("--env="):]
            if key in environ:
                result.append(f"{word}={_oneLine(key, environ[key])}")
        else:
            result.append(word)
            if spelt in values and index < len(options):
                result.append(options[index])
                index += 1
    return result


def _oneLine(key: str, value: str, where: str = "") -> str:
    """
    C{value}, the value of C{key}, unless it holds a line break: a C{run}
    request is one line (C{apply}'s JSON document carries them).
    """
    if "\n" in value or "\r" in value:
        raise PlanError(printable(where or f"-e {key}") + ": its value holds a line break,"
                        " which run and create cannot send (a request is one line)",
                        hint=False)
    return value


def _bareKey(word: str) -> bool:
    """Whether C{word} is a variable name alone, without C{=VALUE}."""
    return "=" not in word and isVariableName(word)


def expandEnvFiles(options: list[str]) -> list[str]:
    """
    C{run}/C{create}'s option words with each C{--env-file FILE} (or
    C{--env-file=FILE}) replaced by a C{-e KEY=VALUE} word pair per
    variable of FILE (L{pycm.services.envfile}), in place: a later file
    wins over an earlier one, and a variable given with C{-e}/C{--env}
    wins over every file (it is not sent from the files).  A file named
    again is not read again (L{pycm.services.envfile.EnvFiles}).

    @raise PlanError: for an env file that cannot be read or is wrong
        (C{FILE:LINE: why}), env files of over 1 MiB in all (a file counted
        each time it is named), or C{--env-file} without FILE.
    """
    if not any(w == "--env-file" or w.startswith("--env-file=") for w in options):
        return options
    from pycm.services.envfile import EnvFileError, EnvFiles

    given = set()
    for index, word in enumerate(options):
        if word in ("-e", "--env") and index + 1 < len(options):
            given.add(options[index + 1].partition("=")[0])
        elif word.startswith("--env="):
            given.add(word[len("--env="):].partition("=")[0])
    files = EnvFiles()
    fromFiles: dict[str, str] = {}
    result: list[str] = []
    index = 0
    while index < len(options):
        word = options[index]
        index += 1
        if word != "--env-file" and not word.startswith("--env-file="):
            result.append(word)
            continue
        if "=" in word:
            path = word.partition("=")[2]
        elif index < len(options) and options[index] != "--":
            path, index = options[index], index + 1
        else:
            path = ""
        if not path:
            raise PlanError("option --env-file needs a FILE")
        try:
            variables = files.read(path)
        except EnvFileError as e:
            raise PlanError(e.message, hint=False) from None
        for key, value in variables.items():
            _oneLine(key, value, f"{path}: {key}")
        fromFiles.update(variables)
    words = [w for key, value in fromFiles.items() if key not in given
             for w in ("-e", f"{key}={value}")]
    return words + result


#: What C{scale} takes, for its usage error.
SCALE_USAGE = ("scale takes a container's NAME and how many copies of it to run, "
               "N (0 or more): scale web 3, or scale web=3 db=2 as docker service "
               "scale takes them")


def _planScale(word: str, positional: list[str]) -> Plan:
    """C{scale NAME N} as it is; C{scale NAME=N...}, one request a name."""
    if len(positional) == 2 and "=" not in positional[0]:
        return Plan("scale", ((word, *positional),))
    pairs = [argument.partition("=") for argument in positional]
    if not pairs or not all(name and equals for name, equals, _ in pairs):
        raise PlanError(SCALE_USAGE)
    return Plan("scale", tuple((word, name, count) for name, _, count in pairs))


def _perName(
    word: str,
    command: str,
    options: list[str],
    names: list[str],
    timestamps: bool = False,
) -> Plan:
    if len(names) <= 1:
        return Plan(command, ((word, *options, *names),), timestamps=timestamps)
    if options and options[-1] == "--":
        options = options[:-1]
    if any(name.startswith("-") for name in names):
        # Only after the names, where the daemon would refuse it too:
        # send one request with every word so that it says why.
        return Plan(command, ((word, *options, *names),), timestamps=timestamps)
    requests = tuple((word, *options, name) for name in names)
    return Plan(command, requests, timestamps=timestamps)


def _planList(
    word: str, command: str, options: list[str], positional: list[str]
) -> Plan:
    kept: list[str] = []
    quiet = False
    formatText: str | None = None
    index = 0
    while index < len(options):
        option = options[index]
        index += 1
        if option in ("-a", "--all"):
            continue
        if option in ("-q", "--quiet"):
            quiet = True
            continue
        if option == "--format" or option.startswith("--format="):
            if "=" in option:
                formatText = option.partition("=")[2]
            elif index < len(options):
                formatText = options[index]
                index += 1
            else:
                raise PlanError("option --format needs a value: json, or a template "
                                "like '{{.Name}} {{.State}}'")
            continue
        if option in ("-f", "--filter") and index < len(options):
            kept.extend((option, options[index]))
            index += 1
            continue
        kept.append(option)
    template: Template | None = None
    jsonLines = False
    if formatText is not None:
        if formatText.strip().lower() == "json":
            jsonLines = True
        elif formatText.strip().lower() == "table":
            pass  # Docker's word for the default table
        else:
            try:
                template = Template.parse(formatText)
            except TemplateError as e:
                raise PlanError(str(e)) from None
    return Plan(
        command,
        ((word, *kept, *positional),),
        quiet=quiet,
        template=template,
        jsonLines=jsonLines,
    )
