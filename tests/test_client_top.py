"""
Tests for C{pycm stats} and C{pycm top} on fakes: the client's
L{ClientProtocol} talks over an in-memory connection (L{iosim}) to the
daemon's own protocol on the memory backend and a L{Clock}; C{top} draws
through L{insults.ServerProtocol} into a L{TerminalBuffer} screen, which
interprets the escape sequences as a terminal would.  The real terminal
and the real daemon are in L{tests.test_client_top_e2e}.
"""

from __future__ import annotations

import io
import json
from typing import Any

from twisted.conch.insults import helper, insults
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.test.iosim import FakeTransport, connect
from twisted.trial.unittest import SynchronousTestCase

from pycm.client import format as fmt
from pycm.client.protocol import ClientProtocol
from pycm.client.stats import binarySize, decimalSize, statsTable, streamStats
from pycm.client.top import DOWN_ARROW, TopView, bar, sparkline
from pycm.daemon.protocol import PycmServerFactory
from pycm.testing.server import FakeServer

MiB = 2**20


class Connected:
    """A L{ClientProtocol} connected in memory to a L{FakeServer}."""

    def __init__(self) -> None:
        self.server = FakeServer()
        self.clock = self.server.clock
        factory = PycmServerFactory(self.server.state, requireAuth=False)
        daemon = factory.buildProtocol(None)
        self.client = ClientProtocol()
        self.pump = connect(
            daemon, FakeTransport(daemon, isServer=True),
            self.client, FakeTransport(self.client, isServer=False),
            greet=True,
        )  # fmt: skip

    def run(self, line: str) -> Any:
        """Send a request and pump until it is answered."""
        d = self.client.request(line)
        self.flush()
        return d

    def flush(self) -> None:
        for _ in range(5):
            self.pump.flush()
            self.clock.advance(0)

    def advance(self, seconds: float) -> None:
        """Let C{seconds} pass a tenth at a time, pumping as we go."""
        for _ in range(round(seconds * 10)):
            self.clock.advance(0.1)
            self.flush()

    def state(self, name: str) -> str:
        return (
            self.server.backend._records[name].state
            if name in self.server.backend._records
            else "removed"
        )


class Screen(helper.TerminalBuffer):
    """
    The terminal: Twisted's own in-memory screen, which keeps the
    characters, the cursor and the modes as a VT102 would.  (Its
    transport only records that the view let it go.)
    """

    width = 400  # bytes: bars and sparklines are 3 UTF-8 bytes a character
    height = 24

    def __init__(self) -> None:
        super().__init__()
        self.transport = StringTransport()
        self.connectionMade()

    def insertAtCursor(self, b: bytes) -> None:
        """Keep the bytes of UTF-8 characters too (one cell a byte)."""
        if b < b"\x80":
            super().insertAtCursor(b)
            return
        if self.x >= self.width:
            self.nextLine()
        self.lines[self.y][self.x] = (b, self._currentFormattingState())
        self.x += 1

    @property
    def closed(self) -> bool:
        return bool(self.transport.disconnecting)

    def rows(self) -> list[str]:
        return bytes(self).decode("utf-8").splitlines()

    def text(self) -> str:
        return bytes(self).decode("utf-8")


class TopHarness(Connected):
    """A L{TopView} on a L{Screen}, connected to a daemon."""

    def __init__(self) -> None:
        super().__init__()
        self.done: Deferred[int] = Deferred()
        self.screen = Screen()
        self.view = TopView(self.client, self.clock, self.done, lambda: (100, 24), True)
        self.view.makeConnection(self.screen)
        self.flush()

    def press(self, keys: bytes | list[Any]) -> None:
        """Press each key, as insults' parser hands them over."""
        for key in keys:
            self.view.keystrokeReceived(bytes([key]) if isinstance(key, int) else key, None)
            self.flush()

    def row(self, name: str) -> str:
        [line] = [line for line in self.screen.rows() if line[2:].startswith(name + " ")]
        return line


