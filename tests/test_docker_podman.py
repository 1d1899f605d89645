"""
Unit tests of what the Docker backend does differently on Podman's
Docker-compatible API (Podman 4.3, as Debian ships it), on a scripted
engine and a fake clock.  The same behaviours against a real Podman are
the docker modules run with C{PYCM_DOCKER_HOST} at a Podman service
(C{.ci/podman-setup.sh}, C{.ci/run}).

The engine here is a script, not a fake of Podman: it answers each request
with what Podman 4.3 was seen to answer, and the test feeds the events
Podman was seen to send, in its order.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from pycm.backends.docker.backend import DockerBackend
from pycm.backends.docker.engine import EngineAddress, EngineClient, EngineError
from pycm.backends.docker.events import EngineEvents
from pycm.backends.docker.lookup import INSPECT_RETRY_DELAY, INSPECT_TRIES
from pycm.backends.docker.translate import (
    IMAGE_LABEL,
    MANAGED_LABEL,
    RESTART_POLICY_LABEL,
    containerFromInspect,
    createBody,
    mapEngineError,
)
from pycm.errors import BackendError, Conflict
from pycm.model import ContainerSpec, State
from tests.stubengine import StubEngine, wholeStream

_LABELS = {MANAGED_LABEL: "true", IMAGE_LABEL: "pycm-test/busybox:latest"}
#: What Podman 4.3 answers to a create whose name is taken, and to a kill
#: or remove the container's state refuses (both HTTP 500).
PODMAN_NAME_CONFLICT = (
    'container create: creating container storage: the container name "web" is already '
    "in use by e111f. You have to remove that container to be able to reuse that name: "
    "that name is already in use"
)
PODMAN_STATE_CONFLICT = (
    "cannot remove container 725bc as it is running - running or paused containers "
    "cannot be removed without force: container state improper"
)


def podmanInspect(status: str = "running", **overrides: Any) -> dict[str, Any]:
    """A C{GET /containers/ID/json} answer of Podman 4.3 for a pycm container."""
    data: dict[str, Any] = {
        "Id": "c1",
        "Name": "web",
        "Created": "2026-11-30T15:00:00.000000000Z",
        "Path": "/run/podman-init",
        "Args": ["--", "sleep", "1000"],
        "State": {
            "Status": status,
            "Running": status == "running",
            "Pid": 42 if status == "running" else 0,
            "ExitCode": 0,
            "StartedAt": "2026-11-30T15:00:01Z",
            "FinishedAt": "0001-01-01T00:00:00Z",
        },
        "Config": {
            "Image": "localhost/pycm-test/busybox:latest",
            "Cmd": ["sleep", "1000"],
            "Labels": dict(_LABELS),
            "StopSignal": 15,
            "StopTimeout": 10,
        },
        "HostConfig": {"Init": True},
    }
    data.update(overrides)
    return data


class ScriptedEngine(StubEngine):
    """
    Stands in for L{EngineClient}: each request is answered by the first
    of C{answers} whose (method, path suffix) matches, a value or a callable
    of the params; every request is recorded in C{calls}.
    """

    timeout = 10.0

    def __init__(self, podman: bool = True) -> None:
        self.isPodman = podman
        self.calls: list[tuple[str, str, Any]] = []
        self.answers: list[tuple[str, str, Any]] = []

    def answer(self, method: str, suffix: str, result: Any) -> None:
        self.answers.append((method, suffix, result))

    def request(self, method: str, path: str, params: Any = None, *a: Any, **kw: Any) -> Any:
        self.calls.append((method, path, params))
        for m, suffix, result in self.answers:
            if m == method and path.endswith(suffix):
                if isinstance(result, list):
                    # A sequence of answers, one per call; the last repeats.
                    result = result.pop(0) if len(result) > 1 else result[0]
                if callable(result):
                    result = result(params)
                if isinstance(result, Exception):
                    return defer.fail(result)
                if isinstance(result, Deferred):
                    return result
                if not isinstance(result, tuple):
                    result = (200, result)
                return defer.succeed(result)
        raise AssertionError(f"no answer for {method} {path}")

    def stream(self, method: str, path: str, params: Any, onData: Any, *a: Any, **kw: Any) -> Any:
        if path.endswith("/logs") and not (params or {}).get("follow"):
            # A log read: its answer, whole.
            d = self.request(method, path, params)
            return d.addCallback(lambda answer: wholeStream(onData, answer[1] or b""))
        self.calls.append((method, path, dict(params or {}, **kw)))
        return Deferred()


def podmanEvent(action: str, exitCode: int | None = None, nano: int = 1) -> dict[str, Any]:
    """An event of Podman's compatible stream for the container web (c1)."""
    attributes: dict[str, Any] = {"name": "web", **_LABELS}
    if exitCode is not None:
        attributes["exitCode"] = str(exitCode)
    return {"Action": action, "Actor": {"ID": "c1", "Attributes": attributes}, "timeNano": nano}


