"""
The C{pycm} command: one request from the command line, requests piped on
standard input, or the interactive shell on a terminal.

Exit codes: 0 when every reply was C{OK}, 1 when one was C{ERR}, 2 for a
usage error, 3 when the daemon cannot be reached (or the connection to it
is lost).

One request over a plain C{tcp:} or C{unix:} endpoint takes the fast path,
a blocking socket with no reactor (L{pycm.client.oneshot}), which runs the
same L{runCommand}; everything else (C{tls:} and other endpoints, piped
requests, the shell, C{top} and streaming C{stats}) runs in Twisted's
reactor.  Twisted is imported only by the functions of the reactor's path,
never when this module is imported: importing the reactor costs more than
the whole of a one-shot call.

Only L{main} picks the global reactor; everything else takes one.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, NoReturn, TextIO

from pycm.client import format as fmt
from pycm.client.config import (
    defaultEndpoint,
    defaultListenersPath,
    defaultTokenPath,
    findToken,
    readListeners,
    tokenWanted,
)
from pycm.client.plan import Plan, PlanError, planCommand, wantsHelp
from pycm.client.stats import TOP_USAGE, liveCommand, streamStats
from pycm.client.wire import ConnectionGone, ProtocolError
from pycm.errors import PycmError, Unauthorized

if TYPE_CHECKING:
    import argparse

    from twisted.internet.interfaces import IReactorTime, IStreamClientEndpoint

    from pycm.client.oneshot import BlockingClient
    from pycm.client.piped import PipedRequests
    from pycm.client.protocol import ClientProtocol

EXIT_OK = 0
EXIT_ERR = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
#: Interrupted (Ctrl-C) while waiting for a reply, as shells count SIGINT.
EXIT_INTERRUPTED = 130
#: The reader of standard output went away (C{pycm logs web | head}): the
#: shell's 128 + SIGPIPE, as C{git} and C{docker} end then, and quietly.
EXIT_READER_GONE = 141

#: The longest UNIX socket path a connection can name: the size of
#: C{sun_path} (108 bytes on Linux, 104 on macOS and the BSDs) less the
#: terminating NUL.  Twisted meets a longer one with a traceback and a
#: connection attempt that never ends, so it is refused before connecting.
MAX_UNIX_PATH = (104 if sys.platform == "darwin" or "bsd" in sys.platform else 108) - 1

DESCRIPTION = """\
Talk to the pycm container manager daemon.

With a COMMAND, send that one request and print the reply.  Without one,
read requests from standard input (one per line) when it is a pipe or a
file, or start the interactive shell when it is a terminal."""

EPILOG = """\
commands (run by the daemon; `pycm help COMMAND` shows one command's usage):
  ping | version | info | help [COMMAND]
  run    [OPTIONS] NAME [IMAGE [COMMAND [ARG...]]]   create and start
  create [OPTIONS] NAME [IMAGE [COMMAND [ARG...]]]   create only
         options: -e/--env K=V, -l/--label K=V, --restart=POLICY,
                  --stop-timeout=S, --stop-signal=SIG, --memory=SIZE,
                  --cpus=N, -w/--workdir=DIR
  start NAME... | stop [--time=S] NAME... | restart [--time=S] NAME...
  kill [--signal=SIG] NAME... | rm [--force] NAME...   (one request a name)
  list (ls, ps) [--filter=KEY=VALUE]...          a table of containers
         client options: -q/--quiet (names), --format json|TEMPLATE
                         ({{.Name}} {{.State}} {{.Image}} {{.Command}} ...)
  inspect NAME                                   every detail
  logs [--tail=N] [--since=10m|TIME] [--follow] [-t] NAME...
                                                 output (--follow: until it stops)
  wait [--for=COND] [--timeout=S] NAME           until it stops (or COND)
  events [--since=ID] [--filter=KEY=VALUE]...    stream events until Ctrl-C
  stats [--no-stream] [NAME...]                  CPU, memory, pids, block I/O
                                                 (refreshed every second)
  top                                            a live full-screen view (q quits)
  completion bash|zsh|fish                       a shell completion script
  COMMAND --help                                 the same as help COMMAND

examples:
  pycm run web host sleep 1000
  pycm ls
  pycm logs --follow web
  pycm --json inspect web
  pycm --host unix:/run/pycm.sock ps
  printf 'ping\\nlist\\n' | pycm
  pycm                       (the interactive shell)

environment:
  PYCM_HOST    the daemon's endpoint (default tcp:127.0.0.1:8080)
  PYCM_TOKEN   the token (default: read from the daemon's token file, and
               sent only to the endpoints that daemon listens on)
  PYCM_HISTORY the shell's history file (default:
               ~/.local/state/pycm/history; empty: keep none)

