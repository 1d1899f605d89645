"""
End-to-end tests of what a connection may cost and how it ends: the real
C{twistd pycm}, real sockets.  A half-closed connection gets its replies;
connections that have not authenticated are bounded (short lines, a
deadline to authenticate, the daemon's cap on connections).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time

from twisted.trial.unittest import SynchronousTestCase

from .e2e import DEADLINE, RealDaemon, memoryOf, waitFor


def _openSockets(pid: int) -> int:
    """How many sockets process C{pid} holds open, from /proc/PID/fd."""
    count = 0
    directory = f"/proc/{pid}/fd"
    for name in os.listdir(directory):
        try:
            if os.readlink(os.path.join(directory, name)).startswith("socket:"):
                count += 1
        except OSError:
            pass
    return count


#: A local user without the token: holds COUNT connections that never
#: authenticate and opens a new one as soon as one is closed or refused,
#: until its standard input closes; then prints how many it opened.
_REFILLING_ATTACKER = """
import selectors, socket, sys
port, count = int(sys.argv[1]), int(sys.argv[2])
selector = selectors.DefaultSelector()
selector.register(sys.stdin, selectors.EVENT_READ)
opened = 0
while True:
    while len(selector.get_map()) - 1 < count:
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
        opened += 1
        if opened == count:
            print("full", flush=True)
    for key, _ in selector.select():
        if key.fileobj is sys.stdin:
            print(opened, flush=True)
            sys.exit(0)
        try:
            data = key.fileobj.recv(65536)
        except OSError:
            data = b""
        if not data or b"ERR unavailable" in data:
            selector.unregister(key.fileobj)
            key.fileobj.close()
