"""
Tests for the escaping of control characters in what the client shows a
person (L{pycm.client.format.printable}): table cells, C{ps --format}'s
fields, C{inspect}'s lines, events and error messages are escaped; log
lines and C{--json} are not.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import threading

from twisted.trial.unittest import SynchronousTestCase

from pycm.client import format as fmt
from pycm.client.template import Template, formatContainers
from pycm.client.wire import errorFromReply
from tests.e2e import DEADLINE, RealDaemon, pycmCommand

#: Any character a terminal acts on rather than shows.
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")

#: A container whose every field a hostile or careless user filled with
#: control characters: a screen clear, line breaks, a tab, DEL, a C1 CSI.
HOSTILE = {
    "name": "w7",
    "state": "running",
    "image": "host\x9b2J",
    "command": ["sh", "-c", "sleep 300\nzz   running"],
    "pid": 42,
    "exit_code": None,
    "created": "2026-01-01T00:00:00Z",
    "restart_count": 0,
    "labels": {"a\x1b[2J": "1\r\x7f", "b": "x\ty"},
    "env": ["A=x\nfake: line"],
}


class PrintableTests(SynchronousTestCase):
    """L{fmt.printable} itself."""

    def test_escapes(self) -> None:
        """C0 controls, DEL and C1 controls are written out; the rest stays."""
        self.assertEqual(fmt.printable("a\x1b[2Jb\nc\td\re\x7f\x9b\x00"),
                         "a\\x1b[2Jb\\nc\\td\\re\\x7f\\x9b\\x00")
        self.assertEqual(fmt.printable("plain é ✓ \\x1b"), "plain é ✓ \\x1b")


class FormatTests(SynchronousTestCase):
    """Each kind of output, on a reply full of control characters."""

    def assertPrintable(self, lines: list[str]) -> None:
        for line in lines:
            self.assertIsNone(CONTROL.search(line), repr(line))

    def test_table(self) -> None:
        """C{ls}: one row per container, escaped, columns still aligned."""
        lines = fmt.formatReply("ls", [HOSTILE, {**HOSTILE, "name": "x\x1b[2J"}], 0.0)
        self.assertEqual(len(lines), 3)
        self.assertPrintable(lines)
        self.assertIn('"sh -c \'sleep 300\\nzz   runnin…"', lines[1])
        self.assertIn("host\\x9b2J", lines[1])
        self.assertTrue(lines[2].startswith("x\\x1b[2J"))
        # The IMAGE column starts at the same place on every row.
        starts = {line.index(word) for line, word in zip(lines, ("IMAGE", "host", "host"))}
        self.assertEqual(len(starts), 1)

    def test_formatTemplate(self) -> None:
        """
        C{ps --format TEMPLATE}: each field escaped, as in the table, so a
        value adds no line nor column; the template's own tabs stay.
        C{ps -q} too; C{--format json} is JSON.
        """
        template = Template.parse("{{.Name}} {{.Labels}} {{.Image}} {{.Command}}")
        lines = formatContainers([HOSTILE], template=template)
        self.assertEqual(lines, ["w7 a\\x1b[2J=1\\r\\x7f,b=x\\ty host\\x9b2J "
                                 "sh -c 'sleep 300\\nzz   running'"])
        table = Template.parse("table {{.Name}}\\t{{.Labels}}\\t{{.Command}}")
        self.assertEqual(formatContainers([HOSTILE], template=table), [
            "NAME   LABELS                    COMMAND",
            "w7     a\\x1b[2J=1\\r\\x7f,b=x\\ty   sh -c 'sleep 300\\nzz   running'"])
        self.assertEqual(formatContainers([{**HOSTILE, "name": "w\x1b7"}], quiet=True),
                         ["w\\x1b7"])
        (raw,) = formatContainers([HOSTILE], jsonLines=True) or []
        self.assertEqual(json.loads(raw), HOSTILE)

    def test_inspect(self) -> None:
        """C{inspect}: one line per field or label, keys and values escaped."""
        lines = fmt.formatReply("inspect", HOSTILE, 0.0)
        self.assertPrintable(lines)
        # One line per field, and the two labels under theirs.
        self.assertEqual(len(lines), len(HOSTILE) + 2)
        self.assertIn("  a\\x1b[2J: 1\\r\\x7f", lines)
        self.assertIn("env:           'A=x\\nfake: line'", lines)

    def test_otherReplies(self) -> None:
        """A container acted on, a string, a list: escaped too."""
        self.assertPrintable(fmt.formatReply("stop", {**HOSTILE, "name": "w\x1b7"}, 0.0))
        self.assertEqual(fmt.formatReply("ping", "po\x1bng", 0.0), ["po\\x1bng"])
        self.assertEqual(fmt.formatReply("x", ["a\nb"], 0.0), ["a\\nb"])

    def test_error(self) -> None:
        """An C{ERR} message (and code) from the server is escaped."""
        error = errorFromReply("not_found", "no such container: \x1b[2Jw\nfake")
        self.assertEqual(fmt.formatError(error),
                         "Error: not_found: no such container: \\x1b[2Jw\\nfake")
        self.assertEqual(fmt.formatError(errorFromReply("x\x1b", "m")),
                         "Error: x\\x1b: m")

    def test_events(self) -> None:
        """A container event is escaped; a log line in an event is not."""
        event = {"type": "container", "id": 3, "time": "t", "name": "w\x1b7",
                 "action": "start\n"}
        self.assertPrintable([fmt.formatEvent(event)])
        log = {"type": "log", "name": "w7", "line": "\x1b[31mred\x1b[0m"}
        self.assertEqual(fmt.formatEvent(log), "w7 | \x1b[31mred\x1b[0m")

    def test_logs(self) -> None:
        """C{logs} shows the lines as the container wrote them, as C{docker logs}."""
        lines = fmt.formatReply("logs", [{"line": "\x1b[31mred\tx"}], 0.0, ["logs", "w7"])
        self.assertEqual(lines, ["\x1b[31mred\tx"])


class ClientE2ETests(SynchronousTestCase):
    """The real client against the real daemon, and against a hostile server."""

    def pycm(self, *args: str, host: str) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ, PYCM_HOST=host)
        env.pop("PYCM_TOKEN", None)
        return subprocess.run([*pycmCommand(), *args], capture_output=True, text=True,
                              env=env, timeout=DEADLINE, stdin=subprocess.DEVNULL)

    def test_daemon(self) -> None:
        """
        A container made with control characters in its command, labels
        and env: C{ls} and C{inspect} show them escaped, C{--json} as JSON.
        """
        daemon = RealDaemon(self).start()
        host = f"tcp:127.0.0.1:{daemon.port}"
        # The client refuses a line break in an argument; a document's JSON
        # carries one to the daemon.
        document = json.dumps({"project": "p1", "services": {"w7": {
            "command": ["sh", "-c", "sleep 300\nzz   running"],
            "labels": {"a\x1b[2J": "1"}, "env": {"A": "x\nfake: line"}}}})
        with socket.create_connection(("127.0.0.1", daemon.port), DEADLINE) as sock:
            sock.sendall(f"apply {shlex.quote(document)}\n".encode())
            self.assertTrue(sock.makefile("rb").readline().startswith(b"OK "))
        listed = self.pycm("ls", host=host)
        self.assertIsNone(CONTROL.search(listed.stdout.replace("\n", "")), listed.stdout)
        self.assertEqual(len(listed.stdout.splitlines()), 2, listed.stdout)
        inspected = self.pycm("inspect", "w7", host=host)
        self.assertIsNone(CONTROL.search(inspected.stdout.replace("\n", "")))
        self.assertIn("  a\\x1b[2J:", inspected.stdout)
        self.assertIn("  A: x\\nfake: line\n", inspected.stdout)
        self.assertNotIn("\nfake: line", inspected.stdout)
        formatted = self.pycm("ps", "--format", "{{.Name}} {{.Labels}}", host=host)
        self.assertIsNone(CONTROL.search(formatted.stdout.replace("\n", "")))
        self.assertTrue(formatted.stdout.startswith("w7 a\\x1b[2J=1,io.pycm."),
                        formatted.stdout)
        raw = self.pycm("--json", "ls", host=host)
        container = json.loads(raw.stdout)[0]
        self.assertEqual(container["command"], ["sh", "-c", "sleep 300\nzz   running"])

    def test_hostileServer(self) -> None:
        """An C{ERR} line with an escape sequence from a server is printed escaped."""
        server = socket.socket()
        self.addCleanup(server.close)
        server.bind(("127.0.0.1", 0))
        server.listen()

        def answer() -> None:
            connection, _ = server.accept()
            with connection:
                connection.recv(4096)
                connection.sendall(b"ERR not_found \x1b[2Jgone\rError: fake\xc2\x9b\n")

        thread = threading.Thread(target=answer)
        thread.start()
        self.addCleanup(thread.join)
        result = self.pycm("inspect", "w7", host=f"tcp:127.0.0.1:{server.getsockname()[1]}")
        self.assertEqual(result.stderr, "Error: not_found: \\x1b[2Jgone\\rError: fake\\x9b\n")
