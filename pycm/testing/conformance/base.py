"""
The base of the backend conformance suite: making the backend for each
test, naming and removing its containers, and the helpers its tests share.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Generator
from typing import Any

from twisted.internet import defer
from twisted.internet.defer import Deferred, inlineCallbacks

from pycm.errors import NotFound
from pycm.interfaces import IContainerBackend
from pycm.model import Container, ContainerEvent, ContainerSpec
from pycm.testing.conformance.mixin import TestCaseMixin
from pycm.testing.fixtures import BackendFixture
from pycm.testing.recorder import EventRecorder


class BackendTestsBase(TestCaseMixin):
    """
    What every part of the backend conformance suite shares.

    The suite names its containers C{pycmt-<random>-<what>} and removes them
    (with C{--force}) after each test, so it can share an engine with other
    users.  Lifecycle events are waited for rather than expected at once, so a
    backend whose events lag behind its replies (Docker's event stream) passes;
    their order must still be the contract's.
    """

    #: Seconds (of the backend's clock) an operation may take.
    opTimeout = 30.0

    #: How to make the backend and express commands on it: set by the
    #: subclass that runs the suite.
    fixture: BackendFixture

    # Set by setUp.
    prefix: str
    backend: IContainerBackend
    recorder: EventRecorder
    _names: list[str]

    # trial waits for the Deferred setUp returns; the stubs only know
    # unittest's setUp, which returns None.
    @inlineCallbacks
    def setUp(self) -> Generator[Deferred[Any], Any, None]:  # type: ignore[override]
        self.prefix = f"pycmt-{uuid.uuid4().hex[:8]}-"
        self.backend = yield self.fixture.makeBackend(self)
        self.recorder = EventRecorder()
        self.backend.addObserver(self.recorder)
        self.addCleanup(self.backend.removeObserver, self.recorder)
        self._names = []
        self.addCleanup(self._removeAll)

    @inlineCallbacks
    def _removeAll(self) -> Generator[Deferred[Any], Any, None]:
        for name in self._names:
            try:
                yield self.settle(self.backend.remove(name, True))
            except NotFound:
                pass

    # helpers

    def settle(self, d: Deferred[Any], timeout: float | None = None) -> Deferred[Any]:
        return self.fixture.settle(self, d, self.opTimeout if timeout is None else timeout)

    def sleep(self, seconds: float) -> Deferred[None]:
        return self.fixture.sleep(self, seconds)

    def containerName(self, what: str) -> str:
        name = self.prefix + what
        self._names.append(name)
        return name

    def spec(self, what: str, command: tuple[str, ...] | None, **kw: Any) -> ContainerSpec:
        return ContainerSpec(
            self.containerName(what), image=self.fixture.image, command=command, **kw
        )

    def create(self, spec: ContainerSpec) -> Deferred[Container]:
        return self.settle(self.backend.create(spec))

    @inlineCallbacks
    def runContainer(self, spec: ContainerSpec) -> Generator[Deferred[Any], Any, Container]:
        yield self.create(spec)
        container = yield self.settle(self.backend.start(spec.name))
        return container

    def waitFor(self, name: str, condition: str) -> Deferred[Container]:
        return self.settle(self.backend.wait(name, condition))

    def eventsUntil(self, predicate: Callable[[list[ContainerEvent]], bool]) -> Deferred[Any]:
        return self.settle(self.recorder.when(predicate))

    def count(self, name: str, action: str) -> int:
        return self.recorder.actions(name).count(action)

    @inlineCallbacks
    def assertActions(
        self, name: str, expected: list[str]
    ) -> Generator[Deferred[Any], Any, None]:
        """Wait for C{len(expected)} events of C{name}, then compare."""
        try:
            yield self.eventsUntil(lambda _: len(self.recorder.actions(name)) >= len(expected))
        except defer.TimeoutError:
            pass
        self.assertEqual(self.recorder.actions(name), expected)

    def assertFails(self, d: Deferred[Any], kind: type[Exception]) -> Deferred[Any]:
        return self.assertFailure(self.settle(d), kind)
