"""
Unit tests of the Docker backend's pure parts: the stream parsers, the
engine-to-pycm mappings, option parsing.  No engine needed; behaviour
against a real engine is in L{tests.test_docker_engine}.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.logger import Logger, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from pycm.backends.docker.backend import OPTIONS, DockerBackend, makeBackend
from pycm.backends.docker.engine import (
    EngineAddress,
    EngineClient,
    EngineError,
    Stream,
    defaultHost,
)
from pycm.backends.docker.events import EngineEvents
from pycm.backends.docker.signals import SignalsSent
from pycm.backends.docker.stream import (
    Demultiplexer,
    JSONLines,
    LogLineSplitter,
    StreamFormatError,
)
from pycm.backends.docker.translate import (
    ENV_KEYS_LABEL,
    MANAGED_LABEL,
    RESTART_POLICY_LABEL,
    STOP_TIMEOUT_LABEL,
    containerFromInspect,
    createBody,
    isMissingImage,
    mapEngineError,
    mapExitCode,
    mapPullError,
    mapState,
    sinceParam,
    splitImage,
)
from pycm.errors import BackendError, BadRequest, Conflict, NoImage, NotFound, Unavailable
from pycm.model import ContainerSpec, RestartPolicy, State
from tests.stubengine import StubEngine, wholeStream


def frame(stream: int, payload: bytes) -> bytes:
    """One frame of the engine's multiplexed stream."""
    return struct.pack(">BxxxL", stream, len(payload)) + payload


def chunked(data: bytes, size: int) -> list[bytes]:
    """C{data} cut into pieces of C{size} bytes."""
    return [data[i : i + size] for i in range(0, len(data), size)]


class DemultiplexerTests(SynchronousTestCase):
    """L{Demultiplexer} splits the 8-byte-header framed stream."""

    data = (
        frame(1, b"2026-11-29T13:00:00.000000001Z hello\n")
        + frame(2, b"2026-11-29T13:00:00.000000002Z oops\n")
        + frame(1, b"")
        + frame(1, b"2026-11-29T13:00:00.000000003Z a" + b"x" * 300 + b"\n")
    )

    def parse(self, size: int) -> list[tuple[str, bytes]]:
        frames: list[tuple[str, bytes]] = []
        demux = Demultiplexer(lambda s, p: frames.append((s, p)))
        for piece in chunked(self.data, size):
            demux.feed(piece)
        self.assertEqual(demux.pending, 0)
        return frames

    def test_anyChunking(self) -> None:
        """The same frames come out whether the bytes come 1, 2, ... N at a time."""
        expected = self.parse(len(self.data))
        self.assertEqual(len(expected), 4)
        self.assertEqual(expected[1], ("stderr", b"2026-11-29T13:00:00.000000002Z oops\n"))
        for size in range(1, 60):
            self.assertEqual(self.parse(size), expected, f"chunks of {size}")

    def test_incompleteFrameWaits(self) -> None:
        """A frame is delivered only once all its payload is there."""
        frames: list[tuple[str, bytes]] = []
        demux = Demultiplexer(lambda s, p: frames.append((s, p)))
        whole = frame(1, b"abc")
        demux.feed(whole[:-1])
        self.assertEqual(frames, [])
        self.assertEqual(demux.pending, len(whole) - 1)
        demux.feed(whole[-1:])
        self.assertEqual(frames, [("stdout", b"abc")])

    def test_badStreamNumber(self) -> None:
        """A header with an unknown stream number is a format error, not junk lines."""
        demux = Demultiplexer(lambda s, p: None)
        self.assertRaises(StreamFormatError, demux.feed, b"\x07\0\0\0\0\0\0\x01x")


class LogLineSplitterTests(SynchronousTestCase):
    """L{LogLineSplitter} turns frames into timestamped lines, per stream."""

    def test_linesAcrossFrames(self) -> None:
        """A line split over frames is joined; the two streams are kept apart."""
        lines: list[tuple[str, str | None, str]] = []
        splitter = LogLineSplitter(lambda *a: lines.append(a), timestamps=True)
        splitter.frameReceived("stdout", b"2026-11-29T13:00:00.5Z hel")
        splitter.frameReceived("stderr", b"2026-11-29T13:00:01Z err\r\n")
        splitter.frameReceived("stdout", b"lo\nno-timestamp-here")
        splitter.flush()
        self.assertEqual(
            lines,
            [
                ("stderr", "2026-11-29T13:00:01Z", "err"),
                ("stdout", "2026-11-29T13:00:00.5Z", "hello"),
                ("stdout", None, "no-timestamp-here"),
            ],
        )

    def test_badUTF8(self) -> None:
        """Bytes that are not UTF-8 are replaced, never an exception."""
        lines: list[tuple[str, str | None, str]] = []
        splitter = LogLineSplitter(lambda *a: lines.append(a), timestamps=False)
        splitter.frameReceived("stdout", b"\xff\xfe ok\n")
        self.assertEqual(lines, [("stdout", None, "\ufffd\ufffd ok")])

    def test_longLineIsCut(self) -> None:
        """A line without newline longer than maxLength is cut, not buffered for ever."""
        lines: list[tuple[str, str | None, str]] = []
        splitter = LogLineSplitter(lambda *a: lines.append(a), timestamps=False)
        splitter.maxLength = 10
        splitter.frameReceived("stdout", b"x" * 25)
        self.assertEqual([text for _, _, text in lines], ["x" * 10, "x" * 10])
        splitter.flush()
        self.assertEqual(lines[-1][2], "x" * 5)


