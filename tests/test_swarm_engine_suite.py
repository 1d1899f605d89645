"""
The swarm engine suite (L{pycm.testing.swarmsuite}) on the fake swarm
manager (on every machine, on a clock) and on the real two-node swarm
through L{EngineClient}; and what the fake does beyond the suite.

The real swarm's run needs C{PYCM_SWARM_HOST} and the rest of what
C{.ci/swarm-setup.sh} exports (L{tests.swarmsupport}); it skips without
it, and fails without it under C{PYCM_REQUIRE_SWARM=1}.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from pycm.backends.docker.engine import EngineError
from pycm.backends.docker.interfaces import IDockerEngine
from pycm.backends.docker.stream import JSONLines
from pycm.errors import Unavailable
from pycm.testing import ClockPerTest, advanceClock, settleClock
from pycm.testing.suitecase import ReactorTiming
from pycm.testing.swarmengine import FakeSwarmEngine
from pycm.testing.swarmsuite import SwarmEngineTests
from tests.swarmsupport import engineFor, requireSwarm


class FakeSwarmFixture(ClockPerTest):
    """The suite's fixture of L{FakeSwarmEngine}, on a L{Clock}."""

    image = "busybox:latest"
    managerNode = "manager"
    workerNode = "worker"
    longCommand = ("sleep", "infinity")

    def exitCommand(self, code: int) -> tuple[str, ...]:
        return ("exit", str(code))

    def echoCommand(self, text: str) -> tuple[str, ...]:
        return ("echo", text)

    def makeEngine(self, testCase: TestCase) -> Deferred[IDockerEngine]:
        clock = self.newClock(testCase, now=1_700_000_000)
        engine = self.engines[testCase] = FakeSwarmEngine(clock)
        testCase.addCleanup(self.engines.pop, testCase, None)
        testCase.addCleanup(lambda: self.settle(testCase, engine.close(), 10))
        return defer.succeed(engine)

    def nodeEngine(self, testCase: TestCase, hostname: str) -> IDockerEngine:
        return self.engines[testCase].nodeEngine(hostname)

    def __init__(self) -> None:
        super().__init__()
        self.engines: dict[TestCase, FakeSwarmEngine] = {}


class RealSwarmFixture(ReactorTiming):
    """The suite's fixture of L{EngineClient} on the test swarm's manager (busybox)."""

    longCommand = ("sleep", "1000")

    @property
    def image(self) -> str:
        return requireSwarm().image

    @property
    def managerNode(self) -> str:
        return requireSwarm().managerNode

    @property
    def workerNode(self) -> str:
        return requireSwarm().workerNode

    def exitCommand(self, code: int) -> tuple[str, ...]:
        return ("sh", "-c", f"exit {code}")

    def echoCommand(self, text: str) -> tuple[str, ...]:
        return ("printf", "%s\\n", text)

    def makeEngine(self, testCase: TestCase) -> Deferred[IDockerEngine]:
        engine = engineFor(reactor, requireSwarm().host)
        testCase.addCleanup(engine.close)
        return defer.succeed(engine)

    def nodeEngine(self, testCase: TestCase, hostname: str) -> IDockerEngine:
        cluster = requireSwarm()
        engine = engineFor(
            reactor, cluster.workerHost if hostname == cluster.workerNode else cluster.host
        )
        testCase.addCleanup(engine.close)
        return engine


class FakeSwarmEngineSuiteTests(SwarmEngineTests, TestCase):
    """L{FakeSwarmEngine} passes the swarm engine suite."""

    fixture = FakeSwarmFixture()


class RealSwarmEngineSuiteTests(SwarmEngineTests, TestCase):
    """The real swarm, through L{EngineClient}, passes the swarm engine suite."""

    fixture = RealSwarmFixture(reactor)
    timeout = 120


