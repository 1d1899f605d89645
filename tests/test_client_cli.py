"""
Tests for L{pycm.client.cli} (the one-shot command line, with
L{pycm.client.arguments}, L{pycm.client.connecting}, L{pycm.client.command}
and L{pycm.client.exits}), L{pycm.client.oneshot} (its path without a
reactor), L{pycm.client.piped} (piped-stdin mode), L{pycm.client.config},
L{pycm.statepaths} and L{pycm.client.format}.

The one-shot tests run twice: in the reactor (L{cli.run}) and on the fast
path (L{oneshot.OneShotCall}), against the same fake daemon.
"""

from __future__ import annotations

import errno
import io
import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Callable
from typing import Any

from twisted.internet import error as twistedErrors
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.error import ConnectionLost, ConnectionRefusedError
from twisted.internet.protocol import Factory
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.python.filepath import FilePath
from twisted.test.iosim import ConnectionCompleter, IOPump
from twisted.trial.unittest import SynchronousTestCase

from pycm import statepaths
from pycm.client import arguments, cli, commandtable, config, connecting, oneshot, piped
from pycm.client import format as fmt
from pycm.client.testing import FakeDaemon, event, ok
from pycm.model import formatTime

NOW = 1_800_000_000.0

WEB = {
    "name": "web", "id": "abc", "backend": "memory", "image": "host",
    "command": ["sleep", "100"], "state": "running", "pid": 4242,
    "exit_code": None, "created": formatTime(NOW - 300),
    "started": formatTime(NOW - 300), "finished": None,
    "restart_policy": "no", "restart_count": 0, "labels": {},
}
DB = dict(WEB, name="db", state="exited", pid=None, exit_code=-15,
          command=["postgres", "-c", "a very long option that goes on"],
          created=formatTime(NOW - 3 * 86400), restart_count=2)


def options(*command: str, **kw: Any) -> arguments.CommandLine:
    values: dict[str, Any] = dict(host="tcp:127.0.0.1:8080", token=None,
                                  json=False, command=tuple(command))
    values.update(kw)
    return arguments.CommandLine(**values)


class Harness:
    """
    A memory reactor with a L{FakeDaemon} listening on port 8080, and
    string streams for the output.
    """

    def __init__(self, daemon: FakeDaemon | None = None) -> None:
        self.reactor = MemoryReactorClock()
        self.reactor.advance(NOW)
        self.daemon = daemon if daemon is not None else FakeDaemon()
        self.reactor.listenTCP(8080, Factory.forProtocol(lambda: self.daemon),
                               interface="127.0.0.1")
        self.out = io.StringIO()
        self.err = io.StringIO()
        self.pump: IOPump | None = None

    def run(self, opts: arguments.CommandLine, **kw: Any) -> Deferred[int]:
        d = ensureDeferred(cli.run(self.reactor, opts, self.out, self.err, **kw))
        self.pump = ConnectionCompleter(self.reactor).succeedOnce()
        self.flush()
        return d

    def flush(self) -> None:
        assert self.pump is not None
        self.pump.flush()

    def interrupt(self) -> None:
        """Ctrl-C: the reactor shuts down, which closes the connection."""
        for trigger, args, kwargs in self.reactor.triggers["before"]["shutdown"]:
            trigger(*args, **kwargs)
        self.daemon.disconnect()
        self.flush()


class DaemonSocket:
    """
    A non-blocking socket whose other end is a L{FakeDaemon}, in memory:
    C{recv} raises C{BlockingIOError} while the daemon has written nothing
    (the fast path's awaitables then suspend, and L{FastHarness.flush}
    resumes them), and returns C{b""} once it closed.
    """

    def __init__(self, daemon: FakeDaemon) -> None:
        self.daemon = daemon
        self.transport = StringTransport()
        daemon.makeConnection(self.transport)
        self.closed = False
        #: Ctrl-C: the next C{recv} raises C{KeyboardInterrupt}.
        self.interruptNext = False

    def sendall(self, data: bytes) -> None:
        self.daemon.dataReceived(data)

    def recv(self, size: int) -> bytes:
        if self.interruptNext:
            self.interruptNext = False
            raise KeyboardInterrupt()
        data = self.transport.value()
        self.transport.clear()
        if data:
            return data
        if self.transport.disconnecting:
            return b""
        raise BlockingIOError()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.daemon.connectionLost(Failure(ConnectionLost()))


class FastHarness:
    """
    The fast path (L{oneshot.callDaemon} with a L{oneshot.BlockingClient})
    against a L{FakeDaemon}, on a L{DaemonSocket}.
    """

    def __init__(self, daemon: FakeDaemon | None = None) -> None:
        self.daemon = daemon if daemon is not None else FakeDaemon()
        self.out = io.StringIO()
        self.err = io.StringIO()
        self.done: Deferred[int] = Deferred()

    def run(self, opts: arguments.CommandLine) -> Deferred[int]:
        self.socket = DaemonSocket(self.daemon)
        client = oneshot.BlockingClient(self.socket)
        clock = MemoryReactorClock()
        clock.advance(NOW)
        self.coroutine = oneshot.callDaemon(client, opts, self.out, self.err, clock)
        self.flush()
        return self.done

    def flush(self) -> None:
        """Let the call read what the daemon wrote."""
        if self.done.called:
            return
        try:
            self.coroutine.send(None)
        except StopIteration as e:
            self.done.callback(e.value)

    def interrupt(self) -> None:
        """Ctrl-C: KeyboardInterrupt in the blocking read."""
        self.socket.interruptNext = True
        self.flush()


class FakeStdio(StringTransport):
    """Standard input/output for L{piped.PipedRequests}, in memory."""

    protocol: Any = None

    def loseConnection(self) -> None:
        super().loseConnection()
        if self.protocol is not None:
            protocol, self.protocol = self.protocol, None
            protocol.connectionLost(Failure(ConnectionLost()))


def attach(stdio: FakeStdio) -> Callable[[Any], None]:
    def attachStdio(protocol: Any) -> None:
        stdio.protocol = protocol
        protocol.makeConnection(stdio)
    return attachStdio


def pipeInto(test: SynchronousTestCase, daemon: FakeDaemon, data: bytes,
             **kw: Any) -> tuple[Harness, str, int]:  # fmt: skip
    """
    Pipe C{data} into the client (no command: piped requests) against
    C{daemon}, to its end: the harness, what was printed, the exit status.
    """
    h = Harness(daemon)
    stdio = FakeStdio()
    d: Deferred[int] = h.run(options(**kw), attachStdio=attach(stdio))
    stdio.protocol.dataReceived(data)
    stdio.protocol.readConnectionLost()
    h.flush()
    return h, stdio.value().decode(), test.successResultOf(d)


