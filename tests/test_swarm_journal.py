"""
Tests for the journal that keeps the swarm backend's events durable
(L{pycm.backends.swarm.journal}), on snapshots built by hand.
"""

from __future__ import annotations

import os

import attrs
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from pycm.backends.swarm.control import ServiceControl
from pycm.backends.swarm.events import OwnChanges, specDigest
from pycm.backends.swarm.journal import JOURNAL_FILE, MAX_BYTES, SnapshotJournal, decode, encode
from pycm.backends.swarm.snapshot import ServiceView, Snapshot
from pycm.model import Action, ContainerEvent
from pycm.testing import settleClock
from pycm.testing.swarmengine import FakeSwarmEngine
from tests.swarmsnapshots import (
    Logged,
    actions,
    exited,
    service,
    snap,
    task,
)


def stored(snapshot: Snapshot) -> Snapshot:
    """C{snapshot} as the journal gives it back: no time, each spec by its digest."""
    services = {name: stripped(service) for name, service in snapshot.services.items()}
    return attrs.evolve(snapshot, time=0.0, services=services)


def stripped(service: ServiceView) -> ServiceView:
    return attrs.evolve(service, spec={}, specDigest=specDigest(service))


class JournalTests(SynchronousTestCase):
    """L{SnapshotJournal}: the baseline of the events, kept in the state directory."""

    def setUp(self) -> None:
        self.dir = self.mktemp()
        os.mkdir(self.dir, 0o700)
        self.path = os.path.join(self.dir, JOURNAL_FILE)

    def test_firstStart(self) -> None:
        """With no journal, the first snapshot tells nothing (its history is old news)."""
        journal = SnapshotJournal(self.path)
        self.assertEqual(
            journal.advance(snap(1.0, service("web", task("t1"), exited("t0", 1, 0.5)))), []
        )
        self.assertTrue(os.path.exists(self.path))

    def test_noDoublingAfterReconnect(self) -> None:
        """
        Each change is told once: the same snapshot again (the manager
        answered again after a reconnect) tells nothing.
        """
        journal = SnapshotJournal(self.path)
        journal.advance(snap(1.0, service("web", task("t1", "pending", containerId=None))))
        s2 = snap(2.0, service("web", task("t1")))
        self.assertEqual(actions(journal.advance(s2)), [("web", "start", "t1")])
        self.assertEqual(journal.advance(s2), [])
        self.assertEqual(journal.advance(snap(3.0, service("web", task("t1")))), [])

    def test_noDoublingAfterRestart(self) -> None:
        """
        A daemon killed right after handing on a snapshot's events does
        not tell them again: the journal had them before they went out.
        The tasks that came and went while it was down are told.
        """
        journal = SnapshotJournal(self.path)
        journal.advance(snap(1.0, service("web", task("t1", "pending", containerId=None))))
        self.assertEqual(
            actions(journal.advance(snap(2.0, service("web", task("t1"))))),
            [("web", "start", "t1")],
        )
        del journal  # kill -9: nothing more is written
        restarted = SnapshotJournal(self.path)
        later = snap(
            9.0,
            service("web", task("t3", updated=8.0), exited("t2", 1, 7.0), exited("t1", 1, 5.0)),
        )
        self.assertEqual(
            actions(restarted.advance(later)),
            [
                ("web", "die", "t1"),
                ("web", "start", "t2"),
                ("web", "die", "t2"),
                ("web", "start", "t3"),
            ],
        )

    def test_ownMarksSurviveRestart(self) -> None:
        """
        A service pycm created and told just before the daemon died is not
        created again by the first snapshot after the restart.
        """
        journal = SnapshotJournal(self.path)
        journal.advance(snap(1.0))
        journal.mark(created=("web",))
        journal.telling(created=("web",))
        restarted = SnapshotJournal(self.path)
        self.assertEqual(restarted.advance(snap(2.0, service("web"))), [])
        self.assertFalse(restarted.own)

    def test_untoldNotKept(self) -> None:
        """
        A change of pycm's whose events the daemon had not told when it died
        is told by the first snapshot after the restart; before the restart,
        it is the backend's to tell.
        """
        journal = SnapshotJournal(self.path)
        journal.advance(snap(1.0, service("web")))
        journal.mark(updated=(("id-web", 10),))
        self.assertEqual(journal.advance(snap(2.0, service("web"))), [])
        restarted = SnapshotJournal(self.path)
        events = restarted.advance(snap(3.0, service("web", desired=0, version=11)))
        self.assertEqual(actions(events), [("web", "scale")])

    def test_tellingSeen(self) -> None:
        """A change a snapshot already showed is not kept when told after."""
        journal = SnapshotJournal(self.path)
        journal.advance(snap(1.0))
        journal.mark(created=("web",))
        journal.advance(snap(2.0, service("web")))
        journal.telling(created=("web",))
        self.assertFalse(journal.told)
        self.assertFalse(SnapshotJournal(self.path).own)

    def test_unmark(self) -> None:
        """A change whose request failed is told when another client makes it."""
        journal = SnapshotJournal(self.path)
        journal.advance(snap(1.0, service("web")))
        journal.mark(updated=(("id-web", 10),))
        journal.telling(updated=(("id-web", 10),))
        journal.unmark(updated=(("id-web", 10),))
        self.assertFalse(SnapshotJournal(self.path).own)
        events = journal.advance(snap(2.0, service("web", version=11, spec={"Env": ["A=1"]})))
        self.assertEqual(actions(events), [("web", "update")])

    def test_writtenBeforeHandedOn(self) -> None:
        """
        When L{SnapshotJournal.advance} returns its events, the file
        already holds the snapshot they came from.
        """
        journal = SnapshotJournal(self.path)
        journal.advance(snap(1.0, service("web")))
        s2 = snap(2.0, service("web", task("t1")))
        journal.advance(s2)
        with open(self.path, "rb") as f:
            baseline = decode(f.read())[0]
        self.assertEqual(baseline, stored(s2))

    def test_notRewritten(self) -> None:
        """A snapshot with nothing new (only its time) does not write the journal again."""
        journal = SnapshotJournal(self.path)
        journal.advance(snap(1.0, service("web", task("t1"))))
        os.utime(self.path, (0, 0))
        journal.advance(snap(2.0, service("web", task("t1"))))
        self.assertEqual(os.stat(self.path).st_mtime, 0)
        journal.advance(snap(3.0, service("web", exited("t1", 1, 2.5))))
        self.assertNotEqual(os.stat(self.path).st_mtime, 0)

    def test_specsAcrossRestart(self) -> None:
        """
        The journal keeps each spec's digest: after a restart, a service
        whose spec another client changed is updated, one only at a new
        version is not.
        """
        journal = SnapshotJournal(self.path)
        spec = {"Labels": {"a": "1"}}
        journal.advance(snap(1.0, service("web", spec=spec), service("db", spec=spec)))
        restarted = SnapshotJournal(self.path)
        later = snap(
            2.0,
            service("web", version=11, spec={"Labels": {"a": "2"}}),
            service("db", version=11, spec=spec),
        )
        self.assertEqual(actions(restarted.advance(later)), [("web", "update")])

    def test_roundTrip(self) -> None:
        """L{decode} gives back what L{encode} was given (specs and time aside)."""
        s = Snapshot(
            0.0,
            {"web": service("web", task("t1", node=None, slot=None), exited("t0", 2, 2.5))},
            frozenset({"worker"}),
        )
        own = OwnChanges(
            frozenset({"a", "a2"}),
            frozenset({("b", "id-b")}),
            frozenset({("id-c", 4)}),
            frozenset({("a", "id-a")}),
        )
        owed = [(("created", "a"), ContainerEvent(Action.SCALE, "a", 2.0, replicas=3))]
        due = [(None, owed[0][1])]
        self.assertEqual(decode(encode(s, own, owed)), (stored(s), own, due))
        self.assertEqual(decode(encode(None, own)), (None, own, []))

    def assertIgnored(self, logged: Logged, journal: SnapshotJournal) -> None:
        self.assertIsNone(journal.baseline)
        self.assertTrue(logged.warned("ignoring " + self.path))
        # Nothing doubled: the first snapshot after it tells nothing...
        self.assertEqual(journal.advance(snap(1.0, service("web", task("t1")))), [])
        # ...and the journal is sound again.
        self.assertIsNotNone(SnapshotJournal(self.path).baseline)

    def test_damaged(self) -> None:
        """
        A journal that is not JSON, of another format, or whose fields have
        the wrong types, is ignored with a warning: no baseline, so nothing
        is told twice; the next write replaces it.
        """
        good = encode(snap(1.0, service("web", task("t1"))), OwnChanges()).decode()
        for content in (
            b"\x00garbage{",
            b"[]",
            good.replace('"format":1', '"format":2').encode(),
            good.replace('"version":10', '"version":"10"').encode(),
            good.replace('"exit_code":0', '"exit_code":true').encode(),
            good[: len(good) // 2].encode(),
            # A time no float holds, one that is not a number, JSON nested
            # past the parser's recursion, a file too long to read whole.
            good.replace('"updated":1.0', '"updated":1' + "0" * 400, 1).encode(),
            good.replace('"updated":1.0', '"updated":NaN', 1).encode(),
            good.replace('"updated":1.0', '"updated":Infinity', 1).encode(),
            good.replace('"owed":[]', '"owed":[{"action":"die"}]').encode(),
            b'{"format":1,"own":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
            good.encode() + b" " * MAX_BYTES,
        ):
            with open(self.path, "wb") as f:
                f.write(content)
            logged = Logged(self)
            self.assertIgnored(logged, SnapshotJournal(self.path))

    def test_plantedLink(self) -> None:
        """
        A link planted in the journal's place is not followed: ignored with
        a warning, and replaced (its target untouched) at the next write.
        """
        target = os.path.join(self.dir, "target")
        with open(target, "wb") as f:
            f.write(encode(snap(1.0, service("web")), OwnChanges()))
        os.symlink(target, self.path)
        self.assertIgnored(Logged(self), SnapshotJournal(self.path))
        self.assertFalse(os.path.islink(self.path))
        with open(target, "rb") as f:
            self.assertEqual(decode(f.read())[0], stored(snap(1.0, service("web"))))

    def test_fifo(self) -> None:
        """A FIFO in the journal's place is refused at once, not waited on."""
        os.mkfifo(self.path)
        self.assertIgnored(Logged(self), SnapshotJournal(self.path))

    def test_unwritable(self) -> None:
        """A journal that cannot be written is logged once; the events are still told."""
        logged = Logged(self)
        journal = SnapshotJournal(os.path.join(self.dir, "missing", JOURNAL_FILE))
        journal.advance(snap(1.0, service("web", task("t1", "pending", containerId=None))))
        events = journal.advance(snap(2.0, service("web", task("t1"))))
        self.assertEqual(actions(events), [("web", "start", "t1")])
        self.assertTrue(logged.warned("cannot write"))

    def test_inMemory(self) -> None:
        """Without a path the journal keeps the baseline in memory only."""
        journal = SnapshotJournal()
        journal.advance(snap(1.0, service("web", task("t1", "pending", containerId=None))))
        self.assertEqual(
            actions(journal.advance(snap(2.0, service("web", task("t1"))))),
            [("web", "start", "t1")],
        )


class OwnChangesJournalTests(SynchronousTestCase):
    """
    L{SnapshotJournal}'s marks of pycm's own changes across the races of
    a look with the backend's telling, a service removed before it was
    seen, and the daemon killed between the two.
    """

    def setUp(self) -> None:
        self.dir = self.mktemp()
        os.mkdir(self.dir, 0o700)
        self.path = os.path.join(self.dir, JOURNAL_FILE)
        self.clock = Clock()
        self.clock.advance(10)

    def journal(self) -> SnapshotJournal:
        return SnapshotJournal(self.path, self.clock)

    def test_seenBeforeToldSurvivesKill(self) -> None:
        """
        pycm's create seen by a look before the backend told it, then the
        daemon killed before it told it: the first look after the restart
        tells it (once).
        """
        journal = self.journal()
        journal.advance(snap(1.0))
        journal.mark(created=("web",))
        self.assertEqual(journal.advance(snap(2.0, service("web"))), [])
        restarted = self.journal()
        self.assertEqual(actions(restarted.advance(snap(3.0, service("web")))), [("web", "create")])
        self.assertEqual(self.journal().advance(snap(4.0, service("web"))), [])

    def test_seenBeforeToldThenTold(self) -> None:
        """The backend tells a change a look saw first: the journal then owes it no more."""
        journal = self.journal()
        journal.advance(snap(1.0, service("web")))
        journal.mark(updated=(("id-web", 10),))
        self.assertEqual(journal.advance(snap(2.0, service("web", version=11, desired=3))), [])
        journal.telling(updated=(("id-web", 10),))
        self.assertEqual(
            self.journal().advance(snap(3.0, service("web", version=11, desired=3))), []
        )
        self.assertEqual(journal.advance(snap(3.0, service("web", version=11, desired=3))), [])

    def test_seenThenFailed(self) -> None:
        """
        A change a look saw whose request then failed (it happened after
        all): the next look tells it, as another client's.
        """
        journal = self.journal()
        journal.advance(snap(1.0, service("web")))
        journal.mark(removed=(("web", "id-web"),))
        self.assertEqual(journal.advance(snap(2.0)), [])
        journal.unmark(removed=(("web", "id-web"),))
        self.assertEqual(actions(journal.advance(snap(3.0))), [("web", "destroy")])
        self.assertEqual(journal.advance(snap(4.0)), [])

    def test_toldCreateRemovedUnseen(self) -> None:
        """
        pycm creates and tells C{web}; another client removes it before a
        look saw it: the first look begun after the telling tells its
        destroy, and a later C{web} of another client's is created.
        """
        journal = self.journal()
        journal.advance(snap(1.0))
        journal.mark(created=("web",))
        journal.identify("web", "id-mine")
        journal.telling(created=("web",))
        # A look begun before the telling, answered after: not yet seen.
        self.assertEqual(journal.advance(snap(9.0)), [])
        self.clock.advance(1)
        self.assertEqual(actions(journal.advance(snap(11.0))), [("web", "destroy")])
        self.assertFalse(journal.own)
        other = service("web", id="id-other")
        self.assertEqual(actions(journal.advance(snap(12.0, other))), [("web", "create")])

    def test_toldCreateReplacedUnseen(self) -> None:
        """
        pycm's told create never seen, replaced by another client's service
        of that name before the next look: its destroy, then the other's
        create (its id tells them apart, whatever the looks' times).
        """
        journal = self.journal()
        journal.advance(snap(1.0))
        journal.mark(created=("web",))
        journal.identify("web", "id-mine")
        journal.telling(created=("web",))
        other = service("web", id="id-other")
        self.assertEqual(
            actions(journal.advance(snap(9.0, other))), [("web", "destroy"), ("web", "create")]
        )
        self.assertFalse(journal.own)

    def test_toldCreateRemovedAcrossRestart(self) -> None:
        """
        pycm's told create, never seen, the daemon then killed: the first
        look after the restart that does not show it tells its destroy.
        """
        journal = self.journal()
        journal.advance(snap(1.0))
        journal.mark(created=("web",))
        journal.identify("web", "id-mine")
        journal.telling(created=("web",))
        restarted = self.journal()
        self.assertEqual(actions(restarted.advance(snap(2.0))), [("web", "destroy")])
        self.assertEqual(self.journal().advance(snap(3.0)), [])

    def test_toldCreateSeen(self) -> None:
        """pycm's told create, then seen with its id: no event, no mark left."""
        journal = self.journal()
        journal.advance(snap(1.0))
        journal.mark(created=("web",))
        journal.identify("web", "id-web")
        journal.telling(created=("web",))
        self.clock.advance(1)
        self.assertEqual(journal.advance(snap(11.0, service("web"))), [])
        self.assertFalse(journal.own)
        self.assertFalse(self.journal().own)


class ControlIdentifiesTests(SynchronousTestCase):
    """
    L{ServiceControl.create} hands the new service's id to the journal, so
    that pycm's create is told apart from another client's of its name.
    """

    def test_identified(self) -> None:
        """Once the manager answers, the journal's create mark has the service's id."""
        clock = Clock()
        clock.advance(1_700_000_000)
        engine = FakeSwarmEngine(clock)
        journal = SnapshotJournal(clock=clock)
        control = ServiceControl(clock, engine, journal=journal)
        body = {
            "Name": "web",
            "TaskTemplate": {"ContainerSpec": {"Image": "busybox", "Args": ["true"]}},
            "Mode": {"Replicated": {"Replicas": 0}},
        }
        sid = self.successResultOf(settleClock(clock, control.create("web", body)))
        self.assertEqual(journal.own.createdIds, {("web", sid)})
        self.addCleanup(lambda: self.successResultOf(settleClock(clock, engine.close())))
