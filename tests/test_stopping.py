"""
Tests for L{pycm.daemon.stopping}: what connections get when the daemon
stops (SIGTERM), and in which order (new requests refused, the backend
closed while the connections see it, then the connections let go of), on
fake transports and a fake clock, and end to end.
"""

from __future__ import annotations

import json
import os
import re
import signal
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from pycm.daemon.protocol import PycmServerFactory
from pycm.daemon.service import PycmService
from pycm.daemon.stopping import (
    BACKEND_CLOSE_MARGIN,
    DEFAULT_BACKEND_SHUTDOWN,
    STOPPING_GRACE,
    backendCloseBound,
    closeConnections,
)
from pycm.testing.server import FakeConnection, FakeServer

from .e2e import RealDaemon

ERR_STOPPING = b"ERR unavailable the daemon is shutting down"


class HalfClosingTransport(StringTransport):
    """
    A StringTransport that can shut its sending side, as a TCP or UNIX
    transport does (C{loseWriteConnection}), and be aborted.
    """

    writeClosed = False
    aborted = False
    #: What had been written when the sending side was shut.
    writtenBeforeClose: bytes | None = None

    def loseWriteConnection(self) -> None:
        self.writeClosed = True
        self.writtenBeforeClose = self.value()

    def abortConnection(self) -> None:
        self.aborted = True
        self.disconnecting = True


class StoppingTests(SynchronousTestCase):
    """
    Each connection's last line and close once the daemon lets go of the
    connections (L{closeConnections}, the last step of its stop): what is
    still in flight then gets C{ERR unavailable}.
    """

    def setUp(self) -> None:
        self.server = FakeServer()

    def connect(self) -> FakeConnection:
        """A connection on a transport that can half-close."""
        factory = PycmServerFactory(self.server.state)
        protocol = factory.buildProtocol(None)
        transport = HalfClosingTransport()
        protocol.makeConnection(transport)
        return FakeConnection(protocol, transport, self.server.clock)

    def stop(self) -> list[object]:
        """The daemon stops: let go of every connection; what it fired with."""
        done: list[object] = []
        closeConnections(self.server.state.open, self.server.clock).addCallback(done.append)
        return done

    def test_inFlightGetsUnavailable(self) -> None:
        """
        A request still in flight when the connections are let go of (a
        stop the backend has not settled) gets
        C{ERR unavailable the daemon is shutting down}, and nothing after it:
        not its own reply when it is done, nor the reply to a line queued
        behind it.  The connection's sending side is shut, and it reads on
        (so that the close discards no input: a FIN, not a reset).
        """
        conn = self.connect()
        conn.ok("run slow memory ignore-term")
        conn.send("stop --time=5 slow\nping\n")
        self.assertEqual(conn.lines(), [])
        self.stop()
        self.assertEqual(conn.lines(), [ERR_STOPPING])
        transport: Any = conn.transport
        self.assertTrue(transport.writeClosed)
        self.assertFalse(transport.disconnecting)
        self.assertEqual(transport.producerState, "producing")
        self.assertIsNone(transport.producer)
        conn.send("ping\n")
        self.server.clock.advance(5)
        self.server.clock.advance(0)
        self.assertEqual(conn.lines(), [])

    def test_queuedLineGetsUnavailable(self) -> None:
        """A line read but not served yet gets the same one line."""
        conn = self.connect()
        conn.protocol.pauseReading("test")
        conn.send("ping\nping\n")
        self.stop()
        self.assertEqual(conn.lines(), [ERR_STOPPING])

    def test_idleConnectionClosedWithoutLine(self) -> None:
        """A connection with nothing in flight gets no line, and is half-closed."""
        conn = self.connect()
        conn.ok("ping")
        self.stop()
        self.assertEqual(conn.lines(), [])
        self.assertTrue(conn.transport.writeClosed)  # type: ignore[attr-defined]

    def test_closedWhenClientCloses(self) -> None:
        """
        Once the client has read the line and closed its side, the
        connection closes, and the daemon's wait ends (before the grace).
        """
        conn = self.connect()
        conn.send("wait web\n")
        done = self.stop()
        self.assertEqual(done, [])
        conn.halfClose()
        self.assertTrue(conn.transport.disconnecting)
        self.assertFalse(conn.transport.aborted)  # type: ignore[attr-defined]
        conn.disconnect()
        self.assertEqual(done, [None])
        self.assertEqual(self.server.state.open, set())
        self.assertEqual(self.server.clock.getDelayedCalls(), [])

    def test_lingeringClientAborted(self) -> None:
        """
        A client that never closes is aborted after the grace, and the
        daemon goes on stopping half a second later whatever happens.
        """
        conn = self.connect()
        conn.send("wait web\n")
        done = self.stop()
        self.server.clock.advance(STOPPING_GRACE)
        self.assertTrue(conn.transport.aborted)  # type: ignore[attr-defined]
        self.assertEqual(done, [])
        self.server.clock.advance(0.5)
        self.assertEqual(done, [None])

    def test_queuedEventsWrittenBeforeClose(self) -> None:
        """
        Events queued for a subscriber that is not reading at the moment
        (its write buffer full) are handed to the transport before its
        sending side is shut, so that it still gets them once it reads
        (within the grace); they are not dropped.
        """
        subscriber = self.connect()
        subscriber.ok("events")
        subscriber.stopReading()
        self.connect().ok("run web memory sleep 1000")
        self.assertEqual(subscriber.lines(), [])
        self.stop()
        transport: Any = subscriber.transport
        self.assertTrue(transport.writeClosed)
        self.assertEqual(
            events(transport.writtenBeforeClose.splitlines()), [("create", "web"), ("start", "web")]
        )

    def test_noConnection(self) -> None:
        """With no connection open, stopping goes on at once."""
        self.assertEqual(self.stop(), [None])
        self.assertEqual(self.server.clock.getDelayedCalls(), [])


