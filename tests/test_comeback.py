"""
Containers brought back when the daemon opens
(L{pycm.backends.supervisor.comeback}): the first batch before C{open}
fires, the others C{restarting} until their batch, a batch a turn, on a
group commit that flushes at the end of each turn as the process
backend's does, and what a client does meanwhile.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import fail
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from pycm.backends.memory import MemoryBackend, MemoryLogStore, MemoryRecordStore, SimulatedRuntime
from pycm.backends.supervisor.backend import Supervisor
from pycm.backends.supervisor.comeback import BATCH
from pycm.errors import BackendError, Conflict
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
        #: Names whose spawn fails (the command cannot be executed).
        self.unstartable: set[str] = set()
        spawn = self.runtime.spawn

        def counted(container: Any, *args: Any, **kwargs: Any) -> Any:
            self.spawned[-1].append(container.name)
            if container.name in self.unstartable:
                return fail(BackendError(f"cannot start {container.name}"))
            return spawn(container, *args, **kwargs)

        self.patch(self.runtime, "spawn", counted)

    def closedDaemon(
        self,
        count: int,
        policy: RestartPolicy = ALWAYS,
        commands: dict[int, tuple[str, ...]] | None = None,
        close: bool = True,
    ) -> list[str]:
        """
        A daemon that ran C{count} containers (C{commands} by index, else
        C{sleep infinity}), closed (C{close}: else left as a killed
        daemon leaves its runs).
        """
        first = MemoryBackend(self.clock, runtime=self.runtime, recordStore=self.store)
        self.successResultOf(first.open())
        names = [f"c{i:03d}" for i in range(count)]
        for i, name in enumerate(names):
            command = (commands or {}).get(i)
            spec = ContainerSpec(name, command=command, restartPolicy=policy)
            self.successResultOf(first.create(spec))
            self.successResultOf(first.start(name))
        if close:
            self.settled(first.close(), seconds=1)
        self.spawned = [[]]
        return names

    def turn(self, seconds: float = 0) -> None:
        """One reactor turn C{seconds} on: the calls due, not those they schedule."""
        self.spawned.append([])
        self.clock.advance(seconds)

    def settled(self, d: Any, seconds: float = 0) -> Any:
        """What C{d} fires with, once turns C{seconds} apart made it fire."""
        out: list[Any] = []
        d.addBoth(out.append)
        self.turns(until=lambda: bool(out), seconds=seconds)
        if isinstance(out[0], Failure):
            out[0].raiseException()
        return out[0]

    def turns(self, until: Any, most: int = 100, seconds: float = 0) -> None:
        for _ in range(most):
            if until():
                return
            self.turn(seconds)
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

    def test_failedStartLogged(self) -> None:
        """
        A container of a later batch that cannot be started is C{dead}, and
        the batches after its own go on.
        """
        names = self.closedDaemon(3 * BATCH)
        self.unstartable = {names[BATCH + 1]}
        self.openSecond()
        self.assertIsNone(self.settled(self.second._comeback.done))
        states = self.states()
        self.assertEqual(states.pop(names[BATCH + 1]), State.DEAD)
        self.assertEqual(set(states.values()), {State.RUNNING})

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
        batch after the one in flight, stops what runs, and leaves the
        waiting ones interrupted: the next daemon brings every one back
        (C{on-failure} ones too, which come back only if interrupted).
        """
        self.closedDaemon(3 * BATCH, policy=RestartPolicy("on-failure"))
        self.openSecond()
        self.settled(self.second.close())
        self.assertEqual(len(self.spawns()), 2 * BATCH)
        self.assertEqual(set(self.states().values()), {State.EXITED})
        self.assertIsNone(self.successResultOf(self.second._comeback.done))
        third = MemoryBackend(self.clock, runtime=self.runtime, recordStore=self.store)
        self.successResultOf(third.open())
        states = {c.name: c.state for c in self.successResultOf(third.list())}
        self.assertEqual(set(states.values()), {State.RUNNING})

    def test_closedWhileRecovering(self) -> None:
        """
        A daemon stopped while it still reclaims what a killed one left
        (a run that ignores its stop signal) starts nothing and queues
        nothing: no record is left C{restarting}, and the next daemon
        brings every one back.
        """
        self.closedDaemon(2 * BATCH, commands={0: ("ignore-term",)}, close=False)
        self.second = Supervisor(
            self.clock, "memory", self.runtime, MemoryLogStore(), self.store,
            commits=GroupCommit(self.clock),
        )
        opening = self.second.open()
        self.turn()
        self.settled(self.second.close(), seconds=1)
        self.settled(opening, seconds=1)
        self.assertEqual(self.spawns(), [])
        self.assertNotIn(State.RESTARTING, set(self.states().values()))
        third = MemoryBackend(self.clock, runtime=self.runtime, recordStore=self.store)
        self.successResultOf(third.open())
        states = {c.name: c.state for c in self.successResultOf(third.list())}
        self.assertEqual(set(states.values()), {State.RUNNING})

    def test_slowStopHoldsNoBatch(self) -> None:
        """
        A client's request that holds a waiting container for long (a stop
        of a run that ignores its stop signal, up to an hour) when its
        batch comes holds no batch: the others are all brought back.
        """
        slowIndex = 3 * BATCH  # alone in the fourth batch
        names = self.closedDaemon(slowIndex + 1, commands={slowIndex: ("ignore-term",)})
        self.openSecond()
        slow = names[slowIndex]
        starting = self.second.start(slow)
        stopping = self.second.stop(slow, 3600)
        self.settled(self.second._comeback.done)
        self.assertEqual(self.successResultOf(starting).state, State.RUNNING)
        self.assertNoResult(stopping)
        self.assertEqual(
            {name for name, state in self.states().items() if state != State.RUNNING}, {slow}
        )
        self.assertEqual(self.spawns().count(slow), 1)

    def test_ownRestartPending(self) -> None:
        """
        A waiting container a client started, whose run then crashed with
        its policy's restart pending: its batch does not start it too.
        """
        crashIndex = 5 * BATCH  # alone in the sixth batch
        names = self.closedDaemon(crashIndex + 1, commands={crashIndex: ("exit", "1")})
        self.openSecond()
        crashing = names[crashIndex]
        self.settled(self.second.start(crashing))
        self.turn()
        record = self.second._records[crashing]
        self.assertEqual(record.state, State.RESTARTING)
        self.assertIsNotNone(record.pendingRestart)
        self.assertNotIn(names[crashIndex - 1], self.spawns())  # the fifth batch is to come
        self.settled(self.second._comeback.done)
        self.assertEqual(self.spawns().count(crashing), 1)
