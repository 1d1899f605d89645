"""
The swarm backend's list path kept cheap: L{pycm.timestamps.parseTime}'s
fast path, L{pycm.backends.swarm.reading.SnapshotReader} reusing the views
of what the engine reports unchanged, and the backend translating only the
services that changed.
"""

from __future__ import annotations

import copy
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from pycm.backends.swarm.reading import SnapshotReader, snapshotOf
from pycm.model import State
from pycm.testing.clock import advanceClock
from pycm.timestamps import _parseAny, parseTime
from tests.test_swarm_backend import SwarmTestCase


class ParseTimeTests(SynchronousTestCase):
    """L{parseTime}'s fast path for the engines' form agrees with datetime."""

    def test_sameAsDatetime(self) -> None:
        """Every fraction length (none to nanoseconds) reads as datetime reads it."""
        for day in ("1970-01-01", "2026-11-30", "2000-02-29", "2099-12-31", "0001-01-01"):
            for clock in ("00:00:00", "23:59:59", "12:34:56"):
                for digits in range(10):
                    fraction = "." + "987654321"[:digits] if digits else ""
                    text = f"{day}T{clock}{fraction}Z"
                    self.assertEqual(parseTime(text), _parseAny(text), text)

    def test_otherForms(self) -> None:
        """An offset other than C{Z} still reads (through datetime)."""
        self.assertEqual(parseTime("2026-11-30T23:00:00.5+01:00"), 1796076000.5)
        self.assertEqual(parseTime("2026-11-30T22:00:00.5Z"), 1796076000.5)

    def test_outOfRange(self) -> None:
        """An hour, minute, second or day out of range is a ValueError, as datetime says."""
        for text in (
            "2026-11-30T24:00:00Z",
            "2026-11-30T23:60:00Z",
            "2026-11-30T23:59:60Z",
            "2026-02-30T00:00:00Z",
        ):
            self.assertRaises(ValueError, parseTime, text)

    def test_asciiDigitsOnly(self) -> None:
        """Digits other than ASCII ones are not the engines' form (datetime judges)."""
        text = "2026-11-30T22:00:0\u0661Z"
        self.assertRaises(ValueError, _parseAny, text)
        self.assertRaises(ValueError, parseTime, text)


def _bodies() -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """One pycm service with two tasks, one other service, two nodes."""
    labels = {"io.pycm.managed": "true"}
    services = [
        {"ID": "s1", "Version": {"Index": 7}, "CreatedAt": "2026-11-30T22:00:00.1Z",
         "UpdatedAt": "2026-11-30T22:00:01.2Z",
         "Spec": {"Name": "web", "Labels": labels, "Mode": {"Replicated": {"Replicas": 2}}}},
        {"ID": "s2", "Version": {"Index": 3}, "Spec": {"Name": "db", "Labels": labels}},
    ]
    tasks = [
        {"ID": f"t{slot}", "ServiceID": "s1", "Slot": slot, "NodeID": "n1",
         "Version": {"Index": 10 + slot}, "CreatedAt": f"2026-11-30T22:00:0{slot}.5Z",
         "DesiredState": "running",
         "Status": {"State": "running", "Timestamp": f"2026-11-30T22:00:0{slot}.75Z"}}
        for slot in (1, 2)
    ]
    nodes = [{"ID": "n1", "Description": {"Hostname": "box"}, "Status": {"State": "ready"}}]
    return services, tasks, nodes


class SnapshotReaderTests(SynchronousTestCase):
    """L{SnapshotReader}: the views of what is unchanged are reused, the rest read."""

    def test_unchangedReused(self) -> None:
        """The same lists again: the same L{ServiceView} objects, equal to a fresh read."""
        reader = SnapshotReader()
        first = reader.snapshotOf(1.0, *_bodies())
        second = reader.snapshotOf(2.0, *_bodies())
        self.assertIs(second.services["web"], first.services["web"])
        self.assertIs(second.services["db"], first.services["db"])
        self.assertEqual(second, snapshotOf(2.0, *_bodies()))

    def test_taskChanged(self) -> None:
        """
        A task whose state, status time, desired state or version changed is
        read again (and its service's view is new); the others are kept.
        """
        reader = SnapshotReader()
        first = reader.snapshotOf(1.0, *_bodies())
        for change in (
            lambda t: t["Status"].update(State="complete", ContainerStatus={"ExitCode": 3}),
            lambda t: t["Status"].update(Timestamp="2026-11-30T22:05:00Z"),
            lambda t: t.update(DesiredState="shutdown"),
            lambda t: t.update(Version={"Index": 99}, Slot=5),
        ):
            services, tasks, nodes = _bodies()
            change(tasks[1])
            second = reader.snapshotOf(2.0, services, tasks, nodes)
            self.assertEqual(second, snapshotOf(2.0, services, tasks, nodes))
            self.assertIsNot(second.services["web"], first.services["web"])
            kept = [t for t in second.services["web"].tasks if t.id == "t1"]
            self.assertIs(kept[0], first.services["web"].tasks[0])
            first = reader.snapshotOf(1.0, *_bodies())

    def test_serviceChanged(self) -> None:
        """A service with a new version is read again (its spec too)."""
        reader = SnapshotReader()
        first = reader.snapshotOf(1.0, *_bodies())
        services, tasks, nodes = _bodies()
        services[0]["Version"] = {"Index": 8}
        services[0]["Spec"]["Mode"] = {"Replicated": {"Replicas": 5}}
        second = reader.snapshotOf(2.0, services, tasks, nodes)
        self.assertEqual(second.services["web"].desired, 5)
        self.assertIsNot(second.services["web"], first.services["web"])
        self.assertIs(second.services["web"].tasks[0], first.services["web"].tasks[0])

    def test_nodeRenamed(self) -> None:
        """A task's node known by another name now is read again."""
        reader = SnapshotReader()
        reader.snapshotOf(1.0, *_bodies())
        services, tasks, nodes = _bodies()
        nodes[0]["Description"]["Hostname"] = "other"
        second = reader.snapshotOf(2.0, services, tasks, nodes)
        self.assertEqual({t.node for t in second.services["web"].tasks}, {"other"})
        second = reader.snapshotOf(3.0, services, tasks, [])
        self.assertEqual({t.node for t in second.services["web"].tasks}, {"n1"})

    def test_goneForgotten(self) -> None:
        """Only what the last read saw is remembered."""
        reader = SnapshotReader()
        reader.snapshotOf(1.0, *_bodies())
        services, tasks, nodes = _bodies()
        reader.snapshotOf(2.0, services[1:], tasks[:1], nodes)
        self.assertEqual(set(reader._tasks), {"t1"})
        self.assertEqual(set(reader._services), {"s2"})

    def test_notMutated(self) -> None:
        """Reading leaves the engine's bodies as they were."""
        bodies = _bodies()
        kept = copy.deepcopy(bodies)
        reader = SnapshotReader()
        reader.snapshotOf(1.0, *bodies)
        reader.snapshotOf(2.0, *bodies)
        self.assertEqual(bodies, kept)


