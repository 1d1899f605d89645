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
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from pycm.backends.memory import SimulatedRuntime
from pycm.backends.process import procfs
from pycm.backends.process.cgroups import NO_CGROUPS
from pycm.backends.process.runtime import ProcessRuntime
from pycm.interfaces import IRuntime
from pycm.model import Container
from pycm.testing import settleClock
from pycm.testing.conformance import RunRecorder, RuntimeTests


class SimulatedRuntimeFixture:
    """L{SimulatedRuntime} on a L{Clock} of its own for each test."""

    longCommand = ("sleep", "infinity")
    badCommand = ("unstartable",)

    def __init__(self) -> None:
        self._clocks: dict[TestCase, Clock] = {}

    def exitCommand(self, code: int) -> tuple[str, ...]:
        return ("exit", str(code))

    def echoCommand(self, text: str) -> tuple[str, ...]:
        return ("echo", text)

    def errorCommand(self, text: str) -> tuple[str, ...]:
        return ("fail", text)

    def makeRuntime(self, testCase: TestCase) -> IRuntime:
        clock = self._clocks[testCase] = Clock()
        testCase.addCleanup(self._clocks.pop, testCase, None)
        return SimulatedRuntime(clock)

    def leftover(
        self, testCase: TestCase, runtime: IRuntime, container: Container
    ) -> Deferred[tuple[int, Any]]:
        # A runtime shared by two supervisors: the first one's run lives on.
        d = runtime.spawn(container, RunRecorder())
        return d.addCallback(lambda run: (run.pid, run.startTime))

    def settle(self, testCase: TestCase, d: Deferred[Any], timeout: float) -> Deferred[Any]:
        return settleClock(self._clocks[testCase], d, timeout)


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


class ProcessRuntimeTests(RuntimeTests, TestCase):
    """L{ProcessRuntime} passes the runtime suite, with real processes."""

    fixture = ProcessRuntimeFixture()
    timeout = 60
