"""
Containers brought back when the daemon opens
(L{pycm.backends.supervisor.backend.Supervisor.open}), a batch at a time
on a group commit that flushes at the end of each turn, as the process
backend's does.
"""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from pycm.backends.memory import MemoryBackend, MemoryLogStore, MemoryRecordStore, SimulatedRuntime
from pycm.backends.supervisor.backend import BRING_BACK_BATCH, Supervisor
from pycm.groupcommit import GroupCommit
from pycm.model import ContainerSpec, RestartPolicy
from pycm.testing.clock import TurnClock

ALWAYS = RestartPolicy("always")


class BringBackTests(SynchronousTestCase):
    """C{always} containers of a closed daemon, brought back by the next one."""

    def setUp(self) -> None:
        self.clock = TurnClock()
        self.store = MemoryRecordStore()
        self.runtime = SimulatedRuntime(self.clock)
        first = MemoryBackend(self.clock, runtime=self.runtime, recordStore=self.store)
        self.successResultOf(first.open())
        self.names = [f"c{i:03d}" for i in range(2 * BRING_BACK_BATCH + 1)]
        for name in self.names:
            self.successResultOf(first.create(ContainerSpec(name, restartPolicy=ALWAYS)))
            self.successResultOf(first.start(name))
        closing = first.close()
        self.clock.advance(0)
        self.successResultOf(closing)
        self.spawnsByTurn: list[int] = []
        spawn = self.runtime.spawn

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.spawnsByTurn[-1] += 1
            return spawn(*args, **kwargs)

        self.patch(self.runtime, "spawn", counted)
        self.second = Supervisor(
            self.clock, "memory", self.runtime, MemoryLogStore(), self.store,
            commits=GroupCommit(self.clock),
        )

    def turn(self) -> None:
        """One reactor turn: the calls due, not those they schedule."""
        self.spawnsByTurn.append(0)
        self.clock.advance(0)

    def test_aBatchATurn(self) -> None:
        """
        At most L{BRING_BACK_BATCH} are spawned in one turn, the next batch
        once the one before runs; C{open} fires once every one runs.
        """
        self.spawnsByTurn.append(0)
        opening = self.second.open()
        opened: list[object] = []
        opening.addBoth(opened.append)
        while not opened and len(self.spawnsByTurn) < 50:
            self.turn()
        self.assertEqual(opened, [None])
        self.assertEqual(sum(self.spawnsByTurn), len(self.names))
        self.assertEqual(max(self.spawnsByTurn), BRING_BACK_BATCH)
        self.assertEqual(
            [n for n in self.spawnsByTurn if n], [BRING_BACK_BATCH, BRING_BACK_BATCH, 1]
        )
        states = {c.name: c.state for c in self.successResultOf(self.second.list())}
        self.assertEqual(set(states.values()), {"running"})

    def test_closedWhileBringingBack(self) -> None:
        """
        A daemon told to stop while it brings its containers back starts no
        batch after the one in flight, and stops what the batches started.
        """
        self.spawnsByTurn.append(0)
        opening = self.second.open()
        while sum(self.spawnsByTurn) < BRING_BACK_BATCH:
            self.turn()
        closing = self.second.close()
        for _ in range(20):
            self.turn()
        self.successResultOf(closing)
        self.successResultOf(opening)
        self.assertEqual(sum(self.spawnsByTurn), 2 * BRING_BACK_BATCH)
        self.assertLess(sum(self.spawnsByTurn), len(self.names))
        states = {c.name: c.state for c in self.successResultOf(self.second.list())}
        self.assertNotIn("running", set(states.values()))