exit status: 0 OK, 1 the daemon answered ERR, 2 usage error (the
             client's, or the daemon's bad_request),
             3 the daemon cannot be reached, 130 interrupted before the
             reply came (Ctrl-C ends `events` and `logs -f` with 0)"""


class UsageError(Exception):
    """The command line is wrong (exit status 2)."""


class CannotConnect(Exception):
    """The daemon cannot be reached (exit status 3)."""

    def __init__(self, endpoint: str, reason: BaseException) -> None:
        super().__init__(endpoint, reason)
        self.endpoint = endpoint
        self.reason = reason

    def __str__(self) -> str:
        from twisted.internet.error import ConnectionRefusedError, DNSLookupError

        if isinstance(self.reason, ConnectionRefusedError):
            reason = "connection refused (is the daemon running?)"
        elif isinstance(self.reason, DNSLookupError):
            reason = "no such host"
        else:
            reason = str(self.reason).strip() or type(self.reason).__name__
        return f"cannot reach the pycm daemon at {self.endpoint}: {reason}"


class Options(NamedTuple):
    """
    What the command line asked for (a NamedTuple: attrs would cost a
    one-shot call a tenth of its time to import).

    @ivar tokenSource: where the token came from, for error messages.
    @ivar tokenWithheld: the token file's token, found but not sent: the
        endpoint is not one the daemon owning that file listens on with a
        token required.
    """

    host: str
    token: str | None
    json: bool
    command: tuple[str, ...]
    tokenSource: str | None = None
    #: What C{command} asks of the daemon (see L{pycm.client.plan}).
    plan: Plan | None = None
    tokenWithheld: str | None = None


def makeParser() -> argparse.ArgumentParser:
    """The parser of pycm's own options (those before COMMAND)."""
    import argparse

    class _Parser(argparse.ArgumentParser):
        def error(self, message: str) -> NoReturn:
            raise UsageError(message)

    parser = _Parser(
        prog="pycm",
        usage="pycm [--host ENDPOINT] [--token TOKEN] [--json] [COMMAND [ARG...]]",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--host", "-H", metavar="ENDPOINT",
        help="a Twisted client endpoint: tcp:HOST:PORT, unix:PATH, "
        "tls:HOST:PORT (default: $PYCM_HOST, else tcp:127.0.0.1:8080)",
    )
    parser.add_argument(
        "--token", metavar="TOKEN",
        help="authenticate with TOKEN (default: $PYCM_TOKEN, else the "
        "daemon's token file when readable, sent only to that daemon's own "
        "listeners)",
    )
    parser.add_argument(
        "--json", action="store_true",
        help="print replies as raw JSON (with piped input: the raw "
        "OK/ERR/EVENT lines)",
    )
    parser.add_argument("--version", action="version",
                        version=f"pycm client {_version()}")
    return parser


def _version() -> str:
    from pycm import __version__
    return __version__


_VALUE_OPTIONS = frozenset({"--host", "-H", "--token"})


def _plainOptions(own: Sequence[str]) -> tuple[str | None, str | None, bool] | None:
    """
    pycm's own options (host, token, json) when they are spelled plainly
    (C{--host X}, C{--host=X}, C{-H X}, C{--token X}, C{--token=X},
    C{--json}), as argparse reads them; None for anything else (help, an
    abbreviation, a value that looks like an option, a mistake), which
    argparse then reads.  Importing argparse and building the parser cost
    a one-shot call a tenth of its time.
    """
    values: dict[str, str | None] = {"host": None, "token": None}
    json = False
    words = iter(own)
    for word in words:
        if word == "--json":
            json = True
            continue
        option, equals, value = word.partition("=")
        name = {"--host": "host", "-H": "host", "--token": "token"}.get(option)
        if name is None or (equals and option == "-H"):
            return None
        if not equals:
            value = next(words, "-")
        if value.startswith("-"):
            return None
        values[name] = value
    return values["host"], values["token"], json


