"""
Tab completion: C{pycm completion bash|zsh|fish} prints a script for the
shell, from the client's copy of the daemon's command table
(L{pycm.client.commandtable}: no daemon needed) and the options the client
reads itself (L{pycm.client.plan}); the hidden C{pycm __names}
prints the container names for it (L{containerNames}).
"""

from __future__ import annotations

import json
import shlex
import socket
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

from pycm.client.commandtable import CLIENT_OPTIONS, CLIENT_VALUE_OPTIONS, COMMANDS

if TYPE_CHECKING:
    from pycm.client.arguments import CommandLine

#: The client's own commands, not the daemon's, and what they are.
CLIENT_COMMANDS = {
    "completion": "print a shell completion script",
    "top": "a live full-screen view of the containers",
}
SHELLS = ("bash", "zsh", "fish")
#: What C{pycm completion --help} (and C{pycm help completion}) prints.
COMPLETION_USAGE = [
    "usage: pycm completion bash|zsh|fish",
    "",
    "Print a Tab completion script for that shell: pycm's commands, their",
    "options, and container names (asked of the daemon at --host when Tab is",
    "pressed, quietly). No daemon is needed to print it.",
    "",
    "  source <(pycm completion bash)         # in ~/.bashrc",
    "  source <(pycm completion zsh)          # in ~/.zshrc",
    "  pycm completion fish > ~/.config/fish/completions/pycm.fish",
]
#: pycm's own options, before the command.
GLOBAL_OPTIONS = ("--host", "-H", "--token", "--json", "--help", "--version")
#: Commands whose positional arguments are all container names (several
#: with Docker's habits), and those that take one name.
MULTI_NAME = frozenset({"stop", "start", "restart", "kill", "rm", "logs", "stats", "wait"})
ONE_NAME = frozenset({"inspect", "unfollow", "scale"})
#: Commands whose positional argument is a file on the client's machine.
FILE_COMMANDS = frozenset({"apply"})
#: The options the client reads itself whose value is a file.
FILE_OPTIONS = frozenset({"--env-file"})
#: How long C{pycm __names} may take, in seconds.
NAMES_TIMEOUT = 1.0


class CommandWords(NamedTuple):
    """
    What completion knows of one command.

    @ivar words: its name and aliases.
    @ivar options: every option spelling it takes (C{-t}, C{--time}).
    @ivar valueOptions: those that take the next word as their value.
    @ivar names: whether its arguments are container names.
    @ivar files: whether its argument is a file (C{apply FILE}).
    @ivar fileOptions: those options whose value is a file.
    """

    name: str
    summary: str
    words: tuple[str, ...]
    options: tuple[str, ...]
    valueOptions: tuple[str, ...]
    names: bool
    files: bool = False
    fileOptions: tuple[str, ...] = ()


def commandTable() -> list[CommandWords]:
    """Every command, from the daemon's table and the client's additions."""
    table = []
    for command in COMMANDS:
        options: list[str] = []
        values: list[str] = []
        for option in command.options:
            spellings = option.spellings()
            options.extend(spellings)
            if option.takesValue:
                values.extend(spellings)
        extra = CLIENT_OPTIONS.get(command.name, ())
        options.extend(option for option in extra if option not in options)
        values.extend(option for option in extra if option in CLIENT_VALUE_OPTIONS)
        options.append("--help")
        table.append(CommandWords(
            name=command.name,
            summary=command.summary,
            words=command.words,
            options=tuple(options),
            valueOptions=tuple(values),
            names=command.name in MULTI_NAME or command.name in ONE_NAME,
            files=command.name in FILE_COMMANDS,
            fileOptions=tuple(option for option in extra if option in FILE_OPTIONS),
        ))
    for name, summary in CLIENT_COMMANDS.items():
        table.append(CommandWords(name, summary, (name,), ("--help",), (), False))
    return table


def commandWords(table: Sequence[CommandWords] | None = None) -> list[str]:
    """Every command word (aliases too), sorted."""
    if table is None:
        table = commandTable()
    return sorted(word for command in table for word in command.words)


# -- the scripts ---------------------------------------------------------------

