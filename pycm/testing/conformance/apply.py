"""
The backend conformance suite, part four: C{apply} (L{pycm.services}) on
the backend itself: create, keep (no restart), recreate (only what
changed), prune (only the project's), dry-run (nothing changes),
dependency order, conditions (healthy, completed_successfully) and the
documents refused before anything changes.
"""

from __future__ import annotations

import time
from collections.abc import Generator
from typing import Any

from twisted.internet.defer import Deferred, inlineCallbacks

from pycm.errors import BadRequest, Conflict, NotFound
from pycm.interfaces import IScalable
from pycm.model import Action, Container, ContainerEvent, State
from pycm.services.applier import Applier, ApplyFailed, ApplyResult
from pycm.services.definition import ServiceSet, serviceSetFrom
from pycm.testing.conformance.base import BackendTestsBase


class BackendApplyTests(BackendTestsBase):
    """C{apply} of a services document, driven on the backend directly."""

    def project(self, what: str = "proj") -> str:
        return self.prefix + what

    def service(self, what: str, **keys: Any) -> tuple[str, dict[str, Any]]:
        """A service named for this test, running C{longCommand} unless told."""
        keys.setdefault("command", list(self.fixture.longCommand))
        if self.fixture.image is not None:
            keys.setdefault("image", self.fixture.image)
        return self.containerName(what), keys

    def document(self, *services: tuple[str, dict[str, Any]],
                 project: str | None = None) -> ServiceSet:  # fmt: skip
        return serviceSetFrom(
            {"project": project or self.project(), "services": dict(services)}
        )

    def apply(self, services: ServiceSet, **options: Any) -> Deferred[ApplyResult]:
        # Progress times only: any clock will do.
        applier = Applier(self.backend, time.time, self.progress.append)
        return self.settle(applier.apply(services, **options))

    @inlineCallbacks
    def quiet(self) -> Generator[Deferred[Any], Any, list[ContainerEvent]]:
        """
        The events seen until a marker container has started: a backend's
        events may lag its replies, but not overtake each other.
        """
        self.markers += 1
        marker = self.spec(f"marker{self.markers}", self.fixture.longCommand)
        yield self.runContainer(marker)
        events = yield self.eventsUntil(lambda _: self.count(marker.name, Action.START) >= 1)
        return [event for event in events if not event.name.startswith(self.prefix + "marker")]

    def actionsOf(self, result: ApplyResult) -> dict[str, str]:
        return {step["name"]: step["action"] for step in result.toJSON()["services"]}

    @inlineCallbacks
    def setUp(self) -> Generator[Deferred[Any], Any, None]:  # type: ignore[override]
        yield super().setUp()
        self.progress: list[Any] = []
        self.markers = 0

    # create, keep, recreate

    @inlineCallbacks
    def test_applyCreates(self) -> Generator[Deferred[Any], Any, None]:
        """
        A first apply creates and starts every service, labelled with its
        project and service, and says so.
        """
        db, web = self.service("db"), self.service("web", env={"SECRET": "hunter2"})
        result = yield self.apply(self.document(db, web))
        self.assertEqual(self.actionsOf(result), {db[0]: "create", web[0]: "create"})
        for name in (db[0], web[0]):
            container = yield self.settle(self.backend.inspect(name))
            self.assertEqual(container.state, State.RUNNING)
            self.assertEqual(container.labels["io.pycm.project"], self.project())
            self.assertEqual(container.labels["io.pycm.service"], name)
            self.assertNotIn("hunter2", container.labels["io.pycm.config"])
        self.assertEqual([s["state"] for s in result.toJSON()["services"]], ["running"] * 2)

    @inlineCallbacks
    def test_applyKeeps(self) -> Generator[Deferred[Any], Any, None]:
        """
        Applying the same services again changes nothing: the same
        containers (id and start time), no new event.
        """
        services = self.document(self.service("db"), self.service("web"))
        yield self.apply(services)
        before = yield self.settle(self.backend.list())
        seen = yield self.quiet()
        result = yield self.apply(services)
        self.assertEqual(set(self.actionsOf(result).values()), {"keep"})
        after = yield self.settle(self.backend.list())
        self.assertEqual(_identities(after, services), _identities(before, services))
        events = yield self.quiet()
        self.assertEqual(events[len(seen):], [])

    @inlineCallbacks
    def test_applyRecreatesOnlyTheChanged(self) -> Generator[Deferred[Any], Any, None]:
        """
        A service whose command changed is recreated (a new container,
        C{changes} naming the field); the other is kept as it was.
        """
        db, web = self.service("db"), self.service("web")
        yield self.apply(self.document(db, web))
        before = yield self.settle(self.backend.list())
        changed = (web[0], {**web[1], "env": {"MODE": "new"}})
        result = yield self.apply(self.document(db, changed))
        steps = {step["name"]: step for step in result.toJSON()["services"]}
        self.assertEqual(steps[db[0]]["action"], "keep")
        self.assertEqual((steps[web[0]]["action"], steps[web[0]]["changes"]),
                         ("recreate", ["env"]))  # fmt: skip
        after = yield self.settle(self.backend.list())
        old, new = _byName(before), _byName(after)
        self.assertEqual(new[db[0]].id, old[db[0]].id)
        self.assertNotEqual(new[web[0]].id, old[web[0]].id)
        self.assertEqual(new[web[0]].state, State.RUNNING)
        yield self.eventsUntil(lambda _: self.count(web[0], Action.DESTROY) >= 1)

    # prune and dry-run

    @inlineCallbacks
    def test_applyPrunesOnlyItsProject(self) -> Generator[Deferred[Any], Any, None]:
        """
        With prune, the project's containers no longer listed are removed;
        another project's and a container made by C{run} stay.
        """
        keep, gone, other = self.service("keep"), self.service("gone"), self.service("other")
        yield self.apply(self.document(keep, gone))
        yield self.apply(self.document(other, project=self.project("other")))
        plain = yield self.runContainer(self.spec("plain", self.fixture.longCommand))
        result = yield self.apply(self.document(keep), prune=True)
        self.assertEqual(self.actionsOf(result), {keep[0]: "keep", gone[0]: "remove"})
        self.assertEqual(result.toJSON()["services"][-1]["name"], gone[0])
        names = {container.name for container in (yield self.settle(self.backend.list()))}
        self.assertIn(keep[0], names)
        self.assertIn(other[0], names)
        self.assertIn(plain.name, names)
        self.assertNotIn(gone[0], names)

    @inlineCallbacks
    def test_applyDryRunChangesNothing(self) -> Generator[Deferred[Any], Any, None]:
        """
        A dry run says what an apply would do (create, recreate with its
        changes, remove) and does none of it.
        """
        db, web, old = self.service("db"), self.service("web"), self.service("old")
        yield self.apply(self.document(db, old))
        seen = yield self.quiet()
        before = yield self.settle(self.backend.list())
        changed = (db[0], {**db[1], "labels": {"tier": "data"}})
        result = yield self.apply(self.document(changed, web), prune=True, dryRun=True)
        reply = result.toJSON()
        self.assertTrue(reply["dry_run"])
        self.assertEqual(
            [(s["name"], s["action"], s["changes"]) for s in reply["services"]],
            [(db[0], "recreate", ["labels"]), (web[0], "create", []), (old[0], "remove", [])],
        )
        after = yield self.settle(self.backend.list())
        self.assertEqual(sorted(c.id for c in after), sorted(c.id for c in before))
        yield self.assertFails(self.backend.inspect(web[0]), NotFound)
        events = yield self.quiet()
        self.assertEqual(events[len(seen):], [])

    # order and conditions

    @inlineCallbacks
    def test_applyDependencyOrder(self) -> Generator[Deferred[Any], Any, None]:
        """
        A dependent is created only once its dependency has started: the
        dependency's C{start} comes before the dependent's C{create}.
        """
        web = self.service("web")
        db = self.service("db")
        web[1]["depends_on"] = [db[0]]
        result = yield self.apply(self.document(web, db))
        self.assertEqual([s["name"] for s in result.toJSON()["services"]], [db[0], web[0]])
        events = yield self.eventsUntil(lambda _: self.count(web[0], Action.START) >= 1)
        order = [(e.name, e.action) for e in events if e.name in (db[0], web[0])]
        self.assertLess(order.index((db[0], Action.START)), order.index((web[0], Action.CREATE)))

    @inlineCallbacks
    def test_applyCompletedSuccessfully(self) -> Generator[Deferred[Any], Any, None]:
        """
        A dependent waiting for its dependency to complete successfully
        starts after that one exited 0.
        """
        migrate = self.service("migrate", command=list(self.fixture.exitCommand(0)))
        web = self.service("web", depends_on={migrate[0]: "completed_successfully"})
        yield self.apply(self.document(migrate, web))
        events = yield self.eventsUntil(lambda _: self.count(web[0], Action.START) >= 1)
        order = [(e.name, e.action) for e in events if e.name in (migrate[0], web[0])]
        self.assertLess(order.index((migrate[0], Action.DIE)), order.index((web[0], Action.CREATE)))

    @inlineCallbacks
    def test_applyFailureStopsDependents(self) -> Generator[Deferred[Any], Any, None]:
        """
        A dependency that exits non-zero where a dependent wants it to
        complete successfully fails the apply, naming it and why, and the
        dependent is not started; an independent service still is.
        """
        migrate = self.service("migrate", command=list(self.fixture.exitCommand(3)))
        web = self.service("web", depends_on={migrate[0]: "completed_successfully"})
        other = self.service("other")
        error = yield self.assertFailure(
            self.apply(self.document(migrate, web, other)), ApplyFailed
        )
        self.assertEqual(
            error.message,
            f"apply of {self.project()} failed: {migrate[0]}: exited 3 "
            f"(completed_successfully wanted); not started: {web[0]}",
        )
        yield self.assertFails(self.backend.inspect(web[0]), NotFound)
        container = yield self.settle(self.backend.inspect(other[0]))
        self.assertEqual(container.state, State.RUNNING)

    @inlineCallbacks
    def test_applyHealthyDependency(self) -> Generator[Deferred[Any], Any, None]:
        """
        Where the backend has health checks, a dependent waiting for its
        dependency to be healthy is created after the dependency's
        C{health_status} healthy; where it has none, the apply is refused
        (bad_request naming the service and key) before anything changes.
        """
        db = self.service("db", healthcheck={"cmd": "exit 0", "interval": "1s"})
        web = self.service("web", depends_on={db[0]: "healthy"})
        services = self.document(db, web)
        if "health-cmd" not in self.backend.capabilities.options:
            error = yield self.assertFailure(self.apply(services), BadRequest)
            self.assertIn(f"service {db[0]}", error.message)
            self.assertIn("healthcheck", error.message)
            yield self.assertFails(self.backend.inspect(db[0]), NotFound)
            return
        result = yield self.apply(services)
        self.assertEqual(result.toJSON()["services"][0]["health"], "healthy")
        events = yield self.eventsUntil(lambda _: self.count(web[0], Action.START) >= 1)
        order = [(e.name, e.action) for e in events if e.name in (db[0], web[0])]
        self.assertLess(order.index((db[0], Action.HEALTH_STATUS)),
                        order.index((web[0], Action.CREATE)))  # fmt: skip

    @inlineCallbacks
    def test_applyReplicas(self) -> Generator[Deferred[Any], Any, None]:
        """
        C{replicas} runs that many copies where the backend scales; where
        it cannot, the apply is refused naming the service and the key.
        """
        web = self.service("web", replicas=2)
        services = self.document(web)
        if not IScalable.providedBy(self.backend):
            error = yield self.assertFailure(self.apply(services), BadRequest)
            self.assertIn(f"service {web[0]}", error.message)
            self.assertIn("replicas", error.message)
            yield self.assertFails(self.backend.inspect(web[0]), NotFound)
            return
        yield self.apply(services)
        container = yield self.settle(self.backend.inspect(web[0]))
        self.assertEqual(container.replicas.desired, 2)

    # refused before anything changes

    @inlineCallbacks
    def test_applyCycleRefused(self) -> Generator[Deferred[Any], Any, None]:
        """A dependency cycle is refused, naming its services; nothing is created."""
        a, b, free = self.service("a"), self.service("b"), self.service("free")
        a[1]["depends_on"] = [b[0]]
        b[1]["depends_on"] = [a[0]]
        error = self.assertRaises(BadRequest, self.document, free, a, b)
        self.assertEqual(error.message, f"dependency cycle: {a[0]} -> {b[0]} -> {a[0]}")
        yield self.assertFails(self.backend.inspect(free[0]), NotFound)

    @inlineCallbacks
    def test_applyConflictRefused(self) -> Generator[Deferred[Any], Any, None]:
        """
        A service whose name a container not of the project holds fails
        with L{Conflict} before anything changes.
        """
        taken = yield self.runContainer(self.spec("taken", self.fixture.longCommand))
        fresh = self.service("fresh")
        services = self.document(fresh, (taken.name, {"command": list(self.fixture.longCommand)}))
        error = yield self.assertFailure(self.apply(services), Conflict)
        self.assertIn(taken.name, error.message)
        yield self.assertFails(self.backend.inspect(fresh[0]), NotFound)


def _byName(containers: list[Container]) -> dict[str, Container]:
    return {container.name: container for container in containers}


def _identities(containers: list[Container], services: ServiceSet) -> list[tuple[Any, ...]]:
    return sorted(
        (c.name, c.id, c.started, c.state) for c in containers if c.name in services.services
    )