class JSONLinesTests(SynchronousTestCase):
    """L{JSONLines} splits the engine's event and progress streams."""

    def test_anyChunking(self) -> None:
        """Values come out whole and in order whatever the chunk size; junk is skipped."""
        values = [{"a": 1}, {"status": "Pulling", "id": "x"}, [1, 2]]
        data = b"".join(json.dumps(v).encode() + b"\n" for v in values)
        data = data.replace(b"\n", b"\nnot json\n", 1) + b'{"last": true}'
        for size in range(1, len(data) + 1):
            seen: list[Any] = []
            parser = JSONLines(seen.append)
            for piece in chunked(data, size):
                parser.feed(piece)
            parser.flush()
            self.assertEqual(seen, [*values, {"last": True}], f"chunks of {size}")


def inspectData(**overrides: Any) -> dict[str, Any]:
    """A C{GET /containers/ID/json} answer of a container pycm created."""
    data: dict[str, Any] = {
        "Id": "abc123",
        "Name": "/web",
        "Created": "2026-11-29T13:00:00.123456789Z",
        "Path": "sleep",
        "Args": ["100"],
        "RestartCount": 2,
        "State": {
            "Status": "exited",
            "Running": False,
            "Pid": 0,
            "ExitCode": 143,
            "OOMKilled": False,
            "Error": "",
            "StartedAt": "2026-11-29T13:00:01Z",
            "FinishedAt": "2026-11-29T13:00:02Z",
        },
        "Config": {
            "Image": "busybox:latest",
            "Cmd": ["sleep", "100"],
            "Env": ["PATH=/bin", "A=1"],
            "Labels": {
                MANAGED_LABEL: "true",
                ENV_KEYS_LABEL: '["A"]',
                STOP_TIMEOUT_LABEL: "2.5",
                "team": "x",
            },
            "StopSignal": "SIGTERM",
            "StopTimeout": 3,
            "WorkingDir": "/tmp",
        },
        "HostConfig": {
            "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 3},
            "Memory": 1 << 26,
            "NanoCpus": 500_000_000,
        },
    }
    data.update(overrides)
    return data


