"""
Public test helpers, shipped with pycm as treq ships C{treq.testing}.

  - L{memoryBackend}: an opened L{MemoryBackend} on a L{Clock}, the fake
    every protocol and command test can drive.
  - L{EventRecorder}: an event observer that remembers and can be waited on.
  - L{settleClock}, L{advanceClock}: drive a L{Clock} until a Deferred fires.
  - L{make_backend_tests}: the conformance suite every backend must pass,
    with L{MemoryFixture} (the memory backend) and L{ReactorFixture} (a base
    for backends running on the real reactor).

The fixture protocol
====================
L{make_backend_tests} takes a I{fixture}: an object describing how to make
a backend and how to express a few commands on it.  It has:

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

The suite names its containers C{pycmt-<random>-<what>} and removes them
(with C{--force}) after each test, so it can share an engine with other
users.  Lifecycle events are waited for rather than expected at once, so a
backend whose events lag behind its replies (Docker's event stream) passes;
their order must still be the contract's.
"""

from __future__ import annotations

import signal as _signal
import uuid
from collections.abc import Callable, Collection, Generator
from typing import Any, Protocol

from twisted.internet import defer
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import Clock, deferLater
from twisted.python.failure import Failure
from twisted.trial.unittest import SkipTest, TestCase
from zope.interface.verify import verifyObject

from pycm.backends.memory import MemoryBackend
from pycm.errors import BackendError, BadRequest, Conflict, NoImage, NotFound
from pycm.interfaces import IContainerBackend
from pycm.model import (
    ALL_OPTIONS,
    STATS_FIGURES,
    Action,
    Capabilities,
    Container,
    ContainerEvent,
    ContainerSpec,
    LogLine,
    RestartPolicy,
    State,
    WaitCondition,
)
from pycm.stats import ContainerStats

__all__ = [
    "BackendFixture",
    "EventRecorder",
    "MemoryFixture",
    "ReactorFixture",
    "advanceClock",
    "make_backend_tests",
    "memoryBackend",
    "settleClock",
]


# -- fakes and clock helpers -----------------------------------------------


def memoryBackend(clock: Clock | None = None) -> MemoryBackend:
    """
    An opened L{MemoryBackend} on C{clock} (a fresh L{Clock} if None; it is
    C{backend.clock} either way).
    """
    backend = MemoryBackend(clock if clock is not None else Clock())
    backend.open()  # fires at once: nothing to load
    return backend


def settleClock(clock: Clock, d: Deferred[Any], timeout: float = 60.0) -> Deferred[Any]:
    """
    Advance C{clock} from one scheduled call to the next until C{d} fires,
    at most C{timeout} simulated seconds.

    @return: a Deferred that has already fired: with C{d}'s result, or (C{d}
        then cancelled) with L{defer.TimeoutError}.
    """
    results: list[Any] = []
    d.addBoth(results.append)
    deadline = clock.seconds() + timeout
    for _ in range(1_000_000):
        if results:
            break
        clock.advance(0)
        if results:
            break
        times = [c.getTime() for c in clock.getDelayedCalls() if c.active()]
        if not times or min(times) > deadline:
            break
        clock.advance(max(0.0, min(times) - clock.seconds()))
    if not results:
        d.cancel()
        results.clear()
        return defer.fail(defer.TimeoutError(f"no result after {timeout} simulated seconds"))
    result = results[0]
    if isinstance(result, Failure):
        return defer.fail(result)
    return defer.succeed(result)


def advanceClock(clock: Clock, seconds: float) -> None:
    """Let C{seconds} pass on C{clock}, one scheduled call at a time."""
    target = clock.seconds() + seconds
    clock.advance(0)
    while True:
        times = [c.getTime() for c in clock.getDelayedCalls() if c.active()]
        if not times or min(times) > target:
            break
        clock.advance(max(0.0, min(times) - clock.seconds()))
    clock.advance(max(0.0, target - clock.seconds()))


class EventRecorder:
    """An event observer that keeps every event and can be waited on."""

    def __init__(self) -> None:
        self.events: list[ContainerEvent] = []
        self._waiting: list[tuple[Callable[[list[ContainerEvent]], bool], Deferred[Any]]] = []

    def __call__(self, event: ContainerEvent) -> None:
        self.events.append(event)
        for entry in list(self._waiting):
            predicate, d = entry
            if entry in self._waiting and predicate(self.events):
                self._waiting.remove(entry)
                d.callback(list(self.events))

    def actions(self, name: str) -> list[str]:
        """The actions of container C{name}'s events, in order."""
        return [e.action for e in self.events if e.name == name]

    def when(self, predicate: Callable[[list[ContainerEvent]], bool]) -> Deferred[Any]:
        """A cancellable Deferred firing once C{predicate(events)} holds."""
        if predicate(self.events):
            return defer.succeed(list(self.events))

        def cancel(d: Deferred[Any]) -> None:
            if entry in self._waiting:
                self._waiting.remove(entry)

        entry: tuple[Callable[[list[ContainerEvent]], bool], Deferred[Any]] = (
            predicate,
            Deferred(cancel),
        )
        self._waiting.append(entry)
        return entry[1]


# -- fixtures --------------------------------------------------------------


