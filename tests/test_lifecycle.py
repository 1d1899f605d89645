"""
Tests for L{pycm.backends.supervisor.lifecycle}: the container lifecycle's
transition table, its invariants, L{Lifecycle.move} and the intents, and a
Hypothesis state machine checking that every move the supervisor makes is
one the table allows, and that the records' flags keep their meaning.
"""

from __future__ import annotations

import json
import re
import signal
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import attrs
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test
from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from pycm.backends.memory import MemoryBackend, MemoryRecordStore, SimulatedRuntime
from pycm.backends.supervisor.lifecycle import (
    REMOVED,
    STATES,
    TRANSITIONS,
    Effect,
    Event,
    Flag,
    IllegalTransition,
    Lifecycle,
    Transition,
)
from pycm.backends.supervisor.records import Record
from pycm.backends.supervisor.restartpolicy import flagsReadAtOpen
from pycm.errors import BackendError, Conflict, NotFound, Unavailable
from pycm.interfaces import IRun, IRunObserver
from pycm.model import Action, Container, ContainerSpec, RestartPolicy, State
from pycm.testing import advanceClock


def _events() -> list[str]:
    return [v for k, v in vars(Event).items() if k.isupper()]


def _record(state: str = State.CREATED) -> Record:
    return Record(
        name="web", id="1", backend="memory", image="memory", command=(), created=0.0,
        state=state,
    )  # fmt: skip