class ParseArgumentsTests(SynchronousTestCase):
    """L{cli.parseArguments}."""

    ENV = {"HOME": "/nonexistent-home"}

    def test_defaults(self) -> None:
        """With nothing given: the default endpoint, no token, no command."""
        opts = cli.parseArguments([], self.ENV, uid=1000)
        self.assertEqual(opts.host, "tcp:127.0.0.1:8080")
        self.assertIsNone(opts.token)
        self.assertFalse(opts.json)
        self.assertEqual(opts.command, ())

    def test_commandWordsUntouched(self) -> None:
        """
        Options after the command word belong to the command, not to pycm
        (C{pycm logs --follow web}, C{pycm run -e A=1 --json x}).
        """
        opts = cli.parseArguments(
            ["--json", "-H", "unix:/s", "logs", "--follow", "--json", "web"],
            self.ENV, uid=1000,
        )
        self.assertTrue(opts.json)
        self.assertEqual(opts.host, "unix:/s")
        self.assertEqual(opts.command, ("logs", "--follow", "--json", "web"))

    def test_doubleDash(self) -> None:
        """C{--} ends pycm's options."""
        opts = cli.parseArguments(["--", "--weird"], self.ENV, uid=1000)
        self.assertEqual(opts.command, ("--weird",))

    def test_environment(self) -> None:
        """C{PYCM_HOST} and C{PYCM_TOKEN} are the defaults."""
        env = dict(self.ENV, PYCM_HOST="unix:/run/pycm.sock", PYCM_TOKEN="t0k")
        opts = cli.parseArguments(["ping"], env, uid=1000)
        self.assertEqual(opts.host, "unix:/run/pycm.sock")
        self.assertEqual(opts.token, "t0k")
        self.assertEqual(opts.tokenSource, "$PYCM_TOKEN")

    def test_chosenTokenRefused(self) -> None:
        """
        A token given with C{--token} or C{PYCM_TOKEN} that no request line
        can carry (a line break, bytes that are no UTF-8, a space or a
        control character) is a usage error saying where it came from and
        why, not a crash later; the token is never in it.
        """
        breaks = "has a line break in it: a token is one word"
        word = "has a space or a control character in it: a token is one word"
        for token, why in [("abcdefghijklmnopqrstu\nrm -f victim", breaks),
                           ("secret\rtoken", breaks),
                           ("abc\udc85def", "is not UTF-8 text"),
                           ("secret token", word),
                           ("secret\x1btoken", word)]:
            for argv, env, source in [(["ping"], dict(self.ENV, PYCM_TOKEN=token), "$PYCM_TOKEN"),
                                      (["--token", token, "ping"], self.ENV, "--token")]:
                error = self.assertRaises(cli.UsageError, cli.parseArguments, argv, env,
                                          uid=1000)
                self.assertEqual(str(error),
                                 f"the token from {source} {why} (the token was not sent)")
                self.assertFalse(error.hint)

    def test_realClientChosenToken(self) -> None:
        """
        The real client given a C{PYCM_TOKEN} no request can carry (a line
        break, bytes that are no UTF-8) says so in one line and exits 2,
        on both of its paths, without a traceback and without connecting.
        """
        listener = socket.socket()
        self.addCleanup(listener.close)
        listener.bind(("127.0.0.1", 0))
        listener.listen(5)
        home = os.path.abspath(self.mktemp())
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYCM_")}
        env.update(HOME=home, XDG_STATE_HOME=home,
                   PYCM_HOST=f"tcp:127.0.0.1:{listener.getsockname()[1]}")
        for token, why in [("abcdefghijklmnopqrstu\nrm -f victim",
                            "has a line break in it: a token is one word"),
                           ("abc\udc85def", "is not UTF-8 text")]:
            for client in ("", "twisted"):
                result = subprocess.run(
                    [sys.executable, "-m", "pycm.client.cli", "ping"], capture_output=True,
                    env=dict(env, PYCM_TOKEN=token, PYCM_CLIENT=client), timeout=60)
                self.assertEqual((result.returncode, result.stdout), (2, b""))
                self.assertEqual(result.stderr.decode().splitlines(), [
                    f"pycm: the token from $PYCM_TOKEN {why} (the token was not sent)"])
        listener.setblocking(False)
        self.assertRaises(BlockingIOError, listener.accept)

    def test_explicitWins(self) -> None:
        """C{--host} and C{--token} beat the environment."""
        env = dict(self.ENV, PYCM_HOST="unix:/x", PYCM_TOKEN="env")
        opts = cli.parseArguments(["--host=tcp:h:1", "--token", "cli", "ping"],
                                  env, uid=1000)
        self.assertEqual(opts.host, "tcp:h:1")
        self.assertEqual(opts.token, "cli")
        self.assertEqual(opts.tokenSource, "--token")

    def stateWithToken(self, listeners: list[dict[str, Any]] | None) -> dict[str, str]:
        """
        An environment whose default state directory has a token file and,
        unless C{listeners} is None, a listeners file listing C{listeners}.
        """
        state = FilePath(self.mktemp())
        state.child("pycm").makedirs()
        state.child("pycm").child("token").setContent(b"file-token-of-the-daemon\n")
        if listeners is not None:
            state.child("pycm").child("listeners").setContent(
                json.dumps(listeners).encode())
        return {"HOME": "/x", "XDG_STATE_HOME": state.path}

    def test_tokenFile(self) -> None:
        """
        The token file of the default state directory is read, and sent to
        an endpoint its daemon listens on with a token required.
        """
        env = self.stateWithToken(
            [{"kind": "tcp", "host": "127.0.0.1", "port": 8080, "token": True}])
        opts = cli.parseArguments(["ping"], env, uid=1000)
        self.assertEqual(opts.token, "file-token-of-the-daemon")
        self.assertEqual(opts.tokenSource,
                         os.path.join(env["XDG_STATE_HOME"], "pycm", "token"))
        self.assertIsNone(opts.tokenWithheld)

    def test_otherStateDirectory(self) -> None:
        """
        The token of a daemon on another state directory is found through
        the copy of its listeners file in the default one's C{listeners.d}:
        the token file that copy names, for the endpoint it lists alone.
        The default daemon's own file still names its own.
        """
        env = self.stateWithToken(
            [{"kind": "tcp", "host": "127.0.0.1", "port": 8080, "token": True}])
        other = FilePath(self.mktemp())
        other.makedirs()
        other.child("token").setContent(b"other-daemons-token\n")
        copies = FilePath(env["XDG_STATE_HOME"]).child("pycm").child("listeners.d")
        copies.makedirs()
        copies.child("a.json").setContent(json.dumps([
            {"kind": "tcp", "host": "127.0.0.1", "port": 18185, "token": True,
             "token_file": other.child("token").path}]).encode())
        opts = cli.parseArguments(["-H", "tcp:127.0.0.1:18185", "ping"], env, uid=1000)
        self.assertEqual((opts.token, opts.tokenSource, opts.tokenWithheld),
                         ("other-daemons-token", other.child("token").path, None))
        opts = cli.parseArguments(["ping"], env, uid=1000)
        self.assertEqual(opts.token, "file-token-of-the-daemon")
        opts = cli.parseArguments(["-H", "tcp:127.0.0.1:9999", "ping"], env, uid=1000)
        self.assertEqual((opts.token, opts.tokenWithheld),
                         (None, os.path.join(env["XDG_STATE_HOME"], "pycm", "token")))

    def test_otherStateDirectoryNotTrusted(self) -> None:
        """
        A copy others may write, one naming no token file or a relative
        one, or one in a file not ending in C{.json}, gives no token: the
        default state directory's is not sent in its stead.
        """
        other = FilePath(self.mktemp())
        other.makedirs()
        other.child("token").setContent(b"other-daemons-token\n")
        record = {"kind": "tcp", "host": "127.0.0.1", "port": 18185, "token": True,
                  "token_file": other.child("token").path}
        for name, value, mode in (
            ("a.json", record, 0o666),
            ("a.json", record, 0o620),
            ("a.json", dict(record, token_file=None), 0o600),
            ("a.json", dict(record, token_file="token"), 0o600),
            ("a.txt", record, 0o600),
        ):
            env = self.stateWithToken([])
            copies = FilePath(env["XDG_STATE_HOME"]).child("pycm").child("listeners.d")
            copies.makedirs()
            copies.child(name).setContent(json.dumps([value]).encode())
            copies.child(name).chmod(mode)
            opts = cli.parseArguments(["-H", "tcp:127.0.0.1:18185", "ping"], env, uid=1000)
            self.assertIsNone(opts.token, (name, value, mode))

    def test_tokenFileNotSentElsewhere(self) -> None:
        """
        The token file's token is not sent to an endpoint its daemon does
        not listen on (another port, another host, a UNIX socket), nor
        without a listeners file; the options say it was withheld.
        """
        listeners = [{"kind": "tcp", "host": "127.0.0.1", "port": 8080, "token": True}]
        for listed, host in (
            (listeners, "tcp:127.0.0.1:9999"),
            (listeners, "tcp:example.com:8080"),
            (listeners, "tcp:127.0.0.2:8080"),
            (listeners, "unix:/run/pycm.sock"),
            (listeners, "tls:127.0.0.1:9999"),
            (None, "tcp:127.0.0.1:8080"),
            ([], "tcp:127.0.0.1:8080"),
            ("garbage", "tcp:127.0.0.1:8080"),
        ):
            env = self.stateWithToken(listed)  # type: ignore[arg-type]
            opts = cli.parseArguments(["--host", host, "ping"], env, uid=1000)
            self.assertIsNone(opts.token, (listed, host))
            self.assertIsNone(opts.tokenSource, (listed, host))
            self.assertEqual(opts.tokenWithheld,
                             os.path.join(env["XDG_STATE_HOME"], "pycm", "token"))

    def test_tokenFileNotSentToNoAuthListener(self) -> None:
        """
        A listener that wants no token (C{--no-auth}) is not sent the
        token file's token, which it would refuse as a wrong token.
        """
        env = self.stateWithToken(
            [{"kind": "tcp", "host": "127.0.0.1", "port": 8080, "token": False}])
        opts = cli.parseArguments(["ping"], env, uid=1000)
        self.assertIsNone(opts.token)

    def test_tokenFileLoopbackNames(self) -> None:
        """
        C{localhost} is the daemon's 127.0.0.1 listener; a TLS listener on
        every address is reached on loopback, but no other name is assumed
        to be this machine.
        """
        env = self.stateWithToken([
            {"kind": "tcp", "host": "127.0.0.1", "port": 8080, "token": True},
            {"kind": "ssl", "host": "0.0.0.0", "port": 8443, "token": True},
            {"kind": "ssl", "host": "::", "port": 9443, "token": True},
        ])
        for host, sent in (
            ("tcp:localhost:8080", True),
            ("tcp:host=127.0.0.1:port=8080", True),
            ("tls:127.0.0.1:8443", True),
            ("tls:localhost:8443", True),
            ("tls:127.0.0.1:9443", True),
            ("tls:myhost.example:8443", False),
            ("tcp:127.0.0.1:8081", False),
        ):
            opts = cli.parseArguments(["--host", host, "ping"], env, uid=1000)
            self.assertEqual(opts.token == "file-token-of-the-daemon", sent, host)
        # The TLS listener's port over tcp: never its token in the clear.
        error = self.assertRaises(cli.UsageError, cli.parseArguments,
                                  ["--host", "tcp:localhost:8443", "ping"], env, uid=1000)
        self.assertIn("that port speaks TLS: use --host tls:localhost:8443", str(error))

    def test_chosenTokenSentAnywhere(self) -> None:
        """
        A token given with C{--token} or C{PYCM_TOKEN} is the user's choice:
        sent to whatever endpoint is given.
        """
        env = self.stateWithToken(None)
        opts = cli.parseArguments(["--host", "tcp:127.0.0.1:9999", "--token", "t", "ping"],
                                  env, uid=1000)
        self.assertEqual(opts.token, "t")
        opts = cli.parseArguments(["--host", "tcp:127.0.0.1:9999", "ping"],
                                  dict(env, PYCM_TOKEN="e"), uid=1000)
        self.assertEqual(opts.token, "e")

    def test_usageErrors(self) -> None:
        """Unknown options and missing values are L{cli.UsageError}s."""
        for argv in (["--bogus"], ["--host"], ["--token"]):
            self.assertRaises(cli.UsageError, cli.parseArguments, argv,
                              self.ENV, 1000)

    def test_plainOptionsAsArgparse(self) -> None:
        """
        pycm's own options, read without argparse when plainly spelled,
        read as argparse reads them; anything else is left to argparse.
        """
        for argv in (
            [], ["--json"], ["--host", "unix:/s"], ["--host=tcp:h:1"], ["-H", "x"],
            ["--token", "t"], ["--token=a=b"], ["--host", "a", "--host", "b", "--json"],
            ["--host", ""], ["--token", "t", "-H", "unix:path=/p:timeout=3"],
        ):
            plain = arguments._plainOptions(argv)
            assert plain is not None, argv
            parsed = arguments.makeParser().parse_args(argv)
            self.assertEqual(plain, (parsed.host, parsed.token, parsed.json), argv)
        for argv in (["--help"], ["-h"], ["--version"], ["--ho", "x"], ["--jso"],
                     ["-Hx"], ["-H=x"], ["--host"], ["--token", "-t"], ["--json=1"],
                     ["--bogus"]):
            self.assertIsNone(arguments._plainOptions(argv), argv)

    def test_lineBreakInArgument(self) -> None:
        """An argument with a line break cannot be one request line."""
        self.assertRaises(cli.UsageError, cli.parseArguments,
                          ["run", "a\nb"], self.ENV, 1000)

    def test_help(self) -> None:
        """C{--help} lists the commands and examples, and exits 0."""
        out = io.StringIO()
        self.patch(cli.sys, "stdout", out)
        e = self.assertRaises(SystemExit, cli.parseArguments, ["--help"],
                              self.ENV, 1000)
        self.assertEqual(e.code, 0)
        text = out.getvalue()
        for expected in ("--host", "--token", "--json", "commands", "examples",
                         "logs --follow", "exit status", "PYCM_HOST"):
            self.assertIn(expected, text)
        # argparse wraps the options' help: compare words.
        words = " ".join(text.split())
        self.assertIn("ssl: is refused", words)
        self.assertIn("status=STATE", words)


