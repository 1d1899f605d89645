"""
Tests for L{pycm.daemon.adoption}: a socket systemd passed is listened on
with the real reactor, and stays systemd's: its path keeps its mode and
outlives the daemon's listening, and systemd's own copy of the socket
still accepts connections after it (Twisted's own adoption made the path
0666, shut the socket down and removed its path).
"""

from __future__ import annotations

import os
import socket
import stat
import tempfile
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import UNIXClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.trial.unittest import TestCase

from pycm.daemon.adoption import PassedSocketEndpoint


class Greeter(Protocol):
    def connectionMade(self) -> None:
        self.transport.write(b"hi\n")
        self.transport.loseConnection()


class Reader(Protocol):
    def __init__(self) -> None:
        self.received = b""
        self.done: Deferred[bytes] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: object = None) -> None:
        self.done.callback(self.received)


class PassedUnixSocketTests(TestCase):
    def passed(self, mode: int) -> tuple[str, socket.socket, int]:
        """
        A listening UNIX socket of C{mode}, as systemd passes it: its path,
        systemd's own copy (kept open, as systemd keeps it) and the
        descriptor the daemon is given.
        """
        directory = tempfile.mkdtemp()
        path = os.path.join(directory, "pycm.sock")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(path)
        os.chmod(path, mode)
        sock.listen()
        self.addCleanup(os.rmdir, directory)
        self.addCleanup(lambda: os.path.exists(path) and os.unlink(path))
        self.addCleanup(sock.close)
        return path, sock, os.dup(sock.fileno())

    @inlineCallbacks
    def test_modeAndPathKept(self) -> Any:
        """
        Listening keeps the socket's mode (0660), it serves, and once the
        port stops listening the path is still there, as it was, and
        systemd's copy still takes connections (it was not shut down).
        """
        path, systemds, fileno = self.passed(0o660)
        port = yield PassedSocketEndpoint(reactor, fileno, socket.AF_UNIX).listen(
            Factory.forProtocol(Greeter))
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o660)
        reader = Reader()
        yield UNIXClientEndpoint(reactor, path).connect(Factory.forProtocol(lambda: reader))
        self.assertEqual((yield reader.done), b"hi\n")
        yield port.stopListening()
        self.assertRaises(OSError, os.fstat, fileno)  # handed over, then closed
        self.assertTrue(stat.S_ISSOCK(os.stat(path).st_mode))
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o660)
        later = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(later.close)
        later.connect(path)  # queued for the next daemon systemd starts
        accepted, _ = systemds.accept()
        accepted.close()

    @inlineCallbacks
    def test_pathNotLookedAt(self) -> Any:
        """
        The daemon needs nothing of the path (a daemon in another mount
        namespace, or not its owner, may not reach or change it): with
        the path gone, the passed socket is still listened on.
        """
        path, systemds, fileno = self.passed(0o600)
        os.unlink(path)
        port = yield PassedSocketEndpoint(reactor, fileno, socket.AF_UNIX).listen(
            Factory.forProtocol(Greeter))
        yield port.stopListening()
        self.assertFalse(os.path.exists(path))

    @inlineCallbacks
    def test_listenedOnOnce(self) -> Any:
        """A second listen on the same endpoint fails; the first goes on."""
        path, systemds, fileno = self.passed(0o600)
        endpoint = PassedSocketEndpoint(reactor, fileno, socket.AF_UNIX)
        port = yield endpoint.listen(Factory.forProtocol(Greeter))
        self.addCleanup(port.stopListening)
        yield self.assertFailure(endpoint.listen(Factory.forProtocol(Greeter)), RuntimeError)

    @inlineCallbacks
    def test_tcpPassed(self) -> Any:
        """A passed TCP socket is listened on too, on its own address."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        address = sock.getsockname()
        fileno = os.dup(sock.fileno())
        sock.close()
        port = yield PassedSocketEndpoint(reactor, fileno, socket.AF_INET).listen(
            Factory.forProtocol(Greeter))
        self.addCleanup(port.stopListening)
        self.assertEqual(port.getHost().port, address[1])