class MappingTests(SynchronousTestCase):
    """Engine JSON to pycm values."""

    def test_states(self) -> None:
        """Each engine state maps to a pycm one; paused is running, removing is exited."""
        cases = {
            "created": State.CREATED,
            "running": State.RUNNING,
            "paused": State.RUNNING,
            "restarting": State.RESTARTING,
            "removing": State.EXITED,
            "exited": State.EXITED,
            "dead": State.DEAD,
            "something-new": State.DEAD,
        }
        for engine, pycm in cases.items():
            self.assertEqual(mapState({"Status": engine}), pycm, engine)

    def test_startErrorIsDead(self) -> None:
        """A created container the engine could not start is dead."""
        self.assertEqual(
            mapState({"Status": "created", "Error": "exec: nope: not found"}), State.DEAD
        )

    def test_exitCodes(self) -> None:
        """128+N is -N only if signal N was sent, or the engine OOM-killed it."""
        self.assertEqual(mapExitCode(143, {15, 9}, False), -15)
        self.assertEqual(mapExitCode(137, {15, 9}, False), -9)
        self.assertEqual(mapExitCode(143, (), False), 143)
        self.assertEqual(mapExitCode(137, (), True), -9)
        self.assertEqual(mapExitCode(3, {3}, False), 3)
        self.assertIsNone(mapExitCode(None, {9}, False))

    def test_container(self) -> None:
        """Every field of the contract's container comes from the inspect JSON."""
        container = containerFromInspect(inspectData(), {15})
        self.assertEqual(container.name, "web")
        self.assertEqual(container.backend, "docker")
        self.assertEqual(container.command, ("sleep", "100"))
        self.assertEqual(container.state, State.EXITED)
        self.assertEqual(container.exitCode, -15)
        self.assertIsNone(container.pid)
        self.assertEqual(container.labels, {"team": "x"})
        self.assertEqual(container.env, {"A": "1"})
        self.assertEqual(container.stopTimeout, 2.5)
        self.assertEqual(container.restartPolicy, RestartPolicy("on-failure", 3))
        self.assertEqual(container.restartCount, 2)
        self.assertEqual(container.memory, 1 << 26)
        self.assertEqual(container.cpus, 0.5)
        self.assertEqual(container.workdir, "/tmp")
        self.assertAlmostEqual(container.created, 1795957200.123456, places=5)
        self.assertIsNotNone(container.finished)

    def test_runningAndStopping(self) -> None:
        """A running container has a pid and no exit code; one pycm is stopping is stopping."""
        data = inspectData(
            State={
                "Status": "running",
                "Pid": 42,
                "ExitCode": 0,
                "StartedAt": "2026-11-29T13:00:01Z",
                "FinishedAt": "0001-01-01T00:00:00Z",
            }
        )
        container = containerFromInspect(data)
        self.assertEqual(
            (container.state, container.pid, container.exitCode), ("running", 42, None)
        )
        self.assertIsNone(container.finished)
        self.assertEqual(containerFromInspect(data, stopping=True).state, State.STOPPING)

    def test_createdHasNoExitCode(self) -> None:
        """A container never started has no exit code, and no start time."""
        data = inspectData(
            State={
                "Status": "created",
                "ExitCode": 0,
                "StartedAt": "0001-01-01T00:00:00Z",
                "FinishedAt": "0001-01-01T00:00:00Z",
            }
        )
        container = containerFromInspect(data)
        self.assertEqual(
            (container.state, container.exitCode, container.started), ("created", None, None)
        )

    def test_createBody(self) -> None:
        """Every run option becomes its engine field; pycm's label marks it."""
        spec = ContainerSpec(
            name="web",
            image="ignored",
            command=("sh", "-c", "echo hi"),
            env={"A": "1"},
            labels={"team": "x"},
            restartPolicy=RestartPolicy("on-failure", 3),
            stopTimeout=2.5,
            stopSignal="hup",
            memory=1 << 26,
            cpus=1.5,
            workdir="/tmp",
        )
        body = createBody(spec, "busybox:1", networkMode="none", init=True)
        self.assertEqual(body["Image"], "busybox:1")
        self.assertEqual(body["Cmd"], ["sh", "-c", "echo hi"])
        self.assertEqual(body["Env"], ["A=1"])
        self.assertEqual(body["Labels"]["team"], "x")
        self.assertEqual(body["Labels"][MANAGED_LABEL], "true")
        self.assertEqual(body["StopTimeout"], 3)
        self.assertEqual(body["Labels"][STOP_TIMEOUT_LABEL], "2.5")
        self.assertEqual(body["StopSignal"], "SIGHUP")
        self.assertEqual(body["WorkingDir"], "/tmp")
        host = body["HostConfig"]
        self.assertEqual(host["RestartPolicy"], {"Name": "on-failure", "MaximumRetryCount": 3})
        self.assertEqual(host["Memory"], 1 << 26)
        self.assertEqual(host["NanoCpus"], 1_500_000_000)
        self.assertEqual(host["NetworkMode"], "none")
        self.assertTrue(host["Init"])

    def test_createBodyDefaults(self) -> None:
        """Without a command the image's own runs (no Cmd); no policy means none sent."""
        body = createBody(ContainerSpec(name="web"), "busybox")
        self.assertNotIn("Cmd", body)
        self.assertNotIn("RestartPolicy", body["HostConfig"])
        self.assertNotIn("NetworkMode", body["HostConfig"])
        # Always sent, so only SIGTERM (or SIGKILL) kills end the policy.
        self.assertEqual(body["StopSignal"], "SIGTERM")

    def test_createBodyRefuses(self) -> None:
        """Values the engine cannot take are bad requests before any request."""
        for spec in [
            ContainerSpec(name="w", labels={MANAGED_LABEL: "false"}),
            ContainerSpec(name="w", workdir="relative"),
            ContainerSpec(name="w", cpus=0.0),
            ContainerSpec(name="w", memory=-1),
            ContainerSpec(name="w", stopSignal="NOPE"),
            ContainerSpec(name="w", env={"A=B": "c"}),
        ]:
            self.assertRaises(BadRequest, createBody, spec, "busybox")

    def test_splitImage(self) -> None:
        """References split into fromImage and tag as the pull endpoint wants."""
        self.assertEqual(splitImage("busybox"), ("busybox", "latest"))
        self.assertEqual(splitImage("busybox:1.36"), ("busybox", "1.36"))
        self.assertEqual(
            splitImage("127.0.0.1:5000/pycm-test/busybox"),
            ("127.0.0.1:5000/pycm-test/busybox", "latest"),
        )
        self.assertEqual(splitImage("127.0.0.1:5000/a/b:v1"), ("127.0.0.1:5000/a/b", "v1"))
        self.assertEqual(splitImage("a@sha256:00ff"), ("a", "sha256:00ff"))

    def test_sinceParam(self) -> None:
        """RFC 3339 nanosecond timestamps become exact seconds.nanoseconds."""
        self.assertEqual(sinceParam("1970-01-01T00:00:10.000000123Z"), "10.000000123")
        self.assertEqual(sinceParam("1970-01-01T00:00:10.5Z"), "10.500000000")
        self.assertEqual(sinceParam("1970-01-01T00:00:10Z"), "10.000000000")

    def test_engineErrors(self) -> None:
        """Engine statuses become the contract's error codes, keeping its message."""
        self.assertEqual(mapEngineError(404, "No such container: x", name="x"), NotFound("x"))
        self.assertEqual(
            mapEngineError(404, "No such image: i", name="x", image="i"),
            NoImage("i", "No such image: i"),
        )
        self.assertEqual(
            mapEngineError(409, 'Conflict. The container name "/x" is already in use', "x"),
            Conflict('container name "x" is already in use'),
        )
        self.assertIsInstance(mapEngineError(409, "is running", "x"), Conflict)
        self.assertEqual(mapEngineError(400, "bad", "x"), BadRequest("bad"))
        self.assertIsInstance(mapEngineError(400, "bad", "x", badRequest=False), BackendError)
        error = mapEngineError(500, "disk full", "x")
        self.assertIsInstance(error, BackendError)
        self.assertIn("disk full", str(error))

    def test_pullErrors(self) -> None:
        """Only a missing image is no_image; an unreachable registry unavailable; others backend."""
        missing = [
            (404, "manifest for r/x:1 not found: manifest unknown: manifest unknown"),
            (404, "pull access denied for x, repository does not exist"),
            (None, "manifest unknown"),
            (403, "denied"),
        ]
        for status, message in missing:
            self.assertIsInstance(mapPullError("x", status, message), NoImage, message)
        unreachable = (
            'Get "http://127.0.0.1:1/v2/": dial tcp 127.0.0.1:1: connect: connection refused'
        )
        self.assertIsInstance(mapPullError("x", 500, unreachable), Unavailable)
        for status, message in [(500, "no space left on device"), (None, "write /x: disk full")]:
            error = mapPullError("x", status, message)
            self.assertEqual(type(error), BackendError, message)
            self.assertIn(message, str(error))

    def test_createNotFoundNotAboutTheImage(self) -> None:
        """A 404 at create that is not about the image is a backend error, not not_found."""
        error = mapEngineError(404, "network pycm-x not found", name="x", image="i")
        self.assertEqual(type(error), BackendError)
        self.assertIn("network pycm-x not found", str(error))
        self.assertFalse(isMissingImage("network pycm-x not found"))
        self.assertTrue(isMissingImage("No such image: busybox:latest"))


