"""
Unit tests of the swarm backend (L{pycm.backends.swarm}) over the fake
swarm (L{FakeSwarmEngine}) on a L{Clock}: every operation, every state
derivation, the refusal of an engine that is no swarm manager, and the
manager going away in the middle of an operation.  The conformance suite
is in tests.test_swarm_conformance.
"""

from __future__ import annotations

import os
import signal
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from pycm.backends.docker.engine import EngineError
from pycm.backends.swarm.backend import END_WAIT, SwarmBackend, makeBackend
from pycm.backends.swarm.control import notManagerMessage
from pycm.backends.swarm.events import eventsBetween
from pycm.backends.swarm.options import parseNetworks, parseNodeHosts
from pycm.backends.swarm.reading import snapshotOf
from pycm.backends.swarm.snapshot import ServiceView, Snapshot, TaskView
from pycm.backends.swarm.translate import (
    CREATED_LABEL,
    REPLICAS_LABEL,
    containerOf,
    deriveState,
    serviceBody,
)
from pycm.errors import BackendError, BadRequest, Conflict, NoImage, NotFound, Unavailable
from pycm.model import Action, ContainerEvent, ContainerSpec, RestartPolicy, State
from pycm.stats import CpuSampler
from pycm.testing.clock import advanceClock, settleClock
from pycm.testing.swarmengine import FakeSwarmEngine
from pycm.testing.swarmtasks import Cluster

EPOCH = 1_700_000_000


def result(clock: Clock, d: Deferred[Any], timeout: float = 60.0) -> Any:
    """What C{d} fires with once C{clock} has turned enough (a Failure raises)."""
    out: list[Any] = []
    settleClock(clock, d, timeout).addBoth(out.append)
    if isinstance(out[0], Failure):
        out[0].raiseException()
    return out[0]


def failure(clock: Clock, d: Deferred[Any], timeout: float = 60.0) -> Failure:
    """The Failure C{d} fails with once C{clock} has turned enough."""
    out: list[Any] = []
    settleClock(clock, d, timeout).addBoth(out.append)
    assert isinstance(out[0], Failure), out[0]
    return out[0]


class SwarmTestCase(SynchronousTestCase):
    """A fake swarm (manager and worker) and a backend on it, opened."""

    withWorkerEngine = True

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(EPOCH)
        self.engine = FakeSwarmEngine(self.clock)
        nodes = {"worker": self.engine.nodeEngine("worker")} if self.withWorkerEngine else {}
        self.backend = makeBackend(self.clock, None, {}, self.engine, nodes)
        self.events: list[ContainerEvent] = []
        self.backend.addObserver(self.events.append)
        result(self.clock, self.backend.open())
        self.addCleanup(lambda: result(self.clock, self.backend.close()))

    def run_(self, d: Deferred[Any]) -> Any:
        return result(self.clock, d)

    def fails(self, d: Deferred[Any], kind: type[Exception]) -> Exception:
        f = failure(self.clock, d)
        self.assertTrue(f.check(kind), f)
        return f.value  # type: ignore[return-value]

    def actions(self, name: str) -> list[str]:
        return [e.action for e in self.events if e.name == name]

    def runService(self, name: str, command: tuple[str, ...] = ("sleep", "infinity"), **kw: Any):
        self.run_(self.backend.create(ContainerSpec(name, command=command, **kw)))
        return self.run_(self.backend.start(name))


class OpenTests(SynchronousTestCase):
    """C{open} refuses an engine that cannot manage a swarm."""

    def check(self, mode: str, why: str) -> None:
        clock = Clock()
        backend = makeBackend(clock, None, {}, FakeSwarmEngine(clock, mode=mode), {})
        f = failure(clock, backend.open())
        self.assertTrue(f.check(BackendError))
        message = str(f.value)
        self.assertIn("docker swarm init", message)
        self.assertIn(why, message)

    def test_worker(self) -> None:
        """
        A worker's engine is refused: the message says it is a worker, that
        promotion is run on a manager, and names swarm init.
        """
        self.check("worker", "is a swarm worker, not a manager")
        self.check("worker", "run on a manager")

    def test_brokenMembership(self) -> None:
        """An engine whose swarm state is pending, error or locked is told to join again."""
        message = notManagerMessage("unix:///d.sock", "error")
        self.assertIn("not a working swarm member (its swarm state: error)", message)
        self.assertIn("docker swarm init", message)

    def test_noSwarm(self) -> None:
        """An engine in no swarm is refused, naming C{docker swarm init}."""
        self.check("inactive", "is not part of a swarm")

    def test_unreachable(self) -> None:
        """An engine that does not answer at start fails C{open} with L{Unavailable}."""
        clock = Clock()
        engine = FakeSwarmEngine(clock)
        engine.setReachable(False)
        backend = makeBackend(clock, None, {}, engine, {})
        self.assertTrue(failure(clock, backend.open()).check(Unavailable))


class OptionsTests(SynchronousTestCase):
    """The backend's own options."""

    def test_nodeHosts(self) -> None:
        """C{--swarm-node-host} takes NODE=ADDRESS items, comma-separated."""
        hosts = parseNodeHosts("w1=unix:///a.sock, w2=tcp://h:2375,")
        self.assertEqual(sorted(hosts), ["w1", "w2"])
        self.assertEqual(str(hosts["w1"]), "unix:///a.sock")
        self.assertEqual(str(hosts["w2"]), "tcp://h:2375")

    def test_nodeHostsBad(self) -> None:
        """A missing C{=}, an empty node, a node twice, a bad address: L{BadRequest}."""
        for text in ("w1", "=unix:///a", "w=unix:///a,w=unix:///b", "w=http//x"):
            self.assertRaises(BadRequest, parseNodeHosts, text)

    def test_networks(self) -> None:
        """C{network} is a comma-separated list."""
        self.assertEqual(parseNetworks(" a, ,b "), ("a", "b"))

    def test_badOption(self) -> None:
        """A bad option value fails C{makeBackend} with L{BadRequest}."""
        clock = Clock()
        engine = FakeSwarmEngine(clock)
        self.assertRaises(BadRequest, makeBackend, clock, None, {"init": "maybe"}, engine, {})
        self.assertRaises(
            BadRequest, makeBackend, clock, None, {"poll-interval": "0"}, engine, {}
        )


