"""
The fixtures of the backend conformance suite: L{BackendFixture} (what the
suite needs to know of a backend), L{MemoryFixture} (the memory backend on
a L{Clock}), L{ReactorFixture} (a base for backends on a real reactor),
and L{memoryBackend}, an opened memory backend for any test.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, Protocol

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import Clock, deferLater
from twisted.trial.unittest import TestCase

from pycm.backends.memory import MemoryBackend
from pycm.interfaces import IContainerBackend
from pycm.testing.clock import ClockPerTest

__all__ = ["BackendFixture", "MemoryFixture", "ReactorFixture", "memoryBackend"]


def memoryBackend(clock: Clock | None = None) -> MemoryBackend:
    """
    An opened L{MemoryBackend} on C{clock} (a fresh L{Clock} if None; it is
    C{backend.clock} either way).
    """
    backend = MemoryBackend(clock if clock is not None else Clock())
    backend.open()  # fires at once: nothing to load
    return backend


class BackendFixture(Protocol):
    """
    What the backend conformance suite needs to know of a backend (its
    C{fixture}): how to make one and how to express a few commands on it.
    It has:

      - C{image}: the image the suite's containers use (C{None}: the backend's
        default image).
      - C{missingImage}: an image the backend does not have (create fails with
        L{NoImage}).
      - C{longCommand}: a command that runs until signalled and ends on SIGTERM.
      - C{ignoreTermCommand}: a command that ignores SIGTERM and runs until
        SIGKILL, or None if it cannot be expressed (tests that need it skip).
      - C{badCommand}: a command that cannot be started at all (start fails with
        L{BackendError}, the container becomes C{dead}), or None.
      - C{exitCommand(code)}: a command that exits promptly with C{code}.
      - C{busyCommand} (optional): a command that keeps one CPU busy until
        signalled, or None (the C{stats} CPU test skips).
      - C{echoCommand(text)}: writes C{text} as one stdout line, then exits 0.
      - C{logTimeResolution} (optional, seconds): how far apart two log lines
        must be written to get different times (default 0.1; Podman's are
        whole seconds).
      - C{delayedEchoCommand(text)}: the same, after about one second.
      - C{signalledExitCodes(signum)}: the exit codes a run killed by C{signum}
        may report (the contract says C{-signum}).
      - C{makeBackend(testCase)}: a Deferred firing with an opened backend; it
        registers with C{testCase.addCleanup} whatever undoes it (closing it).
      - C{settle(testCase, deferred, timeout)}: a Deferred with the result of
        C{deferred} once it has one; if it has none after C{timeout} seconds
        (of the backend's clock), C{deferred} is cancelled and the result
        fails with L{defer.TimeoutError}.  With a fake clock this advances it;
        with the real reactor it just waits.
      - C{sleep(testCase, seconds)}: a Deferred firing after C{seconds} of the
        backend's clock have passed (advancing a fake clock).

    L{MemoryFixture} is a complete example; L{ReactorFixture} implements
    C{settle} and C{sleep} on a real reactor, so a real backend's fixture only
    adds the commands and C{makeBackend}.
    """

    # Read-only (properties), so that a fixture may narrow their types.
    @property
    def image(self) -> str | None: ...

    @property
    def missingImage(self) -> str: ...

    @property
    def longCommand(self) -> tuple[str, ...]: ...

    @property
    def ignoreTermCommand(self) -> tuple[str, ...] | None: ...

    @property
    def badCommand(self) -> tuple[str, ...] | None: ...

    def exitCommand(self, code: int) -> tuple[str, ...]: ...

    def echoCommand(self, text: str) -> tuple[str, ...]: ...

    def delayedEchoCommand(self, text: str) -> tuple[str, ...]: ...

    def signalledExitCodes(self, signum: int) -> Collection[int]: ...

    def makeBackend(self, testCase: TestCase) -> Deferred[IContainerBackend]: ...

    def settle(self, testCase: TestCase, d: Deferred[Any], timeout: float) -> Deferred[Any]: ...

    def sleep(self, testCase: TestCase, seconds: float) -> Deferred[None]: ...


class MemoryFixture(ClockPerTest):
    """The conformance fixture of the memory backend, on a L{Clock}."""

    image: str | None = None
    missingImage = "no-such-image"
    longCommand = ("sleep", "infinity")
    ignoreTermCommand: tuple[str, ...] | None = ("ignore-term",)
    badCommand: tuple[str, ...] | None = ("unstartable",)
    busyCommand: tuple[str, ...] | None = ("burn",)

    def exitCommand(self, code: int) -> tuple[str, ...]:
        return ("exit", str(code))

    def echoCommand(self, text: str) -> tuple[str, ...]:
        return ("echo", text)

    def delayedEchoCommand(self, text: str) -> tuple[str, ...]:
        return ("delay", "1", "echo", text)

    def signalledExitCodes(self, signum: int) -> Collection[int]:
        return {-signum}

    def makeBackend(self, testCase: TestCase) -> Deferred[IContainerBackend]:
        backend = MemoryBackend(self.newClock(testCase))
        testCase.addCleanup(lambda: self.settle(testCase, backend.close(), 120))
        return backend.open().addCallback(lambda _: backend)


class ReactorFixture:
    """
    A base for fixtures of backends on a real reactor: C{settle} waits with
    a timeout, C{sleep} really sleeps.  Subclasses set the commands and
    write C{makeBackend}.

    @param reactor: the reactor the backend runs on (the test module passes
        the global one; library code never imports it).
    """

    image: str | None = None
    missingImage = "pycm-no-such-image"
    ignoreTermCommand: tuple[str, ...] | None = None
    badCommand: tuple[str, ...] | None = None

    def __init__(self, reactor: IReactorTime) -> None:
        self.reactor = reactor

    def signalledExitCodes(self, signum: int) -> Collection[int]:
        return {-signum}

    def settle(self, testCase: TestCase, d: Deferred[Any], timeout: float) -> Deferred[Any]:
        return d.addTimeout(timeout, self.reactor)

    def sleep(self, testCase: TestCase, seconds: float) -> Deferred[None]:
        return deferLater(self.reactor, seconds, lambda: None)
