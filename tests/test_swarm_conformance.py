"""
The shared backend conformance suite (L{pycm.testing.BackendConformanceTests})
against the swarm backend: over L{FakeSwarmEngine} on a clock everywhere,
and over the real two-node swarm at C{PYCM_SWARM_HOST} (L{requireSwarm}:
skipped without it, a failure without it under C{PYCM_REQUIRE_SWARM=1}).
Where Swarm differs from one host, the fixtures say so
(docs/swarm-backend.md, "where Swarm differs").
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

from pycm.backends.swarm.backend import SwarmBackend, makeBackend
from pycm.interfaces import IContainerBackend
from pycm.testing import BackendConformanceTests, MemoryFixture, ReactorFixture
from pycm.testing.swarmengine import FakeSwarmEngine
from tests.swarmsupport import requireSwarm

#: Docker's times are after the epoch: 0 reads as "never".
EPOCH = 1_700_000_000


def fakeSwarmBackend(clock: Any, engine: FakeSwarmEngine, **options: str) -> SwarmBackend:
    """The swarm backend on C{engine}, reaching every node's engine."""
    nodes = {node.hostname: engine.nodeEngine(node.hostname) for node in engine.cluster.nodes}
    return makeBackend(clock, None, dict(options), engine, nodes)


class FakeSwarmFixture(MemoryFixture):
    """
    The conformance fixture of the swarm backend on a L{FakeSwarmEngine}
    (a manager and a worker) and a L{Clock}: the memory backend's commands.
    """

    missingImage = "pycm-test/no-such-image:1"

    def makeBackend(self, testCase: TestCase) -> Deferred[IContainerBackend]:
        clock = self.newClock(testCase, now=EPOCH)
        engine = FakeSwarmEngine(clock)
        backend = fakeSwarmBackend(clock, engine)
        testCase.addCleanup(lambda: self.settle(testCase, backend.close(), 120))
        # The fake answers on later turns of the clock: turn it.
        return self.settle(testCase, backend.open(), 60).addCallback(lambda _: backend)


class FakeSwarmConformanceTests(BackendConformanceTests, TestCase):
    """The swarm backend passes the conformance suite on the fake swarm."""

    fixture = FakeSwarmFixture()


class RealSwarmFixture(ReactorFixture):
    """
    The conformance fixture of the swarm backend on the real two-node
    swarm (L{requireSwarm}), kill reaching the worker through its engine.
    """

    missingImage = "pycm-test/no-such-image:1"
    longCommand = ("sleep", "1000")
    ignoreTermCommand = ("sh", "-c", "trap '' TERM; sleep 1000")
    badCommand = ("pycm-no-such-executable",)
    busyCommand = ("sh", "-c", "while :; do :; done")
    logTimeResolution = 0.2

    def __init__(self) -> None:
        super().__init__(reactor)
        self.image: str | None = None

    def exitCommand(self, code: int) -> tuple[str, ...]:
        return ("sh", "-c", f"exit {code}")

    def echoCommand(self, text: str) -> tuple[str, ...]:
        return ("printf", "%s\\n", text)

    def delayedEchoCommand(self, text: str) -> tuple[str, ...]:
        return ("sh", "-c", 'sleep 1; printf "%s\\n" "$1"', "sh", text)

    def makeBackend(self, testCase: TestCase) -> Deferred[IContainerBackend]:
        cluster = requireSwarm()
        self.image = cluster.image
        options = {
            "docker-host": cluster.host,
            "default-image": cluster.image,
            "swarm-node-host": f"{cluster.workerNode}={cluster.workerHost}",
        }
        backend = makeBackend(reactor, None, options)
        testCase.addCleanup(lambda: self.settle(testCase, backend.close(), 60))
        return backend.open().addCallback(lambda _: backend)


class RealSwarmConformanceTests(BackendConformanceTests, TestCase):
    """The swarm backend passes the conformance suite on the real two-node swarm."""

    fixture = RealSwarmFixture()
