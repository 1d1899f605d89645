"""
The command table: words in, backend calls, JSON-able results out.

Every command the protocol knows is a row of L{COMMANDS}; a word that is
not a key of that table (C{__init__}, C{lineReceived}, C{_x}) is an
unknown command.  Handlers return a JSON-able value or a Deferred of one,
and fail by raising (or errbacking with) a L{pycm.errors.PycmError}.
Nothing here knows about bytes or the wire; nothing here knows which
backend it drives.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

import attrs
from twisted.internet.defer import Deferred, TimeoutError
from twisted.logger import Logger
from twisted.python.failure import Failure

import pycm
from pycm.daemon.auth import MAX_FAILED_AUTH, tokensMatch
from pycm.daemon.filters import (
    EVENT_FILTERS,
    LIST_FILTERS,
    containerMatches,
    eventMatches,
    parseFilters,
)
from pycm.daemon.requestline import (
    Option,
    decodeLine,
    parseCount,
    parseKeyValues,
    parseOptions,
    parseSeconds,
    parseSince,
    splitWords,
)
from pycm.daemon.session import Session
from pycm.errors import BackendError, BadRequest, PycmError, Unauthorized
from pycm.interfaces import IContainerBackend
from pycm.model import (
    Container,
    ContainerEvent,
    ContainerSpec,
    LogFollow,
    LogLine,
    RestartPolicy,
    State,
    WaitCondition,
    parseSignal,
    signalName,
    validateName,
)
from pycm.redact import REDACTED, describeRequest, isImageReference
from pycm.stats import ContainerStats
from pycm.units import parseSize

#: How many log lines C{logs} returns when no C{--tail} is given.
DEFAULT_TAIL = 100

#: The most bytes of log lines one C{logs} reply may carry (clients must
#: hold a reply line in memory; pycm's client takes up to 16 MiB).
MAX_LOGS_REPLY = 8 * 2**20

_jsonSize = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


Handler = Callable[[Session, Mapping[str, Any], Sequence[str]], Any]

#: The log of requests that change containers (see L{audited}).
requestLog = Logger(namespace="pycm.requests")


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

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "usage": self.usage(),
            "summary": self.summary,
            "aliases": list(self.aliases),
        }


def handleLine(session: Session, line: bytes) -> Any:
    """
    Run one request line (without its line end).

    Parsing a line gives the same command, options and arguments every
    time, so short lines are parsed once and remembered: a client repeating
    C{ping} or C{list} pays for a dictionary look-up, not for decoding and
    splitting.  Authentication is checked on every request.

    @return: a JSON-able result or a Deferred firing with one.
    @raise pycm.errors.PycmError: for a request that fails at once.
    """
    parsed = _parsedLines.get(line)
    if parsed is None:
        parsed = parseRequest(session, splitWords(decodeLine(line)))
        if len(line) <= _CACHED_LINE_LENGTH:
            if len(_parsedLines) >= _CACHED_LINES:
                _parsedLines.clear()
            _parsedLines[line] = parsed
    command, options, args = parsed
    if not (command.public or session.authenticated):
        raise session.unauthenticated(command.name)
    if command.changes:
        return audited(session, command, options, args)
    return command.handler(session, options, args)


def audited(
    session: Session, command: Command, options: Mapping[str, Any], args: Sequence[str]
) -> Any:
    """
    Run a request that changes a container, and log (at info) who asked
    what of which container, and how it ended.  Only the command and the
    container's name are logged: never its options or other arguments
    (C{--env} may hold a secret), nor an error's message (see
    L{_logOutcome}).
    """
    name = _loggedName(args[0]) if args else ""
    try:
        result = command.handler(session, options, args)
    except Exception as error:
        _logOutcome(session, command, name, error)
        raise
    if isinstance(result, Deferred):

        def logged(outcome: Any) -> Any:
            error = outcome.value if isinstance(outcome, Failure) else None
            _logOutcome(session, command, name, error)
            return outcome

        return result.addBoth(logged)
    _logOutcome(session, command, name, None)
    return result


def _isName(word: str) -> bool:
    try:
        validateName(word)
    except PycmError:
        return False
    return True


def _loggedName(word: str) -> str:
    """A container name as the log shows it: only a valid name is shown."""
    return word if _isName(word) else REDACTED


def _logOutcome(
    session: Session,
    command: Command,
    name: str,
    error: BaseException | None,
) -> None:
    """
    Log how a request that changes a container ended: C{ok}, the error's
    code, or C{internal} and the exception's type.  Never an error's
    message: it may quote the request (an option's value) or what the
    container was made with (its command, its environment), which the
    request does not show; the client has the message.
    """
    if error is None:
        outcome = "ok"
    elif isinstance(error, PycmError):
        outcome = error.code
    else:
        outcome = f"{PycmError.code} ({type(error).__name__})"
    requestLog.info(
        "{peer}: {command} {name}: {outcome}",
        peer=session.peer or "-",
        command=command.name,
        name=name,
        outcome=outcome,
    )


def describeLine(line: bytes) -> str:
    """
    A request line as the debug log shows it (see L{pycm.redact}): the
    command, its options' names and the container's name; never a value.
    """
    try:
        words = splitWords(decodeLine(line))
    except BadRequest:
        return f"<unreadable request, {len(line)} bytes>"
    command = COMMANDS.get(words[0].lower()) if words else None
    if command is None:
        # The word may be a token pasted on a line of its own.
        return f"<unknown command, {len(line)} bytes>"
    if command.literal:
        options: dict[str, Any] = {}
        args = words[1:]
    else:
        try:
            options, args = parseOptions(words[1:], command.options)
        except BadRequest:
            return f"{command.name} <bad options, {len(words) - 1} words redacted>"
    return describeRequest(command.name, options, args, _visibleArgs(command, args))


def _visibleArgs(command: Command, args: Sequence[str]) -> int:
    """How many leading arguments are a valid name, then an image, to show."""
    checks = (_isName, isImageReference)[: command.loggedArgs]
    visible = 0
    for check, arg in zip(checks, args):
        if not check(arg):
            break
        visible += 1
    return visible


def parseRequest(session: Session, words: Sequence[str]) -> ParsedRequest:
    """
    The command, options and arguments of a request's words.

    @raise BadRequest: for an unknown command, options or arguments.
    @raise Unauthorized: for a command that needs C{auth} first (checked
        before its options, so that an unauthenticated client learns
        nothing more).
    """
    if not words:
        raise BadRequest("empty request")
    command = COMMANDS.get(words[0].lower())
    if command is None:
        raise BadRequest(f"unknown command {words[0]!r}; try 'help'")
    if not (command.public or session.authenticated):
        raise session.unauthenticated(command.name)
    if len(words) == 1 or command.literal:
        options: dict[str, Any] = {}
        args: list[str] = list(words[1:])
    else:
        options, args = parseOptions(words[1:], command.options)
    if len(args) < command.minArgs:
        raise BadRequest(f"not enough arguments; usage: {command.usage()}")
    if command.maxArgs is not None and len(args) > command.maxArgs:
        if any(arg.startswith("-") for arg in args[command.maxArgs :]):
            raise BadRequest(f"options must come before the arguments; usage: {command.usage()}")
        raise BadRequest(f"too many arguments; usage: {command.usage()}")
    # Read-only: one parse may serve many requests.
    return command, MappingProxyType(options), tuple(args)


ParsedRequest = tuple["Command", Mapping[str, Any], tuple[str, ...]]

#: Parsed request lines, by their bytes (see L{handleLine}).
_parsedLines: dict[bytes, ParsedRequest] = {}
_CACHED_LINES = 1024
_CACHED_LINE_LENGTH = 128


# The handlers, in the order of the contract's table.


def ping(session: Session, options: Mapping[str, Any], args: Sequence[str]) -> Any:
    return "pong"


def version(session: Session, options: Mapping[str, Any], args: Sequence[str]) -> Any:
    return {
        "server": "pycm",
        "version": pycm.__version__,
        "protocol": pycm.PROTOCOL_VERSION,
        "backend": session.daemon.backend.name,
    }


def help_(session: Session, options: Mapping[str, Any], args: Sequence[str]) -> Any:
    if not args:
        return {"commands": [command.describe() for command in TABLE]}
    command = COMMANDS.get(args[0].lower())
    if command is None:
        raise BadRequest(f"unknown command {args[0]!r}; try 'help'")
    return command.describe()


RUN_OPTIONS = (
    Option("env", "e", repeat=True, metavar="K=V"),
    Option("label", "l", repeat=True, metavar="K=V"),
    Option("restart", metavar="no|on-failure[:MAX]|always|unless-stopped"),
    Option("stop-timeout", metavar="SECONDS"),
    Option("stop-signal", metavar="SIG"),
    Option("memory", metavar="SIZE"),
    Option("cpus", metavar="N"),
    Option("workdir", "w", metavar="DIR"),
)


def specFromRequest(options: Mapping[str, Any], args: Sequence[str]) -> ContainerSpec:
    """Build a L{ContainerSpec} from C{run}/C{create}'s options and words."""
    name = validateName(args[0])
    image = args[1] if len(args) > 1 else None
    if image is not None and image.startswith("-"):
        raise BadRequest(
            f"options must come before the name: {image!r} came after {name!r}"
        )
    command = tuple(args[2:]) or None
    cpus = None
    if "cpus" in options:
        try:
            cpus = float(options["cpus"])
        except ValueError:
            cpus = -1.0
        if not 0 < cpus < float("inf"):
            raise BadRequest(f"bad --cpus {options['cpus']!r}: expected a positive number")
    stopSignal = None
    if "stop-signal" in options:
        stopSignal = signalName(parseSignal(options["stop-signal"]))
    return ContainerSpec(
        name=name,
        image=image,
        command=command,
        env=parseKeyValues(options.get("env", []), "env"),
        labels=parseKeyValues(options.get("label", []), "label"),
        restartPolicy=RestartPolicy.parse(options.get("restart", "no")),
        stopTimeout=(
            parseSeconds(options["stop-timeout"], "stop-timeout")
            if "stop-timeout" in options
            else None
        ),
        stopSignal=stopSignal,
        memory=parseSize(options["memory"]) if "memory" in options else None,
        cpus=cpus,
        workdir=options.get("workdir"),
    )


def _checkCapabilities(backend: IContainerBackend, spec: ContainerSpec) -> None:
    refused = spec.optionsUsed() - backend.capabilities.options
    if refused:
        names = ", ".join(f"--{option}" for option in sorted(refused))
        raise BadRequest(f"the {backend.name} backend cannot honour {names}")


def create(session: Session, options: Mapping[str, Any], args: Sequence[str]) -> Any:
    backend = session.daemon.backend
    spec = specFromRequest(options, args)
    _checkCapabilities(backend, spec)
    return backend.create(spec).addCallback(Container.summary)


def run(session: Session, options: Mapping[str, Any], args: Sequence[str]) -> Any:
    backend = session.daemon.backend
    spec = specFromRequest(options, args)
    _checkCapabilities(backend, spec)
    created = backend.create(spec)
    created.addCallback(lambda container: backend.start(container.name))
    return created.addCallback(Container.summary)


def start(session: Session, options: Mapping[str, Any], args: Sequence[str]) -> Any:
    name = validateName(args[0])
    return session.daemon.backend.start(name).addCallback(Container.summary)


def _timeout(options: Mapping[str, Any]) -> float | None:
    if "time" in options:
        return parseSeconds(options["time"], "time")
    return None


def stop(session: Session, options: Mapping[str, Any], args: Sequence[str]) -> Any:
    name = validateName(args[0])
    d = session.daemon.backend.stop(name, _timeout(options))
    return d.addCallback(Container.summary)


def restart(session: Session, options: Mapping[str, Any], args: Sequence[str]) -> Any:
    name = validateName(args[0])
    d = session.daemon.backend.restart(name, _timeout(options))
    return d.addCallback(Container.summary)


def kill(session: Session, options: Mapping[str, Any], args: Sequence[str]) -> Any:
    name = validateName(args[0])
    signal = parseSignal(options.get("signal", "KILL"))
    return session.daemon.backend.kill(name, signal).addCallback(Container.summary)


def rm(session: Session, options: Mapping[str, Any], args: Sequence[str]) -> Any:
    name = validateName(args[0])
    d = session.daemon.backend.remove(name, bool(options.get("force")))

    def removed(result: Container | None) -> dict[str, Any]:
        reply: dict[str, Any] = {"name": name, "removed": True}
        if isinstance(result, Container) and not result.saved:
            reply["saved"] = False
        return reply

    return d.addCallback(removed)


def list_(session: Session, options: Mapping[str, Any], args: Sequence[str]) -> Any:
    filters = parseFilters(options.get("filter", []), LIST_FILTERS)

    def render(containers: list[Container]) -> list[dict[str, Any]]:
        chosen = [c for c in containers if containerMatches(c, filters)]
        chosen.sort(key=lambda container: container.name)
        return [container.summary() for container in chosen]

    return session.daemon.backend.list().addCallback(render)


def inspect(session: Session, options: Mapping[str, Any], args: Sequence[str]) -> Any:
    name = validateName(args[0])
    return session.daemon.backend.inspect(name).addCallback(Container.detail)


def _tail(options: Mapping[str, Any]) -> int | None:
    value = options.get("tail")
    if value is None:
        return DEFAULT_TAIL
    if value == "all":
        return None
    return parseCount(value, "tail")


def logs(session: Session, options: Mapping[str, Any], args: Sequence[str]) -> Any:
    name = validateName(args[0])
    backend = session.daemon.backend
    since = None
    if "since" in options:
        since = parseSince(options["since"], session.daemon.clock.seconds())
    # With --since, every line since then, unless --tail says otherwise.
    tail = _tail(options) if since is None or "tail" in options else None
    if not options.get("follow"):
        return backend.logs(name, tail, since).addCallback(logLinesReply)
    if name in session.following:
        raise BadRequest(f"already following {name}; send 'unfollow {name}' first")
    session.following.add(name)

    def following(follow: LogFollow) -> list[dict[str, Any]]:
        try:
            backlog = logLinesReply(follow.backlog)
        except BadRequest:
            follow.cancel()
            session.following.discard(name)
            raise
        session.startFollowing(name, follow)
        return backlog

    def failed(failure: Any) -> Any:
        session.following.discard(name)
        return failure

    d = backend.follow(name, tail, lambda line: session.sendLogLine(name, line), since)
    return d.addCallbacks(following, failed)


def logLinesReply(lines: Sequence[LogLine]) -> list[dict[str, Any]]:
    """
    The JSON of C{logs}' reply.

    @raise BadRequest: if it would be over L{MAX_LOGS_REPLY} bytes, saying
        how many of the newest lines would fit.
    """
    result: list[dict[str, Any]] = []
    size = 0
    for line in reversed(lines):
        item = line.toJSON()
        size += len(_jsonSize(item)) + 1
        if size > MAX_LOGS_REPLY:
            raise BadRequest(
                f"the last {len(lines)} lines are over the {MAX_LOGS_REPLY // 2**20} MiB "
                f"a reply may carry; the last {len(result)} fit: use --tail={len(result)}"
            )
        result.append(item)
    result.reverse()
    return result


def unfollow(session: Session, options: Mapping[str, Any], args: Sequence[str]) -> Any:
    name = validateName(args[0])
    if name not in session.follows:
        raise BadRequest(f"not following the logs of {name}")
    session.endFollowing(name)
    return {"name": name, "following": False}


def wait(session: Session, options: Mapping[str, Any], args: Sequence[str]) -> Any:
    name = validateName(args[0])
    condition = options.get("for", WaitCondition.NOT_RUNNING)
    if condition not in WaitCondition.ALL:
        raise BadRequest(
            f"bad --for {condition!r}: expected one of " + ", ".join(WaitCondition.ALL)
        )
    timeout = parseSeconds(options["timeout"], "timeout") if "timeout" in options else None
    d = session.daemon.backend.wait(name, condition)
    if timeout is not None:
        d.addTimeout(timeout, session.daemon.clock)
    session.pending.add(d)

    def settled(passthrough: Any) -> Any:
        session.pending.discard(d)
        return passthrough

    d.addBoth(settled)

    def timedOut(failure: Any) -> None:
        failure.trap(TimeoutError)
        raise BackendError(
            f"timed out after {timeout:g} s waiting for {name} ({condition})"
        )

    def result(container: Container) -> dict[str, Any]:
        state = "removed" if condition == WaitCondition.REMOVED else container.state
        return {"name": name, "state": state, "exit_code": container.exitCode}

    return d.addCallbacks(result, timedOut)


def stats(session: Session, options: Mapping[str, Any], args: Sequence[str]) -> Any:
    """
    The usage of every running container, or of each named one, sorted by
    name.  C{--no-stream} is accepted for C{docker stats}' sake: the
    daemon always answers once.
    """
    names = [validateName(arg) for arg in args]

    def render(rows: list[ContainerStats]) -> list[dict[str, Any]]:
        return [row.toJSON() for row in sorted(rows, key=lambda row: row.name)]

    return session.daemon.backend.stats(names).addCallback(render)


def events(session: Session, options: Mapping[str, Any], args: Sequence[str]) -> Any:
    log = session.daemon.events
    if options.get("off"):
        if set(options) - {"off"}:
            raise BadRequest("--off takes no other option")
        session.unsubscribe()
        return {"events": False, "last_id": log.lastId}
    filters = parseFilters(options.get("filter", []), EVENT_FILTERS)
    backlog: list[ContainerEvent] = []
    if "since" in options:
        since = min(parseCount(options["since"], "since"), log.lastId)
        backlog = [e for e in log.since(since) if eventMatches(e, filters)]
    session.subscribe(filters)
    if backlog:
        # Right after the OK reply, before any event newer than last_id.
        session.afterReply.append(lambda: _replay(session, backlog))
    return {"events": True, "last_id": log.lastId}


def _replay(session: Session, backlog: list[ContainerEvent]) -> None:
    for event in backlog:
        session.sendEvent(event.toJSON(), replay=True)


def info(session: Session, options: Mapping[str, Any], args: Sequence[str]) -> Any:
    daemon = session.daemon
    backend = daemon.backend

    def render(containers: list[Container]) -> dict[str, Any]:
        counts = dict.fromkeys(State.ALL, 0)
        for container in containers:
            counts[container.state] = counts.get(container.state, 0) + 1
        capabilities = backend.capabilities.toJSON()
        capabilities["commands"] = sorted(COMMANDS)
        return {
            "server": "pycm",
            "version": pycm.__version__,
            "protocol": pycm.PROTOCOL_VERSION,
            "backend": backend.name,
            "default_image": backend.defaultImage,
            "capabilities": capabilities,
            "containers": {"total": len(containers), **counts},
            "uptime": round(daemon.clock.seconds() - daemon.startedAt, 3),
            "listeners": list(daemon.listeners),
            "connections": daemon.connections,
            "last_event_id": daemon.events.lastId,
            "unsaved": {
                "containers": sum(1 for container in containers if not container.saved),
                "events": daemon.events.unsavedCount,
            },
            "quarantined": list(getattr(backend, "quarantined", [])),
        }

    return backend.list().addCallback(render)


def auth(session: Session, options: Mapping[str, Any], args: Sequence[str]) -> Any:
    """
    Check the token.  A wrong one is refused and counted even on a
    connection that needs none or has authenticated already (it stays
    so); the third closes the connection.
    """
    token = session.daemon.token
    if token is None:
        session.authenticated = True
        return "authenticated"
    if tokensMatch(token, args[0]):
        session.authenticated = True
        return "authenticated"
    session.failedAuth += 1
    # Never the token tried: it may be a real one, one character off.
    if session.mayLog("wrong token"):
        session.log.info(
            "{peer}: wrong token (failed auth attempt {count} of {limit})",
            peer=session.peer or "-",
            count=session.failedAuth,
            limit=MAX_FAILED_AUTH,
        )
    if session.failedAuth >= MAX_FAILED_AUTH:
        session.close(f"{MAX_FAILED_AUTH} failed auth attempts")
        raise Unauthorized("wrong token; too many tries, closing the connection")
    raise Unauthorized("wrong token")


def exit_(session: Session, options: Mapping[str, Any], args: Sequence[str]) -> Any:
    session.close()
    return "bye"


NAME = "NAME"
TABLE = (
    Command("ping", ping, "check that the daemon answers", public=True),
    Command("version", version, "the daemon's version and backend", public=True),
    Command(
        "help", help_, "list the commands, or show one's usage",
        arguments="[COMMAND]", maxArgs=1, public=True,
    ),
    Command(
        "run", run, "create a container and start it",
        arguments="NAME [IMAGE [COMMAND [ARG...]]]",
        # --detach: Docker's habit; pycm always detaches.
        options=(*RUN_OPTIONS, Option("detach", "d", takesValue=False)),
        minArgs=1, maxArgs=None, changes=True, loggedArgs=2,
    ),
    Command(
        "create", create, "create a container without starting it",
        arguments="NAME [IMAGE [COMMAND [ARG...]]]",
        options=RUN_OPTIONS, minArgs=1, maxArgs=None, changes=True, loggedArgs=2,
    ),
    Command("start", start, "start a created or stopped container",
            arguments=NAME, minArgs=1, maxArgs=1, loggedArgs=1, changes=True),
    Command(
        "stop", stop, "stop a container: its stop signal, then KILL after --time",
        arguments=NAME, options=(Option("time", "t", metavar="SECONDS"),),
        minArgs=1, maxArgs=1, loggedArgs=1, changes=True,
    ),
    Command(
        "restart", restart, "stop a container, then start it",
        arguments=NAME, options=(Option("time", "t", metavar="SECONDS"),),
        minArgs=1, maxArgs=1, loggedArgs=1, changes=True,
    ),
    Command(
        "kill", kill, "send a signal to a container (default KILL)",
        arguments=NAME, options=(Option("signal", "s", metavar="SIG"),),
        minArgs=1, maxArgs=1, loggedArgs=1, changes=True,
    ),
    Command(
        "rm", rm, "remove a container (a running one only with --force)",
        arguments=NAME, options=(Option("force", "f", takesValue=False),),
        minArgs=1, maxArgs=1, loggedArgs=1, changes=True,
    ),
    Command(
        "list", list_, "list every container, sorted by name",
        options=(
            Option("filter", "f", repeat=True, metavar="state|label|name=VALUE"),
            # --all: Docker's habit; pycm always lists every container.
            Option("all", "a", takesValue=False),
        ),
        aliases=("ls", "ps"),
    ),
    Command("inspect", inspect, "show every detail of a container",
            arguments=NAME, minArgs=1, maxArgs=1, loggedArgs=1),
    Command(
        "logs", logs, "show a container's last output lines; --follow streams more",
        arguments=NAME,
        options=(
            Option("tail", "n", metavar="N|all"),
            Option("follow", "f", takesValue=False),
            Option("since", metavar="DURATION|TIME"),
        ),
        minArgs=1, maxArgs=1, loggedArgs=1,
    ),
    Command("unfollow", unfollow, "stop a logs --follow on this connection",
            arguments=NAME, minArgs=1, maxArgs=1, loggedArgs=1),
    Command(
        "wait", wait, "wait until a container reaches a condition",
        arguments=NAME,
        options=(
            Option("for", metavar="not-running|running|next-exit|removed"),
            Option("timeout", metavar="SECONDS"),
        ),
        minArgs=1, maxArgs=1, loggedArgs=1,
    ),
    Command(
        "stats", stats, "CPU, memory, pids and block I/O of running (or the named) containers",
        arguments="[NAME...]", options=(Option("no-stream", takesValue=False),),
        maxArgs=None, loggedArgs=1,
    ),
    Command(
        "events", events, "receive container events on this connection",
        options=(
            Option("since", metavar="ID"),
            Option("filter", "f", repeat=True, metavar="name|action=VALUE"),
            Option("off", takesValue=False),
        ),
    ),
    Command("info", info, "the daemon's backend, capabilities, counts and listeners"),
    Command("auth", auth, "authenticate this connection", arguments="TOKEN",
            minArgs=1, maxArgs=1, public=True, literal=True),
    Command("exit", exit_, "close this connection", public=True, aliases=("quit",)),
)

#: The dispatch table: lower-case command word (and alias) to its row.
COMMANDS: dict[str, Command] = {}
for _command in TABLE:
    COMMANDS[_command.name] = _command
    for _alias in _command.aliases:
        COMMANDS[_alias] = _command
del _command, _alias