_BASH = r"""# pycm completion for bash: add to ~/.bashrc
#   source <(pycm completion bash)
_pycm_names() {
    "$1" "${@:2}" __names 2>/dev/null
}
_pycm() {
    local cur prev cmd i program
    cur="${COMP_WORDS[COMP_CWORD]}"
    prev=""
    [ "$COMP_CWORD" -gt 0 ] && prev="${COMP_WORDS[COMP_CWORD-1]}"
    program="${COMP_WORDS[0]}"
    local -a own=()
    cmd=""
    i=1
    while [ "$i" -lt "$COMP_CWORD" ]; do
        case "${COMP_WORDS[i]}" in
            --host|-H|--token)
                own+=("${COMP_WORDS[i]}" "${COMP_WORDS[i+1]}"); i=$((i+2)) ;;
            --host=*|--token=*) own+=("${COMP_WORDS[i]}"); i=$((i+1)) ;;
            -*) i=$((i+1)) ;;
            *) cmd="${COMP_WORDS[i]}"; break ;;
        esac
    done
    COMPREPLY=()
    if [ -z "$cmd" ]; then
        case "$prev" in
            --host|-H|--token) return ;;
        esac
        if [[ "$cur" == -* ]]; then
            COMPREPLY=($(compgen -W "@GLOBAL@" -- "$cur"))
        else
            COMPREPLY=($(compgen -W "@COMMANDS@" -- "$cur"))
        fi
        return
    fi
    local options="" values="" names="" files=""
    case "$cmd" in
@CASES@
    esac
    local word
    for word in $files; do
        if [ "$prev" = "$word" ]; then
            compopt -o filenames 2>/dev/null
            COMPREPLY=($(compgen -f -- "$cur"))
            return
        fi
    done
    for word in $values; do
        [ "$prev" = "$word" ] && return
    done
    # Short options written together (-fn): the first letter that takes a
    # value takes the rest of the word, or the word being typed if none is left.
    if [[ "$prev" == -[!-]* ]]; then
        local letters="${prev:1}"
        while [ -n "$letters" ]; do
            if [[ " $values " == *" -${letters:0:1} "* ]]; then
                [ "${#letters}" -eq 1 ] && return
                break
            fi
            [[ " $options " == *" -${letters:0:1} "* ]] || break
            letters="${letters:1}"
        done
    fi
    if [[ "$cur" == -* ]]; then
        COMPREPLY=($(compgen -W "$options" -- "$cur"))
    elif [ "$names" = commands ]; then
        COMPREPLY=($(compgen -W "@COMMANDS@" -- "$cur"))
    elif [ "$names" = shells ]; then
        COMPREPLY=($(compgen -W "@SHELLS@" -- "$cur"))
    elif [ "$names" = yes ]; then
        COMPREPLY=($(compgen -W "$(_pycm_names "$program" "${own[@]}")" -- "$cur"))
    elif [ "$names" = files ]; then
        compopt -o filenames 2>/dev/null
        COMPREPLY=($(compgen -f -- "$cur"))
    fi
    return 0
}
complete -F _pycm pycm
"""

_ZSH = r"""#compdef pycm
# pycm completion for zsh: add to ~/.zshrc
#   source <(pycm completion zsh)
# The bash script below, through zsh's bash completion emulation (it uses
# nothing of bash that zsh lacks).
(( ${+_comps} )) || { autoload -U +X compinit && compinit; }
autoload -U +X bashcompinit && bashcompinit
"""

_FISH_HEAD = r"""# pycm completion for fish:
#   pycm completion fish > ~/.config/fish/completions/pycm.fish
function __pycm_names
    set -l words (commandline -opc)
    set -l own
    set -l i 2
    while test $i -le (count $words)
        switch $words[$i]
            case --host -H --token
                set own $own $words[$i] $words[(math $i + 1)]
                set i (math $i + 2)
            case '-*'
                set i (math $i + 1)
            case '*'
                break
        end
    end
    $words[1] $own __names 2>/dev/null
end
function __pycm_value_next --argument-names values others
    # Is the word being typed the value of the option before it?  $values
    # and $others: the command's options that take a value and the rest.
    # Short options written together (-fn): the first letter that takes a
    # value takes the rest of the word, or the next word if none is left.
    set -l prev (commandline -opc)[-1]
    set -l values (string split ' ' -- $values)
    contains -- $prev $values; and return 0
    string match -qr -- '^-[^-]' $prev; or return 1
    set -l letters (string split '' -- (string sub -s 2 -- $prev))
    set -l i 1
    for letter in $letters
        if contains -- -$letter $values
            test $i -eq (count $letters)
            return
        end
        contains -- -$letter (string split ' ' -- $others); or return 1
        set i (math $i + 1)
    end
    return 1
end
complete -c pycm -f
complete -c pycm -n __fish_use_subcommand -l host -s H -r -d "the daemon's endpoint"
complete -c pycm -n __fish_use_subcommand -l token -r -d 'the token'
complete -c pycm -n __fish_use_subcommand -l json -d 'raw JSON output'
"""


def _bashCase(command: CommandWords) -> str:
    if command.name == "help":
        names = "commands"
    elif command.name == "completion":
        names = "shells"
    elif command.files:
        names = "files"
    else:
        names = "yes" if command.names else ""
    pattern = "|".join(command.words)
    return (
        f"        {pattern})\n"
        f"            options=\"{' '.join(command.options)}\"\n"
        f"            values=\"{' '.join(command.valueOptions)}\"\n"
        f"            files=\"{' '.join(command.fileOptions)}\"\n"
        f"            names=\"{names}\" ;;"
    )


