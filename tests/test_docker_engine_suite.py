"""
The engine seam: L{IDockerEngine}, the engine client that provides it,
and the engine suite (L{pycm.testing.enginesuite}) on the fake engine (on
every machine) and on a real one.

The real engine's run needs C{PYCM_DOCKER_HOST} (see
L{tests.test_docker_support}); it skips without it, and fails without it
under C{PYCM_REQUIRE_DOCKER=1}.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from pycm.backends.docker.backend import makeBackend
from pycm.backends.docker.engine import EngineAddress, EngineClient
from pycm.backends.docker.interfaces import IDockerEngine
from pycm.testing import ClockPerTest, advanceClock, settleClock
from pycm.testing.dockerengine import FakeDockerEngine
from pycm.testing.enginesuite import DockerEngineTests
from pycm.testing.suitecase import ReactorTiming
from tests.test_docker_support import requireEngine, testImage


class EngineClientInterfaceTests(SynchronousTestCase):
    """L{EngineClient} is an L{IDockerEngine}, and the backend takes any."""

    def test_provides(self) -> None:
        """L{EngineClient} provides L{IDockerEngine}."""
        client = EngineClient(Clock(), EngineAddress.parse("unix:///x.sock"))
        self.assertTrue(verifyObject(IDockerEngine, client))

    def test_makeBackendTakesAnEngine(self) -> None:
        """C{makeBackend} uses the engine it is given, not one of its own."""
        engine = FakeDockerEngine(Clock())
        backend = makeBackend(Clock(), None, {"docker-host": "unix:///other.sock"}, engine)
        self.assertIs(backend.engine, engine)

    def test_makeBackendBuildsAClient(self) -> None:
        """Without an engine, C{makeBackend} builds a client at C{docker-host}."""
        backend = makeBackend(Clock(), None, {"docker-host": "unix:///other.sock"})
        engine = backend.engine
        assert isinstance(engine, EngineClient)
        self.assertEqual(str(engine.address), "unix:///other.sock")


def testRegistry() -> str:
    """
    The loopback registry of C{.ci/docker-setup.sh}.

    @raise SkipTest: if there is none, unless C{PYCM_REQUIRE_DOCKER=1}.
    @raise AssertionError: if there is none and C{PYCM_REQUIRE_DOCKER=1}.
    """
    registry = os.environ.get("PYCM_TEST_REGISTRY", "")
    if not registry:
        requireEngine()
        if os.environ.get("PYCM_REQUIRE_DOCKER") == "1":
            raise AssertionError("PYCM_REQUIRE_DOCKER=1 but PYCM_TEST_REGISTRY is unset")
        raise SkipTest("PYCM_TEST_REGISTRY is not set (see .ci/docker-setup.sh)")
    return registry


class FakeEngineFixture(ClockPerTest):
    """The engine suite's fixture of L{FakeDockerEngine}, on a L{Clock}."""

    image = "busybox:latest"
    missingImage = "pycm-test/no-such-image:1"
    pullImage = "registry.test:5000/pycm-test/busybox:latest"
    unknownPullImage = "registry.test:5000/pycm-test/nothing-here:1"
    longCommand = ("sleep", "infinity")
    ignoreTermCommand = ("ignore-term",)

    def exitCommand(self, code: int) -> tuple[str, ...]:
        return ("exit", str(code))

    def echoCommand(self, text: str) -> tuple[str, ...]:
        return ("echo", text)

    def makeEngine(self, testCase: TestCase) -> Deferred[IDockerEngine]:
        clock = self.newClock(testCase, now=1_700_000_000)
        engine = FakeDockerEngine(clock, registry=[self.pullImage])
        testCase.addCleanup(lambda: self.settle(testCase, engine.close(), 10))
        return defer.succeed(engine)


class RealEngineFixture(ReactorTiming):
    """The engine suite's fixture of L{EngineClient} on the test engine (busybox)."""

    missingImage = "pycm-test/no-such-image:1"
    longCommand = ("sleep", "1000")
    ignoreTermCommand = ("sh", "-c", "trap '' TERM; sleep 1000")

    @property
    def image(self) -> str:
        return testImage()

    @property
    def pullImage(self) -> str:
        return f"{testRegistry()}/{testImage()}"

    @property
    def unknownPullImage(self) -> str:
        return f"{testRegistry()}/pycm-test/nothing-here:1"

    def exitCommand(self, code: int) -> tuple[str, ...]:
        return ("sh", "-c", f"exit {code}")

    def echoCommand(self, text: str) -> tuple[str, ...]:
        return ("printf", "%s\\n", text)

    def makeEngine(self, testCase: TestCase) -> Deferred[IDockerEngine]:
        engine = EngineClient(reactor, EngineAddress.parse(requireEngine()))
        testCase.addCleanup(engine.close)
        return defer.succeed(engine)


