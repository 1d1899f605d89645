"""
Containers brought back when the daemon opens
(L{pycm.backends.supervisor.comeback}): the first batch before C{open}
fires, the others C{restarting} until their batch, a batch a turn, on a
group commit that flushes at the end of each turn as the process
backend's does, and what a client does meanwhile.
"""

from __future__ import annotations

from typing import Any

from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from pycm.backends.memory import MemoryBackend, MemoryLogStore, MemoryRecordStore, SimulatedRuntime
from pycm.backends.supervisor.backend import Supervisor
from pycm.backends.supervisor.comeback import BATCH
from pycm.errors import Conflict
from pycm.groupcommit import GroupCommit
from pycm.model import ContainerSpec, RestartPolicy, State
from pycm.testing.clock import TurnClock

ALWAYS = RestartPolicy("always")


class ComebackTests(SynchronousTestCase):
    """C{always} containers of a closed daemon, brought back by the next one."""

    def setUp(self) -> None:
        self.clock = TurnClock()
        self.store = MemoryRecordStore()
        self.runtime = SimulatedRuntime(self.clock)
        self.spawned: list[list[str]] = [[]]
        spawn = self.runtime.spawn

        def counted(container: Any, *args: Any, **kwargs: Any) -> Any:
            self.spawned[-1].append(container.name)
            return spawn(container, *args, **kwargs)

        self.patch(self.runtime, "spawn", counted)

    def closedDaemon(self, count: int) -> list[str]:
        """A daemon that ran C{count} C{always} containers, closed."""
        first = MemoryBackend(self.clock, runtime=self.runtime, recordStore=self.store)
        self.successResultOf(first.open())
        names = [f"c{i:03d}" for i in range(count)]
        for name in names:
            self.successResultOf(first.create(ContainerSpec(name, restartPolicy=ALWAYS)))
            self.successResultOf(first.start(name))
        self.settled(first.close())
        self.spawned = [[]]
        return names

    def turn(self) -> None:
        """One reactor turn: the calls due, not those they schedule."""
        self.spawned.append([])
        self.clock.advance(0)

    def settled(self, d: Any) -> Any:
        """What C{d} fires with, once the turns made it fire."""
        out: list[Any] = []
        d.addBoth(out.append)
        self.turns(until=lambda: bool(out))
        if isinstance(out[0], Failure):
            out[0].raiseException()
        return out[0]

    def turns(self, until: Any, most: int = 100) -> None:
        for _ in range(most):
            if until():
                return
            self.turn()
        self.fail("never")

    def openSecond(self) -> Supervisor:
        """The next daemon's backend, opened (its first batch running)."""
        self.second = Supervisor(
            self.clock, "memory", self.runtime, MemoryLogStore(), self.store,
            commits=GroupCommit(self.clock),
        )
        self.assertIsNone(self.settled(self.second.open()))
        return self.second

    def states(self) -> dict[str, str]:
        return {c.name: c.state for c in self.successResultOf(self.second.list())}

    def restBack(self) -> None:
        self.settled(self.second._comeback.done)

    def spawns(self) -> list[str]:
        return [name for turn in self.spawned for name in turn]

    def test_batches(self) -> None:
        """
        C{open} fires once the first L{BATCH} run, the others
        C{restarting}; they are started L{BATCH} a turn, each batch once
        the one before runs.
        """
        names = self.closedDaemon(2 * BATCH + 1)
        self.openSecond()
        states = self.states()
        self.assertEqual(sorted(states.values()).count(State.RUNNING), BATCH)
        self.assertEqual(
            {name for name, state in states.items() if state == State.RESTARTING},
            set(names[BATCH:]),
        )
        self.restBack()
        self.assertEqual(set(self.states().values()), {State.RUNNING})
        self.assertEqual([len(turn) for turn in self.spawned if turn], [BATCH, BATCH, 1])
        self.assertEqual(sorted(self.spawns()), names)

    def test_fewBeforeOpen(self) -> None:
        """No more than L{BATCH}: every one runs when C{open} fires."""
        names = self.closedDaemon(BATCH)
        self.openSecond()
        self.assertEqual(set(self.states().values()), {State.RUNNING})
        self.assertEqual(sorted(self.spawns()), names)

    def test_stoppedWhileWaiting(self) -> None:
        """A client's stop of one waiting for its batch: it is not started."""
        names = self.closedDaemon(2 * BATCH + 1)  # the last waits for the third batch
        self.openSecond()
        stopped = self.settled(self.second.stop(names[-1], None))
        self.assertEqual(stopped.state, State.EXITED)
        self.restBack()
        self.assertEqual(self.states()[names[-1]], State.EXITED)
        self.assertNotIn(names[-1], self.spawns())

    def test_startedWhileWaiting(self) -> None:
        """A client's start of one waiting for its batch starts it once."""
        names = self.closedDaemon(2 * BATCH + 1)  # the last waits for the third batch
        self.openSecond()
        self.assertEqual(self.settled(self.second.start(names[-1])).state, State.RUNNING)
        self.restBack()
        self.assertEqual(self.spawns().count(names[-1]), 1)
        self.assertEqual(self.states()[names[-1]], State.RUNNING)

    def test_removedWhileWaiting(self) -> None:
        """
        One waiting for its batch is removed only with C{--force}, and
        then never started.
        """
        names = self.closedDaemon(2 * BATCH + 1)  # the last waits for the third batch
        self.openSecond()
        self.assertRaises(Conflict, self.settled, self.second.remove(names[-1], False))
        self.settled(self.second.remove(names[-1], True))
        self.restBack()
        self.assertNotIn(names[-1], self.states())
        self.assertNotIn(names[-1], self.spawns())

    def test_closedWhileWaiting(self) -> None:
        """
        A daemon stopped while containers wait for their batch starts no
        other batch, stops what runs, and leaves the waiting ones to the
        next daemon, which brings every one back.
        """
        names = self.closedDaemon(3 * BATCH)
        self.openSecond()
        self.settled(self.second.close())
        self.assertLess(len(self.spawns()), len(names))
        self.assertNotIn(State.RUNNING, set(self.states().values()))
        third = MemoryBackend(self.clock, runtime=self.runtime, recordStore=self.store)
        self.successResultOf(third.open())
        states = {c.name: c.state for c in self.successResultOf(third.list())}
        self.assertEqual(set(states.values()), {State.RUNNING})