class TransitionTableTests(SynchronousTestCase):
    """The invariants of the table itself."""

    def test_statesAndEvents(self) -> None:
        """
        Every source and target is a lifecycle state, every event is one
        of L{Event}'s, and every contract state is in the table.
        """
        for (source, event), transition in TRANSITIONS.items():
            self.assertEqual((transition.source, transition.event), (source, event))
            self.assertIn(source, STATES)
            self.assertIn(transition.target, STATES)
            self.assertIn(event, _events())
        used = {s for s, _ in TRANSITIONS} | {t.target for t in TRANSITIONS.values()}
        self.assertEqual(used, set(STATES))
        self.assertEqual({e for _, e in TRANSITIONS}, set(_events()))

    def test_nothingLeavesRemoved(self) -> None:
        """No transition starts from C{removed}."""
        self.assertEqual([k for k in TRANSITIONS if k[0] == REMOVED], [])

    def test_removedWithoutRun(self) -> None:
        """Only a container without a run (nor a pending restart) is removed."""
        sources = {s for (s, e) in TRANSITIONS if e == Event.REMOVED}
        self.assertEqual(sources, {State.CREATED, State.EXITED, State.DEAD})

    def test_onlyAnExitRestarts(self) -> None:
        """
        C{restarting} is entered only by a running container's exit that
        its restart policy restarts, a stopping one's that
        C{--health-on-failure=restart} stopped, or, when the daemon opens,
        by an ended one waiting for its batch to come back.
        """
        into = [t for t in TRANSITIONS.values() if t.target == State.RESTARTING]
        self.assertEqual([(t.source, t.event) for t in into],
                         [(State.RUNNING, Event.EXITED_TO_RESTART),
                          (State.STOPPING, Event.EXITED_TO_RESTART),
                          (State.EXITED, Event.QUEUED_AT_OPEN),
                          (State.DEAD, Event.QUEUED_AT_OPEN)])  # fmt: skip

    def test_restartingIsLeft(self) -> None:
        """
        From C{restarting}: the restart's run, its failure, a client stop,
        or the restart dropped; nothing else.
        """
        events = {e for (s, e) in TRANSITIONS if s == State.RESTARTING}
        self.assertEqual(
            events,
            {Event.SPAWNED, Event.RESPAWNED, Event.SPAWN_FAILED, Event.RESTART_STOPPED,
             Event.RESTART_DROPPED},
        )  # fmt: skip

    def test_reachable(self) -> None:
        """
        Every state is reachable from C{created}, and C{removed} from
        every state.
        """
        edges: dict[str, set[str]] = {s: set() for s in STATES}
        for (source, _), transition in TRANSITIONS.items():
            edges[source].add(transition.target)

        def closure(start: str) -> set[str]:
            seen, todo = {start}, [start]
            while todo:
                for target in edges[todo.pop()] - seen:
                    seen.add(target)
                    todo.append(target)
            return seen

        self.assertEqual(closure(State.CREATED), set(STATES))
        for state in STATES:
            self.assertIn(REMOVED, closure(state), state)

    def test_savedBeforeAnnounced(self) -> None:
        """
        Every move but the removal saves first (the stop signal's, only
        where it is read at open: it emits nothing), and every event is
        emitted before any waiter fires.
        """
        for transition in TRANSITIONS.values():
            effects = list(transition.effects)
            if transition.event == Event.REMOVED:
                self.assertNotIn(Effect.SAVE, effects)
            elif transition.event == Event.STOP_SIGNALLED:
                self.assertEqual(effects, [Effect.SAVE_IF_READ_AT_OPEN], transition)
            else:
                self.assertEqual(effects[0], Effect.SAVE, transition)
            emits = [i for i, e in enumerate(effects) if e.startswith("emit-")]
            wakes = [i for i, e in enumerate(effects) if e.startswith("wake-")]
            if emits and wakes:
                self.assertLess(max(emits), min(wakes), transition)

    def test_endOfRunEmitsDie(self) -> None:
        """
        Every move out of a run (C{running} or C{stopping}) to a state
        without one emits C{die} once; a failed start does too.
        """
        for transition in TRANSITIONS.values():
            ends = transition.source in State.ALIVE and transition.target not in State.ALIVE
            if ends or transition.event == Event.SPAWN_FAILED:
                self.assertEqual(transition.effects.count(Effect.EMIT_DIE), 1, transition)
            else:
                self.assertNotIn(Effect.EMIT_DIE, transition.effects, transition)

    def test_followersGoOnAcrossRestart(self) -> None:
        """
        Log followers end when a container stops for good, not when it
        waits to be restarted.
        """
        for transition in TRANSITIONS.values():
            if transition.target == State.RESTARTING:
                self.assertNotIn(Effect.END_FOLLOWERS, transition.effects)
            if transition.event in (Event.EXITED, Event.STOPPED, Event.SPAWN_FAILED,
                                    Event.RESTART_STOPPED, Event.REMOVED):  # fmt: skip
                self.assertIn(Effect.END_FOLLOWERS, transition.effects)

    def test_stopAnnounced(self) -> None:
        """Only a client stop's end emits C{stop}."""
        stops = {t.event for t in TRANSITIONS.values() if Effect.EMIT_STOP in t.effects}
        self.assertEqual(stops, {Event.STOPPED, Event.RESTART_STOPPED})

    def test_flags(self) -> None:
        """
        A run's start clears its last run's flags but C{manuallyStopped}
        (only a start asked for clears that); every end of a run clears
        C{stopRequested}; a client stop of a delayed restart sets
        C{manuallyStopped}; no other move sets a flag.
        """
        names = {v for k, v in vars(Flag).items() if k.isupper()}
        cleared = {(Flag.INTERRUPTED, False), (Flag.STOP_REQUESTED, False), (Flag.REMOVING, False)}
        expected = {
            Event.SPAWNED: cleared,
            Event.RESPAWNED: cleared,
            Event.EXITED: {(Flag.STOP_REQUESTED, False)},
            Event.STOPPED: {(Flag.STOP_REQUESTED, False)},
            Event.EXITED_TO_RESTART: {(Flag.STOP_REQUESTED, False)},
            Event.RESTART_STOPPED: {(Flag.MANUALLY_STOPPED, True)},
        }
        for transition in TRANSITIONS.values():
            self.assertEqual(
                set(transition.flags), expected.get(transition.event, set()), transition
            )
            for flag, _ in transition.flags:
                self.assertIn(flag, names)
                self.assertIn(flag, attrs.fields_dict(Record))

    def test_persistedFlags(self) -> None:
        """
        C{manuallyStopped} and C{interrupted} are saved under their own
        names, and a record saved with them loads them unchanged.
        """
        persisted = (Flag.MANUALLY_STOPPED, Flag.INTERRUPTED)
        self.assertEqual(persisted, ("manuallyStopped", "interrupted"))
        data = _record(State.EXITED).toDict()
        self.assertEqual((data["manuallyStopped"], data["interrupted"]), (False, False))
        data.update(manuallyStopped=True, interrupted=True)
        loaded = Record.fromDict(json.loads(json.dumps(data)))
        self.assertEqual((loaded.manuallyStopped, loaded.interrupted), (True, True))
        self.assertNotIn(Flag.STOP_REQUESTED, data)
        self.assertNotIn(Flag.REMOVING, data)


