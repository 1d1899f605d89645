"""
Tests for what the daemon knows of scaling backends (swarm): the replica
fields of containers, events and log lines, the C{--replicas} and
C{--constraint} options, the C{scale} command, and the event store's
C{detail} column.  The swarm backend's own tests are in test_swarm_*.
"""

from __future__ import annotations

import os
import sqlite3
from typing import Any

import attrs
from twisted.internet.defer import Deferred, succeed
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from pycm.capabilities import ALL_OPTIONS, SCALING_OPTIONS, Capabilities
from pycm.errors import BadRequest
from pycm.interfaces import IScalable
from pycm.model import (
    Action,
    Container,
    ContainerEvent,
    ContainerSpec,
    LogLine,
    Replicas,
    Task,
)
from pycm.store import SQLiteStore
from pycm.testing.server import FakeServer


def container(**fields: Any) -> Container:
    values: dict[str, Any] = dict(
        name="web", id="abc", backend="swarm", image="busybox", command=("sleep", "9"),
        state="running", created=0.0,
    )
    values.update(fields)
    return Container(**values)


class ReplicaFieldsTests(SynchronousTestCase):
    """The JSON of containers, events and log lines with and without replicas."""

    def test_noReplicasNoNewKeys(self) -> None:
        """A container without replicas (every other backend's) has no new key."""
        web = container()
        self.assertNotIn("replicas", web.summary())
        self.assertFalse({"replicas", "tasks", "constraints"} & set(web.detail()))

    def test_replicasInSummaryTasksInDetail(self) -> None:
        """C{replicas} is in the summary; the tasks and constraints only in inspect's detail."""
        task = Task("t1", "node-a", "failed", exitCode=3, error="task: non-zero exit (3)")
        web = container(
            replicas=Replicas(running=1, desired=2), tasks=(task,),
            constraints=("node.role==worker",),
        )
        self.assertEqual(web.summary()["replicas"], {"running": 1, "desired": 2})
        self.assertNotIn("tasks", web.summary())
        detail = web.detail()
        self.assertEqual(
            detail["tasks"],
            [{"id": "t1", "node": "node-a", "state": "failed", "exit_code": 3,
              "error": "task: non-zero exit (3)"}],
        )
        self.assertEqual(detail["constraints"], ["node.role==worker"])

    def test_eventFields(self) -> None:
        """An event carries node, task and replicas only when it has them."""
        plain = ContainerEvent(Action.DIE, "web", 0.0, exitCode=1, id=4).toJSON()
        self.assertFalse({"node", "task", "replicas"} & set(plain))
        die = ContainerEvent(Action.DIE, "web", 0.0, exitCode=1, id=5, node="n1", task="t1")
        self.assertEqual((die.toJSON()["node"], die.toJSON()["task"]), ("n1", "t1"))
        scale = ContainerEvent(Action.SCALE, "web", 0.0, id=6, replicas=3).toJSON()
        self.assertEqual(scale["replicas"], 3)
        self.assertNotIn("exit_code", scale)

    def test_logLineTags(self) -> None:
        """A log line names its task and node only when it has them."""
        self.assertEqual(set(LogLine(0.0, "stdout", "hi").toJSON()), {"time", "stream", "line"})
        tagged = LogLine(0.0, "stdout", "hi", task="t1", node="n1").toJSON()
        self.assertEqual((tagged["task"], tagged["node"]), ("t1", "n1"))

    def test_optionsUsed(self) -> None:
        """C{--replicas} and C{--constraint} are used options when set (0 replicas too)."""
        self.assertEqual(
            ContainerSpec("web", replicas=0, constraints=("node.role==worker",)).optionsUsed(),
            {"replicas", "constraint"},
        )
        self.assertEqual(ContainerSpec("web").optionsUsed(), set())
        self.assertFalse(SCALING_OPTIONS & ALL_OPTIONS)

    def test_refuseUnsupported(self) -> None:
        """A backend without the scaling options refuses them, naming each."""
        capabilities = Capabilities(ALL_OPTIONS)
        spec = ContainerSpec("web", replicas=2, constraints=("node.role==worker",))
        error = self.assertRaises(BadRequest, capabilities.refuseUnsupported, "process", spec)
        self.assertIn("--constraint, --replicas", str(error))
        Capabilities(ALL_OPTIONS | SCALING_OPTIONS).refuseUnsupported("swarm", spec)


@implementer(IScalable)
@attrs.define
class ScalingMemory:
    """
    The memory backend with a C{scale} that records its calls (the
    command's own handling is under test, not a backend's scaling).
    """

    backend: Any
    calls: list[tuple[str, int]] = attrs.field(factory=list)
    capabilities: Capabilities = Capabilities(ALL_OPTIONS | SCALING_OPTIONS)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.backend, name)

    def scale(self, name: str, replicas: int) -> Deferred[Container]:
        self.calls.append((name, replicas))
        return succeed(container(name=name, replicas=Replicas(replicas, replicas)))


