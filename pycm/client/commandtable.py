"""
The daemon's commands as the client knows them without asking: words,
summaries and options, the same rows as the daemon's C{help} reply (a test
holds them equal).  Offline completion scripts and the one-shot planner use
this copy; the shell uses the connected daemon's C{help} when it has one.
Both add the options the client reads itself (L{CLIENT_OPTIONS}).
"""

from __future__ import annotations

from pycm.grammar import CommandSyntax, Option, commandsByWord, valueSpellings

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
            Option("progress-id"),
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

#: What C{run} and C{create} take, before the options the client and the
#: health checks add (L{_SPEC_NOTE}): as C{docker run --help} says it.
_RUN_ARGUMENTS_NOTE = (
    "  NAME               2 to 128 characters: a letter or digit, then letters,",
    "                     digits, '_', '.' or '-'",
    "  IMAGE              what it runs from [default: the backend's, which info",
    "                     shows as default_image]",
    "  COMMAND [ARG...]   what it runs [default: the image's default command]",
    "options:",
    "  -e, --env=K=V      set an environment variable; repeatable; -e K alone",
    "                     passes on this shell's K (left out if unset)",
    "  -l, --label=K=V    set a label (ls --filter label=K=V finds it); repeatable",
    "  --restart=POLICY   what happens when it exits [default: no]:",
    "                       no                 it stays exited",
    "                       on-failure[:MAX]   restarted after a non-zero exit,",
    "                                          at most MAX times if given (0: no",
    "                                          limit, as in Docker)",
    "                       always             restarted after every exit, until a",
    "                                          client's stop, kill or rm --force",
    "                       unless-stopped     as always, and not started again when",
    "                                          the daemon restarts if a client had",
    "                                          stopped it",
    "                     restarts wait 100ms, doubling up to 60s",
    "  --stop-timeout=SECONDS  how long stop waits after the stop signal before",
    "                     KILL, 0 to 3600 [default: 10]",
    "  --stop-signal=SIG  the signal stop sends first: TERM, SIGTERM or 15",
    "                     [default: SIGTERM]",
    "  --memory=SIZE      a memory limit: bytes, or a number with k, m, g or t",
    "                     (powers of 1024: 512m, 1.5g, 10MiB), at least 6m",
    "  --cpus=N           a CPU limit, in CPUs; a fraction is fine (0.5)",
    "  -w, --workdir=DIR  the working directory of its command (an absolute path)",
)

_SPEC_NOTE = (
    "  -u, --user=USER[:GROUP]  run as that user (and group), names or numbers;",
    "                     the process backend then needs a root daemon for a user",
    "                     not its own",
    "  --env-file=FILE    read variables from FILE (KEY=VALUE lines, # comments,",
    "                     values literal; a bare KEY passes on this shell's KEY);",
    "                     the client reads it and sends -e KEY=VALUE: the daemon",
    "                     never sees the path; repeatable, -e wins over it",
    "health checks (the container's health: ls shows running (healthy)):",
    "  --health-cmd=CMD   the check, run by the image's shell (/bin/sh -c): exit 0",
    "                     is healthy",
    "  --health-interval=DURATION  between checks [default: 30s]; durations are",
    "                     500ms, 10s, 1m, 1h30m or seconds",
    "  --health-timeout=DURATION   a check running longer fails [default: 30s]",
    "  --health-retries=N failures in a row that make it unhealthy [default: 3]",
    "  --health-start-period=DURATION  failures then do not count [default: 0s]",
    "  --health-on-failure=none|restart|stop|kill  what unhealthy does [none]",
    "  --no-healthcheck   no check, not even the image's",
)

_APPLY_NOTE = (
    "The client reads FILE, a TOML services file, and sends the daemon its",
    "services as one JSON document; the daemon creates what is missing,",
    "recreates what changed, leaves the rest running, and answers once every",
    "service is up (running, and healthy if it has a health check).",
    "  --dry-run       print the plan (create, recreate and what changed, keep,",
    "                  remove) and change nothing",
    "  --prune         remove the containers an earlier apply of this project",
    "                  made that the file no longer lists",
    "  --project=NAME  the project (default: the file's directory's name); the",
    "                  containers are labelled with it, so that two projects",
    "                  never prune each other's",
    "  --progress-id=ID  the word this apply's progress events carry (default:",
    "                  a random one): only they are shown on stderr, not those",
    "                  of another apply of the project at the same time",
    "FILE, in short (each key optional; see the README, 'Services as code'):",
    "  [services.NAME]   image, command = [...], user, env = {K = \"V\"},",
    "                    env_file = \"FILE\" (relative to FILE's directory),",
    "                    labels, restart, memory, cpus, workdir, stop_signal,",
    "                    stop_timeout, replicas (swarm),",
    "                    depends_on = {db = \"healthy\"} (started | healthy |",
    "                    completed_successfully)",
    "  [services.NAME.healthcheck]   cmd, interval, timeout, retries,",
    "                    start_period, on_failure; or disable = true",
    "Progress lines go to stderr; a mistake in FILE is reported as FILE:LINE",
    "before anything is sent (exit status 2).",
)


#: What C{stop} and C{restart} say of C{--time}; its default is the
#: container's C{--stop-timeout} (L{pycm.model.DEFAULT_STOP_TIMEOUT}).
_STOP_TIME_NOTE = (
    "  -t, --time=SECONDS how long to wait after the stop signal before KILL,",
    "                     0 to 3600 [default: the container's --stop-timeout,",
    "                     10 unless run or create set it]",
)