"""


def _readUntilClosed(sock: socket.socket) -> bytes:
    """Everything the daemon sends until it closes the connection."""
    sock.settimeout(DEADLINE)
    received = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return received
        received += chunk


class HalfCloseE2ETests(SynchronousTestCase):
    def test_shutdownWrite(self) -> None:
        """
        A client that sends its requests and shuts its sending side
        (SHUT_WR) gets every reply in order, slow ones included, then the
        daemon closes; an unfinished last line gets no reply.
        """
        daemon = RealDaemon(self).start()
        daemon.connect().ok("run slow memory ignore-term")
        sock = socket.create_connection(("127.0.0.1", daemon.port), timeout=DEADLINE)
        self.addCleanup(sock.close)
        sock.sendall(b"ping\nstop --time=1 slow\nwait slow\nlist\nversion")
        sock.shutdown(socket.SHUT_WR)
        lines = _readUntilClosed(sock).splitlines()
        self.assertEqual(len(lines), 4, lines)
        self.assertEqual(lines[0], b'OK "pong"')
        self.assertTrue(lines[1].startswith(b'OK {"name":"slow"'), lines[1])
        self.assertIn(b'"exit_code":-9', lines[1])
        self.assertTrue(lines[2].startswith(b'OK {"name":"slow"'), lines[2])
        self.assertTrue(lines[3].startswith(b'OK [{"name":"slow"'), lines[3])

    def test_shutdownWriteOnUnixSocket(self) -> None:
        """The same holds on a UNIX socket."""
        daemon = RealDaemon(self).start()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(sock.close)
        sock.settimeout(DEADLINE)
        sock.connect(daemon.socketPath)
        sock.sendall(b"ping\n" * 500)
        sock.shutdown(socket.SHUT_WR)
        self.assertEqual(_readUntilClosed(sock), b'OK "pong"\n' * 500)

    def test_goneWhileServedOnUnixSocket(self) -> None:
        """
        A client that closes its UNIX socket while its request is in
        flight (a C{wait} that would never end) is seen gone within about
        a second, and its connection closed (its wait with it), though
        the daemon does not read a connection while it serves it.
        """
        daemon = RealDaemon(self).start()
        daemon.connect().ok("run web memory sleep 1000")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(DEADLINE)
        sock.connect(daemon.socketPath)
        # Read with the ping: the wait behind it is then in flight.
        sock.sendall(b"ping\nwait --for=removed web\n")
        self.assertEqual(sock.recv(100), b'OK "pong"\n')
        sock.close()
        waitFor(lambda: " closed" in daemon.log(), "the gone client's connection closed",
                deadline=5)

    def test_netcat(self) -> None:
        """printf 'ping\\n' | nc -N 127.0.0.1 PORT prints the reply."""
        nc = shutil.which("nc")
        if nc is None:
            raise self.skipTest("nc (netcat-openbsd) is not installed")
        daemon = RealDaemon(self).start()
        result = subprocess.run(
            [nc, "-N", "127.0.0.1", str(daemon.port)],
            input=b"ping\nversion\n", capture_output=True, timeout=DEADLINE,
        )
        lines = result.stdout.splitlines()
        self.assertEqual(lines[0], b'OK "pong"', result)
        self.assertTrue(lines[1].startswith(b'OK {"server":"pycm"'), result)


class UnauthenticatedBoundsE2ETests(SynchronousTestCase):
    def start(self, *args: str, fileLimit: int | None = None) -> RealDaemon:
        return RealDaemon(self, auth=True, args=args, fileLimit=fileLimit).start()

    def token(self, daemon: RealDaemon) -> str:
        with open(f"{daemon.stateDir}/token") as tokenFile:
            return tokenFile.read().strip()

    def test_longLineAndIdleBeforeAuth(self) -> None:
        """
        Before auth a line of more than 4 KiB gets ERR too_long and the
        connection closes; an idle connection is closed after
        --auth-timeout with ERR unauthorized; an authenticated one is not.
        """
        daemon = self.start("--auth-timeout", "0.5")
        longLine = daemon.connect()
        longLine.send(b"auth " + b"x" * 5000)
        self.assertEqual(longLine.reply()[1][0], "too_long")
        waitFor(longLine.isClosed, "the daemon to close the connection")
        idle = daemon.connect()
        authenticated = daemon.connect()
        self.assertEqual(authenticated.ok(f"auth {self.token(daemon)}"), "authenticated")
        kind, (code, message) = idle.reply()
        self.assertEqual((kind, code), ("ERR", "unauthorized"))
        self.assertIn("0.5 seconds", message)
        waitFor(idle.isClosed, "the daemon to close the idle connection")
        self.assertEqual(authenticated.ok("list"), [])

    def test_lineBehindPipelinedAuth(self) -> None:
        """
        A line that arrives unfinished behind a pipelined auth line still
        waiting its turn (64 pings before it) is held to the limit auth
        brings: a 5,000-byte line after auth is a request, not too_long.
        """
        daemon = self.start()
        client = daemon.connect()
        client.send(b"ping\n" * 64 + f"auth {self.token(daemon)}\n".encode() + b"#" + b"x" * 5000)
        for _ in range(64):
            self.assertEqual(client.reply(), ("OK", "pong"))
        client.send(b"\nping\n")
        self.assertEqual(client.reply(), ("OK", "authenticated"))
        self.assertEqual(client.reply(), ("OK", "pong"))

    def test_idleClientThatDoesNotReadLetGo(self) -> None:
        """
        A client that never authenticates nor reads its replies (its
        requests stop being read once they fill the daemon's buffers) is
        still let go of at --auth-timeout: its descriptor is not kept.
        """
        daemon = self.start("--auth-timeout", "1")
        operator = daemon.connect(unix=True)
        sock = socket.create_connection(("127.0.0.1", daemon.port), timeout=DEADLINE)
        self.addCleanup(sock.close)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(0.5)
        blocked = False
        started = time.monotonic()
        while not blocked and time.monotonic() - started < DEADLINE:
            try:
                sock.send(b"help\n" * 100)
            except TimeoutError:
                # The daemon no longer reads this connection.
                blocked = True
            except OSError:
                break
        waitFor(lambda: operator.ok("info")["connections"] == 1,
                "the daemon to let go of the connection that does not read")

    def test_authDeadlineNotMovedByActivity(self) -> None:
        """
        A connection that keeps sending lines (pings, comments) but never
        authenticates is still closed --auth-timeout seconds after it
        connected.
        """
        daemon = self.start("--auth-timeout", "1")
        busy = daemon.connect()
        connected = time.monotonic()
        closed = False
        while not closed and time.monotonic() - connected < DEADLINE:
            try:
                busy.send("# still here\nping\n")
                kind, value = busy.reply()
            except OSError:
                break
            closed = kind == "ERR"
            # Pacing the client, as a keep-alive would; no race depends on it.
            time.sleep(0.1)
        self.assertLess(time.monotonic() - connected, 5)
        waitFor(lambda: "no auth TOKEN within 1 seconds (auth timeout)" in daemon.log(),
                "the auth timeout in the log")

    def test_noAuthListenerCapped(self) -> None:
        """
        A --no-auth TCP listener is capped like any other; the UNIX socket
        still lets the operator in.
        """
        daemon = RealDaemon(self, args=["--max-connections", "2"]).start()
        held = [daemon.connect() for _ in range(2)]
        self.assertEqual(held[0].ok("ping"), "pong")
        refused = daemon.connect()
        kind, (code, _) = refused.reply()
        self.assertEqual((kind, code), ("ERR", "unavailable"))
        waitFor(refused.isClosed, "the daemon to close a refused connection")
        self.assertEqual(daemon.connect(unix=True).ok("list"), [])

    def test_maxConnections(self) -> None:
        """
        When the connections at --max-connections have all authenticated,
        new ones are refused at once with an ERR unavailable line, logged
        once for the episode; the UNIX socket still lets the operator in;
        room made by a close is used again.
        """
        daemon = self.start("--max-connections", "3")
        held = [daemon.connect() for _ in range(3)]
        for connection in held:
            self.assertEqual(connection.ok(f"auth {self.token(daemon)}"), "authenticated")
        for _ in range(5):
            refused = daemon.connect()
            kind, (code, message) = refused.reply()
            self.assertEqual((kind, code), ("ERR", "unavailable"))
            self.assertIn("3 connections", message)
            waitFor(refused.isClosed, "the daemon to close a refused connection")
        self.assertEqual(held[0].ok("ping"), "pong")
        operator = daemon.connect(unix=True)
        self.assertEqual(operator.ok("list"), [])
        self.assertEqual(daemon.log().count("refusing new ones"), 1)
        operator.close()
        held.pop().close()
        waitFor(lambda: "accepting connections again (5 refused" in daemon.log(),
                "the end of the episode in the log")
        self.assertEqual(daemon.connect().ok(f"auth {self.token(daemon)}"), "authenticated")

    def test_tokenHolderGetsInDuringRefillingFlood(self) -> None:
        """
        With --max-connections 10 and another local user without the token
        holding every slot and reopening each connection the moment it is
        closed, the real client with the token gets in every time over TCP
        (the only listener by default): a newcomer takes the place of the
        oldest connection of the user holding the most that have not
        authenticated, so the attacker displaces only its own.  The daemon
        never serves more than the cap; the sockets it holds are the cap's
        and, for a turn or two, those it is closing (never more than the cap).
        """
        if os.getuid() != 0:
            raise self.skipTest("needs root, to run the attacker as another user")
        # A Python another user may run (the test's may sit under /root).
        python = next(
            (p for p in ("/usr/bin/python3", "/usr/local/bin/python3") if os.path.exists(p)),
            None,
        )
        if python is None:
            raise self.skipTest("no system python3 for the attacker")
        daemon = self.start("--max-connections", "10")
        token = self.token(daemon)
        baseline = _openSockets(daemon.pid)
        attacker = subprocess.Popen(
            [python, "-c", _REFILLING_ATTACKER, str(daemon.port), "10"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, user=65534, cwd="/",
        )
        self.addCleanup(attacker.wait, DEADLINE)
        self.addCleanup(attacker.kill)
        assert attacker.stdout is not None and attacker.stdin is not None
        self.assertEqual(attacker.stdout.readline(), b"full\n")
        env = dict(
            os.environ, PYCM_HOST=f"tcp:127.0.0.1:{daemon.port}", PYCM_TOKEN=token
        )
        most = 0
        for attempt in range(20):
            if attempt % 2:
                result = daemon.pycm("ping", env=env)
                self.assertEqual((result.returncode, result.stdout.strip()), (0, b"pong"),
                                 result)
            else:
                client = daemon.connect()
                self.assertEqual(client.ok(f"auth {token}"), "authenticated")
                self.assertEqual(client.ok("ping"), "pong")
                client.close()
            most = max(most, _openSockets(daemon.pid) - baseline)
        attacker.stdin.close()
        opened = int(attacker.stdout.readline())
        self.assertGreater(opened, 20)
        self.assertLessEqual(most, 2 * 10, "sockets beyond the listeners' own")
        self.assertIn("(made room)", daemon.log())

    def test_floodUnderLowFileLimit(self) -> None:
        """
        Under a hard limit of 512 open files, 600 connections that never
        authenticate leave the daemon able to run a container: at the
        default cap (derived from the limit: 128) each newcomer takes the
        place of the oldest that has not authenticated, so the daemon never
        holds more than the cap, and the descriptors a container needs stay
        free; the authenticated client keeps its place.
        """
        daemon = RealDaemon(self, backend="process", auth=True, fileLimit=512).start()
        client = daemon.connect()
        self.assertEqual(client.ok(f"auth {self.token(daemon)}"), "authenticated")
        flood = []
        for _ in range(600):
            sock = socket.create_connection(("127.0.0.1", daemon.port), timeout=5)
            self.addCleanup(sock.close)
            sock.sendall(b"ping\n")
            flood.append(sock)
        web = client.ok("run web host sleep 1000")
        self.assertEqual(web["state"], "running")
        self.assertEqual(client.ok("rm -f web")["name"], "web")
        waitFor(lambda: client.ok("info")["connections"] == 128,
                "the daemon to hold the cap's worth of connections")
        closed = 0
        for sock in flood:
            sock.setblocking(False)
            received = b""
            try:
                while chunk := sock.recv(65536):
                    received += chunk
                closed += 1
                self.assertIn(b"ERR unavailable", received)
            except BlockingIOError:
                # Still open: one of the newest, which kept its place.
                self.assertNotIn(b"ERR", received)
        self.assertEqual(closed, 600 - (128 - 1))


class FileLimitE2ETests(SynchronousTestCase):
    """A daemon that runs out of open files says so."""

    def test_runOutOfFilesSaysSo(self) -> None:
        """
        Under a hard limit of 128 open files, containers run until the
        daemon's descriptors are used up (three a running container): the
        next run's error names the daemon's limit and what to do, not the
        container's program.  A new connection is still served, and once
        some are removed, a run works again.
        """
        daemon = RealDaemon(
            self, backend="process", fileLimit=128,
            args=["--backend-option", "cgroup-parent=/pycm-e2e"],
        ).start()
        client = daemon.connect()
        ran = []
        for index in range(128):
            kind, value = client.request(f"run f{index} host sleep 1000")
            if kind != "OK":
                break
            ran.append(f"f{index}")
        else:
            self.fail("128 containers ran under a limit of 128 open files")
        self.assertGreater(len(ran), 10)
        self.assertEqual(value[0], "backend")
        self.assertIn(
            "the daemon has as many files open as its limit allows (128; each running"
            " container holds 3): raise its limit (LimitNOFILE=", value[1],
        )
        self.assertNotIn("exec", value[1])
        self.assertEqual(client.ok(f"inspect f{len(ran)}")["state"], "dead")
        self.assertEqual(daemon.connect().ok("ping"), "pong")
        for name in ran[:3]:
            client.ok(f"rm --force {name}")
        self.assertEqual(client.ok("run again host sleep 1000")["state"], "running")


class FloodE2ETests(SynchronousTestCase):
    def test_clientsThatDoNotReadCostLittle(self) -> None:
        """
        Clients that pipeline requests with big replies and never read
        them are no longer read once their buffers fill: the daemon's
        memory stays put and another client's ping is answered at once.
        """
        daemon = RealDaemon(self).start()
        setup = daemon.connect(unix=True)
        setup.send(b"".join(b"create c%d\n" % i for i in range(300)))
        for _ in range(300):
            self.assertEqual(setup.reply()[0], "OK")
        floods = []
        for _ in range(3):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.addCleanup(sock.close)
            sock.connect(daemon.socketPath)
            sock.settimeout(0.5)
            floods.append(sock)
        before = memoryOf(daemon.pid)
        blocked: set[int] = set()
        started = time.monotonic()
        # The daemon stops reading each flood once its replies fill the
        # buffers, and sends then block (for half a second: the socket's
        # timeout).  A blocked flood is not tried again, so that its
        # timeouts do not use up the others' time on a loaded machine.
        while len(blocked) < len(floods) and time.monotonic() - started < DEADLINE:
            for index, sock in enumerate(floods):
                if index in blocked:
                    continue
                try:
                    sock.send(b"list\n" * 1000)
                except TimeoutError:
                    blocked.add(index)
        self.assertEqual(len(blocked), len(floods))
        other = daemon.connect(unix=True)
        asked = time.monotonic()
        self.assertEqual(other.ok("ping"), "pong")
        self.assertLess(time.monotonic() - asked, 2)
        # Each holds its write buffer and one read at most, not the
        # replies to the thousands of list requests it sent.
        self.assertLess(memoryOf(daemon.pid) - before, 64 * 2**20)

    def test_pipelinedThousandsThenShutdown(self) -> None:
        """
        20,000 requests in one write, an unfinished last line and SHUT_WR:
        every complete line gets its reply, in order; the daemon then
        closes and logs the unfinished line by its byte count only.
        """
        daemon = RealDaemon(self).start()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(sock.close)
        sock.settimeout(DEADLINE)
        sock.connect(daemon.socketPath)
        requests = [b"ping" if i % 3 else b"version" for i in range(20_000)]
        secret = b"auth 7e11a1e-secret"

        def send() -> None:
            sock.sendall(b"\n".join(requests) + b"\n" + secret)
            sock.shutdown(socket.SHUT_WR)

        sender = threading.Thread(target=send)
        sender.start()
        lines = _readUntilClosed(sock).splitlines()
        sender.join()
        self.assertEqual(len(lines), len(requests))
        for request, line in zip(requests, lines):
            expected = b'OK "pong"' if request == b"ping" else b'OK {"server":"pycm"'
            self.assertTrue(line.startswith(expected), (request, line))
        waitFor(lambda: f"{len(secret)} bytes of an unfinished line" in daemon.log(),
                "the discarded bytes in the log")
        self.assertNotIn("7e11a1e", daemon.log())
