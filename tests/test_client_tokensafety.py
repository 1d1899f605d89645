"""
Tests for L{pycm.client.tokensafety} and L{pycm.socketowner}: a token the
client found in its token file goes only to a socket its owner listens on,
checked on the one-shot path, the reactor's and the completion's; a token
the user gave goes where asked.
"""

from __future__ import annotations

import io
import json
import os
import select
import signal
import socket
import struct

from twisted.internet import reactor
from twisted.trial.unittest import SynchronousTestCase, TestCase

from pycm import socketowner
from pycm.client import completion, connecting, oneshot
from pycm.client.arguments import CommandLine, parseArguments
from pycm.client.tokensafety import socketEnds, transportEnds, whyWithheld

#: Whom another user's listener runs as in the tests that need root.
OTHER_UID = 65534


def found(path: str = "/home/vic/.local/state/pycm/token") -> CommandLine:
    """Options whose token was read from the token file at C{path}."""
    return CommandLine(host="tcp:127.0.0.1:18185", token="secret", json=False,
                       command=("ping",), tokenSource=path)


class WhyWithheldTests(SynchronousTestCase):
    """L{whyWithheld} on given owners (no socket, no file)."""

    local = ("127.0.0.1", 40000)
    peer = ("127.0.0.1", 18185)

    def test_chosenTokenSent(self) -> None:
        """A token from --token or $PYCM_TOKEN is sent whoever listens."""
        for source in ("--token", "$PYCM_TOKEN"):
            options = found()._replace(tokenSource=source)
            self.assertIsNone(whyWithheld(options, self.local, self.peer,
                                          ownerOf=lambda *a: 1001,
                                          fileOwner=lambda path: 1000))

    def test_ownersDaemon(self) -> None:
        """The listener belongs to the token file's owner: the token is sent."""
        asked = []

        def ownerOf(source: tuple[str, int], destination: tuple[str, int]) -> int:
            asked.append((source, destination))
            return 1000

        self.assertIsNone(whyWithheld(found(), self.local, self.peer, ownerOf=ownerOf,
                                      fileOwner=lambda path: 1000))
        # The socket asked about is the far end: its own address is the peer.
        self.assertEqual(asked, [(self.peer, self.local)])

    def test_otherUsersListener(self) -> None:
        """Another uid's listener: withheld, saying whose it is and how to send anyway."""
        why = whyWithheld(found(), self.local, self.peer, ownerOf=lambda *a: 1001,
                          fileOwner=lambda path: 1000)
        self.assertEqual(
            why,
            "127.0.0.1:18185 is not served by the daemon that wrote "
            "/home/vic/.local/state/pycm/listeners (it belongs to uid 1001, the token "
            "file to uid 1000): the token was not sent (to send it anyway, use --token "
            "or set PYCM_TOKEN)")

    def test_ownerUnknown(self) -> None:
        """The kernel does not tell (or the ends are unknown): withheld."""
        why = whyWithheld(found(), self.local, ("::1", 18185), ownerOf=lambda *a: None,
                          fileOwner=lambda path: 1000)
        self.assertIsNotNone(why)
        assert why is not None
        self.assertTrue(why.startswith("cannot tell who listens at [::1]:18185"), why)
        self.assertIsNotNone(whyWithheld(found(), None, None, ownerOf=lambda *a: 1000,
                                         fileOwner=lambda path: 1000))

    def test_tokenFileGone(self) -> None:
        """The token file's owner cannot be told: withheld."""
        def gone(path: str) -> int:
            raise FileNotFoundError(2, "No such file or directory")

        why = whyWithheld(found(), self.local, self.peer, ownerOf=lambda *a: 1000,
                          fileOwner=gone)
        self.assertIsNotNone(why)
        assert why is not None
        self.assertIn("cannot tell who owns /home/vic/.local/state/pycm/token", why)

    def test_ends(self) -> None:
        """The two ends of a socket and of a transport, None for a UNIX one."""
        from twisted.internet.address import IPv4Address, UNIXAddress
        from twisted.internet.testing import StringTransport

        transport = StringTransport(IPv4Address("TCP", "127.0.0.1", 40000),
                                    IPv4Address("TCP", "127.0.0.1", 18185))
        self.assertEqual(transportEnds(transport),
                         (("127.0.0.1", 40000), ("127.0.0.1", 18185)))
        unix = StringTransport(UNIXAddress(None), UNIXAddress(b"/run/pycm.sock"))
        self.assertEqual(transportEnds(unix), (None, None))
        a, b = socket.socketpair()
        self.addCleanup(a.close)
        self.addCleanup(b.close)
        self.assertEqual(socketEnds(a), (None, None))


