"""
The shared suite of L{IRuntime} (and of L{IRuntimeSweep} and
L{IRuntimeStats} where a runtime provides them): L{RuntimeTests}, run on
the simulated runtime and on real processes so that the fake cannot drift.
"""

from __future__ import annotations

import json
import signal as _signal
import uuid
from collections.abc import Generator
from typing import Any, Protocol

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.trial.unittest import SkipTest, TestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from pycm.capabilities import Capabilities
from pycm.errors import BackendError
from pycm.interfaces import IRun, IRunObserver, IRuntime, IRuntimeStats, IRuntimeSweep
from pycm.model import Container, State
from pycm.stats import Usage
from pycm.testing.conformance.mixin import TestCaseMixin

__all__ = ["RunRecorder", "RuntimeFixture", "RuntimeSweepTests", "RuntimeTests"]


class RuntimeFixture(Protocol):
    """
    What L{RuntimeTests} needs to know of a runtime.

      - C{longCommand}: runs until signalled, and dies of SIGTERM.
      - C{badCommand}: cannot be started (C{spawn} fails with
        L{BackendError}).
      - C{exitCommand(code)}: exits promptly with C{code}.
      - C{echoCommand(text)}: writes C{text} as one stdout line, exits 0.
      - C{errorCommand(text)}: writes C{text} as one stderr line, exits 1.
      - C{makeRuntime(testCase)}: a runtime (C{testCase.addCleanup}
        undoes it).
      - C{leftover(testCase, runtime, container)}: a Deferred firing with
        the C{(pid, startTime)} of a run of C{container} that a previous
        daemon left running, for L{IRuntime.reclaim}.
      - C{settle(testCase, d, timeout)}: C{d}'s result once it has one, or
        L{twisted.internet.defer.TimeoutError} after C{timeout} seconds of
        the runtime's clock (advancing a fake one).
    """

    @property
    def longCommand(self) -> tuple[str, ...]: ...

    @property
    def badCommand(self) -> tuple[str, ...]: ...

    def exitCommand(self, code: int) -> tuple[str, ...]: ...

    def echoCommand(self, text: str) -> tuple[str, ...]: ...

    def errorCommand(self, text: str) -> tuple[str, ...]: ...

    def makeRuntime(self, testCase: TestCase) -> IRuntime: ...

    def leftover(
        self, testCase: TestCase, runtime: IRuntime, container: Container
    ) -> Deferred[tuple[int, Any]]: ...

    def settle(self, testCase: TestCase, d: Deferred[Any], timeout: float) -> Deferred[Any]: ...


@implementer(IRunObserver)
class RunRecorder:
    """An L{IRunObserver} that keeps what it hears; C{ended} fires on exit."""

    def __init__(self) -> None:
        self.batches: list[tuple[str, list[bytes]]] = []
        self.exits: list[int | None] = []
        self.outputAfterExit = False
        self.ended: Deferred[int | None] = Deferred()

    def output(self, stream: str, lines: list[bytes]) -> None:
        self.outputAfterExit = self.outputAfterExit or bool(self.exits)
        self.batches.append((stream, list(lines)))

    def exited(self, exitCode: int | None) -> None:
        self.exits.append(exitCode)
        if not self.ended.called:
            self.ended.callback(exitCode)

    def lines(self, stream: str) -> list[bytes]:
        """Every line of C{stream}, in order."""
        return [line for s, batch in self.batches if s == stream for line in batch]