class ConfigTests(SynchronousTestCase):
    """L{statepaths.defaultStateDir} and friends."""

    def test_root(self) -> None:
        """Root's state directory is /var/lib/pycm."""
        self.assertEqual(statepaths.defaultStateDir({}, uid=0).path, "/var/lib/pycm")

    def test_xdg(self) -> None:
        """Others use C{$XDG_STATE_HOME/pycm}."""
        self.assertEqual(
            statepaths.defaultStateDir({"XDG_STATE_HOME": "/s", "HOME": "/h"},
                                   uid=1000).path,
            "/s/pycm",
        )

    def test_home(self) -> None:
        """
        Without C{XDG_STATE_HOME} (or with a relative one, which the XDG
        spec says to ignore): C{~/.local/state/pycm}.
        """
        for env in ({"HOME": "/h"}, {"HOME": "/h", "XDG_STATE_HOME": "rel"}):
            self.assertEqual(statepaths.defaultStateDir(env, uid=1000).path,
                             "/h/.local/state/pycm")

    def test_unreadableTokenFile(self) -> None:
        """A missing or empty token file gives no token."""
        path = FilePath(self.mktemp())
        self.assertIsNone(config.readTokenFile(path))
        path.setContent(b"  \n")
        self.assertIsNone(config.readTokenFile(path))


