"""
End-to-end tests of requests that cost a lot and answer little: the real
C{twistd pycm} on the process backend, a finished container with a log of
tens of megabytes, and clients that pipeline expensive C{logs} requests.
Other connections are answered meanwhile, a client that goes takes its
requests with it, and SIGTERM stops the daemon promptly.

The bounds compare with what one such request costs on this machine
(measured first), never with fixed times: without the fix each flood holds
the daemon for its whole length, many times that.
"""

from __future__ import annotations

import signal
import socket
import time

from twisted.trial.unittest import SynchronousTestCase

from tests.e2e import DEADLINE, LineClient, RealDaemon, waitFor

#: What the container writes: 200,000 lines of 90 characters (about 30 MB
#: of log records, rotated over the default three files).
WRITER = "run lg host sh -c 'seq -f %090g 1 200000'"

#: A request that reads (and decodes) the most C{logs} reads and replies
#: with one short line: a tail over the 8 MiB a reply may carry.
EXPENSIVE = "logs --tail=60000 lg"

#: Requests a flood pipelines in one write.
FLOOD = 40


def countReplies(client: LineClient) -> int:
    """How many reply lines C{client} can read now, without waiting."""
    count = 0
    client.sock.setblocking(False)
    try:
        while True:
            try:
                chunk = client.sock.recv(1 << 20)
            except BlockingIOError:
                break
            if not chunk:
                break
            client._buffer += chunk
    finally:
        client.sock.settimeout(DEADLINE)
    count = client._buffer.count(b"\n")
    return count


class CostlyRequestsTests(SynchronousTestCase):
    """A process-backend daemon with one big finished log."""

    def setUp(self) -> None:
        self.daemon = RealDaemon(
            self, backend="process", args=["--backend-option", "cgroup-parent=/pycm-e2e"]
        ).start()
        client = self.daemon.connect()
        client.ok(WRITER)
        waitFor(lambda: client.ok("inspect lg")["state"] == "exited", "the writer to end", 120)
        start = time.monotonic()
        kind, value = client.request(EXPENSIVE)
        #: What one expensive request costs on this machine now.
        self.cost = time.monotonic() - start
        self.assertEqual((kind, value[0]), ("ERR", "bad_request"))
        client.close()

    def flood(self) -> LineClient:
        """A client that sends L{FLOOD} expensive requests in one write."""
        client = self.daemon.connect()
        client.send((EXPENSIVE + "\n") * FLOOD)
        return client

    def test_pingDuringFlood(self) -> None:
        """
        While a client's pipelined expensive requests are served, another
        client's C{ping} is answered before the flood's last reply.
        """
        flood = self.flood()
        flood.readLine()
        other = self.daemon.connect()
        self.assertEqual(other.ok("ping"), "pong")
        self.assertLess(countReplies(flood) + 1, FLOOD)

    def test_goneFloodDropped(self) -> None:
        """
        Clients that pipeline expensive requests and close take them with
        them: a C{ping} is answered, and a new expensive request served, in
        a few requests' time, not the floods'.
        """
        floods = [self.flood() for _ in range(3)]
        for flood in floods:
            flood.readLine()
            flood.close()
        start = time.monotonic()
        other = self.daemon.connect()
        self.assertEqual(other.ok("ping"), "pong")
        kind, _ = other.request(EXPENSIVE)
        self.assertEqual(kind, "ERR")
        self.assertLess(time.monotonic() - start, 20 * self.cost + 10)

    def test_sigtermDuringFlood(self) -> None:
        """SIGTERM stops the daemon promptly while floods are under way."""
        floods = [self.flood() for _ in range(3)]
        for flood in floods:
            flood.readLine()
        gone = self.flood()
        gone.readLine()
        gone.sock.shutdown(socket.SHUT_RDWR)
        start = time.monotonic()
        self.daemon.signal(signal.SIGTERM)
        self.daemon.exitCode(deadline=10 * self.cost + 15)
        self.assertLess(time.monotonic() - start, 10 * self.cost + 15)
