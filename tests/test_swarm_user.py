"""
C{--user} on the swarm backend: the task template's C{ContainerSpec}
carries it to every task's container, and C{inspect} shows it; health
checks stay refused (a service's health would be its tasks', not one).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from pycm.backends.swarm.backend import CAPABILITIES
from pycm.backends.swarm.translate import serviceBody
from pycm.errors import BadRequest
from pycm.health import HealthCheck
from pycm.model import ContainerSpec
from pycm.testing import settleClock
from pycm.testing.swarmengine import FakeSwarmEngine
from tests.test_swarm_conformance import EPOCH, fakeSwarmBackend


class SwarmUserTests(SynchronousTestCase):
    """The swarm backend honours C{--user} and refuses the health options."""

    def test_capabilities(self) -> None:
        """C{user} is honoured; every health option refused, naming it."""
        self.assertIn("user", CAPABILITIES.options)
        self.assertFalse({"health-cmd", "no-healthcheck"} & CAPABILITIES.options)
        spec = ContainerSpec(name="a", healthcheck=HealthCheck("true"))
        with self.assertRaisesRegex(BadRequest, "--health-cmd"):
            CAPABILITIES.refuseUnsupported("swarm", spec)

    def test_body(self) -> None:
        """C{User} is in the C{ContainerSpec} when given, and only then."""
        body = serviceBody(ContainerSpec(name="a", user="1000:50"), "busybox", 1)
        self.assertEqual(body["TaskTemplate"]["ContainerSpec"]["User"], "1000:50")
        body = serviceBody(ContainerSpec(name="a"), "busybox", 1)
        self.assertNotIn("User", body["TaskTemplate"]["ContainerSpec"])

    def test_fakeSwarm(self) -> None:
        """On the fake swarm, the task's container runs as the user, and inspect says so."""
        clock = Clock()
        clock.advance(EPOCH)
        engine = FakeSwarmEngine(clock)
        backend = fakeSwarmBackend(clock, engine)
        self.successResultOf(settleClock(clock, backend.open()))
        self.addCleanup(lambda: settleClock(clock, backend.close(), 120))

        def settle(d: Any) -> Any:
            return self.successResultOf(settleClock(clock, d, 120))

        spec = ContainerSpec(name="web", command=("sleep", "infinity"), user="nobody")
        settle(backend.create(spec))
        started = settle(backend.start("web"))
        self.assertEqual(started.user, "nobody")
        self.assertEqual(settle(backend.inspect("web")).detail()["user"], "nobody")
        users = [
            container.config["User"]
            for node in engine.cluster.nodes
            for container in node.engine.containers.values()
        ]
        self.assertEqual(users, ["nobody"])