class CreateErrorTests(SynchronousTestCase):
    """How the backend maps the engine's errors at create, on a stubbed engine."""

    def backend(self, error: Exception) -> tuple[Any, list[str]]:
        from twisted.internet.defer import fail

        from pycm.backends.docker.backend import DockerBackend

        calls: list[str] = []

        class Engine(StubEngine):
            def request(self, method: str, path: str, *args: Any, **kw: Any) -> Any:
                calls.append(f"{method} {path}")
                return fail(error)

            def stream(self, method: str, path: str, *args: Any, **kw: Any) -> Any:
                calls.append(f"{method} {path}")
                return fail(EngineError(404, "manifest unknown"))

        return DockerBackend(Clock(), Engine(), pull=True), calls

    def test_otherNotFoundAtCreate(self) -> None:
        """With pull=missing, a 404 at create not about the image pulls nothing: backend error."""
        message = 'create v: error looking up volume plugin x: plugin "x" not found'
        backend, calls = self.backend(EngineError(404, message))
        error = self.failureResultOf(backend.create(ContainerSpec("web")), BackendError).value
        self.assertEqual(type(error), BackendError)
        self.assertIn(message, str(error))
        self.assertEqual(calls, ["POST /containers/create"])

    def test_missingImageAtCreatePulls(self) -> None:
        """With pull=missing, "No such image" at create pulls; a missing one is no_image."""
        backend, calls = self.backend(EngineError(404, "No such image: busybox:latest"))
        self.failureResultOf(backend.create(ContainerSpec("web")), NoImage)
        self.assertEqual(calls, ["POST /containers/create", "POST /images/create"])


class ReconcileTests(SynchronousTestCase):
    """What the backend tells after the event stream comes back from an engine restart."""

    def test_snapshotAndNotes(self) -> None:
        """
        Compared against one snapshot: a container a live event changes
        while reconciliation waits for the engine gets no second, synthetic
        event, and keeps what the live event said; the synthetic create
        and start fire who waits for them.
        """
        from twisted.internet.defer import Deferred

        from pycm.backends.docker.backend import DockerBackend

        pending: dict[str, Deferred[Any]] = {}

        class Engine(StubEngine):
            def request(self, method: str, path: str, *args: Any, **kw: Any) -> Any:
                d: Deferred[Any] = Deferred()
                pending[path] = d
                return d

        backend = DockerBackend(Clock(), Engine())
        backend._events.connected = True
        seen: list[Any] = []
        backend.addObserver(seen.append)
        backend._view.known = {"a": ("id-a", State.RUNNING), "b": ("id-b", State.CREATED)}
        mark = backend._journal.mark()
        waiters = [
            backend._journal.awaitEvent(mark, "b", "start"),
            backend._journal.awaitEvent(mark, "c", "create"),
            backend._journal.awaitEvent(mark, "c", "start"),
        ]
        done = backend._reconciler.connected(True)
        labels = {MANAGED_LABEL: "true"}

        def summary(name: str, cid: str, state: str) -> dict[str, Any]:
            policy = {**labels, RESTART_POLICY_LABEL: "no"}
            return {"Id": cid, "Names": [f"/{name}"], "State": state, "Labels": policy}

        pending.pop("/containers/json").callback(
            (
                200,
                [
                    summary("a", "id-a", "exited"),
                    summary("b", "id-b", "running"),
                    summary("c", "id-c", "running"),
                ],
            )
        )
        self.assertEqual(list(pending), ["/containers/id-a/json"])
        # The stream, open again, tells a's exit while the inspect is out.
        backend._teller.received(
            {
                "Action": "die",
                "Actor": {"ID": "id-a", "Attributes": {"name": "a", "exitCode": "3", **labels}},
                "timeNano": 1,
            }
        )
        inspect = {
            "Id": "id-a",
            "Name": "/a",
            "Config": {"Labels": labels},
            "State": {"Status": "exited", "ExitCode": 3, "FinishedAt": "2026-01-01T00:00:00Z"},
        }
        pending.pop("/containers/id-a/json").callback((200, inspect))
        self.successResultOf(done)
        actions = [(e.name, e.action, e.exitCode) for e in seen]
        self.assertEqual(
            actions,
            [
                ("a", "die", 3),
                ("b", "start", None),
                ("c", "create", None),
                ("c", "start", None),
            ],
        )
        for waiter in waiters:
            self.successResultOf(waiter)
        self.assertEqual(backend._view.known["a"], ("id-a", State.EXITED))
        self.assertEqual(backend._view.known["c"], ("id-c", State.RUNNING))


class CancelledStream(Stream):
    """A stream whose C{cancel} ends it (as closing its connection does)."""

    def cancel(self) -> None:
        if not self.ended.called:
            self.ended.callback(None)


#: The engine's C{SystemTime} (GET /info): its clock is 2.5 s behind the daemon's.
ENGINE_TIME = "1970-01-01T00:01:37.500000000Z"


