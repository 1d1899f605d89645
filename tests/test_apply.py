"""
Tests for L{pycm.services.plan} and L{pycm.services.applier} (an apply on a
backend: concurrency, dependency conditions, failures, progress) and the
C{apply} command (L{pycm.daemon.handlers.applying}) on the daemon's fake
transport.  The shared cases every backend passes are
L{pycm.testing.conformance.apply}.
"""

from __future__ import annotations

import json
import shlex
from typing import Any

import attrs
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.task import Clock
from twisted.logger import Logger, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from pycm.capabilities import ALL_OPTIONS, Capabilities
from pycm.daemon import dispatch
from pycm.daemon.handlers import applying
from pycm.daemon.handlers.applying import projectLock
from pycm.errors import BackendError, BadRequest, Conflict
from pycm.model import Container, ContainerSpec, ProgressEvent, State
from pycm.services.applier import Applier, ApplyFailed, ApplyResult
from pycm.services.definition import serviceSetFrom
from pycm.services.plan import StepAction, makePlan
from pycm.testing import memoryBackend
from pycm.testing.server import FakeServer


def services(project: str = "shop", **definitions: Any) -> Any:
    return serviceSetFrom({"project": project, "services": definitions})


class HeldBackend:
    """
    A backend whose every call waits until the test fires it, recording the
    calls in order: what an applier asks for, and when, is then visible (the
    memory backend answers at once, hiding concurrency).  Only the methods
    an applier uses.
    """

    name = "held"
    defaultImage = "memory"

    def __init__(self, options: frozenset[str] = ALL_OPTIONS) -> None:
        self.capabilities = Capabilities(options)
        self.calls: list[tuple[str, str]] = []
        self.pending: dict[tuple[str, str], Deferred[Any]] = {}
        self.containers: list[Container] = []
        self.listed = 0

    def list(self) -> Deferred[list[Container]]:
        self.listed += 1
        return succeed(list(self.containers))

    def _held(self, call: str, name: str) -> Deferred[Any]:
        self.calls.append((call, name))
        d: Deferred[Any] = Deferred()
        self.pending[(call, name)] = d
        return d

    def create(self, spec: ContainerSpec) -> Deferred[Any]:
        return self._held("create", spec.name)

    def start(self, name: str) -> Deferred[Any]:
        return self._held("start", name)

    def remove(self, name: str, force: bool) -> Deferred[Any]:
        return self._held("remove", name)

    def wait(self, name: str, condition: str) -> Deferred[Any]:
        return self._held(f"wait {condition}", name)

    def fire(self, call: str, name: str, state: str = State.RUNNING,
             exitCode: int | None = None, health: Any = None) -> None:  # fmt: skip
        container = Container(name, "id-" + name, "held", "memory", ("x",), state, 0.0,
                              exitCode=exitCode)  # fmt: skip
        self.pending.pop((call, name)).callback(container)

    def failCall(self, call: str, name: str, error: Exception) -> None:
        self.pending.pop((call, name)).errback(error)


