"""
Tests for the swarm backend's events between snapshots
(L{pycm.backends.swarm.events}), on snapshots built by hand, read from
the fake manager and from the real swarm.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase, TestCase

from pycm.backends.swarm.events import OwnChanges, eventsBetween, taskRan
from pycm.backends.swarm.journal import SnapshotJournal
from pycm.backends.swarm.snapshot import Snapshot
from pycm.model import Action, ContainerEvent
from pycm.testing import advanceClock, settleClock
from tests.swarmsnapshots import (
    actions,
    exited,
    forceUpdate,
    readSnapshot,
    realTaskView,
    service,
    snap,
    task,
)
from tests.swarmsupport import pollUntil, realManager, removeServices, uniqueServiceName


class TaskRanTests(SynchronousTestCase):
    """L{taskRan}: did a task's process run, from how it ended."""

    def test_endings(self) -> None:
        """
        Running, complete and exited non-zero ran; a container that could
        not start, a rejected task and one shut down before it started
        (exit code 0) did not; one shut down with 137 did.
        """
        self.assertTrue(taskRan(task("a")))
        self.assertTrue(taskRan(exited("a", 0, 5.0)))
        self.assertTrue(taskRan(exited("a", 3, 5.0)))
        notStarted = task(
            "a", "failed", exitCode=127, error="starting container failed: no such file"
        )
        self.assertFalse(taskRan(notStarted))
        self.assertFalse(taskRan(task("a", "rejected", containerId=None)))
        self.assertFalse(taskRan(task("a", "shutdown", exitCode=0)))
        self.assertTrue(taskRan(task("a", "shutdown", exitCode=137)))
        self.assertFalse(taskRan(task("a", "pending", containerId=None)))