class FakeEngineTests(DockerEngineTests, TestCase):
    """L{FakeDockerEngine} passes the engine suite."""

    fixture = FakeEngineFixture()


class RealEngineTests(DockerEngineTests, TestCase):
    """The real engine, through L{EngineClient}, passes the engine suite."""

    fixture = RealEngineFixture(reactor)


class FakeDockerEngineTests(SynchronousTestCase):
    """What L{FakeDockerEngine} does beyond the engine suite."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.engine = FakeDockerEngine(self.clock)

    def call(self, method: str, path: str, params: Any = None, body: Any = None) -> Any:
        return self.successResultOf(
            settleClock(self.clock, self.engine.request(method, path, params, body))
        )

    def runContainer(self, name: str, *command: str, **hostConfig: Any) -> None:
        body = {"Image": "busybox", "Cmd": list(command), "HostConfig": hostConfig}
        self.call("POST", "/containers/create", {"name": name}, body)
        self.call("POST", f"/containers/{name}/start")

    def test_answersLater(self) -> None:
        """Answers come on a later turn of the clock, as over a socket."""
        d = self.engine.request("GET", "/containers/json")
        self.assertNoResult(d)
        self.clock.advance(0)
        self.assertEqual(self.successResultOf(d), (200, []))

    def test_policyBackOff(self) -> None:
        """
        A policy restarts 0.1 s after an exit (at 0.1 s), then twice as
        long after the next (at 0.3 s), as dockerd does.
        """
        policy = {"Name": "always", "MaximumRetryCount": 0}
        self.runContainer("a", "exit", "1", RestartPolicy=policy)

        def restarts() -> int:
            count: int = self.call("GET", "/containers/a/json")[1]["RestartCount"]
            return count

        advanceClock(self.clock, 0.05)
        self.assertEqual(restarts(), 0)
        advanceClock(self.clock, 0.1)
        self.assertEqual(restarts(), 1)
        advanceClock(self.clock, 0.1)
        self.assertEqual(restarts(), 1)
        advanceClock(self.clock, 0.1)
        self.assertEqual(restarts(), 2)

    def test_waitCancelled(self) -> None:
        """A cancelled wait is forgotten: the exit after it answers nobody."""
        self.runContainer("a", "sleep", "infinity")
        wait = self.engine.request("POST", "/containers/a/wait", {"condition": "next-exit"})
        wait.cancel()
        self.failureResultOf(wait, defer.CancelledError)
        self.assertEqual(self.engine.containers[next(iter(self.engine.containers))].waiters, [])

    def test_closeEndsStreams(self) -> None:
        """C{close} ends the event streams and a log follow, and cancels calls."""
        self.runContainer("a", "sleep", "infinity")
        events = settleClock(self.clock, self.engine.stream("GET", "/events", {}, lambda _: None))
        follow = settleClock(
            self.clock,
            self.engine.stream(
                "GET", "/containers/a/logs", {"follow": True, "stdout": True}, lambda _: None
            ),
        )
        wait = self.engine.request("POST", "/containers/a/wait", {"condition": "next-exit"})
        streams = [self.successResultOf(events), self.successResultOf(follow)]
        self.successResultOf(self.engine.close())
        for stream in streams:
            self.assertIsNone(self.successResultOf(stream.ended))
        self.failureResultOf(wait, defer.CancelledError)

    def test_unstartableWithoutInit(self) -> None:
        """Without the backend's look first, starting a missing command is a 400."""
        body = {"Image": "busybox", "Cmd": ["unstartable"]}
        self.call("POST", "/containers/create", {"name": "a"}, body)
        failure = self.failureResultOf(
            settleClock(self.clock, self.engine.request("POST", "/containers/a/start"))
        )
        self.assertEqual(failure.value.status, 400)
        state = self.call("GET", "/containers/a/json")[1]["State"]
        self.assertEqual((state["Status"], state["ExitCode"]), ("created", 127))
        self.assertIn("executable file not found", state["Error"])