class ReconcileRaceTests(SynchronousTestCase):
    """
    Reconciling after the stream reconnects races no event: the engine's
    list is newer than the snapshot it is compared with, and older than
    events the stream has not delivered yet (Podman's stream ended every
    10 s or so under test_concurrentEventsAllDelivered's load, and the
    reconciliation then told a destroy of a live container and starts
    twice).
    """

    def setUp(self) -> None:
        self.pending: dict[str, Deferred[Any]] = {}
        self.streams: list[tuple[dict[str, Any], Callable[[bytes], object], Deferred[None]]] = []
        test = self

        class Engine(StubEngine):
            def request(self, method: str, path: str, *args: Any, **kw: Any) -> Any:
                d: Deferred[Any] = Deferred()
                test.pending[path] = d
                return d

            def stream(self, method: str, path: str, params: Any, onData: Any, **kw: Any) -> Any:
                ended: Deferred[None] = Deferred()
                test.streams.append((params, onData, ended))
                return succeed(CancelledStream(ended))

        self.engine = Engine()
        self.backend = DockerBackend(Clock(), self.engine)
        self.backend._events.connected = True
        self.backend._events._running = True
        self.backend._events._streamSince = "90.000000000"
        self.backend._events._sinceSeconds = 80.0
        self.backend.reactor.advance(100)
        self.seen: list[Any] = []
        self.backend.addObserver(self.seen.append)

    def raw(self, action: str, name: str, nano: int) -> dict[str, Any]:
        """dockerd's event of C{action} for the container C{name} (id-NAME)."""
        attributes = {"name": name, MANAGED_LABEL: "true", RESTART_POLICY_LABEL: "no"}
        return {
            "Action": action,
            "Actor": {"ID": f"id-{name}", "Attributes": attributes},
            "timeNano": nano,
        }

    def summary(self, name: str, state: str) -> dict[str, Any]:
        labels = {MANAGED_LABEL: "true", RESTART_POLICY_LABEL: "no"}
        return {"Id": f"id-{name}", "Names": [f"/{name}"], "State": state, "Labels": labels}

    def test_catchesUpBeforeComparing(self) -> None:
        """
        A container created after the list was asked for is not told
        destroyed; one whose start the stream has not delivered yet is
        told started once, by the catch-up with the engine's history up
        to the list's answer (the engine's time after it, from GET /info,
        not the daemon's clock), and not again by the stream.
        """
        backend = self.backend
        backend._view.known = {"b": ("id-b", State.CREATED)}
        done = backend._reconciler.connected(True, backend._events)
        backend._events._received(self.raw("create", "c", 95 * 10**9))
        self.pending.pop("/containers/json").callback((200, [self.summary("b", "running")]))
        self.assertEqual(self.streams, [])
        self.pending.pop("/info").callback((200, {"SystemTime": ENGINE_TIME}))
        self.assertNoResult(done)
        [(params, onData, ended)] = self.streams
        self.assertEqual((params["since"], params["until"]), ("90.000000000", "97.500000000"))
        start = self.raw("start", "b", 96 * 10**9)
        onData(json.dumps(start).encode() + b"\n")
        ended.callback(None)
        self.successResultOf(done)
        backend._events._received(start)
        self.assertEqual([(e.name, e.action) for e in self.seen], [("c", "create"), ("b", "start")])
        self.assertEqual(backend._view.known["c"], ("id-c", State.CREATED))

    def test_tellsWhatTheEngineLost(self) -> None:
        """
        What the engine's history does not have (a restarted dockerd's)
        is told: a container gone is told dead and destroyed.
        """
        backend = self.backend
        backend._view.known = {"a": ("id-a", State.RUNNING)}
        done = backend._reconciler.connected(True, backend._events)
        self.pending.pop("/containers/json").callback((200, []))
        self.pending.pop("/info").callback((200, {"SystemTime": ENGINE_TIME}))
        self.streams[0][2].callback(None)
        self.successResultOf(done)
        self.assertEqual([(e.name, e.action) for e in self.seen], [("a", "die"), ("a", "destroy")])

    def test_catchUpTimesOut(self) -> None:
        """
        A catch-up the engine does not end (an C{until} its clock has not
        reached) is cut after C{catchUpTimeout}: the comparison goes on
        with what the stream delivered.
        """
        backend = self.backend
        backend._view.known = {"a": ("id-a", State.RUNNING)}
        done = backend._reconciler.connected(True, backend._events)
        self.pending.pop("/containers/json").callback((200, []))
        self.pending.pop("/info").callback((200, {"SystemTime": ENGINE_TIME}))
        backend.reactor.advance(EngineEvents.catchUpTimeout - 0.001)
        self.assertNoResult(done)
        backend.reactor.advance(0.001)
        self.successResultOf(done)
        self.assertTrue(self.streams[0][2].called)  # cancelled
        self.assertEqual([(e.name, e.action) for e in self.seen], [("a", "die"), ("a", "destroy")])
        self.assertEqual(backend.reactor.getDelayedCalls(), [])

    def test_stopEndsCatchUp(self) -> None:
        """
        Stopping the event stream during a catch-up closes its request
        and cancels its timeout: nothing is left scheduled.
        """
        backend = self.backend
        catchUp = backend._events.catchUp(97.5)
        [(params, onData, ended)] = self.streams
        self.assertNoResult(catchUp)
        backend._events.stop()
        self.assertFalse(self.successResultOf(catchUp))
        self.assertTrue(ended.called)
        self.assertEqual(backend.reactor.getDelayedCalls(), [])

    def test_noEngineTime(self) -> None:
        """
        Without the engine's time (GET /info failed, or has no
        C{SystemTime}) nothing is caught up: the comparison goes on with
        what the stream delivered.
        """
        for answer in [Unavailable("engine gone"), (200, {})]:
            self.seen.clear()
            backend = self.backend
            backend._view.known = {"a": ("id-a", State.RUNNING)}
            done = backend._reconciler.connected(True, backend._events)
            self.pending.pop("/containers/json").callback((200, []))
            info = self.pending.pop("/info")
            if isinstance(answer, Exception):
                info.errback(answer)
            else:
                info.callback(answer)
            self.successResultOf(done)
            self.assertEqual(self.streams, [])
            self.assertEqual([(e.name, e.action) for e in self.seen],
                             [("a", "die"), ("a", "destroy")])

    def test_nothingToldOnPodman(self) -> None:
        """
        Podman's stream replays all it missed (its history is a file):
        nothing is told, and no catch-up asked (Podman answers a past
        C{until} with nothing).
        """
        backend = self.backend
        self.engine.isPodman = True
        backend._view.known = {"a": ("id-a", State.RUNNING)}
        done = backend._reconciler.connected(True, backend._events)
        self.pending.pop("/containers/json").callback((200, [self.summary("a", "exited")]))
        self.successResultOf(done)
        self.assertEqual((self.seen, self.streams), ([], []))
        self.assertEqual(backend._view.known["a"], ("id-a", State.EXITED))