class ApplierOrderTests(SynchronousTestCase):
    """What an applier asks of the backend, and when."""

    def setUp(self) -> None:
        self.backend = HeldBackend()
        self.progress: list[ProgressEvent] = []
        self.applier = Applier(self.backend, lambda: 7.0, self.progress.append)

    def apply(self, wanted: Any, **options: Any) -> list[Any]:
        results: list[Any] = []
        self.applier.apply(wanted, **options).addBoth(results.append)
        return results

    def test_independentAtOnce(self) -> None:
        """
        A hundred independent services are all created before any create
        answers, from one list of the backend.
        """
        names = [f"svc{i:03}" for i in range(100)]
        results = self.apply(services(**{name: {} for name in names}))
        self.assertEqual(self.backend.calls, [("create", name) for name in names])
        self.assertEqual(self.backend.listed, 1)
        for name in names:
            self.backend.fire("create", name, State.CREATED)
            self.backend.fire("start", name)
        [result] = results
        self.assertIsInstance(result, ApplyResult)

    def test_dependentWaits(self) -> None:
        """
        A dependent is created once its dependency has started; one that
        waits for healthy, once the dependency's wait for healthy fired.
        """
        wanted = services(
            db={"healthcheck": {"cmd": "ready"}},
            app={"depends_on": ["db"]},
            web={"depends_on": {"db": "healthy"}},
        )
        results = self.apply(wanted)
        self.assertEqual(self.backend.calls, [("create", "db")])
        self.backend.fire("create", "db", State.CREATED)
        self.backend.fire("start", "db")
        self.assertEqual(sorted(self.backend.calls[2:]),
                         [("create", "app"), ("wait healthy", "db")])  # fmt: skip
        self.backend.fire("wait healthy", "db")
        self.assertEqual(self.backend.calls[4:], [("create", "web")])
        for name in ("app", "web"):
            self.backend.fire("create", name, State.CREATED)
            self.backend.fire("start", name)
        [result] = results
        self.assertEqual([s["name"] for s in result.toJSON()["services"]], ["db", "app", "web"])
        details = [(e.name, e.detail) for e in self.progress]
        self.assertEqual(details, [
            ("db", "creating"), ("web", "waiting for db to be healthy"), ("app", "creating"),
            ("db", "healthy"), ("web", "creating"),
        ])  # fmt: skip
        self.assertEqual({(e.action, e.time) for e in self.progress}, {("apply", 7.0)})

    def test_completedSuccessfully(self) -> None:
        """
        A dependency wanted completed is waited for until it no longer runs;
        exited 0, its dependent starts.
        """
        results = self.apply(services(
            migrate={}, web={"depends_on": {"migrate": "completed_successfully"}}))  # fmt: skip
        self.backend.fire("create", "migrate", State.CREATED)
        self.backend.fire("start", "migrate")
        self.assertEqual(self.backend.calls[-1], ("wait not-running", "migrate"))
        self.backend.fire("wait not-running", "migrate", State.EXITED, exitCode=0)
        self.backend.fire("create", "web", State.CREATED)
        self.backend.fire("start", "web")
        [result] = results
        self.assertEqual([s["state"] for s in result.toJSON()["services"]],
                         [State.EXITED, State.RUNNING])  # fmt: skip
        self.assertIn(("web", "waiting for migrate to complete successfully"),
                      [(e.name, e.detail) for e in self.progress])

    def test_failureSettlesTheRest(self) -> None:
        """
        A failed service stops its dependents (and theirs) from starting;
        the others settle first; the error names the failed and the not
        started.
        """
        results = self.apply(services(
            db={}, other={}, app={"depends_on": ["db"]}, web={"depends_on": ["app"]}))  # fmt: skip
        self.backend.failCall("create", "db", BackendError("no space left"))
        self.assertEqual(results, [])
        self.backend.fire("create", "other", State.CREATED)
        self.backend.fire("start", "other")
        [failure] = results
        failure.trap(ApplyFailed)
        self.assertEqual(failure.value.message,
                         "apply of shop failed: db: no space left; not started: app, web")
        self.assertNotIn(("create", "app"), self.backend.calls)
        self.assertEqual(
            [(e.name, e.detail) for e in self.progress if e.name != "other"],
            [("db", "creating"), ("db", "failed: no space left"), ("app", "not started"),
             ("web", "not started")],
        )

    def test_longChainFails(self) -> None:
        """
        A chain of 300 dependents whose root fails: each is not started,
        and the apply answers (a failure handed down in nested calls went
        past the recursion limit at about 70, and the apply never did).
        """
        names = [f"c{i:03}" for i in range(300)]
        wanted = services(**{
            name: {"depends_on": [names[i - 1]]} if i else {} for i, name in enumerate(names)
        })
        results = self.apply(wanted)
        self.backend.failCall("create", "c000", BackendError("no such command"))
        [failure] = results
        failure.trap(ApplyFailed)
        self.assertEqual(failure.value.notStarted, tuple(names[1:]))
        self.assertEqual(self.backend.calls, [("create", "c000")])

    def test_deliveriesGoOnPastAFault(self) -> None:
        """
        A waiter that cannot be fired (fired already) is logged, and the
        waiters after it still get their result.
        """
        from twisted.internet.defer import AlreadyCalledError, Deferred, succeed

        from pycm.services.applier import _Deliveries

        deliveries = _Deliveries()
        broken: Deferred[Any] = succeed(None)
        after: Deferred[Any] = Deferred()
        first: Deferred[Any] = Deferred()
        # Both queued while the loop runs: the fault must not stop it.
        first.addCallback(lambda _: (deliveries.hand(broken, 1), deliveries.hand(after, 2)))
        deliveries.hand(first, 0)
        self.assertEqual(self.successResultOf(after), 2)
        self.assertEqual(len(self.flushLoggedErrors(AlreadyCalledError)), 1)

    def test_unhealthyFails(self) -> None:
        """A dependency that turns unhealthy fails the apply, saying why."""
        results = self.apply(services(db={"healthcheck": {"cmd": "ready"}},
                                      web={"depends_on": {"db": "healthy"}}))
        self.backend.fire("create", "db", State.CREATED)
        self.backend.fire("start", "db")
        self.backend.failCall("wait healthy", "db", BackendError("db turned unhealthy"))
        [failure] = results
        self.assertEqual(failure.value.message,
                         "apply of shop failed: db: db turned unhealthy; not started: web")

    def test_recreateSaysWhatIsLeft(self) -> None:
        """
        A recreate whose new container cannot be made says that the old
        one was removed; one whose old container cannot be removed, that it
        was kept.
        """
        for failing, note in (("create", "its old container was removed"),
                              ("remove", "its old container was kept")):  # fmt: skip
            self.backend = HeldBackend()
            self.applier = Applier(self.backend, lambda: 0.0)
            old = Container("web", "1", "held", "memory", ("x",), State.RUNNING, 0.0,
                            labels={"io.pycm.project": "shop", "io.pycm.service": "web"})
            self.backend.containers = [old]
            results = self.apply(services(web={}))
            if failing == "create":
                self.backend.fire("remove", "web")
            self.backend.failCall(failing, "web", BackendError("broken"))
            [failure] = results
            self.assertEqual(failure.value.message,
                             f"apply of shop failed: web: broken ({note})")

    def test_refusedBeforeAnything(self) -> None:
        """
        A service the backend cannot honour (replicas without scaling) is
        refused naming it and the key, before the backend is even listed.
        """
        self.backend = HeldBackend(ALL_OPTIONS)
        self.applier = Applier(self.backend, lambda: 0.0)
        [failure] = self.apply(services(web={"replicas": 3}))
        failure.trap(BadRequest)
        self.assertEqual(failure.value.message,
                         "service web: the held backend cannot honour replicas")
        self.assertEqual((self.backend.listed, self.backend.calls), (0, []))

    def test_refusedHealthKeyNamed(self) -> None:
        """
        A health check key the backend cannot honour is named as the file
        has it (C{healthcheck.on_failure}), not as the whole health check.
        """
        self.backend = HeldBackend(ALL_OPTIONS - {"health-on-failure"})
        self.applier = Applier(self.backend, lambda: 0.0)
        [failure] = self.apply(services(web={"healthcheck": {
            "cmd": "true", "on_failure": "restart"}}))
        failure.trap(BadRequest)
        self.assertEqual(failure.value.message,
                         "service web: the held backend cannot honour healthcheck.on_failure")


