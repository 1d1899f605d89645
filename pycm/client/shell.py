"""
The interactive shell: a conch L{HistoricRecvLine} (history and line
editing) inside an L{insults.ServerProtocol}, on L{StandardIO}.

L{ShellProtocol} is the whole console logic and is tested on a
L{StringTransport}; L{pycm.client.terminal.runShell} alone touches the real
terminal.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Sequence
from typing import Any

from twisted.conch.insults import insults
from twisted.conch.recvline import HistoricRecvLine
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.python.failure import Failure

from pycm.client import format as fmt
from pycm.client.applying import sendApply
from pycm.client.commandtable import BY_WORD as KNOWN_BY_WORD
from pycm.client.followed import StampedFollows
from pycm.client.history import NOT_A_COMMAND, NOT_A_NAME, HistoryFile, isPrivateAnswer, isTokenLine
from pycm.client.inflight import Reconnection, abandonedLines
from pycm.client.inflight import progressMessage as progressMessage
from pycm.client.masking import MaskingLineEditor, shown
from pycm.client.plan import Plan, PlanError, asksForName, planCommand
from pycm.client.protocol import ClientProtocol, canReset, isSilentLine
from pycm.client.tabcompletion import NAME_COMMANDS as NAME_COMMANDS
from pycm.client.tabcompletion import TabCompletion
from pycm.errors import Unauthorized
from pycm.grammar import CommandSyntax, commandsByWord

#: Command words Tab completes before the daemon's C{help} has said which
#: (the client's copy of its table, L{pycm.client.commandtable}).
COMMAND_WORDS = tuple(sorted(KNOWN_BY_WORD))


SHELL_HELP = [
    "",
    "In this shell: exit, quit or Ctrl-D leave; Up/Down recall earlier lines;",
    "Ctrl-C clears the line, or gives up the request awaited (and the lines",
    "typed meanwhile); events are shown as they come.",
]

# Control keys, as insults delivers them (raw bytes).
CTRL_A, CTRL_C, CTRL_D, CTRL_E = b"\x01", b"\x03", b"\x04", b"\x05"
CTRL_H, CTRL_L, CTRL_U = b"\x08", b"\x0c", b"\x15"




class ShellProtocol(MaskingLineEditor, TabCompletion, HistoricRecvLine):
    """
    The pycm shell.

    One request is in flight at a time; lines entered meanwhile are queued.
    Ctrl-C gives it up: the connection is reset, the queued lines dropped,
    and a new connection made (L{Reconnection}) before the prompt is back.
    Output (replies, events, progress) is printed above the line being
    typed: the input line is erased, the text written, then the prompt and
    the typed text are drawn again with the cursor where it was.

    @ivar done: fires with the exit status once the terminal is closed.
    @ivar history: where typed lines are kept across sessions, or None.
    @ivar commands: each command word to its row: the daemon's C{help}, or
        the client's copy of its table.
    @ivar reconnection: how Ctrl-C connects anew after giving a request
        up, or None to only clear the line.
    """

    ps = (b"pycm> ", b"Enter container name: ")
    PROGRESS_DELAY = 1.0

    def __init__(
        self,
        client: ClientProtocol,
        clock: IReactorTime,
        greeting: str,
        done: Deferred[int] | None = None,
        notices: Sequence[str] = (),
        columns: Callable[[], int] | None = None,
        history: HistoryFile | None = None,
        commands: Sequence[CommandSyntax] | None = None,
        reconnection: Reconnection | None = None,
        tokens: Sequence[str] = (),
    ) -> None:
        self.client = client
        #: The tokens this client knows: never sent as a name, nor alone.
        self.tokens = tuple(tokens)
        self.reconnection = reconnection
        #: The new connection being made after a Ctrl-C, if one is.
        self._reconnecting: Deferred[Any] | None = None
        #: The line sent whose reply is awaited (None once given up).
        self._awaited: list[str] | None = None
        self.commands = KNOWN_BY_WORD if commands is None else commandsByWord(commands)
        self.commandWords = sorted(self.commands)
        self.history = history
        self._historyProblemShown = False
        #: Followed logs shown with their time (C{logs -t -f}).
        self.stamped = StampedFollows()
        self.clock = clock
        #: The terminal's width now (it can change while the shell runs).
        self.columns = columns if columns is not None else (lambda: 80)
        self.greeting = greeting
        self.notices = list(notices)
        self.done: Deferred[int] = done if done is not None else Deferred()
        self.busy = False
        self.asking: list[str] | None = None
        self.queued: list[str] = []
        self.exitCode = 0
        self.leaving = False
        self._progress: IDelayedCall | None = None
        self._tabbedLine = None

    # -- setting up -----------------------------------------------------------

    def connectionMade(self) -> None:
        saved = self.history.load() if self.history is not None else []
        self._noteHistoryProblem(self.notices.append)
        HistoricRecvLine.connectionMade(self)
        self.historyLines = [line.encode("utf-8") for line in saved]
        self.historyPosition = len(self.historyLines)
        self.keyHandlers.update({
            CTRL_A: self.handle_HOME,
            CTRL_E: self.handle_END,
            CTRL_C: self.handle_INTERRUPT,
            CTRL_D: self.handle_EOF,
            CTRL_H: self.handle_BACKSPACE,
            CTRL_L: self.handle_CLEAR,
            CTRL_U: self.handle_KILL_LINE,
        })
        self._watch(self.client)

    def _watch(self, client: ClientProtocol) -> None:
        """Print C{client}'s events; leave when it is lost, unless given up."""
        client.addEventListener(self.eventReceived)
        client.whenDisconnected().addCallback(self._daemonLost, client)

    def initializeScreen(self) -> None:
        # Unlike RecvLine, do not reset (clear) the user's terminal.
        for line in [self.greeting, *self.notices]:
            self.terminal.write(line.encode("utf-8") + b"\n")
        self.terminal.write(self.ps[self.pn])
        self.setInsertMode()

    # -- drawing --------------------------------------------------------------

    def _inputPrefix(self) -> bytes:
        return b"" if self.busy else self.ps[self.pn]

    def drawInputLine(self) -> None:
        self.terminal.write(self._inputPrefix() + shown(self.lineBuffer))
        back = len(self.lineBuffer) - self.lineBufferIndex
        if back:
            self.terminal.cursorBackward(back)

    def _rowsAboveCursor(self) -> int:
        """How many terminal rows of the input line are above the cursor."""
        width = max(self.columns(), 1)
        before = len(self._inputPrefix()) + self.lineBufferIndex
        if self.lineBufferIndex == len(self.lineBuffer) and before:
            # After writing a full row the cursor waits at its last column.
            return (before - 1) // width
        return before // width

    def printAbove(self, lines: Sequence[str]) -> None:
        """
        Print C{lines} and redraw the input line (prompt, typed text) below,
        erasing it first, even when it wraps over several rows.
        """
        rows = self._rowsAboveCursor()
        if rows:
            self.terminal.cursorUp(rows)
        self.terminal.write(b"\r")
        self.terminal.eraseToDisplayEnd()
        for line in lines:
            self.terminal.write(line.encode("utf-8", "replace") + b"\n")
        self.drawInputLine()

    # -- keys -----------------------------------------------------------------

    def handle_INTERRUPT(self) -> None:
        """
        Ctrl-C: drop the typed text (and a pending name question); with a
        request in flight, give it up (L{_abandon}).
        """
        if self._awaited is not None and self.reconnection is not None \
                and self._reconnecting is None and not self.leaving:
            self._abandon(self._awaited)
            return
        self.terminal.write(b"^C\n")
        self.lineBuffer = []
        self.lineBufferIndex = 0
        self.historyPosition = len(self.historyLines)
        if self.asking is not None:
            self.asking = None
            self.pn = 0
        self.drawInputLine()

    def _abandon(self, awaited: list[str]) -> None:
        """
        Ctrl-C with a request in flight: give it up (the connection is
        reset where the transport allows, and the daemon abandons a
        C{wait} or an C{apply}), drop the lines typed while waiting (as a
        terminal drops its pending input on Ctrl-C: history keeps them),
        and connect anew before the prompt is back.
        """
        assert self.reconnection is not None
        self._awaited = None
        if self._progress is not None and self._progress.active():
            self._progress.cancel()
        dropped, self.queued = len(self.queued), []
        self.lineBuffer, self.lineBufferIndex = [], 0
        self.historyPosition = len(self.historyLines)
        self.terminal.write(b"^C\n")
        given = self.client
        self.printAbove(abandonedLines(awaited[0], dropped, canReset(given.transport)))
        given.removeEventListener(self.eventReceived)
        self._reconnecting = self.reconnection.reconnect(self.eventReceived)
        given.abandon()
        given.disconnect()
        self._progress = self.clock.callLater(
            self.PROGRESS_DELAY, self.printAbove,
            ["Reconnecting to the pycm daemon\N{HORIZONTAL ELLIPSIS} (Ctrl-D leaves)"])
        self._reconnecting.addCallbacks(self._reconnected, self._notReconnected)

    def _reconnected(self, connected: tuple[ClientProtocol, list[str]]) -> None:
        """The new connection is made: the prompt is back."""
        self._reconnecting = None
        client, notices = connected
        if self.leaving:
            client.disconnect()
            return
        self.client = client
        self.client.whenDisconnected().addCallback(self._daemonLost, self.client)
        self._replied(notices)

    def _notReconnected(self, failure: Failure) -> None:
        """No new connection: say why and leave, as when the daemon is lost."""
        self._reconnecting = None
        if self.leaving:
            return
        self._replied([f"Could not reconnect: {failure.getErrorMessage()}"])
        self.leave(3)

    def handle_EOF(self) -> None:
        """
        Ctrl-D: leave on an empty line, else delete the next character; at
        "Enter container name:", cancel the question, not the shell.
        """
        if self.lineBuffer:
            self.handle_DELETE()
            return
        self.terminal.write(b"\n")
        if self.asking is not None:
            self.asking = None
            self.pn = 0
            self.drawInputLine()
            return
        self.leave()

    def handle_CLEAR(self) -> None:
        """Ctrl-L: clear the screen, keep the typed text."""
        self.terminal.eraseDisplay()
        self.terminal.cursorHome()
        self.drawInputLine()

    def handle_KILL_LINE(self) -> None:
        """Ctrl-U: delete from the start of the line to the cursor."""
        del self.lineBuffer[: self.lineBufferIndex]
        self.lineBufferIndex = 0
        self.terminal.write(b"\r")
        self.terminal.eraseToLineEnd()
        self.drawInputLine()

    # -- lines ----------------------------------------------------------------

    def _noteHistoryProblem(self, show: Callable[[str], object]) -> None:
        """Say once that the history file cannot be used."""
        if self.history is None or self.history.problem is None:
            return
        if not self._historyProblemShown:
            self._historyProblemShown = True
            show(f"Warning: {self.history.problem} (history is kept for this session only)")

    def _remember(self, text: str) -> None:
        """Keep a line in the history file (conch keeps the session's)."""
        if self.history is not None:
            self.history.append(text)
            self._noteHistoryProblem(lambda notice: self.printAbove([notice]))

    def lineReceived(self, line: bytes) -> None:
        text = line.decode("utf-8", "replace")
        if self.asking is not None:
            words, self.asking = self.asking, None
            self.pn = 0
            name = text.strip()
            private = isPrivateAnswer(name, self.tokens)
            if self.historyLines and self.historyLines[-1] == line and not private:
                # The answer alone is no command: recall the whole request.
                self.historyLines.pop()
                self.historyPosition = len(self.historyLines)
            if not name:
                self.printAbove(["Container name required"])
                return
            if private:
                # Neither sent nor written down: Up recalls it for the
                # prompt, as any auth line typed there.
                self.printAbove([f"Error: {NOT_A_NAME} (to authenticate, "
                                "type it at the pycm> prompt: Up recalls it)"])
                return
            request = shlex.join([*words, name])
            self.historyLines.append(request.encode("utf-8"))
            self.historyPosition = len(self.historyLines)
            self._remember(request)
            self.send(request, [*words, name])
            return
        self._remember(text)
        if self.busy:
            self.queued.append(text)
            return
        self.handleLine(text)

    def handleLine(self, text: str) -> None:
        """Act on one line typed at the prompt."""
        if isSilentLine(text):
            self.drawInputLine()
            return
        if isTokenLine(text, self.commands, self.tokens):
            # Not recalled either (conch keeps every line typed).
            typed = text.encode("utf-8")
            self.historyLines = [line for line in self.historyLines if line != typed]
            self.historyPosition = len(self.historyLines)
            self.printAbove([f"Error: {NOT_A_COMMAND}"])
            return
        try:
            words = shlex.split(text)
        except ValueError as e:
            self.printAbove([f"Error: bad_request: {e}"])
            return
        command = words[0].lower()
        if command in ("exit", "quit"):
            self.leave()
            return
        if asksForName(words, self.commands):
            self.asking = words
            self.pn = 1
            self.drawInputLine()
            return
        self.send(text, words)

    def send(self, line: str, words: Sequence[str]) -> None:
        """
        Send one request; print its reply when it comes.  Docker's habits
        (L{pycm.client.plan}) hold as on the command line: C{ps -q},
        C{--format}, several names, C{logs -t}, C{COMMAND --help}.
        """
        command = words[0].lower() if words else ""
        try:
            plan = planCommand(words) if words else None
        except PlanError as e:
            self.printAbove([f"Error: {e}"])
            return
        self.busy = True
        awaited = self._awaited = [line]
        self._progress = self.clock.callLater(
            self.PROGRESS_DELAY, self._showProgress, list(words)
        )
        if plan is None:
            d = self._request(line, words)
            d.addCallbacks(self._formatReply, self._formatError,
                           callbackArgs=(command, words))
            d.addCallback(self._repliedTo, awaited)
            return
        if plan == Plan(command, (tuple(words),)):
            d = self._request(line, words)
            d.addCallbacks(self._formatPlanned, self._formatError,
                           callbackArgs=(plan, tuple(words)))
            d.addCallback(self._repliedTo, awaited)
            return
        replies = [
            sendApply(self._request, request, words).addCallbacks(
                self._formatPlanned, self._formatError, callbackArgs=(plan, request)
            )
            for request in plan.requests
        ]
        def flatten(groups: list[list[str]]) -> None:
            self._repliedTo([line for group in groups for line in group], awaited)

        gatherResults(replies).addCallback(flatten)

    def _request(self, line: str, words: Sequence[str]) -> Deferred[Any]:
        """Send C{line}; what its reply turns on is noted for a reconnection."""
        d = self.client.request(line)
        if self.reconnection is not None:
            d.addCallback(self.reconnection.subscriptions.noted, words)
        return d

    def _formatPlanned(self, value: Any, plan: Plan, request: Sequence[str]) -> list[str]:
        """A reply to one request of a L{Plan}, as the plan says to show it."""
        self.stamped.replied(plan, request)
        lines = plan.lines(value, request, shared=True)
        return self._formatReply(value, plan.command, request) if lines is None else lines

    def _formatReply(self, value: Any, command: str,
                     words: Sequence[str]) -> list[str]:
        lines = fmt.formatReply(command, value, self.clock.seconds(), words)
        if command == "help" and len(words) == 1:
            lines = [*lines, *SHELL_HELP]
        return lines

    def _formatError(self, failure: Failure) -> list[str]:
        text = fmt.formatError(failure.value)
        if isinstance(failure.value, Unauthorized):
            text += " (type `auth TOKEN`, or start pycm with --token or PYCM_TOKEN)"
        return [text]

    def _repliedTo(self, lines: list[str], awaited: list[str]) -> None:
        """The reply to C{awaited}, unless it was given up."""
        if awaited is self._awaited:
            self._awaited = None
            self._replied(lines)

    def _replied(self, lines: list[str]) -> None:
        if self._progress is not None and self._progress.active():
            self._progress.cancel()
        self._progress = None
        if self.leaving:
            return
        self.busy = False
        self.printAbove(lines)
        while self.queued and not self.busy and self.asking is None \
                and not self.leaving:
            self.handleLine(self.queued.pop(0))

    def _showProgress(self, words: list[str]) -> None:
        self._progress = None
        if self.busy and not self.leaving:
            self.printAbove([progressMessage(words)])

    def eventReceived(self, event: Any) -> None:
        """Print an EVENT above the line being typed."""
        if self.reconnection is not None:
            self.reconnection.subscriptions.eventSeen(event)
        if not self.leaving:
            self.printAbove([self.stamped.line(event) or fmt.formatEvent(event)])

    # -- leaving --------------------------------------------------------------

    def leave(self, code: int = 0) -> None:
        """Close the connection to the daemon and the terminal."""
        if self.leaving:
            return
        self.leaving = True
        self.exitCode = code
        self.client.removeEventListener(self.eventReceived)
        self.client.disconnect()
        if self._reconnecting is not None:
            self._reconnecting.cancel()
        # Leave the terminal's insert mode (set by RecvLine) as we found it.
        self.terminal.resetModes([insults.modes.IRM])
        # Not terminal.loseConnection(): that resets (clears) the screen.
        transport = getattr(self.terminal, "transport", None)
        if transport is not None:
            transport.loseConnection()
        else:  # pragma: no cover
            self._finish()

    def _daemonLost(self, reason: BaseException, client: ClientProtocol) -> None:
        if self.leaving or client is not self.client or self._reconnecting is not None:
            return
        self.printAbove(["Connection to the pycm daemon lost."])
        self.terminal.write(b"\r")
        self.terminal.eraseToLineEnd()
        self.leave(3)

    def connectionLost(self, reason: Failure | None = None) -> None:
        if not self.leaving:
            self.leaving = True
            self.client.disconnect()
            if self._reconnecting is not None:
                self._reconnecting.cancel()
        if self._progress is not None and self._progress.active():
            self._progress.cancel()
        self._finish()

    def _finish(self) -> None:
        if not self.done.called:
            self.done.callback(self.exitCode)
