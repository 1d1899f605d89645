"""
Tests for socket activation (L{pycm.daemon.activation} and the
C{systemd:} rules of L{pycm.daemon.listeners.classifyListener}): which
descriptor an endpoint string names, what the passed socket is, and which
token rule it follows.  The sockets are real ones this test binds, handed
over as L{PassedSockets} as systemd would hand them.
"""

from __future__ import annotations

import os
import socket
import tempfile

from twisted.internet.endpoints import _SystemdParser
from twisted.python import usage
from twisted.python.systemd import ListenFDs
from twisted.trial.unittest import SynchronousTestCase

from pycm.daemon.activation import PassedSockets, inspectSocket
from pycm.daemon.adoption import PassedSocketEndpoint
from pycm.daemon.listeners import classifyListener


class SocketsTestCase(SynchronousTestCase):
    """Real sockets, closed after the test."""

    def unixSocket(self, mode: int = 0o600, listen: bool = True) -> socket.socket:
        directory = tempfile.mkdtemp()
        path = os.path.join(directory, "pycm.sock")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(path)
        os.chmod(path, mode)
        if listen:
            sock.listen()
        self.addCleanup(os.rmdir, directory)
        self.addCleanup(os.unlink, path)
        self.addCleanup(sock.close)
        return sock

    def inetSocket(self, host: str = "127.0.0.1") -> socket.socket:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        self.addCleanup(sock.close)
        sock.bind((host, 0))
        sock.listen()
        return sock


class FindTests(SynchronousTestCase):
    def test_nonePassed(self) -> None:
        """No socket passed at all: the error says how to start pycm so."""
        error = self.assertRaises(usage.UsageError, PassedSockets([]).find,
                                  "systemd:domain=UNIX:index=0", {"index": "0"})
        self.assertIn("systemd passed this process no socket", str(error))
        self.assertIn("LISTEN_FDS", str(error))
        self.assertIn("systemd-socket-activate", str(error))

    def test_indexOutOfRange(self) -> None:
        """An index past those passed says how many there are."""
        error = self.assertRaises(usage.UsageError, PassedSockets([3]).find,
                                  "systemd:domain=UNIX:index=1", {"index": "1"})
        self.assertIn("no socket at index 1: systemd passed 1 socket (index 0 to 0)", str(error))
        self.assertRaises(usage.UsageError, PassedSockets([3]).find, "x", {"index": "-1"})

    def test_byIndexAndName(self) -> None:
        """index= picks by position, name= by FileDescriptorName."""
        passed = PassedSockets([3, 4], ["pycm", "web"])
        self.assertEqual(passed.find("x", {"index": "1"}), 4)
        self.assertEqual(passed.find("x", {"name": "pycm"}), 3)
        error = self.assertRaises(usage.UsageError, passed.find, "x", {"name": "db"})
        self.assertIn("no socket named 'db': systemd passed 2 sockets (pycm, web)", str(error))

    def test_exactlyOneOfIndexAndName(self) -> None:
        """Neither or both of index= and name=: refused."""
        passed = PassedSockets([3], ["a"])
        for given in ({}, {"index": "0", "name": "a"}):
            error = self.assertRaises(usage.UsageError, passed.find, "x", given)
            self.assertIn("index=N or name=NAME", str(error))

    def test_fromTwisted(self) -> None:
        """
        The descriptors are those Twisted's own C{systemd:} parser read at
        import (it removed LISTEN_FDS from the environment then); the names
        come from LISTEN_FDNAMES.  Twisted's parser is given a L{ListenFDs}
        here: this test process was not started by systemd.
        """
        self.patch(_SystemdParser, "_sddaemon", ListenFDs([3, 4], ("a", "b")))
        passed = PassedSockets.fromTwisted({"LISTEN_FDNAMES": "a:b"})
        self.assertEqual((passed.descriptors, passed.names), ([3, 4], ["a", "b"]))
        self.patch(_SystemdParser, "_sddaemon", ListenFDs([], ()))
        passed = PassedSockets.fromTwisted({"LISTEN_FDNAMES": "a"})
        self.assertEqual((passed.descriptors, passed.names), ([], []))