class ServiceBodyTests(SynchronousTestCase):
    """L{serviceBody}: a spec to the body of C{POST /services/create}."""

    def body(self, **kw: Any) -> dict[str, Any]:
        return serviceBody(ContainerSpec("web", command=("sleep", "9"), **kw), "img:1", 2)

    def test_shape(self) -> None:
        """
        Created with 0 replicas, the count kept in a label; pycm's labels;
        the command as Args.
        """
        body = self.body()
        self.assertEqual(body["Mode"], {"Replicated": {"Replicas": 0}})
        self.assertEqual(body["Labels"][REPLICAS_LABEL], "2")
        self.assertEqual(body["Labels"][CREATED_LABEL], "true")
        self.assertEqual(body["Labels"]["io.pycm.managed"], "true")
        container = body["TaskTemplate"]["ContainerSpec"]
        self.assertEqual(container["Args"], ["sleep", "9"])
        self.assertEqual(container["Image"], "img:1")
        self.assertIs(container["Init"], True)
        self.assertEqual(container["StopGracePeriod"], 10 * 10**9)
        self.assertNotIn("Networks", body["TaskTemplate"])

    def test_restartPolicies(self) -> None:
        """
        C{no} -> none, C{on-failure:N} -> on-failure with MaxAttempts N,
        C{always} and C{unless-stopped} -> any.
        """
        cases = [
            ("no", "none", 0),
            ("on-failure", "on-failure", 0),
            ("on-failure:3", "on-failure", 3),
            ("always", "any", 0),
            ("unless-stopped", "any", 0),
        ]
        for text, condition, attempts in cases:
            policy = self.body(restartPolicy=RestartPolicy.parse(text))["TaskTemplate"][
                "RestartPolicy"
            ]
            self.assertEqual((policy["Condition"], policy["MaxAttempts"]), (condition, attempts))

    def test_options(self) -> None:
        """
        Env, labels, workdir, stop signal and timeout, limits and
        constraints go in the task template.
        """
        body = self.body(
            env={"A": "1"},
            labels={"team": "x"},
            workdir="/srv",
            stopSignal="INT",
            stopTimeout=2.5,
            memory=64 << 20,
            cpus=0.5,
            constraints=("node.role==worker",),
        )
        template = body["TaskTemplate"]
        container = template["ContainerSpec"]
        self.assertEqual(container["Env"], ["A=1"])
        self.assertEqual(container["Labels"], {"team": "x"})
        self.assertEqual(body["Labels"]["team"], "x")
        self.assertEqual(container["Dir"], "/srv")
        self.assertEqual(container["StopSignal"], "SIGINT")
        self.assertEqual(container["StopGracePeriod"], 2_500_000_000)
        self.assertEqual(
            template["Resources"]["Limits"], {"MemoryBytes": 64 << 20, "NanoCPUs": 500_000_000}
        )
        self.assertEqual(template["Placement"]["Constraints"], ["node.role==worker"])

    def test_refused(self) -> None:
        """pycm's own label prefix, a bad env name, a relative workdir: L{BadRequest}."""
        self.assertRaises(BadRequest, self.body, labels={"io.pycm.x": "1"})
        self.assertRaises(BadRequest, self.body, env={"A=B": "1"})
        self.assertRaises(BadRequest, self.body, workdir="srv")

    def test_tooLarge(self) -> None:
        """
        A stop timeout or CPU count beyond Swarm's int64 nanoseconds is
        L{BadRequest} (it overflowed, an internal error).
        """
        self.assertRaises(BadRequest, self.body, stopTimeout=1e300)
        self.assertRaises(BadRequest, self.body, cpus=1e300)
        self.assertRaises(BadRequest, self.body, stopTimeout=1e10)


def view(desired: int, *tasks: TaskView, **labels: str) -> ServiceView:
    spec = {"Name": "web", "Labels": {"io.pycm.managed": "true", **labels},
            "TaskTemplate": {"ForceUpdate": 1}}
    return ServiceView("web", "sid", 5, desired, 1.0, 1.0, spec, tasks)


def task(tid: str, state: str, slot: int = 1, desired: str = "running", **kw: Any) -> TaskView:
    kw.setdefault("generation", 1)
    kw.setdefault("created", 2.0)
    kw.setdefault("updated", 3.0)
    return TaskView(tid, slot, "manager", state, desired, **kw)


