"""
Group commits (L{pycm.groupcommit}): the writes of one reactor turn in one
transaction per store, and what depends on them released only once they
are durable; on a L{Clock} (the end of a turn is C{advance(0)}).
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from pycm.backends.memory import MemoryLogStore, SimulatedRuntime
from pycm.backends.supervisor.backend import Supervisor
from pycm.daemon.eventlog import EventLog
from pycm.errors import BackendError, Conflict, Unavailable
from pycm.groupcommit import GroupCommit
from pycm.model import ContainerEvent, ContainerSpec, State
from pycm.store import SQLiteStore


class GroupCommitTests(SynchronousTestCase):
    """L{GroupCommit} itself."""

    def test_oneFlushPerTurn(self) -> None:
        """
        Changes of one turn are written by one flush at its end, journals
        in the order they were added, then the callbacks in their order.
        """
        clock = Clock()
        group = GroupCommit(clock)
        done: list[str] = []
        group.addJournal(lambda: done.append("records"))
        group.addJournal(lambda: done.append("events"))
        group.changed()
        group.later(done.append, "reply 1")
        group.changed()
        d = group.whenDurable("reply 2")
        d.addCallback(done.append)
        self.assertEqual(done, [])
        clock.advance(0)
        self.assertEqual(done, ["records", "events", "reply 1", "reply 2"])
        self.assertEqual(group.flushes, 1)

    def test_nothingPendingRunsAtOnce(self) -> None:
        """With nothing to write, a callback runs at once."""
        group = GroupCommit(Clock())
        done: list[int] = []
        group.later(done.append, 1)
        self.assertEqual(done, [1])
        self.assertEqual(self.successResultOf(group.whenDurable(2)), 2)

    def test_orderKeptAcrossCallbacks(self) -> None:
        """
        A callback given while the callbacks of a flush run (nothing new to
        write) runs after those given before it; one given after a new
        change waits for the next flush.
        """
        clock = Clock()
        group = GroupCommit(clock)
        done: list[str] = []

        def first() -> None:
            group.later(done.append, "after second")
            group.changed()
            group.later(done.append, "next flush")

        group.changed()
        group.later(first)
        group.later(done.append, "second")
        clock.advance(0)  # a Clock runs the next turn's flush too
        self.assertEqual(done, ["second", "after second", "next flush"])
        self.assertEqual(group.flushes, 2)

    def test_immediate(self) -> None:
        """An immediate group writes at each change and calls back at once."""
        group = GroupCommit(Clock(), immediate=True)
        done: list[str] = []
        group.addJournal(lambda: done.append("write"))
        group.changed()
        group.later(done.append, "reply")
        self.assertEqual(done, ["write", "reply"])


class CountingStore:
    """A record store that counts its transactions (C{saveMany}); may fail."""

    def __init__(self) -> None:
        self.records: dict[str, dict[str, Any]] = {}
        self.transactions: list[list[str]] = []
        self.broken = False

    def saveMany(self, changes: list[tuple[str, dict[str, Any] | None]]) -> None:
        if self.broken:
            raise OSError(28, "No space left on device")
        self.transactions.append([name for name, _ in changes])
        for name, record in changes:
            if record is None:
                self.records.pop(name, None)
            else:
                self.records[name] = record

    def save(self, name: str, record: dict[str, Any]) -> None:
        self.saveMany([(name, record)])

    def delete(self, name: str) -> None:
        self.saveMany([(name, None)])

    def load(self) -> list[dict[str, Any]]:
        return list(self.records.values())

    def quarantine(self, name: str, reason: str) -> None:
        pass

    def quarantined(self) -> list[dict[str, str]]:
        return []

    def remains(self) -> list[tuple[str, bytes]]:
        return []


class GroupedSupervisorTests(SynchronousTestCase):
    """The supervisor (the memory backend) on a per-turn group commit."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.store = CountingStore()
        self.group = GroupCommit(self.clock)
        self.events: list[ContainerEvent] = []

    def grouped(self) -> Supervisor:
        """The memory backend's parts, on the per-turn group."""
        self.runtime = SimulatedRuntime(self.clock)
        backend = Supervisor(
            self.clock, "memory", self.runtime, MemoryLogStore(), self.store,  # type: ignore[arg-type]
            commits=self.group,
        )
        backend.addObserver(self.events.append)
        self.successResultOf(backend.open())
        return backend

    def test_concurrentRunsOneTransaction(self) -> None:
        """
        Three creates in one turn are one transaction; none is answered nor
        announced before it is written.
        """
        backend = self.grouped()
        ds = [backend.create(ContainerSpec(f"c{i}", command=("sleep", "9"))) for i in range(3)]
        for d in ds:
            self.assertNoResult(d)
        self.assertEqual(self.events, [])
        self.assertEqual(self.store.transactions, [])
        self.clock.advance(0)
        self.assertEqual(self.store.transactions, [["c0", "c1", "c2"]])
        self.assertEqual([self.successResultOf(d).name for d in ds], ["c0", "c1", "c2"])
        self.assertEqual([e.action for e in self.events], ["create"] * 3)

    def test_startSpawnsOnceRunIdDurable(self) -> None:
        """
        A start spawns nothing before its run id is written; its reply and
        C{start} come once the running record is written too.
        """
        backend = self.grouped()
        self.clock.advance(0)
        d = backend.create(ContainerSpec("web", command=("sleep", "9")))
        self.clock.advance(0)
        self.successResultOf(d)
        spawned: list[tuple[Any, ...]] = []
        spawn = self.runtime.spawn

        def spawnChecked(container: Any, *args: Any, **kw: Any) -> Any:
            spawned.append(tuple(self.store.records[container.name][k] for k in ("runId", "state")))
            return spawn(container, *args, **kw)

        self.patch(self.runtime, "spawn", spawnChecked)
        started = backend.start("web")
        self.assertNoResult(started)
        self.assertEqual(self.runtime.runs, {})
        self.clock.advance(0)
        runId = self.store.records["web"]["runId"]
        self.assertEqual(spawned, [(runId, State.CREATED)])
        self.assertEqual(self.successResultOf(started).state, State.RUNNING)
        self.assertEqual(self.store.transactions[-2:], [["web"], ["web"]])
        self.assertEqual(self.store.records["web"]["state"], State.RUNNING)
        self.assertEqual([e.action for e in self.events], ["create", "start"])

    def test_createAndStartTwoCommits(self) -> None:
        """
        C{createAndStart} (C{run}) writes the new record with its first
        run's id before it spawns anything, then the running record: two
        group commits; it answers, and announces C{create} and C{start},
        only after the second.
        """
        backend = self.grouped()
        flushes = self.group.flushes
        spawned: list[tuple[Any, ...]] = []
        spawn = self.runtime.spawn

        def spawnChecked(container: Any, *args: Any, **kw: Any) -> Any:
            record = self.store.records[container.name]
            spawned.append((record["runId"], record["state"], kw.get("runId")))
            return spawn(container, *args, **kw)

        self.patch(self.runtime, "spawn", spawnChecked)
        d = backend.createAndStart(ContainerSpec("web", command=("sleep", "9")))
        self.assertNoResult(d)
        self.assertEqual((spawned, self.store.transactions), ([], []))
        self.clock.advance(0)
        runId = self.store.records["web"]["runId"]
        self.assertIsNotNone(runId)
        self.assertEqual(spawned, [(runId, State.CREATED, runId)])
        self.assertEqual(self.successResultOf(d).state, State.RUNNING)
        self.assertEqual(self.store.transactions, [["web"], ["web"]])
        self.assertEqual(self.store.records["web"]["state"], State.RUNNING)
        self.assertEqual(self.group.flushes - flushes, 2)
        self.assertEqual([e.action for e in self.events], ["create", "start"])

    def test_createAndStartSpawnFails(self) -> None:
        """
        A C{createAndStart} whose run cannot start fails as C{start} would,
        and leaves the container, C{dead}, as C{create} then C{start} do.
        """
        backend = self.grouped()
        d = backend.createAndStart(ContainerSpec("web", command=("unstartable",)))
        self.clock.advance(0)
        self.failureResultOf(d, BackendError)
        self.assertEqual(self.successResultOf(backend.inspect("web")).state, State.DEAD)
        self.assertEqual(self.store.records["web"]["state"], State.DEAD)
        self.assertEqual([e.action for e in self.events], ["create", "die"])

    def failureOrder(self, d: Any) -> list[Any]:
        """What C{d}'s failure saw on disk, among the events announced."""
        seen: list[Any] = self.events
        del seen[:]
        d.addErrback(lambda f: seen.append(("error", self.store.records["web"]["state"])))
        return seen

    def test_createAndStartFailsOnceDurable(self) -> None:
        """
        A C{createAndStart} whose run cannot start fails only once the
        C{dead} record is written, after C{create} and C{die} are announced
        (as C{create} then C{start}: replies in the order things happened).
        """
        backend = self.grouped()
        self.clock.advance(0)
        d = backend.createAndStart(ContainerSpec("web", command=("unstartable",)))
        seen = self.failureOrder(d)
        self.assertNoResult(d)
        self.clock.advance(0)
        self.assertEqual([getattr(e, "action", e) for e in seen],
                         ["create", "die", ("error", State.DEAD)])

    def test_startFailsOnceDurable(self) -> None:
        """
        A C{start} whose run cannot start fails only once the C{dead}
        record is written and C{die} is announced.
        """
        backend = self.grouped()
        self.successResultOf(self.whenCreated(backend, ("unstartable",)))
        d = backend.start("web")
        seen = self.failureOrder(d)
        self.clock.advance(0)  # the run id, then the dead record
        self.assertEqual([getattr(e, "action", e) for e in seen],
                         ["die", ("error", State.DEAD)])

    def test_restartFailsOnceDurable(self) -> None:
        """
        A C{restart} whose new run cannot start fails only once the C{dead}
        record is written and C{die} is announced.
        """
        backend = self.grouped()
        self.successResultOf(self.whenCreated(backend, ("unstartable",)))
        d = backend.restart("web", None)
        seen = self.failureOrder(d)
        self.clock.advance(0)
        self.assertEqual([getattr(e, "action", e) for e in seen],
                         ["die", ("error", State.DEAD)])

    def whenCreated(self, backend: Supervisor, command: tuple[str, ...]) -> Any:
        """C{web} created with C{command}, once durable."""
        d = backend.create(ContainerSpec("web", command=command))
        self.clock.advance(0)
        return d

    def test_createAndStartFullDisk(self) -> None:
        """
        A C{createAndStart} whose record cannot be written spawns nothing,
        shows and announces nothing, and fails.
        """
        backend = self.grouped()
        self.store.broken = True
        d = backend.createAndStart(ContainerSpec("web", command=("sleep", "9")))
        self.clock.advance(0)
        self.failureResultOf(d, BackendError)
        self.assertEqual(self.runtime.runs, {})
        self.assertEqual(self.successResultOf(backend.list()), [])
        self.assertEqual(self.events, [])

    def test_createAndStartWhileClosing(self) -> None:
        """
        A daemon that starts shutting down while the new record is written
        keeps the container (created) and spawns nothing.
        """
        backend = self.grouped()
        d = backend.createAndStart(ContainerSpec("web", command=("sleep", "9")))
        backend.close()
        self.clock.advance(0)
        self.failureResultOf(d, Unavailable)
        self.assertEqual(self.runtime.runs, {})
        container = self.successResultOf(backend.inspect("web"))
        self.assertEqual(container.state, State.CREATED)

    def test_createRefusedOnFullDisk(self) -> None:
        """
        A create whose record cannot be written fails, is not shown and
        not announced; its name is free again.
        """
        backend = self.grouped()
        self.store.broken = True
        d = backend.create(ContainerSpec("web"))
        self.clock.advance(0)
        self.failureResultOf(d, BackendError)
        self.assertEqual(self.successResultOf(backend.list()), [])
        self.assertEqual(self.events, [])
        self.store.broken = False
        d = backend.create(ContainerSpec("web"))
        self.clock.advance(0)
        self.assertEqual(self.successResultOf(d).name, "web")

    def test_sameNameTwiceInOneTurn(self) -> None:
        """Two creates of one name in one turn: the second is a conflict."""
        backend = self.grouped()
        first = backend.create(ContainerSpec("web"))
        second = backend.create(ContainerSpec("web"))
        self.clock.advance(0)
        self.successResultOf(first)
        self.failureResultOf(second, Conflict)