class LifecycleMoveTests(SynchronousTestCase):
    """L{Lifecycle.move}."""

    def setUp(self) -> None:
        self.done: list[Any] = []
        self.lifecycle = Lifecycle(
            lambda record: self.done.append(("save", record.state)),
            lambda action, record, code: self.done.append((action, code)),
        )
        self.seen: list[Any] = []
        self.lifecycle.watch(lambda *args: self.seen.append(args))

    def test_move(self) -> None:
        """
        A move sets the state, then does the effects in order (the exit
        code goes with C{die} only), and tells the watchers.
        """
        record = _record(State.STOPPING)
        self.lifecycle.move(record, Event.STOPPED, 3)
        self.assertEqual(record.state, State.EXITED)
        self.assertEqual(
            self.done, [("save", State.EXITED), (Action.DIE, 3), (Action.STOP, None)]
        )
        transition = TRANSITIONS[State.STOPPING, Event.STOPPED]
        self.assertEqual(self.seen, [("web", "1", State.STOPPING, Event.STOPPED, transition)])

    def test_wakes(self) -> None:
        """A move's wake effect fires the waiters it satisfies."""
        record = _record(State.RUNNING)
        d: Deferred[Any] = Deferred()
        record.exitWaiters.append(d)
        self.lifecycle.move(record, Event.EXITED, 0)
        self.assertEqual(self.successResultOf(d).state, State.EXITED)

    def test_removed(self) -> None:
        """
        The removal marks the record removed (its contract state stays),
        and nothing moves it after.
        """
        record = _record(State.EXITED)
        self.lifecycle.move(record, Event.REMOVED)
        self.assertTrue(record.removed)
        self.assertEqual(record.state, State.EXITED)
        self.assertEqual(self.done, [(Action.DESTROY, None)])
        self.assertRaises(IllegalTransition, self.lifecycle.move, record, Event.SPAWNED)

    def test_flagsBeforeEffects(self) -> None:
        """
        A move sets its flags before its effects: a client stop of a
        delayed restart is saved as C{manuallyStopped}.
        """
        saved: list[bool] = []
        lifecycle = Lifecycle(lambda r: saved.append(r.manuallyStopped), lambda *a: None)
        record = _record(State.RESTARTING)
        lifecycle.move(record, Event.RESTART_STOPPED)
        self.assertEqual((record.state, record.manuallyStopped), (State.EXITED, True))
        self.assertEqual(saved, [True])

    def test_startClears(self) -> None:
        """
        A run's start clears C{interrupted}, C{stopRequested} and
        C{removing}; C{manuallyStopped} stays (L{Lifecycle.startAsked}
        clears it); an exit clears C{stopRequested} only.
        """
        record = _record(State.EXITED)
        record.manuallyStopped = record.interrupted = True
        record.stopRequested = record.removing = True
        self.lifecycle.move(record, Event.SPAWNED)
        flags = (record.manuallyStopped, record.interrupted, record.stopRequested, record.removing)
        self.assertEqual(flags, (True, False, False, False))
        record.stopRequested = record.removing = record.interrupted = True
        self.lifecycle.move(record, Event.EXITED, 0)
        flags = (record.manuallyStopped, record.interrupted, record.stopRequested, record.removing)
        self.assertEqual(flags, (True, True, False, True))

    def test_illegal(self) -> None:
        """
        A move the table does not allow raises L{IllegalTransition}, does
        nothing, and the watchers hear of it with no transition.
        """
        record = _record(State.CREATED)
        record.stopRequested = True
        self.assertRaises(IllegalTransition, self.lifecycle.move, record, Event.EXITED)
        self.assertEqual(record.state, State.CREATED)
        self.assertTrue(record.stopRequested)
        self.assertEqual(self.done, [])
        self.assertEqual(self.seen, [("web", "1", State.CREATED, Event.EXITED, None)])