class InspectTests(SocketsTestCase):
    def test_unix(self) -> None:
        """A UNIX socket: its path and its file's mode."""
        sock = self.unixSocket(0o660)
        passed = inspectSocket("d", sock.fileno(), "unix")
        self.assertEqual((passed.family, passed.mode), (socket.AF_UNIX, 0o660))
        self.assertEqual(passed.path, sock.getsockname())
        sock.getsockname()  # still open: inspecting does not close it

    def test_wrongDomain(self) -> None:
        """A socket of another family than domain= says: refused, naming both."""
        sock = self.inetSocket()
        error = self.assertRaises(usage.UsageError, inspectSocket, "d", sock.fileno(), "UNIX")
        self.assertIn("the socket passed is INET, not UNIX", str(error))
        error = self.assertRaises(usage.UsageError, inspectSocket, "d", sock.fileno(), "IPX")
        self.assertIn("bad domain 'IPX'", str(error))

    def test_notListening(self) -> None:
        """A socket that does not listen (Accept=yes hands over connections): refused."""
        sock = self.unixSocket(listen=False)
        error = self.assertRaises(usage.UsageError, inspectSocket, "d", sock.fileno(), "UNIX")
        self.assertIn("not a listening stream socket", str(error))

    def test_notASocket(self) -> None:
        """A descriptor that is no socket (a file) is refused."""
        with tempfile.TemporaryFile() as f:
            error = self.assertRaises(usage.UsageError, inspectSocket, "d", f.fileno(), "UNIX")
        self.assertIn("is not a socket", str(error))


class ClassifyTests(SocketsTestCase):
    def classify(self, sock: socket.socket, domain: str, noAuth: bool = False) -> object:
        return classifyListener(f"systemd:domain={domain}:index=0", noAuth,
                                passed=PassedSockets([sock.fileno()]))

    def test_unixNoToken(self) -> None:
        """
        A passed UNIX socket needs no token, as C{unix:} does, and is not
        capped; pycm adopts the very descriptor systemd passed.
        """
        sock = self.unixSocket(0o660)
        listener = self.classify(sock, "UNIX")
        self.assertFalse(listener.requireAuth)  # type: ignore[attr-defined]
        self.assertFalse(listener.capped)  # type: ignore[attr-defined]
        endpoint = listener.endpoint(None)  # type: ignore[attr-defined]
        self.assertIsInstance(endpoint, PassedSocketEndpoint)
        self.assertEqual((endpoint.fileno, endpoint.family), (sock.fileno(), socket.AF_UNIX))

    def test_positionalDomain(self) -> None:
        """C{systemd:UNIX:0} (positional, as Twisted allows) works too."""
        sock = self.unixSocket()
        listener = classifyListener("systemd:UNIX:0", False, passed=PassedSockets([sock.fileno()]))
        self.assertFalse(listener.requireAuth)

    def test_unixOpenToAllRefused(self) -> None:
        """A passed UNIX socket every user may connect to is refused, saying SocketMode."""
        sock = self.unixSocket(0o666)
        error = self.assertRaises(usage.UsageError, self.classify, sock, "UNIX")
        self.assertIn("SocketMode=0660", str(error))
        self.assertIn("mode 666", str(error))

    def test_abstractWantsToken(self) -> None:
        """An abstract UNIX socket has no permissions to guard it: the token."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(sock.close)
        sock.bind(f"\0pycm-test-{os.getpid()}-{id(self)}")
        sock.listen()
        self.assertTrue(self.classify(sock, "UNIX").requireAuth)  # type: ignore[attr-defined]

    def test_loopbackTCP(self) -> None:
        """
        A passed TCP socket on loopback follows the TCP rules: the token
        unless --no-auth, and capped.
        """
        sock = self.inetSocket("127.0.0.1")
        listener = self.classify(sock, "INET")
        self.assertTrue(listener.requireAuth)  # type: ignore[attr-defined]
        self.assertTrue(listener.capped)  # type: ignore[attr-defined]
        self.assertFalse(self.classify(sock, "INET", noAuth=True).requireAuth)  # type: ignore

    def test_loopbackTCP6(self) -> None:
        """The same on ::1 (INET6)."""
        try:
            sock = self.inetSocket("::1")
        except OSError:
            raise self.skipTest("no IPv6 loopback here") from None
        self.assertTrue(self.classify(sock, "INET6").requireAuth)  # type: ignore[attr-defined]

    def test_publicTCPRefused(self) -> None:
        """
        A passed TCP socket on every address is refused: pycm cannot put TLS
        on it, so tokens would go in the clear.
        """
        sock = self.inetSocket("0.0.0.0")
        error = self.assertRaises(usage.UsageError, self.classify, sock, "INET")
        self.assertIn("listens on every address", str(error))
        self.assertIn("ListenStream=127.0.0.1:8080", str(error))

    def test_missingDomain(self) -> None:
        """No domain=: refused."""
        error = self.assertRaises(usage.UsageError, classifyListener, "systemd:index=0", False,
                                  passed=PassedSockets([3]))
        self.assertIn("domain=UNIX", str(error))

    def test_notPassed(self) -> None:
        """
        Without sockets passed (this test process has none), --listen
        systemd:... is refused at once, with the reason.
        """
        error = self.assertRaises(usage.UsageError, classifyListener,
                                  "systemd:domain=UNIX:index=0", False)
        self.assertIn("no socket", str(error))