class OneShotTestsMixin:
    """
    One request from the command line, on either path: the subclasses say
    which harness (L{Harness}, the reactor's; L{FastHarness}, the fast
    path's) runs it.
    """

    harness: Callable[..., Any]

    def test_ok(self: Any) -> None:
        """An OK reply is printed for a person; the exit status is 0."""
        h = self.harness()
        d = h.run(options("ping"))
        self.assertEqual(self.successResultOf(d), 0)
        self.assertEqual(h.out.getvalue(), "pong\n")
        self.assertEqual(h.err.getvalue(), "")
        self.assertEqual(h.daemon.received, ["ping"])

    def test_err(self: Any) -> None:
        """
        An ERR reply: exit status 1, C{Error: <code>: <message>} on
        stderr, nothing on stdout.
        """
        h = self.harness(FakeDaemon({"inspect": "ERR not_found no such container: x"}))
        d = h.run(options("inspect", "x"))
        self.assertEqual(self.successResultOf(d), 1)
        self.assertEqual(h.out.getvalue(), "")
        self.assertEqual(h.err.getvalue(),
                         "Error: not_found: no such container: x\n")

    def test_infoUptime(self: Any) -> None:
        """
        C{info} prints its uptime as a duration (C{1m20s}, not seconds);
        with C{--json} the reply's seconds are printed as they came.
        """
        reply = {"backend": "memory", "uptime": 80.149}
        h = self.harness(FakeDaemon({"info": ok(reply)}))
        self.assertEqual(self.successResultOf(h.run(options("info"))), 0)
        self.assertIn("uptime:  1m20s\n", h.out.getvalue())
        h = self.harness(FakeDaemon({"info": ok(reply)}))
        self.assertEqual(self.successResultOf(h.run(options("info", json=True))), 0)
        self.assertEqual(json.loads(h.out.getvalue()), reply)

    def test_quoting(self: Any) -> None:
        """The arguments are joined into one line with shell quoting."""
        h = self.harness(FakeDaemon({"run": ok(WEB)}))
        self.successResultOf(h.run(options(
            "run", "web", "busybox", "sh", "-c", "echo hi; sleep 5")))
        self.assertEqual(h.daemon.received,
                         ["run web busybox sh -c 'echo hi; sleep 5'"])

    def test_json(self: Any) -> None:
        """With C{--json} the reply's JSON is printed as is."""
        h = self.harness(FakeDaemon({"inspect": ok(WEB)}))
        d = h.run(options("inspect", "web", json=True))
        self.assertEqual(self.successResultOf(d), 0)
        self.assertEqual(json.loads(h.out.getvalue()), WEB)

    def test_container(self: Any) -> None:
        """A container reply is printed as C{key: value} lines."""
        h = self.harness(FakeDaemon({"inspect": ok(WEB)}))
        self.successResultOf(h.run(options("inspect", "web")))
        lines = h.out.getvalue().splitlines()
        self.assertIn("name:           web", lines)
        self.assertIn("command:        sleep 100", lines)
        self.assertIn("exit_code:      -", lines)

    def test_listTable(self: Any) -> None:
        """C{list} (and C{ls}, C{ps}) print a C{docker ps}-like table."""
        for command in ("list", "ls", "ps"):
            h = self.harness(FakeDaemon({command: ok([DB, WEB])}))
            d = h.run(options(command))
            self.assertEqual(self.successResultOf(d), 0)
            lines = h.out.getvalue().splitlines()
            self.assertEqual(lines[0].split(), list(fmt.TABLE_COLUMNS))
            self.assertEqual(len(lines), 3)
            self.assertTrue(lines[1].startswith("db "))
            self.assertIn("exited", lines[1])
            self.assertIn("-15", lines[1])
            self.assertIn("3 days ago", lines[1])
            self.assertIn('"postgres -c \'a very long opti\N{HORIZONTAL ELLIPSIS}"',
                          lines[1])
            self.assertIn("4242", lines[2])
            self.assertIn("5 minutes ago", lines[2])
            self.assertIn('"sleep 100"', lines[2])
            # Columns line up: each header starts where its cells start.
            start = lines[0].index("IMAGE")
            self.assertEqual(lines[1][start:start + 4], "host")
            self.assertEqual(lines[2][start:start + 4], "host")

    def test_emptyList(self: Any) -> None:
        """An empty C{list} prints only the header."""
        h = self.harness(FakeDaemon({"list": ok([])}))
        self.successResultOf(h.run(options("list")))
        self.assertEqual(h.out.getvalue().split(), list(fmt.TABLE_COLUMNS))

    def test_wait(self: Any) -> None:
        """C{wait} prints the state and the exit code."""
        h = self.harness(FakeDaemon({"wait": ok({"name": "web", "state": "exited",
                                            "exit_code": 3})}))
        self.successResultOf(h.run(options("wait", "web")))
        self.assertEqual(h.out.getvalue(), "web: exited, exit code 3\n")

    def test_logs(self: Any) -> None:
        """
        C{logs} prints the lines' text; the container's stderr lines go to
        stderr, as with C{docker logs}.
        """
        lines = [{"time": "t", "stream": "stdout", "line": "one"},
                 {"time": "t", "stream": "stderr", "line": "two"},
                 {"time": "t", "stream": "stdout", "line": "three"}]
        h = self.harness(FakeDaemon({"logs": ok(lines)}))
        self.successResultOf(h.run(options("logs", "web")))
        self.assertEqual(h.out.getvalue(), "one\nthree\n")
        self.assertEqual(h.err.getvalue(), "two\n")

    def test_logsFollow(self: Any) -> None:
        """
        C{logs --follow} prints the backlog, then each EVENT log line, and
        exits 0 at C{log_end}; container events are not printed.
        """
        held: Deferred[Any] = Deferred()
        h = self.harness(FakeDaemon({"logs": lambda words: held}))
        d = h.run(options("logs", "--follow", "web"))
        held.callback([
            ok([{"time": "t", "stream": "stdout", "line": "old"}]),
            event({"type": "log", "name": "web", "line": "new 1"}),
            event({"type": "container", "id": 5, "action": "die",
                   "name": "web"}),
        ])
        h.flush()
        self.assertNoResult(d)
        self.assertEqual(h.out.getvalue(), "old\nnew 1\n")
        h.daemon.sendEvent({"type": "log", "name": "web", "line": "new 2"})
        h.daemon.sendEvent({"type": "log", "name": "web", "stream": "stderr",
                            "line": "oops"})
        h.daemon.sendEvent({"type": "log_end", "name": "web"})
        h.flush()
        self.assertEqual(self.successResultOf(d), 0)
        self.assertEqual(h.out.getvalue(), "old\nnew 1\nnew 2\n")
        self.assertEqual(h.err.getvalue(), "oops\n")

    def test_events(self: Any) -> None:
        """
        C{events} prints each event as it comes (the banner on stderr)
        until the connection ends; the daemon going away is exit status 3.
        """
        h = self.harness(FakeDaemon({"events": ok({"events": True, "last_id": 4})}))
        d = h.run(options("events"))
        self.assertNoResult(d)
        self.assertIn("last id 4", h.err.getvalue())
        h.daemon.sendEvent({"type": "container", "id": 5, "action": "start",
                            "name": "web", "time": "T"})
        h.flush()
        self.assertEqual(h.out.getvalue(), "T  #5  web  start\n")
        h.daemon.disconnect()
        h.flush()
        self.assertEqual(self.successResultOf(d), 3)
        self.assertIn("lost the connection", h.err.getvalue())

    def test_eventsRefused(self: Any) -> None:
        """
        C{events} whose request the daemon refuses (a bad filter) reports
        the error and ends with status 2 at once: nothing streams.
        """
        h = self.harness(FakeDaemon({"events": "ERR bad_request bad --filter 'x=1'"}))
        d = h.run(options("events", "--filter", "x=1"))
        h.flush()
        self.assertEqual(self.successResultOf(d), 2)
        self.assertIn("bad --filter", h.err.getvalue())

    def test_eventsJSON(self: Any) -> None:
        """C{--json events} prints each event's JSON on its own line."""
        h = self.harness(FakeDaemon({"events": ok({"events": True, "last_id": 0})}))
        d = h.run(options("events", json=True))
        ev = {"type": "container", "id": 1, "action": "create", "name": "a"}
        h.daemon.sendEvent(ev)
        h.flush()
        self.assertEqual([json.loads(x) for x in h.out.getvalue().splitlines()],
                         [{"events": True, "last_id": 0}, ev])
        self.assertNoResult(d)

    def test_authFirst(self: Any) -> None:
        """With a token, C{auth TOKEN} is sent before the command."""
        h = self.harness()
        self.successResultOf(h.run(options("ping", token="s3cret")))
        self.assertEqual(h.daemon.received, ["auth s3cret", "ping"])

    def test_unauthorizedHint(self: Any) -> None:
        """
        When the daemon refused the token, the error is that refusal (not
        the request's C{authenticate first}) and says where the token came
        from.
        """
        h = self.harness(FakeDaemon({
            "auth": "ERR unauthorized wrong token",
            "list": "ERR unauthorized authenticate first",
        }))
        d = h.run(options("list", token="bad", tokenSource="$PYCM_TOKEN"))
        self.assertEqual(self.successResultOf(d), 1)
        self.assertEqual(
            h.err.getvalue(),
            "Error: unauthorized: wrong token (from $PYCM_TOKEN)\n",
        )

    def test_noTokenHint(self: Any) -> None:
        """Without any token, C{unauthorized} explains how to give one."""
        h = self.harness(FakeDaemon({"list": "ERR unauthorized authenticate first"}))
        self.successResultOf(h.run(options("list")))
        self.assertIn("no token: use --token, set PYCM_TOKEN", h.err.getvalue())

    def test_withheldTokenHint(self: Any) -> None:
        """
        When the token file's token was not sent, C{unauthorized} says why
        and how to send it.
        """
        h = self.harness(FakeDaemon({"list": "ERR unauthorized authenticate first"}))
        self.successResultOf(h.run(options("list", tokenWithheld="/s/pycm/token")))
        self.assertEqual(h.daemon.received, ["list"])
        self.assertIn(
            "(the token in /s/pycm/token was not sent: tcp:127.0.0.1:8080 is not an "
            "endpoint the local daemon listens on with a token; to send it, use "
            "--token or set PYCM_TOKEN)", h.err.getvalue())

    def test_lostBeforeReply(self: Any) -> None:
        """The connection dropping before the reply: exit status 3."""
        h = self.harness(FakeDaemon({"stop": lambda words: Deferred()}))
        d = h.run(options("stop", "web"))
        h.daemon.disconnect()
        h.flush()
        self.assertEqual(self.successResultOf(d), 3)
        self.assertIn("lost the connection", h.err.getvalue())

    def test_interruptedBeforeReply(self: Any) -> None:
        """
        Ctrl-C while waiting (the reactor shuts down, closing the
        connection) is exit status 130 and says the daemon may go on, not
        that the daemon was lost.
        """
        h = self.harness(FakeDaemon({"stop": lambda words: Deferred()}))
        d = h.run(options("stop", "web"))
        h.interrupt()
        self.assertEqual(self.successResultOf(d), 130)
        self.assertIn("interrupted before the reply", h.err.getvalue())
        self.assertIn("stop web", h.err.getvalue())
        self.assertNotIn("lost the connection", h.err.getvalue())

    def test_interruptedDuringAuth(self: Any) -> None:
        """
        Ctrl-C while the C{auth} sent first waits for its answer is an
        interruption too (130, the request named), not an unreachable
        daemon; and it says the request was not sent (it was not).
        """
        h = self.harness(FakeDaemon({"auth": lambda words: Deferred()}))
        d = h.run(options("stop", "web", token="t"))
        self.assertNoResult(d)
        h.interrupt()
        self.assertEqual(self.successResultOf(d), 130)
        self.assertEqual(h.err.getvalue(), "pycm: interrupted before the request was "
                         "sent (while connecting): nothing was sent: stop web\n")
        self.assertEqual(h.daemon.received, ["auth t"])

    def test_notAPycmDaemon(self: Any) -> None:
        """
        A server that does not speak the protocol (say, an HTTP server):
        exit status 3 and a message saying so, not a traceback.
        """
        h = self.harness(FakeDaemon({"ping": "HTTP/1.1 400 Bad Request"}))
        d = h.run(options("ping"))
        self.assertEqual(self.successResultOf(d), 3)
        self.assertIn("does not answer like a pycm daemon", h.err.getvalue())
        self.flushLoggedErrors()

    def test_notAPycmDaemonAtAuth(self: Any) -> None:
        """The same when the garbage answers the C{auth} sent first."""
        h = self.harness(FakeDaemon({"auth": "HTTP/1.1 400 Bad Request"}))
        d = h.run(options("ping", token="t"))
        self.assertEqual(self.successResultOf(d), 3)
        self.assertIn("cannot reach the pycm daemon", h.err.getvalue())
        self.flushLoggedErrors()