def events(lines: list[bytes]) -> list[tuple[str, str]]:
    """The (action, name) of each EVENT line among C{lines}."""
    found = []
    for line in lines:
        if line.startswith(b"EVENT "):
            event = json.loads(line[len(b"EVENT ") :])
            found.append((event["action"], event["name"]))
    return found


class ShutdownOrderTests(SynchronousTestCase):
    """
    The daemon's whole stop (L{PycmService.stopService}) on the memory
    backend and a fake clock: new requests are refused first, then the
    backend stops the containers while subscribers and requests in flight
    see it happen, then the connections are let go of.
    """

    def setUp(self) -> None:
        self.server = FakeServer()
        self.closed: list[str] = []
        self.service = PycmService(
            self.server.clock,
            self.server.state,
            [lambda: self.closed.append("closers")],
        )
        self.service.startService()
        self.connections: list[FakeConnection] = []

    def connect(self) -> FakeConnection:
        """A connection on a transport that can half-close."""
        factory = PycmServerFactory(self.server.state)
        protocol = factory.buildProtocol(None)
        transport = HalfClosingTransport()
        protocol.makeConnection(transport)
        connection = FakeConnection(protocol, transport, self.server.clock)
        self.connections.append(connection)
        return connection

    def stop(self) -> list[object]:
        """SIGTERM: the service stops; what its Deferred fired with."""
        done: list[object] = []
        self.service.stopService().addCallback(done.append)
        return done

    def clientsClose(self) -> None:
        """Each client closes once the daemon has shut its sending side."""
        for conn in self.connections:
            if conn.transport.writeClosed and not conn.protocol._lost:  # type: ignore[attr-defined]
                conn.disconnect()

    def test_subscriberGetsDieBeforeClose(self) -> None:
        """
        An C{events} subscriber gets the C{kill} and C{die} events of the
        containers the shutdown stops, before its connection is closed
        (they were written before its sending side was shut), and no ERR.
        """
        self.connect().ok("run web memory sleep 1000")
        subscriber = self.connect()
        subscriber.ok("events")
        done = self.stop()
        self.server.clock.advance(0)
        self.clientsClose()
        self.assertEqual(done, [None])
        transport: Any = subscriber.transport
        self.assertTrue(transport.writeClosed)
        self.assertIn(("die", "web"), events(transport.writtenBeforeClose.splitlines()))
        lines = subscriber.lines()
        self.assertIn(("die", "web"), events(lines))
        self.assertFalse([line for line in lines if line.startswith(b"ERR")])

    def test_inFlightWaitGetsExit(self) -> None:
        """
        A C{wait} in flight gets the container's exit (stopped by the
        shutdown), not C{ERR unavailable}; a C{stop} in flight of a
        container that ignores SIGTERM gets its result once the shutdown's
        SIGKILL ends it.
        """
        setup = self.connect()
        setup.ok("run web memory sleep 1000")
        setup.ok("run slow memory ignore-term")
        waiting = self.connect()
        waiting.send("wait web\n")
        stopping = self.connect()
        stopping.send("stop --time=5 slow\n")
        done = self.stop()
        self.server.clock.advance(0)
        self.assertEqual(
            waiting.replies(), [("OK", {"name": "web", "state": "exited", "exit_code": -15})]
        )
        self.assertEqual(stopping.lines(), [])
        self.server.clock.advance(5)
        [(kind, container)] = stopping.replies()
        self.assertEqual((kind, container["name"], container["state"]), ("OK", "slow", "exited"))
        self.clientsClose()
        self.server.clock.advance(0)
        self.assertEqual(done, [None])
        self.assertEqual(self.closed, ["closers"])

    def test_newRequestRefusedWhileBackendStops(self) -> None:
        """
        While the backend stops its containers, a new request on an open
        connection (C{ping} included), and a line read and waiting behind a
        request in flight, each get C{ERR unavailable the daemon is
        shutting down} in turn; the connection stays open until the
        backend is closed, then is closed with no further line.
        """
        setup = self.connect()
        setup.ok("run --stop-timeout=5 slow memory ignore-term")
        setup.ok("run web memory sleep 1000")
        idle = self.connect()
        busy = self.connect()
        busy.send("wait slow\nping\n")
        done = self.stop()
        self.server.clock.advance(1)
        idle.send("ping\nlist\nrun other memory sleep 1\n")
        self.assertEqual(idle.lines(), [ERR_STOPPING] * 3)
        self.assertFalse(idle.transport.writeClosed)  # type: ignore[attr-defined]
        self.assertEqual(busy.lines(), [])
        self.server.clock.advance(4)
        self.server.clock.advance(0)
        [wait, refused] = busy.lines()
        self.assertTrue(wait.startswith(b"OK "), wait)
        self.assertEqual(refused, ERR_STOPPING)
        self.assertTrue(idle.transport.writeClosed)  # type: ignore[attr-defined]
        self.assertEqual(idle.lines(), [])
        self.clientsClose()
        self.assertEqual(done, [None])
        containers = self.successResultOf(self.server.backend.list())
        self.assertNotIn("other", [c.name for c in containers])

    def test_backendCloseHangs(self) -> None:
        """
        A backend whose close never fires (replaced by one returning a
        Deferred that never fires: the memory backend always closes) still
        lets the connections go after L{backendCloseBound}: the request in
        flight gets C{ERR unavailable}, the connection is closed, the
        closers run and the stop completes, within the grace after it.
        """
        self.server.backend.close = Deferred  # type: ignore[method-assign]
        self.connect().ok("run web memory sleep 1000")
        waiting = self.connect()
        waiting.send("wait web\n")
        done = self.stop()
        bound = backendCloseBound(self.server.backend)
        self.server.clock.advance(bound - 0.1)
        self.assertEqual(waiting.lines(), [])
        self.assertFalse(waiting.transport.writeClosed)  # type: ignore[attr-defined]
        self.server.clock.advance(0.1)
        self.assertEqual(waiting.lines(), [ERR_STOPPING])
        self.assertTrue(waiting.transport.writeClosed)  # type: ignore[attr-defined]
        self.assertEqual(done, [])
        self.server.clock.advance(STOPPING_GRACE)
        self.assertTrue(waiting.transport.aborted)  # type: ignore[attr-defined]
        self.server.clock.advance(0.5)
        self.assertEqual(done, [None])
        self.assertEqual(self.closed, ["closers"])

    def test_backendCloseBound(self) -> None:
        """
        The backend is given its own shutdown timeout (the supervisor's
        C{shutdownTimeout}) plus a margin, and one without any the default.
        """
        self.server.backend.shutdownTimeout = 120.0
        self.assertEqual(backendCloseBound(self.server.backend), 120.0 + BACKEND_CLOSE_MARGIN)
        self.assertEqual(
            backendCloseBound(object()), DEFAULT_BACKEND_SHUTDOWN + BACKEND_CLOSE_MARGIN
        )


