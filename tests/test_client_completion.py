"""
Tests for L{pycm.client.completion}: the completion scripts and the
container names they ask for.  The bash script is also run for real, in
C{bash}, against a real daemon in L{tests.test_client_e2e}.
"""

from __future__ import annotations

import io
import socket
import subprocess
import sys
import threading

from twisted.trial.unittest import SynchronousTestCase

from pycm.client import cli, completion
from pycm.daemon import commands

from .test_client_cli import options


class TableTests(SynchronousTestCase):
    """Completion knows what the daemon's command table says."""

    def test_everyCommand(self) -> None:
        """
        Every command word and alias of the table, and the client's own
        commands (C{completion}, C{top}), with every option spelling of
        each.
        """
        table = completion.commandTable()
        self.assertEqual(
            completion.commandWords(table),
            sorted([*commands.BY_WORD, *completion.CLIENT_COMMANDS]),
        )
        self.assertIn("top", completion.CLIENT_COMMANDS)
        byName = {c.name: c for c in table}
        for row in commands.COMMANDS:
            for option in row.options:
                self.assertIn(f"--{option.name}", byName[row.name].options)
                if option.short:
                    self.assertIn(f"-{option.short}", byName[row.name].options)
        self.assertIn("--since", byName["logs"].valueOptions)
        self.assertIn("--timestamps", byName["logs"].options)
        self.assertIn("-q", byName["list"].options)
        self.assertIn("--format", byName["list"].valueOptions)
        self.assertNotIn("-f", byName["rm"].valueOptions)
        self.assertTrue(byName["stop"].names)
        self.assertFalse(byName["run"].names)

    def test_scripts(self) -> None:
        """Each shell's script names every command and calls C{__names}."""
        for shell in completion.SHELLS:
            script = completion.completionScript(shell)
            for word in commands.BY_WORD:
                self.assertIn(word, script, shell)
            self.assertIn("__names", script)
        self.assertIn("complete -F _pycm pycm", completion.completionScript("bash"))
        self.assertIn("bashcompinit", completion.completionScript("zsh"))
        self.assertIn("complete -c pycm", completion.completionScript("fish"))
        self.assertRaises(KeyError, completion.completionScript, "tcsh")


class ClientCommandTests(SynchronousTestCase):
    """C{pycm completion SHELL} needs no daemon."""

    def test_completion(self) -> None:
        """It prints the script; a wrong shell is a usage error."""
        out, err = io.StringIO(), io.StringIO()
        self.assertEqual(cli.clientCommand(options("completion", "bash"), out, err), 0)
        self.assertEqual(out.getvalue(), completion.bashScript())
        self.assertEqual(cli.clientCommand(options("completion", "tcsh"), out, err), 2)
        self.assertIn("bash|zsh|fish", err.getvalue())
        self.assertIsNone(cli.clientCommand(options("ping"), out, err))

    def test_completionHelp(self) -> None:
        """
        C{completion --help} (or C{-h}) describes the command on standard
        output, exit status 0, not a usage error.
        """
        for flag in ("--help", "-h"):
            out, err = io.StringIO(), io.StringIO()
            self.assertEqual(cli.clientCommand(options("completion", flag), out, err), 0)
            self.assertEqual(out.getvalue().splitlines(), completion.COMPLETION_USAGE)
            self.assertEqual(err.getvalue(), "")
        self.assertIn("usage: pycm completion bash|zsh|fish", completion.COMPLETION_USAGE)

    def test_helpClientCommand(self) -> None:
        """
        C{help COMMAND} for each of the client's own commands prints what
        C{COMMAND --help} does, exit status 0, without asking the daemon
        (which does not know them); C{help} of a daemon's command is left
        to the daemon.
        """
        for name in completion.CLIENT_COMMANDS:
            helped, flagged, err = io.StringIO(), io.StringIO(), io.StringIO()
            self.assertEqual(cli.clientCommand(options("help", name), helped, err), 0)
            self.assertEqual(cli.clientCommand(options(name, "--help"), flagged, err), 0)
            self.assertEqual(helped.getvalue(), flagged.getvalue())
            self.assertIn(f"usage: pycm {name}", helped.getvalue())
            self.assertEqual(err.getvalue(), "")
        out = io.StringIO()
        self.assertIsNone(cli.clientCommand(options("help", "stop"), out, out))
        self.assertIsNone(cli.clientCommand(options("help"), out, out))
        self.assertEqual(out.getvalue(), "")

    def test_helpClientCommandRealClient(self) -> None:
        """
        The real C{pycm help top} and C{pycm help completion} print the
        usage and exit 0 with no daemon to ask (a socket that is not there).
        """
        for name in ("top", "completion"):
            r = subprocess.run(
                [sys.executable, "-m", "pycm.client.cli", "--host", "unix:/nonexistent/s",
                 "help", name],
                capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
            self.assertEqual((r.returncode, r.stderr), (0, ""))
            self.assertTrue(r.stdout.startswith(f"usage: pycm {name}"), r.stdout)


class NamesTests(SynchronousTestCase):
    """C{pycm __names}: quick, and silent on any error."""

    def test_addresses(self) -> None:
        """Plain tcp: and unix: endpoints are understood; others are not tried."""
        self.assertEqual(completion.socketAddress("tcp:127.0.0.1:8080"),
                         (socket.AF_UNSPEC, ("127.0.0.1", 8080)))
        self.assertEqual(completion.socketAddress("tcp:port=9:host=h"),
                         (socket.AF_UNSPEC, ("h", 9)))
        self.assertEqual(completion.socketAddress("unix:/run/pycm.sock"),
                         (socket.AF_UNIX, "/run/pycm.sock"))
        self.assertEqual(completion.socketAddress("unix:path=/x"), (socket.AF_UNIX, "/x"))
        self.assertIsNone(completion.socketAddress("tls:127.0.0.1:8443"))
        self.assertIsNone(completion.socketAddress("tcp:nohost"))

    def serve(self, reply: bytes | None) -> tuple[str, list[bytes]]:
        """A one-connection server answering each line with C{reply}."""
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        self.addCleanup(listener.close)
        received: list[bytes] = []

        def serve() -> None:
            conn, _ = listener.accept()
            with conn:
                data = b""
                while data.count(b"\n") < 2:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                    if reply is not None and data.endswith(b"list\n"):
                        received.append(data)
                        answers = data.count(b"\n")
                        conn.sendall(b'OK "authenticated"\n' * (answers - 1) + reply)
                        # Wait for the client to close.
                        conn.recv(1)
                        return
                received.append(data)

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        self.addCleanup(thread.join, 5)
        return f"tcp:127.0.0.1:{listener.getsockname()[1]}", received

    def test_names(self) -> None:
        """The names, sorted; the token sent first when there is one."""
        host, received = self.serve(b'OK [{"name":"web"},{"name":"db"}]\n')
        self.assertEqual(completion.containerNames(host, "s3cret"), ["db", "web"])
        self.assertEqual(received, [b"auth s3cret\nlist\n"])

    def test_errors(self) -> None:
        """An ERR, a daemon that does not answer in time, or none: no names."""
        host, _ = self.serve(b"ERR unauthorized auth first\n")
        self.assertEqual(completion.containerNames(host, None), [])
        host, _ = self.serve(None)
        self.assertEqual(completion.containerNames(host, None, timeout=0.2), [])
        closed = socket.socket()
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        closed.close()
        self.assertEqual(completion.containerNames(f"tcp:127.0.0.1:{port}", None), [])
