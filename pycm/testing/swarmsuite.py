"""
The swarm engine suite: what the swarm backend relies on a swarm manager
(an L{IDockerEngine} in swarm mode) to do, checked the same way on
L{pycm.testing.swarmengine.FakeSwarmEngine} and on a real two-node swarm
through L{pycm.backends.docker.engine.EngineClient}.

L{SwarmEngineTests} is a mixin: a C{TestCase} that has it sets
C{fixture}, a L{SwarmFixture}.  Every service it makes carries
L{SUITE_LABEL} and a unique name, and is removed at the end; the real
swarm may run other services and tasks beside them.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from twisted.internet.defer import Deferred, inlineCallbacks
from zope.interface.verify import verifyObject

from pycm.backends.docker.interfaces import IDockerEngine
from pycm.testing.swarmsuitebase import SUITE_LABEL, SwarmFixture, SwarmSuiteBase
from pycm.testing.swarmsuitestreams import SwarmStreamTests


class SwarmEngineTests(SwarmStreamTests, SwarmSuiteBase):
    """
    A swarm manager does what the swarm backend asks of it, as dockerd
    20.10 in swarm mode does (its services and tasks here, its events,
    logs and signals in L{SwarmStreamTests}).  Mix it into a C{TestCase}
    with a C{fixture} (a L{SwarmFixture}).
    """

    def test_interface(self) -> None:
        """The engine provides L{IDockerEngine}."""
        self.assertTrue(verifyObject(IDockerEngine, self.engine))

    @inlineCallbacks
    def test_infoAndNodes(self) -> Generator[Deferred[Any], Any, None]:
        """C{/info} says it is an active manager; C{/nodes} lists both nodes."""
        _, info = yield self.call("GET", "/info")
        swarm = info["Swarm"]
        self.assertEqual((swarm["LocalNodeState"], swarm["ControlAvailable"]), ("active", True))
        self.assertEqual(swarm["NodeID"], self.nodeIds[self.fixture.managerNode])
        _, nodes = yield self.call("GET", "/nodes")
        roles = {n["Description"]["Hostname"]: n["Spec"]["Role"] for n in nodes}
        self.assertEqual(roles[self.fixture.managerNode], "manager")
        self.assertEqual(roles[self.fixture.workerNode], "worker")
        for node in nodes:
            self.assertIn(node["Status"]["State"], ("ready", "down", "unknown"))

    @inlineCallbacks
    def test_createInspectList(self) -> Generator[Deferred[Any], Any, None]:
        """
        A created service is inspected by name and listed by its label and
        name prefix, with its spec as given and a version.
        """
        name = yield self.create("created", self.fixture.longCommand, replicas=2)
        _, service = yield self.call("GET", f"/services/{name}")
        spec = service["Spec"]
        self.assertEqual(spec["Name"], name)
        self.assertEqual(spec["Labels"], {SUITE_LABEL: self.runId})
        container = spec["TaskTemplate"]["ContainerSpec"]
        self.assertEqual(container["Image"], self.fixture.image)
        self.assertEqual(container["Command"], list(self.fixture.longCommand))
        self.assertEqual(spec["Mode"], {"Replicated": {"Replicas": 2}})
        self.assertIsInstance(service["Version"]["Index"], int)
        self.assertRegex(service["CreatedAt"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z$")
        _, same = yield self.call("GET", f"/services/{service['ID']}")
        self.assertEqual(same["Spec"], spec)
        mine = {"label": [f"{SUITE_LABEL}={self.runId}"]}
        _, listed = yield self.call("GET", "/services", {"filters": mine, "status": True})
        self.assertEqual([s["ID"] for s in listed], [service["ID"]])
        self.assertEqual(listed[0]["ServiceStatus"]["DesiredTasks"], 2)
        _, listed = yield self.call("GET", "/services", {"filters": {"name": [name[:-3]]}})
        self.assertIn(service["ID"], [s["ID"] for s in listed])
        other = {"label": [f"{SUITE_LABEL}=other-{self.runId}"]}
        _, listed = yield self.call("GET", "/services", {"filters": other})
        self.assertEqual(listed, [])

    @inlineCallbacks
    def test_errors(self) -> Generator[Deferred[Any], Any, None]:
        """
        A name in use is 409; a missing service 404 (its tasks too); a bad
        constraint and a stale version are refused.
        """
        name = yield self.create("conflict", self.fixture.longCommand)
        error = yield self.assertStatus(
            self.engine.request(
                "POST", "/services/create", body=self.body(name, self.fixture.longCommand)
            ),
            409,
        )
        self.assertIn(f"service {name} already exists", error.message)
        missing = f"pycms-{self.runId}-nosuch"
        for d in (
            self.engine.request("GET", f"/services/{missing}"),
            self.engine.request("GET", "/tasks", {"filters": {"service": [missing]}}),
            self.engine.request("DELETE", f"/services/{missing}"),
        ):
            error = yield self.assertStatus(d, 404)
            self.assertEqual(error.message, f"service {missing} not found")
        bad = self.body(missing, self.fixture.longCommand, constraints=("node.role",))
        error = yield self.assertStatus(
            self.engine.request("POST", "/services/create", body=bad), 500
        )
        self.assertIn("constraint expected one operator from ==, !=", error.message)

    @inlineCallbacks
    def test_updateVersion(self) -> Generator[Deferred[Any], Any, None]:
        """An update at the current version is taken; at an old one refused."""
        name = yield self.create("version", self.fixture.longCommand)
        _, service = yield self.call("GET", f"/services/{name}")
        old = service["Version"]["Index"]
        spec = dict(service["Spec"], Labels={SUITE_LABEL: self.runId, "extra": "1"})
        status, _ = yield self.call("POST", f"/services/{name}/update", {"version": old}, body=spec)
        self.assertEqual(status, 200)
        _, service = yield self.call("GET", f"/services/{name}")
        self.assertGreater(service["Version"]["Index"], old)
        self.assertEqual(service["Spec"]["Labels"]["extra"], "1")
        error = yield self.assertStatus(
            self.engine.request("POST", f"/services/{name}/update", {"version": old}, body=spec),
            500,
        )
        self.assertIn("update out of sequence", error.message)
        yield self.assertStatus(
            self.engine.request("POST", f"/services/{name}/update", body=spec), 400
        )

    @inlineCallbacks
    def test_tasksRunSpread(self) -> Generator[Deferred[Any], Any, None]:
        """
        Two replicas both run, one on each node, with their containers;
        a C{label} filter of tasks matches their service's labels.
        """
        name = yield self.create("spread", self.fixture.longCommand, replicas=2)
        tasks = yield self.eventually(lambda: self.whenCount(self.running(name), 2))
        self.assertEqual(sorted(t["Slot"] for t in tasks), [1, 2])
        self.assertEqual({t["NodeID"] for t in tasks}, set(self.nodeIds.values()))
        for task in tasks:
            self.assertEqual(task["Status"]["Message"], "started")
            self.assertTrue(task["Status"]["ContainerStatus"]["ContainerID"])
            self.assertEqual(task["DesiredState"], "running")
        _, listed = yield self.call(
            "GET", "/services", {"filters": {"name": [name]}, "status": True}
        )
        self.assertEqual(
            listed[0]["ServiceStatus"], {"RunningTasks": 2, "DesiredTasks": 2, "CompletedTasks": 0}
        )
        mine = {"label": [f"{SUITE_LABEL}={self.runId}"]}
        _, labelled = yield self.call("GET", "/tasks", {"filters": mine})
        self.assertTrue({t["ID"] for t in tasks} <= {t["ID"] for t in labelled})
        _, services = yield self.call("GET", "/services", {"filters": mine})
        self.assertTrue({t["ServiceID"] for t in labelled} <= {s["ID"] for s in services})
        _, other = yield self.call(
            "GET", "/tasks", {"filters": {"label": [f"{SUITE_LABEL}=other-{self.runId}"]}}
        )
        self.assertEqual(other, [])

    @inlineCallbacks
    def test_image(self) -> Generator[Deferred[Any], Any, None]:
        """The manager inspects an image it has (its C{Config}); a missing one is 404."""
        status, image = yield self.call("GET", f"/images/{self.fixture.image}/json")
        self.assertEqual(status, 200)
        self.assertIn("Cmd", image["Config"])
        error = yield self.assertStatus(
            self.engine.request("GET", "/images/pycm-test/no-such-image/json"), 404
        )
        self.assertEqual(
            error.message,
            "no such image: pycm-test/no-such-image: No such image: pycm-test/no-such-image:latest",
        )

    @inlineCallbacks
    def test_constraints(self) -> Generator[Deferred[Any], Any, None]:
        """
        C{node.role==worker} places on the worker; C{node.hostname==} on
        that node; C{node.role!=manager} with C{node.id==} on that node.
        """
        worker = self.nodeIds[self.fixture.workerNode]
        onWorker = yield self.create(
            "worker", self.fixture.longCommand, replicas=2, constraints=("node.role==worker",)
        )
        onManager = yield self.create(
            "manager",
            self.fixture.longCommand,
            constraints=(f"node.hostname=={self.fixture.managerNode}",),
        )
        onId = yield self.create(
            "byid",
            self.fixture.longCommand,
            constraints=("node.role!=manager", f"node.id=={worker}"),
        )
        tasks = yield self.eventually(lambda: self.whenCount(self.running(onWorker), 2))
        self.assertEqual({t["NodeID"] for t in tasks}, {worker})
        tasks = yield self.eventually(lambda: self.whenCount(self.running(onManager), 1))
        self.assertEqual(tasks[0]["NodeID"], self.nodeIds[self.fixture.managerNode])
        tasks = yield self.eventually(lambda: self.whenCount(self.running(onId), 1))
        self.assertEqual(tasks[0]["NodeID"], worker)

    @inlineCallbacks
    def test_noSuitableNode(self) -> Generator[Deferred[Any], Any, None]:
        """A task no node may take stays pending, saying why."""
        name = yield self.create(
            "nowhere", self.fixture.longCommand, constraints=("node.labels.pycm-zone==nowhere",)
        )

        @inlineCallbacks
        def explained() -> Generator[Deferred[Any], Any, Any]:
            tasks = yield self.tasks(name)
            return tasks and tasks[0]["Status"].get("Err") and tasks[0]

        task = yield self.eventually(explained)
        self.assertEqual(task["Status"]["State"], "pending")
        self.assertNotIn("NodeID", task)
        self.assertRegex(
            task["Status"]["Err"],
            r"^no suitable node \(.*scheduling constraints not satisfied on \d+ nodes?\)$",
        )

    @inlineCallbacks
    def test_exitCode(self) -> Generator[Deferred[Any], Any, None]:
        """
        A task exiting 3 under C{Condition: none} failed, saying so, with
        its exit code, and is then wanted shut down (the real engine may
        show the two a moment apart); it is not replaced. One exiting 0
        completed.
        """
        failing = yield self.create("exit3", self.fixture.exitCommand(3))
        done = yield self.create("exit0", self.fixture.exitCommand(0))

        @inlineCallbacks
        def ended(name: str, desired: str | None = None) -> Generator[Deferred[Any], Any, Any]:
            tasks = yield self.tasks(name)
            if not tasks or tasks[0]["Status"]["State"] not in ("failed", "complete"):
                return None
            return tasks if desired in (None, tasks[0]["DesiredState"]) else None

        tasks = yield self.eventually(lambda: ended(failing, "shutdown"))
        status = tasks[0]["Status"]
        self.assertEqual((status["State"], status["Err"]), ("failed", "task: non-zero exit (3)"))
        self.assertEqual(status["ContainerStatus"]["ExitCode"], 3)
        self.assertEqual(tasks[0]["DesiredState"], "shutdown")
        tasks = yield self.eventually(lambda: ended(done))
        status = tasks[0]["Status"]
        self.assertEqual((status["State"], status["Message"]), ("complete", "finished"))
        self.assertEqual(status["ContainerStatus"]["ExitCode"], 0)
        yield self.fixture.sleep(self, 1.0)
        tasks = yield self.tasks(failing)
        self.assertEqual(len(tasks), 1)

    @inlineCallbacks
    def test_missingImage(self) -> Generator[Deferred[Any], Any, None]:
        """
        A task of an image its node has not is rejected, saying so, and is
        then wanted shut down (the engine may show C{rejected} while it
        still wants the task C{running}, for a moment: both are waited for).
        """
        name = f"pycms-{self.runId}-noimage"
        self.names.append(name)
        body = self.body(name, self.fixture.longCommand)
        body["TaskTemplate"]["ContainerSpec"]["Image"] = "pycm-test/no-such-image:1"
        yield self.call("POST", "/services/create", body=body)

        def settled(found: list[dict[str, Any]]) -> Any:
            return (found and found[0]["Status"]["State"] == "rejected"
                    and found[0]["DesiredState"] == "shutdown" and found)

        tasks = yield self.eventually(lambda: self.tasks(name).addCallback(settled))
        status = tasks[0]["Status"]
        self.assertEqual(status["Err"], "No such image: pycm-test/no-such-image:1")
        self.assertEqual((status["Message"], tasks[0]["DesiredState"]), ("preparing", "shutdown"))

    @inlineCallbacks
    def test_restartPolicy(self) -> Generator[Deferred[Any], Any, None]:
        """
        C{on-failure} with C{MaxAttempts: 1} runs a failing task twice in
        its slot (the replacement waits in C{ready} for the delay), then
        gives up.
        """
        policy = {"Condition": "on-failure", "MaxAttempts": 1, "Delay": 500_000_000}
        name = yield self.create("policy", self.fixture.exitCommand(1), restart=policy)

        @inlineCallbacks
        def bothFailed() -> Generator[Deferred[Any], Any, Any]:
            # Each wanted shut down too, which the real engine may say a
            # moment after the failure.
            tasks = yield self.tasks(name)
            failed = [t for t in tasks
                      if t["Status"]["State"] == "failed" and t["DesiredState"] == "shutdown"]
            return len(failed) == 2 and tasks

        tasks = yield self.eventually(bothFailed)
        self.assertEqual([t["Slot"] for t in tasks], [1, 1])
        self.assertEqual([t["DesiredState"] for t in tasks], ["shutdown", "shutdown"])
        yield self.fixture.sleep(self, 1.5)
        tasks = yield self.tasks(name)
        self.assertEqual(len(tasks), 2)

    @inlineCallbacks
    def test_scale(self) -> Generator[Deferred[Any], Any, None]:
        """Replicas 1 -> 3 -> 1: three run, then one, the others removed."""
        name = yield self.create("scale", self.fixture.longCommand)
        yield self.eventually(lambda: self.whenCount(self.running(name), 1))
        yield self.update(name, lambda s: s["Mode"]["Replicated"].update(Replicas=3))
        tasks = yield self.eventually(lambda: self.whenCount(self.running(name), 3))
        self.assertEqual(sorted(t["Slot"] for t in tasks), [1, 2, 3])
        yield self.update(name, lambda s: s["Mode"]["Replicated"].update(Replicas=1))
        yield self.eventually(lambda: self.whenCount(self.tasks(name), 1))
        tasks = yield self.running(name)
        self.assertEqual(len(tasks), 1)
        yield self.update(name, lambda s: s["Mode"]["Replicated"].update(Replicas=0))
        yield self.eventually(lambda: self.tasks(name).addCallback(lambda found: not found))
        _, listed = yield self.call("GET", "/services", {"filters": {"name": [name]}, "status": 1})
        self.assertEqual(listed[0]["ServiceStatus"]["RunningTasks"], 0)

    @inlineCallbacks
    def test_forceUpdate(self) -> Generator[Deferred[Any], Any, None]:
        """
        C{ForceUpdate} replaces the task (the old one shut down), and the
        events tell the update and its state: updating, then completed.
        """
        name = yield self.create("force", self.fixture.longCommand)
        first = yield self.eventually(lambda: self.whenCount(self.running(name), 1))
        yield self.update(name, lambda s: s["TaskTemplate"].update(ForceUpdate=1))
        tasks = yield self.eventually(
            lambda: self.whenCount(self.running(name), 1).addCallback(
                lambda found: found if found and found[0]["ID"] != first[0]["ID"] else None
            )
        )
        self.assertEqual(tasks[0]["Slot"], 1)
        old = [t for t in (yield self.tasks(name)) if t["ID"] == first[0]["ID"]][0]
        self.assertEqual((old["DesiredState"], old["Status"]["State"]), ("shutdown", "shutdown"))

        def states() -> list[tuple[str | None, str | None]]:
            attributes = [e["Actor"]["Attributes"] for e in self.events]
            return [
                (a.get("updatestate.old"), a.get("updatestate.new"))
                for a in attributes
                if a.get("name") == name and "updatestate.new" in a
            ]

        yield self.eventually(lambda: len(states()) == 2)
        self.assertEqual(states(), [(None, "updating"), ("updating", "completed")])


__all__ = ["SUITE_LABEL", "SwarmEngineTests", "SwarmFixture"]