class OptionTests(SynchronousTestCase):
    """makeBackend's options and the engine address."""

    def test_addresses(self) -> None:
        """unix:// and tcp:// hosts parse; anything else is refused."""
        self.assertEqual(EngineAddress.parse("unix:///run/d.sock").path, "/run/d.sock")
        tcp = EngineAddress.parse("tcp://10.0.0.1:2376")
        self.assertEqual((tcp.host, tcp.port), ("10.0.0.1", 2376))
        self.assertRaises(BackendError, EngineAddress.parse, "ssh://host")
        self.assertRaises(BackendError, EngineAddress.parse, "/var/run/docker.sock")

    def test_defaultHost(self) -> None:
        """DOCKER_HOST wins; without it, the standard socket."""
        self.assertEqual(defaultHost({"DOCKER_HOST": "tcp://h:1"}), "tcp://h:1")
        self.assertEqual(defaultHost({}), "unix:///var/run/docker.sock")

    def test_makeBackend(self) -> None:
        """Options set the backend up; nothing connects until open()."""
        backend = makeBackend(
            Clock(),
            None,
            {
                "docker-host": "unix:///nowhere.sock",
                "default-image": "img:1",
                "pull": "missing",
                "request-timeout": "2.5",
                "network": "none",
                "init": "no",
                "default-command": "sleep 1000",
            },
        )
        self.assertEqual(backend.defaultImage, "img:1")
        self.assertTrue(backend.pull)
        self.assertEqual(backend.engine.timeout, 2.5)
        self.assertEqual(backend.networkMode, "none")
        self.assertFalse(backend.init)
        self.assertEqual(backend.defaultCommand, ("sleep", "1000"))
        self.assertEqual(str(backend.engine.address), "unix:///nowhere.sock")

    def test_badOptions(self) -> None:
        """A bad value is a BadRequest naming the option; every option is documented."""
        for options in [
            {"pull": "always"},
            {"request-timeout": "-1"},
            {"init": "maybe"},
            {"docker-host": "ftp://x"},
        ]:
            self.assertRaises(BadRequest, makeBackend, Clock(), None, options)
        for key in ("docker-host", "default-image", "pull", "request-timeout"):
            self.assertIn(key, OPTIONS)


def _connectedEvents() -> tuple[Clock, Any, EngineEvents, list[Any], Any, Any]:
    """
    An L{EngineEvents} on a fake engine and clock, connected: the clock,
    the engine, it, the events it delivered, the stream's end Deferred and
    the stream's data callback.
    """
    clock = Clock()
    engine = _FakeEngine()
    seen: list[Any] = []
    events = EngineEvents(clock, engine, {}, seen.append, lambda r: None)
    events.start()
    d, onData = engine.last
    ended: Deferred[None] = Deferred()
    d.callback(Stream(ended))
    return clock, engine, events, seen, ended, onData


