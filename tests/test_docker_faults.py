"""
Faults of the engine, with a real engine of the tests' own: a dockerd on a
private socket and data directory (started with C{.ci/docker-setup.sh}'s
functions) that the tests kill with SIGKILL and start again; and, for
what no real engine can be made to do on cue, an engine that never
answers and scripted ones whose answers never finish or are cut short.

These run when the docker tests run (see L{tests.test_docker_support}):
they need C{dockerd} and root, as C{.ci/docker-setup.sh} does.
"""

from __future__ import annotations

import os
import shutil
import signal
import struct
import tempfile
from collections.abc import Callable, Mapping
from typing import Any

from twisted.internet import defer, reactor, utils
from twisted.internet.protocol import Factory, Protocol
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase

from pycm.backends.docker.engine import EngineAddress, EngineClient
from pycm.backends.docker.logbody import readLogBody
from pycm.errors import Unavailable
from pycm.model import ContainerSpec, State
from pycm.slicedwork import SlicedWork
from tests.test_docker_engine import EngineTestCase, eventually, sleep
from tests.test_docker_support import engineBackend, requireEngine, testImage

SCRIPT = os.path.join(os.path.dirname(os.path.dirname(__file__)), ".ci", "docker-setup.sh")


def requirePrivateEngine(
    environ: Mapping[str, str] | None = None,
    which: Callable[[str], str | None] = shutil.which,
    geteuid: Callable[[], int] = os.geteuid,
) -> None:
    """
    Check that the fault tests can start a dockerd of their own.

    @raise SkipTest: if they cannot (no C{dockerd}, not root), unless
        C{PYCM_REQUIRE_DOCKER=1}.
    @raise AssertionError: if they cannot and C{PYCM_REQUIRE_DOCKER=1}.
    """
    env = os.environ if environ is None else environ
    missing = []
    if not which("dockerd"):
        missing.append("dockerd on PATH")
    if geteuid() != 0:
        missing.append("root")
    if not missing:
        return
    why = f"fault tests start their own dockerd: they need {' and '.join(missing)}"
    if env.get("PYCM_REQUIRE_DOCKER") == "1":
        raise AssertionError(f"PYCM_REQUIRE_DOCKER=1 but {why}")
    raise SkipTest(why)


class RequirePrivateEngineTests(SynchronousTestCase):
    """The fault tests skip without dockerd or root, and fail instead when required."""

    def test_present(self) -> None:
        """With dockerd and root nothing is raised."""
        requirePrivateEngine({}, lambda name: "/usr/sbin/dockerd", lambda: 0)

    def test_skipsWhenNotRequired(self) -> None:
        """Without dockerd, or without root, the tests skip, saying why."""
        error = self.assertRaises(SkipTest, requirePrivateEngine, {}, lambda name: None, lambda: 0)
        self.assertIn("dockerd", str(error))
        error = self.assertRaises(
            SkipTest, requirePrivateEngine, {}, lambda name: "/usr/sbin/dockerd", lambda: 1000
        )
        self.assertIn("root", str(error))

    def test_failsWhenRequired(self) -> None:
        """Under PYCM_REQUIRE_DOCKER=1 a missing dockerd or root is a failure, not a skip."""
        required = {"PYCM_REQUIRE_DOCKER": "1"}
        for which, euid in [(None, 0), ("/usr/sbin/dockerd", 1000)]:
            error = self.assertRaises(
                AssertionError,
                requirePrivateEngine,
                required,
                lambda name, which=which: which,
                lambda euid=euid: euid,
            )
            self.assertIn("PYCM_REQUIRE_DOCKER=1", str(error))


