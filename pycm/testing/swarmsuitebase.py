"""
The helpers of the swarm engine suite (L{pycm.testing.swarmsuite}): its
fixture's protocol, and a mixin that makes, finds and waits for services
and tasks of one run, removing them at the end.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Generator
from typing import Any, Protocol

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.trial.unittest import TestCase

from pycm.backends.docker.engine import EngineError, Stream
from pycm.backends.docker.interfaces import IDockerEngine
from pycm.backends.docker.stream import Demultiplexer, JSONLines, LogLineSplitter
from pycm.testing.suitecase import EngineSuiteCase

#: The label of the suite's services (its value: one run's id).
SUITE_LABEL = "io.pycm.swarm-suite"


class SwarmFixture(Protocol):
    """
    The swarm under test, and what to run on it:
      - C{image}: an image every node has.
      - C{managerNode}, C{workerNode}: the hostnames of its two nodes.
      - C{longCommand}: runs until signalled; C{exitCommand(code)};
        C{echoCommand(text)}: writes C{text} as one stdout line, exits 0.
      - C{makeEngine(testCase)}: a Deferred firing with the manager's
        engine (closed by a cleanup it registers); C{nodeEngine(testCase,
        hostname)}: the engine of that node itself; C{settle} and
        C{sleep} as in L{pycm.testing.enginesuite.EngineFixture}.
    """

    image: str
    managerNode: str
    workerNode: str
    longCommand: tuple[str, ...]

    def exitCommand(self, code: int) -> tuple[str, ...]: ...

    def echoCommand(self, text: str) -> tuple[str, ...]: ...

    def makeEngine(self, testCase: TestCase) -> Deferred[IDockerEngine]: ...

    def nodeEngine(self, testCase: TestCase, hostname: str) -> IDockerEngine: ...

    def settle(self, testCase: TestCase, d: Deferred[Any], timeout: float) -> Deferred[Any]: ...

    def sleep(self, testCase: TestCase, seconds: float) -> Deferred[None]: ...


@inlineCallbacks
def removeServices(
    engine: IDockerEngine,
    names: list[str],
    settle: Callable[[Deferred[Any]], Deferred[Any]] = lambda d: d,
) -> Generator[Deferred[Any], Any, None]:
    """
    Remove every service in C{names} that still exists, each tried
    whatever became of the others (each request through C{settle}).

    @raise AssertionError: naming those that could not be removed (one
        already gone is no failure).
    """
    failed = []
    for name in names:
        try:
            yield settle(engine.request("DELETE", f"/services/{name}"))
        except EngineError as e:
            if e.status != 404:
                failed.append(f"{name}: {e.message}")
        except Exception as e:  # a timeout too
            failed.append(f"{name}: {e!r}")
    if failed:
        raise AssertionError("services not removed: " + "; ".join(failed))


class SwarmSuiteBase(EngineSuiteCase):
    """
    The suite's set-up and helpers: C{fixture} (a L{SwarmFixture}) is set by
    the C{TestCase} that mixes the suite in.
    """

    fixture: SwarmFixture
    pollInterval = 0.2
    pollTimeout = 30.0

    runId = uuid.uuid4().hex[:8]

    # trial waits for a Deferred from setUp (unittest's returns None).
    @inlineCallbacks
    def setUp(self) -> Generator[Deferred[Any], Any, None]:  # type: ignore[override]
        self.engine = yield self.fixture.makeEngine(self)
        self.events: list[dict[str, Any]] = []
        self.names: list[str] = []
        self.addCleanup(self.removeAll)
        params = {"filters": {"type": ["service"]}}
        stream: Stream = yield self.settle(
            self.engine.stream("GET", "/events", params, JSONLines(self.events.append).feed)
        )
        self.addCleanup(stream.cancel)
        _, nodes = yield self.call("GET", "/nodes")
        self.nodeIds = {n["Description"]["Hostname"]: n["ID"] for n in nodes}

    def removeAll(self) -> Deferred[None]:
        """Remove every service of the test (L{removeServices})."""
        return removeServices(self.engine, self.names, self.settle)

    def body(
        self,
        name: str,
        command: tuple[str, ...],
        replicas: int = 1,
        restart: dict[str, Any] | None = None,
        constraints: tuple[str, ...] = (),
    ) -> dict[str, Any]:
        """The spec of a service of this run."""
        template: dict[str, Any] = {
            "ContainerSpec": {
                "Image": self.fixture.image,
                "Command": list(command),
                "StopGracePeriod": 1_000_000_000,
            },
            "RestartPolicy": restart or {"Condition": "none"},
        }
        if constraints:
            template["Placement"] = {"Constraints": list(constraints)}
        return {
            "Name": name,
            "Labels": {SUITE_LABEL: self.runId},
            "TaskTemplate": template,
            "Mode": {"Replicated": {"Replicas": replicas}},
        }

    @inlineCallbacks
    def create(
        self, what: str, command: tuple[str, ...], **options: Any
    ) -> Generator[Deferred[Any], Any, str]:
        """Create a service of this run; fire with its name."""
        name = f"pycms-{self.runId}-{what}"
        self.names.append(name)
        status, created = yield self.call(
            "POST", "/services/create", body=self.body(name, command, **options)
        )
        self.assertEqual(status, 201)
        self.assertIsInstance(created["ID"], str)
        return name

    @inlineCallbacks
    def tasks(
        self, name: str, **filters: list[str]
    ) -> Generator[Deferred[Any], Any, list[dict[str, Any]]]:
        _, tasks = yield self.call("GET", "/tasks", {"filters": {"service": [name], **filters}})
        return sorted(tasks, key=lambda t: (t["Slot"], t["CreatedAt"]))

    @inlineCallbacks
    def running(self, name: str) -> Generator[Deferred[Any], Any, list[dict[str, Any]]]:
        """The tasks of C{name} meant to run that run."""
        tasks = yield self.tasks(name, **{"desired-state": ["running"]})
        return [t for t in tasks if t["Status"]["State"] == "running"]

    @inlineCallbacks
    def update(self, name: str, change: Callable[[dict[str, Any]], None]) -> Any:
        """Change the spec of C{name} at its current version."""
        _, service = yield self.call("GET", f"/services/{name}")
        spec = service["Spec"]
        change(spec)
        status, _ = yield self.call(
            "POST",
            f"/services/{service['ID']}/update",
            {"version": service["Version"]["Index"]},
            body=spec,
        )
        self.assertEqual(status, 200)

    @inlineCallbacks
    def whenCount(
        self, tasks: Deferred[list[dict[str, Any]]], count: int
    ) -> Generator[Deferred[Any], Any, list[dict[str, Any]] | None]:
        found = yield tasks
        return found if len(found) == count else None

    def logLines(self, body: bytes) -> list[tuple[str, str | None, str]]:
        lines: list[tuple[str, str | None, str]] = []
        splitter = LogLineSplitter(lambda *line: lines.append(line), True)
        Demultiplexer(splitter.frameReceived).feed(body)
        splitter.flush()
        return lines


__all__ = ["SUITE_LABEL", "SwarmFixture", "SwarmSuiteBase", "removeServices"]
