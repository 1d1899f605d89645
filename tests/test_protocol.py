"""
Tests for L{pycm.daemon.protocol}: framing, limits, reply order, backpressure,
authentication and events, on fake transports and a fake clock.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.testing import StringTransport
from twisted.logger import Logger, LogLevel, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from pycm.daemon import dispatch
from pycm.daemon.protocol import isCrossProtocol
from pycm.daemon.replies import encodeError
from pycm.errors import ERROR_CODES, PycmError
from pycm.model import formatTime
from pycm.testing.server import FakeServer


class FramingTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.server = FakeServer()
        self.conn = self.server.connect()

    def test_ping(self) -> None:
        """ping answers OK "pong"."""
        self.conn.send("ping\n")
        self.assertEqual(self.conn.lines(), [b'OK "pong"'])

    def test_chunks(self) -> None:
        """
        The same bytes fed in chunks of every size from 1 to their length
        give the same replies: LF and CRLF line ends both work.
        """
        data = b"ping\r\nversion\n# a comment\n\n   \nPiNg\r\nhelp stop\n"
        expected = None
        for size in range(1, len(data) + 1):
            conn = FakeServer().connect()
            conn.sendInChunks(data, size)
            replies = conn.replies()
            if expected is None:
                expected = replies
                self.assertEqual([kind for kind, _ in replies], ["OK"] * 4)
            self.assertEqual(replies, expected, f"chunk size {size}")

    def test_blankAndComments(self) -> None:
        """Blank lines and lines starting with # get no reply."""
        self.conn.send("\n\r\n  \t \n#run web\n   # stop web\n")
        self.assertEqual(self.conn.lines(), [])
        self.assertEqual(self.server.backend._records, {})

    def test_unknownCommands(self) -> None:
        """
        Words that are not in the command table, including Python names
        of the protocol and dispatcher, are unknown commands.
        """
        for word in ("frobnicate", "__init__", "lineReceived", "_x", "dispatch",
                     "COMMANDS", "__class__", "_handle"):
            self.assertEqual(self.conn.err(word), "bad_request", word)
        self.assertFalse(self.conn.closed)

    def test_badBytes(self) -> None:
        """
        A line that is not UTF-8, contains NUL or has unbalanced quotes is
        a bad request; the connection stays open.
        """
        for line in (b"run \xff\xfe\n", b"ping\x00\n", b'run web "x\n', b"run web 'x\n",
                     b"run web x\\\n"):
            self.conn.send(line)
            [(kind, (code, _))] = self.conn.replies()
            self.assertEqual((kind, code), ("ERR", "bad_request"), line)
        self.assertEqual(self.conn.ok("ping"), "pong")

    def test_commandCaseInsensitive(self) -> None:
        """The command word is case-insensitive."""
        self.assertEqual(self.conn.ok("PING"), "pong")
        self.assertEqual(self.conn.ok("Version")["server"], "pycm")

    def test_errorLineIsOneLine(self) -> None:
        """An error message with newlines is folded onto one line."""
        line = encodeError(PycmError("a\nb\r\nc"))
        self.assertEqual(line, b"ERR internal a b c")


class LimitTests(SynchronousTestCase):
    def test_lineAtLimit(self) -> None:
        """A line of exactly the limit is served (here: a bad request)."""
        conn = FakeServer(maxLineLength=2048).connect()
        conn.send(b"x" * 2048 + b"\r\n")
        self.assertEqual(conn.replies()[0][1][0], "bad_request")
        self.assertFalse(conn.closed)

    def test_tooLong(self) -> None:
        """
        A line over the limit gets ERR too_long and the connection is
        closed; nothing after it is acted on.
        """
        server = FakeServer(maxLineLength=2048)
        conn = server.connect()
        conn.send(b"ping\n" + b"x" * 2049 + b"\nrun web\n")
        replies = conn.replies()
        self.assertEqual([r[0] for r in replies], ["OK", "ERR"])
        self.assertEqual(replies[1][1][0], "too_long")
        self.assertTrue(conn.closed)
        self.assertEqual(server.backend._records, {})

    def test_tooLongWithoutNewline(self) -> None:
        """
        A line that grows past the limit with no newline yet is refused as
        soon as it is too long: the server never buffers an unbounded line.
        """
        conn = FakeServer(maxLineLength=2048).connect()
        for _ in range(10):
            conn.send(b"y" * 1000)
        [(kind, (code, _))] = conn.replies()
        self.assertEqual((kind, code), ("ERR", "too_long"))
        self.assertTrue(conn.closed)
        self.assertLessEqual(len(conn.protocol._buffer), 2048 + 2)

    def test_crossProtocol(self) -> None:
        """
        An HTTP request line closes the connection at once, with no reply,
        and the lines after it are not acted on.
        """
        for first in ("GET / HTTP/1.1", "POST /x HTTP/1.1", "OPTIONS * HTTP/1.1",
                      "Host: 127.0.0.1:8080", "PUT / HTTP/1.0", "CONNECT a:1 HTTP/1.1"):
            server = FakeServer()
            conn = server.connect()
            conn.send(first + "\r\nHost: x\r\n\r\nrun web host sleep 1000\n")
            self.assertEqual(conn.transport.value(), b"", first)
            self.assertTrue(conn.closed, first)
            self.assertEqual(server.backend._records, {}, first)

    def test_crossProtocolDetection(self) -> None:
        """Only HTTP methods followed by a space, or Host:, count."""
        self.assertTrue(isCrossProtocol(b"DELETE /containers HTTP/1.1"))
        self.assertTrue(isCrossProtocol(b"host: example"))
        self.assertTrue(isCrossProtocol(b"HOST:example"))
        self.assertFalse(isCrossProtocol(b"GETTER"))
        self.assertFalse(isCrossProtocol(b"run GET"))


class OrderTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.server = FakeServer()
        self.conn = self.server.connect()

    def test_slowRequestHoldsBackLaterReplies(self) -> None:
        """
        A slow stop holds back the replies behind it on its connection,
        and they come in request order once it is done.
        """
        self.conn.ok("run slow memory ignore-term")
        self.conn.send("stop --time=5 slow\nping\nlist\n")
        self.assertEqual(self.conn.lines(), [])
        self.server.clock.advance(5)
        self.server.clock.advance(0)
        replies = self.conn.replies()
        self.assertEqual([kind for kind, _ in replies], ["OK", "OK", "OK"])
        self.assertEqual(replies[0][1]["state"], "exited")
        self.assertEqual(replies[0][1]["exit_code"], -9)
        self.assertEqual(replies[1][1], "pong")
        self.assertEqual(replies[2][1][0]["state"], "exited")

    def test_slowRequestPausesReading(self) -> None:
        """
        While a request is in flight the protocol stops reading from its
        transport as soon as the client sends more, so pipelined requests
        wait in the kernel, not in memory; a client that only waits for
        its reply leaves the transport reading.
        """
        self.conn.ok("run slow memory ignore-term")
        self.conn.send("stop slow\n")
        self.assertEqual(self.conn.transport.producerState, "producing")
        self.conn.send("ping\n")
        self.assertEqual(self.conn.transport.producerState, "paused")
        self.assertEqual(self.conn.lines(), [])
        self.server.clock.advance(10)
        self.server.clock.advance(0)
        self.assertEqual(self.conn.transport.producerState, "producing")
        self.assertEqual([kind for kind, _ in self.conn.replies()], ["OK", "OK"])

    def test_slowRequestAloneKeepsReading(self) -> None:
        """
        A request in flight with nothing behind it never pauses the
        transport, and its reply leaves nothing scheduled: the next request
        is served as it arrives.
        """
        self.conn.ok("run slow memory ignore-term")
        self.conn.send("stop --time=1 slow\n")
        self.server.clock.advance(1)
        self.assertEqual(self.conn.transport.producerState, "producing")
        self.assertEqual([kind for kind, _ in self.conn.replies()], ["OK"])
        self.assertEqual(self.server.clock.getDelayedCalls(), [])
        self.assertEqual(self.conn.ok("ping"), "pong")

    def test_fairTurns(self) -> None:
        """
        A client that pipelines many requests in one read is served
        LINES_PER_TURN of them per reactor turn, so others get their turn;
        every one is answered in order in the end.
        """
        from pycm.daemon.framing import LINES_PER_TURN

        self.conn.send("".join(f"create c{i:03d}\n" for i in range(200)))
        self.assertEqual(len(self.conn.lines()), LINES_PER_TURN)
        other = self.server.connect()
        self.assertEqual(other.ok("ping"), "pong")
        names = []
        for _ in range(10):
            self.server.clock.advance(0)
        for _, value in self.conn.replies():
            names.append(value["name"])
        self.assertEqual(len(names), 200 - LINES_PER_TURN)
        self.assertEqual(names[-1], "c199")

    def test_bigRepliesYieldTheTurn(self) -> None:
        """
        Pipelined requests with big replies yield the turn once a turn has
        written BYTES_PER_TURN, so one client's lists cannot starve others.
        """
        for i in range(300):
            self.conn.ok(f"create c{i:03d}")
        self.conn.send("list\n" * 5)
        self.assertEqual(len(self.conn.lines()), 1)
        for _ in range(5):
            self.server.clock.advance(0)
        self.assertEqual(len(self.conn.lines()), 4)

    def test_otherConnectionsNotDelayed(self) -> None:
        """One connection's slow stop does not delay another's requests."""
        self.conn.ok("run slow memory ignore-term")
        self.conn.send("stop slow\n")
        other = self.server.connect()
        self.assertEqual(other.ok("ping"), "pong")
        self.assertEqual(other.ok("inspect slow")["state"], "stopping")
        self.assertEqual(self.conn.lines(), [])

    def test_clientThatDoesNotRead(self) -> None:
        """
        When the transport's write buffer is full (the client does not
        read), the server stops reading that client's requests.
        """
        self.conn.transport.producer.pauseProducing()
        self.assertEqual(self.conn.transport.producerState, "paused")
        self.conn.send("ping\nping\n")
        self.assertEqual(self.conn.lines(), [])
        self.conn.transport.producer.resumeProducing()
        self.assertEqual(self.conn.lines(), [b'OK "pong"', b'OK "pong"'])

    def test_subscriberTooFarBehind(self) -> None:
        """
        An event subscriber that does not read is disconnected once its
        unread events pass the backlog limit; other connections go on.
        """
        server = FakeServer(maxEventBacklog=1024)
        slow = server.connect()
        slow.ok("events")
        slow.transport.producer.pauseProducing()
        other = server.connect()
        for i in range(40):
            other.ok(f"create c{i}")
            if slow.closed:
                break
        self.assertTrue(slow.closed)
        self.assertTrue(slow.transport.disconnected)
        self.assertFalse(other.closed)
        self.assertEqual(other.ok("ping"), "pong")

    def test_queuedEventsHeldAsTheirLines(self) -> None:
        """
        Events queued for a client that does not read are held as their
        EVENT lines, not as the values they were made from (a third of the
        memory, for the 10,000 events an C{events --since 0} replays), and
        go out unchanged, in order, once it reads.
        """
        slow = self.server.connect()
        self.server.connect().ok("create c0")
        slow.send("events --since 0\n")
        slow.stopReading()
        other = self.server.connect()
        other.ok("create c1")
        queued = list(slow.protocol._events)
        self.assertTrue(queued)
        self.assertTrue(all(type(line) is bytes for line in queued), queued)
        slow.startReading()
        events = [value for kind, value in slow.replies() if kind == "EVENT"]
        self.assertEqual([(e["action"], e["name"]) for e in events], [
            ("create", "c0"), ("create", "c1")])

    def test_exit(self) -> None:
        """exit (or quit) replies "bye", then the server closes."""
        self.conn.send("exit\nping\n")
        self.assertEqual(self.conn.lines(), [b'OK "bye"'])
        self.assertTrue(self.conn.closed)
        conn = self.server.connect()
        self.assertEqual(conn.ok("QUIT"), "bye")
        self.assertTrue(conn.closed)


class AuthTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.server = FakeServer(token="s3cret")
        self.conn = self.server.connect(requireAuth=True)

    def test_publicCommands(self) -> None:
        """ping, version, help and auth work before authenticating."""
        self.assertEqual(self.conn.ok("ping"), "pong")
        self.assertEqual(self.conn.ok("version")["protocol"], 1)
        self.assertIn("commands", self.conn.ok("help"))

    def test_othersUnauthorized(self) -> None:
        """Every other command gets ERR unauthorized and does nothing."""
        for line in ("list", "run web", "info", "events", "logs web", "stop web"):
            self.assertEqual(self.conn.err(line), "unauthorized", line)
        self.assertEqual(self.server.backend._records, {})

    def test_goodToken(self) -> None:
        """auth with the right token unlocks the connection."""
        self.assertEqual(self.conn.ok("auth s3cret"), "authenticated")
        self.assertEqual(self.conn.ok("list"), [])

    def test_tokenStartingWithDash(self) -> None:
        """
        A token that starts with C{-} (urlsafe base64 makes one in 64) is
        taken as the token, not as an unknown option.
        """
        server = FakeServer(token="-s3cret")
        conn = server.connect(requireAuth=True)
        self.assertEqual(conn.ok("auth -s3cret"), "authenticated")
        self.assertEqual(conn.ok("list"), [])
        self.assertEqual(conn.err("auth --wrong"), "unauthorized")

    def test_threeWrongTokens(self) -> None:
        """After 3 wrong tokens the server closes the connection."""
        self.assertEqual(self.conn.err("auth a"), "unauthorized")
        self.assertEqual(self.conn.err("auth b"), "unauthorized")
        self.assertFalse(self.conn.closed)
        self.assertEqual(self.conn.err("auth c"), "unauthorized")
        self.assertTrue(self.conn.closed)

    def test_threeWrongTokensLingering(self) -> None:
        """
        A client that sent 3 wrong tokens and does not take the ERR line
        that closes its connection is aborted after EVICTION_GRACE seconds.
        """
        from pycm.daemon.protocol import EVICTION_GRACE

        aborted: list[bool] = []
        self.conn.transport.abortConnection = lambda: aborted.append(True)
        self.conn.send("auth a\nauth b\nauth c\n")
        self.assertTrue(self.conn.closed)
        self.server.clock.advance(EVICTION_GRACE - 0.1)
        self.assertEqual(aborted, [])
        self.server.clock.advance(0.1)
        self.assertEqual(aborted, [True])

    def test_wrongTokenWhenAuthenticated(self) -> None:
        """
        A wrong token on a connection that has authenticated, or that needs
        no token, is still ERR unauthorized and counts toward the three
        tries; the connection stays authenticated until it is closed.
        """
        for conn in (self.conn, self.server.connect(requireAuth=False)):
            self.assertEqual(conn.ok("auth s3cret"), "authenticated")
            self.assertEqual(conn.err("auth WRONG"), "unauthorized")
            self.assertEqual(conn.ok("list"), [])
            self.assertEqual(conn.err("auth s3cre"), "unauthorized")
            self.assertFalse(conn.closed)
            self.assertEqual(conn.err("auth s3cretX"), "unauthorized")
            self.assertTrue(conn.closed)

    def test_rememberedParseStillChecksAuth(self) -> None:
        """
        A request line parsed (and remembered) for an authenticated client
        is still refused to one that is not.
        """
        self.assertEqual(self.conn.ok("auth s3cret"), "authenticated")
        self.assertEqual(self.conn.ok("list --filter state=running"), [])
        other = self.server.connect(requireAuth=True)
        self.assertEqual(other.err("list --filter state=running"), "unauthorized")

    def test_unixNeedsNoToken(self) -> None:
        """A listener that does not require auth serves at once."""
        conn = self.server.connect(requireAuth=False)
        self.assertEqual(conn.ok("list"), [])


class CommandTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.server = FakeServer()
        self.conn = self.server.connect()

    def test_lifecycle(self) -> None:
        """The contract's example session, on the memory backend."""
        web = self.conn.ok("run web host sleep 1000")
        self.assertEqual((web["name"], web["state"], web["command"]),
                         ("web", "running", ["sleep", "1000"]))
        self.assertEqual(self.conn.err("run web"), "conflict")
        [listed] = self.conn.ok("list")
        self.assertEqual(listed["state"], "running")
        stopped = self.conn.ok("stop web")
        self.assertEqual((stopped["state"], stopped["exit_code"]), ("exited", -15))
        self.assertEqual(self.conn.ok("rm web"), {"name": "web", "removed": True})
        self.assertEqual(self.conn.err("inspect web"), "not_found")

    def test_containerObject(self) -> None:
        """A container has the contract's fields; inspect adds the details."""
        summary = self.conn.ok("create -e A=1 -l tier=web --restart=on-failure:3 c1")
        self.assertEqual(
            set(summary),
            {"name", "id", "backend", "image", "command", "state", "pid", "exit_code",
             "created", "started", "finished", "restart_policy", "restart_count", "labels",
             "health"},
        )
        self.assertEqual(summary["state"], "created")
        self.assertEqual(summary["restart_policy"], "on-failure:3")
        self.assertRegex(summary["created"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        detail = self.conn.ok("inspect c1")
        for key in ("env", "stop_timeout", "stop_signal", "memory", "cpus", "workdir"):
            self.assertIn(key, detail)
        self.assertEqual(detail["env"], {"A": "1"})
        self.assertEqual(detail["labels"], {"tier": "web"})

    def test_errors(self) -> None:
        """Each kind of bad request gets its error code."""
        self.assertEqual(self.conn.err("run -- -bad"), "invalid_name")
        self.assertEqual(self.conn.err("run -bad"), "bad_request")
        self.assertEqual(self.conn.err("run a"), "invalid_name")
        self.assertEqual(self.conn.err(f"run {'x' * 129}"), "invalid_name")
        self.assertEqual(self.conn.err("run web nosuchimage"), "no_image")
        self.assertEqual(self.conn.err("stop ghost"), "not_found")
        self.assertEqual(self.conn.err("run --restart=sometimes web"), "bad_request")
        self.assertEqual(self.conn.err("run --memory=lots web"), "bad_request")
        self.assertEqual(self.conn.err("run --bogus web"), "bad_request")
        self.assertEqual(self.conn.err("run"), "bad_request")
        self.assertEqual(self.conn.err("stop a b"), "bad_request")
        self.assertEqual(self.conn.err("kill --signal=NOPE web"), "bad_request")
        self.assertEqual(self.conn.err("run web -e X=1"), "bad_request")
        self.conn.ok("run web")
        self.assertEqual(self.conn.err("rm web"), "conflict")

    def test_stopTimeoutBounded(self) -> None:
        """
        A stop timeout over an hour (--stop-timeout of run and create, --time
        of stop and restart) is bad_request, naming the option: no client
        can make a stop, and so the daemon's shutdown, wait for ever.
        """
        for request in ("run --stop-timeout=1e308 hang", "create --stop-timeout=9e15 hang",
                        "run --stop-timeout=3600.5 hang"):
            self.assertEqual(self.conn.err(request), "bad_request", request)
        kind, value = self.conn.request("run --stop-timeout=1e308 hang")
        self.assertEqual((kind, value[0]), ("ERR", "bad_request"))
        self.assertIn("--stop-timeout", str(value))
        self.conn.ok("run --stop-timeout=3600 web")
        for request in ("stop -t 1e308 web", "restart --time=9e15 web"):
            self.assertEqual(self.conn.err(request), "bad_request", request)
        self.assertEqual(self.conn.ok("stop -t 3600 web")["state"], "exited")

    def test_commandUntouched(self) -> None:
        """Everything after the image is the command, quoting resolved."""
        c = self.conn.ok('create web host sh -c "echo hi; sleep 5" --not-an-option')
        self.assertEqual(c["command"], ["sh", "-c", "echo hi; sleep 5", "--not-an-option"])

    def test_killAndWait(self) -> None:
        """kill defaults to KILL; wait reports the exit code."""
        self.conn.ok("run web")
        killed = self.conn.ok("kill web")
        self.assertEqual(killed["name"], "web")
        self.assertEqual(self.conn.ok("wait web"),
                         {"name": "web", "state": "exited", "exit_code": -9})

    def test_waitTimeout(self) -> None:
        """wait --timeout fails with ERR backend timed out."""
        self.conn.ok("run web")
        self.conn.send("wait --timeout=2 web\n")
        self.assertEqual(self.conn.lines(), [])
        self.server.clock.advance(2)
        [(kind, (code, message))] = self.conn.replies()
        self.assertEqual((kind, code), ("ERR", "backend"))
        self.assertIn("timed out", message)

    def test_waitCancelledOnDisconnect(self) -> None:
        """A pending wait is cancelled when its connection goes away."""
        self.conn.ok("run web")
        self.conn.send("wait web\n")
        self.conn.protocol.connectionLost(None)
        self.assertEqual(self.conn.protocol.session.pending, set())

    def test_listFiltersAndOrder(self) -> None:
        """list sorts by name and applies state, label and name filters."""
        self.conn.ok("create -l tier=db zeta")
        self.conn.ok("run -l tier=web alpha")
        self.conn.ok("run mid")
        names = [c["name"] for c in self.conn.ok("ls")]
        self.assertEqual(names, ["alpha", "mid", "zeta"])
        self.assertEqual([c["name"] for c in self.conn.ok("ps --filter state=running")],
                         ["alpha", "mid"])
        self.assertEqual([c["name"] for c in self.conn.ok("list -f label=tier")],
                         ["alpha", "zeta"])
        self.assertEqual([c["name"] for c in self.conn.ok("list -f label=tier=db")], ["zeta"])
        self.assertEqual([c["name"] for c in self.conn.ok("list -f name=ph")], ["alpha"])
        self.assertEqual(self.conn.err("list -f color=red"), "bad_request")

    def test_listFilterStatus(self) -> None:
        """
        C{status} is Docker's name for the C{state} filter (C{docker ps
        --filter status=running}): the same filter, values of both names
        alternatives; the refusal of an unknown key names it.
        """
        self.conn.ok("create zeta")
        self.conn.ok("run alpha")
        names = [c["name"] for c in self.conn.ok("ps --filter status=running")]
        self.assertEqual(names, ["alpha"])
        names = [c["name"] for c in self.conn.ok("ls -f Status=created -f state=running")]
        self.assertEqual(names, ["alpha", "zeta"])
        kind, (code, message) = self.conn.request("list -f color=red")
        self.assertEqual((kind, code), ("ERR", "bad_request"))
        self.assertIn("KEY one of state (or status), label, name", message)
        kind, (code, message) = self.conn.request("events -f status=running")
        self.assertEqual((kind, code), ("ERR", "bad_request"))
        self.assertIn("KEY one of name, action", message)

    def test_logs(self) -> None:
        """logs returns the last lines as log objects; --tail limits them."""
        self.conn.ok("run e1 memory echo hello world")
        self.server.clock.advance(0)
        [line] = self.conn.ok("logs e1")
        self.assertEqual((line["stream"], line["line"]), ("stdout", "hello world"))
        self.assertEqual(self.conn.ok("logs --tail=0 e1"), [])

    def test_dockerFlags(self) -> None:
        """
        Docker's C{run -d}/C{--detach} and C{ps -a}/C{--all} are accepted
        and change nothing (pycm always detaches and lists every
        container), so the shell, piped requests and C{nc} take them too.
        """
        self.assertEqual(self.conn.ok("run -d web")["state"], "running")
        self.assertEqual(self.conn.ok("run --detach db")["state"], "running")
        self.conn.ok("stop db")
        self.assertEqual([c["name"] for c in self.conn.ok("ps -a")], ["db", "web"])
        self.assertEqual([c["name"] for c in self.conn.ok("list --all -f state=running")],
                         ["web"])
        self.assertEqual(self.conn.err("create -d x"), "bad_request")

    def test_logsSince(self) -> None:
        """
        logs --since keeps the lines written since a duration ago, an RFC
        3339 time or an epoch time (then every such line, not the default
        last 100); a bad value is bad_request.
        """
        self.conn.ok("run e1 memory echo early")
        self.server.clock.advance(0)
        self.server.clock.advance(600)
        self.conn.ok("start e1")
        self.server.clock.advance(0)
        self.assertEqual([x["line"] for x in self.conn.ok("logs e1")], ["early", "early"])
        self.assertEqual([x["line"] for x in self.conn.ok("logs --since=5m e1")], ["early"])
        self.assertEqual(len(self.conn.ok("logs --since 1h e1")), 2)
        self.assertEqual(len(self.conn.ok("logs --since=1h5m30s e1")), 2)
        now = self.server.clock.seconds()
        self.assertEqual(len(self.conn.ok(f"logs --since={now - 1:.3f} e1")), 1)
        stamp = formatTime(now - 60)
        self.assertEqual(len(self.conn.ok(f"logs --since={stamp} e1")), 1)
        self.assertEqual(len(self.conn.ok("logs --since=1h --tail=1 e1")), 1)
        for bad in ("yesterday", "5x", "-5m", "2026-13-01T00:00:00Z", ""):
            self.assertEqual(self.conn.err(f"logs --since={bad!r} e1"), "bad_request", bad)

    def test_logsFollow(self) -> None:
        """
        logs --follow streams log EVENTs until the container stops, then a
        log_end; unfollow ends it early.
        """
        self.conn.ok("run d1 memory delay 5 echo later")
        self.assertEqual(self.conn.ok("logs --follow d1"), [])
        self.server.clock.advance(5)
        self.server.clock.advance(0)
        events = [value for kind, value in self.conn.replies() if kind == "EVENT"]
        self.assertEqual([e["type"] for e in events], ["log", "log_end"])
        self.assertEqual(events[0]["line"], "later")
        self.conn.ok("run d2")
        self.conn.ok("logs -f d2")
        self.conn.send("unfollow d2\n")
        self.assertEqual(
            [kind for kind, _ in self.conn.replies()], ["EVENT", "OK"]
        )
        self.assertEqual(self.conn.err("unfollow d2"), "bad_request")

    def test_followStoppedContainer(self) -> None:
        """Following a container that is not running: OK, then log_end."""
        self.conn.ok("create idle")
        self.conn.send("logs --follow idle\n")
        self.assertEqual(
            self.conn.replies(), [("OK", []), ("EVENT", {"type": "log_end", "name": "idle"})]
        )

    def test_events(self) -> None:
        """
        events subscribes the connection; events carry increasing ids;
        --since replays the retained ones after the OK; --off stops them.
        """
        reply = self.conn.ok("events")
        self.assertEqual(reply, {"events": True, "last_id": 0})
        self.conn.send("run web\n")
        lines = self.conn.replies()
        self.assertEqual([kind for kind, _ in lines], ["EVENT", "EVENT", "OK"])
        self.assertEqual([(e["id"], e["action"]) for _, e in lines[:2]],
                         [(1, "create"), (2, "start")])
        other = self.server.connect()
        other.send("events --since=1 --filter action=start\n")
        replies = other.replies()
        self.assertEqual(replies[0], ("OK", {"events": True, "last_id": 2}))
        self.assertEqual([(k, e["id"]) for k, e in replies[1:]], [("EVENT", 2)])
        self.assertEqual(self.conn.ok("events --off")["events"], False)
        self.conn.ok("kill web")
        self.assertEqual(self.conn.replies(), [])

    def test_progressEvents(self) -> None:
        """
        Progress events (an image pull) reach subscribers, unnumbered and
        not kept; filters apply to them too.
        """
        from pycm.model import ProgressEvent

        self.conn.ok("events")
        quiet = self.server.connect()
        quiet.ok("events --filter action=create")
        self.server.events.record(ProgressEvent("web", "pull", "busybox: Downloading", 5.0))
        [(kind, event)] = self.conn.replies()
        self.assertEqual(kind, "EVENT")
        self.assertEqual(
            event,
            {"type": "progress", "action": "pull", "name": "web",
             "detail": "busybox: Downloading", "time": "1970-01-01T00:00:05.000Z"},
        )
        self.assertEqual(quiet.replies(), [])
        self.assertEqual(self.server.events.lastId, 0)
        self.assertEqual(self.server.events.since(0), [])

    def test_help(self) -> None:
        """help lists every command; help COMMAND shows its usage."""
        names = {c["name"] for c in self.conn.ok("help")["commands"]}
        self.assertTrue({"run", "stop", "list", "events", "wait", "auth"} <= names)
        usage = self.conn.ok("help stop")["usage"]
        self.assertIn("--time", usage)
        self.assertEqual(self.conn.err("help nope"), "bad_request")

    def test_helpListNamesEveryFilterKey(self) -> None:
        """
        help list names every filter key the daemon takes, Docker's
        C{status=} too (the filter accepts it; the usage said nothing).
        """
        usage = self.conn.ok("help list")["usage"]
        self.assertIn("--filter=status|state|label|name=VALUE", usage)
        self.conn.ok("run web")
        names = [c["name"] for c in self.conn.ok("list --filter status=running")]
        self.assertEqual(names, ["web"])

    def test_filterUnknownState(self) -> None:
        """
        A state filter naming no state (C{status=bogus}) is refused, naming
        the states, as docker refuses it, rather than matching nothing.
        """
        self.conn.ok("run web")
        kind, (code, message) = self.conn.request("list --filter status=bogus")
        self.assertEqual((kind, code), ("ERR", "bad_request"))
        self.assertIn("no such state; expected one of created, running", message)

    def test_eventsSinceSaysItIsAnId(self) -> None:
        """C{events --since=10m}: the error says --since is an event id."""
        kind, (code, message) = self.conn.request("events --since=10m")
        self.assertEqual((kind, code), ("ERR", "bad_request"))
        self.assertIn("expected an event id", message)

    def test_info(self) -> None:
        """info reports the backend, capabilities, counts and uptime."""
        self.conn.ok("run web")
        self.conn.ok("create other")
        self.server.clock.advance(3)
        info = self.conn.ok("info")
        self.assertEqual(info["backend"], "memory")
        self.assertEqual(info["containers"]["total"], 2)
        self.assertEqual(info["containers"]["running"], 1)
        self.assertEqual(info["containers"]["created"], 1)
        self.assertEqual(info["uptime"], 3)
        self.assertIn("run", info["capabilities"]["commands"])
        self.assertIn("env", info["capabilities"]["options"])

    def test_internalError(self) -> None:
        """
        An unexpected exception becomes ERR internal, is logged, and the
        connection goes on being served.
        """
        def broken() -> None:
            raise ZeroDivisionError("oops")

        self.server.backend.list = broken  # type: ignore[method-assign]
        self.assertEqual(self.conn.err("list"), "internal")
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.assertEqual(self.conn.ok("ping"), "pong")

    def test_everyReplyIsOneJSONValue(self) -> None:
        """Every OK and EVENT line carries exactly one JSON value."""
        self.conn.ok("events")
        self.conn.send('run -e "X=a b" web\nlist\ninfo\nhelp\nversion\n')
        for line in self.conn.lines():
            kind, _, rest = line.partition(b" ")
            if kind != b"ERR":
                json.loads(rest)

    def test_errorCodes(self) -> None:
        """Every error class's code is one of the contract's."""
        from pycm import errors

        for value in vars(errors).values():
            if isinstance(value, type) and issubclass(value, PycmError):
                self.assertIn(value.code, ERROR_CODES)


class ThrottlingTransport(StringTransport):
    """
    A StringTransport that, like a TCP transport, pauses its producer when
    more than C{limit} bytes are waiting to be sent, until L{drain}.
    """

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.sent = 0

    def write(self, data: bytes) -> None:
        super().write(data)
        if len(self.value()) - self.sent > self.limit and self.producerState == "producing":
            self.producer.pauseProducing()

    def writeSequence(self, data: list[bytes]) -> None:
        self.write(b"".join(data))

    def drain(self) -> None:
        """The peer read everything: resume the producer."""
        self.sent = len(self.value())
        if self.producerState == "paused":
            self.producer.resumeProducing()


class ReviewRegressionTests(SynchronousTestCase):
    """Edge cases found in review, each pinned down."""

    def test_pipelinedLinesAreNotOneLongLine(self) -> None:
        """
        Complete lines waiting behind a pause do not count against the line
        limit: only the unfinished last line does.
        """
        server = FakeServer(maxLineLength=1024)
        conn = server.connect()
        conn.ok("run slow memory ignore-term")
        conn.send("stop --time=5 slow\n" + "ping\n" * 300)
        server.clock.advance(5)
        for _ in range(10):
            server.clock.advance(0)
        replies = conn.replies()
        self.assertEqual(len(replies), 301)
        self.assertEqual({kind for kind, _ in replies}, {"OK"})
        self.assertFalse(conn.closed)

    def test_overlongLineWaitsItsTurn(self) -> None:
        """
        A line that grows too long behind an in-flight request is refused
        after that request's reply, never before it.
        """
        server = FakeServer(maxLineLength=1024)
        conn = server.connect()
        conn.ok("run slow memory ignore-term")
        conn.send("stop --time=5 slow\n" + "x" * 2000)
        self.assertEqual(conn.lines(), [])
        self.assertFalse(conn.closed)
        server.clock.advance(5)
        server.clock.advance(0)
        replies = conn.replies()
        self.assertEqual([kind for kind, _ in replies], ["OK", "ERR"])
        self.assertEqual(replies[1][1][0], "too_long")
        self.assertTrue(conn.closed)

    def test_overlongHTTPLineClosedSilently(self) -> None:
        """An HTTP request line longer than the limit still gets no reply."""
        conn = FakeServer(maxLineLength=1024).connect()
        conn.send(b"GET /" + b"a" * 5000)
        self.assertEqual(conn.transport.value(), b"")
        self.assertTrue(conn.closed)

    def test_replayDoesNotCountAsFallingBehind(self) -> None:
        """
        events --since replays every retained event to a client that reads
        slowly, without disconnecting it, in order, then live events.
        """
        server = FakeServer(maxEventBacklog=1024)
        maker = server.connect()
        for i in range(200):
            maker.ok(f"create c{i:03d}")
        conn = server.connect()
        transport = ThrottlingTransport(limit=4096)
        conn.protocol.makeConnection(transport)
        conn.transport = transport
        conn.send("events --since=0\n")
        self.assertEqual(transport.producerState, "paused")
        maker.ok("create late")
        self.assertFalse(conn.closed)
        while transport.producerState == "paused":
            transport.drain()
        replies = conn.replies()
        self.assertEqual(replies[0], ("OK", {"events": True, "last_id": 200}))
        ids = [event["id"] for _, event in replies[1:]]
        self.assertEqual(ids, list(range(1, 202)))

    def test_eventsErrorLeavesNoSubscription(self) -> None:
        """A refused events request does not subscribe the connection."""
        server = FakeServer()
        conn = server.connect()
        self.assertEqual(conn.err("events --since=99999999999999999999"), "bad_request")
        self.assertFalse(conn.protocol.session.subscribed)
        self.assertEqual(server.events.subscriberCount, 0)

    def test_oddNumbers(self) -> None:
        """Digits that are not ASCII, or far too many, are bad requests."""
        conn = FakeServer().connect()
        conn.ok("run web")
        for line in ("kill --signal=\u00b2 web", "logs --tail=\u00b2 web", "events --since=\u00b2",
                     "run --memory=\u00b2 w2", "run --restart=on-failure:\u00b2 w2",
                     "logs --tail=" + "9" * 5000 + " web", "kill --signal=99999 web"):
            self.assertEqual(conn.err(line), "bad_request", line[:40])
        self.flushLoggedErrors()
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_unicodeBlankIsARequest(self) -> None:
        """
        A line that is blank only to Unicode still gets its one reply, and
        words split the same way with or without quotes on the line.
        """
        conn = FakeServer().connect()
        for line in (b"\x1c\n", b"\xc2\xa0\n", b"\r\r\n"):
            conn.send(line)
            [(kind, (code, _))] = conn.replies()
            self.assertEqual((kind, code), ("ERR", "bad_request"), line)
        self.assertEqual(conn.err("ping\u00a0x"), "bad_request")
        self.assertEqual(conn.err("ping\u00a0'x'"), "bad_request")
        self.assertEqual(conn.ok("create wx memory 'a b' c\u00a0d")["command"],
                         ["a b", "c\u00a0d"])

    def test_followSetUpAfterDisconnect(self) -> None:
        """
        A follow the backend sets up after the client has gone is
        cancelled at once.
        """
        from twisted.internet.defer import Deferred

        server = FakeServer()
        conn = server.connect()
        conn.ok("run web")
        pending: Deferred[object] = Deferred()
        realFollow = server.backend.follow
        server.backend.follow = lambda *a: pending  # type: ignore[method-assign]
        conn.send("logs --follow web\n")
        conn.protocol.connectionLost(None)
        follow = self.successResultOf(realFollow("web", 0, lambda line: None))
        pending.callback(follow)
        self.assertTrue(follow.ended.called)
        self.assertEqual(conn.protocol.session.followHandles, {})

    def test_unfollowEndsAtOnce(self) -> None:
        """
        unfollow sends log_end before its OK, and no line of that
        container after it, even if the backend ends the stream later.
        """
        server = FakeServer()
        conn = server.connect()
        conn.ok("run d2")
        conn.ok("logs -f d2")
        observers: list[object] = []
        conn.send("unfollow d2\n")
        self.assertEqual(
            conn.replies(),
            [("EVENT", {"type": "log_end", "name": "d2"}),
             ("OK", {"name": "d2", "following": False})],
        )
        conn.protocol.session.sendLogLine("d2", object())  # type: ignore[arg-type]
        self.assertEqual(conn.replies(), [])
        self.assertEqual(observers, [])
        conn.ok("logs -f d2")

    def test_slowSubscriberOnATransportWithoutAbort(self) -> None:
        """
        A subscriber too far behind on a transport with no abortConnection
        (stdio) is closed with loseConnection instead.
        """
        server = FakeServer(maxEventBacklog=1024)
        slow = server.connect()
        slow.ok("events")
        slow.transport.producer.pauseProducing()
        slow.transport.abortConnection = None  # type: ignore[assignment]
        del slow.transport.abortConnection
        other = server.connect()
        for i in range(20):
            other.ok(f"create c{i}")
        self.assertTrue(slow.closed)


class LogsReplyTests(SynchronousTestCase):
    def test_replyTooBig(self) -> None:
        """
        A logs reply over the size limit is refused, saying how many of the
        newest lines would fit; no giant reply line is ever built.
        """
        from pycm.daemon.handlers import observing
        from pycm.model import LogLine

        self.patch(observing, "MAX_LOGS_REPLY", 1000)
        lines = [LogLine(0.0, "stdout", "x" * 100) for _ in range(20)]
        error = self.assertRaises(observing.BadRequest, observing.logLinesReply, lines)
        self.assertIn("use --tail=6", str(error))
        self.assertEqual(len(observing.logLinesReply(lines[-6:]).items), 6)


class RequestLogTests(SynchronousTestCase):
    """Requests that change a container are logged at info, with their outcome."""

    def setUp(self) -> None:
        self.logged: list[dict] = []
        self.patch(dispatch, "requestLog", Logger(observer=self.logged.append))
        self.server = FakeServer()
        self.conn = self.server.connect()

    def lines(self) -> list[str]:
        return [formatEvent(event) for event in self.logged]

    def test_changesLogged(self) -> None:
        """
        run, stop, rm... are logged with the peer, the container and how
        they ended (an error as its code alone); ping, list, inspect are not.
        """
        self.conn.ok("run web host sleep 1000")
        self.conn.ok("ping")
        self.conn.ok("list")
        self.conn.ok("inspect web")
        self.assertEqual(self.conn.err("rm web"), "conflict")
        self.conn.ok("stop web")
        self.assertEqual(self.conn.err("start nosuch"), "not_found")
        peer = self.conn.protocol.session.peer
        self.assertTrue(peer)
        lines = self.lines()
        self.assertEqual(len(lines), 4)
        self.assertEqual(lines[0], f"{peer}: run web: ok")
        self.assertEqual(lines[1], f"{peer}: rm web: conflict")
        self.assertEqual(lines[2], f"{peer}: stop web: ok")
        self.assertEqual(lines[3], f"{peer}: start nosuch: not_found")
        self.assertTrue(all(e["log_level"] == LogLevel.info for e in self.logged))

    def test_optionsNotLogged(self) -> None:
        """Options are never logged: --env may hold a secret."""
        self.conn.ok("run -e PASSWORD=hunter2 db host sleep 1000")
        self.assertEqual(len(self.logged), 1)
        self.assertNotIn("hunter2", repr(self.logged[0]))
        self.assertNotIn("hunter2", formatEvent(self.logged[0]))


class HalfCloseTests(SynchronousTestCase):
    """A client that shuts its sending side still gets every reply."""

    def setUp(self) -> None:
        self.server = FakeServer()
        self.conn = self.server.connect()

    def test_repliesThenClose(self) -> None:
        """
        Lines sent before the half-close are answered in order, then the
        server closes.
        """
        self.conn.send("ping\nversion\nlist\n")
        self.conn.lines()
        self.assertFalse(self.conn.closed)
        self.conn.halfClose()
        self.assertTrue(self.conn.closed)
        conn = self.server.connect()
        conn.transport.producer.pauseProducing()
        conn.send("ping\nping\n")
        conn.halfClose()
        self.assertFalse(conn.closed)
        conn.transport.producer.resumeProducing()
        self.assertEqual(conn.lines(), [b'OK "pong"', b'OK "pong"'])
        self.assertTrue(conn.closed)

    def test_slowRequestsAnsweredFirst(self) -> None:
        """
        A half-close behind a slow stop and a wait: their replies and those
        behind them come in order, then the server closes, and the transport
        is never asked to read again (it would see the end of input twice).
        """
        self.conn.ok("run slow memory ignore-term")
        self.conn.send("stop --time=5 slow\nping\nwait slow\nlist\n")
        self.conn.halfClose()
        self.assertEqual(self.conn.lines(), [])
        self.assertFalse(self.conn.closed)
        self.server.clock.advance(5)
        for _ in range(5):
            self.server.clock.advance(0)
        replies = self.conn.replies()
        self.assertEqual([kind for kind, _ in replies], ["OK"] * 4)
        self.assertEqual(replies[0][1]["state"], "exited")
        self.assertEqual(replies[1][1], "pong")
        self.assertEqual(replies[2][1]["state"], "exited")
        self.assertTrue(self.conn.closed)
        self.assertEqual(self.conn.transport.producerState, "paused")

    def test_manyLinesOverSeveralTurns(self) -> None:
        """More lines than one turn serves are all answered before the close."""
        from pycm.daemon.framing import LINES_PER_TURN

        self.conn.send("ping\n" * (LINES_PER_TURN * 3))
        self.conn.halfClose()
        self.assertFalse(self.conn.closed)
        for _ in range(5):
            self.server.clock.advance(0)
        self.assertEqual(len(self.conn.lines()), LINES_PER_TURN * 3)
        self.assertTrue(self.conn.closed)

    def test_unfinishedLineDiscarded(self) -> None:
        """A last line without its newline gets no reply and runs nothing."""
        self.conn.send("ping\nrun web")
        self.conn.halfClose()
        self.assertEqual(self.conn.lines(), [b'OK "pong"'])
        self.assertEqual(self.conn.transport.value(), b'OK "pong"\n')
        self.assertTrue(self.conn.closed)
        self.assertEqual(self.server.backend._records, {})

    def test_nothingSent(self) -> None:
        """A half-close with nothing sent closes at once, with no reply."""
        self.conn.halfClose()
        self.assertTrue(self.conn.closed)
        self.assertEqual(self.conn.transport.value(), b"")

    def test_whileOpening(self) -> None:
        """
        Lines sent before the daemon is ready and then half-closed are
        answered once it is ready.
        """
        self.server.state.ready = False
        conn = self.server.connect()
        conn.send("ping\n")
        conn.halfClose()
        self.assertFalse(conn.closed)
        self.server.state.setReady()
        self.assertEqual(conn.lines(), [b'OK "pong"'])
        self.assertTrue(conn.closed)


class PreAuthTests(SynchronousTestCase):
    """What a connection may cost before it has sent the token."""

    def setUp(self) -> None:
        self.server = FakeServer(token="s3cret", authTimeout=30)
        self.conn = self.server.connect(requireAuth=True)

    def test_shortLinesBeforeAuth(self) -> None:
        """
        Before auth, a line over PREAUTH_MAX_LINE_LENGTH gets ERR too_long
        and the connection is closed; a line at the limit is served.
        """
        from pycm.daemon.protocol import PREAUTH_MAX_LINE_LENGTH

        self.conn.send(b"#" + b"x" * (PREAUTH_MAX_LINE_LENGTH - 1) + b"\n")
        self.conn.send(b"auth " + b"x" * (PREAUTH_MAX_LINE_LENGTH - 5) + b"\r\n")
        self.assertEqual(self.conn.replies()[0][1][0], "unauthorized")
        self.assertFalse(self.conn.closed)
        self.conn.send(b"auth " + b"x" * PREAUTH_MAX_LINE_LENGTH + b"\n")
        [(kind, (code, message))] = self.conn.replies()
        self.assertEqual((kind, code), ("ERR", "too_long"))
        self.assertIn("before auth", message)
        self.assertTrue(self.conn.closed)

    def test_unfinishedLineBoundedBeforeAuth(self) -> None:
        """
        An unfinished line is refused as soon as it passes the pre-auth
        limit: no connection holds more than that before auth.
        """
        from pycm.daemon.protocol import PREAUTH_MAX_LINE_LENGTH

        for _ in range(PREAUTH_MAX_LINE_LENGTH // 512 + 1):
            self.conn.send(b"y" * 512)
        [(kind, (code, _))] = self.conn.replies()
        self.assertEqual((kind, code), ("ERR", "too_long"))
        self.assertTrue(self.conn.closed)
        self.assertEqual(self.conn.protocol._buffer, b"")

    def test_listenerLimitAfterAuth(self) -> None:
        """
        Once authenticated the listener's own limit applies, also to the
        lines sent in the same write as auth.
        """
        self.conn.send("auth s3cret\nrun web memory --env=A=" + "v" * 10_000 + "\n")
        replies = self.conn.replies()
        self.assertEqual([kind for kind, _ in replies], ["OK", "OK"])
        self.assertEqual(replies[1][1]["name"], "web")
        self.conn.send(b"#" + b"z" * 20_000 + b"\n")
        self.assertFalse(self.conn.closed)

    def test_lineBehindAuthWaitingItsTurn(self) -> None:
        """
        An unfinished line behind an C{auth} line that waits its turn is
        held to the limit that auth brings, not to the pre-auth one: once
        authenticated, a line of 5,000 bytes is a request like any other.
        """
        from pycm.daemon.framing import LINES_PER_TURN

        self.conn.send(b"ping\n" * LINES_PER_TURN + b"auth s3cret\n" + b"#" + b"x" * 5000)
        self.assertEqual(len(self.conn.replies()), LINES_PER_TURN)
        self.conn.send(b"\nping\n")
        self.server.clock.advance(0)
        self.assertEqual(self.conn.replies(), [("OK", "authenticated"), ("OK", "pong")])
        self.assertFalse(self.conn.closed)

    def test_unfinishedLineBehindWaitingLinesBounded(self) -> None:
        """
        An unfinished line behind lines that wait their turn is still
        refused as soon as it passes the listener's own limit: waiting
        lines never let a connection buffer more than that of one line.
        """
        from pycm.daemon.framing import LINES_PER_TURN
        from pycm.daemon.protocol import DEFAULT_MAX_LINE_LENGTH

        self.conn.send(b"ping\n" * LINES_PER_TURN + b"auth s3cret\n")
        self.conn.send(b"y" * (DEFAULT_MAX_LINE_LENGTH + 2))
        self.assertLessEqual(len(self.conn.protocol._buffer), 16)
        self.server.clock.advance(0)
        *_, authenticated, (kind, (code, message)) = self.conn.replies()
        self.assertEqual(authenticated, ("OK", "authenticated"))
        self.assertEqual((kind, code), ("ERR", "too_long"))
        self.assertNotIn("before auth", message)
        self.assertTrue(self.conn.closed)

    def test_unfinishedLineBehindWaitingLinesBoundedBeforeAuth(self) -> None:
        """
        Behind waiting lines none of which is an C{auth}, an unfinished
        line is still refused as soon as it passes the pre-auth limit:
        a client that does not read holds no more than that before auth.
        """
        from pycm.daemon.protocol import PREAUTH_MAX_LINE_LENGTH

        self.conn.stopReading()
        self.conn.send(b"ping\n# not auth x\n" + b"y" * (PREAUTH_MAX_LINE_LENGTH + 2))
        self.assertLessEqual(len(self.conn.protocol._buffer), 32)
        self.conn.startReading()
        *_, (kind, (code, message)) = self.conn.replies()
        self.assertEqual((kind, code), ("ERR", "too_long"))
        self.assertIn("before auth", message)
        self.assertTrue(self.conn.closed)

    def test_noPreAuthLimitsWithoutToken(self) -> None:
        """
        A listener that needs no token (a UNIX socket) keeps the listener's
        line limit and is never closed for idling.
        """
        conn = self.server.connect(requireAuth=False)
        conn.send(b"#" + b"z" * 20_000 + b"\n")
        self.server.clock.advance(3600)
        self.assertFalse(conn.closed)
        self.assertEqual(conn.ok("list"), [])

    def test_idleClosed(self) -> None:
        """
        A connection that has not authenticated within --auth-timeout
        seconds of connecting is closed, with an ERR line saying why,
        however busy it kept: request lines, blank lines and comments do
        not move the deadline.
        """
        for _ in range(29):
            self.assertEqual(self.conn.ok("ping"), "pong")
            self.conn.send("\n# still here\n")
            self.server.clock.advance(1)
        self.conn.send("auth")
        self.assertFalse(self.conn.closed)
        self.server.clock.advance(1)
        [(kind, (code, message))] = self.conn.replies()
        self.assertEqual((kind, code), ("ERR", "unauthorized"))
        self.assertIn("30 seconds", message)
        self.assertTrue(self.conn.closed)
        self.assertEqual(self.conn.protocol._buffer, b"")

    def test_idleNonReaderAborted(self) -> None:
        """
        A connection timed out before auth whose client does not read is
        aborted at once (its ERR line would never go out); one that reads
        but does not take the line is aborted after EVICTION_GRACE seconds:
        neither keeps its descriptor past the deadline.
        """
        from pycm.daemon.protocol import EVICTION_GRACE

        aborted: list[str] = []
        self.conn.transport.abortConnection = lambda: aborted.append("stopped reading")
        self.conn.stopReading()
        reading = self.server.connect(requireAuth=True)
        reading.transport.abortConnection = lambda: aborted.append("lingering")
        self.server.clock.advance(30)
        self.assertEqual(aborted, ["stopped reading"])
        self.assertTrue(reading.closed)
        self.server.clock.advance(EVICTION_GRACE)
        self.assertEqual(aborted, ["stopped reading", "lingering"])
        reading.disconnect()
        self.conn.disconnect()
        self.assertEqual(self.server.clock.getDelayedCalls(), [])

    def test_noTimeoutOnceAuthenticated(self) -> None:
        """An authenticated connection may stay idle for as long as it likes."""
        self.assertEqual(self.conn.ok("auth s3cret"), "authenticated")
        self.server.clock.advance(3600)
        self.assertFalse(self.conn.closed)
        self.assertEqual(self.server.clock.getDelayedCalls(), [])

    def test_timerStoppedOnClose(self) -> None:
        """A connection that goes away leaves no timer behind."""
        self.conn.protocol.connectionLost()
        self.assertEqual(self.server.clock.getDelayedCalls(), [])

    def test_timerStartsWhenReady(self) -> None:
        """
        A connection waiting for the daemon to open its backend is not
        timed out meanwhile: its deadline counts from when it is read.
        """
        self.server.state.ready = False
        conn = self.server.connect(requireAuth=True)
        self.server.clock.advance(60)
        self.assertFalse(conn.closed)
        self.server.state.setReady()
        self.server.clock.advance(29)
        self.assertFalse(conn.closed)
        self.server.clock.advance(1)
        self.assertTrue(conn.closed)


class ConnectionLimitTests(SynchronousTestCase):
    """The daemon's cap on open connections."""

    def setUp(self) -> None:
        from pycm.daemon.connectionlimit import ConnectionLimit

        self.server = FakeServer()
        self.limit = ConnectionLimit(self.server.state, 2)

    def connect(self, requireAuth: bool = True, capped: bool = True) -> Any:
        from pycm.daemon.protocol import PycmServerFactory

        factory = PycmServerFactory(
            self.server.state,
            requireAuth=requireAuth,
            connectionLimit=self.limit,
            capped=capped,
        )
        protocol = factory.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        return protocol, transport

    def test_refusedOverTheCap(self) -> None:
        """
        Connections beyond --max-connections get one ERR unavailable line
        and are closed at once; room made by a close is used again.
        """
        first, _ = self.connect()
        self.connect()
        _, refused = self.connect()
        [line] = refused.value().splitlines()
        self.assertTrue(line.startswith(b"ERR unavailable "), line)
        self.assertIn(b"2 connections", line)
        self.assertTrue(refused.disconnecting)
        self.assertEqual(self.server.state.connections, 2)
        first.connectionLost()
        protocol, transport = self.connect()
        protocol.dataReceived(b"ping\n")
        self.assertEqual(transport.value(), b'OK "pong"\n')

    def test_oneLogLinePerEpisode(self) -> None:
        """
        An episode of refusals is logged once when it starts and once when
        it ends (with how many were refused), not once per connection.
        """
        from pycm.daemon.connectionlimit import ConnectionLimit

        events: list[dict[str, Any]] = []
        self.patch(ConnectionLimit, "log", Logger(observer=events.append))
        first, _ = self.connect()
        self.connect()
        for _ in range(50):
            self.connect()
        self.assertEqual(len(events), 1)
        self.assertEqual(events[0]["log_level"], LogLevel.warn)
        first.connectionLost()
        self.assertEqual(len(events), 2)
        self.assertIn("50 refused", formatEvent(events[1]))
        for _ in range(5):
            self.connect()
        self.assertEqual(len(events), 3)

    def test_uncappedListenerNeverRefused(self) -> None:
        """
        An uncapped listener (a UNIX socket, stdio) is served over the cap,
        so an operator gets in during a flood; its connections count.
        """
        self.connect()
        self.connect()
        protocol, transport = self.connect(requireAuth=False, capped=False)
        protocol.dataReceived(b"ping\n")
        self.assertEqual(transport.value(), b'OK "pong"\n')
        self.assertEqual(self.server.state.connections, 3)
        _, refused = self.connect()
        self.assertTrue(refused.value().startswith(b"ERR unavailable "))

    def test_noAuthTCPListenerCapped(self) -> None:
        """
        A TCP listener without the token (--no-auth on loopback) is capped
        like any other TCP or TLS listener: the cap is decided by the kind
        of listener, not by whether it wants the token.
        """
        self.connect(requireAuth=False)
        self.connect(requireAuth=False)
        _, refused = self.connect(requireAuth=False)
        self.assertTrue(refused.value().startswith(b"ERR unavailable "), refused.value())
        self.assertTrue(refused.disconnecting)
        self.assertEqual(self.server.state.connections, 2)

    def test_cappedByListenerKind(self) -> None:
        """
        Every TCP and TLS listener is capped, with or without --no-auth;
        UNIX sockets and stdio never are, and the daemon's factories follow
        (a socket systemd passed: tests.test_systemd_activation, which
        passes one).
        """
        from pycm.daemon.listeners import classifyListener

        for description, noAuth in [
            ("tcp:8080:interface=127.0.0.1", True),
            ("tcp:8080:interface=127.0.0.1", False),
            ("tcp6:8080:interface=\\:\\:1", True),
            ("ssl:8443:privateKey=k.pem", True),
        ]:
            self.assertTrue(classifyListener(description, noAuth).capped, description)
        for description in ("unix:/run/pycm.sock", "stdio:"):
            self.assertFalse(classifyListener(description, True).capped, description)

    def test_episodeHysteresis(self) -> None:
        """
        Clients opening and closing connections at the cap make one episode,
        logged once: it ends only when the connections fall below 90% of
        the cap, or at a close after a quiet minute without refusals.
        """
        from pycm.daemon.connectionlimit import ConnectionLimit

        events: list[dict[str, Any]] = []
        self.patch(ConnectionLimit, "log", Logger(observer=events.append))
        self.limit.maximum = 10
        clock = self.server.clock
        open_ = [self.connect()[0] for _ in range(10)]
        for _ in range(50):
            self.assertTrue(self.connect()[1].disconnecting)
            open_.pop().connectionLost()
            open_.append(self.connect()[0])
            clock.advance(1)
        self.assertEqual([e["log_level"] for e in events], [LogLevel.warn])
        self.assertEqual(self.limit.refused, 50)
        # Below the cap but not below 90% of it: the episode goes on.
        open_.pop().connectionLost()
        self.assertEqual(len(events), 1)
        # A quiet minute: the next close ends it.
        open_.append(self.connect()[0])
        clock.advance(ConnectionLimit.QUIET)
        open_.pop().connectionLost()
        self.assertEqual(len(events), 2)
        self.assertIn("50 refused", formatEvent(events[1]))
        # A new episode, ended by falling below 90% of the cap.
        open_.append(self.connect()[0])
        self.connect()
        self.assertEqual(len(events), 3)
        open_.pop().connectionLost()
        self.assertEqual(len(events), 3)
        open_.pop().connectionLost()
        self.assertEqual(len(events), 4)
        self.assertIn("1 refused", formatEvent(events[3]))


class MakeRoomTests(SynchronousTestCase):
    """
    At the cap, a new connection takes the place of the oldest one that has
    not authenticated, so holding connections without the token never
    keeps out a client that has it.
    """

    TOKEN = "s3cret-token-value"

    def setUp(self) -> None:
        from pycm.daemon.connectionlimit import ConnectionLimit

        self.server = FakeServer(token=self.TOKEN)
        self.limit = ConnectionLimit(self.server.state, 2)

    def connect(
        self, requireAuth: bool = True, capped: bool = True, peer: str = "192.168.1.1"
    ) -> Any:
        """A connection, or a refusal, from C{peer}: a FakeConnection either way."""
        from twisted.internet.address import IPv4Address

        from pycm.daemon.protocol import PycmServerFactory
        from pycm.testing.server import FakeConnection

        factory = PycmServerFactory(
            self.server.state, requireAuth=requireAuth, connectionLimit=self.limit,
            capped=capped,
        )
        protocol = factory.buildProtocol(None)
        transport = StringTransport(peerAddress=IPv4Address("TCP", peer, 40000))
        protocol.makeConnection(transport)
        return FakeConnection(protocol, transport, self.server.clock)

    def test_oldestUnauthenticatedMakesRoom(self) -> None:
        """
        With the cap full of connections that have not authenticated, a new
        one is served: the oldest gets ERR unavailable and is closed; the
        new one authenticates and is served; the next newcomer displaces the
        next oldest that has not authenticated, never the authenticated one.
        """
        first, second = self.connect(), self.connect()
        newcomer = self.connect()
        [line] = first.transport.value().splitlines()
        self.assertTrue(line.startswith(b"ERR unavailable "), line)
        self.assertIn(b"not authenticated", line)
        self.assertTrue(first.transport.disconnecting)
        self.assertFalse(second.transport.disconnecting)
        newcomer.send(f"auth {self.TOKEN}\nping\n")
        self.assertEqual(newcomer.lines(), [b'OK "authenticated"', b'OK "pong"'])
        first.protocol.connectionLost()
        self.assertEqual(self.server.state.connections, 2)
        later = self.connect()
        self.assertTrue(second.transport.disconnecting)
        self.assertFalse(newcomer.transport.disconnecting)
        later.send("ping\n")
        self.assertEqual(later.lines(), [b'OK "pong"'])

    def test_alreadyLeavingMakesRoomQuietly(self) -> None:
        """
        A connection already let go of for want of auth in time, whose
        close has not finished, is aborted at once to make room: no second
        ERR line after the one that closed it, no timer left behind.
        """
        first = self.connect()
        aborted: list[bool] = []
        first.transport.abortConnection = lambda: aborted.append(True)
        self.server.clock.advance(30)
        [line] = first.transport.value().splitlines()
        self.assertTrue(line.startswith(b"ERR unauthorized "), line)
        self.connect()
        self.connect()
        self.assertEqual(first.transport.value().splitlines(), [line])
        self.assertEqual(aborted, [True])
        first.protocol.connectionLost()
        self.assertEqual(
            [
                call
                for call in self.server.clock.getDelayedCalls()
                if getattr(call.func, "__self__", None) is first.protocol
            ],
            [],
        )

    def test_placeTakenFromTheBusiestPeer(self) -> None:
        """
        The place is taken from the peer holding the most connections that
        have not authenticated, its oldest first: a peer reopening
        connections as fast as they are closed displaces only its own, never
        an older connection of another peer that holds fewer.
        """
        self.limit.maximum = 4
        client = self.connect(peer="10.0.0.2")
        attacker = [self.connect(peer="10.0.0.9") for _ in range(3)]
        for _ in range(20):
            attacker.append(self.connect(peer="10.0.0.9"))
            displaced = attacker.pop(0)
            self.assertTrue(displaced.transport.disconnecting)
            displaced.protocol.connectionLost()
        self.assertFalse(client.transport.disconnecting)
        client.send(f"auth {self.TOKEN}\n")
        self.assertEqual(client.lines(), [b'OK "authenticated"'])

    def test_authenticatedAloneAreRefused(self) -> None:
        """
        When every connection at the cap has authenticated, or needs no
        token (a --no-auth TCP listener), a new one is refused as before and
        no connection is closed for it.
        """
        authenticated = self.connect()
        authenticated.send(f"auth {self.TOKEN}\n")
        noAuth = self.connect(requireAuth=False)
        refused = self.connect()
        self.assertTrue(refused.transport.value().startswith(b"ERR unavailable "))
        self.assertTrue(refused.transport.disconnecting)
        self.assertFalse(authenticated.transport.disconnecting)
        self.assertFalse(noAuth.transport.disconnecting)
        self.assertEqual(self.limit.refused, 1)

    def test_uncappedNeverMakeRoom(self) -> None:
        """
        A connection on an uncapped listener (a UNIX socket) is never closed
        for a newcomer, even before auth.
        """
        unix = self.connect(capped=False)
        self.connect(requireAuth=False)
        refused = self.connect()
        self.assertTrue(refused.transport.value().startswith(b"ERR unavailable "))
        self.assertFalse(unix.transport.disconnecting)

    def test_lingeringAborted(self) -> None:
        """
        A displaced connection whose client does not take its ERR line is
        aborted after EVICTION_GRACE seconds; until it is gone it counts
        against a bound of one cap's worth of leaving connections, beyond
        which newcomers are refused.
        """
        from pycm.daemon.protocol import EVICTION_GRACE

        aborted: list[int] = []
        held = [self.connect(), self.connect()]
        for index, connection in enumerate(held):
            connection.transport.abortConnection = lambda index=index: aborted.append(index)
        self.connect()
        self.connect()
        # Both held ones are leaving (their close never finishes here): the
        # two newcomers are served, the next is refused.
        self.assertEqual(self.server.state.connections, 4)
        refused = self.connect()
        self.assertTrue(refused.transport.value().startswith(b"ERR unavailable "))
        self.server.clock.advance(EVICTION_GRACE)
        self.assertEqual(aborted, [0, 1])


class CloseTests(SynchronousTestCase):
    """Every close the server makes finishes, whatever the write throttle did."""

    def test_closeWithProducerPaused(self) -> None:
        """
        On a real TCP transport (a socket pair, driven by hand on a fake
        reactor) whose buffer filled and paused the write throttle, a close
        (a half-close after a big reply) finishes once the client reads: the
        throttle is unregistered first.  A transport still holding a paused
        streaming producer resumes it when its buffer drains instead of
        closing, and the connection stays open for ever.
        """
        import socket

        from twisted.internet.tcp import Connection
        from twisted.internet.testing import MemoryReactorClock
        from twisted.python.failure import Failure

        from pycm.daemon.protocol import PycmServerFactory

        server = FakeServer()
        creator = server.connect()
        for i in range(300):
            creator.ok(f"create c{i}")
        ours, theirs = socket.socketpair()
        self.addCleanup(ours.close)
        self.addCleanup(theirs.close)
        protocol = PycmServerFactory(server.state).buildProtocol(None)
        reactor = MemoryReactorClock()
        transport = Connection(ours, protocol, reactor)
        # As tcp.Server does once the connection is accepted.
        transport.connected = 1
        protocol.makeConnection(transport)
        protocol.dataReceived(b"list\n")
        self.assertTrue(transport.producerPaused)
        # The client shuts its side (nc -N) before it reads the reply.
        protocol.readConnectionLost()
        self.assertTrue(transport.disconnecting)
        theirs.setblocking(False)
        received = b""
        # What the reactor does: write while the transport asks to.
        while transport in reactor.getWriters():
            try:
                received += theirs.recv(1 << 20)
            except BlockingIOError:
                pass
            done = transport.doWrite()
            if done is not None:
                transport.connectionLost(Failure(done))
                break
        self.assertTrue(protocol._lost, "the close never finished")
        theirs.settimeout(5)
        while chunk := theirs.recv(1 << 20):
            received += chunk
        self.assertTrue(received.startswith(b"OK [{"), received[:40])
        self.assertTrue(received.endswith(b"}]\n"), received[-40:])


class MemoryTests(SynchronousTestCase):
    def test_closedConnectionFreedAtOnce(self) -> None:
        """
        A closed connection leaves no reference cycle: its protocol, and the
        input it held, are freed as soon as it is closed, not at the next
        full garbage collection (3,000 such connections once held 200 MiB
        after they had closed); so is one whose C{events --since} replay
        waited for it to read.
        """
        import gc
        import weakref

        from pycm.daemon.protocol import PycmServerProtocol

        # Log events name their source: keep none (trial's log buffer would).
        self.patch(PycmServerProtocol, "log", Logger(observer=lambda event: None))
        server = FakeServer(token="s3cret")
        waiting = server.connect(requireAuth=True)  # its idle timer runs
        waiting.send(b"auth " + b"x" * 3000)
        subscriber = server.connect(requireAuth=True)
        subscriber.ok("auth s3cret")
        subscriber.ok("events")
        for i in range(600):
            subscriber.ok(f"create c{i}")
        replaying = server.connect(requireAuth=True)
        replaying.ok("auth s3cret")
        replaying.send("events --since 0\n")
        replaying.stopReading()
        server.clock.advance(0)
        self.assertTrue(replaying.protocol._writable)
        protocols = [
            weakref.ref(conn.protocol) for conn in (waiting, subscriber, replaying)
        ]
        enabled = gc.isenabled()
        gc.collect()
        gc.disable()
        try:
            for conn in (waiting, subscriber, replaying):
                # What a real transport does as the connection is lost.
                conn.transport.unregisterProducer()
                conn.protocol.connectionLost()
                conn.transport.protocol = None
            del waiting, subscriber, replaying, conn
            self.assertEqual([protocol() for protocol in protocols], [None, None, None])
        finally:
            if enabled:
                gc.enable()


class LegacyFramingTests(SynchronousTestCase):
    """
    C{--legacy-framing}: a pause after an unfinished line ends a request,
    for the teaching client that sends no newline; lines that end with a
    newline are served as without the option.
    """

    def setUp(self) -> None:
        from pycm.daemon.legacyframing import LEGACY_PAUSE

        self.pause = LEGACY_PAUSE
        self.server = FakeServer(legacyFraming=True)
        self.conn = self.server.connect()

    def test_pauseEndsRequest(self) -> None:
        """
        A request with no newline is served once no byte has come for the
        pause, not before.
        """
        self.conn.send("ping")
        self.server.clock.advance(self.pause * 0.9)
        self.assertEqual(self.conn.lines(), [])
        self.server.clock.advance(self.pause * 0.1)
        self.assertEqual(self.conn.lines(), [b'OK "pong"'])
        self.assertEqual(self.server.clock.getDelayedCalls(), [])

    def test_piecesWithinThePauseAreOneRequest(self) -> None:
        """
        Bytes arriving in pieces less than the pause apart are one request:
        each piece starts the pause again.
        """
        for piece in (b"ru", b"n b", b"log", b"one"):
            self.conn.send(piece)
            self.server.clock.advance(self.pause * 0.8)
        self.assertEqual(self.conn.lines(), [])
        self.assertEqual(self.server.backend._records, {})
        self.server.clock.advance(self.pause * 0.2)
        [(kind, container)] = self.conn.replies()
        self.assertEqual((kind, container["name"]), ("OK", "blogone"))

    def test_everyChunkSize(self) -> None:
        """
        The same unfinished request fed in chunks of 1..N bytes with no
        pause between them is one request, served after the pause.
        """
        request = b"run blogone"
        for size in range(1, len(request) + 1):
            server = FakeServer(legacyFraming=True)
            conn = server.connect()
            conn.sendInChunks(request, size)
            self.assertEqual(conn.lines(), [], size)
            server.clock.advance(self.pause)
            self.assertEqual([kind for kind, _ in conn.replies()], ["OK"], size)
            self.assertEqual(list(server.backend._records), ["blogone"], size)

    def test_teachingClientSession(self) -> None:
        """
        The teaching client's requests, each followed by a pause, do what
        they say, one reply each, in order, then C{exit} closes.
        """
        for request in ("run blogone", "list", "stop blogone", "run blogtwo", "exit"):
            self.conn.send(request)
            self.server.clock.advance(self.pause)
            for _ in range(3):
                self.server.clock.advance(0)
        replies = self.conn.replies()
        self.assertEqual([kind for kind, _ in replies], ["OK"] * 5)
        self.assertEqual(replies[-1][1], "bye")
        self.assertTrue(self.conn.closed)
        states = {c["name"]: c["state"] for c in self.server.connect().ok("list")}
        self.assertEqual(states, {"blogone": "exited", "blogtwo": "running"})

    def test_newlineLinesUnchanged(self) -> None:
        """
        Lines ending with a newline are served at once, in any chunking,
        and leave no pause timer behind.
        """
        data = b"ping\r\nversion\nping\n"
        for size in range(1, len(data) + 1):
            server = FakeServer(legacyFraming=True)
            conn = server.connect()
            conn.sendInChunks(data, size)
            self.assertEqual([kind for kind, _ in conn.replies()], ["OK"] * 3, size)
            self.assertEqual(server.clock.getDelayedCalls(), [], size)

    def test_newlineBeforeThePause(self) -> None:
        """
        A line whose newline comes within the pause is one request, served
        when the newline comes; the pause then ends nothing.
        """
        self.conn.send("pi")
        self.server.clock.advance(self.pause / 2)
        self.conn.send("ng\n")
        self.assertEqual(self.conn.lines(), [b'OK "pong"'])
        self.server.clock.advance(self.pause)
        self.assertEqual(self.conn.lines(), [])

    def test_partialLineThenPauseThenRest(self) -> None:
        """
        A partial line followed by a pause is a request under legacy
        framing: the bytes after the pause start the next one.
        """
        self.conn.send("pi")
        self.server.clock.advance(self.pause)
        self.conn.send("ng\n")
        replies = self.conn.replies()
        self.assertEqual([kind for kind, _ in replies], ["ERR", "ERR"])
        self.assertEqual([value[0] for _, value in replies], ["bad_request"] * 2)
        self.assertIn("pi", replies[0][1][1])

    def test_pausedRequestWithCR(self) -> None:
        """A CR ending a paused request is dropped, as before an LF."""
        self.conn.send("ping\r")
        self.server.clock.advance(self.pause)
        self.assertEqual(self.conn.lines(), [b'OK "pong"'])

    def test_longLineLimit(self) -> None:
        """
        A paused request is held to the line limit: at the limit it is
        served, one byte over it gets ERR too_long and the connection is
        closed; an unfinished line past the limit is refused at once.
        """
        conn = FakeServer(legacyFraming=True, maxLineLength=2048).connect()
        conn.send(b"x" * 2048)
        conn.clock.advance(self.pause)
        self.assertEqual(conn.replies()[0][1][0], "bad_request")
        self.assertFalse(conn.closed)
        conn.send(b"x" * 2049)
        conn.clock.advance(self.pause)
        [(kind, (code, _))] = conn.replies()
        self.assertEqual((kind, code), ("ERR", "too_long"))
        self.assertTrue(conn.closed)
        conn = FakeServer(legacyFraming=True, maxLineLength=2048).connect()
        conn.send(b"y" * 2050)
        [(kind, (code, _))] = conn.replies()
        self.assertEqual((kind, code), ("ERR", "too_long"))
        self.assertTrue(conn.closed)
        conn.clock.advance(self.pause)
        self.assertEqual(conn.lines(), [])

    def test_preAuthLimits(self) -> None:
        """
        On a listener that wants the token, a paused request before auth is
        held to the short pre-auth limit and refused like any other; a
        paused C{auth TOKEN} authenticates.
        """
        from pycm.daemon.protocol import PREAUTH_MAX_LINE_LENGTH

        server = FakeServer(token="s3cret", legacyFraming=True)
        conn = server.connect(requireAuth=True)
        conn.send("list")
        conn.clock.advance(self.pause)
        self.assertEqual(conn.replies()[0][1][0], "unauthorized")
        conn.send(b"auth " + b"x" * PREAUTH_MAX_LINE_LENGTH)
        conn.clock.advance(self.pause)
        [(kind, (code, message))] = conn.replies()
        self.assertEqual((kind, code), ("ERR", "too_long"))
        self.assertIn("before auth", message)
        self.assertTrue(conn.closed)
        conn = server.connect(requireAuth=True)
        conn.send("auth s3cret")
        conn.clock.advance(self.pause)
        conn.send("list")
        conn.clock.advance(self.pause)
        self.assertEqual([kind for kind, _ in conn.replies()], ["OK", "OK"])

    def test_pausesSeenWhileARequestIsInFlight(self) -> None:
        """
        While a slow request is in flight the connection is still read (a
        pause is seen only while it is read), so the requests typed
        meanwhile stay apart; they wait for their turn and are answered in
        order after it.
        """
        self.conn.send("run slow memory ignore-term")
        self.server.clock.advance(self.pause)
        self.conn.lines()
        self.conn.send("stop --time=5 slow")
        self.server.clock.advance(self.pause)
        for request in ("list", "ping"):
            self.assertEqual(self.conn.transport.producerState, "producing")
            self.conn.send(request)
            self.server.clock.advance(self.pause)
        self.assertEqual(self.conn.lines(), [])
        self.server.clock.advance(5)
        for _ in range(3):
            self.server.clock.advance(0)
        replies = self.conn.replies()
        self.assertEqual([kind for kind, _ in replies], ["OK", "OK", "OK"])
        self.assertEqual(replies[0][1]["state"], "exited")
        self.assertEqual(replies[2][1], "pong")

    def test_readAheadBounded(self) -> None:
        """
        Behind a request in flight, a connection under legacy framing is
        read only until it holds LEGACY_READ_AHEAD bytes; then it is no
        longer read, and is read again once the request is answered.
        """
        from pycm.daemon.legacyframing import LEGACY_READ_AHEAD

        self.conn.ok("run slow memory ignore-term")
        self.conn.send("stop --time=5 slow\n")
        self.conn.send("ping\n" * (LEGACY_READ_AHEAD // 5))
        self.assertEqual(self.conn.transport.producerState, "producing")
        self.conn.send("ping\n")
        self.assertEqual(self.conn.transport.producerState, "paused")
        self.server.clock.advance(5)
        for _ in range(3):
            self.server.clock.advance(0)
        self.assertEqual(self.conn.transport.producerState, "producing")
        self.assertEqual(len(self.conn.lines()), 2 + LEGACY_READ_AHEAD // 5)

    def test_noPauseWhileNotReading(self) -> None:
        """
        Silence while the daemon does not read the connection is no pause:
        a line cut by the end of a read behind a slow request is not ended
        early, and its rest, read once the request is answered, completes
        it; if no rest comes, the pause is counted from when reading
        resumed.
        """
        from pycm.daemon.legacyframing import LEGACY_READ_AHEAD

        def cutBehindASlowStop() -> Any:
            conn = FakeServer(legacyFraming=True).connect()
            conn.ok("run slow memory ignore-term")
            conn.send(b"stop --time=5 slow\n#" + b"x" * LEGACY_READ_AHEAD + b"\npi")
            self.assertEqual(conn.transport.producerState, "paused")
            conn.clock.advance(4)
            self.assertEqual(conn.lines(), [])
            conn.clock.advance(1)
            for _ in range(3):
                conn.clock.advance(0)
            self.assertEqual(conn.replies()[0][1]["state"], "exited")
            self.assertEqual(conn.transport.producerState, "producing")
            return conn

        conn = cutBehindASlowStop()
        conn.send("ng\n")
        self.assertEqual(conn.lines(), [b'OK "pong"'])
        conn = cutBehindASlowStop()
        conn.clock.advance(self.pause * 0.9)
        self.assertEqual(conn.lines(), [])
        conn.clock.advance(self.pause * 0.1)
        self.assertEqual(conn.replies()[0][1][0], "bad_request")

    def test_halfCloseEndsRequest(self) -> None:
        """
        The end of input ends an unfinished request as a pause would: it is
        served, then the connection closes.
        """
        self.conn.send("ping\nrun web")
        self.conn.halfClose()
        self.assertEqual([kind for kind, _ in self.conn.replies()], ["OK", "OK"])
        self.assertEqual(list(self.server.backend._records), ["web"])
        self.assertTrue(self.conn.closed)
        self.assertEqual(self.server.clock.getDelayedCalls(), [])

    def test_exitWithoutNewline(self) -> None:
        """C{exit} sent with no newline says bye and closes after the pause."""
        self.conn.send("exit")
        self.server.clock.advance(self.pause)
        self.assertEqual(self.conn.lines(), [b'OK "bye"'])
        self.assertTrue(self.conn.closed)

    def test_noPauseTimerAfterClose(self) -> None:
        """
        A connection lost in the middle of a line leaves no pause timer
        behind: the close ends the line, as a half-close does, and it is
        carried out in the next turn (L{pycm.daemon.leftovers}).
        """
        self.conn.send("run web")
        self.conn.protocol.connectionLost()
        self.assertEqual(self.server.backend._records, {})
        self.server.clock.advance(0)
        self.assertEqual(self.server.clock.getDelayedCalls(), [])
        self.assertEqual(list(self.server.backend._records), ["web"])

    def test_notWithoutTheOption(self) -> None:
        """
        Without legacy framing a pause ends nothing: the unfinished request
        waits for its newline, and is dropped unanswered at a half-close.
        """
        server = FakeServer()
        conn = server.connect()
        conn.send("run web")
        server.clock.advance(self.pause * 100)
        self.assertEqual(conn.lines(), [])
        conn.halfClose()
        self.assertEqual(conn.transport.value(), b"")
        self.assertEqual(server.backend._records, {})


class PeerTests(SynchronousTestCase):
    """How the log names the other end of a connection."""

    def test_unixPeer(self) -> None:
        """
        A UNIX peer is named by the socket's path, the connection's
        descriptor and the connecting process's pid and uid (SO_PEERCRED),
        never as a bare C{UNIXAddress}.
        """
        import os
        import socket

        from twisted.internet.address import UNIXAddress

        from pycm.daemon.peers import describePeer

        ours, theirs = socket.socketpair(socket.AF_UNIX)
        self.addCleanup(ours.close)
        self.addCleanup(theirs.close)

        class UNIXTransport(StringTransport):
            """What a UNIX server transport shows: its socket and addresses."""

            socket = ours

            def getPeer(self) -> UNIXAddress:
                return UNIXAddress(None)

            def getHost(self) -> UNIXAddress:
                return UNIXAddress(b"/run/pycm.sock")

        self.assertEqual(
            describePeer(UNIXTransport()),
            f"unix:/run/pycm.sock#{ours.fileno()} pid={os.getpid()} uid={os.getuid()}",
        )

    def test_otherPeers(self) -> None:
        """TCP peers are HOST:PORT ([HOST]:PORT for IPv6); stdio is C{stdio}."""
        from twisted.internet.address import IPv4Address, IPv6Address
        from twisted.internet.stdio import PipeAddress

        from pycm.daemon.peers import describePeer

        for address, described in [
            (IPv4Address("TCP", "127.0.0.1", 50412), "127.0.0.1:50412"),
            (IPv6Address("TCP", "::1", 50412), "[::1]:50412"),
            (PipeAddress(), "stdio"),
        ]:
            self.assertEqual(describePeer(StringTransport(peerAddress=address)), described)


class ListenerBacklogTests(SynchronousTestCase):
    """
    TCP, TLS and UNIX listeners get a listen backlog of min(1024,
    somaxconn) unless the endpoint string gives one (Twisted's 50 makes
    about one connect in 50 wait a second when many clients connect at once).
    """

    def listen(self, description: str) -> Any:
        from twisted.internet.protocol import Factory
        from twisted.internet.testing import MemoryReactor

        from pycm.daemon.listeners import classifyListener

        reactor = MemoryReactor()
        listener = classifyListener(description, noAuth=False)
        listener.endpoint(reactor).listen(Factory())
        return reactor

    def test_defaultBacklog(self) -> None:
        """Without backlog= a TCP or UNIX listener asks for the larger default."""
        from pycm.daemon.listeners import defaultBacklog

        expected = defaultBacklog()
        self.assertGreater(expected, 50)
        self.assertEqual(self.listen("tcp:0:interface=127.0.0.1").tcpServers[0][2], expected)
        self.assertEqual(self.listen("tcp6:0:interface=\\:\\:1").tcpServers[0][2], expected)
        path = self.mktemp()
        self.assertEqual(self.listen(f"unix:{path}").unixServers[0][2], expected)

    def test_givenBacklogKept(self) -> None:
        """A backlog the operator gives, by keyword or position, is kept."""
        self.assertEqual(
            self.listen("tcp:0:interface=127.0.0.1:backlog=7").tcpServers[0][2], 7
        )
        self.assertEqual(self.listen("tcp:0:127.0.0.1:9").tcpServers[0][2], 9)
        path = self.mktemp()
        self.assertEqual(self.listen(f"unix:{path}:mode=600:backlog=5").unixServers[0][2], 5)

    def test_backlogFromKernel(self) -> None:
        """The default is somaxconn when lower than 1024, 1024 when higher."""
        from pycm.daemon.listeners import defaultBacklog

        low, high, broken = self.mktemp(), self.mktemp(), self.mktemp()
        for path, text in ((low, "128\n"), (high, "4096\n"), (broken, "x")):
            with open(path, "w") as file:
                file.write(text)
        self.assertEqual(defaultBacklog(low), 128)
        self.assertEqual(defaultBacklog(high), 1024)
        self.assertEqual(defaultBacklog(broken), 1024)
        self.assertEqual(defaultBacklog(self.mktemp()), 1024)


class PeerGroupTests(SynchronousTestCase):
    """
    Who a TCP connection comes from: the uid owning a loopback peer's socket
    (asked of the kernel, as ss -e does), else the peer's address.  Real
    sockets on loopback: the kernel is what is being asked.
    """

    def connected(self, family: int = 0) -> tuple[Any, Any]:
        """A loopback TCP connection: the accepted end and its peer's address."""
        import socket

        family = family or socket.AF_INET
        host = "127.0.0.1" if family == socket.AF_INET else "::1"
        server = socket.socket(family)
        self.addCleanup(server.close)
        server.bind((host, 0))
        server.listen()
        client = socket.create_connection(server.getsockname()[:2])
        self.addCleanup(client.close)
        accepted, peer = server.accept()
        self.addCleanup(accepted.close)
        return accepted, peer

    def test_ownUID(self) -> None:
        """A loopback peer of this process is this process's uid, IPv4 and IPv6."""
        import os
        import socket

        from pycm.daemon.peers import loopbackPeerUID

        for family in (socket.AF_INET, socket.AF_INET6):
            accepted, peer = self.connected(family)
            uid = loopbackPeerUID(peer[:2], accepted.getsockname()[:2])
            self.assertEqual(uid, os.getuid())

    def test_notLoopback(self) -> None:
        """A remote peer is told by its address; the kernel is not asked."""
        from twisted.internet.address import IPv4Address

        from pycm.daemon.peers import loopbackPeerUID, peerGroup

        self.assertIsNone(loopbackPeerUID(("192.0.2.7", 4000), ("192.0.2.1", 8080)))
        transport = StringTransport(peerAddress=IPv4Address("TCP", "192.0.2.7", 4000))
        self.assertEqual(peerGroup(transport), "host:192.0.2.7")


class AcceptsPerTurnTests(SynchronousTestCase):
    """A listener accepts a bounded number of connections in one reactor turn."""

    def test_burstSpreadOverTurns(self) -> None:
        """
        With 50 connects waiting, one turn of a real TCP port (its C{doRead})
        accepts at most L{MAX_ACCEPTS_PER_TURN}, however long the burst
        lasts (Twisted's own count starts at 100 and grows by 20 a turn),
        so other clients' requests are read between the turns.
        """
        import socket

        from twisted.internet import reactor
        from twisted.internet.protocol import Factory, Protocol

        from pycm.daemon.listeners import MAX_ACCEPTS_PER_TURN, capAccepts

        built: list[Protocol] = []

        class Counting(Factory):
            def buildProtocol(self, addr: Any) -> Protocol:
                protocol = Protocol()
                built.append(protocol)
                return protocol

        port = reactor.listenTCP(0, Counting(), backlog=128, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        port.stopReading()  # this test turns it by hand
        capAccepts(port)
        clients = []
        for _ in range(50):
            client = socket.create_connection(("127.0.0.1", port.getHost().port))
            self.addCleanup(client.close)
            clients.append(client)
        turns = 0
        while len(built) < 50 and turns < 50:
            before = len(built)
            port.doRead()
            turns += 1
            self.assertLessEqual(len(built) - before, MAX_ACCEPTS_PER_TURN)
        self.assertEqual(len(built), 50)
        self.assertGreaterEqual(turns, 50 // MAX_ACCEPTS_PER_TURN)
        for protocol in built:
            protocol.transport.abortConnection()  # type: ignore[union-attr]
