"""
The shell on the real terminal: L{runShell} asks the daemon for its
commands (C{help}) and its events, puts the terminal in raw mode, runs a
L{ShellProtocol} in L{insults.ServerProtocol} on L{StandardIO}, and restores
the terminal's settings in C{finally}.  Ctrl-C with a request in flight
connects anew (L{reconnector}).
"""

from __future__ import annotations

import fcntl
import io
import os
import sys
import termios
import tty
from collections.abc import Callable, Sequence
from typing import Any

from twisted.conch.insults import insults
from twisted.internet.defer import Deferred

from pycm.client.connecting import connectTo, daemonAddress
from pycm.client.history import HistoryFile, defaultHistoryPath
from pycm.client.inflight import Connect, Reconnection, Subscriptions
from pycm.client.protocol import ClientProtocol
from pycm.client.shell import ShellProtocol
from pycm.errors import PycmError
from pycm.grammar import syntaxFromHelp


def _nonBlockingFlags(fds: Sequence[int]) -> list[tuple[int, int]]:
    return [(fd, fcntl.fcntl(fd, fcntl.F_GETFL)) for fd in fds]


def reconnector(reactor: Any, options: Any) -> Connect:
    """
    Connects anew as the shell first did (the same endpoint and token; what
    L{connectTo} says of a withheld token was said then), and gives each
    new connection's request in flight up when the reactor stops, as
    L{pycm.client.cli.run} does the first's.
    """
    def connect() -> Deferred[ClientProtocol]:
        connected = Deferred.fromCoroutine(connectTo(reactor, options, io.StringIO()))

        def giveUpOnShutdown(client: ClientProtocol) -> ClientProtocol:
            reactor.addSystemEventTrigger("before", "shutdown", client.abandon)
            return client

        return connected.addCallback(giveUpOnShutdown)

    return connect


async def runShell(
    reactor: Any,
    client: ClientProtocol,
    options: Any,
    stdin: int | None = None,
    stdout: int | None = None,
    makeStdio: Callable[..., object] | None = None,
) -> int:
    """
    Run the shell on the terminal until it ends; the exit status.

    The terminal is put in raw mode (insults does the echo and editing);
    its settings, and the blocking mode of both descriptors, are restored
    in C{finally}.
    """
    from twisted.internet import stdio

    if stdin is None:
        stdin = sys.stdin.fileno()
    if stdout is None:
        stdout = sys.stdout.fileno()
    factory: Callable[..., object] = makeStdio or stdio.StandardIO
    greeting = ("Connected to the pycm daemon at "
                f"{daemonAddress(client, options.host)}")
    notices = []
    # The command words and options Tab completes: the daemon's own.
    try:
        commands = syntaxFromHelp(await client.request("help"))
    except PycmError:
        commands = None
    if client.authError is not None:
        notices.append(f"Warning: the daemon refused the token from "
                       f"{options.tokenSource} ({client.authError})")
    # Events are printed as they happen: subscribe before the first prompt.
    subscriptions = Subscriptions()
    try:
        subscriptions.replied(["events"], await client.request("events"))
    except PycmError as e:
        notices.append(f"Container events are off: {e}")
    else:
        notices.append("Container events are shown as they happen (`events --off` "
                       "stops them).")
    notices.append("Type `help` for the commands, `exit` or Ctrl-D to leave.")
    done: Deferred[int] = Deferred()
    historyPath = defaultHistoryPath()
    history = HistoryFile(historyPath, options.knownTokens) if historyPath else None

    def columns() -> int:
        try:
            # A terminal that does not know its size says 0 columns.
            return os.get_terminal_size(stdout).columns or 80
        except OSError:
            return 80

    saved = termios.tcgetattr(stdin)
    flags = _nonBlockingFlags(sorted({stdin, stdout}))
    try:
        tty.setraw(stdin)
        factory(
            insults.ServerProtocol(ShellProtocol, client, reactor, greeting,
                                   done, notices, columns, history, commands,
                                   Reconnection(reconnector(reactor, options),
                                                subscriptions), options.knownTokens),
            stdin=stdin, stdout=stdout, reactor=reactor,
        )
        return await done
    finally:
        termios.tcsetattr(stdin, termios.TCSADRAIN, saved)
        for fd, flag in flags:
            fcntl.fcntl(fd, fcntl.F_SETFL, flag)
