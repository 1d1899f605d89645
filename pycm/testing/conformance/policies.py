"""
The backend conformance suite, part three: restart policies and C{stats}.
"""

from __future__ import annotations

import signal as _signal
from collections.abc import Generator
from typing import Any

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.trial.unittest import SkipTest

from pycm.capabilities import STATS_FIGURES
from pycm.errors import NotFound
from pycm.model import (
    Action,
    RestartPolicy,
    State,
    WaitCondition,
)
from pycm.stats import ContainerStats
from pycm.testing.conformance.base import BackendTestsBase

#: The least C{cpu_percent} a process that never sleeps shows: it would
#: take some 40 processes as busy on a 2-core machine to starve it below.
BUSY_FLOOR = 5.0
#: How many times an idle container's C{cpu_percent} a busy one shows, at
#: the least, in the same C{stats} (an idle one shows next to nothing).
BUSY_OVER_IDLE = 10.0


class BackendPolicyTests(BackendTestsBase):
    """The behaviour of restart policies and of C{stats}."""

    # restart policies

    @inlineCallbacks
    def test_onFailureMax(self) -> Generator[Deferred[Any], Any, None]:
        """C{on-failure:2} restarts a failing run twice, then leaves it."""
        policy = RestartPolicy("on-failure", 2)
        spec = self.spec("onfailure", self.fixture.exitCommand(1), restartPolicy=policy)
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
        spec = self.spec("onsuccess", self.fixture.exitCommand(0), restartPolicy=policy)
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
        spec = self.spec("always", self.fixture.exitCommand(0), restartPolicy=policy)
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
        spec = self.spec("alwayshup", self.fixture.longCommand, restartPolicy=policy)
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
        spec = self.spec("alwayskilled", self.fixture.longCommand, restartPolicy=policy)
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
        spec = self.spec("reset", self.fixture.exitCommand(1), restartPolicy=policy)
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
        running = self.spec("statsrunning", self.fixture.longCommand)
        created = self.spec("statscreated", self.fixture.longCommand)
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
        running = self.spec("statsnamedrun", self.fixture.longCommand)
        created = self.spec("statsnamedcreated", self.fixture.longCommand)
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
        running = self.spec("statsknown", self.fixture.longCommand)
        yield self.runContainer(running)
        yield self.assertFails(
            self.backend.stats([running.name, self.prefix + "nosuch"]), NotFound
        )

    @inlineCallbacks
    def test_statsBusy(self) -> Generator[Deferred[Any], Any, None]:
        """
        A container keeping a CPU busy shows it in C{cpu_percent} over
        the last interval, well above an idle one, and no more than the
        one CPU its one process can use; an idle one shows little.

        How much CPU the busy one gets depends on the machine's load (a
        loaded 2-core test machine gave it 16.7%), so the check is against
        the idle one's figure from the same call, not against a share
        the load can starve.
        """
        busy = getattr(self.fixture, "busyCommand", None)
        if busy is None or "cpu_percent" not in self.backend.capabilities.stats:
            raise SkipTest("the fixture has no busy command")
        spec = self.spec("statsbusy", busy)
        idle = self.spec("statsidle", self.fixture.longCommand)
        yield self.runContainer(spec)
        yield self.runContainer(idle)
        yield self.settle(self.backend.stats([spec.name, idle.name]))
        yield self.sleep(1.5)
        rows = yield self.settle(self.backend.stats([spec.name, idle.name]))
        byName = {row.name: row for row in rows}
        busyShare, idleShare = byName[spec.name].cpuPercent, byName[idle.name].cpuPercent
        # One CPU busy is 100% (a little more for the engines' sampling);
        # the load of the machine may give it much less, never none.
        self.assertGreater(busyShare, BUSY_FLOOR)
        self.assertLessEqual(busyShare, 110.0)
        self.assertLess(idleShare, 25.0)
        self.assertGreater(busyShare, BUSY_OVER_IDLE * idleShare)
