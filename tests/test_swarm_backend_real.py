"""
The swarm backend's operations on the real two-node swarm at
C{PYCM_SWARM_HOST} where the real manager does what the conformance suite
cannot show (L{requireSwarm}: skipped without it, a failure without it
under C{PYCM_REQUIRE_SWARM=1}).
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.trial.unittest import TestCase

from pycm.backends.swarm.backend import SwarmBackend, makeBackend
from pycm.model import ContainerSpec, State
from tests.swarmsupport import SwarmCluster, realManager, removeServices, uniqueServiceName

#: A command that ignores SIGTERM: its task stops only at its grace period's end.
IGNORE_TERM = ("sh", "-c", "trap '' TERM; sleep 1000")


class RealBackendTests(TestCase):
    """The backend on the real swarm, a service of its own per test."""

    timeout = 180

    def setUp(self) -> None:
        self.cluster, self.reactor, self.engine = realManager(self)

    @defer.inlineCallbacks
    def backend(self, *names: str) -> Any:
        """An opened backend on the real manager; C{names} removed after the test."""
        cluster: SwarmCluster = self.cluster
        backend = makeBackend(
            self.reactor,
            None,
            {
                "docker-host": cluster.host,
                "default-image": cluster.image,
                "swarm-node-host": f"{cluster.workerNode}={cluster.workerHost}",
            },
        )
        self.addCleanup(removeServices, self.engine, list(names))
        yield backend.open()
        self.addCleanup(backend.close)
        return backend

    @defer.inlineCallbacks
    def scaleBehindOurBack(self, name: str, replicas: int) -> Any:
        """Another client scales C{name}, as C{docker service scale -d NAME=N}."""
        _, service = yield self.engine.request("GET", f"/services/{name}")
        spec = service["Spec"]
        spec["Mode"] = {"Replicated": {"Replicas": replicas}}
        yield self.engine.request(
            "POST",
            f"/services/{service['ID']}/update",
            {"version": service["Version"]["Index"]},
            spec,
        )

    @defer.inlineCallbacks
    def test_scaleUpWhileScaledDownTasksStop(self) -> Any:
        """
        Scaled from 3 to 1 by another client, then at once to 2 by pycm
        while the 2 tasks taken away still stop (they ignore SIGTERM for a
        5 s grace period; restart condition none): the real manager starts
        no task until it is asked again once they are gone, which the
        backend does; it answers with 2 running well within 30 s.
        """
        name = uniqueServiceName("stall")
        backend: SwarmBackend = yield self.backend(name)
        backend.opTimeout = 30.0
        spec = ContainerSpec(name, command=IGNORE_TERM, replicas=3, stopTimeout=5.0)
        yield backend.create(spec)
        yield backend.start(name)
        yield self.scaleBehindOurBack(name, 1)
        scaled = yield backend.scale(name, 2)
        self.assertEqual(scaled.state, State.RUNNING)
        self.assertEqual(scaled.replicas.toJSON(), {"running": 2, "desired": 2})