def parseArguments(
    argv: Sequence[str],
    environ: Mapping[str, str] | None = None,
    uid: int | None = None,
) -> Options:
    """
    Parse pycm's options; the first word that is not one of them starts
    the COMMAND, whose words are left alone (so C{pycm logs --follow web}
    passes C{--follow} to the daemon).

    @raise UsageError: for a bad command line.
    """
    if environ is None:
        environ = os.environ
    argv = list(argv)
    split = 0
    while split < len(argv):
        word = argv[split]
        if word == "--":
            break
        if not word.startswith("-") or word == "-":
            break
        split += 2 if word in _VALUE_OPTIONS else 1
    own, command = argv[:split], argv[split:]
    if command and command[0] == "--":
        command = command[1:]
    plain = _plainOptions(own)
    if plain is None:
        parsed = makeParser().parse_args(own)
        plain = parsed.host, parsed.token, parsed.json
    host, explicitToken, asJSON = plain
    token = findToken(explicitToken, environ, uid)
    if explicitToken:
        source = "--token"
    elif environ.get("PYCM_TOKEN"):
        source = "$PYCM_TOKEN"
    elif token:
        source = defaultTokenPath(environ, uid)
    else:
        source = None
    host = host or defaultEndpoint(environ)
    withheld = None
    if token and source == defaultTokenPath(environ, uid):
        # Found, not chosen: sent only where its own daemon wants it.
        if not tokenWanted(host, readListeners(defaultListenersPath(environ, uid))):
            token, source, withheld = None, None, defaultTokenPath(environ, uid)
    for word in command:
        if "\n" in word or "\r" in word:
            raise UsageError("an argument cannot contain a line break")
    plan = None
    if command:
        try:
            plan = planCommand(command)
        except PlanError as e:
            raise UsageError(str(e)) from None
    return Options(
        host=host,
        token=token,
        json=asJSON,
        command=tuple(command),
        tokenSource=source,
        plan=plan,
        tokenWithheld=withheld,
    )


def endpointFor(reactor: Any, description: str) -> IStreamClientEndpoint:
    """
    The client endpoint for C{description}.

    @raise UsageError: when it is not a valid endpoint string, or names a
        UNIX socket path too long to connect to.
    """
    if description.startswith("tcp://"):
        # Twisted would take "//HOST" for the host name.
        hint = endpointHint(description) or "tcp:HOST:PORT"
        raise UsageError(
            f"bad endpoint {description!r}: Twisted endpoint strings have no '//' "
            f"(did you mean {hint}?)"
        )
    from twisted.internet.endpoints import UNIXClientEndpoint, clientFromString

    try:
        endpoint = clientFromString(reactor, description)
    except Exception as e:
        meant = endpointHint(description)
        message = f"bad endpoint {description!r}: {e}"
        raise UsageError(message + (f" (did you mean {meant}?)" if meant else "")) from None
    if isinstance(endpoint, UNIXClientEndpoint):
        checkSocketPath(description, unixSocketPath(description))
    return endpoint


def unixSocketPath(description: str) -> str:
    """
    The socket path of a C{unix:} endpoint string Twisted has parsed: its
    C{path=} or first argument, unquoted by the same rules.
    """
    from twisted.python import usage

    from pycm.daemon.listeners import splitEndpoint

    try:
        args, kwargs = splitEndpoint(description)
    except usage.UsageError:
        raise UsageError(f"bad endpoint {description!r}: a keyword is given twice") from None
    return kwargs.get("path", args[1] if len(args) > 1 else "")