class FormatTests(SynchronousTestCase):
    """The table of C{pycm stats}, like C{docker stats --no-stream}."""

    def test_sizes(self) -> None:
        """Memory in binary units, block I/O in decimal ones, as Docker."""
        self.assertEqual(binarySize(1536 * 1024), "1.5MiB")
        self.assertEqual(binarySize(512), "512B")
        self.assertEqual(decimalSize(4096), "4.096kB")
        self.assertEqual(decimalSize(None), "--")

    def test_table(self) -> None:
        """Header, one aligned row per container, unknown figures as --."""
        rows = [
            {"name": "db", "state": "running", "cpu_percent": 12.5, "memory": 64 * MiB,
             "memory_limit": 256 * MiB, "pids": 3, "read_bytes": 4096, "write_bytes": 0},
            {"name": "web", "state": "exited", "cpu_percent": None, "memory": None,
             "memory_limit": None, "pids": None, "read_bytes": None, "write_bytes": None},
        ]  # fmt: skip
        self.assertEqual(
            statsTable(rows),
            [
                "NAME   CPU %    MEM USAGE / LIMIT   MEM %    PIDS   BLOCK I/O",
                "db     12.50%   64MiB / 256MiB      25.00%   3      4.096kB / 0B",
                "web    --       -- / --             --       --     -- / --",
            ],
        )

    def test_oneShot(self) -> None:
        """The one-shot path (C{stats --no-stream}) prints that table."""
        self.assertEqual(fmt.formatReply("stats", [], 0.0), [statsTable([])[0]])


class StreamTests(SynchronousTestCase):
    """C{pycm stats} asks again every second."""

    def test_piped(self) -> None:
        """Piped, one table a second, one after the other; Ctrl-C ends with 0."""
        conn = Connected()
        conn.run("run web memory burn 0.5")
        out, err = io.StringIO(), io.StringIO()
        interrupted: list[bool] = []
        d = ensureDeferred(
            streamStats(conn.clock, conn.client, ["stats"], out, err, False,
                        interrupted=interrupted)
        )  # fmt: skip
        conn.flush()
        conn.advance(2.5)
        tables = out.getvalue().split("\n\n")
        self.assertEqual(len(tables), 3)
        self.assertIn("50.00%", tables[-1])
        self.assertNoResult(d)
        interrupted.append(True)
        conn.client.disconnect()
        conn.flush()
        self.assertEqual(self.successResultOf(d), 0)

    def test_terminalRedrawsInPlace(self) -> None:
        """On a terminal each table goes to the top left, erasing the old."""
        conn = Connected()
        conn.run("run web")
        out = io.StringIO()
        d = ensureDeferred(streamStats(conn.clock, conn.client, ["stats"], out, out, True))
        conn.flush()
        conn.advance(1.5)
        text = out.getvalue()
        self.assertTrue(text.startswith("\x1b[2J\x1b[H"))
        self.assertEqual(text.count("\x1b[H"), 2)
        self.assertEqual(text.count("\x1b[2J"), 1)
        conn.client.disconnect()
        conn.flush()
        # Not interrupted: the daemon went away.
        self.assertEqual(self.successResultOf(d), 3)

    def test_refused(self) -> None:
        """An unknown name ends it with 1 and the daemon's error."""
        conn = Connected()
        out, err = io.StringIO(), io.StringIO()
        d = ensureDeferred(
            streamStats(conn.clock, conn.client, ["stats", "nosuch"], out, err, False)
        )
        conn.flush()
        self.assertEqual(self.successResultOf(d), 1)
        self.assertIn("not_found", err.getvalue())


    def test_malformed(self) -> None:
        """
        A request the daemon refuses as malformed (C{stats --bogus}) ends
        it with 2, a usage error, as C{stats --no-stream --bogus} does.
        """
        conn = Connected()
        out, err = io.StringIO(), io.StringIO()
        d = ensureDeferred(
            streamStats(conn.clock, conn.client, ["stats", "--bogus"], out, err, False)
        )
        conn.flush()
        self.assertEqual(self.successResultOf(d), 2)
        self.assertEqual(err.getvalue(), "Error: bad_request: unknown option '--bogus'\n")

    def test_malformedJSON(self) -> None:
        """With C{--json}, the refusal is one JSON object on stderr."""
        conn = Connected()
        out, err = io.StringIO(), io.StringIO()
        d = ensureDeferred(streamStats(conn.clock, conn.client, ["stats", "--bogus"],
                                       out, err, False, asJSON=True))
        conn.flush()
        self.assertEqual(self.successResultOf(d), 2)
        self.assertEqual(json.loads(err.getvalue()),
                         {"error": "bad_request", "message": "unknown option '--bogus'"})

class TopRenderTests(SynchronousTestCase):
    """Pure parts of the view."""

    def test_sparkline(self) -> None:
        """A minute of samples in ten characters, the newest at the right."""
        self.assertEqual(sparkline([0.0] * 54 + [100.0] * 6, 100.0), "▁" * 9 + "█")
        self.assertEqual(sparkline([], 100.0), " " * 10)
        self.assertEqual(sparkline([50.0] * 60, 100.0, unicode=False), "=" * 10)

    def test_bar(self) -> None:
        self.assertEqual(bar(0.5), "███░░░")
        self.assertEqual(bar(3.0, unicode=False), "######")
        self.assertEqual(bar(None), "      ")


