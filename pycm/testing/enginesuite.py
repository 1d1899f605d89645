"""
The engine suite: what the Docker backend relies on an L{IDockerEngine} to
do, checked the same way on L{pycm.testing.dockerengine.FakeDockerEngine}
and on a real engine through L{pycm.backends.docker.engine.EngineClient}.

L{DockerEngineTests} is a mixin: a C{TestCase} that has it sets
C{fixture}, an L{EngineFixture}.
"""

from __future__ import annotations

import signal as _signal
import uuid
from collections.abc import Callable, Generator
from typing import Any, Protocol

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.trial.unittest import TestCase
from zope.interface.verify import verifyObject

from pycm.backends.docker.engine import EngineError, Stream
from pycm.backends.docker.interfaces import IDockerEngine
from pycm.backends.docker.stream import Demultiplexer, JSONLines, LogLineSplitter
from pycm.backends.docker.translate import isMissingImage, splitImage
from pycm.testing.suitecase import EngineSuiteCase

#: The label of the suite's containers (its value: one run's id).
SUITE_LABEL = "io.pycm.engine-suite"


class EngineFixture(Protocol):
    """
    The engine under test, and what to run on it:
      - C{image}: an image the engine has; C{missingImage}: one it has not.
      - C{pullImage}: an image a registry has (the engine may not);
        C{unknownPullImage}: one that registry has not.
      - C{longCommand}: runs until signalled, ends on SIGTERM;
        C{ignoreTermCommand}: ignores SIGTERM; C{exitCommand(code)};
        C{echoCommand(text)}: writes C{text} as one stdout line and exits 0.
      - C{makeEngine(testCase)}: a Deferred firing with the engine (closed
        by a cleanup it registers); C{settle(testCase, d, timeout)} and
        C{sleep(testCase, seconds)} as in
        L{pycm.testing.BackendConformanceTests}.
    """

    image: str
    missingImage: str
    pullImage: str
    unknownPullImage: str
    longCommand: tuple[str, ...]
    ignoreTermCommand: tuple[str, ...]

    def exitCommand(self, code: int) -> tuple[str, ...]: ...

    def echoCommand(self, text: str) -> tuple[str, ...]: ...

    def makeEngine(self, testCase: TestCase) -> Deferred[IDockerEngine]: ...

    def settle(self, testCase: TestCase, d: Deferred[Any], timeout: float) -> Deferred[Any]: ...

    def sleep(self, testCase: TestCase, seconds: float) -> Deferred[None]: ...