#: What a command's C{help} adds under the daemon's usage and summary: what
#: its options and forms mean where the usage line only names them (the
#: daemon's C{help} carries no text for an option).
COMMAND_NOTES: dict[str, tuple[str, ...]] = {
    "run": (
        *_RUN_ARGUMENTS_NOTE,
        "  -d, --detach       taken and ignored: a container always runs detached",
        *_SPEC_NOTE, *_SWARM_OPTIONS_NOTE,
    ),
    "create": (*_RUN_ARGUMENTS_NOTE, *_SPEC_NOTE, *_SWARM_OPTIONS_NOTE),
    "apply": _APPLY_NOTE,
    "list": (
        "  -f, --filter=KEY=VALUE  only the containers that match; repeatable",
        "                     (different keys must all match):",
        "                       status=STATE       (docker's name; state=STATE too)",
        "                                          created, running, exited...",
        "                       name=TEXT          names containing TEXT",
        "                       label=KEY[=VALUE]  that label (with that value)",
        "  -a, --all          taken and ignored: every container is listed",
        "  -q, --quiet        the names only, one a line",
        "  --format=json|table|TEMPLATE  JSON lines, the table, or a template",
        "                     ({{.Name}} {{.Status}} {{.Health}} {{.Image}} ...);",
        "                     'table TEMPLATE': a header line, columns aligned",
    ),
    "stop": _STOP_TIME_NOTE,
    "restart": _STOP_TIME_NOTE,
    "logs": (
        "  -n, --tail=N|all   the last N lines [default: 100; with --since: every",
        "                     line since then]",
        "  --since=DURATION|TIME  the lines since then: a duration ago (10m, 1h30m,",
        "                     45s), an RFC 3339 time or seconds since the epoch",
        "  -f, --follow       then print each new line until the container stops",
        "                     (or Ctrl-C; in the shell, where the lines come",
        "                     beside the prompt, unfollow NAME)",
        "  -t, --timestamps   print each line's time first",
    ),
    "stats": (
        "  pycm stats on the command line refreshes the table every second (in",
        "  place on a terminal) until Ctrl-C; with --no-stream it prints it once.",
        "  In the interactive shell and in piped requests, stats prints the table",
        "  once, as --no-stream does: `pycm stats` or `pycm top` follow it live.",
        "  CPU % is of one CPU over the last second or so; memory in binary units",
        "  (MiB), block I/O in decimal ones (MB); -- where the daemon cannot say.",
    ),
    "scale": (
        "swarm backend only (the others refuse it).",
        "  scale NAME N         run N copies of NAME; N may be 0: every copy stops and",
        "                       the container (its service) is kept, to scale up again",
        "  scale NAME=N...      docker service scale's form: one scale NAME N a name",
        "The reply comes once N copies run (scaling down: once the extra ones are gone).",
    ),
}

#: Commands the client takes several names for (the daemon one), sending
#: one request a name (L{pycm.client.plan}).
MULTI_NAME = frozenset({"stop", "start", "restart", "kill", "rm", "logs", "wait"})

#: What the usage of a command in L{MULTI_NAME} adds.
MULTI_NAME_NOTE = (
    "  several NAMEs: one request each, in order, the options given to each;",
    "  each error is printed and the others are still done",
)

#: Options the client reads itself, by command (see L{pycm.client.plan}),
#: with two the daemon takes too and the client drops (C{run -d}, C{ps -a}).
CLIENT_READ: dict[str, tuple[Option, ...]] = {
    "run": (Option("detach", "d", takesValue=False), Option("env-file", repeat=True)),
    "create": (Option("env-file", repeat=True),),
    "list": (
        Option("all", "a", takesValue=False),
        Option("quiet", "q", takesValue=False),
        Option("format"),
    ),
    "logs": (Option("timestamps", "t", takesValue=False),),
}

#: Their spellings, by command.
CLIENT_OPTIONS: dict[str, tuple[str, ...]] = {
    command: tuple(spelling for option in options for spelling in option.spellings())
    for command, options in CLIENT_READ.items()
}

#: The spellings of those that take a value.
CLIENT_VALUE_OPTIONS = valueSpellings(
    option for options in CLIENT_READ.values() for option in options
)


#: Every command's C{-h}/C{--help} (C{COMMAND --help} is C{help COMMAND}):
#: a letter of a word of short options too, as Docker's CLI reads C{ps -ah}.
HELP = Option("help", "h", takesValue=False)


def clientSyntax(row: CommandSyntax) -> tuple[Option, ...]:
    """The options of command C{row} as the client reads a line of it."""
    extra = tuple(option for option in CLIENT_READ.get(row.name, ()) if option not in row.options)
    return (*row.options, *extra, HELP)


#: The word of a usage line the client's own options of a command go before.
_USAGE_ARGUMENT = " NAME"

#: What the client reads itself, by command: the daemon's usage lacks it.
_CLIENT_USAGE_OPTIONS = {
    "run": "[--env-file=FILE]...",
    "create": "[--env-file=FILE]...",
    "logs": "[-t|--timestamps]",
}


def clientUsageLine(name: str, usage: str) -> str:
    """
    The daemon's usage line of command C{name} as the client takes it: the
    options the client reads itself (C{--env-file}, C{logs -t}) before
    NAME, and C{apply}'s FILE that the client reads into the daemon's
    DOCUMENT.
    """
    if name == "apply":
        return usage.replace("DOCUMENT", "FILE")
    options = _CLIENT_USAGE_OPTIONS.get(name)
    if options is not None and _USAGE_ARGUMENT in usage:
        head, _, tail = usage.partition(_USAGE_ARGUMENT)
        return f"{head} {options}{_USAGE_ARGUMENT}{tail}"
    return usage