class TopTests(SynchronousTestCase):
    """C{pycm top} on a fake terminal, against the daemon's real logic."""

    def test_rows(self) -> None:
        """
        One row per container, sorted by name, with its state, restarts,
        CPU and memory; the first is selected; the screen is the alternate
        one with the cursor hidden.
        """
        top = TopHarness()
        top.run("run web memory burn 0.5")
        top.run("run --memory=8m db")
        top.run("create idle")
        top.advance(1.05)
        names = [line[2:].split()[0] for line in top.screen.rows()[4:7]]
        self.assertEqual(names, ["db", "idle", "web"])
        self.assertIn("running", top.row("web"))
        self.assertIn("50.0", top.row("web"))
        self.assertIn("4MiB", top.row("db"))
        self.assertIn("created", top.row("idle"))
        self.assertTrue(top.row("db").startswith("> "))
        self.assertTrue(top.screen.privateModes.get(1049))
        self.assertFalse(top.screen.privateModes.get(insults.privateModes.CURSOR_MODE))

    def test_sortKeys(self) -> None:
        """c sorts by CPU (busiest first), m by memory, n by name."""
        top = TopHarness()
        top.run("run aa memory burn 0.1")
        top.run("run bb memory burn 0.9")
        top.advance(1.05)
        top.press(b"c")
        self.assertEqual(top.view.visible(), ["bb", "aa"])
        self.assertIn("sort: cpu", top.screen.rows()[0])
        top.press(b"n")
        self.assertEqual(top.view.visible(), ["aa", "bb"])

    def test_filter(self) -> None:
        """/ then a name fragment and Enter shows only matching containers."""
        top = TopHarness()
        top.run("run web1")
        top.run("run web2")
        top.run("run db")
        top.advance(1.05)
        top.press(b"/we")
        self.assertIn("Filter by name: we", top.screen.text())
        top.press(b"b2\r")
        self.assertEqual(top.view.visible(), ["web2"])
        self.assertIn("filter: web2", top.screen.rows()[0])
        self.assertTrue(top.row("web2").startswith("> "))
        top.press(b"/" + b"\x15" + b"\r")
        self.assertEqual(top.view.visible(), ["db", "web1", "web2"])

    def test_stopWithConfirmation(self) -> None:
        """s asks y/n: n leaves it running, y stops it through the daemon."""
        top = TopHarness()
        top.run("run aa")
        top.run("run bb")
        top.advance(1.05)
        top.press([DOWN_ARROW])
        top.press(b"s")
        self.assertIn("Stop bb? (y/n)", top.screen.text())
        top.press(b"n")
        self.assertEqual(top.state("bb"), "running")
        top.press(b"s")
        top.press(b"y")
        top.advance(1.0)
        self.assertEqual(top.state("bb"), "exited")
        self.assertEqual(top.state("aa"), "running")
        self.assertIn("exited", top.row("bb"))

    def test_restartAndRemove(self) -> None:
        """r restarts (the restart shows in the events), d removes."""
        top = TopHarness()
        top.run("run aa")
        top.advance(1.05)
        top.press(b"r")
        top.press(b"y")
        top.advance(0.5)
        self.assertIn("aa restart", top.screen.text())
        top.press(b"d")
        self.assertIn("Remove aa? (y/n)", top.screen.text())
        top.press(b"y")
        top.advance(0.5)
        self.assertEqual(top.state("aa"), "removed")
        self.assertIn("aa destroy", top.screen.text())
        self.assertIn("(no containers)", top.screen.text())

    def test_eventsAtTheBottom(self) -> None:
        """Events made elsewhere show at the bottom and refresh the rows."""
        top = TopHarness()
        top.advance(1.05)
        top.run("run late memory exit 3")
        top.advance(0.2)
        text = top.screen.text()
        self.assertIn("late create", text)
        self.assertIn("late die (exit code 3)", text)
        self.assertIn("exited", top.row("late"))

    def test_health(self) -> None:
        """A HEALTH column appears when a container has a health field."""
        top = TopHarness()
        top.view.update([{"name": "web", "state": "running", "health": {"status": "healthy"}}], [])
        top.view.draw()
        self.assertIn("HEALTH", top.screen.text())
        self.assertIn("healthy", top.row("web"))

    def test_sparklineOverTime(self) -> None:
        """The sparkline fills from the right as samples come in."""
        top = TopHarness()
        top.run("run web memory burn 1")
        top.advance(6.05)
        self.assertIn("█", top.row("web"))

    def test_quit(self) -> None:
        """q leaves with 0, shows the cursor and leaves the alternate screen."""
        top = TopHarness()
        top.press(b"q")
        self.assertEqual(self.successResultOf(top.done), 0)
        self.assertTrue(top.screen.closed)
        self.assertFalse(top.screen.privateModes.get(1049))
        self.assertTrue(top.screen.privateModes.get(insults.privateModes.CURSOR_MODE))
        self.assertFalse(top.client.connected)

    def test_ctrlC(self) -> None:
        """Ctrl-C leaves with 0 too."""
        top = TopHarness()
        top.press(b"\x03")
        self.assertEqual(self.successResultOf(top.done), 0)

    def test_daemonLost(self) -> None:
        """A lost daemon ends it with 3, the terminal given back."""
        top = TopHarness()
        top.client.transport.loseConnection()  # type: ignore[union-attr]
        top.flush()
        self.assertEqual(self.successResultOf(top.done), 3)
        self.assertTrue(top.screen.closed)


