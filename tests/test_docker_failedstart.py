"""
A start the engine refuses (C{run --user} of a user the image lacks, a
command it cannot execute without the backend's look first): the Docker
backend lists the container C{dead} with the engine's reason at once, as
C{inspect} shows it, not C{created} from the inspect it cached before the
start.  On the fake engine and a L{Clock}.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from pycm.backends.docker.backend import makeBackend
from pycm.errors import BackendError
from pycm.model import ContainerSpec, State
from pycm.testing.clock import settleClock
from pycm.testing.dockerengine import FakeDockerEngine


class FailedStartTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)  # Docker's times are after the epoch
        engine = FakeDockerEngine(self.clock)
        # Without the backend's look for the executable: the engine refuses.
        self.backend = makeBackend(self.clock, None, {"network": "none", "init": "no"}, engine)
        self.settle(self.backend.open())
        self.addCleanup(lambda: self.settle(self.backend.close()))

    def settle(self, d: Deferred[Any]) -> Any:
        return self.successResultOf(settleClock(self.clock, d))

    def test_listedDeadAtOnce(self) -> None:
        """Listed C{dead} with the engine's reason right after the failed start, as inspected."""
        spec = ContainerSpec(name="web", image="busybox", command=("unstartable",))
        self.settle(self.backend.create(spec))
        self.settle(self.backend.list())  # the created container's inspect, cached
        failure = self.failureResultOf(settleClock(self.clock, self.backend.start("web")),
                                       BackendError)
        self.assertIn("cannot start web", str(failure.value))
        [listed] = self.settle(self.backend.list())
        inspected = self.settle(self.backend.inspect("web"))
        self.assertEqual((listed.state, inspected.state), (State.DEAD, State.DEAD))
        self.assertTrue(listed.error)
        self.assertEqual(listed.error, inspected.error)