class LifecycleIntentTests(SynchronousTestCase):
    """The intents L{Lifecycle} records before a move."""

    def setUp(self) -> None:
        self.done: list[Any] = []
        self.lifecycle = Lifecycle(
            lambda record: self.done.append(("save", record.manuallyStopped)),
            lambda action, record, code: self.done.append((action, code)),
        )

    def test_startAsked(self) -> None:
        """A start asked for clears C{manuallyStopped}, nothing else."""
        record = _record(State.EXITED)
        record.manuallyStopped = record.interrupted = True
        self.lifecycle.startAsked(record)
        self.assertEqual((record.manuallyStopped, record.interrupted), (False, True))
        self.assertEqual((record.state, self.done), (State.EXITED, []))

    def test_stopAsked(self) -> None:
        """A client stop sets C{manuallyStopped} and C{stopRequested}."""
        record = _record(State.RUNNING)
        self.lifecycle.stopAsked(record)
        self.assertEqual((record.manuallyStopped, record.stopRequested), (True, True))
        self.assertEqual((record.state, self.done), (State.RUNNING, []))

    def test_killAsked(self) -> None:
        """A client kill sets C{manuallyStopped}, saved at once."""
        record = _record(State.RUNNING)
        self.lifecycle.killAsked(record)
        self.assertEqual((record.manuallyStopped, record.stopRequested), (True, False))
        self.assertEqual(self.done, [("save", True)])

    def test_removeAsked(self) -> None:
        """
        C{rm --force} of a run sets C{removing} and C{manuallyStopped},
        saves and emits C{kill}, the first time only.
        """
        record = _record(State.RUNNING)
        self.lifecycle.removeAsked(record)
        self.lifecycle.removeAsked(record)
        self.assertEqual((record.manuallyStopped, record.removing), (True, True))
        self.assertEqual(self.done, [("save", True), (Action.KILL, None)])

    def test_interrupt(self) -> None:
        """The daemon ending a run sets C{interrupted}, nothing else."""
        record = _record(State.RUNNING)
        self.lifecycle.interrupt(record)
        self.assertEqual((record.interrupted, record.manuallyStopped), (True, False))
        self.assertEqual(self.done, [])

    def test_dropRestart(self) -> None:
        """
        A delayed restart dropped by a client is C{manuallyStopped}, by
        the daemon C{interrupted}; both saved as C{exited}.
        """
        byClient, byDaemon = _record(State.RESTARTING), _record(State.RESTARTING)
        self.lifecycle.dropRestart(byClient, byClient=True)
        self.lifecycle.dropRestart(byDaemon, byClient=False)
        self.assertEqual((byClient.manuallyStopped, byClient.interrupted), (True, False))
        self.assertEqual((byDaemon.manuallyStopped, byDaemon.interrupted), (False, True))
        self.assertEqual((byClient.state, byDaemon.state), (State.EXITED, State.EXITED))
        self.assertEqual(self.done, [("save", True), ("save", False)])

    def test_onlyTheLifecycleSetsFlags(self) -> None:
        """
        Outside the lifecycle, the supervisor's modules never set a flag:
        they ask the lifecycle.
        """
        import pycm.backends.supervisor as package

        names = "|".join(v for k, v in vars(Flag).items() if k.isupper())
        assignment = re.compile(rf"\.({names})\s*=[^=]")
        here = Path(package.__file__).parent
        setters = [
            f"{path.name}:{number}"
            for path in sorted(here.glob("*.py"))
            if path.name != "lifecycle.py"
            for number, line in enumerate(path.read_text().splitlines(), 1)
            if assignment.search(line)
        ]
        self.assertEqual(setters, [])


