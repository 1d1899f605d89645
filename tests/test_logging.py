"""
Tests of what the daemon logs: thrown-away input, refusals, failed
C{auth}, forced closes (so that a client that sees nothing leaves a trace),
and never a token or an option's value, at any level.  Fake transports and
a clock; the log is captured from the global log publisher.
"""

from __future__ import annotations

import json
import os
import stat
from typing import Any

from twisted.internet.protocol import connectionDone
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.python import logfile
from twisted.scripts.twistd import ServerOptions
from twisted.trial.unittest import SynchronousTestCase

from pycm.daemon.dispatch import describeLine
from pycm.daemon.startup import UnsafeLogFile, makeLogFilePrivate, twistdLogPath
from pycm.redact import REDACTED, containerSecrets, scrub
from pycm.testing.server import FakeServer

TOKEN = "s3cret-token-value"
WRONG = "wr0ng-token-value"


def captureLog(testCase: SynchronousTestCase) -> list[dict[str, Any]]:
    """Every log event from now until the end of the test."""
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    testCase.addCleanup(globalLogPublisher.removeObserver, events.append)
    return events


def assertNeverLogged(testCase: SynchronousTestCase, events: list[dict[str, Any]],
                      *secrets: str) -> None:
    """No event, formatted or as its raw fields, holds any of C{secrets}."""
    for event in events:
        text = formatEvent(event) + repr(event)
        for secret in secrets:
            testCase.assertNotIn(secret, text)


class ThrownAwayInputTests(SynchronousTestCase):
    """Input the daemon drops at close is logged at info, once, without its bytes."""

    def setUp(self) -> None:
        self.events = captureLog(self)
        self.server = FakeServer(token=TOKEN)

    def closedLines(self) -> list[str]:
        return [
            formatEvent(event) for event in self.events
            if "closed" in formatEvent(event) and event["log_level"] == LogLevel.info
        ]

    def test_unfinishedLine(self) -> None:
        """
        A line without its line end (the teaching client's C{run NAME}) is
        logged at close with the peer and its length, never its bytes.
        """
        conn = self.server.connect()
        conn.send(f"auth {TOKEN}")
        conn.protocol.connectionLost(connectionDone)
        peer = conn.protocol.session.peer
        [line] = self.closedLines()
        self.assertIn(peer, line)
        self.assertIn(f"{len('auth ' + TOKEN)} bytes of an unfinished line (no line end)", line)
        self.assertIn("discarded", line)
        assertNeverLogged(self, self.events, TOKEN)

    def test_linesNotServed(self) -> None:
        """
        Complete lines still waiting behind a request in flight when the
        client goes are counted, with the unfinished rest.
        """
        conn = self.server.connect()
        conn.ok("run web")
        conn.send("wait web\nping\nlist\nru")
        conn.protocol.connectionLost(connectionDone)
        [line] = self.closedLines()
        self.assertIn("2 request lines not yet served and 2 bytes of an unfinished line", line)

    def test_unfinishedLineAtHalfClose(self) -> None:
        """
        A client that shuts its sending side after a line without its line
        end (C{printf 'run web' | nc -N}) gets the replies to its complete
        lines; the unfinished one is counted at close.
        """
        conn = self.server.connect()
        conn.send("ping\nrun web")
        conn.protocol.readConnectionLost()
        self.assertEqual(conn.lines(), [b'OK "pong"'])
        self.assertTrue(conn.closed)
        conn.protocol.connectionLost(connectionDone)
        [line] = self.closedLines()
        self.assertIn("; 7 bytes of an unfinished line (no line end) discarded", line)
        self.assertEqual(self.server.backend._records, {})

    def test_nothingThrownAway(self) -> None:
        """A connection that leaves nothing unread closes with the plain line."""
        conn = self.server.connect()
        conn.ok("ping")
        conn.protocol.connectionLost(connectionDone)
        [line] = self.closedLines()
        self.assertNotIn("discarded", line)

    def test_firstUnauthorizedRefusal(self) -> None:
        """
        The first request refused for want of C{auth} is logged at info
        with the peer and the command; later refusals are not.
        """
        conn = self.server.connect(requireAuth=True)
        for request in ("list", "run web", "info"):
            self.assertEqual(conn.err(request), "unauthorized")
        refusals = [e for e in self.events if "not authenticated" in formatEvent(e)]
        self.assertEqual(len(refusals), 1)
        self.assertEqual(refusals[0]["log_level"], LogLevel.info)
        self.assertIn(conn.protocol.session.peer, formatEvent(refusals[0]))
        self.assertIn("'list' refused", formatEvent(refusals[0]))
        other = self.server.connect(requireAuth=True)
        self.assertEqual(other.err("list"), "unauthorized")
        self.assertEqual(len([e for e in self.events if "not authenticated" in formatEvent(e)]), 2)