class StateTests(SynchronousTestCase):
    """L{deriveState}: a service's state from its tasks."""

    def state(self, service: ServiceView) -> str:
        return deriveState(service).state

    def test_created(self) -> None:
        """0 replicas, never started (the created label), no task: C{created}."""
        self.assertEqual(self.state(view(0, **{CREATED_LABEL: "true"})), State.CREATED)

    def test_running(self) -> None:
        """Every desired task runs: C{running}, with the count."""
        derived = deriveState(view(2, task("a", "running"), task("b", "running", slot=2)))
        self.assertEqual((derived.state, derived.running), (State.RUNNING, 2))

    def test_restarting(self) -> None:
        """A slot whose task is being replaced: C{restarting}."""
        service = view(
            1, task("b", "starting", created=3.0), task("a", "failed", exitCode=1, created=2.0)
        )
        self.assertEqual(self.state(service), State.RESTARTING)

    def test_stopping(self) -> None:
        """Scaled to 0 with a task still running: C{stopping}."""
        service = view(0, task("a", "running", desired="remove"))
        self.assertEqual(self.state(service), State.STOPPING)

    def test_exitedScaledDown(self) -> None:
        """Scaled to 0, its tasks gone: C{exited}, with the last exit seen."""
        derived = deriveState(view(0), remembered=(-15, 9.0))
        self.assertEqual((derived.state, derived.exitCode), (State.EXITED, -15))

    def test_exitedAllEnded(self) -> None:
        """Every task ended (the policy gave up): C{exited}, the newest's exit code."""
        service = view(
            1,
            task("a", "failed", exitCode=1, created=2.0, updated=2.5),
            task("b", "failed", exitCode=2, created=3.0, updated=3.5),
        )
        derived = deriveState(service)
        self.assertEqual(
            (derived.state, derived.exitCode, derived.restartCount), (State.EXITED, 2, 1)
        )

    def test_deadUnplaceable(self) -> None:
        """A task no node can take: C{dead}, its error saying why."""
        err = "no suitable node (scheduling constraints not satisfied on 2 nodes)"
        derived = deriveState(view(1, task("a", "pending", error=err)))
        self.assertEqual((derived.state, derived.error), (State.DEAD, err))

    def test_deadRejected(self) -> None:
        """A slot whose tasks are rejected before they run: C{dead} with the error."""
        service = view(
            1,
            task("b", "pending", created=3.0),
            task("a", "rejected", error="No such image: x", created=2.0),
        )
        derived = deriveState(service)
        self.assertEqual((derived.state, derived.error), (State.DEAD, "No such image: x"))

    def test_deadPartly(self) -> None:
        """Some tasks run, another ended and is not replaced: C{dead}, saying so."""
        service = view(
            2, task("a", "running"), task("b", "failed", slot=2, desired="shutdown", exitCode=1)
        )
        derived = deriveState(service)
        self.assertEqual(derived.state, State.DEAD)
        self.assertIn("1 of 2 tasks ended", derived.error or "")

    def test_runningToBeReplaced(self) -> None:
        """A task still running that the engine is shutting down: C{restarting}, not dead."""
        service = view(1, task("a", "running", desired="shutdown"))
        self.assertEqual(self.state(service), State.RESTARTING)

    def test_lostOnDownNode(self) -> None:
        """A task that says it runs on a node the manager sees down is lost: not running."""
        service = view(1, task("a", "running"))
        derived = deriveState(service, downNodes=frozenset({"manager"}))
        self.assertEqual((derived.state, derived.running), (State.RESTARTING, 0))

    def test_oldGenerationNotCounted(self) -> None:
        """Tasks of an earlier start do not count as restarts."""
        service = view(1, task("a", "failed", exitCode=1, generation=0), task("b", "running"))
        self.assertEqual(deriveState(service).restartCount, 0)

    def test_container(self) -> None:
        """L{containerOf} gives the replicas, the tasks (with nodes) and the constraints."""
        container = containerOf(view(1, task("a", "running")))
        self.assertEqual(container.replicas.toJSON(), {"running": 1, "desired": 1})
        self.assertEqual([t.toJSON()["node"] for t in container.tasks], ["manager"])
        self.assertEqual(container.backend, "swarm")

    def test_containerLostTasks(self) -> None:
        """
        L{containerOf}'s tasks on a node the manager sees down say so
        (C{lost}, or C{orphaned} once the engine gave them up), as the
        state does: not C{running}, as the engine still says.
        """
        service = view(
            2, task("a", "running"), task("b", "running", slot=2, desired="shutdown")
        )
        container = containerOf(service, downNodes=frozenset({"manager"}))
        self.assertEqual([t.state for t in container.tasks], ["lost", "orphaned"])
        self.assertEqual(container.replicas.toJSON(), {"running": 0, "desired": 2})


class ReadingTests(SynchronousTestCase):
    """L{snapshotOf}: the engine's lists into a snapshot."""

    def test_onlyPycms(self) -> None:
        """Only pycm's services are kept, each with its tasks and node hostnames."""
        services = [
            {"ID": "s1", "Spec": {"Name": "web", "Labels": {"io.pycm.managed": "true"},
                                  "Mode": {"Replicated": {"Replicas": 2}}},
             "Version": {"Index": 7}},
            {"ID": "s2", "Spec": {"Name": "other", "Labels": {}}},
        ]
        tasks = [
            {"ID": "t1", "ServiceID": "s1", "Slot": 1, "NodeID": "n1",
             "Status": {"State": "running", "ContainerStatus": {"ExitCode": 0}},
             "DesiredState": "running", "Spec": {"ForceUpdate": 3}},
            {"ID": "t2", "ServiceID": "s2", "Slot": 1, "Status": {"State": "running"}},
        ]
        nodes = [
            {"ID": "n1", "Description": {"Hostname": "box"}, "Status": {"State": "ready"}},
            {"ID": "n2", "Description": {"Hostname": "gone"}, "Status": {"State": "down"}},
        ]
        snapshot = snapshotOf(5.0, services, tasks, nodes)
        self.assertEqual(snapshot.downNodes, frozenset({"gone"}))
        self.assertEqual(list(snapshot.services), ["web"])
        web = snapshot.services["web"]
        self.assertEqual((web.desired, web.version), (2, 7))
        (only,) = web.tasks
        self.assertEqual((only.node, only.generation, only.exitCode), ("box", 3, None))


