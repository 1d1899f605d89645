"""
The swarm engine suite's tests of a manager's streams and signals (its
event stream and the history it replays, its services' logs, a task's
container signalled): L{SwarmStreamTests}, part of
L{pycm.testing.swarmsuite.SwarmEngineTests}.
"""

from __future__ import annotations

import re
from collections.abc import Generator
from typing import Any

from twisted.internet.defer import Deferred, inlineCallbacks

from pycm.backends.docker.engine import Stream
from pycm.backends.docker.stream import JSONLines
from pycm.testing.swarmengine import EVENTS_KEPT
from pycm.testing.swarmsuitebase import SwarmSuiteBase

_DETAILS = re.compile(
    r"^com\.docker\.swarm\.node\.id=(\w+),com\.docker\.swarm\.service\.id=(\w+),"
    r"com\.docker\.swarm\.task\.id=(\w+) (.*)$"
)


class SwarmStreamTests(SwarmSuiteBase):
    """
    A swarm manager's event stream, its services' logs and its task
    containers' signals, as the swarm backend relies on them.
    """

    @inlineCallbacks
    def test_serviceEvents(self) -> Generator[Deferred[Any], Any, None]:
        """A service's create, scale (replicas old and new) and remove are events."""
        name = yield self.create("events", self.fixture.longCommand)
        _, service = yield self.call("GET", f"/services/{name}")
        yield self.update(name, lambda s: s["Mode"]["Replicated"].update(Replicas=2))
        yield self.call("DELETE", f"/services/{name}")

        def mine() -> list[dict[str, Any]]:
            return [e for e in self.events if e["Actor"]["ID"] == service["ID"]]

        yield self.eventually(lambda: "remove" in [e["Action"] for e in mine()])
        events = mine()
        self.assertEqual([e["Action"] for e in events], ["create", "update", "remove"])
        self.assertEqual(
            events[1]["Actor"]["Attributes"],
            {"name": name, "replicas.old": "1", "replicas.new": "2"},
        )
        for event in events:
            self.assertEqual((event["Type"], event["scope"]), ("service", "swarm"))
            self.assertEqual(event["Actor"]["Attributes"]["name"], name)
            self.assertIsInstance(event["timeNano"], int)
        yield self.assertStatus(self.engine.request("GET", f"/services/{service['ID']}"), 404)
        nano = events[0]["timeNano"]
        replayed: list[dict[str, Any]] = []
        params = {"filters": {"type": ["service"]}, "since": f"{nano // 10**9}.{nano % 10**9:09d}"}
        stream: Stream = yield self.settle(
            self.engine.stream("GET", "/events", params, JSONLines(replayed.append).feed)
        )
        self.addCleanup(stream.cancel)
        yield self.eventually(lambda: len([e for e in replayed if e in events]) == 3)

    @inlineCallbacks
    def test_eventHistory(self) -> Generator[Deferred[Any], Any, None]:
        """
        A stream with C{since} replays only the manager's last 256 events
        (dockerd's C{eventsLimit}, of every kind, before the filter): the
        oldest of many are gone, the newest are there.
        """
        names = []
        for n in range(EVENTS_KEPT // 2 + 10):
            name = yield self.create(f"history{n}", self.fixture.longCommand, replicas=0)
            yield self.call("DELETE", f"/services/{name}")
            names.append(name)

        def actions(events: list[dict[str, Any]], name: str) -> list[str]:
            return [e["Action"] for e in events if e["Actor"]["Attributes"].get("name") == name]

        yield self.eventually(lambda: actions(self.events, names[-1]) == ["create", "remove"])
        nano = [e for e in self.events if e["Actor"]["Attributes"].get("name") == names[0]][0][
            "timeNano"
        ]
        replayed: list[dict[str, Any]] = []
        params = {"filters": {"type": ["service"]}, "since": f"{nano // 10**9}.{nano % 10**9:09d}"}
        stream: Stream = yield self.settle(
            self.engine.stream("GET", "/events", params, JSONLines(replayed.append).feed)
        )
        self.addCleanup(stream.cancel)
        yield self.eventually(lambda: actions(replayed, names[-1]) == ["create", "remove"])
        self.assertEqual(actions(replayed, names[0]), [])
        self.assertLessEqual(len(replayed), EVENTS_KEPT)

    @inlineCallbacks
    def test_managerContainerEvents(self) -> Generator[Deferred[Any], Any, None]:
        """
        The manager's event stream has its own task containers' events,
        labelled with their service and task.
        """
        name = f"pycms-{self.runId}-local"
        seen: list[dict[str, Any]] = []
        params = {
            "filters": {"type": ["container"], "label": [f"com.docker.swarm.service.name={name}"]}
        }
        stream: Stream = yield self.settle(
            self.engine.stream("GET", "/events", params, JSONLines(seen.append).feed)
        )
        self.addCleanup(stream.cancel)
        yield self.create(
            "local",
            self.fixture.exitCommand(0),
            constraints=(f"node.hostname=={self.fixture.managerNode}",),
        )
        yield self.eventually(lambda: "die" in [e["Action"] for e in seen])
        tasks = yield self.tasks(name)
        self.assertEqual([e["Action"] for e in seen][:2], ["create", "start"])
        die = [e for e in seen if e["Action"] == "die"][0]
        self.assertEqual(die["Actor"]["Attributes"]["exitCode"], "0")
        self.assertEqual(die["Actor"]["Attributes"]["com.docker.swarm.task.id"], tasks[0]["ID"])
        self.assertEqual(die["Actor"]["ID"], tasks[0]["Status"]["ContainerStatus"]["ContainerID"])

    @inlineCallbacks
    def test_logsWithDetails(self) -> Generator[Deferred[Any], Any, None]:
        """
        A service's logs, with C{details}, tag each line with its node,
        service and task; a log of no stream is refused.
        """
        name = yield self.create("logs", self.fixture.echoCommand("hello swarm"), replicas=2)
        tasks = yield self.eventually(
            lambda: self.tasks(name).addCallback(
                lambda ts: (
                    len(ts) == 2 and all(t["Status"]["State"] == "complete" for t in ts) and ts
                )
            )
        )
        params = {"stdout": True, "stderr": True, "details": True, "timestamps": True}

        @inlineCallbacks
        def logs() -> Generator[Deferred[Any], Any, Any]:
            _, body = yield self.call("GET", f"/services/{name}/logs", params, raw=True)
            lines = self.logLines(body)
            return len(lines) == 2 and lines

        lines = yield self.eventually(logs)
        _, service = yield self.call("GET", f"/services/{name}")
        tagged = set()
        for stream, stamp, text in lines:
            self.assertEqual(stream, "stdout")
            self.assertRegex(stamp or "", r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z$")
            match = _DETAILS.match(text)
            assert match is not None, text
            self.assertEqual((match.group(2), match.group(4)), (service["ID"], "hello swarm"))
            tagged.add((match.group(1), match.group(3)))
        self.assertEqual(tagged, {(t["NodeID"], t["ID"]) for t in tasks})
        _, body = yield self.call("GET", f"/services/{name}/logs", dict(params, tail=0), raw=True)
        self.assertEqual(body, b"")
        yield self.assertStatus(
            self.engine.request("GET", f"/services/{name}/logs", {"details": True}), 500
        )

    @inlineCallbacks
    def test_killTaskContainer(self) -> Generator[Deferred[Any], Any, None]:
        """
        SIGKILL to a task's container on the manager (through the
        manager's engine) fails the task with 137; the policy replaces it.
        """
        policy = {"Condition": "any", "MaxAttempts": 0, "Delay": 100_000_000}
        name = yield self.create(
            "kill",
            self.fixture.longCommand,
            restart=policy,
            constraints=(f"node.hostname=={self.fixture.managerNode}",),
        )
        tasks = yield self.eventually(lambda: self.whenCount(self.running(name), 1))
        container = tasks[0]["Status"]["ContainerStatus"]["ContainerID"]
        status, _ = yield self.call("POST", f"/containers/{container}/kill", {"signal": "SIGKILL"})
        self.assertEqual(status, 204)
        replaced = yield self.eventually(
            lambda: self.whenCount(self.running(name), 1).addCallback(
                lambda found: found if found and found[0]["ID"] != tasks[0]["ID"] else None
            )
        )
        killed = [t for t in (yield self.tasks(name)) if t["ID"] == tasks[0]["ID"]][0]
        self.assertEqual(killed["Status"]["State"], "failed")
        self.assertEqual(killed["Status"]["Err"], "task: non-zero exit (137)")
        self.assertEqual(killed["Status"]["ContainerStatus"]["ExitCode"], 137)
        self.assertEqual(replaced[0]["Slot"], 1)

    @inlineCallbacks
    def test_signalOnWorker(self) -> Generator[Deferred[Any], Any, None]:
        """
        A task's container on the worker is signalled through the worker's
        own engine (the manager's has no such container): the task fails
        with 128+N.
        """
        name = yield self.create(
            "signal", self.fixture.longCommand, constraints=("node.role==worker",)
        )
        tasks = yield self.eventually(lambda: self.whenCount(self.running(name), 1))
        container = tasks[0]["Status"]["ContainerStatus"]["ContainerID"]
        kill = f"/containers/{container}/kill"
        yield self.assertStatus(self.engine.request("POST", kill, {"signal": "SIGKILL"}), 404)
        worker = self.fixture.nodeEngine(self, self.fixture.workerNode)
        status, _ = yield self.settle(worker.request("POST", kill, {"signal": "SIGKILL"}))
        self.assertEqual(status, 204)

        @inlineCallbacks
        def failed() -> Generator[Deferred[Any], Any, Any]:
            found = yield self.tasks(name)
            return found[0]["Status"]["State"] == "failed" and found[0]

        task = yield self.eventually(failed)
        self.assertEqual(task["Status"]["Err"], "task: non-zero exit (137)")


__all__ = ["SwarmStreamTests"]