class PrivateEngine:
    """A dockerd of one test's own, in a fresh directory."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="pycm-f.", dir="/tmp")
        self.host = f"unix://{self.dir}/docker.sock"

    def _script(self, commands: str) -> defer.Deferred[int]:
        return utils.getProcessValue(
            "/bin/bash", ["-c", f"source {SCRIPT} && {commands}"], env=dict(os.environ)
        )

    @defer.inlineCallbacks
    def start(self, image: bool = False) -> Any:
        """Start dockerd (and build the test image in it)."""
        commands = f"pycm_docker_start_engine {self.dir}"
        if image:
            commands += f" && pycm_docker_build_image {self.dir} {self.host} {testImage()}"
        code = yield self._script(commands)
        if code != 0:
            raise AssertionError(f"could not start a private dockerd in {self.dir}")

    def kill(self) -> None:
        """SIGKILL the engine, as a crash would."""
        with open(os.path.join(self.dir, "dockerd.pid")) as f:
            os.kill(int(f.read().strip()), signal.SIGKILL)

    def teardown(self) -> defer.Deferred[int]:
        """Stop it, and everything it started; remove the directory."""
        return self._script(f"pycm_docker_teardown {self.dir}")


def usePrivateEngine(test: TestCase) -> PrivateEngine:
    """A private engine for C{test}, torn down after it (skips as L{requireEngine})."""
    requireEngine()
    requirePrivateEngine()
    engine = PrivateEngine()
    test.addCleanup(engine.teardown)
    return engine


class EngineFaultTests(EngineTestCase):
    """The backend keeps serving through engine outages and recovers by itself."""

    timeout = 180

    def setUp(self) -> None:
        self.engine = usePrivateEngine(self)
        self.backendOptions = {"docker-host": self.engine.host, "request-timeout": "5"}
        self.backend = engineBackend(reactor, **self.backendOptions)
        self.backend._events.maxDelay = 0.5
        self.events: list[Any] = []
        self.backend.addObserver(self.events.append)
        self.names: list[str] = []

    @defer.inlineCallbacks
    def test_socketMissingAtStart(self) -> Any:
        """No engine at open(): open fires, calls say unavailable, then it recovers alone."""
        yield self.backend.open()
        self.addCleanup(self.backend.close)
        error = yield self.assertFailure(self.backend.list(), Unavailable)
        self.assertIn(self.engine.host, str(error))
        yield self.assertFailure(self.backend.inspect("anything"), Unavailable)
        yield self.engine.start(image=True)
        yield eventually(lambda: self.backend._events.connected)
        listed = yield self.backend.list()
        self.assertEqual(listed, [])
        name = self.name()
        container = yield self.run_(name, "sleep", "1000")
        self.assertEqual(container.state, State.RUNNING)
        self.assertEqual(self.actions(name), ["create", "start"])

    @defer.inlineCallbacks
    def test_engineKilledMidRequest(self) -> Any:
        """
        The engine dies during a stop: the stop fails as unavailable, so do
        other calls; when it is back, calls work, the event stream
        reconnects, and the exit the outage hid is reported as a die event.
        """
        yield self.engine.start(image=True)
        yield self.backend.open()
        self.addCleanup(self.backend.close)
        yield eventually(lambda: self.backend._events.connected)
        name = self.name()
        yield self.run_(name, "sh", "-c", "trap '' TERM; sleep 1000 & wait; sleep 1000")
        yield sleep(0.3)
        stopping = self.backend.stop(name, 60)
        yield sleep(0.5)
        self.engine.kill()
        error = yield self.assertFailure(stopping, Unavailable)
        self.assertIn("docker engine", str(error))
        yield self.assertFailure(self.backend.list(), Unavailable)
        yield eventually(lambda: not self.backend._events.connected)
        yield self.engine.start()
        yield eventually(lambda: self.backend._events.connected, timeout=30)
        listed = yield eventually(lambda: self.backend.list().addErrback(lambda f: None))
        self.assertEqual([c.name for c in listed], [name])
        self.assertIn(listed[0].state, (State.EXITED, State.DEAD))
        yield eventually(lambda: "die" in self.actions(name))
        container = yield self.run_(self.name(), "sleep", "1000")
        self.assertEqual(container.state, State.RUNNING)

    @defer.inlineCallbacks
    def test_engineRestartedGracefully(self) -> Any:
        """A clean engine restart: events are resumed and the daemon's view is right."""
        yield self.engine.start(image=True)
        yield self.backend.open()
        self.addCleanup(self.backend.close)
        yield eventually(lambda: self.backend._events.connected)
        name = self.name()
        yield self.backend.create(ContainerSpec(name, command=("true",)))
        with open(os.path.join(self.engine.dir, "dockerd.pid")) as f:
            os.kill(int(f.read().strip()), signal.SIGTERM)
        yield eventually(lambda: not self.backend._events.connected, timeout=30)
        yield self.engine.start()
        yield eventually(lambda: self.backend._events.connected, timeout=30)
        container = yield eventually(lambda: self.backend.start(name).addErrback(lambda f: None))
        self.assertEqual(container.name, name)
        yield eventually(lambda: "die" in self.actions(name))
        self.assertEqual(self.actions(name), ["create", "start", "die"])


