"""
Requests piped on standard input (C{printf 'ping\nlist\n' | pycm}), in
the reactor: each line a command as the shell takes it (Docker's habits
included: L{pycm.client.plan}), its requests pipelined, each reply
printed as it comes.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IHalfCloseableProtocol, IReactorTime
from twisted.protocols.basic import LineOnlyReceiver
from twisted.python.failure import Failure
from zope.interface import implementer

from pycm.client import format as fmt
from pycm.client.applying import typedProgressIdOnly
from pycm.client.arguments import CommandLine
from pycm.client.exits import (
    EXIT_ERR,
    EXIT_OK,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    errorStatus,
    explainError,
    writeLines,
)
from pycm.client.followed import StampedFollows
from pycm.client.history import NOT_A_NAME, isPrivateAnswer
from pycm.client.plan import Plan, PlanError, asksForName, isFollow, planCommand
from pycm.client.protocol import ClientProtocol, Disconnected, isSilentLine
from pycm.errors import PycmError
from pycm.printable import printable


@implementer(IHalfCloseableProtocol)
class PipedRequests(LineOnlyReceiver):
    """
    Each line read is a request; each reply, and each event, is written to
    this protocol's transport (standard output) as it comes.  After the
    input ends and the last reply is written, C{done} fires with the exit
    status: the worst of the lines' (0 for C{OK}, 1 for C{ERR}, 2 for a
    request refused as malformed or a line that is not UTF-8, 3 when the
    daemon is lost), as for several names on the command line.  Requests
    are pipelined, at most L{WINDOW} in flight: beyond that, reading
    pauses (the daemon answers in order, so output order is request order).
    A followed log (C{logs -f NAME}) is printed to its end after the input
    ends, as C{docker logs -f} prints it: until the container stops, is
    removed, or an C{unfollow NAME} line ends it.
    """

    delimiter = b"\n"
    # Requests are limited by the daemon (64 KiB by default, configurable);
    # let it judge, but do not buffer an endless line here either.
    MAX_LENGTH = 16 * 1024 * 1024
    WINDOW = 64

    def __init__(self, client: ClientProtocol, options: CommandLine,
                 clock: IReactorTime, err: TextIO) -> None:
        self.client = client
        self.options = options
        self.clock = clock
        self.err = err
        self.done: Deferred[int] = Deferred()
        self.inFlight = 0
        #: The worst exit status of the lines so far (L{EXIT_UNREACHABLE}
        #: is set apart: C{lost}).
        self.status = EXIT_OK
        self.lost = False
        self.eof = False
        self.paused = False
        self.saidBye = False
        #: An C{exit} or C{quit} was sent: no line after it is.
        self.leaving = False
        self._closing = False
        #: The number of the line being read (from 1), to say which failed.
        self.lineNumber = 0
        #: The containers whose logs these lines follow, until each ends.
        self.follows: set[str] = set()
        self.stamped = StampedFollows()
        #: A bare C{run} or C{stop} whose name is the next line.
        self.asking: list[str] | None = None

    def connectionMade(self) -> None:
        self.client.addEventListener(self._event)
        self.client.whenDisconnected().addCallback(self._daemonLost)

    def _writeLines(self, lines: Sequence[str]) -> None:
        if self.transport is not None and not self._closing:
            self.transport.write(
                "".join(line + "\n" for line in lines).encode("utf-8")
            )

    def _event(self, event: Any) -> None:
        if self.options.json:
            # The daemon's JSON, unchanged.
            self._writeLines(["EVENT " + self.client.payload])
        else:
            self._writeLines([self.stamped.line(event) or fmt.formatEvent(event)])
        if isinstance(event, dict) and event.get("type") == "log_end":
            self.follows.discard(str(event.get("name")))
            self._maybeFinish()

    def lineReceived(self, raw: bytes) -> None:
        self.lineNumber += 1
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            writeLines(self.err, ["Error: a request line is not valid UTF-8"])
            self._worsen(EXIT_USAGE)
            return
        if self.asking is not None:
            # The line after a bare `run` or `stop` is its name, as the
            # shell asks for it ("Enter container name:").
            asked, self.asking = self.asking, None
            if not line.strip():
                self._nameRequired(asked)
                return
            if isPrivateAnswer(line.strip(), self.options.knownTokens):
                writeLines(self.err, [f"line {self.lineNumber} ({printable(asked[0])}): "
                                      f"Error: {NOT_A_NAME}"])
                self._worsen(EXIT_USAGE)
                return
            line = shlex.join([*asked, line.strip()])
        elif isSilentLine(line):
            return
        if self.lost or self.saidBye or self.leaving:
            return
        if fmt.commandName(line) in ("exit", "quit"):
            # The daemon closes the connection after this one: the lines
            # after it are neither read nor sent.
            self.leaving = True
        words = self._words(line)
        if asksForName(words):
            self.asking = words
            return
        try:
            plan = planCommand(words) if words else None
        except PlanError as e:
            command = printable(fmt.requestWords(line)[0])
            writeLines(self.err, [f"line {self.lineNumber} ({command}): Error: {e}"])
            self._worsen(EXIT_USAGE)
            return
        if plan is None:
            self._sent(self.client.request(line), fmt.commandName(line), line, None)
            return
        if plan == Plan(plan.command, (tuple(words),)):
            # As written: the line itself goes, shown as its plan shows it.
            self._sent(self.client.request(line), plan.command, line, (plan, tuple(words)))
            return
        for request in plan.requests:
            if plan.command == "apply":
                # No progress is shown here: no id of the client's own, which a
                # daemon older than --progress-id would refuse.
                request = typedProgressIdOnly(request, words)
            typed = shlex.join(request)
            self._sent(self.client.request(typed), plan.command, typed, (plan, request))

    def _words(self, line: str) -> list[str]:
        """
        The words of C{line}, to plan as the shell does (C{ps -q}, C{-e
        KEY}, several names, C{apply FILE}...), or none: a line the client
        cannot split, or any line with C{--json}, is sent as it is (the
        daemon's lines are printed as they come: one reply a line).
        """
        if self.options.json:
            return []
        try:
            return shlex.split(line)
        except ValueError:
            return []  # the daemon says what is wrong with it

    def _sent(self, d: Deferred[Any], command: str, line: str,
              planned: tuple[Plan, Sequence[str]] | None) -> None:  # fmt: skip
        self.inFlight += 1
        d.addCallbacks(self._ok, self._err, callbackArgs=(command, line, planned),
                       errbackArgs=(self.lineNumber, line))
        d.addBoth(self._settled)
        if self.inFlight >= self.WINDOW and not self.paused:
            self.paused = True
            self.transport.pauseProducing()  # type: ignore[union-attr]

    def lineLengthExceeded(self, line: bytes) -> None:
        writeLines(self.err, ["Error: a request line is too long"])
        self._worsen(EXIT_ERR)
        self.eof = True
        self._maybeFinish()

    def _ok(self, value: Any, command: str, line: str,
            planned: tuple[Plan, Sequence[str]] | None) -> None:  # fmt: skip
        if command in ("exit", "quit"):
            # The daemon closes the connection after this reply: expected.
            self.saidBye = True
        words = planned[1] if planned is not None else fmt.requestWords(line)
        if command == "logs" and len(words) > 1 and isFollow(words):
            # Its log_end comes after this reply, never before.
            self.follows.add(words[-1])
        if self.options.json:
            self._writeLines(["OK " + self.client.payload])
            return
        if planned is not None:
            self.stamped.replied(*planned)
        lines = None if planned is None else planned[0].lines(value, planned[1], shared=True)
        if lines is None:
            lines = fmt.formatReply(command, value, self.clock.seconds(), fmt.requestWords(line))
        self._writeLines(lines)

    def _err(self, failure: Failure, number: int, line: str) -> None:
        error = failure.value
        if isinstance(error, Disconnected):
            return
        self._worsen(errorStatus(error) if isinstance(error, PycmError) else EXIT_ERR)
        if self.options.json and isinstance(error, PycmError):
            self._writeLines([f"ERR {error.code} {error.message}"])
        else:
            # Many lines are in flight at once: say which one failed, by
            # its number and command (its values may be secrets: not them).
            words = fmt.requestWords(line)
            command = printable(words[0]) if words else ""
            writeLines(self.err, [f"line {number} ({command}): "
                                  + explainError(error, self.client, self.options, words)])

    def _worsen(self, status: int) -> None:
        self.status = max(self.status, status)

    def _settled(self, _: object) -> None:
        self.inFlight -= 1
        if self.paused and self.inFlight < self.WINDOW // 2 and not self.lost:
            self.paused = False
            self.transport.resumeProducing()  # type: ignore[union-attr]
        self._maybeFinish()

    def _daemonLost(self, reason: BaseException) -> None:
        # No followed log goes on without the connection.
        following, self.follows = bool(self.follows), set()
        if self.eof and self.inFlight == 0 and not following:
            return
        if self.saidBye:
            self.eof = True
            self._maybeFinish()
            return
        self.lost = True
        writeLines(self.err, [f"Error: lost the connection to the pycm daemon "
                              f"at {self.options.host}"])
        self.eof = True
        self._maybeFinish()

    def _nameRequired(self, words: Sequence[str]) -> None:
        """A bare C{run} or C{stop} got no name: refused here, as the shell refuses it."""
        writeLines(self.err, [f"line {self.lineNumber} ({printable(words[0])}): "
                              "Container name required"])
        self._worsen(EXIT_USAGE)

    def readConnectionLost(self) -> None:
        # A last line without its newline is still a request.
        rest, self._buffer = self._buffer, b""
        if rest:
            self.lineReceived(rest)
        if self.asking is not None:
            self._nameRequired(self.asking)
            self.asking = None
        self.eof = True
        self._maybeFinish()

    def writeConnectionLost(self) -> None:
        self._finish()

    def _maybeFinish(self) -> None:
        if self.eof and self.inFlight == 0 and not self.follows and not self._closing:
            self._closing = True
            self.client.removeEventListener(self._event)
            self.client.disconnect()
            if self.transport is not None:
                self.transport.loseConnection()
            else:
                self._finish()

    def connectionLost(self, reason: Failure | None = None) -> None:
        self._finish()

    def _finish(self) -> None:
        if self.done.called:
            return
        self.done.callback(EXIT_UNREACHABLE if self.lost else self.status)


def runPiped(
    reactor: IReactorTime,
    client: ClientProtocol,
    options: CommandLine,
    attachStdio: Callable[[PipedRequests], object],
    err: TextIO,
) -> Deferred[int]:
    """Serve requests read through C{attachStdio}; fires with the exit status."""
    piped = PipedRequests(client, options, reactor, err)
    attachStdio(piped)
    return piped.done