class OneShotReactorTests(OneShotTestsMixin, SynchronousTestCase):
    """L{OneShotTestsMixin} in the reactor (C{tls:}, C{$PYCM_CLIENT=twisted})."""

    harness = Harness


class OneShotFastTests(OneShotTestsMixin, SynchronousTestCase):
    """L{OneShotTestsMixin} on the fast path (plain C{tcp:} and C{unix:})."""

    harness = FastHarness


class ReactorPathTests(SynchronousTestCase):
    """What only the reactor's path does: parse any endpoint, connect."""

    def test_connectionRefused(self) -> None:
        """
        When the daemon cannot be reached: exit status 3 and a message
        naming the endpoint.
        """
        reactor = MemoryReactorClock()
        out, err = io.StringIO(), io.StringIO()
        d = ensureDeferred(cli.run(reactor, options("ping"), out, err))
        ConnectionCompleter(reactor).failOnce()
        self.assertEqual(self.successResultOf(d), 3)
        self.assertEqual(
            err.getvalue(),
            "Error: cannot reach the pycm daemon at tcp:127.0.0.1:8080: "
            "connection refused (is the daemon running?)\n",
        )

    def test_badEndpoint(self) -> None:
        """A malformed endpoint string is a usage error (exit status 2)."""
        reactor = MemoryReactorClock()
        out, err = io.StringIO(), io.StringIO()
        d = ensureDeferred(cli.run(reactor, options("ping", host="bogus:x"),
                                   out, err))
        self.assertEqual(self.successResultOf(d), 2)
        self.assertIn("bad endpoint 'bogus:x'", err.getvalue())

    def longSocketPath(self, size: int) -> str:
        """An absolute socket path of C{size} bytes."""
        path = "/" + "d" * 50 + "/"
        return path + "s" * (size - len(path))

    def test_socketPathTooLong(self) -> None:
        """
        A UNIX socket path too long for a socket address is a usage error
        (exit status 2) saying so, in every mode (one request, piped, the
        shell), and no connection is attempted: Twisted would hang on it.
        """
        longest = connecting.MAX_UNIX_PATH
        for host in (f"unix:{self.longSocketPath(longest + 1)}",
                     f"unix:path={self.longSocketPath(longest + 60)}:timeout=5"):
            for command, mode in [(("ping",), {}),
                                  ((), {"attachStdio": attach(FakeStdio())}),
                                  ((), {"interactive": True})]:
                reactor = MemoryReactorClock()
                err = io.StringIO()
                d = ensureDeferred(cli.run(reactor, options(*command, host=host),
                                           io.StringIO(), err, **mode))
                self.assertEqual(self.successResultOf(d), 2)
                self.assertEqual(reactor.unixClients, [])
                self.assertIn(f"bad endpoint {host!r}: the socket path is ", err.getvalue())
                self.assertIn(f"at most {longest}", err.getvalue())

    def test_longestSocketPath(self) -> None:
        """A socket path of the longest size allowed is connected to."""
        path = self.longSocketPath(connecting.MAX_UNIX_PATH)
        reactor = MemoryReactorClock()
        d = ensureDeferred(cli.run(reactor, options("ping", host=f"unix:{path}"),
                                   io.StringIO(), io.StringIO()))
        self.assertNoResult(d)
        self.assertEqual([client[0] for client in reactor.unixClients], [path])
        factory = reactor.unixClients[0][1]
        factory.clientConnectionFailed(reactor.connectors[0],
                                       Failure(ConnectionRefusedError()))
        self.assertEqual(self.successResultOf(d), 3)

    def test_dockerStyleEndpointHint(self) -> None:
        """
        A Docker-style address (C{HOST:PORT}, C{tcp://HOST:PORT}) is a
        usage error that names the endpoint string it means.
        """
        for given, meant in [
            ("127.0.0.1:8080", "tcp:127.0.0.1:8080"),
            ("tcp://localhost:9000", "tcp:localhost:9000"),
            ("tcp://localhost", "tcp:HOST:PORT"),
        ]:
            err = io.StringIO()
            d = ensureDeferred(cli.run(MemoryReactorClock(), options("ping", host=given),
                                       io.StringIO(), err))
            self.assertEqual(self.successResultOf(d), 2)
            self.assertIn(f"did you mean {meant}?", err.getvalue())
        self.assertIsNone(connecting.endpointHint("bogus:x"))

    def test_unknownEndpointTypeSaysWhatIsExpected(self) -> None:
        """
        An endpoint string of no known type and no Docker-style meaning
        (C{--host foo}) is a usage error that says what C{--host} takes.
        """
        for given in ("foo", "bogus:x"):
            err = io.StringIO()
            d = ensureDeferred(cli.run(MemoryReactorClock(), options("ping", host=given),
                                       io.StringIO(), err))
            self.assertEqual(self.successResultOf(d), 2)
            self.assertIn(f"bad endpoint {given!r}: Unknown endpoint type", err.getvalue())
            self.assertIn(
                "(--host takes a Twisted client endpoint string: tcp:HOST:PORT, unix:PATH "
                "or tls:HOST:PORT)", err.getvalue()
            )

    def test_mainUsageError(self) -> None:
        """C{main} exits 2 on a usage error, before touching any reactor."""
        err = io.StringIO()
        self.patch(cli.sys, "stderr", err)
        e = self.assertRaises(SystemExit, cli.main, ["--nope"])
        self.assertEqual(e.code, 2)
        self.assertIn("--nope", err.getvalue())