class _ChancyRuntime(SimulatedRuntime):
    """
    A simulated runtime whose spawns can be made to fail, or to fire only
    a moment after the run started (so that a run can exit, or be removed,
    before its start is told).
    """

    failing = False
    slow = False

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock)
        #: The slow spawns not told yet.
        self.telling: list[IDelayedCall] = []

    def spawn(
        self, container: Container, observer: IRunObserver, runId: str | None = None
    ) -> Deferred[IRun]:
        if self.failing:
            return fail(BackendError("cannot start: the machine says no"))
        d = super().spawn(container, observer, runId)
        if not self.slow:
            return d
        later: Deferred[IRun] = Deferred()

        def tell(result: Any) -> None:
            self.telling = [c for c in self.telling if c.active()]
            self.telling.append(self._clock.callLater(0.01, later.callback, result))

        d.addCallbacks(tell, tell)
        return later

    def forgetSpawns(self) -> None:
        """A dead daemon hears of no more starts."""
        for call in self.telling:
            if call.active():
                call.cancel()
        self.telling = []


@implementer(IRunObserver)
class _Nobody:
    """Hears the runs of a daemon that died."""

    def output(self, stream: str, lines: list[bytes]) -> None:
        pass

    def exited(self, exitCode: int | None) -> None:
        pass


_COMMANDS = [
    ("sleep", "infinity"), ("exit", "0"), ("exit", "3"), ("sleep", "2"), ("ignore-term",),
    ("unstartable",), ("echo", "hi"),
]  # fmt: skip
_POLICIES = ["no", "on-failure:2", "always", "unless-stopped"]