class PodmanBackendTests(SynchronousTestCase):
    """The backend tells the contract's events and errors on Podman."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(100)
        self.engine = ScriptedEngine()
        self.backend = DockerBackend(self.clock, self.engine)
        self.backend._events.connected = True
        self.seen: list[Any] = []
        self.backend.addObserver(self.seen.append)

    def actions(self) -> list[str]:
        return [e.action for e in self.seen]

    def feed(self, *events: dict[str, Any]) -> None:
        for event in events:
            self.backend._teller.received(event)

    def later(self) -> int:
        """A timeNano after the clock's now (an event of what pycm just asked)."""
        return int((self.clock.seconds() + 0.1) * 10**9)

    def test_stopTellsStopAndEscalation(self) -> None:
        """
        Podman sends only the die of a stop, and nothing of its escalation
        to SIGKILL: the backend tells kill (for a 137) before that die, and
        stop after it.
        """
        stopping: Deferred[Any] = Deferred()
        self.engine.answer("GET", "/json", [podmanInspect("running"), podmanInspect("exited")])
        self.engine.answer("POST", "/stop", stopping)
        done = self.backend.stop("web", 1)
        self.feed(podmanEvent("die", 137, self.later()))
        stopping.callback((204, None))
        self.successResultOf(done)
        self.assertEqual(self.actions(), ["kill", "die", "stop"])
        self.assertEqual(self.seen[1].exitCode, -9)

    def test_stopOnDockerTellsWhatTheEngineSays(self) -> None:
        """On Docker, which sends kill and stop itself, nothing is added or doubled."""
        self.engine.isPodman = False
        stopping: Deferred[Any] = Deferred()
        self.engine.answer("GET", "/json", [podmanInspect("running"), podmanInspect("exited")])
        self.engine.answer("POST", "/stop", stopping)
        done = self.backend.stop("web", 1)
        kill = podmanEvent("kill", nano=self.later())
        kill["Actor"]["Attributes"]["signal"] = "9"
        self.feed(kill, podmanEvent("die", 137, self.later()), podmanEvent("stop"))
        stopping.callback((204, None))
        self.successResultOf(done)
        self.assertEqual(self.actions(), ["kill", "die", "stop"])

    def test_restartInContractOrder(self) -> None:
        """
        Podman tells restart first, then die and start: the backend tells
        die, stop, start, restart, as Docker does.
        """
        restarting: Deferred[Any] = Deferred()
        self.engine.answer("GET", "/json", podmanInspect("running"))
        self.engine.answer("POST", "/restart", restarting)
        done = self.backend.restart("web", 5)
        self.feed(
            podmanEvent("restart", nano=self.later()),
            podmanEvent("die", 143, self.later()),
            podmanEvent("cleanup", nano=self.later()),
            podmanEvent("init", nano=self.later()),
            podmanEvent("start", nano=self.later()),
        )
        restarting.callback((204, None))
        self.successResultOf(done)
        self.assertEqual(self.actions(), ["die", "stop", "start", "restart"])

    def test_restartAfterALateStart(self) -> None:
        """
        The start event of the run before a restart may come while the
        restart is under way (Podman's stream lags under load): it is a
        start, not the restart's, and the restart is told after its own.
        """
        restarting: Deferred[Any] = Deferred()
        self.engine.answer("GET", "/json", podmanInspect("running"))
        self.engine.answer("POST", "/restart", restarting)
        before = int((self.clock.seconds() - 0.5) * 10**9)
        done = self.backend.restart("web", 5)
        self.feed(
            podmanEvent("start", nano=before),
            podmanEvent("restart", nano=self.later()),
            podmanEvent("die", 143, self.later()),
            podmanEvent("start", nano=self.later()),
        )
        restarting.callback((204, None))
        self.successResultOf(done)
        self.assertEqual(self.actions(), ["start", "die", "stop", "start", "restart"])

    def test_policyRestartToldOnce(self) -> None:
        """A restart by Podman's policy (restart, then start) is one start and one restart."""
        self.backend._view.policies["web"] = "always"
        self.feed(
            podmanEvent("die", 1),
            podmanEvent("restart", nano=2),
            podmanEvent("start", nano=3),
        )
        self.assertEqual(self.actions(), ["die", "start", "restart"])

    def test_policyStartBeforeReconciling(self) -> None:
        """
        A policy restart that comes before a new daemon learnt the policy
        (Podman restarts at once, with no back-off) is told as one: the
        policy is in the event's labels.
        """
        start = podmanEvent("start", nano=3)
        start["Actor"]["Attributes"][RESTART_POLICY_LABEL] = "always"
        self.feed(start)
        self.assertEqual(self.actions(), ["start", "restart"])

    def test_removeTellsDestroyOnce(self) -> None:
        """Podman's remove event is the contract's destroy, told once, with no wait."""
        self.engine.answer("GET", "/json", podmanInspect("exited"))
        self.engine.answer("DELETE", "/c1", lambda params: self.feed(podmanEvent("remove")))
        self.successResultOf(self.backend.remove("web", False))
        self.assertEqual(self.actions(), ["destroy"])
        # A destroy the engine sends late, or besides its remove, is not told again.
        self.feed(podmanEvent("destroy", nano=2))
        self.assertEqual(self.actions(), ["destroy"])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_removeWithNoEventTellsDestroy(self) -> None:
        """
        An engine that sends no destroy at all: once the grace time is
        over, the backend tells it; a late one is then not told twice.
        """
        self.engine.answer("GET", "/json", podmanInspect("exited"))
        self.engine.answer("DELETE", "/c1", (204, None))
        done = self.backend.remove("web", False)
        self.assertNoResult(done)
        self.clock.advance(self.backend.eventGrace)
        self.successResultOf(done)
        self.assertEqual(self.actions(), ["destroy"])
        self.feed(podmanEvent("destroy", nano=2))
        self.assertEqual(self.actions(), ["destroy"])

    def test_removeForceKillsFirst(self) -> None:
        """
        Podman's remove --force is a stop (stop signal, stop timeout): on
        Podman the backend sends SIGKILL first, as Docker's remove does.
        """
        self.engine.answer("GET", "/json", podmanInspect("running"))
        self.engine.answer("POST", "/kill", (204, None))
        self.engine.answer("DELETE", "/c1", lambda params: self.feed(podmanEvent("remove")))
        self.successResultOf(self.backend.remove("web", True))
        sent = [(m, p.rsplit("/", 1)[-1], q) for m, p, q in self.engine.calls if m != "GET"]
        self.assertEqual(
            sent, [("POST", "kill", {"signal": "9"}), ("DELETE", "c1", {"force": True, "v": True})]
        )

    def test_stopBetweenRunsOfThePolicy(self) -> None:
        """
        A stop that finds the container between two runs of its policy
        (Podman answers 304 and starts it again) stops it once it runs.
        """
        self.engine.answer(
            "GET",
            "/json",
            [
                podmanInspect("running"),
                podmanInspect("stopped"),
                podmanInspect("running"),
                podmanInspect("exited"),
                podmanInspect("exited"),
            ],
        )
        self.engine.answer("POST", "/stop", [(304, None), (204, None)])
        done = self.backend.stop("web", 1)
        self.assertNoResult(done)
        self.clock.advance(0.05)
        self.feed(podmanEvent("die", 143, self.later()))
        self.clock.advance(0.05)
        self.successResultOf(done)
        stops = [p for m, p, _ in self.engine.calls if m == "POST"]
        self.assertEqual(len(stops), 2)
        self.assertEqual(self.actions(), ["die", "stop"])

    def test_stopRacedByThePolicy(self) -> None:
        """
        A stop Podman answered 204 can still race its restart policy, which
        starts the container again: seen running after it, it is stopped
        again, and the reply waits until it is exited for good.
        """
        self.engine.answer(
            "GET",
            "/json",
            [
                podmanInspect("running"),
                podmanInspect("running"),
                podmanInspect("exited"),
                podmanInspect("exited"),
            ],
        )
        self.engine.answer("POST", "/stop", [(204, None), (204, None)])
        done = self.backend.stop("web", 1)
        self.feed(podmanEvent("die", 143, self.later()))
        self.assertNoResult(done)
        self.clock.advance(0.05)
        self.clock.advance(0.05)
        self.successResultOf(done)
        stops = [p for m, p, _ in self.engine.calls if m == "POST"]
        self.assertEqual(len(stops), 2)

    def test_stopRacingAnExit(self) -> None:
        """
        Podman fails a stop, or a look at the container while stopping it,
        that races the exit of a run of its policy (500, reading its gone
        /proc/PID/cgroup: conformance test_alwaysThenStop on Podman): the
        backend looks again, stops the run the policy starts, and the stop
        ends with the container exited.
        """
        race = EngineError(500, "read /proc/17389/cgroup: no such process")
        self.engine.answer(
            "GET",
            "/json",
            [
                podmanInspect("running"),
                race,
                podmanInspect("running"),
                podmanInspect("exited"),
                podmanInspect("exited"),
            ],
        )
        self.engine.answer("POST", "/stop", [race, (204, None)])
        done = self.backend.stop("web", 1)
        self.clock.advance(0.05)
        self.feed(podmanEvent("die", 143, self.later()))
        self.clock.advance(0.05)
        self.assertEqual(self.successResultOf(done).state, State.EXITED)
        stops = [p for m, p, _ in self.engine.calls if m == "POST"]
        self.assertEqual(len(stops), 2)

    def test_stopWaitsForTheLastRunsEvents(self) -> None:
        """
        Podman tells events late: a stop that finds the container exited
        for good replies only once the die of its last run (no earlier
        than the inspect's C{FinishedAt}) was told, so the start of that
        run, told before it, does not come after the reply (conformance
        test_alwaysThenStop counted one start too many on Podman).
        """
        finished = "2026-11-30T15:00:05.250000Z"
        ended = int(1796050805.25 * 10**9)
        self.clock.advance(1796050805.3 - self.clock.seconds())
        exited = podmanInspect("exited")
        exited["State"]["FinishedAt"] = finished
        self.engine.answer(
            "GET", "/json", [podmanInspect("running"), podmanInspect("stopped"), exited]
        )
        self.engine.answer("POST", "/stop", (304, None))
        done = self.backend.stop("web", 1)
        self.clock.advance(0.05)
        self.assertEqual(len([c for c in self.engine.calls if c[0] == "GET"]), 3)
        # The die of the run before, then the last run's start: not yet.
        self.feed(podmanEvent("die", 0, ended - 10**8), podmanEvent("start", None, ended - 10**7))
        self.assertNoResult(done)
        self.feed(podmanEvent("die", 0, ended + 10**6))
        self.assertEqual(self.successResultOf(done).state, State.EXITED)
        self.assertEqual(self.actions(), ["die", "start", "die"])

    def test_stopOfAnExitedContainerDoesNotWait(self) -> None:
        """
        A stop of a container whose last die was told already replies at
        once, as does one of a container that exited longer ago than the
        grace time (its die told to a daemon before this one, say).
        """
        exited = podmanInspect("exited")
        exited["State"]["FinishedAt"] = "2026-11-30T15:00:05.250000Z"
        self.clock.advance(1796050805.5 - self.clock.seconds())
        self.feed(podmanEvent("die", 0, int(1796050805.26 * 10**9)))
        self.engine.answer("GET", "/json", exited)
        self.engine.answer("POST", "/stop", (304, None))
        self.assertEqual(self.successResultOf(self.backend.stop("web", 1)).state, State.EXITED)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.backend._journal.lastTimes.clear()
        self.clock.advance(self.backend.eventGrace)
        self.assertEqual(self.successResultOf(self.backend.stop("web", 1)).state, State.EXITED)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_inspectRacingAnExit(self) -> None:
        """
        Podman fails an inspect that races the exit of the container's
        process (500, reading its gone /proc/PID/cgroup): it is asked
        again, L{INSPECT_RETRY_DELAY} later each time; a failure that
        lasts is the engine's error.
        """
        race = EngineError(500, "read /proc/15981/cgroup: no such process")
        self.engine.answer("GET", "/json", [race, race, podmanInspect("exited")])
        d = self.backend.inspect("web")
        self.assertEqual(len(self.engine.calls), 1)
        self.clock.advance(INSPECT_RETRY_DELAY - 0.001)
        self.assertEqual(len(self.engine.calls), 1)  # not asked again at once
        self.clock.advance(0.001)
        self.assertEqual(len(self.engine.calls), 2)
        self.clock.advance(INSPECT_RETRY_DELAY)
        self.assertEqual(self.successResultOf(d).state, State.EXITED)
        self.assertEqual(len(self.engine.calls), 3)
        self.engine.answers = [("GET", "/json", race)]
        d = self.backend.inspect("web")
        self.clock.pump([INSPECT_RETRY_DELAY] * INSPECT_TRIES)
        error = self.failureResultOf(d, BackendError).value
        self.assertIn("no such process", str(error))
        self.assertEqual(len(self.engine.calls), 3 + INSPECT_TRIES)

    def test_conflictsOnPodman(self) -> None:
        """Podman's 500s for a taken name and a refused state are conflicts."""
        self.engine.answer("POST", "/containers/create", EngineError(500, PODMAN_NAME_CONFLICT))
        error = self.failureResultOf(self.backend.create(ContainerSpec("web")), Conflict).value
        self.assertEqual(str(error), 'container name "web" is already in use')
        self.engine.answer("GET", "/json", podmanInspect("running"))
        self.engine.answer("DELETE", "/c1", EngineError(500, PODMAN_STATE_CONFLICT))
        self.failureResultOf(self.backend.remove("web", False), Conflict)
        self.assertIsInstance(mapEngineError(500, PODMAN_STATE_CONFLICT, "web"), Conflict)
        self.assertIsInstance(mapEngineError(500, PODMAN_NAME_CONFLICT, "web"), Conflict)

    def test_followWaitsForTheFirstLine(self) -> None:
        """
        Podman answers a log follow only with its first line: the follow
        starts at once, its stream has no header time limit, and a cancel
        before that answer ends it.
        """
        self.engine.answer("GET", "/json", podmanInspect("running"))
        self.engine.answer("GET", "/logs", (200, b""))
        follow = self.successResultOf(self.backend.follow("web", None, lambda line: None))
        _, path, params = self.engine.calls[-1]
        self.assertEqual((path, params["headerTimeout"]), ("/containers/c1/logs", 0))
        self.assertNoResult(follow.ended)
        follow.cancel()
        self.successResultOf(follow.ended)


