"""
One request from the command line without a reactor, on a blocking socket
to a plain C{tcp:} or C{unix:} endpoint, importing the standard library only
(Twisted's reactor costs more than all the rest of a one-shot call; check
with C{python -X importtime -m pycm.client.cli ping}).  It runs the very
coroutine the reactor runs, L{pycm.client.command.runCommand}, so the lines
on the wire, the output and the exit statuses are the same by construction.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import time
from collections.abc import Callable

from pycm.client.command import runCommand
from pycm.client.connecting import checkSocketPath
from pycm.client.exits import (
    CannotConnect,
    UsageError,
    interruptedBeforeSending,
    reportUnreachable,
    reportUsageError,
    writeLines,
)
from pycm.client.wire import (
    MAX_REPLY_LENGTH,
    ConnectionGone,
    ProtocolError,
    errorFromReply,
    isSilentLine,
    resetOnClose,
)
from pycm.errors import PycmError

TYPE_CHECKING = False  # typing is for annotations only (see pycm.client.cli)
if TYPE_CHECKING:
    from collections.abc import Coroutine, Generator
    from typing import Any, Protocol, TextIO

    from pycm.client.arguments import CommandLine

    class LineSocket(Protocol):
        """What L{BlockingClient} uses of a blocking socket (tests hand it a fake)."""

        def sendall(self, data: bytes, /) -> None: ...

        def recv(self, size: int, /) -> bytes: ...

        def close(self) -> None: ...

#: How long a connection attempt may take, in seconds, unless the endpoint
#: says (C{timeout=}): Twisted's default for C{tcp:} and C{unix:}.
CONNECT_TIMEOUT = 30


class SocketAddress:
    """
    Where a plain endpoint string points a socket.

    @ivar path: the UNIX socket path, to check its length (None for TCP).
    """

    def __init__(self, family: int, address: Any, timeout: float,
                 path: str | None = None) -> None:
        self.family = family
        self.address = address
        self.timeout = timeout
        self.path = path

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SocketAddress):
            return NotImplemented
        return vars(self) == vars(other)

    def __repr__(self) -> str:
        return f"SocketAddress({vars(self)!r})"


def socketAddress(description: str) -> SocketAddress | None:
    """
    The address of a C{tcp:HOST:PORT} or C{unix:PATH} endpoint string
    (with C{host=}, C{port=}, C{path=}, C{timeout=} spelled as keywords,
    as Twisted's parsers take them), or None for any other string, which
    the reactor's path then parses (and refuses, or connects to).
    """
    kind, sep, rest = description.partition(":")
    if not sep or "\\" in rest or rest.startswith("//"):
        return None
    positional: list[str] = []
    keywords: dict[str, str] = {}
    for part in rest.split(":"):
        key, equals, value = part.partition("=")
        if equals:
            if key in keywords:
                return None
            keywords[key] = value
        else:
            positional.append(part)
    try:
        timeout = int(keywords.pop("timeout", CONNECT_TIMEOUT))
    except ValueError:
        return None
    if timeout <= 0:
        return None
    if kind == "tcp":
        if len(positional) == 2:
            if keywords:
                return None
            host, port = positional
        elif len(positional) == 1 and "host" in keywords:
            host, port = keywords.pop("host"), positional[0]
        elif not positional:
            host, port = keywords.pop("host", ""), keywords.pop("port", "")
        else:
            return None
        if keywords or not host or not port.isdigit() or int(port) > 65535:
            return None
        return SocketAddress(socket.AF_INET, (host, int(port)), timeout)
    if kind == "unix":
        if len(positional) == 1 and "path" not in keywords:
            path = positional[0]
        elif not positional and "path" in keywords:
            path = keywords.pop("path")
        else:
            return None
        if keywords or not path:
            return None
        return SocketAddress(socket.AF_UNIX, path, timeout, path)
    return None


def connectError(error: OSError) -> BaseException:
    """
    The exception Twisted's reactor gives for the same failure to connect,
    so that L{CannotConnect} words it the same (imported only on failure).
    """
    from twisted.internet import error as twistedErrors

    if isinstance(error, socket.gaierror):
        return twistedErrors.DNSLookupError(str(error))
    if isinstance(error, TimeoutError) and not error.errno:
        return twistedErrors.TimeoutError()
    if error.errno:
        return twistedErrors.getConnectError((error.errno, os.strerror(error.errno)))
    return twistedErrors.ConnectError(string=str(error))


class _Step:
    """An awaitable made of a generator (its C{yield}s mean: no bytes yet)."""

    def __init__(self, steps: Generator[None, None, Any]) -> None:
        self._steps = steps

    def __await__(self) -> Generator[None, None, Any]:
        return (yield from self._steps)


class BlockingClient:
    """
    The client side of the line protocol on a blocking socket, with the
    part of L{pycm.client.protocol.ClientProtocol}'s interface that
    L{pycm.client.command.runCommand} uses, read the same way: C{OK} and
    C{ERR} answer the request, C{EVENT}s go to the listeners meanwhile, any
    other line (or one over L{MAX_REPLY_LENGTH}) is a L{ProtocolError} and
    drops the connection.

    Its awaitables do their I/O when awaited and finish before they return,
    so L{runToEnd} runs the coroutine with one C{send}.  On a non-blocking
    socket (the tests' fake one) they suspend instead while no bytes are
    there, and the tests resume them.

    Ctrl-C (a C{KeyboardInterrupt} while it waits for bytes) closes the
    connection and appends C{True} to C{interrupted}, as the reactor's
    shutdown does on the other path.

    @ivar authError: why the daemon refused the token, if it did.
    """

    def __init__(self, sock: LineSocket, interrupted: list[bool] | None = None) -> None:
        self.sock = sock
        self.interrupted: list[bool] = [] if interrupted is None else interrupted
        self.authError: PycmError | None = None
        #: The JSON text of the C{OK} or C{EVENT} line being delivered, as
        #: the daemon sent it (C{--json} passes it through unchanged).
        self.payload = ""
        self._listeners: list[Callable[[Any], None]] = []
        self._buffer = b""
        self._gone = False
        #: Whether a read is under way: Ctrl-C interrupts only those.
        self.reading = False
        #: Ctrl-C came while no read was under way: the next read ends.
        self.pendingInterrupt = False

    # -- what runCommand uses -------------------------------------------------

    def request(self, line: str) -> _Step:
        """
        Send one request line; awaiting it gives the reply's JSON value.

        @raise ValueError: for a line the server would not answer with
            exactly one reply.
        @raise PycmError: for C{ERR}.
        @raise ConnectionGone: when not (or no longer) connected.
        @raise ProtocolError: for a line that is not the protocol's.
        """
        return _Step(self._request(line))

    def addEventListener(self, listener: Callable[[Any], None]) -> None:
        """Call C{listener(event)} with the decoded JSON of each EVENT line."""
        self._listeners.append(listener)

    def waitUntil(self, condition: Callable[[], bool]) -> _Step:
        """Read events until C{condition()} is true after one, or the end."""
        return _Step(self._waitUntil(condition))

    def disconnect(self) -> None:
        """Close the connection."""
        if not self._gone:
            self._gone = True
            self.sock.close()

    def abandon(self) -> None:
        """
        Ctrl-C with a request in flight: reset the connection rather than
        close it.  A close is a FIN, which the daemon must take for a
        half-close (the client sent all it will, and waits for the
        replies): it would go on with the request and the lines behind it.
        A reset (TCP, with a zero linger) tells it the client is gone, and
        it abandons them (an C{apply} stops where it is, a C{wait} ends).
        """
        resetOnClose(self.sock)
        self.disconnect()

    # -- internals ------------------------------------------------------------

    def _request(self, line: str) -> Generator[None, None, Any]:
        if "\n" in line or "\r" in line:
            raise ValueError("a request cannot contain a line break")
        if isSilentLine(line):
            raise ValueError("a blank or comment line gets no reply")
        if self._gone:
            raise ConnectionGone()
        try:
            self.sock.sendall(line.encode("utf-8") + b"\n")
        except OSError:
            pass  # the daemon is gone: the read says so
        while True:
            text = yield from self._readLine()
            kind, _, rest = text.partition(" ")
            self.payload = rest
            if kind == "EVENT":
                self._event(rest)
            elif kind == "OK":
                try:
                    return json.loads(rest)
                except ValueError:
                    raise self._broken(f"a reply is not valid JSON: {rest[:200]!r}") from None
            elif kind == "ERR":
                code, _, message = rest.partition(" ")
                raise errorFromReply(code, message)
            elif text:
                raise self._broken(f"unexpected line from the daemon: {text[:200]!r}")

    def _waitUntil(self, condition: Callable[[], bool]) -> Generator[None, None, None]:
        while not self._gone:
            try:
                text = yield from self._readLine()
            except (ConnectionGone, ProtocolError):
                return
            kind, _, rest = text.partition(" ")
            self.payload = rest
            if kind == "EVENT":
                self._event(rest)
                if condition():
                    return
            elif text:
                # A reply with no request waiting, or garbage: the stream is
                # out of step, and ClientProtocol drops the connection.
                self.disconnect()
                return

    def _event(self, payload: str) -> None:
        try:
            event = json.loads(payload)
        except ValueError:
            return  # ClientProtocol logs and ignores it
        for listener in list(self._listeners):
            listener(event)

    def _broken(self, message: str) -> ProtocolError:
        self.disconnect()
        return ProtocolError(message)

    def _readLine(self) -> Generator[None, None, str]:
        """The next line, decoded as ClientProtocol decodes it."""
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0:
                line, self._buffer = self._buffer[:end], self._buffer[end + 1:]
                if len(line) > MAX_REPLY_LENGTH:
                    break
                if line.endswith(b"\r"):
                    line = line[:-1]
                return line.decode("utf-8", errors="replace")
            if len(self._buffer) > MAX_REPLY_LENGTH:
                break
            data = yield from self._recv()
            self._buffer += data
        raise self._broken(f"a reply from the daemon is longer than {MAX_REPLY_LENGTH} bytes")

    def _recv(self) -> Generator[None, None, bytes]:
        """Some bytes; L{ConnectionGone} at the end (or on Ctrl-C)."""
        while not self._gone:
            try:
                self.reading = True
                if self.pendingInterrupt:
                    raise KeyboardInterrupt
                data = self.sock.recv(65536)
            except BlockingIOError:
                yield None
                continue
            except KeyboardInterrupt:
                self.interrupted.append(True)
                self.abandon()
                break
            except OSError:
                break
            finally:
                self.reading = False
            if data:
                return data
            break
        self.disconnect()
        raise ConnectionGone()

    def interrupt(self, signum: int = signal.SIGINT, frame: object = None) -> None:
        """
        A signal handler for Ctrl-C and SIGTERM: interrupt the read under
        way, or the next one (never the printing of a reply).
        """
        if self.reading:
            raise KeyboardInterrupt
        self.pendingInterrupt = True


def runToEnd(coroutine: Coroutine[Any, Any, int]) -> int:
    """Run a coroutine over a blocking L{BlockingClient}: it never suspends."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return int(done.value)
    coroutine.close()
    raise RuntimeError("a blocking call suspended")


class Clock:
    """The wall clock, as an C{IReactorTime}'s C{seconds} gives it."""

    seconds = staticmethod(time.time)


async def callDaemon(
    client: BlockingClient,
    options: CommandLine,
    out: TextIO,
    err: TextIO,
    clock: Any = Clock,
) -> int:
    """
    Authenticate first when there is a token (as
    L{pycm.client.protocol.connect} does: a refused token is kept in
    C{client.authError}; one found in a file goes only to its owner's
    daemon, L{pycm.client.tokensafety}), then L{runCommand}.
    """
    token = options.token
    if token:
        from pycm.client.tokensafety import socketEnds, whyWithheld

        withheld = whyWithheld(options, *socketEnds(client.sock))
        if withheld:
            writeLines(err, [f"pycm: {withheld}"])
            token = None
    if token:
        try:
            await client.request(shlex.join(["auth", token]))
        except PycmError as e:
            client.authError = e
        except (ConnectionGone, ProtocolError) as e:
            return reportUnreachable(err, options, CannotConnect(options.host, e),
                                     interrupted=bool(client.interrupted))
    return await runCommand(clock, client, options, out, err,
                            interrupted=client.interrupted)


def connectSocket(target: SocketAddress) -> socket.socket:
    """
    A blocking socket connected to C{target}.

    @raise OSError: when it cannot connect.
    """
    sock = socket.socket(target.family, socket.SOCK_STREAM)
    try:
        sock.settimeout(target.timeout)
        sock.connect(target.address)
        sock.settimeout(None)
    except BaseException:
        sock.close()
        raise
    return sock


def main(options: CommandLine, out: TextIO, err: TextIO) -> int | None:
    """
    Send C{options.command} over a blocking socket and print the reply;
    the exit status, or None when the endpoint is not a plain C{tcp:} or
    C{unix:} one (the caller then uses the reactor).  Ctrl-C and SIGTERM
    end the call as they do in the reactor.
    """
    target = socketAddress(options.host)
    if target is None:
        return None
    try:
        if target.path is not None:
            checkSocketPath(options.host, target.path)
    except UsageError as e:
        return reportUsageError(err, options, e)
    try:
        sock = connectSocket(target)
    except KeyboardInterrupt:
        return interruptedBeforeSending(shlex.join(options.command), err)
    except OSError as e:
        return reportUnreachable(err, options, CannotConnect(options.host, connectError(e)))
    client = BlockingClient(sock)
    previous = {sig: signal.signal(sig, client.interrupt)
                for sig in (signal.SIGINT, signal.SIGTERM)
                if signal.getsignal(sig) is not signal.SIG_IGN}
    try:
        return runToEnd(callDaemon(client, options, out, err))
    finally:
        client.disconnect()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