class ScaleCommandTests(SynchronousTestCase):
    """The C{scale} command and the scaling options, through the daemon's protocol."""

    def setUp(self) -> None:
        self.server = FakeServer()
        self.conn = self.server.connect()

    def test_backendThatCannotScale(self) -> None:
        """The memory backend cannot scale: bad_request saying which backend does."""
        self.conn.ok("run web")
        kind, (code, message) = self.conn.request("scale web 3")
        self.assertEqual((kind, code), ("ERR", "bad_request"))
        self.assertIn("memory backend cannot scale", message)
        self.assertIn("swarm", message)

    def test_backendBeforeCount(self) -> None:
        """
        On a backend that cannot scale, any count is refused for the backend
        (not for the count), and C{info} does not list C{scale}.
        """
        kind, (code, message) = self.conn.request("scale web -1")
        self.assertIn("memory backend cannot scale", message)
        self.assertNotIn("scale", self.conn.ok("info")["capabilities"]["commands"])
        self.server.state.backend = ScalingMemory(self.server.backend)
        self.assertIn("scale", self.conn.ok("info")["capabilities"]["commands"])

    def test_badCounts(self) -> None:
        """A count that is not a whole number, 0 or more, is bad_request; so are missing words."""
        self.server.state.backend = ScalingMemory(self.server.backend)
        for line in ("scale web -1", "scale web 1.5", "scale web x", "scale web",
                     "scale web 1 2", "scale web 99999999999"):
            self.assertEqual(self.conn.err(line), "bad_request", line)

    def test_scaleReachesTheBackend(self) -> None:
        """On a scaling backend, C{scale NAME N} calls its C{scale} and replies the container."""
        scaling = ScalingMemory(self.server.backend)
        self.server.state.backend = scaling
        reply = self.conn.ok("scale web 0")
        self.assertEqual(scaling.calls, [("web", 0)])
        self.assertEqual(reply["replicas"], {"running": 0, "desired": 0})
        self.assertEqual(self.conn.err("scale bad/name 1"), "invalid_name")

    def test_scalingOptionsRefusedWhereUnsupported(self) -> None:
        """C{run --replicas}/C{--constraint} on the memory backend: bad_request naming each."""
        kind, (code, message) = self.conn.request("run --replicas=2 web")
        self.assertEqual(code, "bad_request")
        self.assertIn("--replicas", message)
        kind, (code, message) = self.conn.request("create --constraint=node.role==worker web")
        self.assertIn("--constraint", message)
        self.assertEqual(self.conn.err("inspect web"), "not_found")

    def test_optionGrammar(self) -> None:
        """A bad replica count or constraint shape is refused for what it is."""
        kind, (code, message) = self.conn.request("run --replicas=two web")
        self.assertIn("whole number", message)
        kind, (code, message) = self.conn.request("run --constraint=node.role web")
        self.assertIn("KEY==VALUE", message)

    def test_scaleIsInHelp(self) -> None:
        """C{help scale} shows its usage."""
        self.assertEqual(self.conn.ok("help scale")["usage"], "scale NAME N")


class EventDetailStoreTests(SynchronousTestCase):
    """The event store keeps node, task and replicas in its C{detail} column."""

    def setUp(self) -> None:
        self.path = os.path.join(self.mktemp() + ".d", "events.db")
        os.makedirs(os.path.dirname(self.path))

    def test_roundTrip(self) -> None:
        """Stored events come back with their node, task and replicas (and none added)."""
        store = SQLiteStore(self.path)
        store.append(ContainerEvent(Action.DIE, "web", 1.0, exitCode=2, id=1, node="n", task="t"))
        store.append(ContainerEvent(Action.SCALE, "web", 2.0, id=2, replicas=5))
        store.append(ContainerEvent(Action.START, "db", 3.0, id=3))
        store.close()
        reopened = SQLiteStore(self.path)
        self.addCleanup(reopened.close)
        die, scale, start = reopened.since(0)
        self.assertEqual((die.node, die.task, die.exitCode), ("n", "t", 2))
        self.assertEqual(scale.replicas, 5)
        self.assertEqual((start.node, start.task, start.replicas), (None, None, None))

    def test_olderFileGainsTheColumn(self) -> None:
        """A file from before the column opens, keeps its events and stores new details."""
        store = SQLiteStore(self.path)
        store.append(ContainerEvent(Action.START, "web", 1.0, id=1))
        store.close()
        db = sqlite3.connect(self.path)
        db.execute("ALTER TABLE events DROP COLUMN detail")
        db.commit()
        db.close()
        reopened = SQLiteStore(self.path)
        self.addCleanup(reopened.close)
        reopened.append(ContainerEvent(Action.SCALE, "web", 2.0, id=2, replicas=1))
        old, new = reopened.since(0)
        self.assertEqual((old.action, old.replicas, new.replicas), ("start", None, 1))

    def test_damagedDetail(self) -> None:
        """A damaged detail (not JSON, wrong types) is dropped; the event is kept."""
        store = SQLiteStore(self.path)
        store.append(ContainerEvent(Action.DIE, "web", 1.0, exitCode=1, id=1, node="n"))
        store.append(ContainerEvent(Action.SCALE, "web", 1.0, id=2, replicas=2))
        store.close()
        db = sqlite3.connect(self.path)
        db.execute("UPDATE events SET detail = '{not json' WHERE id = 1")
        db.execute("""UPDATE events SET detail = '{"replicas":"2","node":7}' WHERE id = 2""")
        db.commit()
        db.close()
        reopened = SQLiteStore(self.path)
        self.addCleanup(reopened.close)
        first, second = reopened.since(0)
        self.assertEqual((first.exitCode, first.node), (1, None))
        self.assertEqual((second.replicas, second.node), (None, None))

