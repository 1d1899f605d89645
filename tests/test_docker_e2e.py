"""
End-to-end: the real C{twistd pycm --backend docker} in a subprocess, in
front of the test engine, driven over a real socket and with the real
C{pycm} client.

Needs C{PYCM_DOCKER_HOST} (see L{tests.test_docker_support}); skips
without it, fails without it under C{PYCM_REQUIRE_DOCKER=1}.
"""

from __future__ import annotations

import json
import os
import subprocess

from twisted.trial.unittest import SynchronousTestCase

from tests.e2e import RealDaemon, waitFor
from tests.test_docker_support import requireEngine, testImage, uniqueName


def dockerDaemon(testCase: SynchronousTestCase, host: str, *args: str) -> RealDaemon:
    """A running daemon on the docker backend at C{host}."""
    return RealDaemon(
        testCase,
        backend="docker",
        args=[
            "--docker-host",
            host,
            "--default-image",
            testImage(),
            "--backend-option",
            "network=none",
            *args,
        ],
    ).start()


class DockerE2ETests(SynchronousTestCase):
    """The daemon on the docker backend, from the outside."""

    def setUp(self) -> None:
        self.host = requireEngine()

    def test_contractSession(self) -> None:
        """run, conflict, list, logs, events, stop (-15), rm: the contract's session."""
        daemon = dockerDaemon(self, self.host)
        client = daemon.connect()
        name = uniqueName("e2e")
        self.addCleanup(lambda: client.request(f"rm --force {name}"))
        self.assertEqual(client.ok("ping"), "pong")
        self.assertEqual(client.ok("version")["backend"], "docker")
        self.assertEqual(client.ok("events")["events"], True)
        image = testImage()
        web = client.ok(f"run -e A=1 -l team=x {name} {image} sh -c 'echo hi; exec sleep 1000'")
        self.assertEqual((web["state"], web["image"], web["backend"]), ("running", image, "docker"))
        self.assertEqual(client.err(f"run {name}"), "conflict")
        listed = client.ok(f"list --filter name={name}")
        self.assertEqual([c["name"] for c in listed], [name])
        self.assertEqual(listed[0]["labels"], {"team": "x"})
        waitFor(lambda: client.ok(f"logs {name}"), "the first log line")
        self.assertEqual([x["line"] for x in client.ok(f"logs {name}")], ["hi"])
        stopped = client.ok(f"stop --time=5 {name}")
        self.assertEqual((stopped["state"], stopped["exit_code"]), ("exited", -15))
        self.assertEqual(client.ok(f"rm {name}"), {"name": name, "removed": True})
        self.assertEqual(client.err(f"inspect {name}"), "not_found")
        waitFor(
            lambda: (
                [e["action"] for e in client.events if e.get("name") == name][-1:] == ["destroy"]
                or client.ok("ping") is None
            ),
            "the destroy event",
        )
        actions = [e["action"] for e in client.events if e.get("name") == name]
        self.assertEqual(actions, ["create", "start", "die", "stop", "destroy"])
        die = [e for e in client.events if e.get("name") == name and e["action"] == "die"]
        self.assertEqual(die[0]["exit_code"], -15)

    def test_cliClient(self) -> None:
        """The real pycm client runs, lists and removes through the docker backend."""
        daemon = dockerDaemon(self, self.host)
        name = uniqueName("cli")
        self.addCleanup(lambda: daemon.pycm("rm", "--force", name))
        result = daemon.pycm("--json", "run", name, testImage(), "sleep", "1000")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(json.loads(result.stdout)["state"], "running")
        result = daemon.pycm("list")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn(name.encode(), result.stdout)
        result = daemon.pycm("rm", "--force", name)
        self.assertEqual(result.returncode, 0, result.stderr)
        result = daemon.pycm("inspect", name)
        self.assertEqual(result.returncode, 1)

    def test_engineUnreachable(self) -> None:
        """With no engine at the address the daemon starts, serves, and says unavailable."""
        missing = f"unix://{self.mktemp()}.sock"
        daemon = dockerDaemon(self, missing, "--backend-option", "request-timeout=2")
        client = daemon.connect()
        self.assertEqual(client.ok("ping"), "pong")
        self.assertEqual(client.err("list"), "unavailable")
        self.assertEqual(client.err(f"run {uniqueName()} sleep 1"), "unavailable")
        self.assertEqual(client.ok("ping"), "pong")
        result = daemon.pycm("list")
        self.assertEqual(result.returncode, 1)
        self.assertIn(b"unavailable", result.stderr + result.stdout)
        self.assertIsNone(daemon.process.poll() if daemon.process else None)


__all__ = ["dockerDaemon", "os", "subprocess"]