class EventsTests(SynchronousTestCase):
    """The events a version change tells (events.py, as the backend needs it)."""

    def test_rollingUpdateStatus(self) -> None:
        """
        A new version with the same definition (a rolling update's status
        moving on) is no C{update}.
        """
        before = view(1)
        after = ServiceView("web", "sid", 9, 1, 1.0, 2.0, before.spec, ())
        old, new = Snapshot(1.0, {"web": before}), Snapshot(2.0, {"web": after})
        self.assertEqual(eventsBetween(old, new), [])


class OperationTests(SwarmTestCase):
    """Every operation on the fake swarm."""

    def test_create(self) -> None:
        """
        C{create}: a service with 0 replicas, C{created}, the count
        remembered; emits C{create}.
        """
        container = self.run_(
            self.backend.create(ContainerSpec("web", command=("sleep", "infinity"), replicas=3))
        )
        self.assertEqual(container.state, State.CREATED)
        self.assertEqual(container.replicas.toJSON(), {"running": 0, "desired": 0})
        self.assertEqual(self.actions("web"), [Action.CREATE])
        self.assertEqual(self.engine.tasksOf("web"), [])

    def test_createConflictAndNoImage(self) -> None:
        """A taken name is a L{Conflict}; an image the manager lacks, L{NoImage}."""
        self.run_(self.backend.create(ContainerSpec("web")))
        self.fails(self.backend.create(ContainerSpec("web")), Conflict)
        self.fails(self.backend.create(ContainerSpec("other", image="nope:1")), NoImage)

    def test_startReplicas(self) -> None:
        """C{start} brings up the remembered count, spread over both nodes."""
        container = self.runService("web", replicas=2)
        self.assertEqual(container.state, State.RUNNING)
        self.assertEqual(container.replicas.toJSON(), {"running": 2, "desired": 2})
        self.assertEqual(sorted(t.node for t in container.tasks), ["manager", "worker"])
        self.assertEqual(self.actions("web"), [Action.CREATE, Action.START, Action.START])

    def test_startRunningIsNoop(self) -> None:
        """Starting a running service changes nothing."""
        self.runService("web")
        before = list(self.events)
        again = self.run_(self.backend.start("web"))
        self.assertEqual(again.state, State.RUNNING)
        self.assertEqual(self.events, before)

    def test_constraint(self) -> None:
        """C{--constraint node.role==worker} places every task on the worker."""
        container = self.runService("web", replicas=2, constraints=("node.role==worker",))
        self.assertEqual([t.node for t in container.tasks], ["worker", "worker"])
        self.assertEqual(container.constraints, ("node.role==worker",))

    def test_unplaceable(self) -> None:
        """A constraint no node meets: C{start} fails, the service is C{dead} saying why."""
        spec = ContainerSpec(
            "web", command=("sleep", "infinity"), constraints=("node.labels.zone==x",)
        )
        self.run_(self.backend.create(spec))
        error = self.fails(self.backend.start("web"), BackendError)
        self.assertIn("no suitable node", str(error))
        container = self.run_(self.backend.inspect("web"))
        self.assertEqual(container.state, State.DEAD)
        self.assertIn("no suitable node", container.error)

    def test_scale(self) -> None:
        """C{scale} up and down answers once that many run; emits C{scale} with the count."""
        self.runService("web")
        up = self.run_(self.backend.scale("web", 3))
        self.assertEqual(up.replicas.toJSON(), {"running": 3, "desired": 3})
        down = self.run_(self.backend.scale("web", 1))
        self.assertEqual(down.replicas.toJSON(), {"running": 1, "desired": 1})
        scales = [e.replicas for e in self.events if e.action == Action.SCALE]
        self.assertEqual(scales, [3, 1])
        self.fails(self.backend.scale("nope", 1), NotFound)

    def test_stopRemembersCount(self) -> None:
        """C{stop} scales to 0 (the tasks gone), C{start} brings the count back."""
        self.runService("web", replicas=2)
        stopped = self.run_(self.backend.stop("web", None))
        self.assertEqual(stopped.state, State.EXITED)
        self.assertEqual(stopped.exitCode, -15)
        self.assertEqual(stopped.replicas.toJSON(), {"running": 0, "desired": 0})
        self.assertEqual(self.actions("web")[-1], Action.STOP)
        started = self.run_(self.backend.start("web"))
        self.assertEqual(started.replicas.toJSON(), {"running": 2, "desired": 2})

    def test_stopKeepsRestartCount(self) -> None:
        """
        The restarts by the policy before a stop are still counted after it
        (Swarm drops the tasks of a scale to 0); a start counts afresh.
        """
        self.runService("web", ("exit", "0"), restartPolicy=RestartPolicy("always"))
        advanceClock(self.clock, 5)
        before = self.run_(self.backend.inspect("web")).restartCount
        self.assertGreaterEqual(before, 2)
        stopped = self.run_(self.backend.stop("web", None))
        self.assertGreaterEqual(stopped.restartCount, before)
        self.assertEqual(self.run_(self.backend.start("web")).restartCount, 0)

    def test_sameNameAnew(self) -> None:
        """
        A service removed and made again by another client under the same
        name starts afresh: none of the old one's restarts or exit code.
        """
        self.runService("web", ("exit", "3"), restartPolicy=RestartPolicy("always"))
        advanceClock(self.clock, 5)
        self.assertGreaterEqual(self.run_(self.backend.inspect("web")).restartCount, 2)
        cluster = self.engine.cluster
        old = next(s for s in cluster.services.values() if s.name == "web")
        spec = dict(old.spec, Mode={"Replicated": {"Replicas": 0}})
        cluster.removeService(old)
        advanceClock(self.clock, 5)
        cluster.createService(spec)
        advanceClock(self.clock, 5)
        anew = self.run_(self.backend.inspect("web"))
        self.assertEqual((anew.restartCount, anew.exitCode), (0, None))

    def test_sameNameAnewSignals(self) -> None:
        """
        The signals pycm sent a service are forgotten once it is gone: one
        made anew by another client under the same name that exits 143
        shows 143, not -15.
        """
        self.runService("web")
        self.run_(self.backend.stop("web", None))
        cluster = self.engine.cluster
        old = next(s for s in cluster.services.values() if s.name == "web")
        spec = dict(old.spec, Mode={"Replicated": {"Replicas": 1}})
        spec["TaskTemplate"] = dict(spec["TaskTemplate"])
        spec["TaskTemplate"]["ContainerSpec"] = dict(
            spec["TaskTemplate"]["ContainerSpec"], Args=["exit", "143"]
        )
        cluster.removeService(old)
        advanceClock(self.clock, 5)
        cluster.createService(spec)
        advanceClock(self.clock, 5)
        self.assertEqual(self.run_(self.backend.inspect("web")).exitCode, 143)

    def test_restart(self) -> None:
        """C{restart} replaces every task (a forced update): die, stop, start, restart."""
        first = self.runService("web")
        restarted = self.run_(self.backend.restart("web", None))
        self.assertEqual(restarted.state, State.RUNNING)
        running = [t.id for t in restarted.tasks if t.state == "running"]
        self.assertNotIn(running[0], [t.id for t in first.tasks])
        self.assertEqual(
            self.actions("web"),
            [Action.CREATE, Action.START, Action.DIE, Action.STOP, Action.START, Action.RESTART],
        )

    def test_restartRefused(self) -> None:
        """
        A restart whose update the manager refuses fails, telling no
        C{stop}: its tasks run on, untouched.
        """
        self.runService("web")
        original = self.engine.request

        def refusing(method: str, path: str, *args: Any, **kw: Any) -> Deferred[Any]:
            if method == "POST" and path.endswith("/update"):
                return fail(EngineError(500, "rpc error: code = Unknown desc = refused"))
            return original(method, path, *args, **kw)

        self.patch(self.engine, "request", refusing)
        self.fails(self.backend.restart("web", None), BackendError)
        advanceClock(self.clock, 5)
        self.assertEqual(self.actions("web"), [Action.CREATE, Action.START])
        self.assertEqual(self.run_(self.backend.inspect("web")).state, State.RUNNING)

    def test_killEveryTask(self) -> None:
        """
        C{kill} signals every running task through its node's engine;
        emits C{kill}, and each task's C{die}.
        """
        self.runService("web", replicas=2)
        self.run_(self.backend.kill("web", int(signal.SIGKILL)))
        container = self.run_(self.backend.wait("web", "not-running"))
        self.assertEqual(container.state, State.EXITED)
        self.assertEqual(container.exitCode, -9)
        dies = [e for e in self.events if e.action == Action.DIE]
        self.assertEqual(sorted(e.node for e in dies), ["manager", "worker"])
        self.assertEqual({e.exitCode for e in dies}, {-9})

    def test_killEndsPolicy(self) -> None:
        """
        A SIGKILL of a service with a restart policy is a client stop:
        scaled to 0, no restart; a start brings it back.
        """
        self.runService("web", restartPolicy=RestartPolicy("always"))
        self.run_(self.backend.kill("web", int(signal.SIGKILL)))
        advanceClock(self.clock, 10)
        container = self.run_(self.backend.inspect("web"))
        self.assertEqual(container.state, State.EXITED)
        self.assertEqual(self.actions("web").count(Action.START), 1)
        self.assertEqual(self.run_(self.backend.start("web")).state, State.RUNNING)

    def test_killNotRunning(self) -> None:
        """Killing a service with no running task is a L{Conflict}."""
        self.run_(self.backend.create(ContainerSpec("web")))
        self.fails(self.backend.kill("web", 9), Conflict)

    def test_removeRunning(self) -> None:
        """C{rm} of a running service is a L{Conflict}; with force it goes: kill, die, destroy."""
        self.runService("web")
        self.fails(self.backend.remove("web", False), Conflict)
        self.run_(self.backend.remove("web", True))
        self.fails(self.backend.inspect("web"), NotFound)
        self.assertEqual(self.actions("web")[-3:], [Action.KILL, Action.DIE, Action.DESTROY])

    def test_listOnlyPycms(self) -> None:
        """C{list} shows pycm's services only, with their replicas."""
        self.runService("web")
        self.engine.cluster.createService(
            {"Name": "theirs", "TaskTemplate": {"ContainerSpec": {"Image": "busybox:latest"}},
             "Mode": {"Replicated": {"Replicas": 0}}}
        )
        listed = self.run_(self.backend.list())
        self.assertEqual([c.name for c in listed], ["web"])
        self.assertEqual(listed[0].summary()["replicas"], {"running": 1, "desired": 1})

    def test_onFailure(self) -> None:
        """C{on-failure:2}: three runs, two restarts, then C{exited} with the exit code."""
        self.runService("web", ("exit", "1"), restartPolicy=RestartPolicy("on-failure", 2))
        advanceClock(self.clock, 20)
        container = self.run_(self.backend.inspect("web"))
        self.assertEqual((container.state, container.exitCode, container.restartCount),
                         (State.EXITED, 1, 2))
        self.assertEqual(self.actions("web").count(Action.RESTART), 2)