def checkSocketPath(description: str, path: str | bytes) -> None:
    """
    Refuse a UNIX socket path too long to connect to.

    @raise UsageError: when C{path} is over L{MAX_UNIX_PATH} bytes.
    """
    size = len(os.fsencode(path))
    if size > MAX_UNIX_PATH:
        raise UsageError(
            f"bad endpoint {description!r}: the socket path is {size} bytes, and a "
            f"UNIX socket path can have at most {MAX_UNIX_PATH} (name it by a "
            "shorter path: a relative one, or a symbolic link to its directory)"
        )


def endpointHint(description: str) -> str | None:
    """
    The endpoint string a Docker-style address means, if it is one:
    C{HOST:PORT} and C{tcp://HOST:PORT} are C{tcp:HOST:PORT}.
    """
    if description.startswith("tcp://"):
        description = description[len("tcp://") :]
    host, sep, port = description.rpartition(":")
    if sep and host and port.isdigit() and ":" not in host:
        return f"tcp:{host}:{port}"
    return None


async def connectTo(reactor: Any, options: Options) -> ClientProtocol:
    """
    Connect (and authenticate when a token is known).

    @raise UsageError: for a bad endpoint string.
    @raise CannotConnect: when the daemon cannot be reached.
    """
    from twisted.internet.error import ConnectError, DNSLookupError

    from pycm.client.protocol import Disconnected, connect

    endpoint = endpointFor(reactor, options.host)
    try:
        return await connect(endpoint, options.token)
    except (ConnectError, DNSLookupError, OSError, Disconnected,
            ProtocolError) as e:
        raise CannotConnect(options.host, e) from None


def peerDescription(client: ClientProtocol, fallback: str) -> str:
    """C{127.0.0.1:8080} or a socket path: where the client is connected."""
    try:
        peer = client.transport.getPeer()  # type: ignore[union-attr]
    except Exception:
        return fallback
    host = getattr(peer, "host", None)
    port = getattr(peer, "port", None)
    if host is not None and port is not None:
        if ":" in host:
            return f"[{host}]:{port}"
        return f"{host}:{port}"
    name = getattr(peer, "name", None)
    if name:
        return name.decode() if isinstance(name, bytes) else str(name)
    return fallback


def explainError(error: BaseException, client: ClientProtocol | BlockingClient,
                 options: Options) -> str:
    """L{fmt.formatError}, with a hint for C{unauthorized}."""
    text = fmt.formatError(error)
    if isinstance(error, Unauthorized):
        if client.authError is not None and options.tokenSource:
            text += f" (the daemon refused the token from {options.tokenSource})"
        elif options.tokenWithheld:
            text += (f" (the token in {options.tokenWithheld} was not sent: "
                     f"{options.host} is not an endpoint the local daemon listens on "
                     "with a token; to send it, use --token or set PYCM_TOKEN)")
        elif not options.token:
            path = defaultTokenPath()
            text += (f" (no token: use --token, set PYCM_TOKEN, or make {path} "
                     "readable)")
    return text


def _writeLines(stream: TextIO, lines: Sequence[str]) -> None:
    for line in lines:
        stream.write(line + "\n")
    flush = getattr(stream, "flush", None)
    if flush is not None:
        flush()


def _logStream(entry: Any, out: TextIO, err: TextIO) -> TextIO:
    """Where a log line goes: stderr for the container's stderr."""
    if isinstance(entry, dict) and entry.get("stream") == "stderr":
        return err
    return out


# -- one request from the command line ---------------------------------------


def interruptedBeforeReply(line: str, err: TextIO) -> int:
    """Ctrl-C before the reply: say the daemon may go on; exit status 130."""
    _writeLines(err, [f"pycm: interrupted before the reply; the daemon may "
                      f"still carry out: {line}"])
    return EXIT_INTERRUPTED


def _interruptions(reactor: Any) -> list[bool]:
    """
    A list that becomes C{[True]} when the reactor begins to shut down
    (Ctrl-C or SIGTERM under L{task.react}), which also closes the
    connection: what tells an interruption from a lost daemon.
    """
    interrupted: list[bool] = []
    addTrigger = getattr(reactor, "addSystemEventTrigger", None)
    if addTrigger is not None:
        addTrigger("before", "shutdown", lambda: interrupted.append(True))
    return interrupted


