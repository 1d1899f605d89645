"""
Tests for L{pycm.client.cli} (the one-shot command line and piped-stdin
mode), L{pycm.client.config} and L{pycm.client.format}.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.error import ConnectionLost, ConnectionRefusedError
from twisted.internet.protocol import Factory
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.python.filepath import FilePath
from twisted.test.iosim import ConnectionCompleter, IOPump
from twisted.trial.unittest import SynchronousTestCase

from pycm.client import cli, config
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


def options(*command: str, **kw: Any) -> cli.Options:
    values: dict[str, Any] = dict(host="tcp:127.0.0.1:8080", token=None,
                                  json=False, command=tuple(command))
    values.update(kw)
    return cli.Options(**values)


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

    def run(self, opts: cli.Options, **kw: Any) -> Deferred[int]:
        d = ensureDeferred(cli.run(self.reactor, opts, self.out, self.err, **kw))
        self.pump = ConnectionCompleter(self.reactor).succeedOnce()
        self.flush()
        return d

    def flush(self) -> None:
        assert self.pump is not None
        self.pump.flush()


class FakeStdio(StringTransport):
    """Standard input/output for L{cli.PipedRequests}, in memory."""

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

    def test_explicitWins(self) -> None:
        """C{--host} and C{--token} beat the environment."""
        env = dict(self.ENV, PYCM_HOST="unix:/x", PYCM_TOKEN="env")
        opts = cli.parseArguments(["--host=tcp:h:1", "--token", "cli", "ping"],
                                  env, uid=1000)
        self.assertEqual(opts.host, "tcp:h:1")
        self.assertEqual(opts.token, "cli")
        self.assertEqual(opts.tokenSource, "--token")

    def test_tokenFile(self) -> None:
        """The token file of the default state directory is read."""
        state = FilePath(self.mktemp())
        state.child("pycm").makedirs()
        state.child("pycm").child("token").setContent(b"filetoken\n")
        env = {"HOME": "/x", "XDG_STATE_HOME": state.path}
        opts = cli.parseArguments(["ping"], env, uid=1000)
        self.assertEqual(opts.token, "filetoken")
        self.assertEqual(opts.tokenSource,
                         state.child("pycm").child("token").path)

    def test_usageErrors(self) -> None:
        """Unknown options and missing values are L{cli.UsageError}s."""
        for argv in (["--bogus"], ["--host"], ["--token"]):
            self.assertRaises(cli.UsageError, cli.parseArguments, argv,
                              self.ENV, 1000)

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


class ConfigTests(SynchronousTestCase):
    """L{config.defaultStateDir} and friends."""

    def test_root(self) -> None:
        """Root's state directory is /var/lib/pycm."""
        self.assertEqual(config.defaultStateDir({}, uid=0).path, "/var/lib/pycm")

    def test_xdg(self) -> None:
        """Others use C{$XDG_STATE_HOME/pycm}."""
        self.assertEqual(
            config.defaultStateDir({"XDG_STATE_HOME": "/s", "HOME": "/h"},
                                   uid=1000).path,
            "/s/pycm",
        )

    def test_home(self) -> None:
        """
        Without C{XDG_STATE_HOME} (or with a relative one, which the XDG
        spec says to ignore): C{~/.local/state/pycm}.
        """
        for env in ({"HOME": "/h"}, {"HOME": "/h", "XDG_STATE_HOME": "rel"}):
            self.assertEqual(config.defaultStateDir(env, uid=1000).path,
                             "/h/.local/state/pycm")

    def test_unreadableTokenFile(self) -> None:
        """A missing or empty token file gives no token."""
        path = FilePath(self.mktemp())
        self.assertIsNone(config.readTokenFile(path))
        path.setContent(b"  \n")
        self.assertIsNone(config.readTokenFile(path))