class PipedTests(SynchronousTestCase):
    """Requests piped on standard input."""

    def start(self, daemon: FakeDaemon, **kw: Any) -> tuple[
            Harness, FakeStdio, Deferred[int]]:
        h = Harness(daemon)
        stdio = FakeStdio()
        d = h.run(options(**kw), attachStdio=attach(stdio))
        return h, stdio, d

    def test_repliesInOrder(self) -> None:
        """
        Each line is a request; replies are printed in request order, even
        in chunks of any size; blank and comment lines are skipped; the exit
        status is 0 when all were OK.  A last line without a newline counts.
        """
        data = b"ping\n\n# comment\r\nversion\r\nlist\nping"
        for size in range(1, len(data) + 1):
            held: Deferred[Any] = Deferred()
            def version(words: list[str], held: Deferred[Any] = held) -> Any:
                return held

            daemon = FakeDaemon({"version": version, "list": ok([])})
            h, stdio, d = self.start(daemon)
            for i in range(0, len(data), size):
                stdio.protocol.dataReceived(data[i:i + size])
            h.flush()
            self.assertEqual(stdio.value(), b"pong\n")
            held.callback(ok({"server": "pycm"}))
            stdio.protocol.readConnectionLost()
            h.flush()
            self.assertEqual(self.successResultOf(d), 0)
            self.assertEqual(
                stdio.value().decode().splitlines(),
                ["pong", "server: pycm", "   ".join(fmt.TABLE_COLUMNS), "pong"],
            )
            self.assertEqual(daemon.received, ["ping", "version", "list", "ping"])

    def test_errExitsOne(self) -> None:
        """An ERR reply makes the exit status 1; the others still print."""
        h, stdio, d = self.start(FakeDaemon(
            {"stop": "ERR not_found no such container: web"}))
        stdio.protocol.dataReceived(b"stop web\nping\n")
        stdio.protocol.readConnectionLost()
        h.flush()
        self.assertEqual(self.successResultOf(d), 1)
        self.assertEqual(stdio.value(), b"pong\n")
        self.assertIn("Error: not_found: no such container", h.err.getvalue())

    def test_errSaysWhichLine(self) -> None:
        """
        With many lines in flight, an error says which line failed, by its
        number and command, never its values (an C{auth} token, an env
        value).
        """
        h, stdio, d = self.start(FakeDaemon({
            "auth": "ERR unauthorized wrong token",
            "run": "ERR conflict container web exists",
        }))
        stdio.protocol.dataReceived(b"ping\n\nauth s3cret\nrun -e PW=hunter2 web\n")
        stdio.protocol.readConnectionLost()
        h.flush()
        self.assertEqual(self.successResultOf(d), 1)
        err = h.err.getvalue().splitlines()
        self.assertEqual(len(err), 2, err)
        self.assertTrue(err[0].startswith("line 3 (auth): Error: "), err)
        self.assertTrue(err[1].startswith("line 4 (run): Error: "), err)
        self.assertNotIn("s3cret", h.err.getvalue())
        self.assertNotIn("hunter2", h.err.getvalue())

    def test_malformedExitsTwo(self) -> None:
        """
        A line the daemon refuses as malformed (C{bad_request},
        C{invalid_name}) is a usage error, exit status 2, as on the command
        line; the status is the worst of the lines', whatever their order.
        """
        for lines in (b"nope\nping\n", b"run a\nstop web\n", b"stop web\nrun a\n"):
            h, stdio, d = self.start(FakeDaemon({
                "stop": "ERR not_found no such container: web",
                "run": "ERR invalid_name invalid container name 'a'",
            }))
            stdio.protocol.dataReceived(lines)
            stdio.protocol.readConnectionLost()
            h.flush()
            self.assertEqual(self.successResultOf(d), 2, lines)

    def test_eventsPrinted(self) -> None:
        """EVENT lines are printed as they come, between replies."""
        daemon = FakeDaemon({"events": [ok({"events": True, "last_id": 0}),
                                        event({"type": "log", "name": "w",
                                               "line": "hi"})]})
        h, stdio, d = self.start(daemon)
        stdio.protocol.dataReceived(b"events\nping\n")
        stdio.protocol.readConnectionLost()
        h.flush()
        self.assertEqual(self.successResultOf(d), 0)
        self.assertEqual(stdio.value().decode().splitlines(),
                         ["Watching events (last id 0)", "w | hi", "pong"])

    def test_jsonRawLines(self) -> None:
        """With C{--json}: the OK/ERR/EVENT lines, normalised, in order."""
        daemon = FakeDaemon({"x": ["EVENT 1", "ERR conflict taken"]})
        h, stdio, d = self.start(daemon, json=True)
        stdio.protocol.dataReceived(b"ping\nx\n")
        stdio.protocol.readConnectionLost()
        h.flush()
        self.assertEqual(self.successResultOf(d), 1)
        self.assertEqual(stdio.value().decode().splitlines(),
                         ['OK "pong"', "EVENT 1", "ERR conflict taken"])

    def test_window(self) -> None:
        """
        With more than WINDOW requests in flight, reading stdin pauses;
        it resumes once replies drain.
        """
        held: list[Deferred[Any]] = []

        def hold(words: list[str]) -> Deferred[Any]:
            held.append(Deferred())
            return held[-1]

        h, stdio, d = self.start(FakeDaemon({"wait": hold}))
        window = piped.PipedRequests.WINDOW
        stdio.protocol.dataReceived(b"wait x\n" * window)
        h.flush()
        self.assertEqual(stdio.producerState, "paused")
        for x in held:
            x.callback(ok("done"))
        h.flush()
        self.assertEqual(stdio.producerState, "producing")
        stdio.protocol.readConnectionLost()
        h.flush()
        self.assertEqual(self.successResultOf(d), 0)
        self.assertEqual(stdio.value(), b"done\n" * window)

    def test_daemonLost(self) -> None:
        """The daemon going away mid-stream: exit status 3."""
        h, stdio, d = self.start(FakeDaemon({"wait": lambda w: Deferred()}))
        stdio.protocol.dataReceived(b"wait x\nping\n")
        h.flush()
        h.daemon.disconnect()
        h.flush()
        self.assertEqual(self.successResultOf(d), 3)
        self.assertIn("lost the connection", h.err.getvalue())

    def test_exitLine(self) -> None:
        """
        An C{exit} line: its reply is printed, the daemon's closing is not
        an error, and it ends the session: lines after it are not sent.
        """
        h, stdio, d = self.start(FakeDaemon())
        stdio.protocol.dataReceived(b"ping\nexit\n")
        h.flush()
        self.assertEqual(self.successResultOf(d), 0)
        self.assertEqual(stdio.value(), b"pong\nbye\n")
        self.assertEqual(h.err.getvalue(), "")
        self.assertEqual(h.daemon.received, ["ping", "exit"])

    def test_emptyInput(self) -> None:
        """No input at all: exit status 0 and nothing printed."""
        h, stdio, d = self.start(FakeDaemon())
        stdio.protocol.readConnectionLost()
        h.flush()
        self.assertEqual(self.successResultOf(d), 0)
        self.assertEqual(stdio.value(), b"")

    def test_badUTF8(self) -> None:
        """
        A line that is not UTF-8 is a malformed request (exit status 2);
        the rest goes on.
        """
        h, stdio, d = self.start(FakeDaemon())
        stdio.protocol.dataReceived(b"\xff\xfe\nping\n")
        stdio.protocol.readConnectionLost()
        h.flush()
        self.assertEqual(self.successResultOf(d), 2)
        self.assertEqual(stdio.value(), b"pong\n")


class FormatTests(SynchronousTestCase):
    """L{pycm.client.format}."""

    def test_ago(self) -> None:
        """Relative times read like C{docker ps}."""
        cases = [(0.2, "Less than a second ago"), (1, "1 second ago"),
                 (59, "59 seconds ago"), (60, "1 minute ago"),
                 (7200, "2 hours ago"), (86400 * 3, "3 days ago"),
                 (86400 * 21, "3 weeks ago")]
        for delta, text in cases:
            self.assertEqual(fmt.ago(formatTime(NOW - delta), NOW), text)
        self.assertEqual(fmt.ago(None, NOW), "-")

    def test_event(self) -> None:
        """Events read as one line each."""
        self.assertEqual(
            fmt.formatEvent({"type": "container", "id": 3, "action": "die",
                             "name": "web", "time": "T", "exit_code": 1}),
            "T  #3  web  die (exit code 1)",
        )
        self.assertEqual(fmt.formatEvent({"type": "log", "name": "w",
                                          "line": "x"}), "w | x")
        self.assertEqual(fmt.formatEvent({"type": "log_end", "name": "w"}),
                         "w: end of logs")

    def test_nested(self) -> None:
        """Nested objects (C{info}) are indented under their key."""
        lines = fmt.formatReply("info", {"backend": "memory",
                                         "containers": {"running": 2}}, NOW)
        self.assertEqual(lines, ["backend:    memory", "containers:",
                                 "  running: 2"])

    def test_duration(self) -> None:
        """Durations read as Go's (docker's), in whole seconds."""
        cases = [(0.4, "0s"), (59.9, "59s"), (80.149, "1m20s"), (3600, "1h0m0s"),
                 (90061, "25h1m1s")]
        for seconds, text in cases:
            self.assertEqual(fmt.duration(seconds), text)

    def test_rm(self) -> None:
        """C{rm} says what it removed."""
        self.assertEqual(fmt.formatReply("rm", {"name": "w", "removed": True},
                                         NOW), ["w removed"])