async def runCommand(
    reactor: IReactorTime,
    client: ClientProtocol | BlockingClient,
    options: Options,
    out: TextIO,
    err: TextIO,
    environ: Mapping[str, str] | None = None,
    interrupted: list[bool] | None = None,
) -> int:
    """
    Carry out C{options.command}'s L{Plan}: send its requests one after
    the other, print each reply (and, for C{events} and C{logs --follow},
    the events that follow), return the exit status: the worst of them.

    The same coroutine serves both paths: in the reactor with a
    L{ClientProtocol}, and on a blocking socket with a
    L{pycm.client.oneshot.BlockingClient}, whose awaitables finish before
    they return; so the output is the same by construction.

    @param interrupted: becomes C{[True]} on Ctrl-C (L{_interruptions} by
        default).
    """
    plan = options.plan if options.plan is not None else planCommand(options.command)
    if environ is None:
        environ = os.environ
    name = plan.command
    follow = plan.follow
    streaming = name == "events" and "--off" not in plan.requests[0]
    prefixes: fmt.LogPrefixes | None = None
    if name == "logs" and len(plan.requests) > 1:
        isatty = getattr(out, "isatty", None)
        prefixes = fmt.LogPrefixes(
            plan.names, fmt.useColour(bool(isatty and isatty()), environ)
        )
    finished: list[bool] = []
    early: list[tuple[Any, str]] = []
    following: set[str] = set()
    replied = False

    def showEvent(event: Any, payload: str) -> None:
        if not replied:
            early.append((event, payload))
            return
        if follow:
            if not isinstance(event, dict) or event.get("type") not in (
                "log", "log_end"
            ):
                return
            if event["type"] == "log_end":
                following.discard(str(event.get("name")))
                if not following:
                    finished.append(True)
                return
            text = fmt.formatLogEntry(event, str(event.get("name")), prefixes,
                                      plan.timestamps)
        else:
            text = fmt.formatEvent(event)
        if options.json:
            _writeLines(out, [payload])
        else:
            _writeLines(_logStream(event, out, err), [text])

    progress = await _watchPull(client, options, plan, err)

    def listener(event: Any) -> None:
        if progress is not None and isinstance(event, dict) \
                and event.get("type") == "progress":
            err.write(progress.update(event))
            err.flush()
            return
        showEvent(event, client.payload)

    if interrupted is None:
        interrupted = _interruptions(reactor)
    client.addEventListener(listener)
    code = EXIT_OK
    logLines: list[tuple[str, int, str, Any]] = []
    for index, words in enumerate(plan.requests):
        line = shlex.join(words)
        try:
            value = await client.request(line)
        except PycmError as e:
            reportError(err, options, e.code, e.message,
                        explainError(e, client, options))
            code = max(code, EXIT_USAGE if e.code == "bad_request" else EXIT_ERR)
            continue
        except ConnectionGone:
            if interrupted:
                return interruptedBeforeReply(line, err)
            reportError(err, options, "unreachable",
                        f"lost the connection to the pycm daemon at {options.host}")
            return EXIT_UNREACHABLE
        except ProtocolError as e:
            reportError(err, options, "unreachable",
                        f"{options.host} does not answer like a pycm daemon: {e}")
            return EXIT_UNREACHABLE
        except ValueError as e:
            reportError(err, options, "usage", str(e), f"pycm: {e}")
            client.disconnect()
            return EXIT_USAGE
        if follow:
            following.add(words[-1])
        if options.json:
            _writeLines(out, [client.payload])
        elif name == "logs" and isinstance(value, list):
            if prefixes is None:
                # Like `docker logs`: what the container wrote to stderr
                # goes to stderr.
                for entry in value:
                    _writeLines(_logStream(entry, out, err),
                                [fmt.formatLogEntry(entry, timestamps=plan.timestamps)])
            else:
                for entry in value:
                    when = entry.get("time") if isinstance(entry, dict) else None
                    logLines.append((_sortTime(when), index, words[-1], entry))
        else:
            lines = None
            if isinstance(value, list) and name in fmt.LIST_COMMANDS:
                lines = fmt.formatContainers(value, plan.quiet, plan.template,
                                             plan.jsonLines)
            if lines is None:
                lines = fmt.formatReply(name, value, reactor.seconds())
            # The events banner goes to stderr so `pycm events | grep` sees
            # only events.
            _writeLines(err if streaming else out, lines)
    # Several containers' lines, merged by time (each one's stay in order).
    logLines.sort(key=lambda item: (item[0], item[1]))
    for _, _, container, entry in logLines:
        _writeLines(_logStream(entry, out, err),
                    [fmt.formatLogEntry(entry, container, prefixes, plan.timestamps)])
    replied = True
    for event, payload in early:
        showEvent(event, payload)
    if not ((follow and following) or streaming) or finished:
        client.disconnect()
        return code

    # Ctrl-C (or SIGTERM) stops the reactor, which closes the connection:
    # that is the normal end of `events`, not a lost daemon.
    await client.waitUntil(lambda: bool(finished))
    if finished or interrupted:
        client.disconnect()
        return code
    reportError(err, options, "unreachable",
                f"lost the connection to the pycm daemon at {options.host}")
    return EXIT_UNREACHABLE