class OneShotTests(SynchronousTestCase):
    """One request from the command line."""

    def test_ok(self) -> None:
        """An OK reply is printed for a person; the exit status is 0."""
        h = Harness()
        d = h.run(options("ping"))
        self.assertEqual(self.successResultOf(d), 0)
        self.assertEqual(h.out.getvalue(), "pong\n")
        self.assertEqual(h.err.getvalue(), "")
        self.assertEqual(h.daemon.received, ["ping"])

    def test_err(self) -> None:
        """
        An ERR reply: exit status 1, C{Error: <code>: <message>} on
        stderr, nothing on stdout.
        """
        h = Harness(FakeDaemon({"inspect": "ERR not_found no such container: x"}))
        d = h.run(options("inspect", "x"))
        self.assertEqual(self.successResultOf(d), 1)
        self.assertEqual(h.out.getvalue(), "")
        self.assertEqual(h.err.getvalue(),
                         "Error: not_found: no such container: x\n")

    def test_quoting(self) -> None:
        """The arguments are joined into one line with shell quoting."""
        h = Harness(FakeDaemon({"run": ok(WEB)}))
        self.successResultOf(h.run(options(
            "run", "web", "busybox", "sh", "-c", "echo hi; sleep 5")))
        self.assertEqual(h.daemon.received,
                         ["run web busybox sh -c 'echo hi; sleep 5'"])

    def test_json(self) -> None:
        """With C{--json} the reply's JSON is printed as is."""
        h = Harness(FakeDaemon({"inspect": ok(WEB)}))
        d = h.run(options("inspect", "web", json=True))
        self.assertEqual(self.successResultOf(d), 0)
        self.assertEqual(json.loads(h.out.getvalue()), WEB)

    def test_container(self) -> None:
        """A container reply is printed as C{key: value} lines."""
        h = Harness(FakeDaemon({"inspect": ok(WEB)}))
        self.successResultOf(h.run(options("inspect", "web")))
        lines = h.out.getvalue().splitlines()
        self.assertIn("name:           web", lines)
        self.assertIn("command:        sleep 100", lines)
        self.assertIn("exit_code:      -", lines)

    def test_listTable(self) -> None:
        """C{list} (and C{ls}, C{ps}) print a C{docker ps}-like table."""
        for command in ("list", "ls", "ps"):
            h = Harness(FakeDaemon({command: ok([DB, WEB])}))
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

    def test_emptyList(self) -> None:
        """An empty C{list} prints only the header."""
        h = Harness(FakeDaemon({"list": ok([])}))
        self.successResultOf(h.run(options("list")))
        self.assertEqual(h.out.getvalue().split(), list(fmt.TABLE_COLUMNS))

    def test_wait(self) -> None:
        """C{wait} prints the state and the exit code."""
        h = Harness(FakeDaemon({"wait": ok({"name": "web", "state": "exited",
                                            "exit_code": 3})}))
        self.successResultOf(h.run(options("wait", "web")))
        self.assertEqual(h.out.getvalue(), "web: exited, exit code 3\n")

    def test_logs(self) -> None:
        """
        C{logs} prints the lines' text; the container's stderr lines go to
        stderr, as with C{docker logs}.
        """
        lines = [{"time": "t", "stream": "stdout", "line": "one"},
                 {"time": "t", "stream": "stderr", "line": "two"},
                 {"time": "t", "stream": "stdout", "line": "three"}]
        h = Harness(FakeDaemon({"logs": ok(lines)}))
        self.successResultOf(h.run(options("logs", "web")))
        self.assertEqual(h.out.getvalue(), "one\nthree\n")
        self.assertEqual(h.err.getvalue(), "two\n")

    def test_logsFollow(self) -> None:
        """
        C{logs --follow} prints the backlog, then each EVENT log line, and
        exits 0 at C{log_end}; container events are not printed.
        """
        held: Deferred[Any] = Deferred()
        h = Harness(FakeDaemon({"logs": lambda words: held}))
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

    def test_events(self) -> None:
        """
        C{events} prints each event as it comes (the banner on stderr)
        until the connection ends; the daemon going away is exit status 3.
        """
        h = Harness(FakeDaemon({"events": ok({"events": True, "last_id": 4})}))
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

    def test_eventsJSON(self) -> None:
        """C{--json events} prints each event's JSON on its own line."""
        h = Harness(FakeDaemon({"events": ok({"events": True, "last_id": 0})}))
        d = h.run(options("events", json=True))
        ev = {"type": "container", "id": 1, "action": "create", "name": "a"}
        h.daemon.sendEvent(ev)
        h.flush()
        self.assertEqual([json.loads(x) for x in h.out.getvalue().splitlines()],
                         [{"events": True, "last_id": 0}, ev])
        self.assertNoResult(d)

    def test_authFirst(self) -> None:
        """With a token, C{auth TOKEN} is sent before the command."""
        h = Harness()
        self.successResultOf(h.run(options("ping", token="s3cret")))
        self.assertEqual(h.daemon.received, ["auth s3cret", "ping"])

    def test_unauthorizedHint(self) -> None:
        """
        When the daemon refused the token, the error says where the token
        came from.
        """
        h = Harness(FakeDaemon({
            "auth": "ERR unauthorized wrong token",
            "list": "ERR unauthorized authenticate first",
        }))
        d = h.run(options("list", token="bad", tokenSource="$PYCM_TOKEN"))
        self.assertEqual(self.successResultOf(d), 1)
        self.assertEqual(
            h.err.getvalue(),
            "Error: unauthorized: authenticate first (the daemon refused the "
            "token from $PYCM_TOKEN)\n",
        )

    def test_noTokenHint(self) -> None:
        """Without any token, C{unauthorized} explains how to give one."""
        h = Harness(FakeDaemon({"list": "ERR unauthorized authenticate first"}))
        self.successResultOf(h.run(options("list")))
        self.assertIn("no token: use --token, set PYCM_TOKEN", h.err.getvalue())

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

    def test_lostBeforeReply(self) -> None:
        """The connection dropping before the reply: exit status 3."""
        h = Harness(FakeDaemon({"stop": lambda words: Deferred()}))
        d = h.run(options("stop", "web"))
        h.daemon.disconnect()
        h.flush()
        self.assertEqual(self.successResultOf(d), 3)
        self.assertIn("lost the connection", h.err.getvalue())

    def test_interruptedBeforeReply(self) -> None:
        """
        Ctrl-C while waiting (the reactor shuts down, closing the
        connection) is exit status 130 and says the daemon may go on, not
        that the daemon was lost.
        """
        h = Harness(FakeDaemon({"stop": lambda words: Deferred()}))
        d = h.run(options("stop", "web"))
        for trigger, args, kwargs in h.reactor.triggers["before"]["shutdown"]:
            trigger(*args, **kwargs)
        h.daemon.disconnect()
        h.flush()
        self.assertEqual(self.successResultOf(d), 130)
        self.assertIn("interrupted before the reply", h.err.getvalue())
        self.assertIn("stop web", h.err.getvalue())
        self.assertNotIn("lost the connection", h.err.getvalue())

    def test_notAPycmDaemon(self) -> None:
        """
        A server that does not speak the protocol (say, an HTTP server):
        exit status 3 and a message saying so, not a traceback.
        """
        h = Harness(FakeDaemon({"ping": "HTTP/1.1 400 Bad Request"}))
        d = h.run(options("ping"))
        self.assertEqual(self.successResultOf(d), 3)
        self.assertIn("does not answer like a pycm daemon", h.err.getvalue())
        self.flushLoggedErrors()

    def test_notAPycmDaemonAtAuth(self) -> None:
        """The same when the garbage answers the C{auth} sent first."""
        h = Harness(FakeDaemon({"auth": "HTTP/1.1 400 Bad Request"}))
        d = h.run(options("ping", token="t"))
        self.assertEqual(self.successResultOf(d), 3)
        self.assertIn("cannot reach the pycm daemon", h.err.getvalue())
        self.flushLoggedErrors()

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
        longest = cli.MAX_UNIX_PATH
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
        path = self.longSocketPath(cli.MAX_UNIX_PATH)
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
        self.assertIsNone(cli.endpointHint("bogus:x"))

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
        """Any ERR reply makes the exit status 1; the others still print."""
        h, stdio, d = self.start(FakeDaemon())
        stdio.protocol.dataReceived(b"nope\nping\n")
        stdio.protocol.readConnectionLost()
        h.flush()
        self.assertEqual(self.successResultOf(d), 1)
        self.assertEqual(stdio.value(), b"pong\n")
        self.assertIn("Error: bad_request: unknown command", h.err.getvalue())

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
        window = cli.PipedRequests.WINDOW
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
        """A line that is not UTF-8 is an error; the rest goes on."""
        h, stdio, d = self.start(FakeDaemon())
        stdio.protocol.dataReceived(b"\xff\xfe\nping\n")
        stdio.protocol.readConnectionLost()
        h.flush()
        self.assertEqual(self.successResultOf(d), 1)
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

    def test_rm(self) -> None:
        """C{rm} says what it removed."""
        self.assertEqual(fmt.formatReply("rm", {"name": "w", "removed": True},
                                         NOW), ["w removed"])