class PlanTests(SynchronousTestCase):
    """L{makePlan}: steps by the containers' labels."""

    def container(self, name: str, project: str | None = "shop",
                  state: str = State.RUNNING, **labels: str) -> Container:  # fmt: skip
        if project is not None:
            labels = {"io.pycm.project": project, "io.pycm.service": name, **labels}
        return Container(name, name, "memory", "memory", ("x",), state, 0.0, labels=labels)

    def test_conflictNamesEvery(self) -> None:
        """Each service whose name another project's (or no project's) container holds."""
        containers = [self.container("db", "other"), self.container("web", None)]
        error = self.assertRaises(Conflict, makePlan, services(db={}, web={}), containers)
        self.assertEqual(error.message,
                         "container db exists and is not of project shop (it is of project "
                         "other); container web exists and is not of project shop")  # fmt: skip

    def test_keepOrStart(self) -> None:
        """An unchanged running container is kept; an exited one started."""
        wanted = services(db={}, web={})
        plan = makePlan(wanted, [])
        labels = {step.name: step.spec.labels for step in plan.steps if step.spec}
        containers = [
            attrs.evolve(self.container("db"), labels=labels["db"]),
            attrs.evolve(self.container("web", state=State.EXITED), labels=labels["web"]),
        ]
        plan = makePlan(wanted, containers)
        self.assertEqual([s.action for s in plan.steps], [StepAction.KEEP, StepAction.START])

    def test_completedJobKept(self) -> None:
        """
        An unchanged one-shot job a dependent wants completed is kept once
        it exited 0 (not run again), started again otherwise; a service
        nobody wants completed that exited 0 is started.
        """
        wanted = services(job={}, other={}, web={"depends_on": {"job": "completed_successfully"}})
        labels = {step.name: step.spec.labels for step in makePlan(wanted, []).steps
                  if step.spec}  # fmt: skip
        for exitCode, action in ((0, StepAction.KEEP), (1, StepAction.START)):
            containers = [
                attrs.evolve(self.container(name, state=State.EXITED),
                             labels=labels[name], exitCode=exitCode)  # fmt: skip
                for name in ("job", "other")
            ]
            steps = makePlan(wanted, containers).byName()
            self.assertEqual(steps["job"].action, action)
            self.assertEqual(steps["other"].action, StepAction.START)

    def test_pruneOnlyOwn(self) -> None:
        """Prune removes this project's applied containers only, after the rest."""
        containers = [self.container("old"), self.container("theirs", "other"),
                      self.container("plain", None)]  # fmt: skip
        plan = makePlan(services(db={}), containers, prune=True)
        self.assertEqual([(s.name, s.action) for s in plan.steps],
                         [("db", StepAction.CREATE), ("old", StepAction.REMOVE)])  # fmt: skip
        plan = makePlan(services(db={}), containers)
        self.assertEqual([s.name for s in plan.steps], ["db"])