class EventsBetweenTests(SynchronousTestCase):
    """L{eventsBetween}: what two snapshots say happened."""

    def test_start(self) -> None:
        """A task that reaches running is started, once, with its node and task id."""
        old = snap(1.0, service("web", task("t1", "pending", containerId=None)))
        new = snap(2.0, service("web", task("t1", updated=1.5)))
        events = eventsBetween(old, new)
        self.assertEqual(events, [ContainerEvent(Action.START, "web", 1.5, node="n1", task="t1")])
        self.assertEqual(eventsBetween(new, snap(3.0, service("web", task("t1")))), [])

    def test_die(self) -> None:
        """A task that ran and ends dies with its exit code, node and task id."""
        old = snap(1.0, service("web", task("t1", node="worker")))
        new = snap(2.0, service("web", exited("t1", 3, 1.8, node="worker")))
        self.assertEqual(
            eventsBetween(old, new),
            [ContainerEvent(Action.DIE, "web", 1.8, 3, node="worker", task="t1")],
        )

    def test_vanished(self) -> None:
        """A running task gone from the list (scaled down) dies, its code unknown."""
        old = snap(1.0, service("web", task("t1"), task("t2", slot=2), desired=2))
        new = snap(2.0, service("web", task("t1"), desired=1, version=11))
        events = eventsBetween(old, new, OwnChanges(updated=frozenset({("id-web", 10)})))
        self.assertEqual(
            events, [ContainerEvent(Action.DIE, "web", 2.0, None, node="n1", task="t2")]
        )

    def test_cameAndWent(self) -> None:
        """
        Tasks that started and ended between two looks give their start
        and die, in the order they happened: a slot's restarts read as
        start, die, start, die, start.
        """
        old = snap(1.0, service("web", task("t0", "pending", containerId=None)))
        new = snap(
            9.0,
            service(
                "web",
                task("t3", updated=8.0),
                exited("t2", 1, 7.0),
                exited("t0", 1, 5.0),
            ),
        )
        self.assertEqual(
            actions(eventsBetween(old, new)),
            [
                ("web", "start", "t0"),
                ("web", "die", "t0"),
                ("web", "start", "t2"),
                ("web", "die", "t2"),
                ("web", "start", "t3"),
            ],
        )

    def test_nodeDown(self) -> None:
        """
        A task still said to run on a node gone down dies then (its code
        unknown) beside its replacement's start; when the node is back and
        says it failed, it does not die again.
        """
        old = snap(1.0, service("web", task("t1", node="worker")))
        down = Snapshot(
            2.0,
            {
                "web": service(
                    "web", task("t1", node="worker"), task("t2", node="manager", updated=1.5)
                )
            },
            frozenset({"worker"}),
        )
        self.assertEqual(
            eventsBetween(old, down),
            [
                ContainerEvent(Action.START, "web", 1.5, node="manager", task="t2"),
                ContainerEvent(Action.DIE, "web", 2.0, None, node="worker", task="t1"),
            ],
        )
        back = snap(
            3.0,
            service("web", exited("t1", 137, 2.8, node="worker"), task("t2", node="manager")),
        )
        self.assertEqual(eventsBetween(down, back), [])

    def test_nodeBack(self) -> None:
        """A task lost with its node that runs again once the node is back starts again."""
        down = Snapshot(2.0, {"web": service("web", task("t1", node="w"))}, frozenset({"w"}))
        self.assertEqual(eventsBetween(down, down), [])
        back = snap(3.0, service("web", task("t1", node="w", updated=0.5)))
        self.assertEqual(actions(eventsBetween(down, back)), [("web", "start", "t1")])

    def test_nodeBackReplaced(self) -> None:
        """
        A task lost with its node that comes back only to be shut down (the
        manager replaced it) neither starts again nor dies a second time,
        through the journal's baselines.
        """
        journal = SnapshotJournal()
        journal.advance(snap(1.0, service("web", task("t1", node="w"))))
        down = Snapshot(2.0, {"web": service("web", task("t1", node="w"))}, frozenset({"w"}))
        self.assertEqual(actions(journal.advance(down)), [("web", "die", "t1")])
        zombie = task("t1", node="w", desiredState="shutdown", updated=2.5)
        self.assertEqual(journal.advance(snap(3.0, service("web", zombie))), [])
        gone = task("t1", "shutdown", node="w", exitCode=137, updated=3.5)
        self.assertEqual(journal.advance(snap(4.0, service("web", gone))), [])

    def test_neverStarted(self) -> None:
        """A task whose container could not start gives no event."""
        old = snap(1.0, service("web"))
        failed = task("t1", "failed", exitCode=127, error="starting container failed: x")
        self.assertEqual(eventsBetween(old, snap(2.0, service("web", failed))), [])

    def test_endedBefore(self) -> None:
        """A task already ended in the old snapshot gives nothing again."""
        old = snap(1.0, service("web", exited("t1", 1, 0.5)))
        self.assertEqual(eventsBetween(old, snap(2.0, service("web", exited("t1", 1, 0.5)))), [])

    def test_createAndDestroy(self) -> None:
        """
        A service that appears is created (before its tasks start), one that
        is gone is destroyed (after its running tasks die).
        """
        old = snap(1.0, service("old", task("o1")))
        new = snap(2.0, service("new", task("n1", updated=1.5), created=1.2))
        self.assertEqual(
            actions(eventsBetween(old, new)),
            [("new", "create"), ("new", "start", "n1"), ("old", "die", "o1"), ("old", "destroy")],
        )

    def test_ownCreateAndRemove(self) -> None:
        """What pycm created or removed itself gives no create or destroy (its tasks still do)."""
        old = snap(1.0, service("old", task("o1")))
        new = snap(2.0, service("new", task("n1", updated=1.5)))
        own = OwnChanges(created=frozenset({"new"}), removed=frozenset({("old", "id-old")}))
        self.assertEqual(
            actions(eventsBetween(old, new, own)),
            [("new", "start", "n1"), ("old", "die", "o1")],
        )

    def test_replaced(self) -> None:
        """A name whose service was removed and made anew: destroy, then create."""
        old = snap(1.0, service("web"))
        new = snap(2.0, service("web", id="other"))
        self.assertEqual(actions(eventsBetween(old, new)), [("web", "destroy"), ("web", "create")])

    def test_scale(self) -> None:
        """Another client's new desired count is a scale carrying it."""
        old = snap(1.0, service("web", desired=1))
        new = snap(2.0, service("web", desired=3, version=12, updated=1.5))
        self.assertEqual(
            eventsBetween(old, new), [ContainerEvent(Action.SCALE, "web", 1.5, replicas=3)]
        )

    def test_update(self) -> None:
        """Another client's other change of the spec is an update."""
        old = snap(1.0, service("web", spec={"Labels": {"a": "1"}}))
        new = snap(2.0, service("web", version=12, updated=1.5, spec={"Labels": {"a": "2"}}))
        self.assertEqual(eventsBetween(old, new), [ContainerEvent(Action.UPDATE, "web", 1.5)])

    def test_scaleAndUpdate(self) -> None:
        """Another client's update of both the desired count and the spec is both events."""
        old = snap(1.0, service("web", desired=1, spec={"Labels": {"a": "1"}}))
        new = snap(2.0, service("web", desired=3, version=12, spec={"Labels": {"a": "2"}}))
        self.assertEqual(actions(eventsBetween(old, new)), [("web", "scale"), ("web", "update")])

    def test_versionAlone(self) -> None:
        """
        A new version with the same spec (the manager noting how a rolling
        update goes on) is no update.
        """
        spec = {"Labels": {"a": "1"}, "Mode": {"Replicated": {"Replicas": 1}}}
        old = snap(1.0, service("web", spec=spec))
        self.assertEqual(eventsBetween(old, snap(2.0, service("web", version=13, spec=spec))), [])

    def test_scaleIsNoUpdate(self) -> None:
        """A new desired count is a scale alone, though the spec holds it too."""
        old = snap(1.0, service("web", spec={"Mode": {"Replicated": {"Replicas": 1}}}))
        new = snap(
            2.0,
            service("web", desired=2, version=11, spec={"Mode": {"Replicated": {"Replicas": 2}}}),
        )
        self.assertEqual(actions(eventsBetween(old, new)), [("web", "scale")])

    def test_ownUpdate(self) -> None:
        """
        An update pycm made (marked from the version it changed) gives no
        scale or update; one from another version does.
        """
        old = snap(1.0, service("web", desired=1))
        new = snap(2.0, service("web", desired=0, version=12))
        self.assertEqual(
            eventsBetween(old, new, OwnChanges(updated=frozenset({("id-web", 10)}))), []
        )
        self.assertEqual(
            actions(eventsBetween(old, new, OwnChanges(updated=frozenset({("id-web", 12)})))),
            [("web", "scale")],
        )

    def test_order(self) -> None:
        """
        Services in name order; each its create, its scale and tasks by
        time (a task's start before its die), then its destroy.
        """
        old = snap(
            1.0,
            service("b", task("b1"), desired=1),
            service("c", task("c1"), task("c2", "pending", slot=2, containerId=None)),
        )
        new = snap(
            9.0,
            service("a", exited("a1", 0, 3.0), created=2.0),
            service(
                "b", task("b1"), task("b2", slot=2, updated=6.0), desired=2, version=11, updated=5.0
            ),
        )
        self.assertEqual(
            actions(eventsBetween(old, new)),
            [
                ("a", "create"),
                ("a", "start", "a1"),
                ("a", "die", "a1"),
                ("b", "scale"),
                ("b", "start", "b2"),
                ("c", "die", "c1"),
                ("c", "destroy"),
            ],
        )