class InterruptTests(SynchronousTestCase):
    """Ctrl-C while streaming."""

    def test_eventsInterrupted(self) -> None:
        """
        Stopping the reactor (Ctrl-C) while C{events} streams ends it with
        status 0 and no "lost the connection" message.
        """
        h = Harness(FakeDaemon({"events": ok({"events": True, "last_id": 0})}))
        d = h.run(options("events"))
        for trigger, args, kw in h.reactor.triggers["before"]["shutdown"]:
            trigger(*args, **kw)
        h.daemon.disconnect()
        h.flush()
        self.assertEqual(self.successResultOf(d), 0)
        self.assertNotIn("lost", h.err.getvalue())


class ContainerLineTests(SynchronousTestCase):
    def test_containerLine(self) -> None:
        """
        A command that acts on a container prints one line about it;
        inspect prints every field.
        """
        container = {"name": "web", "state": "exited", "image": "host", "pid": None,
                     "exit_code": -15, "error": None}
        self.assertEqual(fmt.formatReply("stop", container, 0), ["web  exited  exit code -15"])
        running = dict(container, state="running", pid=7, exit_code=None)
        self.assertEqual(fmt.formatReply("run", running, 0), ["web  running  pid 7"])
        self.assertRegex("\n".join(fmt.formatReply("inspect", container, 0)), r"state: +exited")