class BackendFixture(Protocol):
    """What L{make_backend_tests} needs: see the module docstring."""

    image: str | None
    missingImage: str
    longCommand: tuple[str, ...]
    ignoreTermCommand: tuple[str, ...] | None
    badCommand: tuple[str, ...] | None

    def exitCommand(self, code: int) -> tuple[str, ...]: ...

    def echoCommand(self, text: str) -> tuple[str, ...]: ...

    def delayedEchoCommand(self, text: str) -> tuple[str, ...]: ...

    def signalledExitCodes(self, signum: int) -> Collection[int]: ...

    def makeBackend(self, testCase: TestCase) -> Deferred[IContainerBackend]: ...

    def settle(self, testCase: TestCase, d: Deferred[Any], timeout: float) -> Deferred[Any]: ...

    def sleep(self, testCase: TestCase, seconds: float) -> Deferred[None]: ...


class MemoryFixture:
    """The conformance fixture of the memory backend, on a L{Clock}."""

    image: str | None = None
    missingImage = "no-such-image"
    longCommand = ("sleep", "infinity")
    ignoreTermCommand: tuple[str, ...] | None = ("ignore-term",)
    badCommand: tuple[str, ...] | None = ("unstartable",)
    busyCommand: tuple[str, ...] | None = ("burn",)

    def __init__(self) -> None:
        self._clocks: dict[TestCase, Clock] = {}

    def exitCommand(self, code: int) -> tuple[str, ...]:
        return ("exit", str(code))

    def echoCommand(self, text: str) -> tuple[str, ...]:
        return ("echo", text)

    def delayedEchoCommand(self, text: str) -> tuple[str, ...]:
        return ("delay", "1", "echo", text)

    def signalledExitCodes(self, signum: int) -> Collection[int]:
        return {-signum}

    def clock(self, testCase: TestCase) -> Clock:
        """The clock of C{testCase}'s backend."""
        return self._clocks[testCase]

    def makeBackend(self, testCase: TestCase) -> Deferred[IContainerBackend]:
        clock = Clock()
        self._clocks[testCase] = clock
        backend = MemoryBackend(clock)
        testCase.addCleanup(self._clocks.pop, testCase, None)
        testCase.addCleanup(lambda: self.settle(testCase, backend.close(), 120))
        return backend.open().addCallback(lambda _: backend)

    def settle(self, testCase: TestCase, d: Deferred[Any], timeout: float) -> Deferred[Any]:
        return settleClock(self._clocks[testCase], d, timeout)

    def sleep(self, testCase: TestCase, seconds: float) -> Deferred[None]:
        advanceClock(self._clocks[testCase], seconds)
        return defer.succeed(None)


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


# -- the conformance suite -------------------------------------------------


