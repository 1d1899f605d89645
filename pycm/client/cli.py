"""
The C{pycm} command's entry point: a request from the command line, requests
piped on standard input, or the shell on a terminal.  One request over a
plain C{tcp:} or C{unix:} endpoint takes the fast path without a reactor
(L{pycm.client.oneshot}); the rest runs in Twisted's reactor, imported only
then.  Exit statuses: L{pycm.client.exits}.  Only L{main} picks the global
reactor.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

from pycm.client.arguments import CommandLine, parseArguments
from pycm.client.command import interruptions, runCommand
from pycm.client.connecting import connectTo
from pycm.client.exits import (
    EXIT_ERR,
    EXIT_OK,
    EXIT_READER_GONE,
    EXIT_USAGE,
    CannotConnect,
    UsageError,
    reportUnreachable,
    reportUsageError,
    writeLines,
)
from pycm.client.plan import wantsHelp
from pycm.client.stats import TOP_USAGE, liveCommand, streamStats

if TYPE_CHECKING:
    from pycm.client.piped import PipedRequests


async def run(
    reactor: Any,
    options: CommandLine,
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
    interrupted = interruptions(reactor)
    try:
        client = await connectTo(reactor, options, err)
    except UsageError as e:
        return reportUsageError(err, options, e)
    except CannotConnect as e:
        return reportUnreachable(err, options, e, interrupted=bool(interrupted))
    addTrigger = getattr(reactor, "addSystemEventTrigger", None)
    if addTrigger is not None:
        # Ctrl-C shuts the reactor down: a request in flight is given up.
        addTrigger("before", "shutdown", client.abandon)
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


def clientUsage(word: str) -> list[str] | None:
    """
    What C{pycm WORD --help} and C{pycm help WORD} print for a command of
    the client's own (C{top}, C{completion}); None for the daemon's, whose
    C{help} says it.
    """
    if word == "top":
        return TOP_USAGE
    if word == "completion":
        from pycm.client.completion import COMPLETION_USAGE

        return COMPLETION_USAGE
    return None


def clientCommand(options: CommandLine, out: TextIO, err: TextIO) -> int | None:
    """
    Carry out a command of the client's own, which needs no connection
    (C{completion SHELL}, C{top}'s and C{completion}'s C{--help} or C{help
    top}, and the hidden C{__names} that completion scripts call), or
    refuse C{top} with arguments (exit status 2, as for any usage error):
    its exit status, or None for a command of the daemon's.
    """
    if not options.command:
        return None
    word = options.command[0]
    if word.lower() == "help" and len(options.command) == 2:
        usage = clientUsage(options.command[1].lower())
        if usage is not None:
            writeLines(out, usage)
            return EXIT_OK
    usage = clientUsage(word.lower())
    if usage is not None and wantsHelp(options.command[1:]):
        writeLines(out, usage)
        return EXIT_OK
    if word == "completion":
        from pycm.client.completion import SHELLS, completionScript

        if len(options.command) != 2 or options.command[1] not in SHELLS:
            writeLines(err, ["pycm: usage: pycm completion bash|zsh|fish",
                             "Try 'pycm completion --help'."])
            return EXIT_USAGE
        out.write(completionScript(options.command[1]))
        return EXIT_OK
    if word == "top" and len(options.command) > 1:
        writeLines(err, [f"pycm: top takes no arguments: {options.command[1]!r}",
                         "Try 'pycm top --help'."])
        return EXIT_USAGE
    if word == "__names":
        from pycm.client.completion import containerNames

        writeLines(out, containerNames(options.host, options.token, options=options))
        return EXIT_OK
    return None


def useReactor(options: CommandLine, environ: Mapping[str, str]) -> bool:
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
        sys.stderr.write(f"pycm: {e}\n" + ("Try 'pycm --help'.\n" if e.hint else ""))
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

