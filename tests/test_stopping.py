"""
Tests for L{pycm.daemon.stopping}: what connections get when the daemon
stops (SIGTERM), on fake transports and a fake clock, and end to end.
"""

from __future__ import annotations

import signal
from typing import Any

from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from pycm.daemon.protocol import PycmServerFactory
from pycm.daemon.stopping import STOPPING_GRACE, closeConnections
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

    def loseWriteConnection(self) -> None:
        self.writeClosed = True

    def abortConnection(self) -> None:
        self.aborted = True
        self.disconnecting = True


class StoppingTests(SynchronousTestCase):
    """Each connection's last line and close when the daemon stops."""

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
        A request in flight (a stop waiting for its container) gets
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

    def test_noConnection(self) -> None:
        """With no connection open, stopping goes on at once."""
        self.assertEqual(self.stop(), [None])
        self.assertEqual(self.server.clock.getDelayedCalls(), [])


class StoppingEndToEndTests(SynchronousTestCase):
    """
    A real daemon (memory backend) stopped by SIGTERM while a raw socket
    has a request in flight and another line queued behind it.
    """

    def test_errThenCleanClose(self) -> None:
        """
        The client gets C{ERR unavailable ...}, then the end of the stream
        (a FIN): never a connection reset, on TCP and on the UNIX socket.
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
            received = b""
            client.sock.settimeout(10)
            while True:
                try:
                    data = client.sock.recv(65536)
                except ConnectionResetError:
                    self.fail(f"reset after {received!r}")
                if not data:
                    break
                received += data
            self.assertEqual(received, ERR_STOPPING + b"\n")
            client.sock.close()
        self.assertEqual(daemon.exitCode(), -signal.SIGTERM)