class InterruptTestsMixin:
    """Ctrl-C while streaming, on either path."""

    harness: Callable[..., Any]

    def test_eventsInterrupted(self: Any) -> None:
        """
        Stopping the reactor (Ctrl-C) while C{events} streams ends it with
        status 0 and no "lost the connection" message.
        """
        h = self.harness(FakeDaemon({"events": ok({"events": True, "last_id": 0})}))
        d = h.run(options("events"))
        self.assertIn("Watching events", h.err.getvalue())
        h.interrupt()
        self.assertEqual(self.successResultOf(d), 0)
        self.assertNotIn("lost", h.err.getvalue())


class InterruptReactorTests(InterruptTestsMixin, SynchronousTestCase):
    """L{InterruptTestsMixin} in the reactor."""

    harness = Harness


class InterruptFastTests(InterruptTestsMixin, SynchronousTestCase):
    """L{InterruptTestsMixin} on the fast path."""

    harness = FastHarness


class CommandHelpTests(SynchronousTestCase):
    """
    C{pycm help COMMAND} (C{pycm COMMAND --help}): the daemon's usage line
    and summary, as the real command table gives them, and what the client
    adds.
    """

    def help(self, name: str) -> list[str]:
        from pycm.daemon.commands import BY_WORD

        return fmt.formatHelp(BY_WORD[name].describe())

    def test_severalNames(self) -> None:
        """
        The commands the client takes several names for say C{NAME...} and
        how they are done; the others keep the daemon's C{NAME}.
        """
        for name in ("stop", "start", "restart", "kill", "rm", "logs", "wait"):
            lines = self.help(name)
            self.assertTrue(lines[0].startswith(f"usage: {name} "), lines[0])
            self.assertTrue(lines[0].endswith(" NAME..."), lines[0])
            self.assertIn("one request each", "\n".join(lines))
        self.assertEqual(self.help("stop")[0], "usage: stop [-t|--time=SECONDS] NAME...")
        for name in ("inspect", "unfollow"):
            lines = self.help(name)
            self.assertTrue(lines[0].endswith(" NAME"), lines[0])
            self.assertNotIn("one request each", "\n".join(lines))

    def test_runOptionsDescribed(self) -> None:
        """
        C{run --help} and C{create --help} describe every option of theirs
        (C{run}'s C{-d} too), each at the start of a line as C{docker run
        --help} does, and what each restart policy means.
        """
        for name in ("run", "create"):
            text = "\n".join(self.help(name))
            for option in commandtable.BY_WORD[name].options:
                spelled = f"  -{option.short}, --{option.name}" if option.short \
                    else f"  --{option.name}"
                self.assertIn("\n" + spelled, text, (name, option.name))
            for policy in ("no", "on-failure[:MAX]", "always", "unless-stopped"):
                self.assertRegex(text, rf"\n +{re.escape(policy)} +\S", (name, policy))
            self.assertIn("powers of 1024", text)
            self.assertIn("KILL, 0 to 3600", text)

    def test_listFilters(self) -> None:
        """
        C{ls --help} (C{ps}, C{list}) names the filter keys, C{status} (docker's
        name, which the daemon takes) first.
        """
        for word in ("list", "ls", "ps"):
            text = "\n".join(self.help(word))
            self.assertIn("status=STATE", text)
            self.assertIn("name=TEXT", text)
            self.assertIn("label=KEY[=VALUE]", text)
            self.assertIn("[-f|--filter=status|state|label|name=VALUE]...",
                          self.help(word)[0])

    def test_logsTimestamps(self) -> None:
        """
        C{logs --help} names C{-t}/C{--timestamps} (which the client reads
        itself, so the daemon's usage lacks it) in the usage line and says
        what it does, with every other option of C{logs}.
        """
        lines = self.help("logs")
        self.assertIn(" [-t|--timestamps] NAME...", lines[0])
        text = "\n".join(lines)
        self.assertIn("\n  -t, --timestamps ", text)
        for option in commandtable.BY_WORD["logs"].options:
            spelled = f"  -{option.short}, --{option.name}" if option.short \
                else f"  --{option.name}"
            self.assertIn("\n" + spelled, text, option.name)

    def test_stopTimeDefault(self) -> None:
        """
        C{stop --help} and C{restart --help} say what C{--time} is and its
        default: the container's C{--stop-timeout}, whose own default is
        L{pycm.model.DEFAULT_STOP_TIMEOUT}.
        """
        from pycm.model import DEFAULT_STOP_TIMEOUT

        for name in ("stop", "restart"):
            text = " ".join(" ".join(self.help(name)).split())
            self.assertIn("-t, --time=SECONDS", text)
            self.assertIn("[default: the container's --stop-timeout, "
                          f"{DEFAULT_STOP_TIMEOUT:g} unless run or create set it]", text)


class ContainerLineTests(SynchronousTestCase):
    def test_containerLine(self) -> None:
        """
        A command that acts on a container prints one line about it in the
        shell and for piped requests (one-shot, L{fmt.actedOn} prints the
        name alone); inspect prints every field.
        """
        container = {"name": "web", "state": "exited", "image": "host", "pid": None,
                     "exit_code": -15, "error": None}
        self.assertEqual(fmt.formatReply("stop", container, 0), ["web  exited  exit code -15"])
        running = dict(container, state="running", pid=7, exit_code=None)
        self.assertEqual(fmt.formatReply("run", running, 0), ["web  running  pid 7"])
        self.assertRegex("\n".join(fmt.formatReply("inspect", container, 0)), r"state: +exited")


class FakeSocket:
    """
    A blocking socket's calls, scripted: C{recv} returns the next of
    C{replies} (bytes) or raises it (an exception); what is sent is kept.
    """

    def __init__(self, replies: list[bytes | BaseException]) -> None:
        self.replies = list(replies)
        self.sent: list[bytes] = []
        self.closed = False

    def sendall(self, data: bytes) -> None:
        self.sent.append(data)

    def recv(self, size: int) -> bytes:
        reply = self.replies.pop(0) if self.replies else b""
        if isinstance(reply, BaseException):
            raise reply
        return reply

    def close(self) -> None:
        self.closed = True


class BlockingClientTests(SynchronousTestCase):
    """L{oneshot.BlockingClient} on a blocking socket, run by L{oneshot.runToEnd}."""

    def call(self, sock: FakeSocket, *command: str, **kw: Any) -> tuple[
            int, io.StringIO, io.StringIO]:
        out, err = io.StringIO(), io.StringIO()
        client = oneshot.BlockingClient(sock)
        code = oneshot.runToEnd(oneshot.callDaemon(client, options(*command, **kw),
                                                   out, err))
        self.assertTrue(sock.closed)
        return code, out, err

    def test_byteByByte(self) -> None:
        """
        Replies split anywhere (here one byte at a time, CRLF ends) read as
        whole lines; C{auth} is answered before the request is sent; an
        event before the reply is shown after it.
        """
        wire = b'OK "authenticated"\r\nEVENT {"type": "progress", "name": "web", ' \
               b'"action": "pull"}\nOK ' + json.dumps(WEB).encode() + b"\r\n"
        sock = FakeSocket([wire[i:i + 1] for i in range(len(wire))])
        code, out, err = self.call(sock, "run", "web", token="t")
        self.assertEqual(code, 0)
        self.assertEqual(b"".join(sock.sent), b"auth t\nrun web\n")
        self.assertEqual(out.getvalue(), "web  running  pid 4242\nweb: pull\n")
        self.assertEqual(err.getvalue(), "")

    def test_interrupted(self) -> None:
        """Ctrl-C (KeyboardInterrupt) in the read before the reply: 130."""
        code, out, err = self.call(FakeSocket([KeyboardInterrupt()]), "stop", "web")
        self.assertEqual(code, 130)
        self.assertEqual(err.getvalue(), "pycm: interrupted before the reply (the "
                         "daemon may still carry it out): stop web\n")

    def test_interruptedStream(self) -> None:
        """Ctrl-C after the reply of C{events} is its normal end: 0."""
        sock = FakeSocket([ok({"events": True, "last_id": 1}).encode() + b"\n",
                           KeyboardInterrupt()])
        code, out, err = self.call(sock, "events")
        self.assertEqual(code, 0)
        self.assertNotIn("lost", err.getvalue())

    def test_signalBetweenReads(self) -> None:
        """
        The signal handler raises only in a read; a signal outside one
        (while a reply is printed) ends the next read instead.
        """
        client = oneshot.BlockingClient(FakeSocket([]))
        client.interrupt()
        self.assertTrue(client.pendingInterrupt)
        client.reading = True
        self.assertRaises(KeyboardInterrupt, client.interrupt)
        code, out, err = self.call(FakeSocket([b"OK 1\n"]), "ping")
        self.assertEqual(code, 0)

    def test_reset(self) -> None:
        """A connection reset before the reply is a lost daemon: 3."""
        code, out, err = self.call(FakeSocket([ConnectionResetError()]), "ping")
        self.assertEqual(code, 3)
        self.assertEqual(err.getvalue(), "Error: lost the connection to the pycm "
                         "daemon at tcp:127.0.0.1:8080\n")

    def test_tooLong(self) -> None:
        """
        A reply over the client's limit ends the call (not the machine's
        memory), as the reactor's client does.
        """
        self.patch(oneshot, "MAX_REPLY_LENGTH", 10)
        code, out, err = self.call(FakeSocket([b"OK " + b"x" * 20]), "ping")
        self.assertEqual(code, 3)
        self.assertIn("longer than 10 bytes", err.getvalue())


