"""
The shared suite of L{IRuntime} (L{pycm.testing.conformance.RuntimeTests})
on the fake and the real runtime: L{SimulatedRuntime} on a L{Clock}, and
L{ProcessRuntime} starting real processes on the reactor.
"""

from __future__ import annotations

import os
import signal
import subprocess
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import deferLater
from twisted.trial.unittest import SynchronousTestCase, TestCase

from pycm.backends.memory import SimulatedRuntime
from pycm.backends.process import procfs
from pycm.backends.process.cgroups import NO_CGROUPS
from pycm.backends.process.runtime import ProcessRuntime
from pycm.interfaces import IRuntime
from pycm.model import Container
from pycm.testing import ClockPerTest
from pycm.testing.conformance import RunRecorder, RuntimeSweepTests, RuntimeTests


class SimulatedRuntimeFixture(ClockPerTest):
    """L{SimulatedRuntime} on a L{Clock} of its own for each test."""

    longCommand = ("sleep", "infinity")
    badCommand = ("unstartable",)

    def exitCommand(self, code: int) -> tuple[str, ...]:
        return ("exit", str(code))

    def echoCommand(self, text: str) -> tuple[str, ...]:
        return ("echo", text)

    def errorCommand(self, text: str) -> tuple[str, ...]:
        return ("fail", text)

    def makeRuntime(self, testCase: TestCase) -> IRuntime:
        return SimulatedRuntime(self.newClock(testCase))

    def leftover(
        self, testCase: TestCase, runtime: IRuntime, container: Container
    ) -> Deferred[tuple[int, Any]]:
        # A runtime shared by two supervisors: the first one's run lives on.
        d = runtime.spawn(container, RunRecorder())
        return d.addCallback(lambda run: (run.pid, run.startTime))


class ProcessRuntimeFixture:
    """L{ProcessRuntime} without cgroups, on the reactor: real processes."""

    longCommand = ("sleep", "1000")
    badCommand = ("pycm-no-such-executable",)

    def exitCommand(self, code: int) -> tuple[str, ...]:
        return ("sh", "-c", f"exit {code}")

    def echoCommand(self, text: str) -> tuple[str, ...]:
        return ("printf", "%s\\n", text)

    def errorCommand(self, text: str) -> tuple[str, ...]:
        return ("sh", "-c", 'printf "%s\\n" "$1" >&2; exit 1', "sh", text)

    def makeRuntime(self, testCase: TestCase) -> IRuntime:
        runtime = ProcessRuntime(reactor, cgroups=NO_CGROUPS)
        testCase.addCleanup(runtime.close)
        return runtime

    def leftover(
        self, testCase: TestCase, runtime: IRuntime, container: Container
    ) -> Deferred[tuple[int, Any]]:
        # A process group in a session of its own, as a dead daemon leaves it.
        child = subprocess.Popen(list(container.command), start_new_session=True)
        testCase.addCleanup(self._reap, child)
        return succeed((child.pid, procfs.startTime(child.pid)))

    def _reap(self, child: subprocess.Popen[bytes]) -> None:
        try:
            os.killpg(child.pid, signal.SIGKILL)
        except OSError:
            pass
        child.wait()

    def settle(self, testCase: TestCase, d: Deferred[Any], timeout: float) -> Deferred[Any]:
        return d.addTimeout(timeout, reactor)


class SimulatedRuntimeTests(RuntimeTests, TestCase):
    """L{SimulatedRuntime} passes the runtime suite."""

    fixture = SimulatedRuntimeFixture()


class ProcessRuntimeTests(RuntimeSweepTests, TestCase):
    """L{ProcessRuntime} passes the runtime suite, with real processes."""

    fixture = ProcessRuntimeFixture()
    timeout = 60


class ClockPerTestTests(SynchronousTestCase):
    """L{ClockPerTest}: the clock of a suite's fixture, one for each test."""

    def test_ownClock(self) -> None:
        """
        Each test gets a new clock at the time asked; C{settle} turns it
        until a Deferred fires, C{sleep} lets time pass on it, and the
        test's end forgets it.
        """
        fixture = ClockPerTest()
        first, second = SynchronousTestCase(), SynchronousTestCase()
        clock = fixture.newClock(first, now=100.0)
        other = fixture.newClock(second)
        self.assertIs(fixture.clock(first), clock)
        self.assertEqual((clock.seconds(), other.seconds()), (100.0, 0.0))
        fired = deferLater(clock, 5, lambda: "done")
        self.assertEqual(self.successResultOf(fixture.settle(first, fired, 10)), "done")
        self.assertEqual(clock.seconds(), 105.0)
        self.successResultOf(fixture.sleep(first, 2))
        self.assertEqual((clock.seconds(), other.seconds()), (107.0, 0.0))
        first.doCleanups()
        self.assertRaises(KeyError, fixture.clock, first)
        self.assertIs(fixture.clock(second), other)