class FakeSwarmEngineTests(SynchronousTestCase):
    """What L{FakeSwarmEngine} does beyond the suite: its test controls."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.engine = FakeSwarmEngine(self.clock)

    def call(self, method: str, path: str, params: Any = None, body: Any = None) -> Any:
        return self.successResultOf(
            settleClock(self.clock, self.engine.request(method, path, params, body))
        )

    def failing(self, method: str, path: str, params: Any = None, body: Any = None) -> Any:
        return self.failureResultOf(
            settleClock(self.clock, self.engine.request(method, path, params, body))
        ).value

    def service(self, name: str, *command: str, replicas: int = 1, **template: Any) -> str:
        body = {
            "Name": name,
            "TaskTemplate": {"ContainerSpec": {"Image": "busybox", "Command": list(command)}},
            "Mode": {"Replicated": {"Replicas": replicas}},
        }
        body["TaskTemplate"].update(template)
        return str(self.call("POST", "/services/create", body=body)[1]["ID"])

    def states(self, name: str) -> list[tuple[int, str, str, str]]:
        """(slot, node hostname, state, desired state) of each task of C{name}."""
        hostnames = {n.id: n.hostname for n in self.engine.cluster.nodes}
        return [
            (t.slot, hostnames.get(t.nodeId, ""), t.state, t.desiredState)
            for t in self.engine.tasksOf(name)
        ]

    def test_answersLater(self) -> None:
        """Answers come on a later turn of the clock, as over a socket."""
        d = self.engine.request("GET", "/services")
        self.assertNoResult(d)
        self.clock.advance(0)
        self.assertEqual(self.successResultOf(d), (200, []))

    def test_taskStates(self) -> None:
        """A task moves from C{new} through C{pending} ... to C{running}, a step at a time."""
        self.service("web", "sleep", "infinity")
        seen = []
        for _ in range(20):
            seen.append(self.engine.tasksOf("web")[0].state)
            advanceClock(self.clock, 0.05)
        states = [s for i, s in enumerate(seen) if i == 0 or seen[i - 1] != s]
        self.assertEqual(
            states,
            ["new", "pending", "assigned", "accepted", "preparing", "ready", "starting", "running"],
        )

    def test_notManager(self) -> None:
        """A worker says so in C{/info}; its swarm calls are 503, as dockerd's."""
        for mode, control, state, words in (
            ("worker", False, "active", "Worker nodes can't be used"),
            ("inactive", False, "inactive", '"docker swarm init"'),
        ):
            self.engine = FakeSwarmEngine(self.clock, mode=mode)
            swarm = self.call("GET", "/info")[1]["Swarm"]
            self.assertEqual((swarm["ControlAvailable"], swarm["LocalNodeState"]), (control, state))
            for path in ("/services", "/nodes", "/tasks"):
                error = self.failing("GET", path)
                self.assertEqual(error.status, 503)
                self.assertIn(words, error.message)

    def test_killNode(self) -> None:
        """
        A killed worker's engine is unreachable at once; after the
        heartbeat the manager sees it down (a node event) and runs its
        tasks on the manager (after the restart delay); restored, it is
        ready and its old task fails, its container killed.
        """
        self.service("web", "sleep", "infinity", replicas=2)
        advanceClock(self.clock, 1)
        self.assertEqual(
            self.states("web"),
            [(1, "manager", "running", "running"), (2, "worker", "running", "running")],
        )
        self.engine.killNode("worker")
        self.assertIsInstance(
            self.failureResultOf(self.engine.nodeEngine("worker").request("GET", "/info")).value,
            Unavailable,
        )
        advanceClock(self.clock, 4)
        self.assertEqual(self.states("web")[1], (2, "worker", "running", "running"))
        advanceClock(self.clock, 9)
        self.assertEqual(
            self.states("web"),
            [
                (1, "manager", "running", "running"),
                (2, "worker", "running", "shutdown"),
                (2, "manager", "running", "running"),
            ],
        )
        node = [e for e in self.engine.events if e["Type"] == "node"][-1]
        self.assertEqual(
            node["Actor"]["Attributes"],
            {"name": "worker", "state.old": "ready", "state.new": "down"},
        )
        self.engine.restoreNode("worker")
        advanceClock(self.clock, 1)
        task = self.engine.tasksOf("web")[1]
        self.assertEqual(
            (task.state, task.desiredState, task.err, task.exitCode),
            ("failed", "shutdown", "task: non-zero exit (137)", 137),
        )
        nodes = self.call("GET", "/nodes")[1]
        self.assertEqual([n["Status"]["State"] for n in nodes], ["ready", "ready"])

    def test_pendingPlacedOnNewNode(self) -> None:
        """A task no node could take runs once a suitable node joins."""
        self.service(
            "zoned", "sleep", "infinity", Placement={"Constraints": ["node.labels.zone==a"]}
        )
        advanceClock(self.clock, 1)
        task = self.engine.tasksOf("zoned")[0]
        self.assertEqual(
            task.err, "no suitable node (scheduling constraints not satisfied on 2 nodes)"
        )
        self.engine.addNode("zone-a", labels={"zone": "a"})
        advanceClock(self.clock, 1)
        self.assertEqual(self.states("zoned"), [(1, "zone-a", "running", "running")])
        self.assertEqual(task.err, "")

    def test_unreachable(self) -> None:
        """
        An unreachable manager fails calls with L{Unavailable} and ends
        its event streams; back, it answers, and an event stream with
        C{since} replays what happened meanwhile.
        """
        events: list[Any] = []
        stream = self.successResultOf(
            settleClock(
                self.clock, self.engine.stream("GET", "/events", {}, JSONLines(events.append).feed)
            )
        )
        self.engine.setReachable(False)
        self.successResultOf(stream.ended)
        self.assertIsInstance(
            self.failureResultOf(self.engine.request("GET", "/services")).value, Unavailable
        )
        self.engine.setReachable(True)
        self.service("later", "sleep", "infinity")
        self.assertEqual(events, [])
        self.successResultOf(
            settleClock(
                self.clock,
                self.engine.stream(
                    "GET", "/events", {"since": "1700000000"}, JSONLines(events.append).feed
                ),
            )
        )
        self.assertEqual(
            [(e["Type"], e["Action"]) for e in events],
            [("node", "create"), ("node", "create"), ("service", "create")],
        )

    def test_restartForgetsEvents(self) -> None:
        """Back as a restarted dockerd, the manager replays no event from before."""
        self.service("before", "exit", "0")
        advanceClock(self.clock, 1)
        self.engine.setReachable(False)
        self.engine.setReachable(True, forgetEvents=True)
        events: list[Any] = []
        self.successResultOf(
            settleClock(
                self.clock,
                self.engine.stream(
                    "GET", "/events", {"since": "1700000000"}, JSONLines(events.append).feed
                ),
            )
        )
        self.assertEqual(events, [])
        self.assertEqual([s["Spec"]["Name"] for s in self.call("GET", "/services")[1]], ["before"])

    def test_signalOnWorker(self) -> None:
        """
        A task's container on the worker is signalled through that node's
        engine (not the manager's); the task fails with 128+N.
        """
        self.service(
            "web",
            "sleep",
            "infinity",
            Placement={"Constraints": ["node.role==worker"]},
            RestartPolicy={"Condition": "none"},
        )
        advanceClock(self.clock, 1)
        task = self.engine.tasksOf("web")[0]
        self.assertIsInstance(
            self.failing("POST", f"/containers/{task.containerId}/kill", {"signal": "TERM"}),
            EngineError,
        )
        worker = self.engine.nodeEngine("worker")
        d = worker.request("POST", f"/containers/{task.containerId}/kill", {"signal": "TERM"})
        self.assertEqual(self.successResultOf(settleClock(self.clock, d)), (204, None))
        advanceClock(self.clock, 1)
        self.assertEqual(
            (task.state, task.exitCode, task.err), ("failed", 143, "task: non-zero exit (143)")
        )

    def test_followLogs(self) -> None:
        """
        A log follow gives the backlog, then new tasks' lines as they come;
        it goes on after the service is removed (as the real one's does).
        """
        self.service(
            "chat", "echo", "hi", RestartPolicy={"Condition": "any", "Delay": 1_000_000_000}
        )
        advanceClock(self.clock, 0.5)
        received: list[bytes] = []
        params = {"follow": True, "stdout": True, "details": True}
        stream = self.successResultOf(
            settleClock(
                self.clock,
                self.engine.stream("GET", "/services/chat/logs", params, received.append),
            )
        )
        self.assertEqual(len(received), 1)
        advanceClock(self.clock, 1.5)
        self.assertEqual(len(received), 2)
        tasks = self.engine.tasksOf("chat")
        self.assertIn(f"task.id={tasks[1].id} hi\n".encode(), received[1])
        self.call("DELETE", "/services/chat")
        advanceClock(self.clock, 20)
        self.assertNoResult(stream.ended)
        stream.cancel()
        self.assertIsNone(self.successResultOf(stream.ended))

    def test_rollingUpdate(self) -> None:
        """
        A new template replaces the tasks one slot at a time (stop-first);
        the update is C{completed} the monitor period after the last.
        """
        sid = self.service("web", "sleep", "infinity", replicas=2)
        advanceClock(self.clock, 1)
        spec = self.call("GET", f"/services/{sid}")[1]
        body = dict(spec["Spec"])
        body["TaskTemplate"]["ContainerSpec"]["Env"] = ["A=1"]
        self.call("POST", f"/services/{sid}/update", {"version": spec["Version"]["Index"]}, body)
        advanceClock(self.clock, 0.2)
        running = [s[0] for s in self.states("web") if s[2:] == ("running", "running")]
        self.assertEqual(running, [2])
        advanceClock(self.clock, 2)
        self.assertEqual(
            self.call("GET", f"/services/{sid}")[1]["UpdateStatus"]["State"], "updating"
        )
        advanceClock(self.clock, 5)
        status = self.call("GET", f"/services/{sid}")[1]["UpdateStatus"]
        self.assertEqual((status["State"], status["Message"]), ("completed", "update completed"))
        live = [t for t in self.engine.tasksOf("web") if t.desiredState == "running"]
        self.assertEqual([t.spec["ContainerSpec"]["Env"] for t in live], [["A=1"], ["A=1"]])

    def test_idleClock(self) -> None:
        """
        Once its tasks run, or wait for a node that may never come (in an
        update too), the fake schedules nothing: a settled clock stops.
        """
        self.service("web", "sleep", "infinity", replicas=2)
        self.service(
            "zoned", "sleep", "infinity", Placement={"Constraints": ["node.labels.zone==a"]}
        )
        advanceClock(self.clock, 1)
        self.assertEqual([c for c in self.clock.getDelayedCalls() if c.active()], [])
        spec = self.call("GET", "/services/zoned")[1]
        spec["Spec"]["TaskTemplate"]["ForceUpdate"] = 1
        self.call(
            "POST", "/services/zoned/update", {"version": spec["Version"]["Index"]}, spec["Spec"]
        )
        advanceClock(self.clock, 30)
        self.assertEqual([c for c in self.clock.getDelayedCalls() if c.active()], [])
        self.assertEqual(
            self.call("GET", "/services/zoned")[1]["UpdateStatus"]["State"], "updating"
        )