class StatsTests(SwarmTestCase):
    """C{stats}: the sums of the running tasks' figures."""

    def test_running(self) -> None:
        """
        A running service's row sums its tasks' figures (read on each
        task's node); one only created is not listed, and has every figure
        None when named; an unknown name is L{NotFound}.
        """
        self.runService("web", replicas=2)
        self.run_(self.backend.create(ContainerSpec("idle")))
        rows = self.run_(self.backend.stats([]))
        self.assertEqual([r.name for r in rows], ["web"])
        self.assertGreater(rows[0].memory or 0, 0)
        self.assertGreater(rows[0].pids or 0, 0)
        named = {r.name: r for r in self.run_(self.backend.stats(["idle", "web", "idle"]))}
        self.assertEqual(sorted(named), ["idle", "web"])
        self.assertIsNone(named["idle"].memory)
        self.fails(self.backend.stats(["nope"]), NotFound)


    def test_cpuSamplesBounded(self) -> None:
        """
        The daemon's CPU samples are kept for one run a service (its
        running tasks): a service whose tasks keep being replaced by its
        policy makes them grow to L{CpuSampler.FORGET_FROM} runs at most,
        then the ended runs go.
        """
        self.runService("web", ("sleep", "1"), restartPolicy=RestartPolicy("always"))
        samples = self.backend.usage.cpu._samples  # the sampler has no public count
        keys = set()
        for _ in range(3 * CpuSampler.FORGET_FROM):
            advanceClock(self.clock, 0.7)
            self.run_(self.backend.stats(["web"]))
            self.assertLessEqual(len(samples), CpuSampler.FORGET_FROM)
            keys.update(samples)
        self.assertGreater(len(keys), CpuSampler.FORGET_FROM)


