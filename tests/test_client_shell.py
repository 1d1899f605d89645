"""
Tests for L{pycm.client.shell}: the interactive shell, driven through
conch's L{insults.ServerProtocol} on a L{StringTransport}, as a terminal
would drive it.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.conch.insults import insults
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from pycm.client.history import HistoryFile
from pycm.client.masking import shown
from pycm.client.plan import commandOptions, hasPositional
from pycm.client.shell import ShellProtocol, progressMessage
from pycm.client.testing import FakeDaemon, connectToFake, ok

GREETING = "Connected to the pycm daemon at 127.0.0.1:8080"
UP = b"\x1b[A"
DOWN = b"\x1b[B"
LEFT = b"\x1b[D"
#: A token as the daemon makes them (L{pycm.daemon.auth.newToken}).
TOKEN = b"aHYWNXq3s0d9Vb2LkJ7cRtZ1mPxE4uGf8oWiYhNeS5A"


class TerminalTransport(StringTransport):
    """A terminal whose C{loseConnection} ends the connection at once."""

    protocol: Any = None

    def loseConnection(self) -> None:
        super().loseConnection()
        if self.protocol is not None:
            protocol, self.protocol = self.protocol, None
            protocol.connectionLost(Failure(ConnectionDone()))


class ShellHarness:
    """A shell connected to a L{FakeDaemon} and to an in-memory terminal."""

    def __init__(self, daemon: FakeDaemon | None = None,
                 columns: int = 80, history: HistoryFile | None = None,
                 commands: Any = None, tokens: tuple[str, ...] = ()) -> None:
        self.client, self.daemon, self.pump = connectToFake(
            daemon if daemon is not None else FakeDaemon()
        )
        self.clock = Clock()
        self.done: Deferred[int] = Deferred()
        self.terminal = insults.ServerProtocol(
            ShellProtocol, self.client, self.clock, GREETING, self.done, [],
            lambda: columns, history, commands, None, tokens,
        )
        self.transport = TerminalTransport()
        self.transport.protocol = self.terminal
        self.terminal.makeConnection(self.transport)
        self.shell: ShellProtocol = self.terminal.terminalProtocol  # type: ignore[assignment]
        self.pump.flush()

    def type(self, keys: bytes) -> None:
        """Press C{keys}, then let the daemon answer."""
        self.terminal.dataReceived(keys)
        self.pump.flush()

    def screen(self) -> bytes:
        """Everything written to the terminal, then forget it."""
        value = self.transport.value()
        self.transport.clear()
        return value

    def typed(self) -> bytes:
        return b"".join(self.shell.lineBuffer)


class ShellTests(SynchronousTestCase):
    """The interactive shell."""

    def test_greeting(self) -> None:
        """
        The shell greets with the daemon's address, then shows the prompt,
        without resetting (clearing) the terminal.
        """
        h = ShellHarness()
        screen = h.screen()
        self.assertTrue(screen.startswith(GREETING.encode() + b"\r\n"))
        self.assertTrue(screen.endswith(b"pycm> ") or b"pycm> " in screen)
        self.assertNotIn(b"\x1bc", screen)

    def test_request(self) -> None:
        """A typed line is sent as is; the reply is printed, then the prompt."""
        h = ShellHarness()
        h.screen()
        h.type(b"ping\r")
        self.assertEqual(h.daemon.received, ["ping"])
        screen = h.screen()
        self.assertIn(b"pong\r\n", screen)
        self.assertTrue(screen.endswith(b"pycm> "))

    def test_quotingKept(self) -> None:
        """The line goes to the daemon with the user's own quoting."""
        h = ShellHarness(FakeDaemon({"run": ok({"name": "web"})}))
        h.type(b"run web busybox sh -c \"echo hi; sleep 5\"\r")
        self.assertEqual(h.daemon.received,
                         ['run web busybox sh -c "echo hi; sleep 5"'])

    def test_error(self) -> None:
        """An ERR reply is shown with its code and message."""
        h = ShellHarness(FakeDaemon({"inspect": "ERR not_found no such "
                                     "container: x"}))
        h.type(b"inspect x\r")
        self.assertIn(b"Error: not_found: no such container: x\r\n", h.screen())

    def test_badQuoting(self) -> None:
        """A line with unbalanced quotes is refused locally."""
        h = ShellHarness()
        h.type(b"run 'web\r")
        self.assertEqual(h.daemon.received, [])
        self.assertIn(b"Error: bad_request", h.screen())

    def test_nameRequiredEmpty(self) -> None:
        """
        C{run} or C{stop} without a name asks "Enter container name:"; an
        empty answer prints "Container name required" and sends nothing.
        """
        for command in (b"run", b"stop", b"RUN", b"stop --time 5"):
            h = ShellHarness()
            h.screen()
            h.type(command + b"\r")
            self.assertTrue(h.screen().endswith(b"Enter container name: "))
            h.type(b"\r")
            screen = h.screen()
            self.assertIn(b"Container name required\r\n", screen)
            self.assertTrue(screen.endswith(b"pycm> "))
            self.assertEqual(h.daemon.received, [])

    def test_nameRequiredAnswered(self) -> None:
        """The answer becomes the name, after any options typed."""
        h = ShellHarness(FakeDaemon({"stop": ok({"name": "web"})}))
        h.type(b"stop --time 5\r")
        h.type(b"web\r")
        self.assertEqual(h.daemon.received, ["stop --time 5 web"])

    def test_nameGiven(self) -> None:
        """With a name, nothing is asked."""
        h = ShellHarness(FakeDaemon({"run": ok({"name": "web"})}))
        h.type(b"run -e A=1 web\r")
        self.assertEqual(h.daemon.received, ["run -e A=1 web"])
        self.assertNotIn(b"Enter container name", h.screen())

    def test_history(self) -> None:
        """Up-arrow recalls earlier lines; Enter sends the recalled line."""
        h = ShellHarness()
        h.type(b"ping\r")
        h.type(b"version\r")
        h.type(UP)
        self.assertEqual(h.typed(), b"version")
        h.type(UP)
        self.assertEqual(h.typed(), b"ping")
        h.type(DOWN)
        self.assertEqual(h.typed(), b"version")
        h.type(UP + b"\r")
        self.assertEqual(h.daemon.received, ["ping", "version", "ping"])

    def test_historyFile(self) -> None:
        """
        With a history file, Up recalls the lines of earlier sessions, and
        the lines typed now are added to it (an C{auth} line is not).
        """
        path = os.path.abspath(self.mktemp())
        with open(path, "w") as f:
            f.write("ping\nlist\n")
        h = ShellHarness(FakeDaemon({"auth": ok("authenticated")}), history=HistoryFile(path))
        h.type(UP)
        self.assertEqual(h.typed(), b"list")
        h.type(UP + b"\r")
        h.type(b"auth s3cret\r")
        h.type(b"version\r")
        self.assertEqual(h.daemon.received, ["ping", "auth s3cret", "version"])
        with open(path) as f:
            self.assertEqual(f.read(), "ping\nlist\nping\nversion\n")

    def test_historyOfAnAnsweredName(self) -> None:
        """
        A name typed at "Enter container name:" is remembered as the whole
        request it made, in the session and in the file, not on its own.
        """
        path = os.path.abspath(self.mktemp())
        h = ShellHarness(FakeDaemon({"stop": ok({"name": "web"})}), history=HistoryFile(path))
        h.type(b"stop\r")
        h.type(b"web\r")
        self.assertEqual(h.daemon.received, ["stop web"])
        h.type(UP)
        self.assertEqual(h.typed(), b"stop web")
        with open(path) as f:
            self.assertEqual(f.read(), "stop\nstop web\n")

    def test_authLineAsName(self) -> None:
        """
        An C{auth} line given at "Enter container name:" (hidden as it is
        typed) is neither sent as a name, nor written down, nor shown
        again: the shell says what it looks like; Up recalls it for the
        prompt, where Enter sends it as C{auth}.  A name that starts with
        C{auth} is a name.
        """
        for answer in [b"auth:" + TOKEN, b'"auth ' + TOKEN + b'"', b"auth " + TOKEN]:
            path = os.path.abspath(self.mktemp())
            h = ShellHarness(FakeDaemon({"stop": ok({"name": "web"}),
                                         "auth": ok("authenticated")}),
                             history=HistoryFile(path))
            h.type(b"stop\r")
            for key in answer:
                h.type(bytes([key]))
            h.screen()
            h.type(b"\r")
            screen = h.screen()
            self.assertIn(b"Error: that looks like an auth line, not a container name: "
                          b"not sent", screen)
            self.assertNotIn(TOKEN, screen)
            self.assertTrue(screen.endswith(b"pycm> "), screen)
            self.assertEqual(h.daemon.received, [])
            with open(path, "rb") as f:
                self.assertEqual(f.read(), b"stop\n")
            h.type(UP)
            self.assertEqual(h.typed(), answer)
            self.assertNotIn(TOKEN, h.screen())
        h.type(b"\r")
        self.assertEqual(h.daemon.received, ["auth " + TOKEN.decode()])
        h.type(b"stop\rauthdb\r")
        self.assertEqual(h.daemon.received[-1], "stop authdb")

    def test_pastedToken(self) -> None:
        """
        A token pasted on a line of its own at the prompt is not sent (the
        daemon's error would show it), not written down, and not shown
        again; a short unknown word (a typo) is sent as ever.
        """
        path = os.path.abspath(self.mktemp())
        h = ShellHarness(FakeDaemon({"lisst": "ERR bad_request unknown command 'lisst'"}),
                         history=HistoryFile(path))
        h.type(TOKEN)
        h.screen()
        h.type(b"\r")
        screen = h.screen()
        self.assertIn(b"Error: that looks like a token, not a command: not sent", screen)
        self.assertNotIn(TOKEN, screen)
        self.assertEqual(h.daemon.received, [])
        h.type(b"lisst\r")
        self.assertEqual(h.daemon.received, ["lisst"])
        with open(path, "rb") as f:
            self.assertEqual(f.read(), b"lisst\n")
        h.type(UP + UP)
        self.assertEqual(h.typed(), b"lisst")  # the token is not recalled

    def test_knownTokenAsName(self) -> None:
        """
        The client's own token pasted at "Enter container name:" (its
        characters are a name's) is not sent, nor written down; nor is it,
        pasted alone at the prompt, however short.
        """
        token = TOKEN.decode()
        path = os.path.abspath(self.mktemp())
        h = ShellHarness(FakeDaemon({"stop": ok({"name": "web"})}),
                         history=HistoryFile(path, (token,)), tokens=(token,))
        h.type(b"stop\r" + TOKEN + b"\r")
        self.assertIn(b"not a container name: not sent", h.screen())
        self.assertEqual(h.daemon.received, [])
        h = ShellHarness(FakeDaemon(), history=HistoryFile(path, ("short",)),
                         tokens=("short",))
        h.type(b"short\r")
        self.assertIn(b"that looks like a token, not a command: not sent", h.screen())
        self.assertEqual(h.daemon.received, [])
        with open(path, "rb") as f:
            self.assertEqual(f.read(), b"stop\n")

    def test_historyFileUnusable(self) -> None:
        """A history file that cannot be read is a warning, not a failure."""
        path = os.path.abspath(self.mktemp())
        os.symlink("/nonexistent", path)
        h = ShellHarness(history=HistoryFile(path))
        screen = h.screen()
        self.assertIn(b"Warning: cannot read the history file", screen)
        self.assertIn(b"(history is kept for this session only)", screen)
        h.type(b"ping\r")
        h.type(UP)
        self.assertEqual(h.typed(), b"ping")

    def test_eventWhileTyping(self) -> None:
        """
        An event arriving while the user types is printed on its own line;
        the prompt and the typed text are drawn again below it, with the
        cursor where it was, and the typed text is still sent on Enter.
        """
        h = ShellHarness()
        h.type(b"lisst" + LEFT + LEFT)
        h.screen()
        h.daemon.sendEvent({"type": "container", "id": 7, "action": "die",
                            "name": "web", "time": "T", "exit_code": 0})
        h.pump.flush()
        screen = h.screen()
        self.assertTrue(screen.startswith(b"\r\x1b[J"))
        self.assertIn(b"T  #7  web  die (exit code 0)\r\npycm> lisst\x1b[2D",
                      screen)
        self.assertEqual(h.typed(), b"lisst")
        h.type(b"\x7f\r")  # backspace deletes the second "s"
        self.assertEqual(h.daemon.received, ["list"])

    def test_eventWhileTypingWrapped(self) -> None:
        """
        When the typed line wraps over several terminal rows, the cursor
        goes up to the prompt's row before erasing, so no piece of the old
        line is left on screen.
        """
        h = ShellHarness(columns=10)
        h.type(b"inspect abcdefghij")  # "pycm> " + 18 = 24 chars: 3 rows
        h.screen()
        h.daemon.sendEvent({"type": "log", "name": "a", "line": "x"})
        h.pump.flush()
        self.assertTrue(h.screen().startswith(b"\x1b[2A\r\x1b[J"
                                              b"a | x\r\npycm> inspect"))
        h2 = ShellHarness(columns=12)
        h2.type(b"123456")  # exactly one full row: the cursor stays on it
        h2.screen()
        h2.daemon.sendEvent({"type": "log", "name": "a", "line": "x"})
        h2.pump.flush()
        self.assertTrue(h2.screen().startswith(b"\r\x1b[J"))

    def test_eventWhileAskingName(self) -> None:
        """An event while asking for a name redraws that question."""
        h = ShellHarness()
        h.type(b"run\r")
        h.screen()
        h.daemon.sendEvent({"type": "log", "name": "a", "line": "x"})
        h.pump.flush()
        self.assertTrue(h.screen().endswith(b"a | x\r\nEnter container name: "))

    def test_exitAndQuit(self) -> None:
        """
        C{exit} and C{quit} leave: nothing is sent, the connection to the
        daemon and the terminal are closed, C{done} fires with 0.
        """
        for word in (b"exit", b"quit", b"  QUIT  "):
            h = ShellHarness()
            h.type(word + b"\r")
            self.assertEqual(self.successResultOf(h.done), 0)
            self.assertEqual(h.daemon.received, [])
            self.assertTrue(h.transport.disconnecting)
            self.successResultOf(h.client.whenDisconnected())
            self.assertNotIn(b"\x1bc", h.screen())

    def test_ctrlD(self) -> None:
        """Ctrl-D on an empty line leaves; with text it deletes instead."""
        h = ShellHarness()
        h.type(b"ab" + LEFT + b"\x04")
        self.assertEqual(h.typed(), b"a")
        self.assertNoResult(h.done)
        h.type(b"\x7f\x04")
        self.assertEqual(self.successResultOf(h.done), 0)

    def test_ctrlC(self) -> None:
        """Ctrl-C drops the typed text and a pending name question."""
        h = ShellHarness()
        h.type(b"run\r")
        h.type(b"we\x03")
        self.assertEqual(h.typed(), b"")
        self.assertTrue(h.screen().endswith(b"^C\r\npycm> "))
        h.type(b"ping\r")
        self.assertEqual(h.daemon.received, ["ping"])

    def test_endOfInput(self) -> None:
        """The terminal closing ends the shell and its connection."""
        h = ShellHarness()
        h.terminal.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.successResultOf(h.done), 0)
        h.pump.flush()
        self.successResultOf(h.client.whenDisconnected())

    def test_daemonLost(self) -> None:
        """The daemon going away is reported; the shell ends with 3."""
        h = ShellHarness()
        h.daemon.disconnect()
        h.pump.flush()
        self.assertIn(b"Connection to the pycm daemon lost.", h.screen())
        self.assertEqual(self.successResultOf(h.done), 3)

    def test_eventsBeforeDaemonLost(self) -> None:
        """
        Events the daemon sent before it closed the connection (those of
        the containers it stopped on its way down), arriving with the close
        while a request waits, are all printed before the daemon is said to
        be lost.
        """
        h = ShellHarness(FakeDaemon({"stop": lambda words: Deferred()}))
        h.type(b"stop web\r")
        h.screen()
        for number, action in ((8, "die"), (9, "stop")):
            h.daemon.sendEvent({"type": "container", "id": number, "action": action,
                                "name": "web", "time": "T", "exit_code": -15})
        h.daemon.disconnect()
        h.pump.flush()
        screen = h.screen()
        die = screen.find(b"T  #8  web  die (exit code -15)\r\n")
        stop = screen.find(b"T  #9  web  stop")
        lost = screen.find(b"Connection to the pycm daemon lost.")
        self.assertTrue(0 <= die < stop < lost, screen)
        self.assertEqual(self.successResultOf(h.done), 3)

    def test_queuedWhileBusy(self) -> None:
        """
        Lines entered while a reply is awaited are sent, in order, after
        it; no prompt is shown while waiting.
        """
        held: Deferred[Any] = Deferred()
        h = ShellHarness(FakeDaemon({"stop": lambda w: held}))
        h.type(b"stop web\r")
        self.assertFalse(h.screen().endswith(b"pycm> "))
        h.type(b"ping\r")
        self.assertEqual(h.daemon.received, ["stop web"])
        held.callback(ok({"name": "web", "state": "exited", "image": "i"}))
        h.pump.flush()
        self.assertEqual(h.daemon.received, ["stop web", "ping"])
        screen = h.screen()
        self.assertLess(screen.index(b"web  exited"), screen.index(b"pong"))
        self.assertTrue(screen.endswith(b"pycm> "))

    def test_progress(self) -> None:
        """A request still unanswered after a second shows a progress note."""
        held: Deferred[Any] = Deferred()
        h = ShellHarness(FakeDaemon({"stop": lambda w: held}))
        h.type(b"stop web\r")
        h.clock.advance(0.9)
        self.assertNotIn(b"waiting", h.screen())
        h.clock.advance(0.2)
        self.assertIn("waiting for web to stop\N{HORIZONTAL ELLIPSIS}"
                      .encode(), h.screen())
        held.callback(ok("x"))
        h.pump.flush()
        self.assertEqual(h.clock.getDelayedCalls(), [])

    def test_noProgressWhenQuick(self) -> None:
        """A quick reply cancels the progress note."""
        h = ShellHarness()
        h.type(b"ping\r")
        self.assertEqual(h.clock.getDelayedCalls(), [])

    def test_help(self) -> None:
        """C{help} shows the daemon's help, then the shell's own keys."""
        h = ShellHarness(FakeDaemon({"help": ok("run NAME ...\nstop NAME")}))
        h.type(b"help\r")
        screen = h.screen()
        self.assertIn(b"run NAME ...\r\nstop NAME\r\n", screen)
        self.assertIn(b"Ctrl-D", screen)

    def test_statsOnce(self) -> None:
        """
        C{stats} in the shell is one request and one table, as C{stats
        --no-stream} (no refresh is scheduled); C{help stats} says so.
        """
        from pycm.daemon.commands import BY_WORD

        row = {"name": "web", "cpu_percent": 1.0, "memory": 1024, "memory_limit": None,
               "pids": 1, "read_bytes": 0, "write_bytes": 0}
        h = ShellHarness(FakeDaemon({"stats": ok([row]),
                                     "help": ok(BY_WORD["stats"].describe())}))
        h.screen()
        h.type(b"stats\r")
        screen = h.screen()
        self.assertEqual(screen.count(b"NAME   CPU %"), 1)
        self.assertEqual(h.clock.getDelayedCalls(), [])
        h.clock.advance(5)
        self.assertEqual(h.daemon.received, ["stats"])
        h.type(b"help stats\r")
        self.assertIn(b"In the interactive shell and in piped requests, stats prints "
                      b"the table\r\n  once, as --no-stream does", h.screen())

    def test_blankLine(self) -> None:
        """A blank line sends nothing and shows the prompt again."""
        h = ShellHarness()
        h.screen()
        h.type(b"   \r")
        self.assertEqual(h.daemon.received, [])
        self.assertTrue(h.screen().endswith(b"pycm> "))

    def test_tabCompletesCommand(self) -> None:
        """Tab completes a unique command word; a second Tab lists several."""
        h = ShellHarness()
        h.type(b"insp\t")
        self.assertEqual(h.typed(), b"inspect ")
        h2 = ShellHarness()
        h2.type(b"r")
        h2.screen()
        h2.type(b"\t\t")
        self.assertEqual(h2.typed(), b"r")
        self.assertIn(b"restart  rm  run\r\npycm> r", h2.screen())
        h2.type(b"es\tweb\t")
        self.assertEqual(h2.typed(), b"restart web")

    def test_tabCompletesNames(self) -> None:
        """
        Tab after a command that takes names completes a container name
        (asked of the daemon): a unique one with a space, the common start
        of several (listed by a second Tab); at "Enter container name:" too.
        """
        containers = [{"name": n} for n in ("db", "web", "web2", "worker")]
        h = ShellHarness(FakeDaemon({"list": ok(containers)}))
        h.type(b"stop d\t")
        self.assertEqual(h.typed(), b"stop db ")
        self.assertEqual(h.daemon.received, ["list"])
        h.type(b"w\t\t")
        self.assertEqual(h.typed(), b"stop db w")
        self.assertIn(b"web  web2  worker", h.screen())
        h.type(b"e\t")
        self.assertEqual(h.typed(), b"stop db web")
        h.type(b"\x15rm -f wo\t")
        self.assertEqual(h.typed(), b"rm -f worker ")
        h.type(b"\x15stop\r")
        h.type(b"d\t")
        self.assertEqual(h.typed(), b"db ")
        # No names where a name is a new one, or an option's value.
        h.type(b"\x03run w\t")
        self.assertEqual(h.typed(), b"run w")
        h.type(b"\x15stop -t w\t")
        self.assertEqual(h.typed(), b"stop -t w")

    def test_tabNamesLineChanged(self) -> None:
        """A name reply that comes after the line changed is not typed in."""
        held: Deferred[Any] = Deferred()
        h = ShellHarness(FakeDaemon({"list": lambda words: held}))
        h.type(b"stop w\t")
        h.type(b"x")
        held.callback(ok([{"name": "web"}]))
        h.pump.flush()
        self.assertEqual(h.typed(), b"stop wx")

    def test_tabCompletesOptions(self) -> None:
        """Tab after a dash completes the command's options."""
        h = ShellHarness()
        h.type(b"logs --f\t")
        self.assertEqual(h.typed(), b"logs --follow ")
        h.type(b"--s\t")
        self.assertEqual(h.typed(), b"logs --follow --since ")
        h.type(b"\x15stop --\t")
        self.assertEqual(h.typed(), b"stop --time ")
        self.assertEqual(h.daemon.received, [])

    def test_tabListsOnTheSecondTab(self) -> None:
        """
        As in bash, the first Tab on an ambiguous word types the common
        start of its matches and lists nothing; a second Tab lists them
        (and each Tab after it); a key in between makes Tab a first again.
        """
        h = ShellHarness()
        h.type(b"i")
        h.screen()
        h.type(b"\t")
        self.assertEqual(h.typed(), b"in")
        self.assertNotIn(b"inspect", h.screen())
        h.type(b"\t")
        self.assertEqual(h.typed(), b"in")
        self.assertIn(b"info  inspect\r\npycm> in", h.screen())
        h.type(b"\x15r")
        h.screen()
        h.type(b"\t")
        self.assertEqual(h.typed(), b"r")
        self.assertNotIn(b"rm", h.screen())
        h.type(b"\t")
        self.assertIn(b"restart  rm  run\r\npycm> r", h.screen())
        h.type(b"\t")
        self.assertIn(b"restart  rm  run", h.screen())
        h.type(b"\x08r")
        h.screen()
        h.type(b"\t")
        self.assertNotIn(b"rm", h.screen())
        h.type(b"\t")
        self.assertIn(b"restart  rm  run", h.screen())

    def test_tabCompletesClientOptions(self) -> None:
        """
        Tab offers the options the client reads itself as well as the
        daemon's, as C{pycm completion bash} does: C{ps --quiet},
        C{--format}, C{logs --timestamps}.
        """
        h = ShellHarness()
        h.type(b"ps --\t")
        h.screen()
        h.type(b"\t")
        self.assertIn(b"--all  --filter  --format  --quiet", h.screen())
        h.type(b"q\t")
        self.assertEqual(h.typed(), b"ps --quiet ")
        h.type(b"--fo\t")
        self.assertEqual(h.typed(), b"ps --quiet --format ")
        h.type(b"\x15logs --ti\t")
        self.assertEqual(h.typed(), b"logs --timestamps ")
        h.type(b"\x15logs -\t\t")
        self.assertIn(b"--follow  --since  --tail  --timestamps  -f  -n  -t", h.screen())
        self.assertEqual(h.daemon.received, [])

    def test_shellOffersWhatCompletionScriptsOffer(self) -> None:
        """
        For every command, the options Tab offers in the shell are those
        of C{pycm completion bash} (but C{--help}, which the shell's own
        C{help} command stands for).
        """
        from pycm.client.completion import commandTable
        from pycm.client.shell import KNOWN_BY_WORD

        for command in commandTable():
            if command.name not in KNOWN_BY_WORD:
                continue
            h = ShellHarness()
            listed: list[str] = []
            h.shell.printAbove = listed.extend  # type: ignore[method-assign]
            h.type(command.name.encode() + b" -\t")
            typed = h.typed().decode()
            if typed.endswith(" "):
                offered = {typed.split()[-1]}
            else:
                h.type(b"\t")
                offered = set(" ".join(listed).split())
            self.assertEqual(offered, set(command.options) - {"--help"}, command.name)

    def test_commandsFromTable(self) -> None:
        """The command words Tab knows are those of the daemon's table."""
        from pycm.client import shell
        from pycm.daemon import commands

        self.assertEqual(list(shell.COMMAND_WORDS), sorted(commands.BY_WORD))
        def values(command: str) -> set[str]:
            return {spelling for option in commandOptions(command) if option.takesValue
                    for spelling in option.spellings()}

        self.assertIn("--since", values("logs"))
        self.assertNotIn("-f", values("rm"))

    def test_commandsFromHelp(self) -> None:
        """
        Given the daemon's C{help} rows, Tab completes their words and
        options, and a value option's next word is not taken for a name.
        """
        from pycm.grammar import syntaxFromHelp

        commands = syntaxFromHelp({"commands": [
            {"name": "frob", "aliases": ["fr"], "options": [
                {"name": "speed", "short": "s", "takes_value": True, "repeat": False},
            ]},
            {"name": "ping", "aliases": [], "options": []},
        ]})
        h = ShellHarness(commands=commands)
        h.type(b"fro\t")
        self.assertEqual(h.typed(), b"frob ")
        h.type(b"--s\t")
        self.assertEqual(h.typed(), b"frob --speed ")
        h.type(b"\x15sto\t")
        self.assertEqual(h.typed(), b"sto")
        self.assertEqual(h.daemon.received, [])

    def test_dockerHabits(self) -> None:
        """
        Docker's habits hold in the shell as on the command line: several
        names (a request each, every reply and error shown), C{ps -q} and
        C{--format}, C{COMMAND --help}; a bad template is refused unsent.
        """
        def stop(words: list[str]) -> str:
            if words[-1] == "nope":
                return "ERR not_found no such container: nope"
            return ok({"name": words[-1], "state": "exited", "image": "host",
                       "exit_code": 0})

        containers = [{"name": "db", "state": "exited", "image": "host"},
                      {"name": "web", "state": "running", "image": "host"}]
        h = ShellHarness(FakeDaemon({
            "stop": stop,
            "ps": ok(containers),
            "help": ok({"name": "stop", "usage": "stop NAME", "summary": "s"}),
        }))
        h.screen()
        h.type(b"stop web nope db\r")
        self.assertEqual(h.daemon.received, ["stop web", "stop nope", "stop db"])
        screen = h.screen()
        self.assertIn(b"web  exited  exit code 0\r\n"
                      b"Error: not_found: no such container: nope\r\n"
                      b"db  exited  exit code 0\r\n", screen)
        h.type(b"ps -aq\r")
        self.assertIn(b"db\r\nweb\r\npycm> ", h.screen())
        h.type(b"ps --format '{{.Name}}={{.State}}'\r")
        self.assertIn(b"db=exited\r\nweb=running\r\n", h.screen())
        h.type(b"stop --help\r")
        self.assertEqual(h.daemon.received[-1], "help stop")
        self.assertIn(b"usage: stop NAME", h.screen())
        sent = len(h.daemon.received)
        h.type(b"ps --format '{{.Nope}}'\r")
        self.assertIn(b"Error: bad --format: no field 'Nope'", h.screen())
        self.assertEqual(len(h.daemon.received), sent)
        h.type(b"ping\r")
        self.assertIn(b"pong", h.screen())

    def test_ctrlDAtNamePrompt(self) -> None:
        """
        Ctrl-D at "Enter container name:" cancels the question, not the
        shell: the prompt comes back, nothing is sent, the shell goes on.
        """
        h = ShellHarness()
        h.type(b"stop\r")
        h.screen()
        h.type(b"\x04")
        self.assertNoResult(h.done)
        self.assertTrue(h.screen().endswith(b"\r\npycm> "))
        self.assertEqual(h.daemon.received, [])
        h.type(b"ping\r")
        self.assertEqual(h.daemon.received, ["ping"])
        h.type(b"\x04")
        self.assertEqual(self.successResultOf(h.done), 0)

    def test_unauthorizedHint(self) -> None:
        """C{unauthorized} in the shell says how to authenticate."""
        h = ShellHarness(FakeDaemon({"list": "ERR unauthorized auth first"}))
        h.type(b"list\r")
        self.assertIn(b"Error: unauthorized: auth first (type `auth TOKEN`",
                      h.screen())

    def test_authTokenMasked(self) -> None:
        """
        The token of C{auth TOKEN} never reaches the screen as typed: the
        line shows C{auth } then a C{*} a character, and the daemon gets the
        token itself.
        """
        for word in (b"auth", b"AUTH", b"  auth", b"'auth'"):
            h = ShellHarness(FakeDaemon({"auth": ok("authenticated")}))
            h.screen()
            for key in word + b" qzxw":
                h.type(bytes([key]))
            screen = h.screen()
            self.assertTrue(screen.endswith(b"pycm> " + word + b" ****"), screen)
            for secret in b"qzxw":
                self.assertNotIn(bytes([secret]), screen, word)
            h.type(b"\r")
            self.assertEqual(h.daemon.received, [(word + b" qzxw").decode()])
            self.assertNotIn(b"qzxw", h.screen())

    def test_authTokenMaskedWhileEdited(self) -> None:
        """
        Deleting the blank, editing in the middle, recalling the line with
        Up and pasting all keep the token hidden; a line that stops being
        an C{auth} line is shown as it is.
        """
        h = ShellHarness()
        h.type(b"auth qzxw")
        h.type(LEFT * 4 + b"\x7f" + b"\x1b[3~")
        self.assertEqual(h.typed(), b"authzxw")
        self.assertTrue(h.screen().endswith(b"pycm> auth***" + b"\x1b[3D"))
        h.type(b"\x03")
        h.screen()
        h.type(b"auth qzxw\r" + UP)
        self.assertEqual(h.typed(), b"auth qzxw")
        self.assertNotIn(b"qzxw", h.screen())
        h.type(b"\x01\x1b[3~")
        self.assertEqual(h.typed(), b"uth qzxw")
        self.assertTrue(h.screen().endswith(b"pycm> uth qzxw" + b"\x1b[8D"))

    def test_ctrlU(self) -> None:
        """Ctrl-U deletes from the start of the line to the cursor."""
        h = ShellHarness()
        h.type(b"abcd" + LEFT + b"\x15")
        self.assertEqual(h.typed(), b"d")
        self.assertEqual(h.shell.lineBufferIndex, 0)