class PodmanMappingTests(SynchronousTestCase):
    """Podman's inspect and pycm's create body."""

    def test_inspect(self) -> None:
        """
        Podman's init is not the command, its numbered stop signal is
        named, the image is the one the client named, and its own states
        map to the contract's.
        """
        container = containerFromInspect(podmanInspect("running"))
        self.assertEqual(container.command, ("sleep", "1000"))
        self.assertEqual(container.stopSignal, "SIGTERM")
        self.assertEqual(container.image, "pycm-test/busybox:latest")
        self.assertEqual(container.state, State.RUNNING)
        for status, state in [
            ("configured", State.CREATED),
            ("initialized", State.CREATED),
            ("stopping", State.RUNNING),
            ("stopped", State.EXITED),
        ]:
            self.assertEqual(containerFromInspect(podmanInspect(status)).state, state, status)

    def test_createBody(self) -> None:
        """
        The image as named is kept in a label, and the stop timeout is
        always sent (Podman takes none as 0: a stop would be a SIGKILL).
        """
        body = createBody(ContainerSpec("web"), "pycm-test/busybox:latest")
        self.assertEqual(body["Labels"][IMAGE_LABEL], "pycm-test/busybox:latest")
        self.assertEqual(body["StopTimeout"], 10)


class PodmanEngineTests(SynchronousTestCase):
    """The engine client and the event stream."""

    def test_isPodman(self) -> None:
        """The engine is Podman when its version's components say so."""
        client = EngineClient(Clock(), EngineAddress.parse("unix:///x.sock"))
        self.assertFalse(client.isPodman)
        client.engineVersion = {"Components": [{"Name": "Engine"}]}
        self.assertFalse(client.isPodman)
        client.engineVersion = {"Components": [{"Name": "Podman Engine"}]}
        self.assertTrue(client.isPodman)

    def test_firstEventsSinceTheRequest(self) -> None:
        """
        The first events request asks for the events since it was sent:
        what pycm did while the engine was slow to answer it (Podman reads
        its whole event file first) is not lost.
        """
        clock = Clock()
        clock.advance(1234.5)
        calls: list[Any] = []

        class Engine(StubEngine):
            def stream(
                self, method: str, path: str, params: Any, onData: Any, *a: Any, **kw: Any
            ) -> Any:
                calls.append(params)
                return Deferred()

        seen: list[Any] = []
        events = EngineEvents(clock, Engine(), {}, seen.append, lambda r: None)
        events.start()
        self.assertEqual(calls[0]["since"], "1234.500000000")