class StartFailureTests(SwarmTestCase):
    """A command that cannot be executed."""

    def test_dead(self) -> None:
        """
        C{start} fails saying why; the service is C{dead} with that error
        until started again, and can be removed without force.
        """
        self.run_(self.backend.create(ContainerSpec("web", command=("unstartable",))))
        error = self.fails(self.backend.start("web"), BackendError)
        self.assertIn("unstartable", str(error))
        container = self.run_(self.backend.inspect("web"))
        self.assertEqual(container.state, State.DEAD)
        self.assertIn("unstartable", container.error or "")
        self.run_(self.backend.remove("web", False))
        self.fails(self.backend.inspect("web"), NotFound)


    def test_seenRunningFirst(self) -> None:
        """
        Under an init, a task whose command does not exist may be seen
        running before its exit 127: the look in its container says why
        (and a task whose command exists passes).
        """
        worker = self.engine.nodeEngine("worker")
        ids = []
        for name, command in (("bad", ["unstartable"]), ("good", ["sleep", "9"])):
            _, created = self.run_(
                worker.request("POST", "/containers/create", {"name": name}, body={
                    "Image": "busybox", "Cmd": command}))
            ids.append(created["Id"])
        control = self.backend.control
        bad, good = (
            TaskView(f"t{i}", 1, "worker", "running", "running", containerId=cid)
            for i, cid in enumerate(ids)
        )
        why = self.run_(control.execFailure(self.backend.nodes, [bad], lookFirst=True))
        self.assertIn('"unstartable"', why)
        self.assertIsNone(self.run_(control.execFailure(self.backend.nodes, [bad])))
        self.assertIsNone(
            self.run_(control.execFailure(self.backend.nodes, [good], lookFirst=True)))


    def test_failedStartWaitsForItsTasksToEnd(self) -> None:
        """
        A start failed by the look in a running task's container answers
        once that task is seen ended (so the container then reads C{dead}),
        and after L{END_WAIT} seconds at most.
        """
        self.runService("short", ("sleep", "3"))
        self.runService("long", ("sleep", "1000"))
        done = []
        for name in ("short", "long"):
            [task] = self.engine.tasksOf(name)
            self.backend._endOf(name, [task.id]).addCallback(done.append)
        self.clock.advance(1)
        self.assertEqual(done, [])
        advanceClock(self.clock, 3)
        self.assertEqual(len(done), 1)
        advanceClock(self.clock, END_WAIT)
        self.assertEqual(len(done), 2)


class NodeDownTests(SwarmTestCase):
    """A node's dockerd dies: its tasks come back on another node."""

    def test_workerKilled(self) -> None:
        """
        With a restart policy (Swarm replaces a lost task only then), the
        worker's task dies with its node and a new one runs on the
        manager: the service runs its two replicas again, the events say so.
        """
        self.runService("web", replicas=2, restartPolicy=RestartPolicy("always"))
        self.engine.killNode("worker")
        advanceClock(self.clock, 30)
        container = self.run_(self.backend.inspect("web"))
        self.assertEqual(container.state, State.RUNNING)
        self.assertEqual(container.replicas.toJSON(), {"running": 2, "desired": 2})
        running = [t.node for t in container.tasks if t.state == "running"]
        self.assertEqual(running.count("manager"), 2)
        dies = [e for e in self.events if e.action == Action.DIE]
        self.assertEqual([e.node for e in dies], ["worker"])
        self.assertEqual(self.actions("web").count(Action.START), 3)

    def test_forceRemoveWorkerDown(self) -> None:
        """
        C{rm --force} of a service with a task on a node whose engine does
        not answer (its dockerd killed) removes it all the same: the
        signals go where they can, and Swarm takes the rest down.
        """
        self.runService("web", replicas=2)
        self.engine.killNode("worker")
        self.run_(self.backend.remove("web", True))
        self.fails(self.backend.inspect("web"), NotFound)
        self.assertEqual(self.actions("web")[-1], Action.DESTROY)

    def test_statsWorkerDown(self) -> None:
        """
        C{stats} of a service with a task on a node whose engine does not
        answer: its figures are unknown (None), as for a node with no
        engine given, not a failure of the whole C{stats}.
        """
        self.runService("web", replicas=2)
        self.engine.killNode("worker")
        (row,) = self.run_(self.backend.stats(["web"]))
        self.assertEqual((row.state, row.memory), (State.RUNNING, None))

    def test_lostWithoutPolicy(self) -> None:
        """
        Without a restart policy the lost task is not replaced: one replica
        of two runs, and the service is C{dead} saying why.
        """
        self.runService("web", replicas=2)
        self.engine.killNode("worker")
        advanceClock(self.clock, 30)
        container = self.run_(self.backend.inspect("web"))
        self.assertEqual(container.replicas.toJSON(), {"running": 1, "desired": 2})
        self.assertEqual(container.state, State.DEAD)
        self.assertIn("will not be replaced", container.error)


