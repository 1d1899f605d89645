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
import signal
import subprocess
import tempfile
import time
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from tests.e2e import RealDaemon, waitFor
from tests.test_docker_faults import SCRIPT, requirePrivateEngine
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


class DockerE2EFaultTests(SynchronousTestCase):
    """The daemon on the docker backend through an engine crash, from the outside."""

    def setUp(self) -> None:
        requireEngine()
        requirePrivateEngine()
        self.dir = tempfile.mkdtemp(prefix="pycm-e.", dir="/tmp")
        self.host = f"unix://{self.dir}/docker.sock"
        self.addCleanup(self.teardownEngine)

    def script(self, commands: str) -> subprocess.Popen[bytes]:
        """Run C{.ci/docker-setup.sh} functions in the background."""
        return subprocess.Popen(
            ["/bin/bash", "-c", f"source {SCRIPT} && {commands}"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def teardownEngine(self) -> None:
        """
        Stop the private engine and wait for that (bounded): a teardown
        still running would overlap the next test's use of the shared one.
        """
        stopping = self.script(f"pycm_docker_teardown {self.dir}")
        try:
            stopping.wait(timeout=120)
        except subprocess.TimeoutExpired:
            stopping.kill()
            stopping.wait()
            self.fail(f"tearing down the private engine in {self.dir} took over 120 s")

    def startEngine(self, pinger: Any = None, image: bool = False) -> None:
        """Start the private engine; meanwhile C{pinger} must get its pongs."""
        commands = f"pycm_docker_start_engine {self.dir}"
        if image:
            commands += f" && pycm_docker_build_image {self.dir} {self.host} {testImage()}"
        starting = self.script(commands)
        deadline = time.monotonic() + 60
        while starting.poll() is None:
            if pinger is not None:
                self.assertPong(pinger)
            else:
                time.sleep(0.05)
            self.assertLess(time.monotonic(), deadline, "the engine did not start")
        self.assertEqual(starting.returncode, 0)

    def assertPong(self, client: Any) -> None:
        """C{ping} answers at once (well within a second)."""
        started = time.monotonic()
        self.assertEqual(client.ok("ping"), "pong")
        self.assertLess(time.monotonic() - started, 1.0)

    def test_engineKilledAndRestarted(self) -> None:
        """
        The engine is killed (SIGKILL) under a running container and started
        again: ping answers on another connection throughout, calls say
        unavailable meanwhile, then list is right again and an events
        subscriber gets the container's die.
        """
        self.startEngine(image=True)
        daemon = dockerDaemon(self, self.host, "--backend-option", "request-timeout=3")
        subscriber = daemon.connect()
        pinger = daemon.connect()
        client = daemon.connect()
        self.assertEqual(subscriber.ok("events")["events"], True)
        name = uniqueName("crash")

        def actions() -> list[str]:
            subscriber.ok("ping")  # reads the EVENT lines that came before
            return [e["action"] for e in subscriber.events if e.get("name") == name]

        # The daemon's event stream may need a moment to connect to a new engine.
        waitFor(lambda: client.request("list")[0] == "OK", "the engine to be reachable")
        self.assertEqual(client.ok(f"run {name} {testImage()} sleep 1000")["state"], "running")
        waitFor(lambda: actions() == ["create", "start"], "create and start events")
        with open(os.path.join(self.dir, "dockerd.pid")) as f:
            os.kill(int(f.read().strip()), signal.SIGKILL)
        self.assertPong(pinger)
        waitFor(
            lambda: (
                (self.assertPong(pinger), client.request("list"))[1] == ("ERR", ANY_UNAVAILABLE)
            ),
            "list to say unavailable",
        )
        self.startEngine(pinger)

        def listed() -> Any:
            self.assertPong(pinger)
            kind, value = client.request(f"list --filter name={name}")
            return value if kind == "OK" and value and value[0]["state"] == "exited" else None

        containers = waitFor(listed, "list to show the container exited")
        self.assertEqual([c["name"] for c in containers], [name])
        waitFor(lambda: "die" in actions(), "the die event")
        # The engine's restore stops what ran (stop signal, then SIGKILL):
        # a kill event comes first.
        seen = actions()
        self.assertEqual((seen[:2], seen.count("die")), (["create", "start"], 1))
        die = [e for e in subscriber.events if e.get("name") == name and e["action"] == "die"]
        self.assertIn(die[0]["exit_code"], (-15, -9))
        self.assertPong(pinger)
        self.assertEqual(client.ok(f"rm {name}"), {"name": name, "removed": True})


class _Unavailable:
    """Equal to any C{ERR unavailable} reply value."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, tuple) and other[:1] == ("unavailable",)


ANY_UNAVAILABLE = _Unavailable()


__all__ = ["dockerDaemon", "os", "subprocess"]