class SocketOwnerTests(SynchronousTestCase):
    """L{socketowner}: the netlink request and reply, and a real socket."""

    def test_request(self) -> None:
        """The request names the socket by family, ports and addresses."""
        request = socketowner.diagRequest(("127.0.0.1", 18185), ("127.0.0.2", 40000))
        length, kind = struct.unpack_from("=IH", request)
        self.assertEqual((length, kind), (len(request), 20))
        family, protocol = struct.unpack_from("=BB", request, 16)
        self.assertEqual((family, protocol), (socket.AF_INET, socket.IPPROTO_TCP))
        sport, dport = struct.unpack_from("!HH", request, 24)
        self.assertEqual((sport, dport), (18185, 40000))
        self.assertEqual(request[28:32], bytes([127, 0, 0, 1]))
        self.assertEqual(request[44:48], bytes([127, 0, 0, 2]))
        six = socketowner.diagRequest(("::1", 1), ("::1", 2))
        self.assertEqual(six[16], socket.AF_INET6)

    def test_reply(self) -> None:
        """The uid is read from a reply; an error reply or a short one says nothing."""
        body = bytearray(72)
        struct.pack_into("=I", body, 64, 1001)
        reply = struct.pack("=IHHII", 16 + len(body), 20, 0, 1, 0) + bytes(body)
        self.assertEqual(socketowner.replyUID(reply), 1001)
        error = struct.pack("=IHHII", 16 + len(body), 2, 0, 1, 0) + bytes(body)
        self.assertIsNone(socketowner.replyUID(error))
        self.assertIsNone(socketowner.replyUID(reply[:40]))

    def test_ownListener(self) -> None:
        """The far end of a connection to this process's listener is this uid."""
        server = socket.socket()
        self.addCleanup(server.close)
        server.bind(("127.0.0.1", 0))
        server.listen()
        client = socket.create_connection(server.getsockname())
        self.addCleanup(client.close)
        local, peer = client.getsockname(), client.getpeername()
        if socketowner.socketUID(peer, local) is None:
            raise self.skipTest("the kernel does not tell sockets' owners here")
        # Not accepted yet: the connection waits in the listener's queue.
        self.assertEqual(socketowner.socketUID(peer, local), os.getuid())
        self.assertIsNone(socketowner.socketUID(("127.0.0.1", 1), local))


def listenAs(test: SynchronousTestCase, uid: int | None) -> tuple[int, int]:
    """
    A listener on 127.0.0.1 in a forked child running as C{uid} (this
    process's when None) that answers each line with C{OK "pong"} after
    writing it to a pipe: its port, and the pipe's reading end.
    """
    ready, portWriter = os.pipe()
    linesReader, linesWriter = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            signal.alarm(20)
            os.close(ready)
            os.close(linesReader)
            if uid is not None:
                os.setgid(uid)
                os.setuid(uid)
            server = socket.socket()
            server.bind(("127.0.0.1", 0))
            server.listen()
            os.write(portWriter, str(server.getsockname()[1]).encode())
            os.close(portWriter)
            connection, _ = server.accept()
            for line in connection.makefile("rb"):
                os.write(linesWriter, line)
                connection.sendall(b'OK "pong"\n')
        finally:
            os._exit(0)
    os.close(portWriter)
    os.close(linesWriter)

    def reap() -> None:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.waitpid(pid, 0)

    test.addCleanup(reap)
    test.addCleanup(os.close, linesReader)
    port = int(os.read(ready, 16))
    os.close(ready)
    return port, linesReader


def firstLine(reader: int) -> bytes:
    """The first line the listener of L{listenAs} was sent."""
    received = b""
    while b"\n" not in received:
        readable, _, _ = select.select([reader], [], [], 10)
        if not readable:
            break
        chunk = os.read(reader, 4096)
        if not chunk:
            break
        received += chunk
    return received.split(b"\n")[0]