class NoWorkerEngineTests(SwarmTestCase):
    """A task on a node whose engine pycm was not given."""

    withWorkerEngine = False

    def test_killNamesNodeAndOption(self) -> None:
        """C{kill} fails before sending anything, naming the node and C{--swarm-node-host}."""
        self.runService("web", replicas=2)
        error = self.fails(self.backend.kill("web", 9), BackendError)
        self.assertIn("worker", str(error))
        self.assertIn("--swarm-node-host", str(error))
        container = self.run_(self.backend.inspect("web"))
        self.assertEqual(container.replicas.running, 2)

    def test_statsUnknown(self) -> None:
        """A service with a task on a node of unknown engine has every figure None."""
        self.runService("web", replicas=2)
        (row,) = self.run_(self.backend.stats(["web"]))
        self.assertEqual((row.state, row.memory, row.pids), (State.RUNNING, None, None))


class WorkerEngineByIdTests(SwarmTestCase):
    """C{--swarm-node-host} naming the worker by its node id, not its hostname."""

    withWorkerEngine = False

    def setUp(self) -> None:
        super().setUp()
        worker = next(n for n in self.engine.cluster.nodes if n.hostname == "worker")
        self.backend.nodes.others[worker.id] = self.engine.nodeEngine("worker")

    def test_kill(self) -> None:
        """C{kill} reaches the worker's task through the engine given for its id."""
        self.runService("web", replicas=2)
        self.run_(self.backend.kill("web", int(signal.SIGKILL)))
        container = self.run_(self.backend.wait("web", "not-running"))
        self.assertEqual(container.replicas.running, 0)

    def test_stats(self) -> None:
        """C{stats} reads the worker's task there too: the figures are known."""
        self.runService("web", replicas=2)
        (row,) = self.run_(self.backend.stats(["web"]))
        self.assertGreater(row.memory or 0, 0)


class ManagerAwayTests(SwarmTestCase):
    """The manager going away, and coming back, in the middle of operations."""

    def test_startWaitsForManager(self) -> None:
        """A start whose manager goes away answers once it is back and the tasks run."""
        self.run_(self.backend.create(ContainerSpec("web", command=("sleep", "infinity"))))
        d = self.backend.start("web")
        advanceClock(self.clock, 0.01)
        self.engine.setReachable(False)
        advanceClock(self.clock, 10)
        self.assertNoResult(d)
        self.assertFalse(self.backend.watcher.connected)
        self.engine.setReachable(True)
        self.assertEqual(self.run_(d).state, State.RUNNING)
        self.assertTrue(self.backend.watcher.connected)

    def test_readsFailWhileAway(self) -> None:
        """C{list} and C{inspect} fail with L{Unavailable} while the manager is away."""
        self.runService("web")
        self.engine.setReachable(False)
        self.fails(self.backend.list(), Unavailable)
        self.fails(self.backend.inspect("web"), Unavailable)
        self.engine.setReachable(True)
        self.assertEqual(self.run_(self.backend.inspect("web")).state, State.RUNNING)

    def test_eventsAcrossOutage(self) -> None:
        """A task that dies while the manager is away is told once it is back, once."""
        self.runService("web", ("sleep", "5"))
        self.engine.setReachable(False)
        advanceClock(self.clock, 8)
        self.assertNotIn(Action.DIE, self.actions("web"))
        self.engine.setReachable(True)
        advanceClock(self.clock, 10)
        self.assertEqual(self.actions("web").count(Action.DIE), 1)

    def test_errorStatusMapped(self) -> None:
        """
        An error status from the manager's lists is a pycm error, not an
        internal one: 503 (the engine is no manager any more, or its swarm
        has no leader) L{Unavailable}, another L{BackendError}.
        """
        self.runService("web")
        original = self.engine.request
        status = [503]

        def failing(method: str, path: str, *args: Any, **kw: Any) -> Deferred[Any]:
            if (method, path) == ("GET", "/services"):
                return fail(EngineError(status[0], "This node is not a swarm manager."))
            return original(method, path, *args, **kw)

        self.patch(self.engine, "request", failing)
        self.assertIn("not a swarm manager", str(self.fails(self.backend.list(), Unavailable)))
        status[0] = 500
        self.fails(self.backend.inspect("web"), BackendError)

    def test_operationTimesOut(self) -> None:
        """An operation whose change never shows fails with L{Unavailable} after its timeout."""
        self.run_(self.backend.create(ContainerSpec("web", command=("sleep", "infinity"))))
        d = self.backend.start("web")
        advanceClock(self.clock, 0.01)
        self.engine.setReachable(False)
        f = failure(self.clock, d, timeout=self.backend.opTimeout + 10)
        self.assertTrue(f.check(Unavailable))
        self.assertIn("does not answer", str(f.value))


