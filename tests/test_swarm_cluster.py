"""
The two-node swarm the swarm tests run against (C{.ci/swarm-setup.sh}) is
what they expect: a manager and a worker, both Ready, the test image on
both, a replicated service spread over both; and the worker can be killed
and brought back (L{tests.swarmsupport.workerOutage}).  In CI these tests
prove the set-up.

The cluster tests need C{PYCM_SWARM_HOST} (see L{tests.swarmsupport}); they
skip without it, and fail without it under C{PYCM_REQUIRE_SWARM=1}.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer, reactor
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase

from pycm.backends.docker.engine import EngineClient
from tests.swarmsupport import (
    SwarmCluster,
    clusterFromEnviron,
    engineFor,
    nodeStates,
    removeServices,
    requireSwarm,
    uniqueServiceName,
    workerOutage,
)
from tests.test_docker_engine import eventually

ENVIRON = {
    "PYCM_SWARM_HOST": "unix:///s/manager/docker.sock",
    "PYCM_SWARM_WORKER_HOST": "unix:///s/worker/docker.sock",
    "PYCM_SWARM_MANAGER_NODE": "pycm-abc-manager",
    "PYCM_SWARM_WORKER_NODE": "pycm-abc-worker",
    "PYCM_SWARM_WORKER_PIDFILE": "/s/worker/dockerd.pid",
    "PYCM_SWARM_WORKER_RESTART": "bash /ci/swarm-setup.sh start-worker /s",
    "PYCM_TEST_IMAGE": "pycm-test/busybox:latest",
}


def reachable(host: str) -> None:
    """A pinger for which every engine answers."""
    return None


class RequireSwarmTests(SynchronousTestCase):
    """Swarm tests skip without a cluster, and fail instead when one is required."""

    def test_present(self) -> None:
        """With every variable set and both engines answering, the cluster is returned."""
        cluster = requireSwarm(ENVIRON, reachable)
        self.assertEqual(
            cluster,
            SwarmCluster(
                host="unix:///s/manager/docker.sock",
                workerHost="unix:///s/worker/docker.sock",
                managerNode="pycm-abc-manager",
                workerNode="pycm-abc-worker",
                workerPidfile="/s/worker/dockerd.pid",
                workerRestart="bash /ci/swarm-setup.sh start-worker /s",
                image="pycm-test/busybox:latest",
            ),
        )

    def test_skipsWithoutHost(self) -> None:
        """Without PYCM_SWARM_HOST the tests skip, saying how to start a cluster."""
        error = self.assertRaises(SkipTest, requireSwarm, {}, reachable)
        self.assertIn("swarm-setup.sh", str(error))

    def test_failsWithoutHostWhenRequired(self) -> None:
        """Under PYCM_REQUIRE_SWARM=1 a missing cluster is a failure, not a skip."""
        error = self.assertRaises(
            AssertionError, requireSwarm, {"PYCM_REQUIRE_SWARM": "1"}, reachable
        )
        self.assertIn("PYCM_REQUIRE_SWARM=1", str(error))

    def test_incomplete(self) -> None:
        """A host without the variables beside it names what is missing."""
        environ = dict(ENVIRON)
        del environ["PYCM_SWARM_WORKER_PIDFILE"]
        error = self.assertRaises(SkipTest, requireSwarm, environ, reachable)
        self.assertIn("PYCM_SWARM_WORKER_PIDFILE", str(error))
        environ["PYCM_REQUIRE_SWARM"] = "1"
        error = self.assertRaises(AssertionError, requireSwarm, environ, reachable)
        self.assertIn("PYCM_SWARM_WORKER_PIDFILE", str(error))

    def test_unreachable(self) -> None:
        """An engine that does not answer (manager or worker) skips, or fails when required."""
        for silent in (ENVIRON["PYCM_SWARM_HOST"], ENVIRON["PYCM_SWARM_WORKER_HOST"]):

            def pinger(host: str, silent: str = silent) -> str | None:
                return f"cannot reach {host}" if host == silent else None

            error = self.assertRaises(SkipTest, requireSwarm, ENVIRON, pinger)
            self.assertIn(silent, str(error))
            required = dict(ENVIRON, PYCM_REQUIRE_SWARM="1")
            error = self.assertRaises(AssertionError, requireSwarm, required, pinger)
            self.assertIn(silent, str(error))

    def test_defaultImage(self) -> None:
        """Without PYCM_TEST_IMAGE the image is the set-up's busybox."""
        environ = dict(ENVIRON)
        del environ["PYCM_TEST_IMAGE"]
        cluster = clusterFromEnviron(environ)
        assert cluster is not None
        self.assertEqual(cluster.image, "pycm-test/busybox:latest")


def serviceSpec(name: str, image: str, replicas: int) -> dict[str, Any]:
    """
    A replicated service running C{sleep}: no network (the engines run
    C{--bridge=none}: a task then gets only loopback), stopped within 1 s
    (busybox sleep as PID 1 ignores SIGTERM).
    """
    return {
        "Name": name,
        "Labels": {"pycm.test": "cluster"},
        "TaskTemplate": {
            "ContainerSpec": {
                "Image": image,
                "Args": ["sleep", "3600"],
                "StopGracePeriod": 1_000_000_000,
            },
            "RestartPolicy": {"Condition": "any", "Delay": 500_000_000},
        },
        "Mode": {"Replicated": {"Replicas": replicas}},
    }