class HelperTests(SynchronousTestCase):
    """The shell's small helpers."""

    def test_shown(self) -> None:
        """What an C{auth} line shows: the word and blanks, then C{*}s."""
        cases = [(b"auth tok", b"auth ***"), (b"Auth  t", b"Auth  *"),
                 (b"authtok", b"auth***"), (b"auth", b"auth"), (b"aut", b"aut"),
                 (b"ping x", b"ping x"), (b" 'auth' t", b" 'auth' *"),
                 (b"x auth tok", b"x auth tok")]
        for line, screen in cases:
            self.assertEqual(shown([bytes([c]) for c in line]), screen, line)

    def test_hasPositional(self) -> None:
        """Options (with their values) are not names; other words are."""
        self.assertFalse(hasPositional([]))
        self.assertFalse(hasPositional(["--time", "5"]))
        self.assertFalse(hasPositional(["-e", "A=1", "--restart=always"]))
        self.assertTrue(hasPositional(["--time=5", "web"]))
        self.assertTrue(hasPositional(["--", "-odd"]))
        self.assertFalse(hasPositional(["--"]))

    def test_progressMessage(self) -> None:
        """Progress notes name the container when they can."""
        self.assertEqual(progressMessage(["stop", "--time=5", "web"]),
                         "waiting for web to stop\N{HORIZONTAL ELLIPSIS}")
        self.assertIn("pulling", progressMessage(["run", "web", "nginx"]))
