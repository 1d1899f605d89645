"""
The daemon's commands as the client knows them without asking: words,
summaries and options, the same rows as the daemon's C{help} reply (a test
holds them equal).  Offline completion scripts and the one-shot planner use
this copy; the shell uses the connected daemon's C{help} when it has one.
Both add the options the client reads itself (L{CLIENT_OPTIONS}).
"""

from __future__ import annotations

from pycm.grammar import CommandSyntax, Option, commandsByWord

_SPEC_OPTIONS = (
    Option("env", "e", repeat=True),
    Option("label", "l", repeat=True),
    Option("restart"),
    Option("stop-timeout"),
    Option("stop-signal"),
    Option("memory"),
    Option("cpus"),
    Option("workdir", "w"),
    Option("replicas"),
    Option("constraint", repeat=True),
    Option("user", "u"),
    Option("health-cmd"),
    Option("health-interval"),
    Option("health-timeout"),
    Option("health-retries"),
    Option("health-start-period"),
    Option("health-on-failure"),
    Option("no-healthcheck", takesValue=False),
)

#: The daemon's commands, in its C{help}'s order.
COMMANDS = (
    CommandSyntax("ping", "check that the daemon answers"),
    CommandSyntax("version", "the daemon's version and backend"),
    CommandSyntax("help", "list the commands, or show one's usage"),
    CommandSyntax(
        "run", "create a container and start it",
        options=(*_SPEC_OPTIONS, Option("detach", "d", takesValue=False)),
    ),
    CommandSyntax("create", "create a container without starting it", options=_SPEC_OPTIONS),
    CommandSyntax("start", "start a created or stopped container"),
    CommandSyntax(
        "stop", "stop a container: its stop signal, then KILL after --time",
        options=(Option("time", "t"),),
    ),
    CommandSyntax("restart", "stop a container, then start it", options=(Option("time", "t"),)),
    CommandSyntax(
        "kill", "send a signal to a container (default KILL)", options=(Option("signal", "s"),),
    ),
    CommandSyntax(
        "rm", "remove a container (a running one only with --force)",
        options=(Option("force", "f", takesValue=False),),
    ),
    CommandSyntax("scale", "set how many copies of a container run (swarm)"),
    CommandSyntax(
        "apply", "make the containers match a services document",
        options=(
            Option("dry-run", takesValue=False),
            Option("prune", takesValue=False),
            Option("project"),
        ),
    ),
    CommandSyntax(
        "list", "list every container, sorted by name", aliases=("ls", "ps"),
        options=(Option("filter", "f", repeat=True), Option("all", "a", takesValue=False)),
    ),
    CommandSyntax("inspect", "show every detail of a container"),
    CommandSyntax(
        "logs", "show a container's last output lines; --follow streams more",
        options=(Option("tail", "n"), Option("follow", "f", takesValue=False), Option("since")),
    ),
    CommandSyntax("unfollow", "stop a logs --follow on this connection"),
    CommandSyntax(
        "wait", "wait until a container reaches a condition",
        options=(Option("for"), Option("timeout")),
    ),
    CommandSyntax(
        "stats", "CPU, memory, pids and block I/O of running (or the named) containers",
        options=(Option("no-stream", takesValue=False),),
    ),
    CommandSyntax(
        "events", "receive container events on this connection",
        options=(
            Option("since"), Option("filter", "f", repeat=True), Option("off", takesValue=False),
        ),
    ),
    CommandSyntax("info", "the daemon's backend, capabilities, counts and listeners"),
    CommandSyntax("auth", "authenticate this connection"),
    CommandSyntax("exit", "close this connection", aliases=("quit",)),
)

#: Each command word and alias to its row.
BY_WORD = commandsByWord(COMMANDS)

_SWARM_OPTIONS_NOTE = (
    "swarm backend only (the others refuse them):",
    "  --replicas=N       how many copies (tasks) of it run, 0 or more [default: 1]",
    "  --constraint=EXPR  where Swarm may place them, in its placement syntax",
    "                     (node.role==worker, node.hostname!=db1, node.labels.zone==a);",
    "                     repeatable: every one must hold",
)

#: What a command's C{help} adds under the daemon's usage and summary: what
#: its options and forms mean where the usage line only names them (the
#: daemon's C{help} carries no text for an option).
COMMAND_NOTES: dict[str, tuple[str, ...]] = {
    "run": _SWARM_OPTIONS_NOTE,
    "create": _SWARM_OPTIONS_NOTE,
    "scale": (
        "swarm backend only (the others refuse it).",
        "  scale NAME N         run N copies of NAME; N may be 0: every copy stops and",
        "                       the container (its service) is kept, to scale up again",
        "  scale NAME=N...      docker service scale's form: one scale NAME N a name",
        "The reply comes once N copies run (scaling down: once the extra ones are gone).",
    ),
}

#: Options the client reads itself, by command (see L{pycm.client.plan}).
CLIENT_OPTIONS: dict[str, tuple[str, ...]] = {
    "run": ("-d", "--detach"),
    "list": ("-a", "--all", "-q", "--quiet", "--format"),
    "logs": ("-t", "--timestamps"),
}
