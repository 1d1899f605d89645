"""
A run the kernel's OOM killer hit is told as such: the count of its memory
cgroup (v2 C{memory.events}, v1 C{memory.oom_control} or C{memory.failcnt})
read at its end, before the group goes; the container's C{oom_killed}, an
C{oom} event and the C{die} event's C{oom_killed}; what the client shows.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import Clock
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase

from pycm.backends.docker.backend import DockerBackend
from pycm.backends.docker.translate import containerFromInspect
from pycm.backends.memory import MemoryBackend, MemoryRecordStore, SimulatedRuntime
from pycm.backends.process import procfs
from pycm.backends.process.backend import makeBackend
from pycm.backends.process.cgroupdetect import detect
from pycm.backends.process.cgroups import Cgroups, OomCount, parseOomKills
from pycm.backends.process.output import OutputPacer
from pycm.backends.process.run import ProcessRun, RunProtocol
from pycm.backends.supervisor.records import Record
from pycm.client.format import containerTable, formatEvent
from pycm.eventdetail import decodeDetail, encodeDetail
from pycm.model import Action, ContainerEvent, ContainerSpec, State
from pycm.store import SQLiteStore
from pycm.testing import EventRecorder
from tests.test_process import FakeProcessTransport, RecordingObserver, ended

V2_EVENTS = "low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 0\n"
V1_OOM_CONTROL = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n"
#: A v1 kernel before 4.13: no oom_kill line.
OLD_OOM_CONTROL = "oom_kill_disable 0\nunder_oom 0\n"


class ParseTests(SynchronousTestCase):
    """The files' C{oom_kill} line, and what a count says at a run's end."""

    def test_parseOomKills(self) -> None:
        """v2 memory.events and v1 memory.oom_control give their oom_kill; else None."""
        self.assertEqual(parseOomKills(V2_EVENTS), 1)
        self.assertEqual(parseOomKills(V1_OOM_CONTROL), 3)
        self.assertIsNone(parseOomKills(OLD_OOM_CONTROL))
        self.assertIsNone(parseOomKills(""))
        self.assertIsNone(parseOomKills("oom_kill x\n"))

    def test_killedSince(self) -> None:
        """
        An exact count says an OOM kill when it grew since the run's start
        (a group an earlier run left keeps its count), whatever the exit.
        """
        self.assertTrue(OomCount(1).killedSince(None, 0))
        self.assertTrue(OomCount(1).killedSince(OomCount(0), -9))
        self.assertFalse(OomCount(0).killedSince(None, -9))
        self.assertFalse(OomCount(2).killedSince(OomCount(2), -9))
        self.assertTrue(OomCount(3).killedSince(OomCount(2), 1))

    def test_failcntNeedsSigkill(self) -> None:
        """
        v1's memory.failcnt (the limit was hit) says an OOM kill only with
        a main process ended by SIGKILL: reclaim alone also counts there.
        """
        self.assertTrue(OomCount(5, exact=False).killedSince(OomCount(2, exact=False), -9))
        self.assertFalse(OomCount(5, exact=False).killedSince(OomCount(2, exact=False), 0))
        self.assertFalse(OomCount(2, exact=False).killedSince(OomCount(2, exact=False), -9))


class FakeTreeTests(SynchronousTestCase):
    """L{Cgroups.oomCount} reads the group's files (a fake tree)."""

    def group(self, *files: tuple[str, str]) -> str:
        root = self.mktemp()
        os.makedirs(os.path.join(root, "web-1"))
        for name, text in files:
            with open(os.path.join(root, "web-1", name), "w") as f:
                f.write(text)
        return root

    def test_v2(self) -> None:
        """cgroup v2: memory.events' oom_kill."""
        root = self.group(("memory.events", V2_EVENTS))
        self.assertEqual(Cgroups(2, {"memory": root}, {}).oomCount("web-1"), OomCount(1))

    def test_v2Tracking(self) -> None:
        """cgroup v2 without a limit: the tracking group's memory.events, if it has one."""
        root = self.group(("memory.events", V2_EVENTS))
        self.assertEqual(Cgroups(2, {}, {}, tracking=root).oomCount("web-1"), OomCount(1))

    def test_v1(self) -> None:
        """cgroup v1: memory.oom_control's oom_kill."""
        root = self.group(("memory.oom_control", V1_OOM_CONTROL), ("memory.failcnt", "9\n"))
        self.assertEqual(Cgroups(1, {"memory": root}, {}).oomCount("web-1"), OomCount(3))

    def test_v1Old(self) -> None:
        """A v1 kernel without oom_kill: memory.failcnt, not exact."""
        root = self.group(("memory.oom_control", OLD_OOM_CONTROL), ("memory.failcnt", "9\n"))
        self.assertEqual(
            Cgroups(1, {"memory": root}, {}).oomCount("web-1"), OomCount(9, exact=False)
        )

    def test_none(self) -> None:
        """No memory group (no limit, v1 tracking), or one gone: None."""
        root = self.group()
        self.assertIsNone(Cgroups(1, {"memory": root}, {}).oomCount("web-1"))
        self.assertIsNone(Cgroups(1, {"memory": root}, {}).oomCount("gone"))
        self.assertIsNone(Cgroups(1, {}, {}, tracking=root).oomCount("web-1"))


