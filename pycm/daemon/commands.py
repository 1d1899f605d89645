"""
The command table: one row (L{Command}) a command, saying its words, its
options (L{pycm.grammar.Option}: value grammar and, for C{run}/C{create},
the spec field), its arguments, who may use it and its handler.  Dispatch
(L{pycm.daemon.dispatch}) looks words up in L{BY_WORD}; C{help} and the
client's completion read the same rows.  A word not in the table
(C{__init__}, C{lineReceived}, C{_x}) is an unknown command.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

import pycm
from pycm.daemon.handlers import applying, connection, containers, observing
from pycm.daemon.runoptions import RUN_OPTIONS
from pycm.daemon.session import Session
from pycm.errors import BadRequest
from pycm.grammar import CommandSyntax, Option
from pycm.interfaces import IScalable
from pycm.model import Container, State

Handler = Callable[[Session, Mapping[str, Any], Sequence[str]], Any]


@attrs.frozen
class Command:
    """
    One row of the command table.

    @ivar arguments: how C{help} shows the positional arguments.
    @ivar minArgs: the fewest positional arguments; C{maxArgs} the most
        (None: no limit).
    @ivar public: True if it may be used before C{auth}.
    """

    name: str
    handler: Handler
    summary: str
    arguments: str = ""
    options: tuple[Option, ...] = ()
    minArgs: int = 0
    maxArgs: int | None = 0
    public: bool = False
    aliases: tuple[str, ...] = ()
    #: It changes a container: logged at info with its outcome (L{audited}).
    changes: bool = False
    #: How many leading arguments the log may show (the container's name,
    #: run's image); the others may be secret (L{pycm.redact}).
    loggedArgs: int = 0
    #: Its arguments are taken as they are, none read as an option (a token
    #: may start with C{-}).
    literal: bool = False

    def usage(self) -> str:
        parts = [self.name, *(option.usage() for option in self.options)]
        if self.arguments:
            parts.append(self.arguments)
        return " ".join(parts)

    def syntax(self) -> CommandSyntax:
        """Its words and options, as a client reads them."""
        return CommandSyntax(self.name, self.summary, self.aliases, self.options)

    def describe(self) -> dict[str, Any]:
        """What C{help} says of it."""
        return {"usage": self.usage(), **self.syntax().toJSON()}


def help_(session: Session, options: Mapping[str, Any], args: Sequence[str]) -> Any:
    if not args:
        return {"commands": [command.describe() for command in COMMANDS]}
    command = BY_WORD.get(args[0].lower())
    if command is None:
        raise BadRequest(f"unknown command {args[0]!r}; try 'help'")
    return command.describe()


def info(session: Session, options: Mapping[str, Any], args: Sequence[str]) -> Any:
    state = session.state
    backend = state.backend

    def render(containers: list[Container]) -> dict[str, Any]:
        counts = dict.fromkeys(State.ALL, 0)
        for container in containers:
            counts[container.state] = counts.get(container.state, 0) + 1
        capabilities = backend.capabilities.toJSON()
        capabilities["commands"] = sorted(
            word for word in BY_WORD if word != "scale" or IScalable.providedBy(backend)
        )
        return {
            "server": "pycm",
            "version": pycm.__version__,
            "protocol": pycm.PROTOCOL_VERSION,
            "backend": backend.name,
            "default_image": backend.defaultImage,
            "capabilities": capabilities,
            "containers": {"total": len(containers), **counts},
            "uptime": round(state.clock.seconds() - state.startedAt, 3),
            "listeners": list(state.listeners),
            "connections": state.connections,
            "last_event_id": state.events.lastId,
            "unsaved": {
                "containers": sum(1 for container in containers if not container.saved),
                "events": state.events.unsavedCount,
            },
            "quarantined": list(getattr(backend, "quarantined", [])),
        }

    return backend.list().addCallback(render)


NAME = "NAME"
#: stop's and restart's option: seconds from the stop signal to KILL.
STOP_TIME = (Option("time", "t", metavar="SECONDS"),)
#: The command table, one row a command, in the contract's order.
COMMANDS = (
    Command("ping", connection.ping, "check that the daemon answers", public=True),
    Command("version", connection.version, "the daemon's version and backend", public=True),
    Command(
        "help", help_, "list the commands, or show one's usage",
        arguments="[COMMAND]", maxArgs=1, public=True,
    ),
    Command(
        "run", containers.run, "create a container and start it",
        arguments="NAME [IMAGE [COMMAND [ARG...]]]",
        # --detach: Docker's habit; pycm always detaches.
        options=(*RUN_OPTIONS, Option("detach", "d", takesValue=False)),
        minArgs=1, maxArgs=None, changes=True, loggedArgs=2,
    ),
    Command(
        "create", containers.create, "create a container without starting it",
        arguments="NAME [IMAGE [COMMAND [ARG...]]]",
        options=RUN_OPTIONS, minArgs=1, maxArgs=None, changes=True, loggedArgs=2,
    ),
    Command("start", containers.start, "start a created or stopped container",
            arguments=NAME, minArgs=1, maxArgs=1, loggedArgs=1, changes=True),
    Command(
        "stop", containers.stop, "stop a container: its stop signal, then KILL after --time",
        arguments=NAME, options=STOP_TIME,
        minArgs=1, maxArgs=1, loggedArgs=1, changes=True,
    ),
    Command(
        "restart", containers.restart, "stop a container, then start it",
        arguments=NAME, options=STOP_TIME,
        minArgs=1, maxArgs=1, loggedArgs=1, changes=True,
    ),
    Command(
        "kill", containers.kill, "send a signal to a container (default KILL)",
        arguments=NAME, options=(Option("signal", "s", metavar="SIG"),),
        minArgs=1, maxArgs=1, loggedArgs=1, changes=True,
    ),
    Command(
        "rm", containers.rm, "remove a container (a running one only with --force)",
        arguments=NAME, options=(Option("force", "f", takesValue=False),),
        minArgs=1, maxArgs=1, loggedArgs=1, changes=True,
    ),
    Command(
        "scale", containers.scale, "set how many copies of a container run (swarm)",
        arguments="NAME N", minArgs=2, maxArgs=2, loggedArgs=2, changes=True,
    ),
    Command(
        "apply", applying.apply, "make the containers match a services document",
        arguments="DOCUMENT",
        options=(
            Option("dry-run", takesValue=False),
            Option("prune", takesValue=False),
            Option("project", metavar="NAME"),
            Option("progress-id", metavar="ID"),
        ),
        # The document holds env values: never logged.
        minArgs=1, maxArgs=1, changes=True, loggedArgs=0,
    ),
    Command(
        "list", containers.list_, "list every container, sorted by name",
        options=(
            Option("filter", "f", repeat=True, metavar="status|state|label|name=VALUE"),
            # --all: Docker's habit; pycm always lists every container.
            Option("all", "a", takesValue=False),
        ),
        aliases=("ls", "ps"),
    ),
    Command("inspect", containers.inspect, "show every detail of a container",
            arguments=NAME, minArgs=1, maxArgs=1, loggedArgs=1),
    Command(
        "logs", observing.logs, "show a container's last output lines; --follow streams more",
        arguments=NAME,
        options=(
            Option("tail", "n", metavar="N|all"),
            Option("follow", "f", takesValue=False),
            Option("since", metavar="DURATION|TIME"),
        ),
        minArgs=1, maxArgs=1, loggedArgs=1,
    ),
    Command("unfollow", observing.unfollow, "stop a logs --follow on this connection",
            arguments=NAME, minArgs=1, maxArgs=1, loggedArgs=1),
    Command(
        "wait", observing.wait, "wait until a container reaches a condition",
        arguments=NAME,
        options=(
            Option("for", metavar="not-running|running|next-exit|removed|healthy|unhealthy"),
            Option("timeout", metavar="SECONDS"),
        ),
        minArgs=1, maxArgs=1, loggedArgs=1,
    ),
    Command(
        "stats", observing.stats,
        "CPU, memory, pids and block I/O of running (or the named) containers",
        arguments="[NAME...]", options=(Option("no-stream", takesValue=False),),
        maxArgs=None, loggedArgs=1,
    ),
    Command(
        "events", observing.events, "receive container events on this connection",
        options=(
            Option("since", metavar="ID"),
            Option("filter", "f", repeat=True, metavar="name|action=VALUE"),
            Option("off", takesValue=False),
        ),
    ),
    Command("info", info, "the daemon's backend, capabilities, counts and listeners"),
    Command("auth", connection.auth, "authenticate this connection", arguments="TOKEN",
            minArgs=1, maxArgs=1, public=True, literal=True),
    Command("exit", connection.exit_, "close this connection", public=True, aliases=("quit",)),
)

#: Each lower-case command word (and alias) to its row: what dispatch looks up.
BY_WORD: dict[str, Command] = {}
for _command in COMMANDS:
    BY_WORD[_command.name] = _command
    for _alias in _command.aliases:
        BY_WORD[_alias] = _command
del _command, _alias