class MemoryApplyTests(SynchronousTestCase):
    """An applier on the memory backend, on a L{Clock}."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.backend = memoryBackend(self.clock)
        self.applier = Applier(self.backend, self.clock.seconds)

    def test_hostRefusalsBeforeAnything(self) -> None:
        """
        A service the backend's host refuses (here an image the memory
        backend lacks) fails the whole apply, dry or not, naming each such
        service and its key, before anything is created; a recreate it
        would refuse leaves the old container running.
        """
        wanted = services(good={}, bad={"image": "nosuch"}, worse={"image": "nope"})
        for dryRun in (True, False):
            failure = self.failureResultOf(self.applier.apply(wanted, dryRun=dryRun),
                                           BadRequest)
            self.assertEqual(failure.value.message,
                             "service bad, key image: no such image: nosuch; service worse, "
                             "key image: no such image: nope; nothing was changed")
            self.assertEqual(self.successResultOf(self.backend.list()), [])
        self.successResultOf(self.applier.apply(services(good={})))
        failure = self.failureResultOf(
            self.applier.apply(services(good={"image": "nosuch"})), BadRequest)
        self.assertIn("service good, key image:", failure.value.message)
        [container] = self.successResultOf(self.backend.list())
        self.assertEqual((container.name, container.state), ("good", State.RUNNING))

    def test_startFailureNamed(self) -> None:
        """A command that cannot start fails the apply, naming it; the container is dead."""
        results: list[Any] = []
        wanted = services(db={"command": ["unstartable"]}, web={"depends_on": ["db"]})
        self.applier.apply(wanted).addBoth(results.append)
        [failure] = results
        failure.trap(ApplyFailed)
        self.assertTrue(failure.value.message.startswith("apply of shop failed: db: "))
        self.assertTrue(failure.value.message.endswith("; not started: web"))
        [container] = self.successResultOf(self.backend.list())
        self.assertEqual((container.name, container.state), ("db", State.DEAD))

    def test_healthyOnTheClock(self) -> None:
        """
        A dependent waiting for a health check is created once the check
        passed, one interval after the start on the clock; a check that
        fails its retries fails the apply, the dependent not started.
        """
        for command, healthy in (("exit 0", True), ("exit 1", False)):
            clock = Clock()
            backend = memoryBackend(clock)
            applier = Applier(backend, clock.seconds)
            results: list[Any] = []
            wanted = services(db={"healthcheck": {"cmd": command, "interval": "2s",
                                                  "retries": 2}},
                              web={"depends_on": {"db": "healthy"}})  # fmt: skip
            applier.apply(wanted).addBoth(results.append)
            names = [c.name for c in self.successResultOf(backend.list())]
            self.assertEqual((names, results), (["db"], []))
            clock.advance(2)
            if healthy:
                [result] = results
                self.assertEqual([(s["name"], s["health"]) for s in result.toJSON()["services"]],
                                 [("db", "healthy"), ("web", None)])  # fmt: skip
                continue
            clock.advance(2)
            [failure] = results
            failure.trap(ApplyFailed)
            self.assertTrue(failure.value.message.startswith("apply of shop failed: db: "))
            self.assertTrue(failure.value.message.endswith("; not started: web"))

    def test_dryRunTouchesNothing(self) -> None:
        """A dry run lists the backend and changes nothing."""
        result = self.successResultOf(self.applier.apply(services(db={}), dryRun=True))
        self.assertEqual(result.toJSON(), {"project": "shop", "dry_run": True, "services": [
            {"name": "db", "action": "create", "changes": [], "state": None, "health": None}]})
        self.assertEqual(self.successResultOf(self.backend.list()), [])


    def test_dryRunPruneShowsState(self) -> None:
        """
        A dry run shows a container it would prune as it is now, as for
        every other step; the apply that prunes it shows it gone.
        """
        self.successResultOf(self.applier.apply(services(db={}, old={})))
        dry = self.successResultOf(self.applier.apply(services(db={}), prune=True, dryRun=True))
        entries = {entry["name"]: entry for entry in dry.toJSON()["services"]}
        self.assertEqual((entries["old"]["action"], entries["old"]["state"]),
                         ("remove", "running"))
        applying = self.applier.apply(services(db={}), prune=True)
        for _ in range(30):
            self.clock.advance(1)
        entries = {entry["name"]: entry
                   for entry in self.successResultOf(applying).toJSON()["services"]}
        self.assertEqual((entries["old"]["action"], entries["old"]["state"]), ("remove", None))


class ApplyCommandTests(SynchronousTestCase):
    """The C{apply} command on the daemon's fake transport."""

    def setUp(self) -> None:
        self.logged: list[dict[str, Any]] = []
        self.patch(dispatch, "requestLog", Logger(observer=self.logged.append))
        self.server = FakeServer()
        self.conn = self.server.connect()

    def line(self, document: Any, options: str = "") -> str:
        return f"apply {options} {shlex.quote(json.dumps(document))}"

    def test_applyReplies(self) -> None:
        """The reply: project, dry_run, one entry a service in start order."""
        document = {"project": "shop", "services": {
            "web": {"depends_on": ["db"]}, "db": {"env": {"PASSWORD": "hunter2"}}}}
        reply = self.conn.ok(self.line(document))
        self.assertEqual(reply["project"], "shop")
        self.assertEqual(reply["dry_run"], False)
        self.assertEqual([(s["name"], s["action"], s["state"]) for s in reply["services"]],
                         [("db", "create", "running"), ("web", "create", "running")])
        again = self.conn.ok(self.line(document, "--project=shop --prune"))
        self.assertEqual([s["action"] for s in again["services"]], ["keep", "keep"])

    def test_documentNeverLogged(self) -> None:
        """The request log shows apply and its outcome, never the document."""
        document = {"project": "shop", "services": {"db": {"env": {"PASSWORD": "hunter2"}}}}
        self.conn.ok(self.line(document))
        self.assertEqual(len(self.logged), 1)
        self.assertNotIn("hunter2", repr(self.logged[0]))
        self.assertIn("apply", formatEvent(self.logged[0]))

    def test_badDocuments(self) -> None:
        """Bad JSON, a bad key, a cycle: bad_request; nothing is created."""
        self.assertEqual(self.conn.err("apply '{\"services\": '"), "bad_request")
        self.assertEqual(self.conn.err(self.line({"project": "pj", "services": {"web": {"x": 1}}})),
                         "bad_request")  # fmt: skip
        cycle = {"project": "pj", "services": {"ab": {"depends_on": ["cd"]},
                                              "cd": {"depends_on": ["ab"]}}}  # fmt: skip
        kind, (code, message) = self.conn.request(self.line(cycle))
        self.assertEqual((kind, code, message),
                         ("ERR", "bad_request", "dependency cycle: ab -> cd -> ab"))
        self.assertEqual(self.conn.ok("list"), [])

    def test_nulRefused(self) -> None:
        """
        A NUL character (JSON's C{\\u0000}: the line itself holds none) in
        a command's word or a health check's cmd is refused as run's line
        would be, naming the service and the key, before anything is
        created (not a container that cannot start, or a check that can
        never run).
        """
        for service, message in (
            ({"command": ["sh", "-c", "echo hi\0there; sleep 100"]},
             "service svc-nul, key command: word 3 must not hold a NUL character"),
            ({"healthcheck": {"cmd": "true\0false"}},
             "service svc-nul, key healthcheck: cmd must not hold a NUL character"),
        ):  # fmt: skip
            line = self.line({"project": "nul1", "services": {"svc-nul": service}})
            self.assertNotIn("\0", line)
            kind, reply = self.conn.request(line)
            self.assertEqual((kind, tuple(reply)), ("ERR", ("bad_request", message)))
        self.assertEqual(self.conn.ok("list"), [])

    def test_conflict(self) -> None:
        """A service named as a container that is not the project's: conflict."""
        self.conn.ok("run web")
        self.assertEqual(self.conn.err(self.line({"project": "pj", "services": {"web": {}}})),
                         "conflict")  # fmt: skip

    def test_progressToSubscribers(self) -> None:
        """Event subscribers see the apply's progress events."""
        watcher = self.server.connect()
        watcher.ok("events --filter action=apply")
        self.conn.ok(self.line({"project": "pj", "services": {"db": {}}}))
        events = [event for kind, event in watcher.replies() if kind == "EVENT"]
        self.assertEqual([(e["type"], e["name"], e["detail"]) for e in events],
                         [("progress", "db", "creating")])  # fmt: skip

    def test_progressId(self) -> None:
        """
        An apply's C{--progress-id} is in each of its progress events
        (C{"apply"}), so that of two overlapping applies of a project each
        client can tell its own; none without it; a bad one is refused.
        """
        watcher = self.server.connect()
        watcher.ok("events --filter action=apply")
        document = {"project": "pj", "services": {"db": {}}}
        self.conn.ok(self.line(document, "--progress-id=a1b2c3"))
        self.conn.ok(self.line(document))
        events = [event for kind, event in watcher.replies() if kind == "EVENT"]
        self.assertEqual([(e["detail"], e.get("apply")) for e in events],
                         [("creating", "a1b2c3"), ("kept", None)])  # fmt: skip
        for bad in ("'a b'", "''", "x" * 65):
            kind, (code, message) = self.conn.request(
                self.line(document, f"--progress-id={bad}"))
            self.assertEqual((kind, code), ("ERR", "bad_request"))
        self.assertIn("bad --progress-id", message)

    def test_oneApplyOfAProjectAtATime(self) -> None:
        """
        An apply of a project waits while another of it runs (here: its
        lock held), then plans from what that one made; another project's
        does not wait.
        """
        lock = projectLock(self.server.backend, "pj")
        self.successResultOf(lock.acquire())
        self.conn.send(self.line({"project": "pj", "services": {"db": {}}}) + "\n")
        self.assertEqual(self.conn.replies(), [])
        other = self.server.connect()
        other.ok(self.line({"project": "qq", "services": {"cache": {}}}))
        lock.release()
        [(kind, reply)] = self.conn.replies()
        self.assertEqual((kind, reply["services"][0]["action"]), ("OK", "create"))

    def test_projectLocksDropped(self) -> None:
        """
        A project's lock is kept only while an apply of it holds it or
        waits for it: 2,000 dry runs of as many projects, pipelined on one
        connection, leave the backend's table of locks empty (it held one
        lock a name for ever).
        """
        document = {"services": {"db": {}}}
        self.conn.send("".join(self.line(document, f"--dry-run --project=p{number}") + "\n"
                               for number in range(2000)))  # fmt: skip
        replies = self.conn.replies()
        for _ in range(2000):
            if len(replies) == 2000:
                break
            self.server.clock.advance(0)  # the daemon's next turn of lines
            replies += self.conn.replies()
        self.assertEqual(len(replies), 2000)
        self.assertEqual({kind for kind, reply in replies}, {"OK"})
        self.assertEqual(applying._locks[self.server.backend], {})

    def test_twoAppliesOfAProjectSerialized(self) -> None:
        """
        A second apply of a project waits for the first (here, for a job
        to complete) to settle, then plans from what it made; a third
        whose client goes away while it waits leaves the queue.  Once the
        project is free its lock is dropped, and a later apply takes a
        new one.
        """
        document = {"project": "pj", "services": {
            "job": {"command": ["sleep", "5"]},
            "web": {"depends_on": {"job": "completed_successfully"}}}}
        self.conn.send(self.line(document) + "\n")
        second, third = self.server.connect(), self.server.connect()
        second.send(self.line(document) + "\n")
        third.send(self.line(document) + "\n")
        self.server.clock.advance(1)
        self.assertEqual((self.conn.replies(), second.replies()), ([], []))
        self.assertEqual(list(applying._locks[self.server.backend]), ["pj"])
        self.assertEqual(len(applying._locks[self.server.backend]["pj"].waiting), 2)
        third.disconnect()
        self.assertEqual(len(applying._locks[self.server.backend]["pj"].waiting), 1)
        self.server.clock.advance(5)
        [(kind, first)] = self.conn.replies()
        [(secondKind, then)] = second.replies()
        self.assertEqual((kind, [s["action"] for s in first["services"]]),
                         ("OK", ["create", "create"]))  # fmt: skip
        self.assertEqual((secondKind, [s["action"] for s in then["services"]]),
                         ("OK", ["keep", "keep"]))  # fmt: skip
        self.assertEqual(applying._locks[self.server.backend], {})
        self.conn.ok(self.line(document, "--dry-run"))
        self.assertEqual(applying._locks[self.server.backend], {})

    def test_help(self) -> None:
        """help apply shows its usage."""
        self.assertEqual(self.conn.ok("help apply")["usage"],
                         "apply [--dry-run] [--prune] [--project=NAME] [--progress-id=ID] "
                         "DOCUMENT")