class AuthLogTests(SynchronousTestCase):
    """Failed auth attempts and the close they end in are logged; tokens never."""

    def setUp(self) -> None:
        self.events = captureLog(self)
        self.server = FakeServer(token=TOKEN)
        self.conn = self.server.connect(requireAuth=True)

    def test_failedAttempts(self) -> None:
        """Each wrong token is logged at info with the peer and the count."""
        self.assertEqual(self.conn.err(f"auth {WRONG}1"), "unauthorized")
        self.assertEqual(self.conn.err(f"auth {WRONG}2"), "unauthorized")
        failed = [e for e in self.events if "wrong token" in formatEvent(e)]
        self.assertEqual(
            [formatEvent(e) for e in failed],
            [f"{self.conn.protocol.session.peer}: wrong token (failed auth attempt {n} of 3)"
             for n in (1, 2)],
        )
        self.assertTrue(all(e["log_level"] == LogLevel.info for e in failed))
        self.assertEqual(self.conn.ok(f"auth {TOKEN}"), "authenticated")
        assertNeverLogged(self, self.events, WRONG, TOKEN)

    def test_tooManyFailures(self) -> None:
        """The third wrong token closes the connection, and the log says why."""
        for n in range(3):
            self.conn.err(f"auth {WRONG}{n}")
        self.assertTrue(self.conn.closed)
        closes = [formatEvent(e) for e in self.events if "closing the connection" in formatEvent(e)]
        self.assertEqual(
            closes,
            [f"closing the connection from {self.conn.protocol.session.peer}: "
             "3 failed auth attempts"],
        )
        assertNeverLogged(self, self.events, WRONG)

    def test_exitIsNotForced(self) -> None:
        """A client's own C{exit} is no forced close."""
        self.conn.ok("exit")
        self.assertTrue(self.conn.closed)
        self.assertEqual([e for e in self.events if "closing the connection" in formatEvent(e)], [])