class UnitTimeoutTests(SynchronousTestCase):
    """The systemd unit gives the daemon's stop the time it may take."""

    def test_timeoutStopAboveTheBound(self) -> None:
        """
        C{TimeoutStopSec} of C{contrib/systemd/pycm.service} is above the
        longest the daemon's stop takes on the default backend (its
        C{shutdown-timeout}, the margin, the connections' grace), with the
        15 seconds of room above C{shutdown-timeout} the README asks for.
        """
        from pycm.backends.supervisor.runs import SHUTDOWN_TIMEOUT

        from .test_systemd_e2e import unitSettings

        [value] = unitSettings("pycm.service")["TimeoutStopSec"]
        seconds = 0.0
        for number, unit in re.findall(r"(\d+)\s*(min|s|)", value):
            seconds += int(number) * (60 if unit == "min" else 1)

        class Default:
            shutdownTimeout = SHUTDOWN_TIMEOUT

        longest = backendCloseBound(Default()) + STOPPING_GRACE + 0.5
        self.assertLess(longest + 1, SHUTDOWN_TIMEOUT + 15)
        self.assertGreaterEqual(seconds, SHUTDOWN_TIMEOUT + 15)
        self.assertGreater(seconds, longest)


class StoppingEndToEndTests(SynchronousTestCase):
    """
    A real daemon (memory backend) stopped by SIGTERM while raw sockets
    have requests in flight, lines queued behind them, or a subscription.
    """

    def readToEnd(self, client: Any) -> bytes:
        """Everything the daemon sends until it closes; a reset fails the test."""
        received, client._buffer = client._buffer, b""
        client.sock.settimeout(10)
        while True:
            try:
                data = client.sock.recv(65536)
            except ConnectionResetError:
                self.fail(f"reset after {received!r}")
            if not data:
                return received
            received += data

    def test_inFlightRepliesThenCleanClose(self) -> None:
        """
        A C{wait} in flight gets the exit of its container, which the
        shutdown stops; the lines queued behind it get C{ERR unavailable
        ...} (each in turn, or one for all once the connections are let
        go of); then the end of the stream (a FIN): never a connection
        reset, on TCP and on the UNIX socket.
        """
        daemon = RealDaemon(self).start()
        daemon.connect().ok("run web memory sleep 1000")
        clients = [daemon.connect(), daemon.connect(unix=True)]
        for client in clients:
            client.sock.sendall(b"wait web\n")
        # Both waits are in flight once a later connection is answered.
        daemon.connect().ok("ping")
        for client in clients:
            client.sock.sendall(b"ping\n" * 100)
        daemon.signal(signal.SIGTERM)
        for client in clients:
            first, *rest = self.readToEnd(client).splitlines()
            self.assertEqual(
                json.loads(first.removeprefix(b"OK ")),
                {"name": "web", "state": "exited", "exit_code": -15},
            )
            self.assertTrue(rest)
            self.assertEqual(set(rest), {ERR_STOPPING})
            client.sock.close()
        self.assertEqual(daemon.exitCode(), -signal.SIGTERM)

    def test_subscriberSeesShutdownDie(self) -> None:
        """
        An C{events} subscriber gets the C{die} event of the running
        container the shutdown stops, before the end of its stream (a FIN,
        no ERR: it had no request in flight).
        """
        daemon = RealDaemon(self).start()
        daemon.connect().ok("run web memory sleep 1000")
        subscriber = daemon.connect()
        subscriber.ok("events")
        daemon.signal(signal.SIGTERM)
        lines = self.readToEnd(subscriber).splitlines()
        self.assertIn(("die", "web"), events(lines))
        self.assertFalse([line for line in lines if not line.startswith(b"EVENT ")])
        subscriber.sock.close()
        self.assertEqual(daemon.exitCode(), -signal.SIGTERM)

    def test_processBackendWaitAndSubscriber(self) -> None:
        """
        On the process backend (no cgroups: shared by no other test), a
        real C{sleep} stopped by the shutdown: the C{wait} in flight gets
        its exit (SIGTERM, -15) and the subscriber its C{die} event, each
        before the end of its stream; the records' writes (a group commit
        at the end of the turn) do not make them miss it.
        """
        daemon = RealDaemon(
            self, backend="process", args=["--backend-option", "cgroups=off"]
        ).start()
        web = daemon.connect().ok("run web host sleep 1000")

        def killGroup() -> None:
            try:
                os.killpg(web["pid"], signal.SIGKILL)
            except OSError:
                pass

        self.addCleanup(killGroup)
        subscriber = daemon.connect()
        subscriber.ok("events")
        waiting = daemon.connect()
        waiting.send("wait web\n")
        daemon.connect().ok("ping")
        daemon.signal(signal.SIGTERM)
        [reply] = self.readToEnd(waiting).splitlines()
        self.assertEqual(
            json.loads(reply.removeprefix(b"OK ")),
            {"name": "web", "state": "exited", "exit_code": -15},
        )
        self.assertIn(("die", "web"), events(self.readToEnd(subscriber).splitlines()))
        self.assertEqual(daemon.exitCode(), -signal.SIGTERM)