def stateFor(test: SynchronousTestCase, port: int) -> dict[str, str]:
    """
    The environment of a user whose daemon (killed since) listened on
    C{port} with a token: its token file (this process's) and listeners
    file.
    """
    home = test.mktemp()
    state = os.path.join(home, "pycm")
    os.makedirs(state)
    with open(os.path.join(state, "token"), "w") as f:
        f.write("secret-token-of-the-daemon\n")
    with open(os.path.join(state, "listeners"), "w") as f:
        json.dump([{"kind": "tcp", "host": "127.0.0.1", "port": port, "token": True}], f)
    return {"XDG_STATE_HOME": os.path.abspath(home), "HOME": os.path.abspath(home)}


def needDiag(test: SynchronousTestCase, root: bool = True) -> None:
    """
    Skip unless the kernel tells sockets' owners and, with C{root}, this
    runs as root (to listen as another user).
    """
    if root and os.getuid() != 0:
        raise test.skipTest("needs root, to listen as another user")
    probe = socket.socket()
    try:
        probe.bind(("127.0.0.1", 0))
        probe.listen()
        client = socket.create_connection(probe.getsockname())
        with client:
            if socketowner.socketUID(client.getpeername(), client.getsockname()) is None:
                raise test.skipTest("the kernel does not tell sockets' owners here")
    finally:
        probe.close()


class OneShotTests(SynchronousTestCase):
    """The one-shot path over real sockets to listeners of either owner."""

    def callPycm(self, port: int) -> tuple[int, str]:
        """Run C{pycm -H tcp:127.0.0.1:PORT ping} as a user (uid 4242) whose token is found."""
        environ = stateFor(self, port)
        options = parseArguments(["-H", f"tcp:127.0.0.1:{port}", "ping"], environ, 4242)
        self.assertEqual(options.token, "secret-token-of-the-daemon")
        out, err = io.StringIO(), io.StringIO()
        status = oneshot.main(options, out, err)
        assert status is not None
        return status, err.getvalue()

    def test_otherUsersListener(self) -> None:
        """
        Another user listening on the port the token's daemon listened on
        is not sent the token: the client says why and sends the command
        without it.
        """
        needDiag(self)
        port, lines = listenAs(self, OTHER_UID)
        status, err = self.callPycm(port)
        self.assertEqual(firstLine(lines), b"ping")
        self.assertIn(f"127.0.0.1:{port} is not served by the daemon that wrote", err)
        self.assertIn(f"(it belongs to uid {OTHER_UID}, the token file to uid {os.getuid()})", err)

    def test_ownersListener(self) -> None:
        """The token file's owner listening: the token is sent first."""
        needDiag(self, root=False)
        port, lines = listenAs(self, None)
        status, err = self.callPycm(port)
        self.assertEqual(firstLine(lines), b"auth secret-token-of-the-daemon")
        self.assertEqual(err, "")


class ReactorTests(TestCase):
    """The reactor's path (L{connecting.connectTo}) over real sockets."""

    async def connectAndPing(self, port: int) -> str:
        """Connect as a user (uid 4242) whose token is found, then send C{ping}."""
        environ = stateFor(self, port)
        options = parseArguments(["-H", f"tcp:127.0.0.1:{port}", "ping"], environ, 4242)
        err = io.StringIO()
        client = await connecting.connectTo(reactor, options, err)
        self.addCleanup(client.transport.abortConnection)  # type: ignore[union-attr]
        await client.command("ping")
        return err.getvalue()

    async def test_otherUsersListener(self) -> None:
        """Another user's listener is not sent the token; standard error says why."""
        needDiag(self)
        port, lines = listenAs(self, OTHER_UID)
        err = await self.connectAndPing(port)
        self.assertEqual(firstLine(lines), b"ping")
        self.assertIn(f"it belongs to uid {OTHER_UID}", err)

    async def test_ownersListener(self) -> None:
        """The token file's owner listening: the token is sent first."""
        needDiag(self, root=False)
        port, lines = listenAs(self, None)
        err = await self.connectAndPing(port)
        self.assertEqual(firstLine(lines), b"auth secret-token-of-the-daemon")
        self.assertEqual(err, "")


class CompletionTests(SynchronousTestCase):
    """The completion's silent request for container names."""

    def test_otherUsersListener(self) -> None:
        """Another user's listener is not sent the token, and nothing is said."""
        needDiag(self)
        port, lines = listenAs(self, OTHER_UID)
        options = parseArguments(["-H", f"tcp:127.0.0.1:{port}", "__names"],
                                 stateFor(self, port), 4242)
        completion.containerNames(options.host, options.token, 2.0, options)
        self.assertEqual(firstLine(lines), b"list")