class TranslatedOnceTests(SwarmTestCase):
    """The backend translates a service again only when it (or its last exit) changed."""

    def test_listReusesContainers(self) -> None:
        """Two lists with nothing changed give the same containers; a change, a new one."""
        self.runService("web")
        self.runService("db")
        first = {c.name: c for c in self.run_(self.backend.list())}
        second = {c.name: c for c in self.run_(self.backend.list())}
        self.assertIs(second["web"], first["web"])
        self.assertIs(second["db"], first["db"])
        self.run_(self.backend.stop("web", 1.0))
        third = {c.name: c for c in self.run_(self.backend.list())}
        self.assertEqual(third["web"].state, State.EXITED)
        self.assertIs(third["db"], first["db"])

    def test_nodeDownSeen(self) -> None:
        """A node going down changes the container of its service at the next list."""
        self.runService("web", replicas=2)
        (before,) = self.run_(self.backend.list())
        self.assertEqual(before.replicas.toJSON(), {"running": 2, "desired": 2})
        self.engine.killNode("worker")
        advanceClock(self.clock, 30)
        (after,) = self.run_(self.backend.list())
        self.assertEqual(after.replicas.toJSON(), {"running": 1, "desired": 2})
        self.assertEqual(after.state, State.DEAD)


class ListNodesTests(SwarmTestCase):
    """
    C{list} reads the services and tasks afresh, the nodes only when they
    may have changed.  (The engine's C{request} is wrapped to record the
    paths asked for: the fake engine keeps no such record.)
    """

    def setUp(self) -> None:
        super().setUp()
        self.runService("web", replicas=2)
        self.paths: list[str] = []
        request = self.engine.request

        def recorded(method: str, path: str, *args: Any, **kw: Any) -> Any:
            self.paths.append(path)
            return request(method, path, *args, **kw)

        self.engine.request = recorded  # type: ignore[method-assign]

    def listNow(self) -> list[str]:
        """The paths a C{list} asks for at once, then its containers' task nodes."""
        d = self.backend.list()
        asked = list(self.paths)
        (web,) = self.run_(d)
        self.assertEqual({t.node for t in web.tasks}, {"manager", "worker"})
        return asked

    def test_nodesKnown(self) -> None:
        """With the nodes read since the last node event, C{list} does not ask for them."""
        self.assertEqual(self.listNow(), ["/services", "/tasks"])

    def test_nodeEvent(self) -> None:
        """After a node event (a node went down, joined, ...) C{list} reads the nodes too."""
        self.backend.watcher._engineEvent({"Type": "node", "Action": "update"})
        self.assertEqual(self.listNow(), ["/services", "/tasks", "/nodes"])
        self.paths.clear()
        self.assertEqual(self.listNow(), ["/services", "/tasks"])

    def test_eventsReconnected(self) -> None:
        """After the event stream came back (events perhaps missed), the nodes are read."""
        self.backend.watcher._eventsConnected(True)
        self.assertEqual(self.listNow(), ["/services", "/tasks", "/nodes"])

    def test_unknownNode(self) -> None:
        """A task on a node not known then: the look is made again, the nodes with it."""
        self.backend.watcher._nodes = []
        self.backend.watcher.nodeNames = {}
        self.listNow()
        self.assertEqual(self.paths[:5], ["/services", "/tasks", "/services", "/tasks", "/nodes"])

    def test_nodeDown(self) -> None:
        """A node going down (its event) shows in the next C{list}: its task is lost."""
        self.engine.killNode("worker")
        advanceClock(self.clock, 30)
        (web,) = self.run_(self.backend.list())
        self.assertEqual(web.replicas.toJSON(), {"running": 1, "desired": 2})