class ShellStatsTests(SynchronousTestCase):
    """C{stats} in the interactive shell."""

    def test_completedAndShownAsTable(self) -> None:
        """Tab completes C{stats}; its reply is shown as the stats table."""
        from pycm.client.testing import FakeDaemon, ok
        from tests.test_client_shell import ShellHarness

        row = {"name": "web", "state": "running", "cpu_percent": 1.5, "memory": MiB,
               "memory_limit": None, "pids": 2, "read_bytes": 0, "write_bytes": 0}  # fmt: skip
        h = ShellHarness(FakeDaemon({"stats": ok([row])}))
        h.type(b"stat\t")
        self.assertEqual(h.typed(), b"stats ")
        h.type(b"\r")
        screen = h.screen().decode()
        for line in statsTable([row]):
            self.assertIn(line, screen)


class TopHelpTests(SynchronousTestCase):
    """C{pycm top --help} needs no daemon; C{stats --help} goes to C{help}."""

    def test_topHelp(self) -> None:
        """C{top --help} prints the keys, without connecting."""
        from pycm.client.cli import clientCommand, parseArguments

        out, err = io.StringIO(), io.StringIO()
        options = parseArguments(["--host", "unix:/nonexistent", "top", "--help"], {})
        self.assertEqual(clientCommand(options, out, err), 0)
        self.assertIn("usage: pycm top", out.getvalue())
        self.assertIn("s stop, r restart, d remove", out.getvalue())

    def test_topArguments(self) -> None:
        """
        C{top} takes no arguments: one is a usage error (exit status 2),
        said without connecting, rather than ignored.
        """
        from pycm.client.cli import clientCommand, parseArguments

        out, err = io.StringIO(), io.StringIO()
        options = parseArguments(["--host", "unix:/nonexistent", "top", "--bogus"], {})
        self.assertEqual(clientCommand(options, out, err), 2)
        self.assertEqual(err.getvalue(), "pycm: top takes no arguments: '--bogus'\n"
                                         "Try 'pycm top --help'.\n")
        self.assertEqual(out.getvalue(), "")

    def test_statsHelp(self) -> None:
        """C{stats --help} is the daemon's help of C{stats}, not a stream."""
        from pycm.client.cli import CommandLine, run
        from pycm.client.testing import FakeDaemon, connectToFake, ok

        daemon = FakeDaemon({"help": ok({"name": "stats", "usage": "stats [NAME...]",
                                         "summary": "usage", "aliases": []})})  # fmt: skip
        client, daemon, pump = connectToFake(daemon)

        class Reactor(Clock):
            pass

        import pycm.client.cli as cli

        self.patch(cli, "connectTo", lambda reactor, options, *rest: _succeed(client))
        out, err = io.StringIO(), io.StringIO()
        options = CommandLine(host="tcp:x:1", token=None, json=False, command=("stats", "--help"))
        d = ensureDeferred(run(Reactor(), options, out, err))
        pump.flush()
        self.assertEqual(self.successResultOf(d), 0)
        self.assertEqual(daemon.received, ["help stats"])
        self.assertIn("stats [NAME...]", out.getvalue())


async def _succeed(value: Any) -> Any:
    return value


class LiveCommandTests(SynchronousTestCase):
    """Which command lines run a live view in the reactor."""

    def test_live(self) -> None:
        """top and streaming stats are live; --no-stream and --help are not."""
        from pycm.client.stats import liveCommand

        self.assertEqual(liveCommand(["top"]), "top")
        self.assertEqual(liveCommand(["STATS", "web"]), "stats")
        self.assertIsNone(liveCommand(["stats", "--no-stream"]))
        self.assertIsNone(liveCommand(["stats", "--help"]))
        self.assertIsNone(liveCommand(["top", "-h"]))
        self.assertIsNone(liveCommand(["list"]))
        self.assertIsNone(liveCommand([]))
