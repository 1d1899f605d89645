"""
The shared backend conformance suite (L{pycm.testing.make_backend_tests})
against the Docker backend on a real engine, with the busybox test image
and C{--network none}.

Needs C{PYCM_DOCKER_HOST} (see L{tests.test_docker_support}); skips
without it, fails without it under C{PYCM_REQUIRE_DOCKER=1}.
"""

from __future__ import annotations

import uuid
from collections.abc import Generator
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.trial.unittest import TestCase

from pycm.errors import NotFound
from pycm.interfaces import IContainerBackend
from pycm.model import Action, ContainerSpec, RestartPolicy, State
from pycm.testing import EventRecorder
from tests.conformance import ReactorFixture, make_backend_tests
from tests.test_docker_support import engineBackend, requireEngine, testImage


class DockerFixture(ReactorFixture):
    """The conformance fixture of the Docker backend, on the test engine."""

    missingImage = "pycm-test/no-such-image:1"
    longCommand = ("sleep", "1000")
    ignoreTermCommand = ("sh", "-c", "trap '' TERM; sleep 1000")
    badCommand = ("pycm-no-such-executable",)

    def __init__(self) -> None:
        super().__init__(reactor)  # type: ignore[arg-type]
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


class DockerConformanceTests(make_backend_tests(DockerFixture())):  # type: ignore[misc]
    """The Docker backend passes the backend conformance suite on a real engine."""


class ExtraConformanceTests(TestCase):
    """
    Cases the shared suite (L{pycm.testing.make_backend_tests}) does not
    have yet, written as it would have them (only the fixture's commands
    and the backend interface), against the Docker backend: proposed for
    the shared suite.
    """

    fixture = DockerFixture()

    @inlineCallbacks
    def setUp(self) -> Generator[Deferred[Any], Any, None]:  # type: ignore[override]
        self.backend = yield self.fixture.makeBackend(self)
        self.recorder = EventRecorder()
        self.backend.addObserver(self.recorder)
        self.addCleanup(self.backend.removeObserver, self.recorder)
        self.names: list[str] = []
        self.addCleanup(self._removeAll)

    @inlineCallbacks
    def _removeAll(self) -> Generator[Deferred[Any], Any, None]:
        for name in self.names:
            try:
                yield self.settle(self.backend.remove(name, True))
            except NotFound:
                pass

    def settle(self, d: Deferred[Any], timeout: float = 30.0) -> Deferred[Any]:
        return self.fixture.settle(self, d, timeout)

    def spec(self, what: str, command: tuple[str, ...], **kw: Any) -> ContainerSpec:
        name = f"pycmt-{uuid.uuid4().hex[:8]}-{what}"
        self.names.append(name)
        return ContainerSpec(name, image=self.fixture.image, command=command, **kw)

    @inlineCallbacks
    def test_restartWithPolicy(self) -> Generator[Deferred[Any], Any, None]:
        """
        C{restart} of a container with a restart policy is one restart:
        events C{die}, C{stop}, C{start}, C{restart}, once each (the start
        is the client's, not the policy's).
        """
        spec = self.spec(
            "restartpolicy", self.fixture.longCommand, restartPolicy=RestartPolicy("always")
        )
        yield self.settle(self.backend.create(spec))
        yield self.settle(self.backend.start(spec.name))
        container = yield self.settle(self.backend.restart(spec.name, None))
        self.assertEqual(container.state, State.RUNNING)
        # A stop after it: its events come after any the restart caused.
        yield self.settle(self.backend.stop(spec.name, None))
        yield self.settle(
            self.recorder.when(lambda _: Action.STOP in self.recorder.actions(spec.name)[4:])
        )
        self.assertEqual(
            self.recorder.actions(spec.name),
            [
                Action.CREATE,
                Action.START,
                Action.DIE,
                Action.STOP,
                Action.START,
                Action.RESTART,
                Action.DIE,
                Action.STOP,
            ],
        )
