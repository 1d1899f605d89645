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
import sys

from twisted.trial.unittest import SynchronousTestCase

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