class _FakeEngine(StubEngine):
    """Stands in for L{EngineClient}.stream in event-stream unit tests."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def stream(self, method: str, path: str, params: Any, onData: Any, *a: Any, **kw: Any) -> Any:
        from twisted.internet.defer import Deferred

        self.calls.append(params)
        d: Deferred[Any] = Deferred()
        self.last = (d, onData)
        return d


class EngineEventsTests(SynchronousTestCase):
    """L{EngineEvents} de-duplicates across reconnections and backs off."""

    def test_reconnectSinceAndDedupe(self) -> None:
        """After the stream ends it reconnects with since= the last event, dropping repeats."""
        clock, engine, events, seen, ended, onData = _connectedEvents()
        self.assertTrue(events.connected)
        a = {"Action": "start", "Actor": {"ID": "1"}, "timeNano": 5_000000001}
        b = {"Action": "die", "Actor": {"ID": "1"}, "timeNano": 5_000000001}
        onData(json.dumps(a).encode() + b"\n" + json.dumps(b).encode() + b"\n")
        ended.callback(None)
        self.assertFalse(events.connected)
        clock.advance(events.minDelay)
        self.assertEqual(engine.calls[-1]["since"], "3.000000001")
        d, onData = engine.last
        d.callback(Stream(Deferred()))
        c = {"Action": "destroy", "Actor": {"ID": "1"}, "timeNano": 6_000000000}
        onData(b"".join(json.dumps(e).encode() + b"\n" for e in (a, b, c)))
        self.assertEqual(seen, [a, b, c])

    def test_liveEventsOutOfOrder(self) -> None:
        """
        Live events a little out of timestamp order are all delivered; after
        a reconnection the replay (from before the newest, by the replay
        window) drops exactly the ones already delivered.
        """
        clock, engine, events, seen, ended, onData = _connectedEvents()

        def event(action: str, cid: str, nano: int) -> dict[str, Any]:
            return {"Action": action, "Actor": {"ID": cid}, "timeNano": nano}

        live = [
            event("create", "a", 10_000000500),
            event("create", "b", 10_000000400),
            event("start", "b", 10_000000900),
            event("start", "a", 10_000000800),
        ]
        onData(b"".join(json.dumps(e).encode() + b"\n" for e in live))
        self.assertEqual(seen, live)
        ended.callback(None)
        clock.advance(events.minDelay)
        self.assertEqual(engine.calls[-1]["since"], "8.000000900")
        d, onData = engine.last
        d.callback(Stream(Deferred()))
        missed = event("die", "a", 10_000000950)
        replay = sorted([*live, missed], key=lambda e: e["timeNano"])
        onData(b"".join(json.dumps(e).encode() + b"\n" for e in replay))
        self.assertEqual(seen, [*live, missed])

    def test_backoff(self) -> None:
        """Failed connections are retried with a doubling delay up to maxDelay."""
        clock = Clock()
        engine = _FakeEngine()
        events = EngineEvents(clock, engine, {}, lambda e: None, lambda r: None)
        events.start()
        delays = []
        for _ in range(10):
            d, _ = engine.last
            d.errback(RuntimeError("down"))
            delays.append(clock.getDelayedCalls()[0].getTime() - clock.seconds())
            clock.advance(delays[-1])
        self.assertEqual([round(d, 6) for d in delays[:3]], [0.1, 0.2, 0.4])
        self.assertEqual(delays[-1], events.maxDelay)
        events.stop()
        self.assertEqual(clock.getDelayedCalls(), [])


class EngineClientTests(SynchronousTestCase):
    """L{EngineClient} builds URLs the engine understands."""

    def test_url(self) -> None:
        """Parameters are encoded; dicts become JSON (filters), booleans 1/0, None dropped."""
        client = EngineClient(Clock(), EngineAddress.parse("unix:///x.sock"))
        url = client._url(
            "/v1.41/containers/json", {"all": True, "filters": {"label": ["a=b"]}, "x": None}
        )
        self.assertEqual(
            url,
            "http://docker/v1.41/containers/json?all=1&filters=%7B%22label%22%3A+%5B%22a%3Db%22%5D%7D",
        )


class SignalsSentTests(SynchronousTestCase):
    """L{SignalsSent}: what pycm sent each container, kept in a file."""

    def setUp(self) -> None:
        os.makedirs(self.mktemp())
        self.path = os.path.abspath(self.mktemp())

    def test_inMemory(self) -> None:
        """Without a path: add, get, forget."""
        sent = SignalsSent()
        sent.add("web", 15, 9)
        sent.add("web", 15)
        self.assertEqual(sent.get("web"), {9, 15})
        self.assertEqual(sent.get("db"), frozenset())
        sent.forget("web")
        sent.forget("web")
        self.assertEqual(sent.get("web"), frozenset())

    def test_keptInFile(self) -> None:
        """
        Another instance on the same file (a restarted daemon) knows what
        was sent; a forgotten or pruned name is gone from the file too.
        """
        sent = SignalsSent(self.path)
        sent.add("web", 15, 9)
        sent.add("db", 2)
        sent.add("old", 9)
        self.assertEqual(SignalsSent(self.path).get("web"), {9, 15})
        sent.forget("db")
        sent.settle(sent.names(), {"web": False, "db": False})
        again = SignalsSent(self.path)
        self.assertEqual((again.get("web"), again.get("db"), again.get("old")),
                         ({9, 15}, frozenset(), frozenset()))
        self.assertEqual(os.stat(self.path).st_mode & 0o777, 0o600)
        self.assertEqual(os.listdir(os.path.dirname(self.path)), [os.path.basename(self.path)])

    def test_writtenOnlyOnChange(self) -> None:
        """Nothing is written when nothing changed (a start forgets nothing)."""
        sent = SignalsSent(self.path)
        sent.forget("web")
        sent.settle(sent.names(), {})
        self.assertFalse(os.path.exists(self.path))
        sent.add("web", 15)
        os.unlink(self.path)
        sent.add("web", 15)
        self.assertFalse(os.path.exists(self.path))

    def test_settle(self) -> None:
        """
        Against the engine's list: a container that is gone is forgotten;
        one an earlier daemon stopped that runs again (restarted while no
        daemon watched) is forgotten; one this daemon signals while the list
        is taken, or that is still stopped, is kept.
        """
        earlier = SignalsSent(self.path)
        for name in ("gone", "restarted", "stopped", "stopping"):
            earlier.add(name, 15)
        sent = SignalsSent(self.path)
        before = sent.names()
        sent.add("stopping", 9)
        sent.add("new", 15)
        sent.settle(before, {"restarted": True, "stopped": False, "stopping": True, "new": True})
        self.assertEqual(sent.names(), {"stopped", "stopping", "new"})
        self.assertEqual(SignalsSent(self.path).names(), {"stopped", "stopping", "new"})
        # Only a daemon's first comparison judges what it loaded.
        sent.settle(sent.names(), {"stopped": True, "stopping": True, "new": True})
        self.assertEqual(sent.names(), {"stopped", "stopping", "new"})

    def test_badFileIgnored(self) -> None:
        """A file that is not what was written is ignored, with a warning."""
        logged = self.captureLog()
        for content in [b"{not json", b"[1, 2]", b'{"web": [15, "x"], "db": [9]}']:
            with open(self.path, "wb") as f:
                f.write(content)
            sent = SignalsSent(self.path)
            self.assertEqual(sent.get("web"), frozenset())
        self.assertEqual(sent.get("db"), {9})
        self.assertEqual(len(logged), 2)
        self.assertTrue(all(self.path in formatEvent(e) for e in logged))

    def test_unwritable(self) -> None:
        """A file that cannot be written: the memory is kept in this process."""
        logged = self.captureLog()
        sent = SignalsSent(os.path.join(self.path, "missing-directory", "signals.json"))
        sent.add("web", 15)
        sent.add("db", 9)
        self.assertEqual((sent.get("web"), sent.get("db")), ({15}, {9}))
        self.assertEqual(len(logged), 1)
        self.assertIn("may show exit code 128+N", formatEvent(logged[0]))

    def captureLog(self) -> list[dict[str, Any]]:
        """The events L{SignalsSent} logs from now on."""
        logged: list[dict[str, Any]] = []
        self.patch(SignalsSent, "log", Logger(observer=logged.append))
        return logged


class PullProgressTests(SynchronousTestCase):
    """The progress events of a pull, on a stubbed engine."""

    def test_layers(self) -> None:
        """
        Each change of a layer's status is a progress event naming the
        image, the layer (C{""} for the image as a whole) and the status.
        """
        from twisted.internet.defer import succeed

        from pycm.backends.docker.backend import DockerBackend
        from pycm.backends.docker.engine import Stream
        from pycm.model import ProgressEvent

        lines = [
            {"status": "Pulling from library/busybox", "id": "latest"},
            {"status": "Pulling fs layer", "id": "9ad63333ebc9"},
            {"status": "Downloading", "id": "9ad63333ebc9", "progressDetail": {"current": 1}},
            {"status": "Downloading", "id": "9ad63333ebc9", "progressDetail": {"current": 2}},
            {"status": "Status: Downloaded newer image for busybox:latest"},
        ]

        class Engine(StubEngine):
            def stream(
                self, method: str, path: str, params: Any, onData: Any, *a: Any, **kw: Any
            ) -> Any:
                onData(b"".join(json.dumps(line).encode() + b"\r\n" for line in lines))
                return succeed(Stream(succeed(None)))

        backend = DockerBackend(Clock(), Engine(), pull=True)
        seen: list[Any] = []
        backend.addObserver(seen.append)
        self.successResultOf(backend.pullImage("busybox:latest", "web"))
        self.assertTrue(all(isinstance(e, ProgressEvent) for e in seen))
        self.assertEqual(
            [(e.toJSON()["layer"], e.toJSON()["status"]) for e in seen],
            [("latest", "Pulling from library/busybox"),
             ("9ad63333ebc9", "Pulling fs layer"),
             ("9ad63333ebc9", "Downloading"),
             ("", "Status: Downloaded newer image for busybox:latest")],
        )
        self.assertEqual({e.toJSON()["image"] for e in seen}, {"busybox:latest"})
        self.assertEqual(seen[1].toJSON()["detail"],
                         "busybox:latest 9ad63333ebc9 Pulling fs layer")


class LogsSinceTests(SynchronousTestCase):
    """C{logs} with C{since}, on a stubbed engine."""

    def test_engineAskedNoLaterThanTheLine(self) -> None:
        """
        The engine's C{since} for a line's own time is never after that
        line's nanosecond stamp (a float near today's epoch is exact to a
        quarter microsecond: C{.9f} of it rounded this stamp up by 16 ns,
        and the engine left the line out).
        """
        from decimal import Decimal

        from pycm.backends.docker.follow import engineSince
        from pycm.model import parseTime

        stamp = "2026-11-30T17:27:13.273646100Z"
        exact = Decimal(1796059633) + Decimal("0.273646100")
        since = parseTime(stamp)
        assert since is not None
        self.assertLessEqual(Decimal(engineSince(since)), exact)
        self.assertGreater(Decimal(engineSince(since)), exact - Decimal("0.000002"))

    def test_since(self) -> None:
        """
        The engine is asked for every line since then (its tail comes
        before its since), and the last C{tail} of them are kept here.
        """
        from pycm.backends.docker.backend import DockerBackend
        from pycm.backends.docker.follow import engineSince
        from pycm.model import parseTime

        stamps = ["2026-11-30T10:00:00.000000000Z", "2026-11-30T10:00:01.000000000Z",
                  "2026-11-30T10:00:02.000000000Z"]
        asked: list[Any] = []

        def frames(since: float) -> bytes:
            payloads = [f"{stamp} line {i}\n".encode() for i, stamp in enumerate(stamps)
                        if (parseTime(stamp) or 0) >= since]
            return b"".join(struct.pack(">BxxxL", 1, len(p)) + p for p in payloads)

        class Engine(StubEngine):
            def stream(self, method: str, path: str, params: Any, onData: Any,
                       *args: Any, **kw: Any) -> Any:
                asked.append(params)
                return wholeStream(onData, frames(float(params.get("since", 0))))

        backend = DockerBackend(Clock(), Engine(), pull=False)
        since = parseTime(stamps[1])
        lines = self.successResultOf(backend._logs.read("cid", 1, since))
        self.assertEqual([line.line for _, line in lines], ["line 2"])
        # A microsecond early (see test_engineAskedNoLaterThanTheLine).
        self.assertEqual((asked[-1]["tail"], asked[-1]["since"]), ("all", engineSince(since)))
        lines = self.successResultOf(backend._logs.read("cid", None, since))
        self.assertEqual([line.line for _, line in lines], ["line 1", "line 2"])
        lines = self.successResultOf(backend._logs.read("cid", 5))
        self.assertNotIn("since", asked[-1])
        self.assertEqual(len(lines), 3)


class NextExitTests(SynchronousTestCase):
    """
    C{wait next-exit} on a scripted engine (L{tests.test_docker_podman}'s)
    and a fake clock: the engine's own wait counts only exits after it got
    the request, so the backend ends the wait on a die event as well.
    """

    def setUp(self) -> None:
        from tests.test_docker_podman import ScriptedEngine, podmanInspect

        self.clock = Clock()
        self.clock.advance(100)
        self.engine = ScriptedEngine(podman=False)
        self.cancelled: list[bool] = []
        self.engineWait: Deferred[Any] = Deferred(lambda _: self.cancelled.append(True))
        self.engine.answer(
            "GET", "/json", [podmanInspect("running"), podmanInspect("exited")]
        )
        self.engine.answer("POST", "/wait", self.engineWait)
        self.backend = DockerBackend(self.clock, self.engine)
        self.backend._events.connected = True

    def die(self) -> None:
        from tests.test_docker_podman import podmanEvent

        self.backend._teller.received(podmanEvent("die", 129, int(self.clock.seconds() * 1e9)))

    def test_exitBeforeTheEngineWaits(self) -> None:
        """
        A die that came before the engine's wait began (a kill sent at
        the same time got there first) ends the wait: the engine's would
        wait for ever.  The engine's wait is cancelled.
        """
        waiting = self.backend.wait("web", "next-exit")
        self.die()
        container = self.successResultOf(waiting)
        self.assertEqual(container.state, State.EXITED)
        self.assertEqual(self.cancelled, [True])
        self.assertEqual(self.backend._journal.awaited, [])

    def test_engineAnswersFirst(self) -> None:
        """The engine's answer ends the wait as before, and no waiter is left."""
        waiting = self.backend.wait("web", "next-exit")
        self.engineWait.callback((200, {"StatusCode": 129}))
        self.die()
        container = self.successResultOf(waiting)
        self.assertEqual(container.state, State.EXITED)
        self.assertEqual((self.cancelled, self.backend._journal.awaited), ([], []))

    def test_engineErrorEndsTheWait(self) -> None:
        """An engine error still fails the wait, with no die event."""
        waiting = self.backend.wait("web", "next-exit")
        self.engineWait.errback(EngineError(404, "No such container: web"))
        self.failureResultOf(waiting, NotFound)
        self.assertEqual(self.backend._journal.awaited, [])