class RuntimeTests(TestCaseMixin):
    """
    The behaviour every L{IRuntime} must have, as a mixin: subclass it with
    a trial C{TestCase} and set C{fixture}.
    """

    fixture: RuntimeFixture
    #: Seconds (of the runtime's clock) an operation may take.
    opTimeout = 30.0

    def setUp(self) -> None:
        self.runtime = self.fixture.makeRuntime(self)
        self.prefix = f"pycmt-{uuid.uuid4().hex[:8]}-"
        self._runs: list[tuple[IRun, RunRecorder]] = []
        self.addCleanup(self._killAll)

    @inlineCallbacks
    def _killAll(self) -> Generator[Deferred[Any], Any, None]:
        for run, recorder in self._runs:
            if not recorder.exits:
                run.signal(_signal.SIGKILL)
                yield self.settle(recorder.ended)

    def settle(self, d: Deferred[Any]) -> Deferred[Any]:
        return self.fixture.settle(self, d, self.opTimeout)

    def container(self, what: str, command: tuple[str, ...]) -> Container:
        """A container of the runtime's default image, as a supervisor gives it."""
        return Container(
            name=self.prefix + what,
            id=uuid.uuid4().hex,
            backend="test",
            image=self.runtime.defaultImage,
            command=command,
            state=State.CREATED,
            created=0.0,
            stopTimeout=5.0,
        )

    @inlineCallbacks
    def spawn(
        self, container: Container, runId: str | None = None
    ) -> Generator[Deferred[Any], Any, tuple[IRun, RunRecorder]]:
        recorder = RunRecorder()
        run = yield self.settle(self.runtime.spawn(container, recorder, runId=runId))
        self._runs.append((run, recorder))
        return run, recorder

    def assertEnded(self, recorder: RunRecorder, exitCode: int) -> None:
        """Told exactly once, with C{exitCode}, after all output."""
        self.assertEqual(recorder.exits, [exitCode])
        self.assertFalse(recorder.outputAfterExit)
        for stream, batch in recorder.batches:
            self.assertIn(stream, ("stdout", "stderr"))
            self.assertTrue(batch)
            for line in batch:
                self.assertIsInstance(line, bytes)

    def requireOptional(self, interface: Any) -> None:
        if not interface.providedBy(self.runtime):
            raise SkipTest(f"the runtime does not provide {interface.__name__}")

    # the interfaces

    def test_interface(self) -> None:
        """The runtime provides L{IRuntime}, and whatever optional interface it says."""
        self.assertTrue(verifyObject(IRuntime, self.runtime))
        for optional in (IRuntimeSweep, IRuntimeStats):
            if optional.providedBy(self.runtime):
                self.assertTrue(verifyObject(optional, self.runtime))

    def test_attributes(self) -> None:
        """Its images, default image, default command and capabilities have their types."""
        self.assertIsInstance(self.runtime.images, frozenset)
        self.assertIn(self.runtime.defaultImage, self.runtime.images)
        command = self.runtime.defaultCommand
        self.assertIsInstance(command, tuple)
        self.assertTrue(command)
        self.assertTrue(all(isinstance(word, str) for word in command))
        self.assertIsInstance(self.runtime.capabilities, Capabilities)

    # spawn and runs

    @inlineCallbacks
    def test_spawn(self) -> Generator[Deferred[Any], Any, None]:
        """C{spawn} fires with an L{IRun}: a pid (or None) and a JSON-able start time."""
        run, recorder = yield self.spawn(self.container("spawn", self.fixture.longCommand))
        self.assertTrue(verifyObject(IRun, run))
        if run.pid is not None:
            self.assertIsInstance(run.pid, int)
        json.dumps(run.startTime)
        self.assertEqual(recorder.exits, [])

    @inlineCallbacks
    def test_stdout(self) -> Generator[Deferred[Any], Any, None]:
        """A run's stdout lines reach the observer, without newlines, then its exit."""
        run, recorder = yield self.spawn(self.container("echo", self.fixture.echoCommand("hé")))
        code = yield self.settle(recorder.ended)
        self.assertEqual(code, 0)
        self.assertEqual(recorder.lines("stdout"), ["hé".encode()])
        self.assertEqual(recorder.lines("stderr"), [])
        self.assertEnded(recorder, 0)

    @inlineCallbacks
    def test_stderr(self) -> Generator[Deferred[Any], Any, None]:
        """Stderr lines reach the observer as C{stderr}."""
        command = self.fixture.errorCommand("oops")
        run, recorder = yield self.spawn(self.container("stderr", command))
        yield self.settle(recorder.ended)
        self.assertEqual(recorder.lines("stderr"), [b"oops"])
        self.assertEnded(recorder, 1)

    @inlineCallbacks
    def test_exitCode(self) -> Generator[Deferred[Any], Any, None]:
        """A run's exit status is what the observer hears."""
        run, recorder = yield self.spawn(self.container("exit", self.fixture.exitCommand(3)))
        yield self.settle(recorder.ended)
        self.assertEnded(recorder, 3)

    @inlineCallbacks
    def test_signal(self) -> Generator[Deferred[Any], Any, None]:
        """
        A run killed by a signal exits with minus its number; a signal to a
        run that has exited is ignored.
        """
        run, recorder = yield self.spawn(self.container("signal", self.fixture.longCommand))
        run.signal(_signal.SIGTERM)
        yield self.settle(recorder.ended)
        self.assertEnded(recorder, -_signal.SIGTERM)
        run.signal(_signal.SIGKILL)
        self.assertEnded(recorder, -_signal.SIGTERM)

    @inlineCallbacks
    def test_spawnFails(self) -> Generator[Deferred[Any], Any, None]:
        """A run that cannot start fails C{spawn} with L{BackendError}; no exit is told."""
        recorder = RunRecorder()
        container = self.container("bad", self.fixture.badCommand)
        d = self.settle(self.runtime.spawn(container, recorder))
        yield self.assertFailure(d, BackendError)
        self.assertEqual((recorder.batches, recorder.exits), ([], []))

    # reclaim

    @inlineCallbacks
    def test_reclaim(self) -> Generator[Deferred[Any], Any, None]:
        """
        C{reclaim} stops a run a previous daemon left and fires True; a
        second time it is gone, and C{reclaim} fires False.
        """
        container = self.container("reclaim", self.fixture.longCommand)
        pid, startTime = yield self.fixture.leftover(self, self.runtime, container)
        stopped = yield self.settle(self.runtime.reclaim(container, pid, startTime))
        self.assertIs(stopped, True)
        again = yield self.settle(self.runtime.reclaim(container, pid, startTime))
        self.assertIs(again, False)

    @inlineCallbacks
    def test_reclaimNothing(self) -> Generator[Deferred[Any], Any, None]:
        """A record with no pid has nothing to reclaim: C{reclaim} fires False."""
        container = self.container("reclaimnone", self.fixture.longCommand)
        stopped = yield self.settle(self.runtime.reclaim(container, None, None))
        self.assertIs(stopped, False)

    # the optional interfaces

    @inlineCallbacks
    def test_usage(self) -> Generator[Deferred[Any], Any, None]:
        """L{IRuntimeStats.usage} reads one L{Usage} a running run, in order."""
        self.requireOptional(IRuntimeStats)
        first = self.container("usage1", self.fixture.longCommand)
        second = self.container("usage2", self.fixture.longCommand)
        run1, _ = yield self.spawn(first)
        run2, _ = yield self.spawn(second)
        readings = IRuntimeStats(self.runtime).usage([(first, run1), (second, run2)])
        self.assertEqual(len(readings), 2)
        for reading in readings:
            self.assertIsInstance(reading, Usage)