class OwnChangesTests(SynchronousTestCase):
    """L{OwnChanges}: pycm's marks, dropped once a snapshot shows them done."""

    def test_seenIn(self) -> None:
        """
        A creation is done once its name is there, a removal once its id
        is gone, an update once the version is past the marked one.
        """
        own = OwnChanges(
            created=frozenset({"new", "later"}),
            removed=frozenset({("old", "id-old"), ("web", "id-web")}),
            updated=frozenset({("id-web", 10), ("id-db", 10)}),
        )
        left = own.seenIn(
            snap(2.0, service("new"), service("web", version=10), service("db", version=11))
        )
        self.assertEqual(
            left,
            OwnChanges(
                created=frozenset({"later"}),
                removed=frozenset({("web", "id-web")}),
                updated=frozenset({("id-web", 10)}),
            ),
        )

    def test_createdThenRemoved(self) -> None:
        """A service pycm made and removed between two looks leaves no mark behind."""
        own = OwnChanges(created=frozenset({"x"}), removed=frozenset({("x", "id-x")}))
        self.assertFalse(own.seenIn(snap(2.0)))


class RollingUpdateTests(SynchronousTestCase):
    """
    Snapshots of L{pycm.testing.swarmengine.FakeSwarmEngine} through a
    rolling update (the manager raises the version as it goes on).
    """

    def setUp(self) -> None:
        from twisted.internet.task import Clock

        from pycm.testing.swarmengine import FakeSwarmEngine

        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.engine = FakeSwarmEngine(self.clock)
        body = {
            "Name": "web",
            "TaskTemplate": {"ContainerSpec": {"Image": "busybox", "Args": ["sleep", "infinity"]}},
            "Mode": {"Replicated": {"Replicas": 2}},
        }
        self.sid = self.engine.cluster.createService(body).id
        advanceClock(self.clock, 5)

    def snapshot(self) -> Snapshot:
        d = readSnapshot(self.engine, ["web"], self.clock.seconds())
        result: Snapshot = self.successResultOf(settleClock(self.clock, d))
        return result

    def rolling(self, journal: SnapshotJournal, own: bool) -> list[ContainerEvent]:
        """The events of the snapshots of a forced update, pycm's own or not."""
        journal.advance(self.snapshot())
        version = self.successResultOf(settleClock(self.clock, forceUpdate(self.engine, self.sid)))
        if own:
            journal.mark(updated=((self.sid, version),))
        events = []
        versions = set()
        for _ in range(40):
            snapshot = self.snapshot()
            versions.add(snapshot.services["web"].version)
            events.extend(journal.advance(snapshot))
            advanceClock(self.clock, 0.5)
        self.assertGreater(len(versions), 2)
        return events

    def test_othersUpdate(self) -> None:
        """Another client's rolling restart: one update, each old task dies, each new one starts."""
        events = self.rolling(SnapshotJournal(), own=False)
        kinds = [e.action for e in events]
        self.assertEqual(kinds.count(Action.UPDATE), 1)
        self.assertEqual(kinds.count(Action.DIE), 2)
        self.assertEqual(kinds.count(Action.START), 2)

    def test_ownUpdate(self) -> None:
        """pycm's own rolling restart: its tasks' events, and no update."""
        events = self.rolling(SnapshotJournal(), own=True)
        self.assertEqual(sorted(e.action for e in events), ["die", "die", "start", "start"])