class FastPathTests(SynchronousTestCase):
    """What only the fast path does: read plain endpoints, connect."""

    def test_socketAddress(self) -> None:
        """
        C{tcp:} and C{unix:} strings, positional or with keywords, as
        Twisted's parsers read them.
        """
        inet, unix = socket.AF_INET, socket.AF_UNIX
        for description, expected in [
            ("tcp:127.0.0.1:8080", (inet, ("127.0.0.1", 8080), 30, None)),
            ("tcp:localhost:1:timeout=5", (inet, ("localhost", 1), 5, None)),
            ("tcp:host=h:port=2", (inet, ("h", 2), 30, None)),
            ("tcp:3:host=h", (inet, ("h", 3), 30, None)),
            ("unix:/run/p.sock", (unix, "/run/p.sock", 30, "/run/p.sock")),
            ("unix:path=rel.sock:timeout=2", (unix, "rel.sock", 2, "rel.sock")),
        ]:
            self.assertEqual(oneshot.socketAddress(description),
                             oneshot.SocketAddress(*expected), description)

    def test_othersToTheReactor(self) -> None:
        """
        Any other string is left to the reactor's path (which refuses it,
        with its hints, or connects): C{tls:}, escapes, unknown keywords,
        Docker-style addresses, bad ports.
        """
        for description in [
            "tls:127.0.0.1:8080", "ssl:h:1", "bogus:x", "tcp://h:1", "h:1",
            "127.0.0.1:8080", "tcp:h", "tcp:h:x", "tcp:h:99999",
            "tcp:h:1:bindAddress=1.2.3.4", r"tcp:\:\:1:80", "unix:/s:checkPID=1",
            "unix:", "tcp:h:1:timeout=0", "tcp:h:1:timeout=x", "TCP:h:1",
            "unix:/a=b",
        ]:
            self.assertIsNone(oneshot.socketAddress(description), description)
            self.assertIsNone(oneshot.main(options("ping", host=description),
                                           io.StringIO(), io.StringIO()))

    def test_socketPathTooLong(self) -> None:
        """
        A UNIX socket path too long for a socket address is refused before
        connecting, with the reactor's words and exit status 2.
        """
        path = "/" + "d" * 50 + "/" + "s" * 60
        for host in (f"unix:{path}", f"unix:path={path}:timeout=5"):
            err = io.StringIO()
            self.assertEqual(oneshot.main(options("ping", host=host), io.StringIO(), err), 2)
            reactorErr = io.StringIO()
            d = ensureDeferred(cli.run(MemoryReactorClock(), options("ping", host=host),
                                       io.StringIO(), reactorErr))
            self.assertEqual(self.successResultOf(d), 2)
            self.assertEqual(err.getvalue(), reactorErr.getvalue())

    def test_connectErrors(self) -> None:
        """
        A failure to connect is worded as the reactor words the same
        failure: refused, no such socket, permission denied, timed out, no
        such host.
        """
        for raised, expected in [
            (OSError(errno.ECONNREFUSED, "x"),
             "connection refused (is the daemon running?)"),
            (FileNotFoundError(errno.ENOENT, "x"),
             "no such socket (is the daemon running? is this its --listen path?)"),
            (NotADirectoryError(errno.ENOTDIR, "x"),
             "no such socket (is the daemon running? is this its --listen path?)"),
            (PermissionError(errno.EACCES, "x"),
             "permission denied (the socket is mode 0600, or 0660 with the "
             "daemon's --socket-group: run as its user or join that group)"),
            (TimeoutError("timed out"), "User timeout caused connection failure."),
            (socket.gaierror(-2, "Name or service not known"), "no such host"),
        ]:
            reason = oneshot.connectError(raised)
            self.assertEqual(str(cli.CannotConnect("tcp:h:1", reason)),
                             f"cannot reach the pycm daemon at tcp:h:1: {expected}")
        twisted = twistedErrors.getConnectError(
            (errno.ECONNREFUSED, os.strerror(errno.ECONNREFUSED)))
        self.assertEqual(str(oneshot.connectError(
            OSError(errno.ECONNREFUSED, "Connection refused"))), str(twisted))

    def test_useReactor(self) -> None:
        """
        Piped requests and the shell need the reactor; one request does
        not, unless C{$PYCM_CLIENT=twisted} says so.
        """
        self.assertTrue(cli.useReactor(options(), {}))
        self.assertFalse(cli.useReactor(options("ls"), {}))
        self.assertFalse(cli.useReactor(options("ls"), {"PYCM_CLIENT": "fast"}))
        self.assertTrue(cli.useReactor(options("ls"), {"PYCM_CLIENT": "twisted"}))

    def test_noTwistedImported(self) -> None:
        """
        The console script's module, the fast path and the formatting code
        import neither Twisted nor attrs (importing the reactor is most of
        a one-shot call's time).
        """
        # Against what the interpreter had before: an old zope.interface's
        # namespace .pth file imports zope at start-up, before any pycm.
        code = ("import sys; before = set(sys.modules); "
                "import pycm, pycm.client.cli, pycm.client.oneshot, "
                "pycm.client.format, pycm.client.config; "
                "print(sorted({m.split('.')[0] for m in set(sys.modules) - before} & "
                "{'twisted', 'attrs', 'attr', 'zope', 'OpenSSL', 'cryptography'}))")
        result = subprocess.run([sys.executable, "-c", code], capture_output=True,
                                text=True, check=True)
        self.assertEqual(result.stdout, "[]\n", result.stderr)


class InterruptedMessageTests(SynchronousTestCase):
    """What Ctrl-C before the reply says the daemon does with the request."""

    def said(self, command: str, reset: bool) -> str:
        from pycm.client.exits import interruptedBeforeReply

        err = io.StringIO()
        self.assertEqual(interruptedBeforeReply(f"{command} x", err, command, reset), 130)
        return err.getvalue()

    def test_applyReset(self) -> None:
        """An apply whose connection was reset is abandoned, as the README says."""
        self.assertIn("the daemon abandons the apply where it is", self.said("apply", True))

    def test_applyOverUnix(self) -> None:
        """Over a UNIX socket (no reset) the daemon finishes the apply: said so."""
        self.assertIn("the daemon finishes the apply", self.said("apply", False))

    def test_others(self) -> None:
        """A wait changes nothing; anything else may still be carried out."""
        self.assertIn("(a wait changes nothing): wait x", self.said("wait", True))
        self.assertIn("may still carry it out): stop x", self.said("stop", True))

    def test_canReset(self) -> None:
        """A TCP connection can be reset (and says so); a UNIX socket's cannot."""
        from pycm.client.protocol import canReset

        class Transport:
            def __init__(self, handle: socket.socket) -> None:
                self.handle = handle

            def getHandle(self) -> socket.socket:
                return self.handle

        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(tcp.close)
        self.addCleanup(unix.close)
        self.assertTrue(canReset(Transport(tcp)))
        self.assertFalse(canReset(Transport(unix)))
        self.assertFalse(canReset(None))