class RuntimeSweepTests(RuntimeTests):
    """
    L{RuntimeTests} plus L{IRuntimeSweep}, for a runtime that can find what
    a crashed daemon's runs left behind.
    """

    def test_sweepInterface(self) -> None:
        """The runtime provides L{IRuntimeSweep}."""
        self.assertTrue(verifyObject(IRuntimeSweep, self.runtime))

    @inlineCallbacks
    def test_sweepNothing(self) -> Generator[Deferred[Any], Any, None]:
        """L{IRuntimeSweep.sweep} of no runs finds nothing."""
        found = yield self.settle(IRuntimeSweep(self.runtime).sweep({}, ()))
        self.assertEqual(found, [])

    @inlineCallbacks
    def test_sweepMarked(self) -> Generator[Deferred[Any], Any, None]:
        """
        L{IRuntimeSweep.sweep} stops what carries the run id of one of the
        runs given, and says which runs it found something of.
        """
        runId = f"run-{uuid.uuid4().hex}"
        container = self.container("sweep", self.fixture.longCommand)
        run, recorder = yield self.spawn(container, runId)
        other = self.container("sweepother", self.fixture.longCommand)
        runs = {runId: container, f"run-{uuid.uuid4().hex}": other}
        found = yield self.settle(IRuntimeSweep(self.runtime).sweep(runs, ()))
        self.assertEqual(found, [runId])
        yield self.settle(recorder.ended)
        self.assertEqual(len(recorder.exits), 1)