def commandLines(needle: str) -> dict[int, str]:
    """The command lines (by pid) of the processes whose own mentions C{needle}."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                line = f.read().replace(b"\0", b" ").decode("utf-8", "replace")
        except OSError:
            continue
        if needle in line:
            found[int(entry)] = line
    return found


def processAlive(pid: int) -> bool:
    """Is C{pid} running (not a zombie)?"""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


class PrivateEngineTests(EngineTestCase):
    """
    C{.ci/docker-setup.sh}'s engine is the tests' alone: its own containerd
    (never a system one at /run/containerd), and teardown ends everything
    it started, even after the engine was killed.
    """

    timeout = 120

    def setUp(self) -> None:
        self.engine = usePrivateEngine(self)

    @defer.inlineCallbacks
    def test_ownContainerdAndCleanTeardown(self) -> Any:
        """
        The shims of its containers talk to its own containerd; after a
        SIGKILL of dockerd, teardown still kills the containers' processes.
        """
        yield self.engine.start(image=True)
        backend = engineBackend(reactor, **{"docker-host": self.engine.host})
        yield backend.open()
        self.addCleanup(backend.close)
        yield eventually(lambda: backend._events.connected)
        self.backend = backend
        container = yield self.run_("pycm-private", "sleep", "1000")
        self.assertTrue(processAlive(container.pid))
        shims = {
            pid: line
            for pid, line in commandLines(container.id).items()
            if "containerd-shim" in line
        }
        self.assertTrue(shims)
        for line in shims.values():
            self.assertIn(f"-address {self.engine.dir}/containerd.sock", line)
            self.assertNotIn("/run/containerd/containerd.sock", line)
        yield backend.close()
        self.engine.kill()
        code = yield self.engine.teardown()
        self.assertEqual(code, 0)
        yield eventually(lambda: not processAlive(container.pid), timeout=10)
        yield eventually(lambda: not commandLines(self.engine.dir + "/"), timeout=10)


class _Silent(Protocol):
    """Accepts a connection and never answers."""


class SlowEngineTests(EngineTestCase):
    """An engine that does not answer in time."""

    @defer.inlineCallbacks
    def setUp(self) -> Any:
        requireEngine()
        self.dir = tempfile.mkdtemp(prefix="pycm-s.", dir="/tmp")
        self.addCleanup(shutil.rmtree, self.dir, True)
        path = os.path.join(self.dir, "docker.sock")
        port = reactor.listenUNIX(path, Factory.forProtocol(_Silent))  # type: ignore[attr-defined]
        self.addCleanup(port.stopListening)
        self.backend = engineBackend(
            reactor, **{"docker-host": f"unix://{path}", "request-timeout": "0.5"}
        )
        yield self.backend.open()
        self.addCleanup(self.backend.close)

    @defer.inlineCallbacks
    def test_timeout(self) -> Any:
        """Every call fails as unavailable after request-timeout, saying so; none hangs."""
        started = reactor.seconds()  # type: ignore[attr-defined]
        error = yield self.assertFailure(self.backend.list(), Unavailable)
        elapsed = reactor.seconds() - started  # type: ignore[attr-defined]
        self.assertIn("did not answer", str(error))
        self.assertLess(elapsed, 3)
        yield self.assertFailure(self.backend.inspect("x"), Unavailable)
        self.assertFalse(self.backend._events.connected)


VERSION_BODY = b'{"ApiVersion": "1.41", "Version": "20.10.0"}'


class _ScriptedAnswer(Protocol):
    """
    One connection to a L{_ScriptedEngine}: C{GET /version} answered as an
    engine answers it, any other request as its server's C{answer} says.
    """

    def __init__(self, server: _ScriptedEngine) -> None:
        self.server = server

    def connectionMade(self) -> None:
        self.buffer = b""
        self.server.connections += 1

    def dataReceived(self, data: bytes) -> None:
        assert self.transport is not None
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
            if b" /version " in head.split(b"\r\n", 1)[0]:
                self.transport.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(VERSION_BODY), VERSION_BODY)
                )
            else:
                self.server.answer(self.transport)

    def connectionLost(self, reason: Any = None) -> None:
        self.server.connections -= 1


class _ScriptedEngine(Factory):
    """
    An engine that misbehaves in a way no real one can be made to on cue
    (an answer it never finishes, a body cut short): C{answer} writes what
    it sends to any request but C{GET /version}.  It counts its open
    connections, and listens on a socket in a directory of its own.
    """

    def __init__(self, test: TestCase, answer: Callable[[Any], None]) -> None:
        self.answer = answer
        self.connections = 0
        directory = tempfile.mkdtemp(prefix="pycm-e.", dir="/tmp")
        test.addCleanup(shutil.rmtree, directory, True)
        self.path = os.path.join(directory, "docker.sock")
        port = reactor.listenUNIX(self.path, self)  # type: ignore[attr-defined]
        test.addCleanup(port.stopListening)

    def buildProtocol(self, addr: Any) -> _ScriptedAnswer:
        return _ScriptedAnswer(self)

    def client(self, test: TestCase, timeout: float) -> EngineClient:
        """An engine client of this engine, closed after C{test}."""
        engine = EngineClient(reactor, EngineAddress.parse(f"unix://{self.path}"), timeout=timeout)
        test.addCleanup(engine.close)
        return engine


def _halfAnswer(transport: Any) -> None:
    """An error status with a body that is never finished."""
    transport.write(
        b"HTTP/1.1 500 Internal Server Error\r\n"
        b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
        b'{"message": "this never'
    )


class SlowErrorBodyTests(TestCase):
    """
    An engine that sends an error status and then stalls in its body (a
    scripted one: a real engine cannot be made to on cue).
    """

    timeout = 20

    @defer.inlineCallbacks
    def test_streamErrorBodyTimesOut(self) -> Any:
        """
        A streamed request (events, logs --follow, a pull) whose error body
        never ends fails as unavailable after the request timeout, and its
        connection is closed.
        """
        factory = _ScriptedEngine(self, _halfAnswer)
        engine = factory.client(self, timeout=0.5)
        started = reactor.seconds()  # type: ignore[attr-defined]
        error = yield self.assertFailure(
            engine.stream("GET", "/events", None, lambda data: None), Unavailable
        )
        self.assertIn("/events", str(error))
        self.assertLess(reactor.seconds() - started, 5)  # type: ignore[attr-defined]
        yield engine.close()
        yield eventually(lambda: factory.connections == 0, timeout=5)


def _logAnswer(cut: bool) -> Callable[[Any], None]:
    """
    A log read's answer: the status and the first frame of a body it says
    is longer, then the connection closed (C{cut}: a body cut short) or
    kept open (an engine still sending).
    """

    def answer(transport: Any) -> None:
        text = b"2026-11-30T10:00:00Z first\n"
        body = struct.pack(">BxxxL", 1, len(text)) + text
        length = len(body) + 1000
        transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (length, body))
        if cut:
            transport.loseConnection()

    return answer


class LogReadConnectionTests(TestCase):
    """
    A log read over a real socket from a scripted engine (a real one cannot
    be made to misbehave on cue): its body cut short, stalled, or the read
    abandoned.
    """

    timeout = 20

    def engine(self, cut: bool, timeout: float = 5) -> tuple[EngineClient, _ScriptedEngine]:
        server = _ScriptedEngine(self, _logAnswer(cut))
        return server.client(self, timeout), server

    def read(self, engine: EngineClient, lines: list[Any]) -> defer.Deferred[None]:
        """Read container C{web}'s log from C{engine}, its lines into C{lines}."""

        def received(*line: Any) -> None:
            lines.append(line)

        return readLogBody(
            engine, reactor, SlicedWork(reactor), "/containers/c/logs", {}, received, "web"
        )

    @defer.inlineCallbacks
    def test_cutShort(self) -> Any:
        """A log's body cut short fails the read as unavailable, not as a shorter log."""
        engine, _ = self.engine(cut=True)
        error = yield self.assertFailure(self.read(engine, []), Unavailable)
        self.assertIn("was cut", str(error))

    @defer.inlineCallbacks
    def test_abandonedClosesTheConnection(self) -> Any:
        """A read cancelled while the body comes closes the engine's connection."""
        engine, server = self.engine(cut=False)
        lines: list[Any] = []
        d = self.read(engine, lines)
        yield eventually(lambda: bool(lines), timeout=5)
        d.cancel()
        yield self.assertFailure(d, defer.CancelledError)
        yield eventually(lambda: server.connections == 0, timeout=5)

    @defer.inlineCallbacks
    def test_stalledClosesTheConnection(self) -> Any:
        """
        An engine that stops sending mid-body: after its request timeout
        of silence the read fails as unavailable, naming the container,
        and the engine's connection is closed.
        """
        engine, server = self.engine(cut=False, timeout=0.5)
        lines: list[Any] = []
        started = reactor.seconds()  # type: ignore[attr-defined]
        error = yield self.assertFailure(self.read(engine, lines), Unavailable)
        self.assertGreaterEqual(reactor.seconds() - started, 0.5)  # type: ignore[attr-defined]
        self.assertIn("stopped sending the log of web", str(error))
        self.assertEqual([text for _, _, text in lines], ["first"])
        yield eventually(lambda: server.connections == 0, timeout=5)