class AbandonedApplyTests(SynchronousTestCase):
    """An apply whose client went away (its Deferred cancelled)."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.backend = memoryBackend(self.clock)
        self.progress: list[ProgressEvent] = []
        self.applier = Applier(self.backend, self.clock.seconds, self.progress.append)

    def test_cancelledWaitStopsTheRun(self) -> None:
        """
        Cancelled while it waits for a dependency's health: it fails with
        CancelledError at once, the backend's wait is cancelled, what was
        made stays, and the dependent is never created, even once the
        dependency turns healthy later.
        """
        wanted = services(db={"healthcheck": {"cmd": "exit 0", "interval": "5s"}},
                          web={"depends_on": {"db": "healthy"}})  # fmt: skip
        d = self.applier.apply(wanted)
        self.assertNoResult(d)
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.clock.advance(10)
        containers = self.successResultOf(self.backend.list())
        self.assertEqual([(c.name, c.state) for c in containers], [("db", State.RUNNING)])
        details = [(event.name, event.detail) for event in self.progress]
        self.assertIn(("db", "not waited for (apply abandoned)"), details)
        self.assertNotIn(("web", "creating"), details)

    def test_projectLockReleasedWhenTheClientGoes(self) -> None:
        """
        Through the daemon: a client that sends an apply waiting for a
        completion that never comes, then disconnects, leaves the project
        free: the next apply of it answers (it was blocked for good before).
        """
        server = FakeServer()
        conn = server.connect()
        document = {"project": "pj", "services": {
            "job": {"command": ["sleep", "1000"]},
            "web": {"depends_on": {"job": "completed_successfully"}}}}
        conn.send(f"apply {shlex.quote(json.dumps(document))}\n")
        self.assertEqual(conn.replies(), [])
        conn.disconnect()
        other = server.connect()
        reply = other.ok(f"apply --dry-run {shlex.quote(json.dumps(document))}")
        self.assertEqual([(s["name"], s["action"]) for s in reply["services"]],
                         [("job", "keep"), ("web", "create")])