async def _watchPull(client: ClientProtocol | BlockingClient, options: Options, plan: Plan,
                     err: TextIO) -> fmt.PullProgress | None:
    """
    For C{run} or C{create} with a terminal on stderr: ask the daemon for
    the progress of pulls for this container, and return what draws them;
    None otherwise (piped, C{--json}, or a daemon that will not say).
    """
    isatty = getattr(err, "isatty", None)
    if plan.command not in ("run", "create") or options.json \
            or not (isatty and isatty()) or not plan.names:
        return None
    watch = ["events", "--filter", "action=pull", "--filter", f"name={plan.names[0]}"]
    try:
        await client.request(shlex.join(watch))
    except (PycmError, ValueError):
        return None
    except (ConnectionGone, ProtocolError):
        # The request itself will say so.
        return None
    return fmt.PullProgress(_terminalColumns(err))


def _terminalColumns(stream: TextIO) -> int:
    """The width of the terminal C{stream} writes to; 0 if it will not say."""
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError):
        return 0


def _sortTime(when: Any) -> str:
    # The daemon's times are all of one form (UTC, milliseconds): their
    # text sorts as they do.
    return when if isinstance(when, str) else ""


def reportError(err: TextIO, options: Options, code: str, message: str,
                text: str | None = None) -> None:
    """
    Print an error on C{err}: C{text} (default C{Error: MESSAGE}) for a
    person, or C{{"error":CODE,"message":MESSAGE}} with C{--json}.
    """
    if options.json:
        _writeLines(err, [json.dumps({"error": code, "message": message},
                                     ensure_ascii=False)])
    else:
        _writeLines(err, [text if text is not None else f"Error: {message}"])


# -- the entry point ---------------------------------------------------------


async def run(
    reactor: Any,
    options: Options,
    out: TextIO,
    err: TextIO,
    attachStdio: Callable[[PipedRequests], object] | None = None,
    interactive: bool = False,
) -> int:
    """
    Connect and do what C{options} says; the exit status.

    @param attachStdio: connects a protocol to standard input/output (for
        piped mode); L{twisted.internet.stdio.StandardIO} in L{main}.
    @param interactive: start the shell when there is no COMMAND.
    """
    interrupted = _interruptions(reactor)
    try:
        client = await connectTo(reactor, options)
    except UsageError as e:
        reportError(err, options, "usage", str(e), f"pycm: {e}")
        return EXIT_USAGE
    except CannotConnect as e:
        if options.command and interrupted:
            # Ctrl-C while connecting or authenticating closed the
            # connection: the request may not have been sent, or may have.
            return interruptedBeforeReply(shlex.join(options.command), err)
        reportError(err, options, "unreachable", str(e))
        return EXIT_UNREACHABLE
    live = liveCommand(options.command)
    if live == "top":
        from pycm.client.top import runTop

        return await runTop(reactor, client, options, err)
    if live == "stats":
        return await streamStats(reactor, client, options.command, out, err,
                                 terminal=out.isatty(), asJSON=options.json,
                                 interrupted=interrupted)
    if options.command:
        return await runCommand(reactor, client, options, out, err,
                                interrupted=interrupted)
    if interactive:
        from pycm.client.terminal import runShell

        return await runShell(reactor, client, options)
    from pycm.client.piped import runPiped

    assert attachStdio is not None
    return await runPiped(reactor, client, options, attachStdio, err)