class GroupedEventLogTests(SynchronousTestCase):
    """The event log joining a group commit, on a real SQLite store."""

    def test_eventsOfATurnOneTransaction(self) -> None:
        """
        Events of one turn are stored together, published only then, and
        not shown by C{since} nor counted in C{lastId} before.
        """
        clock = Clock()
        group = GroupCommit(clock)
        directory = self.mktemp()
        os.makedirs(directory)
        store = SQLiteStore(os.path.join(directory, "events.db"))
        self.addCleanup(store.close)
        log = EventLog(store, clock=clock, commits=group)
        seen: list[ContainerEvent] = []
        log.subscribe(seen.append)
        for name in ("a", "b"):
            log.record(ContainerEvent("create", name, 1.0))
        self.assertEqual((seen, log.lastId, log.since(0)), ([], 0, []))
        self.assertEqual(store.lastId(), 0)
        clock.advance(0)
        self.assertEqual([(e.id, e.name) for e in seen], [(1, "a"), (2, "b")])
        self.assertEqual([e.id for e in store.since(0)], [1, 2])
        self.assertEqual(log.lastId, 2)


class JournalObserverTests(SynchronousTestCase):
    """
    The event log attached to a backend that shares its group commit
    (L{EventLog.attach}): a change and its event reach the disk together.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.group = GroupCommit(self.clock)
        self.records = CountingStore()
        self.runtime = SimulatedRuntime(self.clock)
        self.backend = Supervisor(
            self.clock, "memory", self.runtime, MemoryLogStore(), self.records,  # type: ignore[arg-type]
            commits=self.group,
        )
        self.successResultOf(self.backend.open())
        directory = self.mktemp()
        os.makedirs(directory)
        self.store = SQLiteStore(os.path.join(directory, "events.db"))
        self.addCleanup(self.store.close)

    def test_eventInTheChangesCommit(self) -> None:
        """
        A create's event is stored in the group commit that writes its
        record (one flush, not two), and published only after it.
        """
        log = EventLog(self.store, clock=self.clock, commits=self.group)
        log.attach(self.backend)
        seen: list[ContainerEvent] = []
        log.subscribe(seen.append)
        self.clock.advance(0)
        flushes = self.group.flushes
        d = self.backend.createAndStart(ContainerSpec("web", command=("sleep", "9")))
        self.clock.advance(0)
        self.assertEqual(self.successResultOf(d).state, State.RUNNING)
        self.assertEqual(self.group.flushes - flushes, 2)
        self.assertEqual([(e.id, e.action) for e in self.store.since(0)],
                         [(1, "create"), (2, "start")])
        self.assertEqual([e.action for e in seen], ["create", "start"])
        self.backend.kill("web", 9)
        flushes = self.group.flushes
        self.clock.advance(0)
        self.assertEqual([e.action for e in self.store.since(2)], ["kill", "die"])
        self.assertEqual(self.group.flushes - flushes, 2)  # the kill, then the exit

    def test_slowSpawnThreeCommits(self) -> None:
        """
        A C{createAndStart} whose spawn completes in a later turn (the
        setsid wrapper, the exec helper) is three group commits: the new
        record, C{create} at the end of the spawning turn, then the running
        record with C{start} (docs/supervisor.md).
        """
        log = EventLog(self.store, clock=self.clock, commits=self.group)
        log.attach(self.backend)
        spawning: list[Deferred[Any]] = []
        spawn = self.runtime.spawn

        def slowSpawn(*args: Any, **kw: Any) -> Deferred[Any]:
            d: Deferred[Any] = Deferred()
            spawning.append(d)
            return d.addCallback(lambda _: spawn(*args, **kw))

        self.patch(self.runtime, "spawn", slowSpawn)
        self.clock.advance(0)
        flushes = self.group.flushes
        d = self.backend.createAndStart(ContainerSpec("web", command=("sleep", "9")))
        self.clock.advance(0)
        self.assertEqual(self.group.flushes - flushes, 2)
        self.assertEqual([e.action for e in self.store.since(0)], ["create"])
        self.assertEqual(self.records.records["web"]["state"], State.CREATED)
        self.assertNoResult(d)
        spawning[0].callback(None)
        self.clock.advance(0)
        self.assertEqual(self.successResultOf(d).state, State.RUNNING)
        self.assertEqual(self.group.flushes - flushes, 3)
        self.assertEqual([e.action for e in self.store.since(0)], ["create", "start"])

    def test_publishedOnlyOnceDurable(self) -> None:
        """
        An event heard as it is emitted is neither published nor shown by
        C{since} before its group commit; its reply comes after it.
        """
        log = EventLog(self.store, clock=self.clock, commits=self.group)
        log.attach(self.backend)
        seen: list[str] = []
        log.subscribe(lambda e: seen.append(e.action))
        d = self.backend.create(ContainerSpec("web", command=("sleep", "9")))
        d.addCallback(lambda _: seen.append("reply"))
        self.assertEqual((seen, log.since(0), self.store.lastId()), ([], [], 0))
        self.clock.advance(0)
        self.assertEqual(seen, ["create", "reply"])

    def test_otherGroupHearsOnceDurable(self) -> None:
        """
        An event log on another group commit (or none) is told of events
        only once durable, as any observer.
        """
        log = EventLog(self.store, clock=self.clock)
        log.attach(self.backend)
        d = self.backend.create(ContainerSpec("web", command=("sleep", "9")))
        self.assertEqual(self.store.lastId(), 0)
        self.clock.advance(0)
        self.successResultOf(d)
        self.assertEqual([e.action for e in self.store.since(0)], ["create"])


class SaveManyTests(SynchronousTestCase):
    """L{SQLiteStore.saveMany} and C{appendMany}: all or nothing."""

    def test_allOrNothing(self) -> None:
        """A group whose commit fails leaves none of its rows."""
        directory = self.mktemp()
        os.makedirs(directory)
        store = SQLiteStore(os.path.join(directory, "state.db"))
        self.addCleanup(store.close)
        store.saveMany([("a", {"name": "a"}), ("b", {"name": "b"})])
        self.assertEqual(sorted(r["name"] for r in store.load()), ["a", "b"])
        store.saveMany([("a", None), ("c", {"name": "c"})])
        self.assertEqual(sorted(r["name"] for r in store.load()), ["b", "c"])
        store.appendMany([ContainerEvent("create", "a", 1.0, id=1)])
        self.assertRaises(
            BackendError,
            store.appendMany,
            [ContainerEvent("create", "b", 1.0, id=2), ContainerEvent("create", "c", 1.0, id=1)],
        )
        self.assertEqual([e.id for e in store.since(0)], [1])
        self.assertEqual(store.lastId(), 1)