class RealTaskHistoryTests(TestCase):
    """
    L{eventsBetween} on the real swarm's task histories: tasks that ran
    and exited (restarted by their policy), one that completed, one whose
    container could not start, all first seen ended.
    """

    timeout = 180

    def setUp(self) -> None:
        cluster, self.reactor, self.engine = realManager(self)
        self.image = cluster.image
        self.names = {
            kind: uniqueServiceName("history-" + kind) for kind in ("exits", "done", "unstartable")
        }
        self.addCleanup(removeServices, self.engine, list(self.names.values()))

    def create(self, name: str, args: list[str], policy: dict[str, Any]) -> Deferred[Any]:
        body = {
            "Name": name,
            "Labels": {"io.pycm.test": "history"},
            "TaskTemplate": {
                "ContainerSpec": {"Image": self.image, "Args": args},
                "RestartPolicy": policy,
            },
            "Mode": {"Replicated": {"Replicas": 1}},
        }
        return self.engine.request("POST", "/services/create", body=body)

    def settled(self, name: str, count: int) -> Deferred[Any]:
        """The tasks of C{name} once C{count} of them have ended."""

        @defer.inlineCallbacks
        def check() -> Any:
            _, tasks = yield self.engine.request("GET", "/tasks", {"filters": {"service": [name]}})
            ended = [t for t in tasks if t["Status"]["State"] in ("complete", "failed", "rejected")]
            return len(ended) >= count and tasks

        return pollUntil(self.reactor, check, f"{count} ended tasks of {name}")

    @defer.inlineCallbacks
    def test_cameAndWent(self) -> Any:
        """
        Seen only once ended: each run of a task restarted by its policy is
        a start then a die with its exit code, in the order the tasks were
        made; a completed task is a start and a die 0; a container that
        could not start is no event.
        """
        names = self.names
        yield self.create(
            names["exits"],
            ["sh", "-c", "exit 3"],
            {"Condition": "on-failure", "MaxAttempts": 2, "Delay": 0},
        )
        yield self.create(names["done"], ["sh", "-c", "echo done"], {"Condition": "none"})
        yield self.create(names["unstartable"], ["/no/such/command"], {"Condition": "none"})
        found = {}
        for kind, count in (("exits", 3), ("done", 1), ("unstartable", 1)):
            found[kind] = yield self.settled(names[kind], count)
        _, nodes = yield self.engine.request("GET", "/nodes")
        hosts = {n["ID"]: n["Description"]["Hostname"] for n in nodes}
        old = snap(0.0, *(service(names[kind], id=kind) for kind in found))
        new = snap(
            1.0,
            *(
                service(names[kind], *(realTaskView(t, hosts) for t in found[kind]), id=kind)
                for kind in found
            ),
        )
        events = eventsBetween(old, new)
        exits = [e for e in events if e.name == names["exits"]]
        made = sorted(found["exits"], key=lambda t: t["CreatedAt"])
        self.assertEqual(
            [(e.action, e.task, e.exitCode) for e in exits],
            [
                pair
                for t in made
                for pair in ((Action.START, t["ID"], None), (Action.DIE, t["ID"], 3))
            ],
        )
        self.assertTrue(all(e.node in hosts.values() for e in exits))
        done = [(e.action, e.exitCode) for e in events if e.name == names["done"]]
        self.assertEqual(done, [(Action.START, None), (Action.DIE, 0)])
        self.assertEqual([e for e in events if e.name == names["unstartable"]], [])

    @defer.inlineCallbacks
    def test_rollingUpdate(self) -> Any:
        """
        Through a real rolling restart, seen as it goes on: one update for
        another client's (none for pycm's own, marked), and each old task's
        die and each new one's start for both.
        """
        from twisted.internet.task import deferLater

        name = self.names["exits"]
        body = {
            "Name": name,
            "TaskTemplate": {
                "ContainerSpec": {
                    "Image": self.image,
                    "Args": ["sleep", "1000"],
                    "StopGracePeriod": 500_000_000,
                },
            },
            "Mode": {"Replicated": {"Replicas": 2}},
        }
        _, created = yield self.engine.request("POST", "/services/create", body=body)
        sid = created["ID"]
        others, own = SnapshotJournal(), SnapshotJournal()

        @defer.inlineCallbacks
        def bothRun() -> Any:
            snapshot = yield readSnapshot(self.engine, [name], self.reactor.seconds())
            return snapshot.services[name].running == 2 and snapshot

        snapshot = yield pollUntil(self.reactor, bothRun, f"both tasks of {name} running")
        others.advance(snapshot)
        own.advance(snapshot)
        version = yield forceUpdate(self.engine, sid)
        own.mark(updated=((sid, version),))
        told: dict[str, list[ContainerEvent]] = {"others": [], "own": []}
        for _ in range(300):
            yield deferLater(self.reactor, 0.3, lambda: None)
            snapshot = yield readSnapshot(self.engine, [name], self.reactor.seconds())
            told["others"].extend(others.advance(snapshot))
            told["own"].extend(own.advance(snapshot))
            tasks = snapshot.services[name].tasks
            if sum(t.running for t in tasks) == 2 and sum(t.ended for t in tasks) == 2:
                break
        kinds = {who: sorted(e.action for e in events) for who, events in told.items()}
        self.assertEqual(kinds["own"], ["die", "die", "start", "start"])
        self.assertEqual(kinds["others"], ["die", "die", "start", "start", "update"])