def clientCommand(options: Options, out: TextIO, err: TextIO) -> int | None:
    """
    Carry out a command of the client's own, which needs no connection
    (C{completion SHELL}, and the hidden C{__names} that completion
    scripts call): its exit status, or None for a command of the daemon's.
    """
    if not options.command:
        return None
    word = options.command[0]
    if word == "completion":
        from pycm.client.completion import SHELLS, completionScript

        if len(options.command) != 2 or options.command[1] not in SHELLS:
            _writeLines(err, ["pycm: usage: pycm completion bash|zsh|fish"])
            return EXIT_USAGE
        out.write(completionScript(options.command[1]))
        return EXIT_OK
    if word == "top" and wantsHelp(options.command[1:]):
        _writeLines(out, TOP_USAGE)
        return EXIT_OK
    if word == "__names":
        from pycm.client.completion import containerNames

        _writeLines(out, containerNames(options.host, options.token))
        return EXIT_OK
    return None


def useReactor(options: Options, environ: Mapping[str, str]) -> bool:
    """
    Whether C{options} need the reactor: piped requests, the shell and the
    live views (C{top}, streaming C{stats}) do, and C{$PYCM_CLIENT=twisted}
    sends one request through it too (the fast path takes plain C{tcp:}
    and C{unix:} endpoints; it hands the others to the reactor itself).
    """
    return (not options.command or liveCommand(options.command) is not None
            or environ.get("PYCM_CLIENT") == "twisted")


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """The C{pycm} console script."""
    try:
        try:
            _main(argv)
        finally:
            # Here, not at exit: a reader gone is seen by the handler below.
            sys.stdout.flush()
    except BrokenPipeError:
        _readerGone()


def _readerGone() -> NoReturn:
    """
    Standard output's reader closed it: end quietly (what is still
    buffered goes nowhere, not into a second error at exit).
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    sys.exit(EXIT_READER_GONE)


def _main(argv: Sequence[str] | None) -> NoReturn:
    if argv is None:
        argv = sys.argv[1:]
    try:
        options = parseArguments(argv)
    except UsageError as e:
        sys.stderr.write(f"pycm: {e}\nTry 'pycm --help'.\n")
        sys.exit(EXIT_USAGE)
    local = clientCommand(options, sys.stdout, sys.stderr)
    if local is not None:
        sys.exit(local)
    if not useReactor(options, os.environ):
        from pycm.client import oneshot

        code = _guarded(lambda: oneshot.main(options, sys.stdout, sys.stderr))
        if code is not None:
            sys.exit(code)

    from twisted.internet import stdio, task

    interactive = not options.command and sys.stdin.isatty()

    async def _main(reactor: Any) -> None:
        def attach(protocol: PipedRequests) -> object:
            return stdio.StandardIO(protocol, reactor=reactor)

        try:
            code = await run(reactor, options, sys.stdout, sys.stderr,
                             attachStdio=attach, interactive=interactive)
        except SystemExit:
            raise
        except BrokenPipeError:
            _readerGone()
        except BaseException:
            import traceback

            traceback.print_exc()
            code = EXIT_ERR
        raise SystemExit(code)

    task.react(_main)


def _guarded(call: Callable[[], int | None]) -> int | None:
    """C{call()}; a bug is a traceback on stderr and exit status 1."""
    try:
        return call()
    except (SystemExit, BrokenPipeError):
        raise
    except BaseException:
        import traceback

        traceback.print_exc()
        return EXIT_ERR


if __name__ == "__main__":
    main()