class DockerEngineTests(EngineSuiteCase):
    """
    An engine does what the Docker backend asks of it, as dockerd does.
    Mix it into a C{TestCase} with a C{fixture} (an L{EngineFixture}).
    """

    #: The engine to test, and commands on it: set by the subclass.
    fixture: EngineFixture

    runId = uuid.uuid4().hex[:8]

    # trial waits for a Deferred from setUp (unittest's returns None).
    @inlineCallbacks
    def setUp(self) -> Generator[Deferred[Any], Any, None]:  # type: ignore[override]
        self.engine = yield self.fixture.makeEngine(self)
        self.events: list[dict[str, Any]] = []
        self.names: list[str] = []
        self.addCleanup(self.removeAll)
        yield self.follow(self.events.append)

    @inlineCallbacks
    def follow(
        self, received: Callable[[Any], None], since: str | None = None
    ) -> Generator[Deferred[Any], Any, None]:
        """Follow this run's container events (ended by a cleanup)."""
        params: dict[str, Any] = {
            "filters": {"type": ["container"], "label": [f"{SUITE_LABEL}={self.runId}"]},
            "since": since,
        }
        stream: Stream = yield self.settle(
            self.engine.stream("GET", "/events", params, JSONLines(received).feed)
        )
        self.addCleanup(stream.cancel)

    @inlineCallbacks
    def removeAll(self) -> Generator[Deferred[Any], Any, None]:
        for name in self.names:
            try:
                yield self.call("DELETE", f"/containers/{name}", {"force": True})
            except EngineError:
                pass

    @inlineCallbacks
    def create(
        self,
        what: str,
        command: tuple[str, ...],
        config: dict[str, Any] | None = None,
        **hostConfig: Any,
    ) -> Generator[Deferred[Any], Any, str]:
        """Create a container of this run (C{config}: more of the body); fire with its name."""
        name = f"pycme-{self.runId}-{what}"
        self.names.append(name)
        body = {
            "Image": self.fixture.image,
            "Cmd": list(command),
            "Labels": {SUITE_LABEL: self.runId},
            "StopSignal": "SIGTERM",
            "HostConfig": {"Init": True, "NetworkMode": "none", **hostConfig},
            **(config or {}),
        }
        status, created = yield self.call("POST", "/containers/create", {"name": name}, body=body)
        self.assertEqual(status, 201)
        self.assertIsInstance(created["Id"], str)
        return name

    @inlineCallbacks
    def state(self, name: str) -> Generator[Deferred[Any], Any, dict[str, Any]]:
        _, data = yield self.call("GET", f"/containers/{name}/json")
        return data["State"]

    @inlineCallbacks
    def execute(self, name: str, *command: str) -> Generator[Deferred[Any], Any, int]:
        """Run C{command} in C{name} (detached) to its end; fire with its exit code."""
        _, created = yield self.call(
            "POST", f"/containers/{name}/exec", body={"Cmd": list(command)}
        )
        execId = created["Id"]
        yield self.call("POST", f"/exec/{execId}/start", body={"Detach": True})

        @inlineCallbacks
        def ended() -> Generator[Deferred[Any], Any, Any]:
            _, data = yield self.call("GET", f"/exec/{execId}/json")
            return data if not data["Running"] and data["ExitCode"] is not None else None

        data = yield self.eventually(ended)
        return int(data["ExitCode"])

    def actions(self, name: str) -> list[str]:
        """The actions of C{name}'s events so far, in order."""
        return [e["Action"] for e in self.events if e["Actor"]["Attributes"].get("name") == name]

    def test_interface(self) -> None:
        """The engine provides L{IDockerEngine}."""
        self.assertTrue(verifyObject(IDockerEngine, self.engine))

    @inlineCallbacks
    def test_createInspectList(self) -> Generator[Deferred[Any], Any, None]:
        """A created container is inspected and listed by its label, with its name."""
        name = yield self.create("created", self.fixture.longCommand)
        _, data = yield self.call("GET", f"/containers/{name}/json")
        self.assertEqual(data["Name"], "/" + name)
        self.assertEqual(data["State"]["Status"], "created")
        self.assertEqual(data["Config"]["Labels"][SUITE_LABEL], self.runId)
        self.assertEqual(data["Config"]["Cmd"], list(self.fixture.longCommand))
        mine = {"label": [f"{SUITE_LABEL}={self.runId}"]}
        _, listed = yield self.call("GET", "/containers/json", {"all": True, "filters": mine})
        self.assertEqual([s["Names"] for s in listed], [["/" + name]])
        self.assertEqual(listed[0]["State"], "created")
        other = {"label": [f"{SUITE_LABEL}=other-{self.runId}"]}
        _, listed = yield self.call("GET", "/containers/json", {"all": True, "filters": other})
        self.assertEqual(listed, [])
        _, running = yield self.call("GET", "/containers/json", {"filters": mine})
        self.assertEqual(running, [])

    @inlineCallbacks
    def test_errors(self) -> Generator[Deferred[Any], Any, None]:
        """
        A name in use is 409, a missing image and a missing container
        404, a kill of a container not running 409.
        """
        name = yield self.create("conflict", self.fixture.longCommand)
        body = {"Image": self.fixture.image, "Labels": {SUITE_LABEL: self.runId}}
        error = yield self.assertStatus(
            self.engine.request("POST", "/containers/create", {"name": name}, body), 409
        )
        self.assertIn("already in use", error.message)
        missing = dict(body, Image=self.fixture.missingImage)
        yield self.assertStatus(
            self.engine.request("POST", "/containers/create", {"name": name + "x"}, missing),
            404,
        )
        yield self.assertStatus(self.engine.request("GET", f"/containers/{name}-nosuch/json"), 404)
        yield self.assertStatus(
            self.engine.request("POST", f"/containers/{name}/kill", {"signal": "9"}), 409
        )

    @inlineCallbacks
    def test_startStop(self) -> Generator[Deferred[Any], Any, None]:
        """
        Start is 204, then 304; stop sends SIGTERM (exit 143), then is
        304; the events are create, start, kill 15, die 143, stop.
        """
        name = yield self.create("startstop", self.fixture.longCommand)
        status, _ = yield self.call("POST", f"/containers/{name}/start")
        self.assertEqual(status, 204)
        status, _ = yield self.call("POST", f"/containers/{name}/start")
        self.assertEqual(status, 304)
        state = yield self.state(name)
        self.assertTrue(state["Running"])
        self.assertGreater(state["Pid"], 0)
        status, _ = yield self.call("POST", f"/containers/{name}/stop", {"t": 10}, timeout=20)
        self.assertEqual(status, 204)
        status, _ = yield self.call("POST", f"/containers/{name}/stop", {"t": 10})
        self.assertEqual(status, 304)
        state = yield self.state(name)
        self.assertEqual((state["Status"], state["ExitCode"]), ("exited", 143))
        yield self.eventually(lambda: "stop" in self.actions(name))
        self.assertEqual(self.actions(name), ["create", "start", "kill", "die", "stop"])
        kill, die = (e for e in self.events if e["Action"] in ("kill", "die"))
        self.assertEqual(kill["Actor"]["Attributes"]["signal"], str(int(_signal.SIGTERM)))
        self.assertEqual(die["Actor"]["Attributes"]["exitCode"], "143")
        times = [e["timeNano"] for e in self.events]
        self.assertEqual(times, sorted(set(times)))

    @inlineCallbacks
    def test_stopEscalates(self) -> Generator[Deferred[Any], Any, None]:
        """A stop of a container ignoring SIGTERM sends SIGKILL after C{t}: 137."""
        name = yield self.create("escalate", self.fixture.ignoreTermCommand)
        yield self.call("POST", f"/containers/{name}/start")
        yield self.fixture.sleep(self, 0.5)
        yield self.call("POST", f"/containers/{name}/stop", {"t": 1}, timeout=20)
        state = yield self.state(name)
        self.assertEqual(state["ExitCode"], 137)
        yield self.eventually(lambda: "stop" in self.actions(name))
        signals = [e["Actor"]["Attributes"]["signal"] for e in self.events if e["Action"] == "kill"]
        self.assertEqual(signals, ["15", "9"])

    @inlineCallbacks
    def test_restart(self) -> Generator[Deferred[Any], Any, None]:
        """A restart of a running container: die, stop, start, restart."""
        name = yield self.create("restart", self.fixture.longCommand)
        yield self.call("POST", f"/containers/{name}/start")
        status, _ = yield self.call("POST", f"/containers/{name}/restart", {"t": 10}, timeout=20)
        self.assertEqual(status, 204)
        state = yield self.state(name)
        self.assertTrue(state["Running"])
        yield self.eventually(lambda: "restart" in self.actions(name))
        self.assertEqual(
            self.actions(name),
            ["create", "start", "kill", "die", "stop", "start", "restart"],
        )

    @inlineCallbacks
    def test_exitAndWait(self) -> Generator[Deferred[Any], Any, None]:
        """A wait fires with the exit status; one on a stopped container at once."""
        name = yield self.create("exit", self.fixture.exitCommand(3))
        wait = self.engine.request(
            "POST", f"/containers/{name}/wait", {"condition": "next-exit"}, timeout=0
        )
        yield self.call("POST", f"/containers/{name}/start")
        _, result = yield self.settle(wait)
        self.assertEqual(result["StatusCode"], 3)
        _, result = yield self.call(
            "POST", f"/containers/{name}/wait", {"condition": "not-running"}, timeout=0
        )
        self.assertEqual(result["StatusCode"], 3)

    @inlineCallbacks
    def test_remove(self) -> Generator[Deferred[Any], Any, None]:
        """Removing a running container is 409 unless forced; then it is gone."""
        name = yield self.create("remove", self.fixture.longCommand)
        yield self.call("POST", f"/containers/{name}/start")
        yield self.assertStatus(self.engine.request("DELETE", f"/containers/{name}"), 409)
        status, _ = yield self.call("DELETE", f"/containers/{name}", {"force": True})
        self.assertEqual(status, 204)
        yield self.assertStatus(self.engine.request("GET", f"/containers/{name}/json"), 404)
        yield self.eventually(lambda: "destroy" in self.actions(name))
        self.assertEqual(self.actions(name)[-2:], ["die", "destroy"])

    @inlineCallbacks
    def test_logs(self) -> Generator[Deferred[Any], Any, None]:
        """Logs are multiplexed frames of timestamped lines; C{tail} cuts them."""
        name = yield self.create("logs", self.fixture.echoCommand("hello engine"))
        yield self.call("POST", f"/containers/{name}/start")
        yield self.call("POST", f"/containers/{name}/wait", timeout=0)
        params = {"stdout": True, "stderr": True, "timestamps": True, "tail": "all"}
        _, body = yield self.call("GET", f"/containers/{name}/logs", params, raw=True)
        lines: list[tuple[str, str | None, str]] = []
        splitter = LogLineSplitter(lambda *line: lines.append(line), True)
        Demultiplexer(splitter.frameReceived).feed(body)
        splitter.flush()
        self.assertEqual([(s, text) for s, _, text in lines], [("stdout", "hello engine")])
        self.assertRegex(lines[0][1] or "", r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z$")
        _, body = yield self.call("GET", f"/containers/{name}/logs", dict(params, tail=0), raw=True)
        self.assertEqual(body, b"")

    @inlineCallbacks
    def test_logsStreamed(self) -> Generator[Deferred[Any], Any, None]:
        """A log read streamed (no C{follow}) ends whole, of a running container too."""
        name = yield self.create("logstream", self.fixture.echoCommand("hello engine"))
        yield self.call("POST", f"/containers/{name}/start")
        yield self.call("POST", f"/containers/{name}/wait", timeout=0)
        params = {"stdout": True, "stderr": True, "timestamps": True, "tail": "all"}
        _, whole = yield self.call("GET", f"/containers/{name}/logs", params, raw=True)
        running = yield self.create("logstreamrun", self.fixture.longCommand)
        yield self.call("POST", f"/containers/{running}/start")
        for container, expected in ((name, whole), (running, b"")):
            body = yield self.streamedLog(container, params)
            self.assertEqual(body, expected)

    @inlineCallbacks
    def streamedLog(
        self, container: str, params: dict[str, Any]
    ) -> Generator[Deferred[Any], Any, bytes]:
        """The body of C{container}'s log streamed, once it ended whole."""
        pieces: list[bytes] = []
        path = f"/containers/{container}/logs"
        stream: Stream = yield self.settle(self.engine.stream("GET", path, params, pieces.append))
        yield self.eventually(lambda: stream.ended.called, timeout=5)
        self.assertIsNone(stream.failure)
        return b"".join(pieces)

    @inlineCallbacks
    def test_archive(self) -> Generator[Deferred[Any], Any, None]:
        """C{HEAD archive} finds the command's file, and not a missing one."""
        name = yield self.create("archive", self.fixture.longCommand)
        path = "/bin/" + self.fixture.longCommand[0]
        status, _ = yield self.call("HEAD", f"/containers/{name}/archive", {"path": path})
        self.assertEqual(status, 200)
        yield self.assertStatus(
            self.engine.request(
                "HEAD", f"/containers/{name}/archive", {"path": "/bin/pycm-no-such"}
            ),
            404,
        )

    @inlineCallbacks
    def test_restartPolicy(self) -> Generator[Deferred[Any], Any, None]:
        """C{on-failure:1} restarts a failing container once: two starts, two dies."""
        policy = {"Name": "on-failure", "MaximumRetryCount": 1}
        name = yield self.create("policy", self.fixture.exitCommand(1), RestartPolicy=policy)
        yield self.call("POST", f"/containers/{name}/start")
        yield self.eventually(lambda: self.actions(name).count("die") == 2)
        yield self.fixture.sleep(self, 1.0)

        @inlineCallbacks
        def settled() -> Generator[Deferred[Any], Any, bool]:
            _, data = yield self.call("GET", f"/containers/{name}/json")
            return bool(data["State"]["Status"] == "exited" and data["RestartCount"] == 1)

        yield self.eventually(settled)
        self.assertEqual(self.actions(name), ["create", "start", "die", "start", "die"])

    @inlineCallbacks
    def test_eventsSince(self) -> Generator[Deferred[Any], Any, None]:
        """An event stream with C{since} gives the events since then first."""
        name = yield self.create("since", self.fixture.longCommand)
        yield self.eventually(lambda: self.actions(name))
        nano = self.events[0]["timeNano"]
        replayed: list[dict[str, Any]] = []
        yield self.follow(replayed.append, f"{nano // 10**9}.{nano % 10**9:09d}")
        yield self.eventually(lambda: replayed)
        self.assertEqual(replayed[0]["Action"], "create")
        self.assertEqual(replayed[0]["timeNano"], nano)

    @inlineCallbacks
    def test_stats(self) -> Generator[Deferred[Any], Any, None]:
        """A running container's stats have its memory and processes."""
        name = yield self.create("stats", self.fixture.longCommand)
        yield self.call("POST", f"/containers/{name}/start")
        _, data = yield self.call("GET", f"/containers/{name}/stats", {"stream": False})
        self.assertGreater(data["memory_stats"]["usage"], 0)
        self.assertGreater(data["pids_stats"]["current"], 0)
        self.assertIn("total_usage", data["cpu_stats"]["cpu_usage"])

    @inlineCallbacks
    def test_healthCheck(self) -> Generator[Deferred[Any], Any, None]:
        """
        A C{CMD-SHELL} health check every second, as dockerd keeps it (no
        zero fields): no C{Health} before the start, C{starting} after it;
        C{healthy} once an exec makes its file, C{unhealthy} after
        C{Retries} failures once another removes it (the streak counted,
        results of C{Start}, C{End}, C{ExitCode}, C{Output}, at most 5); a
        C{health_status: STATUS} event each change; a stop leaves a
        healthy one C{unhealthy}, untold; the next start C{starting}.
        """
        check = {
            "Test": ["CMD-SHELL", "test -e /tmp/ok"],
            "Interval": 10**9,
            "Timeout": 10 * 10**9,
            "Retries": 2,
            "StartPeriod": 0,
        }
        name = yield self.create(
            "health", self.fixture.longCommand, {"Healthcheck": check, "User": "0:0"}
        )
        _, data = yield self.call("GET", f"/containers/{name}/json")
        self.assertEqual(data["Config"]["Healthcheck"], {k: v for k, v in check.items() if v})
        self.assertEqual(data["Config"]["User"], "0:0")
        self.assertNotIn("Health", data["State"])
        yield self.call("POST", f"/containers/{name}/start")
        health = (yield self.state(name))["Health"]
        self.assertEqual((health["Status"], health["FailingStreak"]), ("starting", 0))

        @inlineCallbacks
        def status(wanted: str) -> Generator[Deferred[Any], Any, Any]:
            health = (yield self.state(name))["Health"]
            return health if health["Status"] == wanted else None

        self.assertEqual((yield self.execute(name, "touch", "/tmp/ok")), 0)
        yield self.eventually(lambda: status("healthy"))
        self.assertEqual((yield self.execute(name, "rm", "/tmp/ok")), 0)
        health = yield self.eventually(lambda: status("unhealthy"))
        self.assertGreaterEqual(health["FailingStreak"], 2)
        self.assertLessEqual(len(health["Log"]), 5)
        last = health["Log"][-1]
        self.assertEqual(sorted(last), ["End", "ExitCode", "Output", "Start"])
        self.assertEqual((last["ExitCode"], last["Output"]), (1, ""))
        self.assertRegex(last["Start"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z$")
        yield self.execute(name, "touch", "/tmp/ok")
        yield self.eventually(lambda: status("healthy"))
        yield self.call("POST", f"/containers/{name}/stop", {"t": 10}, timeout=20)
        yield self.eventually(lambda: "stop" in self.actions(name))
        health = (yield self.state(name))["Health"]
        self.assertEqual(health["Status"], "unhealthy")
        yield self.call("POST", f"/containers/{name}/start")
        health = (yield self.state(name))["Health"]
        self.assertEqual(health["Status"], "starting")
        told = [a for a in self.actions(name) if a.startswith("health_status")]
        self.assertEqual(
            told,
            ["health_status: healthy", "health_status: unhealthy", "health_status: healthy"],
        )

    @inlineCallbacks
    def pull(self, image: str) -> Generator[Deferred[Any], Any, list[Any]]:
        """Pull C{image}; fire with its progress lines once it ended."""
        fromImage, tag = splitImage(image)
        lines: list[Any] = []
        stream: Stream = yield self.settle(
            self.engine.stream(
                "POST",
                "/images/create",
                {"fromImage": fromImage, "tag": tag},
                JSONLines(lines.append).feed,
            ),
            60,
        )
        yield self.settle(stream.ended, 120)
        return lines

    @inlineCallbacks
    def test_pull(self) -> Generator[Deferred[Any], Any, None]:
        """
        A pull streams JSON progress lines with no error, and a
        container of the image can be created after it.
        """
        image = self.fixture.pullImage
        yield self.settle(self.engine.request("DELETE", f"/images/{image}")).addErrback(
            lambda f: f.trap(EngineError)
        )
        self.addCleanup(
            lambda: self.settle(
                self.engine.request("DELETE", f"/images/{image}", {"force": True})
            ).addErrback(lambda f: f.trap(EngineError))
        )
        lines = yield self.pull(image)
        self.assertTrue(lines)
        self.assertFalse([line for line in lines if line.get("error")], lines)
        self.assertTrue(all("status" in line for line in lines), lines)
        name = f"pycme-{self.runId}-pulled"
        self.names.append(name)
        body = {"Image": image, "Labels": {SUITE_LABEL: self.runId}}
        status, _ = yield self.call("POST", "/containers/create", {"name": name}, body=body)
        self.assertEqual(status, 201)

    @inlineCallbacks
    def test_pullUnknown(self) -> Generator[Deferred[Any], Any, None]:
        """
        A pull of an image the registry has not fails with a 404, or
        ends with an error line, saying the image is missing.
        """
        try:
            lines = yield self.pull(self.fixture.unknownPullImage)
        except EngineError as e:
            self.assertEqual(e.status, 404)
            self.assertTrue(isMissingImage(e.message), e.message)
        else:
            errors = [line["error"] for line in lines if line.get("error")]
            self.assertTrue(errors and isMissingImage(errors[-1]), lines)


__all__ = ["SUITE_LABEL", "DockerEngineTests", "EngineFixture"]
