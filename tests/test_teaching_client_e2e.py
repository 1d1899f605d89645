"""
End-to-end test of the teaching client pycm grew out of (a faithful copy in
C{tests/fixtures/teaching_client.py}) on a real pseudo-terminal, against the
real C{twistd pycm --no-auth --legacy-framing} on a free loopback port, with
the effects checked by the real C{pycm} client.

Real processes, sockets, terminal and time: the test waits by polling with
a deadline, never by sleeping.
"""

from __future__ import annotations

import json
import os
import re
import socket
import struct
import sys
import time

from twisted.trial.unittest import SynchronousTestCase

from pycm.daemon.legacyframing import LEGACY_PAUSE
from tests.e2e import DEADLINE, RealDaemon, Terminal, waitFor

FIXTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "teaching_client.py")

COMMAND_PROMPT = b"Enter command (run, stop or list), exit to quit interface: "
NAME_PROMPT = b"Enter container name: "

#: A request as the daemon's debug log shows it, with the client's address.
_REQUEST = re.compile(r"(127\.0\.0\.1:\d+) request: (.*)$", re.MULTILINE)


class TeachingClient:
    """The teaching client on a new pseudo-terminal, typed at as a person would."""

    def __init__(self, testCase: SynchronousTestCase, port: int) -> None:
        self.terminal = Terminal(testCase, [sys.executable, FIXTURE, "127.0.0.1", str(port)])
        self.process = self.terminal.process

    def readUntil(self, expected: bytes) -> None:
        """Read the terminal until C{expected} shows up, then forget what was read."""
        self.terminal.readPast(expected)

    def type(self, line: str) -> None:
        """Type a line and press Enter."""
        self.terminal.type(line.encode() + b"\r")


class TeachingClientTests(SynchronousTestCase):
    """The original teaching client drives pycm under legacy framing."""

    def setUp(self) -> None:
        self.daemon = RealDaemon(
            self, args=["--legacy-framing", "--log-level", "debug"]
        ).start()

    def requests(self) -> list[tuple[str, str]]:
        """The requests of TCP clients in the daemon's log: (peer, request)."""
        return _REQUEST.findall(self.daemon.log())

    def served(self, count: int) -> list[str]:
        """Wait for the daemon to have read C{count} requests over TCP; all of them."""
        requests = waitFor(
            lambda: (found := self.requests()) and len(found) >= count and found,
            f"request {count} of the teaching client to reach the daemon",
        )
        return [request for _, request in requests]

    def containers(self) -> dict[str, str]:
        """Each container's state, from the real C{pycm list --json}."""
        result = self.daemon.pycm("--json", "list")
        self.assertEqual(result.returncode, 0, result.stderr)
        return {c["name"]: c["state"] for c in json.loads(result.stdout)}

    def test_session(self) -> None:
        """
        run, list, stop, run, a stop refused by the empty-name guardrail
        (nothing sent), exit: each request the client sends without a
        newline is served once the client pauses (the test waits for the
        daemon to have read it before typing the next, as a person typing
        would pause), and the effects show in C{pycm list}.
        """
        client = TeachingClient(self, self.daemon.port)
        client.readUntil(COMMAND_PROMPT)
        client.type("run")
        client.readUntil(NAME_PROMPT)
        client.type("blogone")
        client.readUntil(COMMAND_PROMPT)
        self.assertEqual(self.served(1), ["run blogone"])
        self.assertEqual(self.containers(), {"blogone": "running"})

        client.type("list")
        client.readUntil(COMMAND_PROMPT)
        self.assertEqual(self.served(2)[1:], ["list"])

        client.type("stop")
        client.readUntil(NAME_PROMPT)
        client.type("blogone")
        client.readUntil(COMMAND_PROMPT)
        self.assertEqual(self.served(3)[2:], ["stop blogone"])

        client.type("run")
        client.readUntil(NAME_PROMPT)
        client.type("blogtwo")
        client.readUntil(COMMAND_PROMPT)
        self.assertEqual(self.served(4)[3:], ["run blogtwo"])

        client.type("stop")
        client.readUntil(NAME_PROMPT)
        client.type("")
        client.readUntil(b"Container name required")
        client.readUntil(COMMAND_PROMPT)

        client.type("exit")
        self.assertEqual(client.process.wait(timeout=DEADLINE), 0)
        peer = self.requests()[0][0]
        waitFor(
            lambda: f"connection from {peer} closed" in self.daemon.log(),
            "the daemon to see the teaching client go",
        )
        self.assertEqual(
            waitFor(lambda: self.containers(), "pycm list"),
            {"blogone": "exited", "blogtwo": "running"},
        )
        # One connection, and nothing sent for the refused stop: the only
        # request after the fourth, if the daemon read it before the client
        # was gone, is the exit.
        requests = self.requests()
        self.assertEqual({p for p, _ in requests}, {peer})
        self.assertIn([r for _, r in requests][4:], ([], ["exit"]))

    def test_requestsSentBeforeClosing(self) -> None:
        """
        The teaching client's requests typed while a slow C{stop} is in
        flight (a container that ignores SIGTERM, 5 s to its SIGKILL), then
        its close right after C{exit}: once the stop is done, the requests
        it sent are carried out, in order (web10 is run, then stopped).

        The client closes with SO_LINGER 0, so the connection is reset at
        once: what the teaching client's plain close comes to as soon as
        the daemon writes a reply it will never read, made certain here
        while the stop is still in flight.  The pauses between the requests
        are the input (a person typing), not a wait for the daemon.
        """
        created = self.daemon.pycm("run", "--stop-timeout=5", "trapper", "memory", "ignore-term")
        self.assertEqual(created.returncode, 0, created.stderr)
        sock = socket.create_connection(("127.0.0.1", self.daemon.port), timeout=DEADLINE)
        self.addCleanup(sock.close)
        sock.send(b"stop trapper")
        waitFor(lambda: self.containers()["trapper"] == "stopping", "the stop to be in flight")
        for request in (b"run web10", b"list", b"stop web10", b"exit"):
            time.sleep(LEGACY_PAUSE * 6)
            sock.send(request)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
        waitFor(
            lambda: self.containers() == {"trapper": "exited", "web10": "exited"},
            "web10 to be run, then stopped",
        )
        log = self.daemon.log()
        self.assertIn("closed with 4 request lines not yet served", log)
        self.assertIn("(2 carried out, 1 skipped: they only answer the client)", log)
        self.assertLess(log.index(": run web10: ok"), log.index(": stop web10: ok"))