class RunProtocolTests(SynchronousTestCase):
    """The run reads its group's count at the main's exit, before removing it."""

    def setUp(self) -> None:
        self.patch(procfs, "signalGroup", lambda pgid, sig: True)
        self.calls: list[tuple[str, str]] = []
        self.count: OomCount | None = OomCount(0)

    def oomCount(self, group: str) -> OomCount | None:
        self.calls.append(("count", group))
        return self.count

    def release(self, group: str) -> bool:
        self.calls.append(("release", group))
        return True

    def protocol(self, observer: RecordingObserver, before: OomCount | None) -> RunProtocol:
        """A protocol of a run whose group's count is C{before} as it starts."""
        self.count = before
        clock = Clock()
        protocol = RunProtocol(
            observer,
            clock=clock,
            pacer=OutputPacer(clock),
            sweepMarked=lambda runId, notBefore, name: Deferred(),
            killCgroup=lambda group: None,
            releaseCgroup=self.release,
            group="m1-0123",
            oomCount=self.oomCount,
        )
        protocol.makeConnection(FakeProcessTransport(99999999))  # type: ignore[arg-type]
        protocol.run = ProcessRun(99999999, None, "m1-0123", lambda group: None)
        return protocol

    def test_oomKilled(self) -> None:
        """
        A count that grew since the start marks the run C{oomKilled},
        read before the group's release, and the exit is told after.
        """
        observer = RecordingObserver()
        protocol = self.protocol(observer, OomCount(0))
        self.count = OomCount(1)
        protocol.processExited(ended(signum=signal.SIGKILL))
        self.assertEqual(
            self.calls, [("count", "m1-0123"), ("count", "m1-0123"), ("release", "m1-0123")]
        )
        protocol.processEnded(ended(signum=signal.SIGKILL))
        assert protocol.run is not None
        self.assertTrue(protocol.run.oomKilled)
        self.assertEqual(observer.exits, [-9])

    def test_notOomKilled(self) -> None:
        """A kill -9 with no OOM kill in the group leaves C{oomKilled} False."""
        observer = RecordingObserver()
        protocol = self.protocol(observer, OomCount(2))
        self.count = OomCount(2)
        protocol.processExited(ended(signum=signal.SIGKILL))
        protocol.processEnded(ended(signum=signal.SIGKILL))
        assert protocol.run is not None
        self.assertFalse(protocol.run.oomKilled)


