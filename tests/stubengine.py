"""
L{StubEngine}: an L{IDockerEngine} for unit tests that script a few
answers.  A test's engine subclasses it and overrides what it answers;
whatever it does not override fails the test.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, succeed
from zope.interface import implementer

from pycm.backends.docker.engine import Stream
from pycm.backends.docker.interfaces import IDockerEngine


def wholeStream(onData: Callable[[bytes], object], body: bytes) -> Deferred[Stream]:
    """A stream that gave all its C{body} to C{onData} at once, and ended (a log read)."""
    if body:
        onData(body)
    return succeed(Stream(succeed(None)))


@implementer(IDockerEngine)
class StubEngine:
    """An engine asked nothing it was not told to answer."""

    timeout = 10.0
    isPodman = False

    def request(
        self,
        method: str,
        path: str,
        params: Any = None,
        body: Any = None,
        timeout: float | None = None,
        raw: bool = False,
    ) -> Deferred[Any]:
        raise AssertionError(f"the stub engine was asked {method} {path}")

    def stream(
        self,
        method: str,
        path: str,
        params: Any,
        onData: Callable[[bytes], object],
        body: Any = None,
        headerTimeout: float | None = None,
    ) -> Deferred[Any]:
        raise AssertionError(f"the stub engine was asked to stream {method} {path}")

    def close(self) -> Deferred[None]:
        return succeed(None)
