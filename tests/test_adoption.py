"""
Tests for L{pycm.daemon.adoption}: a socket systemd passed is listened on
with the real reactor, and its path keeps the mode systemd gave it and
outlives the daemon's listening (Twisted's own adoption made it 0666 and
removed it).
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
    def passed(self, mode: int) -> tuple[str, int]:
        """A listening UNIX socket of C{mode}, as systemd passes it: its path and a descriptor."""
        directory = tempfile.mkdtemp()
        path = os.path.join(directory, "pycm.sock")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(path)
        os.chmod(path, mode)
        sock.listen()
        self.addCleanup(os.rmdir, directory)
        self.addCleanup(lambda: os.path.exists(path) and os.unlink(path))
        fileno = os.dup(sock.fileno())
        sock.close()
        return path, fileno

    @inlineCallbacks
    def test_modeAndPathKept(self) -> Any:
        """
        Listening keeps the socket's mode (0660), it serves, and once the
        port stops listening the path is still there (systemd holds it).
        """
        path, fileno = self.passed(0o660)
        endpoint = PassedSocketEndpoint(reactor, fileno, socket.AF_UNIX, 128)
        port = yield endpoint.listen(Factory.forProtocol(Greeter))
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o660)
        reader = Reader()
        yield UNIXClientEndpoint(reactor, path).connect(Factory.forProtocol(lambda: reader))
        self.assertEqual((yield reader.done), b"hi\n")
        yield port.stopListening()
        self.assertTrue(stat.S_ISSOCK(os.stat(path).st_mode))
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o660)
        self.assertRaises(OSError, os.fstat, fileno)  # handed over, then closed

    @inlineCallbacks
    def test_listenedOnOnce(self) -> Any:
        """A second listen on the same endpoint fails; the first goes on."""
        path, fileno = self.passed(0o600)
        endpoint = PassedSocketEndpoint(reactor, fileno, socket.AF_UNIX, 128)
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
        port = yield PassedSocketEndpoint(reactor, fileno, socket.AF_INET, 128).listen(
            Factory.forProtocol(Greeter))
        self.addCleanup(port.stopListening)
        self.assertEqual(port.getHost().port, address[1])