def bashScript(table: Sequence[CommandWords] | None = None) -> str:
    """The bash completion script (a function C{_pycm})."""
    if table is None:
        table = commandTable()
    return (
        _BASH.replace("@CASES@", "\n".join(_bashCase(c) for c in table))
        .replace("@COMMANDS@", " ".join(commandWords(table)))
        .replace("@GLOBAL@", " ".join(GLOBAL_OPTIONS))
        .replace("@SHELLS@", " ".join(SHELLS))
    )


def zshScript(table: Sequence[CommandWords] | None = None) -> str:
    """The zsh completion script: the bash one, through C{bashcompinit}."""
    return _ZSH + bashScript(table)


def _fishQuote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def fishScript(table: Sequence[CommandWords] | None = None) -> str:
    """The fish completion script."""
    if table is None:
        table = commandTable()
    lines = [_FISH_HEAD.rstrip("\n")]
    for command in table:
        for word in command.words:
            lines.append(
                f"complete -c pycm -n __fish_use_subcommand -a {word} "
                f"-d {_fishQuote(command.summary)}"
            )
        seen = f"'__fish_seen_subcommand_from {' '.join(command.words)}'"
        for option in command.options:
            flag = f"-l {option[2:]}" if option.startswith("--") else f"-s {option[1:]}"
            needs = " -x" if option in command.valueOptions else ""
            if option in command.fileOptions:
                needs = " -r -F"
            lines.append(f"complete -c pycm -n {seen} {flag}{needs}")
        if command.files:
            lines.append(f"complete -c pycm -n {seen} -F")
        elif command.names:
            values = " ".join(command.valueOptions)
            others = " ".join(o for o in command.options if o not in command.valueOptions)
            wanted = (
                f"'__fish_seen_subcommand_from {' '.join(command.words)}"
                f"; and not __pycm_value_next \"{values}\" \"{others}\"'"
            )
            lines.append(f"complete -c pycm -n {wanted} -a '(__pycm_names)'")
        elif command.name == "help":
            words = _fishQuote(" ".join(commandWords(table)))
            lines.append(f"complete -c pycm -n {seen} -a {words}")
        elif command.name == "completion":
            lines.append(f"complete -c pycm -n {seen} -a {_fishQuote(' '.join(SHELLS))}")
    return "\n".join(lines) + "\n"


SCRIPTS = {"bash": bashScript, "zsh": zshScript, "fish": fishScript}


def completionScript(shell: str) -> str:
    """
    The completion script for C{shell}.

    @raise KeyError: for a shell other than bash, zsh or fish.
    """
    return SCRIPTS[shell]()


# -- container names, quickly -------------------------------------------------


def socketAddress(host: str) -> tuple[int, object] | None:
    """
    The address family and address of a plain C{tcp:} or C{unix:}
    endpoint string, or None for any other (C{tls:} is not tried).
    """
    kind, _, rest = host.partition(":")
    fields = rest.split(":")
    named = dict(f.split("=", 1) for f in fields if "=" in f)
    plain = [f for f in fields if "=" not in f]
    if kind == "unix":
        path = named.get("path") or (plain[0] if plain else "")
        return (socket.AF_UNIX, path) if path else None
    if kind == "tcp":
        hostName = named.get("host") or (plain[0] if plain else "")
        port = named.get("port") or (plain[1] if len(plain) > 1 else "")
        if hostName and port.isdigit():
            return (socket.AF_UNSPEC, (hostName, int(port)))
    return None


def containerNames(host: str, token: str | None,
                   timeout: float = NAMES_TIMEOUT,
                   options: CommandLine | None = None) -> list[str]:
    """
    The daemon's container names, sorted; C{[]} on any error or when the
    daemon has not answered within C{timeout} seconds, so that a Tab never
    hangs or spills an error into the command line (asked over a plain
    socket, with no reactor).  A token C{options} say was found in a file
    is sent only as L{pycm.client.tokensafety} allows, silently.
    """
    address = socketAddress(host)
    if address is None:
        return []
    deadline = time.monotonic() + timeout
    family, where = address
    try:
        if family == socket.AF_UNIX:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            sock.connect(where)  # type: ignore[arg-type]
        else:
            sock = socket.create_connection(where, timeout)  # type: ignore[arg-type]
    except OSError:
        return []
    with sock:
        if token and options is not None:
            from pycm.client.tokensafety import socketEnds, whyWithheld

            if whyWithheld(options, *socketEnds(sock)):
                token = None
        try:
            requests = b""
            if token:
                requests += f"auth {shlex.quote(token)}\n".encode()
            requests += b"list\n"
            sock.sendall(requests)
            replies = 2 if token else 1
            buffer = b""
            while buffer.count(b"\n") < replies:
                left = deadline - time.monotonic()
                if left <= 0:
                    return []
                sock.settimeout(left)
                chunk = sock.recv(65536)
                if not chunk:
                    return []
                buffer += chunk
            line = buffer.split(b"\n")[replies - 1]
            if not line.startswith(b"OK "):
                return []
            containers = json.loads(line[3:])
            return sorted(str(c["name"]) for c in containers if isinstance(c, dict))
        except (OSError, ValueError, KeyError, TypeError):
            return []
