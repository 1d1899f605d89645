"""
What the engine suites share (L{pycm.testing.enginesuite},
L{pycm.testing.swarmsuite}): their helpers over the fixture's engine
(L{EngineSuiteCase}), and a real engine's fixture's timing on a reactor
(L{ReactorTiming}).
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater

from pycm.backends.docker.engine import EngineError
from pycm.backends.docker.interfaces import IDockerEngine
from pycm.testing.conformance.mixin import TestCaseMixin


class EngineSuiteCase(TestCaseMixin):
    """
    An engine suite's helpers: its C{fixture} settles a Deferred
    (C{settle(testCase, d, timeout)}) and sleeps (C{sleep(testCase,
    seconds)}); C{engine} is the engine under test.
    """

    fixture: Any
    engine: IDockerEngine
    #: L{eventually} looks this often...
    pollInterval = 0.1
    #: ... for this long by default.
    pollTimeout = 20.0

    def settle(self, d: Deferred[Any], timeout: float = 30.0) -> Deferred[Any]:
        return self.fixture.settle(self, d, timeout)  # type: ignore[no-any-return]

    def call(self, method: str, path: str, params: Any = None, **kw: Any) -> Deferred[Any]:
        """One request, settled."""
        return self.settle(self.engine.request(method, path, params, **kw))

    @inlineCallbacks
    def eventually(
        self, check: Callable[[], Any], timeout: float | None = None
    ) -> Generator[Deferred[Any], Any, Any]:
        """Look at C{check()} every L{pollInterval} until it is true; fire with it."""
        timeout = self.pollTimeout if timeout is None else timeout
        for _ in range(int(timeout / self.pollInterval)):
            result = yield check()
            if result:
                return result
            yield self.fixture.sleep(self, self.pollInterval)
        self.fail(f"still not true after {timeout} s")

    @inlineCallbacks
    def assertStatus(
        self, d: Deferred[Any], status: int
    ) -> Generator[Deferred[Any], Any, EngineError]:
        """C{d} fails with an L{EngineError} of C{status}."""
        try:
            yield self.settle(d)
        except EngineError as e:
            self.assertEqual(e.status, status, e.message)
            return e
        self.fail(f"no EngineError {status}")


class ReactorTiming:
    """A real engine's fixture's C{settle} (a timeout) and C{sleep}, on C{reactor}."""

    def __init__(self, reactor: IReactorTime) -> None:
        self.reactor = reactor

    def settle(self, testCase: Any, d: Deferred[Any], timeout: float) -> Deferred[Any]:
        return d.addTimeout(timeout, self.reactor)

    def sleep(self, testCase: Any, seconds: float) -> Deferred[None]:
        return deferLater(self.reactor, seconds, lambda: None)


__all__ = ["EngineSuiteCase", "ReactorTiming"]