def make_backend_tests(fixture: BackendFixture) -> type[TestCase]:
    """
    The conformance suite of L{IContainerBackend}, for the backend that
    C{fixture} makes (see the module docstring).  Use it as::

        class MemoryConformanceTests(make_backend_tests(MemoryFixture())):
            pass
    """

    class BackendConformanceTests(TestCase):
        """The behaviour every L{IContainerBackend} must have."""

        #: Seconds (of the backend's clock) an operation may take.
        opTimeout = 30.0

        # Set by setUp.
        fixture: BackendFixture
        prefix: str
        backend: IContainerBackend
        recorder: EventRecorder
        _names: list[str]

        # trial waits for the Deferred setUp returns; the stubs only know
        # unittest's setUp, which returns None.
        @inlineCallbacks
        def setUp(self) -> Generator[Deferred[Any], Any, None]:  # type: ignore[override]
            self.fixture = fixture
            self.prefix = f"pycmt-{uuid.uuid4().hex[:8]}-"
            self.backend = yield fixture.makeBackend(self)
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
            return fixture.settle(self, d, self.opTimeout if timeout is None else timeout)

        def sleep(self, seconds: float) -> Deferred[None]:
            return fixture.sleep(self, seconds)

        def containerName(self, what: str) -> str:
            name = self.prefix + what
            self._names.append(name)
            return name

        def spec(self, what: str, command: tuple[str, ...] | None, **kw: Any) -> ContainerSpec:
            return ContainerSpec(
                self.containerName(what), image=fixture.image, command=command, **kw
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

        # the interface

        def test_interface(self) -> None:
            """The backend provides L{IContainerBackend}."""
            self.assertTrue(verifyObject(IContainerBackend, self.backend))

        def test_attributes(self) -> None:
            """C{name}, C{capabilities} and C{defaultImage} have their types."""
            self.assertIsInstance(self.backend.name, str)
            self.assertTrue(self.backend.name)
            self.assertIsInstance(self.backend.capabilities, Capabilities)
            self.assertLessEqual(self.backend.capabilities.options, ALL_OPTIONS)
            self.assertIsInstance(self.backend.defaultImage, str)

        # create

        @inlineCallbacks
        def test_create(self) -> Generator[Deferred[Any], Any, None]:
            """C{create} makes a C{created} container and emits C{create}."""
            spec = self.spec("create", fixture.longCommand)
            container = yield self.create(spec)
            self.assertEqual(container.name, spec.name)
            self.assertEqual(container.state, State.CREATED)
            self.assertEqual(container.backend, self.backend.name)
            self.assertEqual(container.image, fixture.image or self.backend.defaultImage)
            self.assertEqual(container.command, fixture.longCommand)
            self.assertIsNone(container.pid)
            self.assertIsNone(container.exitCode)
            self.assertIsNone(container.started)
            self.assertEqual(container.restartCount, 0)
            self.assertTrue(container.id)
            inspected = yield self.settle(self.backend.inspect(spec.name))
            self.assertEqual(inspected.id, container.id)
            self.assertEqual(inspected.state, State.CREATED)
            listed = yield self.settle(self.backend.list())
            self.assertIn(spec.name, [c.name for c in listed])
            yield self.assertActions(spec.name, [Action.CREATE])

        @inlineCallbacks
        def test_createDefaults(self) -> Generator[Deferred[Any], Any, None]:
            """Without image and command, the backend's defaults fill in."""
            container = yield self.create(ContainerSpec(self.containerName("defaults")))
            self.assertEqual(container.image, self.backend.defaultImage)
            self.assertIsInstance(container.command, tuple)
            self.assertTrue(container.command)

        @inlineCallbacks
        def test_createConflict(self) -> Generator[Deferred[Any], Any, None]:
            """Creating a taken name fails with L{Conflict}, changing nothing."""
            spec = self.spec("conflict", fixture.longCommand)
            first = yield self.create(spec)
            error = yield self.assertFails(self.backend.create(spec), Conflict)
            self.assertEqual(str(error), f'container name "{spec.name}" is already in use')
            again = yield self.settle(self.backend.inspect(spec.name))
            self.assertEqual(again.id, first.id)
            yield self.assertActions(spec.name, [Action.CREATE])

        @inlineCallbacks
        def test_createNoImage(self) -> Generator[Deferred[Any], Any, None]:
            """An image the backend lacks fails with L{NoImage}."""
            name = self.containerName("noimage")
            spec = ContainerSpec(name, image=fixture.missingImage, command=fixture.longCommand)
            yield self.assertFails(self.backend.create(spec), NoImage)
            yield self.assertFails(self.backend.inspect(name), NotFound)

        @inlineCallbacks
        def test_createUnsupportedOption(self) -> Generator[Deferred[Any], Any, None]:
            """An option the backend cannot honour fails with L{BadRequest}."""
            missing = sorted(ALL_OPTIONS - self.backend.capabilities.options)
            if not missing:
                raise SkipTest(f"{self.backend.name} supports every option")
            option = missing[0]
            values = {
                "env": {"A": "1"},
                "labels": {"a": "1"},
                "restartPolicy": RestartPolicy("always"),
                "stopTimeout": 1.0,
                "stopSignal": "SIGINT",
                "memory": 64 * 1024 * 1024,
                "cpus": 0.5,
                "workdir": "/tmp",
            }
            field = ContainerSpec.OPTION_FIELDS[option]
            spec = self.spec("option", fixture.longCommand, **{field: values[field]})
            error = yield self.assertFails(self.backend.create(spec), BadRequest)
            self.assertIn(option, str(error))

        @inlineCallbacks
        def test_inspectDetails(self) -> Generator[Deferred[Any], Any, None]:
            """C{inspect} reports every detail given at creation."""
            options = self.backend.capabilities.options
            kw: dict[str, Any] = {}
            if "env" in options:
                kw["env"] = {"GREETING": "hello world"}
            if "label" in options:
                kw["labels"] = {"team": "infra"}
            if "restart" in options:
                kw["restartPolicy"] = RestartPolicy("on-failure", 3)
            if "stop-timeout" in options:
                kw["stopTimeout"] = 7.0
            if "stop-signal" in options:
                kw["stopSignal"] = "SIGINT"
            if "memory" in options:
                kw["memory"] = 64 * 1024 * 1024
            if "cpus" in options:
                kw["cpus"] = 0.5
            if "workdir" in options:
                kw["workdir"] = "/tmp"
            spec = self.spec("details", fixture.longCommand, **kw)
            yield self.create(spec)
            container = yield self.settle(self.backend.inspect(spec.name))
            self.assertEqual(dict(container.env), kw.get("env", {}))
            self.assertEqual(dict(container.labels), kw.get("labels", {}))
            self.assertEqual(container.restartPolicy, kw.get("restartPolicy", RestartPolicy()))
            self.assertEqual(container.stopTimeout, kw.get("stopTimeout", 10.0))
            self.assertEqual(container.stopSignal, kw.get("stopSignal", "SIGTERM"))
            self.assertEqual(container.memory, kw.get("memory"))
            self.assertEqual(container.cpus, kw.get("cpus"))
            self.assertEqual(container.workdir, kw.get("workdir"))
            self.assertIsNone(container.error)

        # missing containers

        @inlineCallbacks
        def test_notFound(self) -> Generator[Deferred[Any], Any, None]:
            """Every operation on a name nobody created fails with L{NotFound}."""
            name = self.containerName("missing")
            calls = [
                lambda: self.backend.start(name),
                lambda: self.backend.stop(name, None),
                lambda: self.backend.restart(name, None),
                lambda: self.backend.kill(name, int(_signal.SIGKILL)),
                lambda: self.backend.remove(name, False),
                lambda: self.backend.remove(name, True),
                lambda: self.backend.inspect(name),
                lambda: self.backend.logs(name, None),
                lambda: self.backend.follow(name, None, lambda line: None),
                lambda: self.backend.wait(name, WaitCondition.NOT_RUNNING),
            ]
            for call in calls:
                error = yield self.assertFails(call(), NotFound)
                self.assertIn(name, str(error))

        # start, stop, restart, kill

        @inlineCallbacks
        def test_start(self) -> Generator[Deferred[Any], Any, None]:
            """C{start} makes it C{running} and emits C{start}."""
            spec = self.spec("start", fixture.longCommand)
            container = yield self.runContainer(spec)
            self.assertEqual(container.state, State.RUNNING)
            self.assertIsNotNone(container.started)
            self.assertIsNone(container.exitCode)
            inspected = yield self.settle(self.backend.inspect(spec.name))
            self.assertEqual(inspected.state, State.RUNNING)
            yield self.assertActions(spec.name, [Action.CREATE, Action.START])

        @inlineCallbacks
        def test_startRunning(self) -> Generator[Deferred[Any], Any, None]:
            """Starting a running container is a no-op firing with it."""
            spec = self.spec("startrunning", fixture.longCommand)
            first = yield self.runContainer(spec)
            again = yield self.settle(self.backend.start(spec.name))
            self.assertEqual(again.state, State.RUNNING)
            self.assertEqual(again.started, first.started)
            self.assertEqual(again.pid, first.pid)
            yield self.assertActions(spec.name, [Action.CREATE, Action.START])

        @inlineCallbacks
        def test_stop(self) -> Generator[Deferred[Any], Any, None]:
            """
            C{stop} sends the stop signal and fires once it has exited;
            events C{die} (with the exit code) and C{stop}.
            """
            spec = self.spec("stop", fixture.longCommand)
            yield self.runContainer(spec)
            container = yield self.settle(self.backend.stop(spec.name, None))
            self.assertEqual(container.state, State.EXITED)
            self.assertIn(container.exitCode, fixture.signalledExitCodes(_signal.SIGTERM))
            self.assertIsNone(container.pid)
            self.assertIsNotNone(container.finished)
            yield self.assertActions(
                spec.name, [Action.CREATE, Action.START, Action.DIE, Action.STOP]
            )
            die = [e for e in self.recorder.events if e.action == Action.DIE][0]
            self.assertEqual(die.exitCode, container.exitCode)

        @inlineCallbacks
        def test_stopNotRunning(self) -> Generator[Deferred[Any], Any, None]:
            """Stopping a container that is not running is a no-op."""
            spec = self.spec("stopcreated", fixture.longCommand)
            yield self.create(spec)
            container = yield self.settle(self.backend.stop(spec.name, None))
            self.assertEqual(container.state, State.CREATED)
            yield self.assertActions(spec.name, [Action.CREATE])

        @inlineCallbacks
        def test_stopEscalates(self) -> Generator[Deferred[Any], Any, None]:
            """A run ignoring the stop signal gets C{kill}ed after the timeout."""
            if fixture.ignoreTermCommand is None:
                raise SkipTest("the fixture has no command ignoring SIGTERM")
            spec = self.spec("escalate", fixture.ignoreTermCommand)
            yield self.runContainer(spec)
            yield self.sleep(0.5)  # let a real shell install its trap
            container = yield self.settle(self.backend.stop(spec.name, 1.0))
            self.assertEqual(container.state, State.EXITED)
            self.assertIn(container.exitCode, fixture.signalledExitCodes(_signal.SIGKILL))
            self.assertGreaterEqual(container.finished - container.started, 1.0)
            yield self.assertActions(
                spec.name,
                [Action.CREATE, Action.START, Action.KILL, Action.DIE, Action.STOP],
            )

        @inlineCallbacks
        def test_stopDefaultTimeout(self) -> Generator[Deferred[Any], Any, None]:
            """C{stop} with no timeout waits the container's stop timeout."""
            if fixture.ignoreTermCommand is None:
                raise SkipTest("the fixture has no command ignoring SIGTERM")
            if "stop-timeout" not in self.backend.capabilities.options:
                raise SkipTest("no --stop-timeout")
            spec = self.spec("stoptimeout", fixture.ignoreTermCommand, stopTimeout=1.0)
            yield self.runContainer(spec)
            yield self.sleep(0.5)
            container = yield self.settle(self.backend.stop(spec.name, None))
            self.assertIn(container.exitCode, fixture.signalledExitCodes(_signal.SIGKILL))
            self.assertLess(container.finished - container.started, 9.0)

        @inlineCallbacks
        def checkRestart(
            self, what: str, policy: RestartPolicy
        ) -> Generator[Deferred[Any], Any, None]:
            """
            C{restart} stops then starts, with one C{restart} event (the
            start is the client's, not a restart policy's); a stop after it
            shows that nothing more came of the restart.
            """
            spec = self.spec(what, fixture.longCommand, restartPolicy=policy)
            yield self.runContainer(spec)
            container = yield self.settle(self.backend.restart(spec.name, None))
            self.assertEqual(container.state, State.RUNNING)
            yield self.settle(self.backend.stop(spec.name, None))
            yield self.assertActions(
                spec.name,
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

        def test_restart(self) -> Deferred[None]:
            """C{restart} stops then starts; events end C{start}, C{restart}."""
            return self.checkRestart("restart", RestartPolicy())

        def test_restartWithPolicy(self) -> Deferred[None]:
            """C{restart} of a container with a restart policy is one restart."""
            return self.checkRestart("restartpolicy", RestartPolicy("always"))

        @inlineCallbacks
        def test_restartCreated(self) -> Generator[Deferred[Any], Any, None]:
            """C{restart} of a container that is not running starts it."""
            spec = self.spec("restartcreated", fixture.longCommand)
            yield self.create(spec)
            container = yield self.settle(self.backend.restart(spec.name, None))
            self.assertEqual(container.state, State.RUNNING)
            yield self.assertActions(spec.name, [Action.CREATE, Action.START, Action.RESTART])

        @inlineCallbacks
        def test_kill(self) -> Generator[Deferred[Any], Any, None]:
            """C{kill} sends the signal and emits C{kill}, then C{die}."""
            spec = self.spec("kill", fixture.longCommand)
            yield self.runContainer(spec)
            container = yield self.settle(self.backend.kill(spec.name, int(_signal.SIGKILL)))
            self.assertIn(container.state, (State.RUNNING, State.EXITED))
            container = yield self.waitFor(spec.name, WaitCondition.NOT_RUNNING)
            self.assertEqual(container.state, State.EXITED)
            self.assertIn(container.exitCode, fixture.signalledExitCodes(_signal.SIGKILL))
            yield self.assertActions(
                spec.name, [Action.CREATE, Action.START, Action.KILL, Action.DIE]
            )

        @inlineCallbacks
        def test_killNotRunning(self) -> Generator[Deferred[Any], Any, None]:
            """Killing a container that is not running fails with L{Conflict}."""
            spec = self.spec("killcreated", fixture.longCommand)
            yield self.create(spec)
            yield self.assertFails(self.backend.kill(spec.name, int(_signal.SIGKILL)), Conflict)

        @inlineCallbacks
        def test_exitCode(self) -> Generator[Deferred[Any], Any, None]:
            """A run's own exit status is its C{exit_code}; it emits C{die}."""
            spec = self.spec("exitcode", fixture.exitCommand(3))
            yield self.runContainer(spec)
            container = yield self.waitFor(spec.name, WaitCondition.NOT_RUNNING)
            self.assertEqual(container.state, State.EXITED)
            self.assertEqual(container.exitCode, 3)
            yield self.assertActions(spec.name, [Action.CREATE, Action.START, Action.DIE])
            die = [e for e in self.recorder.events if e.action == Action.DIE][0]
            self.assertEqual(die.exitCode, 3)

        @inlineCallbacks
        def test_startExited(self) -> Generator[Deferred[Any], Any, None]:
            """An exited container can be started again."""
            spec = self.spec("startexited", fixture.exitCommand(0))
            yield self.runContainer(spec)
            yield self.waitFor(spec.name, WaitCondition.NOT_RUNNING)
            container = yield self.settle(self.backend.start(spec.name))
            self.assertIn(container.state, (State.RUNNING, State.EXITED))
            container = yield self.waitFor(spec.name, WaitCondition.NOT_RUNNING)
            self.assertEqual(container.exitCode, 0)
            yield self.eventsUntil(lambda _: self.count(spec.name, Action.DIE) == 2)
            self.assertEqual(self.count(spec.name, Action.START), 2)

        @inlineCallbacks
        def test_deadOnFailedStart(self) -> Generator[Deferred[Any], Any, None]:
            """
            A run that cannot be started fails C{start} with L{BackendError};
            the container is C{dead} with an C{error}, listed and removable.
            """
            if fixture.badCommand is None:
                raise SkipTest("the fixture has no command that cannot start")
            spec = self.spec("dead", fixture.badCommand)
            yield self.create(spec)
            yield self.assertFails(self.backend.start(spec.name), BackendError)
            container = yield self.settle(self.backend.inspect(spec.name))
            self.assertEqual(container.state, State.DEAD)
            self.assertTrue(container.error)
            listed = yield self.settle(self.backend.list())
            self.assertIn(spec.name, [c.name for c in listed])
            yield self.settle(self.backend.remove(spec.name, False))
            yield self.assertFails(self.backend.inspect(spec.name), NotFound)

        # remove

        @inlineCallbacks
        def test_remove(self) -> Generator[Deferred[Any], Any, None]:
            """C{remove} forgets a stopped container and emits C{destroy}."""
            spec = self.spec("remove", fixture.longCommand)
            yield self.create(spec)
            result = yield self.settle(self.backend.remove(spec.name, False))
            self.assertIsNone(result)
            yield self.assertFails(self.backend.inspect(spec.name), NotFound)
            listed = yield self.settle(self.backend.list())
            self.assertNotIn(spec.name, [c.name for c in listed])
            yield self.assertActions(spec.name, [Action.CREATE, Action.DESTROY])

        @inlineCallbacks
        def test_removeRunning(self) -> Generator[Deferred[Any], Any, None]:
            """Removing a running container without force is a L{Conflict}."""
            spec = self.spec("removerunning", fixture.longCommand)
            yield self.runContainer(spec)
            yield self.assertFails(self.backend.remove(spec.name, False), Conflict)
            container = yield self.settle(self.backend.inspect(spec.name))
            self.assertEqual(container.state, State.RUNNING)

        @inlineCallbacks
        def test_removeForce(self) -> Generator[Deferred[Any], Any, None]:
            """C{remove --force} kills a running container first."""
            spec = self.spec("removeforce", fixture.longCommand)
            yield self.runContainer(spec)
            yield self.settle(self.backend.remove(spec.name, True))
            yield self.assertFails(self.backend.inspect(spec.name), NotFound)
            yield self.assertActions(
                spec.name,
                [Action.CREATE, Action.START, Action.KILL, Action.DIE, Action.DESTROY],
            )

        @inlineCallbacks
        def test_removeThenCreate(self) -> Generator[Deferred[Any], Any, None]:
            """A removed container's name can be used again, with a new id."""
            spec = self.spec("reuse", fixture.longCommand)
            first = yield self.create(spec)
            yield self.settle(self.backend.remove(spec.name, False))
            second = yield self.create(spec)
            self.assertNotEqual(first.id, second.id)

        # logs

        @inlineCallbacks
        def test_logs(self) -> Generator[Deferred[Any], Any, None]:
            """Output is kept as log lines, oldest first; C{tail} limits."""
            spec = self.spec("logs", fixture.echoCommand("hello world"))
            yield self.runContainer(spec)
            yield self.waitFor(spec.name, WaitCondition.NOT_RUNNING)
            yield self.settle(self.backend.start(spec.name))
            yield self.eventsUntil(lambda _: self.count(spec.name, Action.DIE) == 2)
            lines = yield self.settle(self.backend.logs(spec.name, None))
            self.assertEqual([(x.stream, x.line) for x in lines], [("stdout", "hello world")] * 2)
            self.assertIsInstance(lines[0], LogLine)
            self.assertLessEqual(lines[0].time, lines[1].time)
            last = yield self.settle(self.backend.logs(spec.name, 1))
            self.assertEqual(last, lines[-1:])
            none = yield self.settle(self.backend.logs(spec.name, 0))
            self.assertEqual(none, [])

        @inlineCallbacks
        def test_logsSince(self) -> Generator[Deferred[Any], Any, None]:
            """
            C{since} keeps the lines written at or after a time, for C{logs}
            and for C{follow}'s backlog; C{tail} counts among those.
            """
            spec = self.spec("logssince", fixture.echoCommand("first"))
            yield self.runContainer(spec)
            yield self.waitFor(spec.name, WaitCondition.NOT_RUNNING)
            # Far enough apart that the two lines' times differ.
            yield self.sleep(getattr(fixture, "logTimeResolution", 0.1))
            yield self.settle(self.backend.start(spec.name))
            yield self.eventsUntil(lambda _: self.count(spec.name, Action.DIE) == 2)
            lines = yield self.settle(self.backend.logs(spec.name, None))
            self.assertEqual(len(lines), 2)
            self.assertLess(lines[0].time, lines[1].time)
            since = yield self.settle(self.backend.logs(spec.name, None, lines[1].time))
            self.assertEqual(since, lines[1:])
            both = yield self.settle(self.backend.logs(spec.name, None, lines[0].time))
            self.assertEqual(both, lines)
            lastOne = yield self.settle(self.backend.logs(spec.name, 1, lines[0].time))
            self.assertEqual(lastOne, lines[1:])
            later = yield self.settle(self.backend.logs(spec.name, None, lines[1].time + 1))
            self.assertEqual(later, [])
            follow = yield self.settle(
                self.backend.follow(spec.name, None, lambda line: None, lines[1].time)
            )
            follow.cancel()
            self.assertEqual(follow.backlog, lines[1:])

        @inlineCallbacks
        def test_logsRemoved(self) -> Generator[Deferred[Any], Any, None]:
            """A container created again after C{remove} has no old output."""
            spec = self.spec("logsremoved", fixture.echoCommand("old"))
            yield self.runContainer(spec)
            yield self.waitFor(spec.name, WaitCondition.NOT_RUNNING)
            yield self.settle(self.backend.remove(spec.name, False))
            yield self.create(spec)
            lines = yield self.settle(self.backend.logs(spec.name, None))
            self.assertEqual(lines, [])

        @inlineCallbacks
        def test_follow(self) -> Generator[Deferred[Any], Any, None]:
            """
            C{follow} gives the backlog, then each new line, and ends when
            the container stops running; nothing is missed or repeated.
            """
            spec = self.spec("follow", fixture.delayedEchoCommand("later"))
            yield self.runContainer(spec)
            seen: list[LogLine] = []
            follow = yield self.settle(self.backend.follow(spec.name, None, seen.append))
            yield self.settle(follow.ended)
            everything = yield self.settle(self.backend.logs(spec.name, None))
            self.assertEqual(follow.backlog + seen, everything)
            self.assertEqual([x.line for x in everything], ["later"])

        @inlineCallbacks
        def test_followExited(self) -> Generator[Deferred[Any], Any, None]:
            """Following a container that has exited gives its backlog, and ends."""
            spec = self.spec("followexited", fixture.echoCommand("done"))
            yield self.runContainer(spec)
            yield self.waitFor(spec.name, WaitCondition.NOT_RUNNING)
            seen: list[LogLine] = []
            follow = yield self.settle(self.backend.follow(spec.name, 10, seen.append))
            yield self.settle(follow.ended)
            self.assertEqual([x.line for x in follow.backlog], ["done"])
            self.assertEqual(seen, [])

        @inlineCallbacks
        def test_followCancel(self) -> Generator[Deferred[Any], Any, None]:
            """Cancelling a follow ends it at once."""
            spec = self.spec("followcancel", fixture.longCommand)
            yield self.runContainer(spec)
            follow = yield self.settle(self.backend.follow(spec.name, None, lambda x: None))
            follow.cancel()
            yield self.settle(follow.ended, 5)

        @inlineCallbacks
        def test_followRemoved(self) -> Generator[Deferred[Any], Any, None]:
            """A follow ends when its container is removed."""
            spec = self.spec("followremoved", fixture.longCommand)
            yield self.runContainer(spec)
            follow = yield self.settle(self.backend.follow(spec.name, None, lambda x: None))
            yield self.settle(self.backend.remove(spec.name, True))
            yield self.settle(follow.ended, 5)

        # wait

        @inlineCallbacks
        def test_waitNotRunningNow(self) -> Generator[Deferred[Any], Any, None]:
            """C{wait not-running} fires at once for a container not running."""
            spec = self.spec("waitnow", fixture.longCommand)
            yield self.create(spec)
            container = yield self.settle(self.backend.wait(spec.name, "not-running"), 1)
            self.assertEqual(container.state, State.CREATED)

        @inlineCallbacks
        def test_waitRunning(self) -> Generator[Deferred[Any], Any, None]:
            """C{wait running} fires once it runs, at once if it does."""
            spec = self.spec("waitrunning", fixture.longCommand)
            yield self.create(spec)
            waiting = self.backend.wait(spec.name, WaitCondition.RUNNING)
            yield self.settle(self.backend.start(spec.name))
            container = yield self.settle(waiting)
            self.assertEqual(container.state, State.RUNNING)
            again = yield self.settle(self.backend.wait(spec.name, WaitCondition.RUNNING), 1)
            self.assertEqual(again.state, State.RUNNING)

        @inlineCallbacks
        def test_waitNextExit(self) -> Generator[Deferred[Any], Any, None]:
            """C{wait next-exit} fires with the container as it exited."""
            spec = self.spec("waitexit", fixture.longCommand)
            yield self.runContainer(spec)
            waiting = self.backend.wait(spec.name, WaitCondition.NEXT_EXIT)
            yield self.settle(self.backend.kill(spec.name, int(_signal.SIGTERM)))
            container = yield self.settle(waiting)
            self.assertEqual(container.state, State.EXITED)
            self.assertIn(container.exitCode, fixture.signalledExitCodes(_signal.SIGTERM))

        @inlineCallbacks
        def test_waitRemoved(self) -> Generator[Deferred[Any], Any, None]:
            """C{wait removed} fires once the container is removed."""
            spec = self.spec("waitremoved", fixture.longCommand)
            yield self.create(spec)
            waiting = self.backend.wait(spec.name, WaitCondition.REMOVED)
            yield self.settle(self.backend.remove(spec.name, False))
            yield self.settle(waiting)

        @inlineCallbacks
        def test_waitCancel(self) -> Generator[Deferred[Any], Any, None]:
            """A wait can be cancelled; the container is unaffected."""
            spec = self.spec("waitcancel", fixture.longCommand)
            yield self.create(spec)
            waiting = self.backend.wait(spec.name, WaitCondition.RUNNING)
            waiting.cancel()
            self.failureResultOf(waiting, defer.CancelledError)
            container = yield self.startExisting(spec.name)
            self.assertEqual(container.state, State.RUNNING)

        def startExisting(self, name: str) -> Deferred[Container]:
            return self.settle(self.backend.start(name))

        # restart policies

        @inlineCallbacks
        def test_onFailureMax(self) -> Generator[Deferred[Any], Any, None]:
            """C{on-failure:2} restarts a failing run twice, then leaves it."""
            policy = RestartPolicy("on-failure", 2)
            spec = self.spec("onfailure", fixture.exitCommand(1), restartPolicy=policy)
            yield self.runContainer(spec)
            yield self.eventsUntil(lambda _: self.count(spec.name, Action.DIE) == 3)
            yield self.sleep(1.0)
            container = yield self.settle(self.backend.inspect(spec.name))
            self.assertEqual(container.state, State.EXITED)
            self.assertEqual(container.exitCode, 1)
            self.assertEqual(container.restartCount, 2)
            self.assertEqual(self.count(spec.name, Action.START), 3)
            self.assertEqual(self.count(spec.name, Action.RESTART), 2)
            self.assertEqual(self.count(spec.name, Action.DIE), 3)

        @inlineCallbacks
        def test_onFailureSuccess(self) -> Generator[Deferred[Any], Any, None]:
            """C{on-failure} does not restart a run that exited 0."""
            policy = RestartPolicy("on-failure")
            spec = self.spec("onsuccess", fixture.exitCommand(0), restartPolicy=policy)
            yield self.runContainer(spec)
            yield self.waitFor(spec.name, WaitCondition.NOT_RUNNING)
            yield self.sleep(0.5)
            container = yield self.settle(self.backend.inspect(spec.name))
            self.assertEqual(container.state, State.EXITED)
            self.assertEqual(container.restartCount, 0)
            self.assertEqual(self.count(spec.name, Action.START), 1)

        @inlineCallbacks
        def test_alwaysThenStop(self) -> Generator[Deferred[Any], Any, None]:
            """
            C{always} restarts even successful runs; a client C{stop} ends
            that, whether it comes while running or restarting.
            """
            policy = RestartPolicy("always")
            spec = self.spec("always", fixture.exitCommand(0), restartPolicy=policy)
            yield self.runContainer(spec)
            yield self.eventsUntil(lambda _: self.count(spec.name, Action.RESTART) >= 2)
            container = yield self.settle(self.backend.stop(spec.name, None))
            self.assertEqual(container.state, State.EXITED)
            self.assertGreaterEqual(container.restartCount, 2)
            starts = self.count(spec.name, Action.START)
            yield self.sleep(1.5)
            self.assertEqual(self.count(spec.name, Action.START), starts)
            container = yield self.settle(self.backend.inspect(spec.name))
            self.assertEqual(container.state, State.EXITED)

        @inlineCallbacks
        def test_alwaysOtherSignal(self) -> Generator[Deferred[Any], Any, None]:
            """
            A C{kill} with a signal that is neither SIGKILL nor the stop
            signal is a message, not a client stop: an C{always} container
            that dies of it is restarted (Docker's rule).  (A backend whose
            process ignores SIGHUP, as a PID 1 does, has nothing to check.)
            """
            policy = RestartPolicy("always")
            spec = self.spec("alwayshup", fixture.longCommand, restartPolicy=policy)
            yield self.runContainer(spec)
            yield self.settle(self.backend.kill(spec.name, int(_signal.SIGHUP)))
            yield self.sleep(1.5)
            if self.count(spec.name, Action.DIE):
                self.assertGreaterEqual(self.count(spec.name, Action.RESTART), 1)
                container = yield self.settle(self.backend.inspect(spec.name))
                self.assertEqual(container.state, State.RUNNING)
            yield self.settle(self.backend.remove(spec.name, True))

        @inlineCallbacks
        def test_alwaysKilled(self) -> Generator[Deferred[Any], Any, None]:
            """A client C{kill} disables the restart policy too."""
            policy = RestartPolicy("always")
            spec = self.spec("alwayskilled", fixture.longCommand, restartPolicy=policy)
            yield self.runContainer(spec)
            yield self.settle(self.backend.kill(spec.name, int(_signal.SIGKILL)))
            yield self.waitFor(spec.name, WaitCondition.NOT_RUNNING)
            yield self.sleep(1.0)
            container = yield self.settle(self.backend.inspect(spec.name))
            self.assertEqual(container.state, State.EXITED)
            self.assertEqual(self.count(spec.name, Action.START), 1)

        @inlineCallbacks
        def test_startResetsPolicy(self) -> Generator[Deferred[Any], Any, None]:
            """
            A client C{start} after a client stop re-enables the policy and
            resets C{restart_count}.
            """
            policy = RestartPolicy("on-failure", 1)
            spec = self.spec("reset", fixture.exitCommand(1), restartPolicy=policy)
            yield self.runContainer(spec)
            yield self.eventsUntil(lambda _: self.count(spec.name, Action.DIE) == 2)
            yield self.waitFor(spec.name, WaitCondition.NOT_RUNNING)
            container = yield self.settle(self.backend.inspect(spec.name))
            self.assertEqual(container.restartCount, 1)
            container = yield self.settle(self.backend.start(spec.name))
            self.assertEqual(container.restartCount, 0)
            yield self.eventsUntil(lambda _: self.count(spec.name, Action.DIE) == 4)
            yield self.sleep(0.5)
            container = yield self.settle(self.backend.inspect(spec.name))
            self.assertEqual(container.restartCount, 1)
            self.assertEqual(container.state, State.EXITED)

        # stats

        def assertFigures(self, row: ContainerStats) -> None:
            """The figures of a running container have their types."""
            known = self.backend.capabilities.stats
            self.assertLessEqual(known, STATS_FIGURES)
            figures = row.toJSON()
            for figure in STATS_FIGURES:
                value = figures[figure]
                if figure not in known:
                    self.assertIsNone(value, figure)
                elif figure == "cpu_percent":
                    self.assertIsInstance(value, float, figure)
                    self.assertGreaterEqual(value, 0.0)
                elif value is not None:
                    self.assertIsInstance(value, int, figure)
                    self.assertGreaterEqual(value, 0, figure)
            for figure in ("memory", "pids"):
                if figure in known:
                    self.assertGreater(figures[figure], 0, figure)

        @inlineCallbacks
        def test_statsRunning(self) -> Generator[Deferred[Any], Any, None]:
            """
            C{stats} with no name lists every running container with its
            figures, and not one that is only created.
            """
            running = self.spec("statsrunning", fixture.longCommand)
            created = self.spec("statscreated", fixture.longCommand)
            yield self.runContainer(running)
            yield self.create(created)
            rows = yield self.settle(self.backend.stats([]))
            mine = {row.name: row for row in rows if row.name.startswith(self.prefix)}
            self.assertEqual(set(mine), {running.name})
            self.assertEqual(mine[running.name].state, State.RUNNING)
            self.assertFigures(mine[running.name])

        @inlineCallbacks
        def test_statsNamed(self) -> Generator[Deferred[Any], Any, None]:
            """
            C{stats NAME...} gives one row per distinct name: a container
            that is not running has every figure None.
            """
            running = self.spec("statsnamedrun", fixture.longCommand)
            created = self.spec("statsnamedcreated", fixture.longCommand)
            yield self.runContainer(running)
            yield self.create(created)
            rows = yield self.settle(
                self.backend.stats([created.name, running.name, created.name])
            )
            byName = {row.name: row for row in rows}
            self.assertEqual(len(rows), 2)
            self.assertEqual(byName[created.name], ContainerStats(created.name, State.CREATED))
            self.assertEqual(byName[running.name].state, State.RUNNING)
            self.assertFigures(byName[running.name])

        @inlineCallbacks
        def test_statsNotFound(self) -> Generator[Deferred[Any], Any, None]:
            """C{stats} of an unknown name fails with L{NotFound}."""
            running = self.spec("statsknown", fixture.longCommand)
            yield self.runContainer(running)
            yield self.assertFails(
                self.backend.stats([running.name, self.prefix + "nosuch"]), NotFound
            )

        @inlineCallbacks
        def test_statsBusy(self) -> Generator[Deferred[Any], Any, None]:
            """
            A container keeping a CPU busy shows it in C{cpu_percent} over
            the last interval; an idle one shows little.
            """
            busy = getattr(fixture, "busyCommand", None)
            if busy is None or "cpu_percent" not in self.backend.capabilities.stats:
                raise SkipTest("the fixture has no busy command")
            spec = self.spec("statsbusy", busy)
            idle = self.spec("statsidle", fixture.longCommand)
            yield self.runContainer(spec)
            yield self.runContainer(idle)
            yield self.settle(self.backend.stats([spec.name, idle.name]))
            yield self.sleep(1.5)
            rows = yield self.settle(self.backend.stats([spec.name, idle.name]))
            byName = {row.name: row for row in rows}
            # One CPU busy is 100%; a loaded test machine gives it less.
            self.assertGreater(byName[spec.name].cpuPercent, 25.0)
            self.assertLess(byName[idle.name].cpuPercent, 25.0)

    return BackendConformanceTests