class ClusterTestCase(TestCase):
    """The cluster, a client on the manager's API, and services removed after."""

    timeout = 180

    def setUp(self) -> None:
        self.cluster = requireSwarm()
        self.manager = self.engine(self.cluster.host)
        self.services: list[str] = []
        self.addCleanup(lambda: removeServices(self.manager, self.services))

    def engine(self, host: str) -> EngineClient:
        """A client on C{host}, closed after the test."""
        client = engineFor(reactor, host)
        self.addCleanup(client.close)
        return client

    @defer.inlineCallbacks
    def createService(self, replicas: int) -> Any:
        """Create a sleeping service of C{replicas} tasks; fire with its name."""
        name = uniqueServiceName("cluster")
        self.services.append(name)
        yield self.manager.request(
            "POST", "/services/create", body=serviceSpec(name, self.cluster.image, replicas)
        )
        return name

    @defer.inlineCallbacks
    def runningNodes(self, name: str) -> Any:
        """The hostnames of the nodes running C{name}'s tasks, one entry a task."""
        _, nodes = yield self.manager.request("GET", "/nodes")
        hostnames = {node["ID"]: node["Description"]["Hostname"] for node in nodes}
        _, tasks = yield self.manager.request(
            "GET", "/tasks", {"filters": {"service": [name], "desired-state": ["running"]}}
        )
        return sorted(
            hostnames.get(t.get("NodeID", ""), "?")
            for t in tasks
            if t["Status"]["State"] == "running"
        )


class SwarmClusterTests(ClusterTestCase):
    """The cluster is two Ready nodes, a manager and a worker, that both run tasks."""

    @defer.inlineCallbacks
    def test_twoNodesReady(self) -> Any:
        """The manager lists exactly its own node (leader) and the worker's, both Ready."""
        states = yield nodeStates(self.manager)
        self.assertEqual(
            states,
            {
                self.cluster.managerNode: ("manager", "ready"),
                self.cluster.workerNode: ("worker", "ready"),
            },
        )
        _, info = yield self.manager.request("GET", "/info")
        self.assertEqual(info["Swarm"]["LocalNodeState"], "active")
        self.assertTrue(info["Swarm"]["ControlAvailable"])
        self.assertEqual((info["Swarm"]["Nodes"], info["Swarm"]["Managers"]), (2, 1))

    @defer.inlineCallbacks
    def test_workerEngine(self) -> Any:
        """The worker's own engine is the worker node: in the swarm, not a manager."""
        _, info = yield self.engine(self.cluster.workerHost).request("GET", "/info")
        self.assertEqual(info["Name"], self.cluster.workerNode)
        self.assertEqual(info["Swarm"]["LocalNodeState"], "active")
        self.assertFalse(info["Swarm"]["ControlAvailable"])

    @defer.inlineCallbacks
    def test_imageOnBothNodes(self) -> Any:
        """The test image is there on each node's engine (there is no registry)."""
        for host in (self.cluster.host, self.cluster.workerHost):
            status, image = yield self.engine(host).request(
                "GET", f"/images/{self.cluster.image}/json"
            )
            self.assertEqual(status, 200, host)
            self.assertIn(self.cluster.image, image["RepoTags"])

    @defer.inlineCallbacks
    def test_replicasSpread(self) -> Any:
        """A service of 2 replicas runs one task on each node."""
        name = yield self.createService(2)
        expected = sorted([self.cluster.managerNode, self.cluster.workerNode])
        yield eventually(
            lambda: self.runningNodes(name).addCallback(lambda nodes: nodes == expected),
            timeout=90,
            interval=0.5,
        )


class WorkerOutageTests(ClusterTestCase):
    """
    L{workerOutage} kills the worker's dockerd, and brings it back.  It
    takes the worker down for ~20 s: other tests on the same cluster see it.
    """

    timeout = 300

    @defer.inlineCallbacks
    def test_outage(self) -> Any:
        """
        While the worker is Down its task is rescheduled onto the manager;
        afterwards the node is Ready and its engine answers again.
        """
        name = yield self.createService(2)
        both = sorted([self.cluster.managerNode, self.cluster.workerNode])
        yield eventually(
            lambda: self.runningNodes(name).addCallback(lambda nodes: nodes == both),
            timeout=90,
            interval=0.5,
        )
        onManager = [self.cluster.managerNode] * 2

        def rescheduled() -> Any:
            return eventually(
                lambda: self.runningNodes(name).addCallback(lambda nodes: nodes == onManager),
                timeout=90,
                interval=0.5,
            )

        yield workerOutage(reactor, self.cluster, self.manager, rescheduled)
        states = yield nodeStates(self.manager)
        self.assertEqual(states[self.cluster.workerNode], ("worker", "ready"))
        _, info = yield self.engine(self.cluster.workerHost).request("GET", "/info")
        self.assertEqual(info["Swarm"]["LocalNodeState"], "active")