class DaemonRestartTests(SynchronousTestCase):
    """The backend closed and made again on the same state directory."""

    def test_toldOnce(self) -> None:
        """
        A task that died while no backend watched is told by the next one,
        once; what the first told is not told again.  (The fake's C{close}
        would stop its whole cluster: a backend's closing leaves it be, as
        closing a real engine client leaves the swarm.)
        """
        clock = Clock()
        clock.advance(EPOCH)
        engine = FakeSwarmEngine(clock)
        self.patch(engine, "close", lambda: succeed(None))
        stateDir = self.mktemp()
        os.mkdir(stateDir, 0o700)

        def backend() -> tuple[SwarmBackend, list[ContainerEvent]]:
            made = makeBackend(clock, stateDir, {}, engine, {})
            events: list[ContainerEvent] = []
            made.addObserver(events.append)
            result(clock, made.open())
            return made, events

        first, told = backend()
        result(clock, first.create(ContainerSpec("web", command=("sleep", "5"))))
        result(clock, first.start("web"))
        result(clock, first.close())
        self.assertEqual([e.action for e in told], [Action.CREATE, Action.START])
        advanceClock(clock, 10)
        second, again = backend()
        advanceClock(clock, 10)
        result(clock, second.close())
        self.assertEqual([(e.action, e.exitCode) for e in again], [(Action.DIE, 0)])


class WatcherTests(SwarmTestCase):
    """How often the watcher looks."""

    def looks(self, seconds: float) -> int:
        count = [0]
        original = self.backend.watcher.read

        def counted() -> Any:
            count[0] += 1
            return original()

        self.backend.watcher.read = counted  # type: ignore[method-assign]
        self.addCleanup(setattr, self.backend.watcher, "read", original)
        advanceClock(self.clock, seconds)
        return count[0]

    def test_idle(self) -> None:
        """With nothing changing and nobody waiting, it looks every idle interval."""
        advanceClock(self.clock, 30)
        self.assertLessEqual(self.looks(50), 50 / self.backend.watcher.idleInterval + 1)

    def test_poke(self) -> None:
        """A poke looks at once, however idle."""
        advanceClock(self.clock, 30)
        latest = self.backend.watcher.latest
        self.backend.watcher.poke()
        advanceClock(self.clock, 0.01)
        self.assertIsNot(self.backend.watcher.latest, latest)

    def test_engineEvent(self) -> None:
        """A service changed by another client is seen at once (its engine event)."""
        advanceClock(self.clock, 30)
        self.run_(self.backend.create(ContainerSpec("web")))
        advanceClock(self.clock, 30)
        sid = self.backend.watcher.latest.services["web"].id
        spec = dict(self.backend.watcher.latest.services["web"].spec)
        spec["Mode"] = {"Replicated": {"Replicas": 1}}
        version = self.backend.watcher.latest.services["web"].version
        self.engine.cluster.updateService(self.engine.cluster.services[sid], spec, version)
        advanceClock(self.clock, 0.5)
        self.assertEqual(self.backend.watcher.latest.services["web"].desired, 1)
        self.assertIn(Action.SCALE, self.actions("web"))


def countingRemovedSlots(reconcile: Any) -> Any:
    """
    The fake orchestrator's C{reconcile}, made to do as swarmkit's does for
    a service whose restart condition is C{none}: a slot whose tasks a
    scale down is still taking away counts as one the service has (its
    C{UpdatableTasksInSlot}), so a scale up to no more than those slots
    starts nothing.  (Checked on the dev swarm, Docker 20.10; the fake
    swarm does not do it yet.)
    """

    def swarmkitReconcile(cluster: Cluster, service: Any) -> None:
        if service.restartPolicy()[0] == "none":
            tasks = cluster.serviceTasks(service)
            live = {t.slot for t in tasks if t.runnable}
            if len(live) <= service.replicas <= len({t.slot for t in tasks}):
                return
        reconcile(cluster, service)

    return swarmkitReconcile


class ScaleStallTests(SwarmTestCase):
    """A scale up that Swarm does not carry out until it is asked again."""

    def scaleBehindOurBack(self, name: str, replicas: int) -> None:
        """Another client scales C{name} to C{replicas} (as C{docker service scale -d})."""
        service = next(s for s in self.engine.cluster.services.values() if s.name == name)
        spec = dict(service.spec)
        spec["Mode"] = {"Replicated": {"Replicas": replicas}}
        self.engine.cluster.updateService(service, spec, service.version)

    def test_scaleUpWhileScaledDownTasksStop(self) -> None:
        """
        Scaled from 3 to 1 by another client, then at once to 2 by pycm
        while the 2 tasks taken away still stop (they ignore SIGTERM for
        their 3 s grace period): Swarm counts their slots and starts no
        task; once they are gone the backend sends the update again, and
        answers with 2 running well before its own timeout.
        """
        self.patch(Cluster, "reconcile", countingRemovedSlots(Cluster.reconcile))
        self.runService("web", ("ignore-term",), replicas=3, stopTimeout=3.0)
        self.scaleBehindOurBack("web", 1)
        scaled = result(self.clock, self.backend.scale("web", 2), timeout=30)
        self.assertEqual(scaled.state, State.RUNNING)
        self.assertEqual(scaled.replicas.toJSON(), {"running": 2, "desired": 2})
        self.assertEqual(self.actions("web").count(Action.SCALE), 2)


class WaiterTests(SwarmTestCase):
    """L{SwarmWatcher.waitFor}'s predicates."""

    def test_predicateBug(self) -> None:
        """
        A predicate that raises something other than a pycm error (a bug)
        fails its wait at once with it, not after the timeout; the other
        waits are still answered by the same snapshot.
        """

        def broken(snapshot: Snapshot) -> bool:
            raise ZeroDivisionError()

        bad = self.backend.watcher.waitFor(broken, 60)
        good = self.backend.watcher.waitFor(lambda snapshot: True, 60)
        advanceClock(self.clock, 0.5)
        self.failureResultOf(bad, ZeroDivisionError)
        self.assertIs(self.successResultOf(good), True)