class SupervisorTests(SynchronousTestCase):
    """
    The supervisor carries a run's C{oomKilled} to the container, its
    record and its events (simulated runs, marked by hand as the process
    runtime marks them: the memory backend has no OOM killer).
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.store = MemoryRecordStore()
        self.runtime = SimulatedRuntime(self.clock)
        self.backend = MemoryBackend(self.clock, runtime=self.runtime, recordStore=self.store)
        self.successResultOf(self.backend.open())
        self.recorder = EventRecorder()
        self.backend.addObserver(self.recorder)

    def oomKill(self, name: str) -> None:
        """What the kernel does: SIGKILL, the run saying its group's count grew."""
        pid = self.successResultOf(self.backend.inspect(name)).pid
        run: Any = self.runtime.runs[pid]
        run.oomKilled = True
        run.signal(signal.SIGKILL)
        self.clock.advance(1)

    def test_toldEverywhere(self) -> None:
        """
        inspect and list say C{oom_killed}, an C{oom} event comes before
        the C{die}, whose JSON says C{oom_killed}; the record keeps it.
        """
        self.successResultOf(
            self.backend.createAndStart(ContainerSpec("m1", command=("sleep", "1000")))
        )
        self.oomKill("m1")
        container = self.successResultOf(self.backend.inspect("m1"))
        self.assertEqual((container.state, container.exitCode), (State.EXITED, -9))
        self.assertIs(container.detail()["oom_killed"], True)
        self.assertIs(container.summary()["oom_killed"], True)
        actions = self.recorder.actions("m1")
        self.assertEqual(actions[-2:], [Action.OOM, Action.DIE])
        die = self.recorder.events[-1]
        self.assertEqual(die.toJSON()["oom_killed"], True)
        self.assertEqual(die.toJSON()["exit_code"], -9)
        saved = self.store.load()
        self.assertEqual([r["oomKilled"] for r in saved], [True])
        self.assertTrue(Record.fromDict(saved[0]).toContainer().oomKilled)

    def test_clearedByNextStart(self) -> None:
        """The next run starts without it, as Docker's OOMKilled."""
        self.successResultOf(
            self.backend.createAndStart(ContainerSpec("m1", command=("sleep", "1000")))
        )
        self.oomKill("m1")
        self.successResultOf(self.backend.start("m1"))
        container = self.successResultOf(self.backend.inspect("m1"))
        self.assertIs(container.detail()["oom_killed"], False)
        self.assertNotIn("oom_killed", container.summary())

    def test_killIsNotOom(self) -> None:
        """A kill -9 (the run's count did not grow) has no oom event nor field."""
        self.successResultOf(
            self.backend.createAndStart(ContainerSpec("m1", command=("sleep", "1000")))
        )
        self.successResultOf(self.backend.kill("m1", signal.SIGKILL))
        self.clock.advance(1)
        container = self.successResultOf(self.backend.inspect("m1"))
        self.assertEqual(container.exitCode, -9)
        self.assertIs(container.detail()["oom_killed"], False)
        self.assertNotIn(Action.OOM, self.recorder.actions("m1"))
        self.assertNotIn("oom_killed", self.recorder.events[-1].toJSON())


class EventStoreTests(SynchronousTestCase):
    """The die's C{oom_killed} is kept in the event log's detail column."""

    def test_detail(self) -> None:
        """Encoded only when set; decoded as a boolean, nothing else."""
        die = ContainerEvent(Action.DIE, "m1", 1.0, -9, oomKilled=True)
        self.assertEqual(decodeDetail(encodeDetail(die)), {"oomKilled": True})
        self.assertIsNone(encodeDetail(ContainerEvent(Action.DIE, "m1", 1.0, -9)))
        self.assertEqual(decodeDetail('{"oomKilled":1}'), {})
        self.assertEqual(decodeDetail('{"replicas":true}'), {})

    def test_replayed(self) -> None:
        """An C{events --since} replay from the store says it as it was told."""
        store = SQLiteStore(self.mktemp())
        self.addCleanup(store.close)
        store.append(ContainerEvent(Action.DIE, "m1", 1.0, -9, id=1, oomKilled=True))
        [event] = store.since(0)
        self.assertEqual(event.toJSON()["oom_killed"], True)


class ClientTests(SynchronousTestCase):
    """What C{pycm ls} and C{pycm events} show a person."""

    def test_list(self) -> None:
        """The STATE column says C{exited (OOM killed)}."""
        row = {"name": "m1", "state": "exited", "exit_code": -9, "oom_killed": True}
        table = containerTable([row, {**row, "name": "m2", "oom_killed": False}], 0.0)
        self.assertIn("exited (OOM killed)", table[1])
        self.assertNotIn("OOM", table[2])

    def test_event(self) -> None:
        """A die event: C{die (exit code -9, OOM killed)}."""
        event = {"type": "container", "id": 7, "action": "die", "name": "m1",
                 "time": "t", "exit_code": -9, "oom_killed": True}  # fmt: skip
        self.assertTrue(formatEvent(event).endswith("m1  die (exit code -9, OOM killed)"))
        del event["oom_killed"]
        self.assertTrue(formatEvent(event).endswith("m1  die (exit code -9)"))


