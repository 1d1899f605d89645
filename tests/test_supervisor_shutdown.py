"""
Tests for L{pycm.backends.supervisor.backend}: the daemon's shutdown, on a fake clock
with simulated runs.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from zope.interface import implementer

from pycm.backends.memory import SimulatedRuntime
from pycm.backends.supervisor.recovery import STARTING_ERROR
from pycm.errors import Unavailable
from pycm.interfaces import IRun, IRunObserver, IRuntimeSweep
from pycm.model import (
    Container,
    State,
)
from pycm.testing import advanceClock
from tests.test_supervisor import SupervisorTestCase, spec


@implementer(IRuntimeSweep)
class _SlowRuntime(SimulatedRuntime):
    """A simulated runtime whose spawns fire only when the test says so."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock)
        self.pending: list[tuple[Deferred[IRun], IRun]] = []
        self.swept: list[dict[str, Container]] = []
        self.found: list[str] = []
        self.runIds: list[str | None] = []

    def spawn(
        self, container: Container, observer: IRunObserver, runId: str | None = None
    ) -> Deferred[IRun]:
        self.runIds.append(runId)
        run = self.successResultOf(super().spawn(container, observer))
        d: Deferred[IRun] = Deferred()
        self.pending.append((d, run))
        return d

    def successResultOf(self, d: Deferred[IRun]) -> IRun:
        result: list[IRun] = []
        d.addCallback(result.append)
        return result[0]

    def fire(self) -> None:
        pending, self.pending = self.pending, []
        for d, run in pending:
            d.callback(run)

    def sweep(self, runs: dict[str, Container]) -> Deferred[list[str]]:
        self.swept.append(dict(runs))
        return succeed([r for r in self.found if r in runs])


class ShutdownTests(SupervisorTestCase):
    """A daemon stopping or dying while containers are being started."""

    def setUp(self) -> None:
        super().setUp()
        self.runtime = _SlowRuntime(self.clock)
        self.backend = self.makeBackend()

    def test_closeWaitsForStartsInFlight(self) -> None:
        """
        A start in flight when close begins completes, and close then
        stops what it started: nothing is left running unmanaged.
        """
        self.successResultOf(self.backend.create(spec("web", "sleep", "infinity")))
        started = self.backend.start("web")
        closed = self.backend.close()
        self.assertNoResult(closed)
        self.runtime.fire()
        self.successResultOf(started)
        advanceClock(self.clock, 1)
        self.successResultOf(closed)
        self.assertEqual(self.runtime.runs, {})
        container = self.inspect("web")
        self.assertEqual((container.state, container.error), (State.EXITED, "daemon shut down"))

    def test_closingRefusesStarts(self) -> None:
        """While closing, create, start and restart fail with Unavailable."""
        self.successResultOf(self.backend.create(spec("web", "sleep", "infinity")))
        self.backend.start("web")
        self.backend.close()
        self.failureResultOf(self.backend.create(spec("db")), Unavailable)
        self.failureResultOf(self.backend.start("web"), Unavailable)
        self.failureResultOf(self.backend.restart("web", None), Unavailable)
        self.runtime.fire()

    def test_runIdSavedBeforeSpawn(self) -> None:
        """
        The run id is saved with the record before the runtime is asked to
        spawn, and given to the runtime: a daemon that dies mid-start
        leaves a marker.
        """
        self.successResultOf(self.backend.create(spec("web", "sleep", "infinity")))
        self.backend.start("web")
        [runId] = self.runtime.runIds
        self.assertIsNotNone(runId)
        [saved] = [r for r in self.store.load() if r["name"] == "web"]
        self.assertEqual((saved["state"], saved["runId"]), (State.CREATED, runId))
        self.runtime.fire()

    def test_openSweepsRunsOfAStartInterrupted(self) -> None:
        """
        On open, the runtime is asked once for every record's run id; a
        record left C{created} whose run was found says so in C{error}.
        """
        self.successResultOf(self.backend.create(spec("web", "sleep", "infinity")))
        self.backend.start("web")  # the daemon "dies" before it fires
        [runId] = self.runtime.runIds
        assert runId is not None
        runtime = _SlowRuntime(self.clock)
        runtime.found = [runId]
        backend = self.makeBackend(runtime)
        [swept] = runtime.swept
        self.assertEqual(list(swept), [runId])
        container = self.inspect("web", backend)
        self.assertEqual(container.state, State.CREATED)
        self.assertEqual(container.error, STARTING_ERROR)