class ForcedCloseTests(SynchronousTestCase):
    """Every close the daemon forces is logged at info with the peer and the reason."""

    def setUp(self) -> None:
        self.events = captureLog(self)

    def forcedCloses(self) -> list[str]:
        return [
            formatEvent(e) for e in self.events
            if "closing the connection" in formatEvent(e) and e["log_level"] == LogLevel.info
        ]

    def test_tooLong(self) -> None:
        """A line over the limit: too_long, logged without the line."""
        conn = FakeServer().connect(maxLineLength=1024)
        conn.send("run -e PASSWORD=" + "x" * 2000 + "\n")
        self.assertTrue(conn.closed)
        [line] = self.forcedCloses()
        self.assertIn(conn.protocol.session.peer, line)
        self.assertIn("longer than 1024 bytes (too_long)", line)
        assertNeverLogged(self, self.events, "PASSWORD")

    def test_tooLongBeforeAuth(self) -> None:
        """Before auth the shorter limit applies, and the log says so."""
        conn = FakeServer(token=TOKEN).connect(requireAuth=True)
        conn.send("auth " + "x" * 5000 + "\n")
        self.assertTrue(conn.closed)
        [line] = self.forcedCloses()
        self.assertIn("longer than 4096 bytes before auth (too_long)", line)

    def test_authTimeout(self) -> None:
        """A connection idle without auth is closed, and the log says why."""
        server = FakeServer(token=TOKEN)
        conn = server.connect(requireAuth=True, authTimeout=30.0)
        conn.send("au")
        server.clock.advance(30)
        self.assertTrue(conn.closed)
        [line] = self.forcedCloses()
        self.assertIn(conn.protocol.session.peer, line)
        self.assertIn("no auth TOKEN within 30 seconds (auth timeout)", line)

    def test_crossProtocol(self) -> None:
        """A browser's HTTP request: closed by the cross-protocol guard."""
        conn = FakeServer().connect()
        conn.send("POST /?token=abc HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertTrue(conn.closed)
        [line] = self.forcedCloses()
        self.assertIn(conn.protocol.session.peer, line)
        self.assertIn("cross-protocol guard", line)
        assertNeverLogged(self, self.events, "token=abc")

    def test_slowSubscriber(self) -> None:
        """A subscriber that does not read its events is closed, and the log says so."""
        server = FakeServer(maxEventBacklog=1024)
        slow = server.connect()
        slow.ok("events")
        slow.transport.producer.pauseProducing()
        other = server.connect()
        for i in range(40):
            other.ok(f"create c{i}")
        self.assertTrue(slow.closed)
        [line] = self.forcedCloses()
        self.assertIn(slow.protocol.session.peer, line)
        self.assertIn("slow subscriber", line)


class ConnectionChurnLogTests(SynchronousTestCase):
    """
    Clients opening and closing connections as fast as they can leave a
    bounded log: the per-connection lines are rate-limited on the daemon's
    clock, and those not logged one by one are counted in a summary.
    """

    def setUp(self) -> None:
        from pycm.daemon.connectionlimit import ConnectionLimit

        self.events = captureLog(self)
        self.server = FakeServer(token=TOKEN)
        self.limit = ConnectionLimit(self.server.state, 1000)

    def connect(self) -> Any:
        return self.server.connect(requireAuth=True, connectionLimit=self.limit)

    def lines(self, text: str) -> list[str]:
        return [formatEvent(e) for e in self.events if text in formatEvent(e)]

    def test_churnBounded(self) -> None:
        """
        1,000 connections opened and closed within ten seconds log at most
        the budget's burst plus its rate for that time of open/close pairs,
        then one summary line with how many more there were.
        """
        budget = self.limit.connectionLog.connections
        for _ in range(100):
            for _ in range(10):
                self.connect().protocol.connectionLost(connectionDone)
            self.server.clock.advance(0.1)
        opened = self.lines("connection from")
        closed = [line for line in opened if line.endswith("closed")]
        opened = [line for line in opened if " on " in line]
        allowed = budget.burst + int(10 * budget.rate) + 1
        self.assertLessEqual(len(opened), allowed)
        self.assertGreaterEqual(len(opened), budget.burst)
        self.assertEqual(len(closed), len(opened))
        self.assertEqual(self.lines("not logged one by one"), [])
        self.server.clock.advance(budget.interval)
        [summary] = self.lines("not logged one by one")
        self.assertIn(f"{1000 - len(opened)} more connections opened and closed", summary)
        # Once quiet, connections are logged again one by one.
        self.server.clock.advance(budget.burst / budget.rate)
        self.connect()
        self.assertEqual(len(self.lines(" on ")), len(opened) + 1)

    def test_forcedClosesSummarized(self) -> None:
        """
        Forced closes (here: too_long before auth) beyond the budget are not
        logged one by one, but never silently: a summary counts them by
        reason.
        """
        budget = self.limit.connectionLog.forcedCloses
        for _ in range(200):
            self.connect().send("auth " + "x" * 5000 + "\n")
        logged = self.lines("closing the connection from")
        self.assertEqual(len(logged), budget.burst)
        self.server.clock.advance(budget.interval)
        [summary] = self.lines("connections closed by the daemon")
        self.assertIn(f"{200 - budget.burst} more connections closed by the daemon", summary)
        self.assertIn("too_long: ", summary)

    def test_authFailuresSummarized(self) -> None:
        """
        Wrong tokens and requests refused before auth, from connection after
        connection, are logged up to the budget, then summarized by kind.
        """
        budget = self.limit.connectionLog.authFailures
        for _ in range(100):
            connection = self.connect()
            connection.send(f"auth {WRONG}\nlist\n")
            connection.protocol.connectionLost(connectionDone)
        logged = self.lines("wrong token") + self.lines("refused: not authenticated")
        self.assertEqual(len(logged), budget.burst)
        self.server.clock.advance(budget.interval)
        [summary] = self.lines("refused before auth")
        self.assertIn(f"{200 - budget.burst} more requests refused before auth", summary)
        self.assertIn("wrong token: ", summary)
        self.assertIn("not authenticated: ", summary)
        assertNeverLogged(self, self.events, WRONG)

    def test_madeRoomLogged(self) -> None:
        """A connection closed to make room at the cap is a logged forced close."""
        self.limit.maximum = 1
        first = self.connect()
        self.connect()
        [line] = self.lines("closing the connection from")
        self.assertIn(first.protocol.session.peer, line)
        self.assertIn("(made room)", line)


class DebugRedactionTests(SynchronousTestCase):
    """At debug each request is logged redacted: no token, no option value."""

    def setUp(self) -> None:
        self.events = captureLog(self)
        self.server = FakeServer(token=TOKEN, logRequests=True)
        self.conn = self.server.connect(requireAuth=True)

    def requests(self) -> list[str]:
        return [
            formatEvent(e).partition("request: ")[2] for e in self.events
            if e["log_level"] == LogLevel.debug and "request: " in formatEvent(e)
        ]

    def test_requestsRedacted(self) -> None:
        """
        C{auth} is logged as C{auth <redacted>}; C{run} as its option names,
        the name and the image, its option values and command redacted.
        """
        self.conn.err(f"auth {WRONG}")
        self.conn.ok(f"auth {TOKEN}")
        self.conn.ok("run -e PASSWORD=hunter2 --memory 1g web host sh -c 'echo hunter3'")
        self.conn.ok("stop -t 3 web")
        self.assertEqual(
            self.requests(),
            [
                f"auth {REDACTED}",
                f"auth {REDACTED}",
                f"run --env={REDACTED} --memory={REDACTED} web host {REDACTED} {REDACTED} "
                f"{REDACTED}",
                f"stop --time={REDACTED} web",
            ],
        )
        assertNeverLogged(self, self.events, TOKEN, WRONG, "hunter2", "hunter3", "PASSWORD")

    def test_whatIsNotARequest(self) -> None:
        """
        A token pasted on a line of its own, bad bytes, bad options and an
        invalid name are logged as their size or shape, never their words.
        """
        self.assertEqual(describeLine(TOKEN.encode()), f"<unknown command, {len(TOKEN)} bytes>")
        self.assertEqual(describeLine(b"run \xff"), "<unreadable request, 5 bytes>")
        self.assertEqual(describeLine(b"run 'open"), "<unreadable request, 9 bytes>")
        self.assertEqual(describeLine(b"run --pass=x y"), "run <bad options, 2 words redacted>")
        self.assertEqual(describeLine(b"run PASSWORD=x"), f"run {REDACTED}")
        self.assertEqual(describeLine(b"run web PASSWORD=x"), f"run web {REDACTED}")
        self.assertEqual(describeLine(b"help run"), f"help {REDACTED}")
        self.assertEqual(describeLine(b"rm -f web"), "rm --force web")
        self.assertEqual(describeLine(b"auth -" + TOKEN.encode()), f"auth {REDACTED}")

    def test_errorsOfRequestsRedacted(self) -> None:
        """
        The info log of a failed request keeps the error's code, never its
        message (which may quote the request).
        """
        self.conn.ok(f"auth {TOKEN}")
        self.conn.err("run --cpus hunter2 db")
        self.conn.err("run -e hunter4 db")
        self.conn.err("run db host unstartable")
        outcomes = [
            formatEvent(e) for e in self.events if e.get("log_namespace") == "pycm.requests"
        ]
        self.assertEqual(len(outcomes), 3)
        self.assertTrue(outcomes[0].endswith(": run db: bad_request"), outcomes[0])
        self.assertTrue(outcomes[1].endswith(": run db: bad_request"), outcomes[1])
        self.assertTrue(outcomes[2].endswith(": run db: backend"), outcomes[2])
        assertNeverLogged(self, self.events, TOKEN, "hunter2", "hunter4", "unstartable")

    def test_failedStartShowsNoContainerSecret(self) -> None:
        """
        C{start NAME} whose stored command cannot start: the backend's error
        quotes that command, which the C{start} request does not show, so
        the log has only the error's code; the client still gets the
        message.
        """
        self.conn.ok(f"auth {TOKEN}")
        self.conn.ok("create -e PASSWORD=hunter5 web host unstartable --token=hunter6")
        kind, (code, message) = self.conn.request("start web")
        self.assertEqual((kind, code), ("ERR", "backend"))
        self.assertIn("unstartable", message)
        outcomes = [
            formatEvent(e) for e in self.events if e.get("log_namespace") == "pycm.requests"
        ]
        self.assertTrue(outcomes[-1].endswith(": start web: backend"), outcomes[-1])
        assertNeverLogged(self, self.events, "unstartable", "hunter5", "hunter6", "PASSWORD")

    def test_internalErrorLoggedByType(self) -> None:
        """
        A request that fails with an exception that is not a pycm error is
        logged in the request log as C{internal} and the exception's type,
        not its message (the traceback goes to the log as an error).
        """
        from twisted.internet.defer import fail

        self.conn.ok(f"auth {TOKEN}")
        self.patch(
            self.server.backend, "create", lambda spec: fail(RuntimeError("hunter7"))
        )
        self.assertEqual(self.conn.err("create web"), "internal")
        self.flushLoggedErrors(RuntimeError)
        [outcome] = [
            formatEvent(e) for e in self.events if e.get("log_namespace") == "pycm.requests"
        ]
        self.assertTrue(outcome.endswith(": create web: internal (RuntimeError)"), outcome)
        self.assertNotIn("hunter7", outcome)


    def test_cancelledLoggedAsSuch(self) -> None:
        """
        A request given up as its client left (gone, or Ctrl-C) is logged
        as cancelled, not as an internal error; one cancelled while its
        client is still there (a backend's cancel) is an internal error.
        """
        from twisted.internet.defer import CancelledError, Deferred

        self.conn.ok(f"auth {TOKEN}")
        held: list[Deferred[Any]] = []
        self.patch(self.server.backend, "create",
                   lambda spec: held.append(Deferred()) or held[-1])
        self.conn.send("create web\n")
        self.conn.disconnect()
        held[0].errback(CancelledError())
        self.conn = self.server.connect(requireAuth=True)
        self.conn.ok(f"auth {TOKEN}")
        self.conn.send("create db\n")
        held[1].errback(CancelledError())
        self.flushLoggedErrors(CancelledError)
        outcomes = [
            formatEvent(e) for e in self.events if e.get("log_namespace") == "pycm.requests"
        ]
        self.assertTrue(outcomes[0].endswith(": create web: cancelled"), outcomes)
        self.assertTrue(outcomes[1].endswith(": create db: internal (CancelledError)"), outcomes)


class DockerEventLogTests(SynchronousTestCase):
    """The Docker backend's logs never show a container's labels."""

    def test_failedEventNotLoggedWhole(self) -> None:
        """
        An engine event whose handling fails is logged by its type, action
        and container id, never whole: its attributes hold the labels.
        """
        from twisted.internet.task import Clock

        from pycm.backends.docker.events import EngineEvents
        from tests.stubengine import StubEngine

        events = captureLog(self)

        def failing(event: dict[str, Any]) -> None:
            raise ValueError("cannot handle it")

        engine = EngineEvents(Clock(), StubEngine(), {}, failing, lambda reconnect: None)
        engine._received({
            "Type": "container", "Action": "die", "timeNano": 1,
            "Actor": {"ID": "c0ffee", "Attributes": {"name": "web", "db.password": "hunter8"}},
        })
        self.flushLoggedErrors(ValueError)
        [failure] = [e for e in events if e.get("log_failure") is not None]
        self.assertIn("container die c0ffee", formatEvent(failure))
        assertNeverLogged(self, events, "hunter8")


class ScrubTests(SynchronousTestCase):
    """L{scrub} takes a request's secret words out of a message."""

    def test_forms(self) -> None:
        """A secret goes as written, as repr quotes it and as JSON escapes it."""
        secret = "it's \"x\"\t"
        for quoted in (secret, repr(secret), json.dumps(secret)):
            self.assertNotIn("x", scrub(f"engine said {quoted}", [secret]).replace("engine", ""))

    def test_shortSecretsWholeWords(self) -> None:
        """A short value is taken out only as a whole word."""
        self.assertEqual(scrub("cpus 1 for web1", ["1"]), f"cpus {REDACTED} for web1")

    def test_notStrings(self) -> None:
        """
        Values that are not strings (a damaged record's: an int in its env
        or command, a null) are taken out as their text; scrubbing never
        fails, whatever it is given.
        """
        secrets = containerSecrets(["sleep", 1000], {"A": 12345, "B": None}, {}, None)
        self.assertEqual(
            scrub("sleep 1000 failed, A=12345", secrets),
            f"{REDACTED} {REDACTED} failed, A={REDACTED}",
        )
        self.assertEqual(scrub(ValueError("bad 12345"), [12345, None]), f"bad {REDACTED}")


class LogFileModeTests(SynchronousTestCase):
    """twistd's log file is made private before twistd opens it, whatever the umask."""

    def setUp(self) -> None:
        self.directory = self.mktemp()
        os.makedirs(self.directory)
        old = os.umask(0o022)
        self.addCleanup(os.umask, old)

    def mode(self, path: str) -> int:
        return stat.S_IMODE(os.lstat(path).st_mode)

    def test_logPathFromTwistd(self) -> None:
        """The file twistd logs to is learnt from twistd's own options."""

        def path(*args: str) -> str | None:
            config = ServerOptions()
            config.parseOptions([*args, "pycm", "--backend", "memory"])
            return twistdLogPath(config.subOptions)

        self.assertEqual(path("--logfile", "x.log"), os.path.abspath("x.log"))
        self.assertEqual(path("-n", "--logfile", "x.log"), os.path.abspath("x.log"))
        self.assertEqual(path(), os.path.abspath("twistd.log"))
        self.assertIsNone(path("-n"))
        self.assertIsNone(path("-n", "--logfile", "-"))
        self.assertIsNone(path("--syslog"))

    def test_createdPrivate(self) -> None:
        """
        A new log file is made 0600 under umask 022, and so are the files
        twisted's LogFile rotates and reopens it into.
        """
        path = os.path.join(self.directory, "pycm.log")
        self.assertIsNone(makeLogFilePrivate(path))
        self.assertEqual(self.mode(path), 0o600)
        twistdLog = logfile.LogFile.fromFullPath(path)
        twistdLog.write("one\n")
        twistdLog.rotate()
        twistdLog.reopen()
        twistdLog.close()
        self.assertEqual((self.mode(path), self.mode(path + ".1")), (0o600, 0o600))

    def test_existingTightened(self) -> None:
        """An existing 0644 log file becomes 0640, with a warning; 0600 is left."""
        path = os.path.join(self.directory, "pycm.log")
        with open(path, "w") as f:
            f.write("old\n")
        os.chmod(path, 0o666)
        self.assertIn("now 640", makeLogFilePrivate(path) or "")
        self.assertEqual(self.mode(path), 0o640)
        self.assertIsNone(makeLogFilePrivate(path))
        with open(path) as f:
            self.assertEqual(f.read(), "old\n")

    def test_linkRefused(self) -> None:
        """
        A link is never followed to change the mode of a file elsewhere: it
        is refused (tests.test_logfile_checks has the other refusals).
        """
        victim = os.path.join(self.directory, "victim")
        with open(victim, "w"):
            pass
        os.chmod(victim, 0o644)
        path = os.path.join(self.directory, "pycm.log")
        os.symlink(victim, path)
        self.assertRaises(UnsafeLogFile, makeLogFilePrivate, path)
        self.assertEqual(self.mode(victim), 0o644)