class DockerTests(SynchronousTestCase):
    """
    The Docker backend says what the engine says: C{State.OOMKilled} in
    inspect, its C{oom} event, and the C{die} after it.
    """

    def test_inspect(self) -> None:
        """An exited container the engine says was OOM-killed is C{oom_killed}."""
        from tests.test_docker_units import inspectData

        state = {
            "Status": "exited",
            "ExitCode": 137,
            "OOMKilled": True,
            "FinishedAt": "2026-11-29T13:00:02Z",
        }
        container = containerFromInspect(inspectData(State=state))
        self.assertEqual((container.exitCode, container.oomKilled), (-9, True))
        state["OOMKilled"] = False
        self.assertFalse(containerFromInspect(inspectData(State=state)).oomKilled)

    def test_events(self) -> None:
        """The engine's oom, then die 137: C{oom}, then C{die} -9 with C{oom_killed}."""
        from tests.test_docker_podman import ScriptedEngine, podmanEvent

        clock = Clock()
        backend = DockerBackend(clock, ScriptedEngine(podman=False))
        backend._events.connected = True
        seen: list[Any] = []
        backend.addObserver(seen.append)
        backend._teller.received(podmanEvent("oom", None, 5))
        backend._teller.received(podmanEvent("die", 137, 6))
        self.assertEqual([(e.action, e.exitCode, e.oomKilled) for e in seen],
                         [("oom", None, None), ("die", -9, True)])  # fmt: skip
        backend._teller.received(podmanEvent("die", 137, 7))
        self.assertIsNone(seen[-1].oomKilled)


class RealOomTests(TestCase):
    """
    The process backend on this machine's cgroups: a container that
    allocates past its --memory is told OOM-killed (root with a usable
    memory controller; skipped elsewhere, as the other cgroup tests).
    """

    timeout = 60

    @inlineCallbacks
    def test_oomKilled(self) -> None:
        """
        python3 appending megabytes under --memory=20m exits -9, and inspect,
        the oom event and the die event say the OOM killer did it; a
        kill -9 of another container with a limit does not.
        """
        cgroups = detect(parent="/pycm-oom-test")
        if "memory" not in cgroups.limits:
            raise SkipTest(f"no memory limit here: {cgroups.describe()}")
        with open("/proc/swaps") as swaps:
            swapOn = len(swaps.read().splitlines()) > 1
        if swapOn and not cgroups.swapLimited:
            raise SkipTest("swap is on and not limited here: the program would swap "
                           "rather than be OOM-killed")
        backend = makeBackend(
            reactor, self.mktemp(), {"cgroups": "auto", "cgroup-parent": "/pycm-oom-test"}
        )
        yield backend.open()
        self.addCleanup(backend.close)
        recorder = EventRecorder()
        backend.addObserver(recorder)
        hog = (sys.executable, "-c",
               "x = []\nfor i in range(10000): x.append(b'a' * 1000000)")  # fmt: skip
        yield backend.createAndStart(
            ContainerSpec("m1", image="host", command=hog, memory=20 << 20)
        )
        yield backend.createAndStart(
            ContainerSpec("m2", image="host", command=("sleep", "1000"), memory=20 << 20)
        )
        yield backend.kill("m2", signal.SIGKILL)
        for name in ("m1", "m2"):
            yield backend.wait(name, "not-running")
        m1 = yield backend.inspect("m1")
        self.assertEqual((m1.state, m1.exitCode, m1.oomKilled), (State.EXITED, -9, True))
        m2 = yield backend.inspect("m2")
        self.assertEqual((m2.exitCode, m2.oomKilled), (-9, False))
        yield recorder.when(lambda events: len([e for e in events if e.action == "die"]) == 2)
        self.assertEqual(recorder.actions("m1")[-2:], [Action.OOM, Action.DIE])
        [die] = [e for e in recorder.events if e.name == "m1" and e.action == Action.DIE]
        self.assertIs(die.oomKilled, True)
        self.assertNotIn(Action.OOM, recorder.actions("m2"))
