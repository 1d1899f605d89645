"""
Health checks and C{--user} on the Docker backend against a real engine
(dockerd: the engine runs the checks).  Needs C{PYCM_DOCKER_HOST} (see
L{tests.test_docker_support}); skips without it, fails without it under
C{PYCM_REQUIRE_DOCKER=1}.  Not in CI's Podman run: Podman without systemd
runs no health checks (docs/docker-backend.md).
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer

from pycm.errors import BackendError
from pycm.health import HealthCheck
from pycm.model import Action, WaitCondition
from tests.test_docker_engine import EngineTestCase, eventually


class RealEngineHealthTests(EngineTestCase):
    """The engine's health checks, through the backend."""

    @defer.inlineCallbacks
    def execute(self, name: str, *command: str) -> Any:
        """Run C{command} in C{name} as root, to its end."""
        engine = self.backend.engine
        _, created = yield engine.request(
            "POST", f"/containers/{name}/exec", body={"Cmd": list(command), "User": "0"}
        )
        execId = created["Id"]
        yield engine.request("POST", f"/exec/{execId}/start", body={"Detach": True})

        @defer.inlineCallbacks
        def ended() -> Any:
            _, data = yield engine.request("GET", f"/exec/{execId}/json")
            return not data["Running"] and data["ExitCode"] is not None

        yield eventually(ended)

    @defer.inlineCallbacks
    def test_healthAndUser(self) -> Any:
        """
        The command runs as C{--user}; C{wait --for=healthy} fires once
        the check passes and C{--for=unhealthy} once it failed C{retries}
        times; one C{health_status} event each; inspect shows the check,
        the user and the health with its log; once the container exited,
        C{--for=healthy} fails saying so.
        """
        name = self.name()
        check = HealthCheck("test -e /tmp/ok", interval=1.0, timeout=10.0, retries=2)
        started = yield self.run_(
            name, "sh", "-c", "id -u; exec sleep 1000", user="1000:1000", healthcheck=check
        )
        self.assertEqual(started.health.status, "starting")
        healthy = self.backend.wait(name, WaitCondition.HEALTHY)
        yield self.execute(name, "touch", "/tmp/ok")
        container = yield healthy
        self.assertEqual(container.health.status, "healthy")
        self.assertEqual(container.health.log[-1].exitCode, 0)
        unhealthy = self.backend.wait(name, WaitCondition.UNHEALTHY)
        yield self.execute(name, "rm", "/tmp/ok")
        container = yield unhealthy
        self.assertGreaterEqual(container.health.failingStreak, 2)
        inspected = yield self.backend.inspect(name)
        self.assertEqual((inspected.user, inspected.healthcheck), ("1000:1000", check))
        lines = yield self.backend.logs(name, None)
        self.assertEqual([line.line for line in lines], ["1000"])
        (listed,) = [c for c in (yield self.backend.list()) if c.name == name]
        self.assertEqual(listed.summary()["health"]["status"], "unhealthy")
        told = [e.status for e in self.events if e.name == name and e.action == "health_status"]
        self.assertEqual(told, ["healthy", "unhealthy"])
        yield self.backend.stop(name, 5)
        yield eventually(lambda: Action.STOP in self.actions(name))
        try:
            yield self.backend.wait(name, WaitCondition.HEALTHY)
        except BackendError as e:
            self.assertIn("exited", str(e))
        else:
            self.fail("wait --for=healthy of an exited container did not fail")
