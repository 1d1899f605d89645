"""
The shared backend conformance suite (L{pycm.testing.BackendConformanceTests})
against the Docker backend on a real engine, with the busybox test image
and C{--network none}.

Needs C{PYCM_DOCKER_HOST} (see L{tests.test_docker_support}); skips
without it, fails without it under C{PYCM_REQUIRE_DOCKER=1}.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.trial.unittest import TestCase

from pycm.backends.docker.backend import makeBackend
from pycm.interfaces import IContainerBackend
from pycm.testing import BackendConformanceTests, MemoryFixture, ReactorFixture
from pycm.testing.dockerengine import FakeDockerEngine
from tests.test_docker_support import engineBackend, requireEngine, testImage


def engineSwitch(testCase: Any, backend: Any) -> tuple[str, Any]:
    """
    The conformance suite's switched health check on the Docker backend:
    a file in the container, made and removed by an exec (as root).
    """
    path = "/tmp/pycm-healthy"

    @inlineCallbacks
    def turn(name: str, passing: bool) -> Generator[Deferred[Any], Any, None]:
        command = ["touch", path] if passing else ["rm", "-f", path]
        _, created = yield backend.engine.request(
            "POST", f"/containers/{name}/exec", body={"Cmd": command, "User": "0"}
        )
        execId = created["Id"]
        yield backend.engine.request("POST", f"/exec/{execId}/start", body={"Detach": True})
        for _ in range(100):
            _, data = yield backend.engine.request("GET", f"/exec/{execId}/json")
            if not data["Running"] and data["ExitCode"] is not None:
                return
            yield testCase.sleep(0.1)
        raise AssertionError(f"{command} in {name} did not end")

    return f"test -e {path}", turn


class DockerFixture(ReactorFixture):
    """The conformance fixture of the Docker backend, on the test engine."""

    missingImage = "pycm-test/no-such-image:1"
    longCommand = ("sleep", "1000")
    ignoreTermCommand = ("sh", "-c", "trap '' TERM; sleep 1000")
    badCommand = ("pycm-no-such-executable",)
    busyCommand = ("sh", "-c", "while :; do :; done")
    #: Podman 4.3 gives log lines whole-second times (dockerd, nanoseconds):
    #: two lines a second apart have different ones on both.
    logTimeResolution = 1.1
    healthSwitch = staticmethod(engineSwitch)

    def __init__(self) -> None:
        super().__init__(reactor)
        self.image = testImage()

    def exitCommand(self, code: int) -> tuple[str, ...]:
        return ("sh", "-c", f"exit {code}")

    def echoCommand(self, text: str) -> tuple[str, ...]:
        return ("printf", "%s\\n", text)

    def delayedEchoCommand(self, text: str) -> tuple[str, ...]:
        return ("sh", "-c", 'sleep 1; printf "%s\\n" "$1"', "sh", text)

    def makeBackend(self, testCase: TestCase) -> Deferred[IContainerBackend]:
        requireEngine()
        backend = engineBackend(reactor)
        testCase.addCleanup(lambda: self.settle(testCase, backend.close(), 60))
        return backend.open().addCallback(lambda _: backend)


class DockerConformanceTests(BackendConformanceTests, TestCase):
    """The Docker backend passes the backend conformance suite on a real engine."""

    fixture = DockerFixture()


class FakeEngineFixture(MemoryFixture):
    """
    The conformance fixture of the Docker backend on a L{FakeDockerEngine}
    and a L{Clock}: the memory backend's commands, no dockerd.
    """

    missingImage = "pycm-test/no-such-image:1"
    healthSwitch = staticmethod(engineSwitch)

    def makeBackend(self, testCase: TestCase) -> Deferred[IContainerBackend]:
        # Docker's times are after the epoch: 0 reads as "never".
        clock = self.newClock(testCase, now=1_700_000_000)
        engine = FakeDockerEngine(clock)
        backend = makeBackend(clock, None, {"network": "none"}, engine)
        testCase.addCleanup(lambda: self.settle(testCase, backend.close(), 120))
        # The fake answers on later turns of the clock: turn it.
        return self.settle(testCase, backend.open(), 60).addCallback(lambda _: backend)


class FakeEngineConformanceTests(BackendConformanceTests, TestCase):
    """The Docker backend passes the conformance suite on the fake engine."""

    fixture = FakeEngineFixture()