class LifecycleMachine(RuleBasedStateMachine):
    """
    Random operations, clock advances and daemon restarts (clean or not) on
    a memory backend: every move the supervisor makes is one the table
    allows, a container's state changes only by those moves, nothing moves
    after its removal, and an exit the restart policy restarts goes to
    C{restarting}.  The flags keep their meaning: C{manuallyStopped} is set
    by a client's stop, kill or C{rm --force} until the next start asked
    for (across daemon restarts), a daemon opening brings back no container
    a client stopped (but C{always} ones), C{stopRequested} only while a
    stop waits for the exit, no run is C{interrupted}.
    """

    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock()
        self.store = MemoryRecordStore()
        self.runtime = _ChancyRuntime(self.clock)
        #: Every move tried: (name, id, source, event, transition).
        self.moves: list[tuple[str, str, str, str, Transition | None]] = []
        #: The state each container id was last moved to.
        self.expected: dict[str, str] = {}
        self.removedIds: set[str] = set()
        self.problems: list[Any] = []
        #: The ids of the containers a client stopped since their last
        #: start asked for: the model of C{manuallyStopped}.
        self.stoppedByClient: set[str] = set()
        self.backend = self._open()

    def _open(self) -> MemoryBackend:
        for text in self.store.records.values():
            data = json.loads(text)
            self.expected[data["id"]] = data["state"]
        backend = MemoryBackend(self.clock, runtime=self.runtime, recordStore=self.store)
        backend.lifecycle.watch(partial(self._moved, backend))
        self._hearIntents(backend)
        self.backend = backend
        self._forgetUnsavedStops()
        stopped = self._stoppedInStore()
        opening = len(self.moves)
        self._settle(backend.open())
        for name, id, _, event, _ in self.moves[opening:]:
            if event == Event.SPAWNED and id in stopped:
                self.problems.append(("brought back though a client stopped it", name))
        return backend

    def _forgetUnsavedStops(self) -> None:
        """
        A stop's intent is saved with the exit where no successor reads it
        (C{flagsReadAtOpen}): a record a daemon left alive with it unsaved
        opens without it.
        """
        for text in self.store.records.values():
            record = Record.fromDict(json.loads(text))
            if record.state in State.ALIVE and not flagsReadAtOpen(record):
                if not record.manuallyStopped:
                    self.stoppedByClient.discard(record.id)

    def _stoppedInStore(self) -> set[str]:
        """
        The ids of the saved containers a client stopped that the next
        daemon must not bring back (all but C{always} ones).
        """
        stopped = set()
        for text in self.store.records.values():
            data = json.loads(text)
            if data["manuallyStopped"] and not data["restartPolicy"].startswith("always"):
                stopped.add(data["id"])
        return stopped

    def _hearIntents(self, backend: MemoryBackend) -> None:
        """Keep L{stoppedByClient} from the intents C{backend} records."""
        lifecycle = backend.lifecycle

        def heard(method: Callable[..., None], stops: bool | None) -> Callable[..., None]:
            def intent(record: Record, **byClient: bool) -> None:
                if backend is self.backend:
                    if byClient["byClient"] if stops is None else stops:
                        self.stoppedByClient.add(record.id)
                    else:
                        self.stoppedByClient.discard(record.id)
                method(record, **byClient)

            return intent

        lifecycle.startAsked = heard(lifecycle.startAsked, False)  # type: ignore[method-assign]
        lifecycle.stopAsked = heard(lifecycle.stopAsked, True)  # type: ignore[method-assign]
        lifecycle.killAsked = heard(lifecycle.killAsked, True)  # type: ignore[method-assign]
        lifecycle.removeAsked = heard(lifecycle.removeAsked, True)  # type: ignore[method-assign]
        lifecycle.dropRestart = heard(lifecycle.dropRestart, None)  # type: ignore[method-assign]

    def _settle(self, d: Deferred[Any]) -> None:
        for _ in range(10):
            if d.called:
                break
            advanceClock(self.clock, 20)
        assert d.called, d

    def _moved(
        self,
        backend: MemoryBackend,
        name: str,
        id: str,
        source: str,
        event: str,
        transition: Transition | None,
    ) -> None:
        self.moves.append((name, id, source, event, transition))
        if backend is not self.backend:
            self.problems.append(("a dead daemon moved", name, source, event))
        if transition is None:
            self.problems.append(("illegal", name, source, event))
            return
        if id in self.removedIds:
            self.problems.append(("moved after removal", name, event))
        if self.expected.get(id, State.CREATED) != source:
            self.problems.append(("state changed outside the table", name, source, event))
        self.expected[id] = transition.target
        if event == Event.RESTART_STOPPED:
            self.stoppedByClient.add(id)
        if transition.target == REMOVED:
            self.removedIds.add(id)
        if event in (Event.EXITED, Event.STOPPED, Event.EXITED_TO_RESTART):
            self._checkPolicy(name, transition.target)

    def _checkPolicy(self, name: str, target: str) -> None:
        """An exit goes to C{restarting} if, and only if, the policy says so."""
        record = self.backend._records[name]
        policy = record.restartPolicy.name
        if record.manuallyStopped or record.removing or self.backend._runs.closing:
            restarts: bool | None = False
        elif policy in ("always", "unless-stopped"):
            restarts = True
        elif policy == "no":
            restarts = False
        else:
            restarts = None  # on-failure: the exit code and the count decide
        if restarts is not None and restarts != (target == State.RESTARTING):
            self.problems.append(("policy not followed", name, policy, target))

    def _track(self, d: Deferred[Any]) -> None:
        def check(f: Any) -> None:
            if not f.check(NotFound, Conflict, BackendError, Unavailable):
                self.problems.append(f)

        d.addErrback(check)

    names = st.sampled_from(["a", "b"])

    @rule(
        name=names,
        command=st.sampled_from(_COMMANDS),
        policy=st.sampled_from(_POLICIES),
        start=st.booleans(),
    )
    def create(self, name: str, command: tuple[str, ...], policy: str, start: bool) -> None:
        spec = ContainerSpec(
            name, command=command, restartPolicy=RestartPolicy.parse(policy), stopTimeout=3
        )
        d = self.backend.create(spec)
        if start:
            d.addCallback(lambda _: self.backend.start(name))
        self._track(d)

    @rule(name=names)
    def start(self, name: str) -> None:
        self._track(self.backend.start(name))

    @rule(name=names, timeout=st.sampled_from([None, 0, 1]))
    def stop(self, name: str, timeout: float | None) -> None:
        self._track(self.backend.stop(name, timeout))

    @rule(name=names)
    def restart(self, name: str) -> None:
        self._track(self.backend.restart(name, 1))

    @rule(name=names, signum=st.sampled_from([signal.SIGTERM, signal.SIGKILL, signal.SIGUSR1]))
    def kill(self, name: str, signum: int) -> None:
        self._track(self.backend.kill(name, signum))

    @rule(name=names, force=st.booleans())
    def remove(self, name: str, force: bool) -> None:
        self._track(self.backend.remove(name, force))

    @rule(seconds=st.sampled_from([0, 0.05, 0.5, 3, 20]))
    def advance(self, seconds: float) -> None:
        advanceClock(self.clock, seconds)

    @rule()
    def restartDaemon(self) -> None:
        """The daemon shuts down, and a new one opens on the same records."""
        self._settle(self.backend.close())
        self._open()

    @rule(failing=st.booleans(), slow=st.booleans())
    def spawns(self, failing: bool, slow: bool) -> None:
        """Starts fail from now on, or not; they are told late, or not."""
        self.runtime.failing = failing
        self.runtime.slow = slow

    @rule(reboot=st.booleans())
    def crashDaemon(self, reboot: bool) -> None:
        """
        The daemon dies (its timers with it, its runs left running, or
        gone too if the machine rebooted), and a new one opens on the same
        records.
        """
        old = self.backend
        old._runs.closing = True
        self.runtime.forgetSpawns()
        for record in old._records.values():
            for call in (record.pendingRestart, record.killTimer):
                if call is not None and call.active():
                    call.cancel()
        if reboot:
            for run in list(self.runtime.runs.values()):
                run.observer = _Nobody()
                run.exit(None)
        self._open()

    @invariant()
    def legal(self) -> None:
        assert not self.problems, self.problems

    @invariant()
    def statesFollowTheTable(self) -> None:
        for record in self.backend._records.values():
            assert record.state == self.expected.get(record.id, State.CREATED), record

    @invariant()
    def flagsKeepTheirMeaning(self) -> None:
        for record in self.backend._records.values():
            assert record.manuallyStopped == (record.id in self.stoppedByClient), record
            assert not record.stopRequested or record.state == State.STOPPING, record
            assert not record.interrupted or record.state not in State.ALIVE, record
            if record.state == State.RESTARTING:
                assert not (record.manuallyStopped or record.removing), record

    def teardown(self) -> None:
        self.runtime.slow = False
        self._settle(self.backend.close())
        assert not self.problems, self.problems


class LifecycleStateMachineTests(SynchronousTestCase):
    """Runs L{LifecycleMachine}."""

    def test_stateMachine(self) -> None:
        """
        Every move the supervisor makes is one the lifecycle table allows,
        and the flags keep their meaning.
        """
        run_state_machine_as_test(
            LifecycleMachine,
            settings=settings(max_examples=120, stateful_step_count=40, deadline=None),
        )
