"""
Tests for the waits over the swarm backend's snapshots
(L{pycm.backends.swarm.waiting}), on snapshots built by hand.
"""

from __future__ import annotations

from twisted.internet.defer import CancelledError
from twisted.trial.unittest import SynchronousTestCase

from pycm.backends.swarm.waiting import SnapshotWaits
from pycm.errors import NotFound
from pycm.model import State, WaitCondition
from tests.swarmsnapshots import (
    exited,
    service,
    snap,
    task,
    toContainer,
)


class WaitTests(SynchronousTestCase):
    """L{SnapshotWaits}: waits answered from snapshots."""

    def setUp(self) -> None:
        self.waits = SnapshotWaits(toContainer)

    def test_runningAtOnce(self) -> None:
        """C{running} of a service whose desired tasks all run fires at once."""
        self.waits.snapshot(snap(1.0, service("web", task("t1"))))
        container = self.successResultOf(self.waits.wait("web", WaitCondition.RUNNING))
        self.assertEqual(container.state, State.RUNNING)

    def test_runningWhenAllRun(self) -> None:
        """C{running} waits until every desired task runs, not just one."""
        self.waits.snapshot(snap(1.0, service("web", task("t1"), desired=2)))
        d = self.waits.wait("web", WaitCondition.RUNNING)
        self.waits.snapshot(
            snap(2.0, service("web", task("t1"), task("t2", "starting", slot=2), desired=2))
        )
        self.assertNoResult(d)
        self.waits.snapshot(snap(3.0, service("web", task("t1"), task("t2", slot=2), desired=2)))
        self.assertEqual(self.successResultOf(d).state, State.RUNNING)
        self.assertEqual(self.waits.waiters, [])

    def test_notRunning(self) -> None:
        """C{not-running} fires at once when stopped, else when scaled to 0."""
        self.waits.snapshot(snap(1.0, service("web", task("t1")), service("db", desired=0)))
        self.assertEqual(
            self.successResultOf(self.waits.wait("db", WaitCondition.NOT_RUNNING)).state,
            State.EXITED,
        )
        d = self.waits.wait("web", WaitCondition.NOT_RUNNING)
        # The engine replacing a task is not a stop.
        self.waits.snapshot(snap(2.0, service("web", exited("t1", 1, 1.5), task("t2", "starting"))))
        self.assertNoResult(d)
        self.waits.snapshot(snap(3.0, service("web", exited("t1", 1, 1.5), desired=0)))
        self.assertEqual(self.successResultOf(d).state, State.EXITED)

    def test_nextExit(self) -> None:
        """C{next-exit} fires at a task's die, with that task's exit code."""
        self.waits.snapshot(snap(1.0, service("web", task("t1"))))
        d = self.waits.wait("web", WaitCondition.NEXT_EXIT)
        self.waits.snapshot(snap(2.0, service("web", task("t1"))))
        self.assertNoResult(d)
        self.waits.snapshot(snap(3.0, service("web", exited("t1", 4, 2.5), task("t2", "starting"))))
        self.assertEqual(self.successResultOf(d).exitCode, 4)

    def test_nextExitCameAndWent(self) -> None:
        """C{next-exit} sees a task that started and exited between two snapshots."""
        self.waits.snapshot(snap(1.0, service("web", task("t1", "pending", containerId=None))))
        d = self.waits.wait("web", WaitCondition.NEXT_EXIT)
        self.waits.snapshot(snap(2.0, service("web", exited("t1", 2, 1.5), task("t2", "ready"))))
        self.assertEqual(self.successResultOf(d).exitCode, 2)

    def test_removed(self) -> None:
        """C{removed} fires once the service is gone, as it was last seen, exited."""
        self.waits.snapshot(snap(1.0, service("web", task("t1"))))
        d = self.waits.wait("web", WaitCondition.REMOVED)
        stopped = self.waits.whenStopped("web")
        self.waits.snapshot(snap(2.0, service("web", task("t1"))))
        self.assertNoResult(d)
        self.waits.snapshot(snap(3.0))
        self.assertEqual(self.successResultOf(d).state, State.EXITED)
        self.successResultOf(stopped)

    def test_replacedIsRemoved(self) -> None:
        """A service removed and made anew between two looks counts as removed."""
        self.waits.snapshot(snap(1.0, service("web")))
        d = self.waits.wait("web", WaitCondition.REMOVED)
        self.waits.snapshot(snap(2.0, service("web", id="other")))
        self.successResultOf(d)

    def test_notFound(self) -> None:
        """An unknown name is L{NotFound}, at once or at the first snapshot."""
        self.waits.snapshot(snap(1.0))
        self.failureResultOf(self.waits.wait("web", WaitCondition.REMOVED), NotFound)
        fresh = SnapshotWaits(toContainer)
        d = fresh.wait("web", WaitCondition.RUNNING)
        self.assertNoResult(d)
        fresh.snapshot(snap(1.0))
        self.failureResultOf(d, NotFound)

    def test_cancel(self) -> None:
        """A cancelled wait is gone: nothing fires it later."""
        self.waits.snapshot(snap(1.0, service("web", task("t1"))))
        d = self.waits.wait("web", WaitCondition.REMOVED)
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertEqual(self.waits.waiters, [])
        self.waits.snapshot(snap(2.0))

    def test_cancelAll(self) -> None:
        """Closing cancels every wait."""
        self.waits.snapshot(snap(1.0, service("web", task("t1"))))
        d = self.waits.wait("web", WaitCondition.NOT_RUNNING)
        self.waits.cancelAll()
        self.failureResultOf(d, CancelledError)
        self.assertEqual(self.waits.waiters, [])
