"""
The container lifecycle as one table: which event takes a container from
which state to which, the flags the move sets, and what follows (events
emitted, waiters woken, log followers ended).  The supervisor changes a
container's state and flags only through L{Lifecycle}: L{Lifecycle.move}
applies the table (a move it does not allow raises L{IllegalTransition});
its other methods record a client's or the daemon's intent before a move.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import attrs

from pycm.backends.supervisor.restartpolicy import flagsReadAtOpen
from pycm.backends.supervisor.watching import endFollowers, wake
from pycm.model import Action, State

if TYPE_CHECKING:
    from pycm.backends.supervisor.records import Record

#: Not a contract state: the container is forgotten.  Nothing leaves it.
REMOVED = "removed"

#: Every state of the lifecycle.
STATES = (*State.ALL, REMOVED)


class Event:
    """What happens to a container: the names of the table's events."""

    #: A run started (a client start or restart, or the daemon bringing
    #: the container back at open).
    SPAWNED = "spawned"
    #: An automatic restart's run started.
    RESPAWNED = "respawned"
    #: A run could not be started.
    SPAWN_FAILED = "spawn-failed"
    #: The stop signal was sent (a client stop, or the daemon's shutdown).
    STOP_SIGNALLED = "stop-signalled"
    #: The run ended; nothing restarts it.
    EXITED = "exited"
    #: The run ended after a client stop (which sent the stop signal).
    STOPPED = "stopped"
    #: The run ended and the restart policy (or C{--health-on-failure=restart},
    #: which stopped it) restarts it after a delay.
    EXITED_TO_RESTART = "exited-to-restart"
    #: A client stop while the restart was delayed: there is none.
    RESTART_STOPPED = "restart-stopped"
    #: The delayed restart is dropped (rm --force, the daemon's shutdown, a
    #: daemon that died while it waited).
    RESTART_DROPPED = "restart-dropped"
    #: At open: the container comes back, after the batches before its own
    #: (L{pycm.backends.supervisor.comeback}).
    QUEUED_AT_OPEN = "queued-at-open"
    #: At open: a dead daemon's run was found and stopped.
    RECLAIMED = "reclaimed"
    #: At open: a dead daemon's run was gone.
    LOST = "lost"
    #: The container is removed.
    REMOVED = "removed"


class Effect:
    """What follows a move: each transition lists its effects in order."""

    #: The record's change is saved (or waits to be: a full disk).
    SAVE = "save"
    #: Saved only if a dead daemon's successor would act on it
    #: (L{pycm.backends.supervisor.restartpolicy.flagsReadAtOpen}); else
    #: it is saved with the next change that is.
    SAVE_IF_READ_AT_OPEN = "save-if-read-at-open"
    EMIT_START = "emit-start"
    EMIT_RESTART = "emit-restart"
    #: C{die}, with the exit code (None: no run, or no status).
    EMIT_DIE = "emit-die"
    EMIT_STOP = "emit-stop"
    EMIT_DESTROY = "emit-destroy"
    #: Waiters for C{running} fire.
    WAKE_STARTED = "wake-started"
    #: Waiters for C{not-running} and C{next-exit}, and stops, fire.
    WAKE_EXITED = "wake-exited"
    #: Every waiter fires (C{removed}) or fails (L{pycm.errors.NotFound};
    #: C{healthy}: L{pycm.errors.BackendError}).
    WAKE_REMOVED = "wake-removed"
    #: A pending restart is dropped: waiters for C{healthy} fail.
    WAKE_ENDED = "wake-ended"
    #: Log followers end.
    END_FOLLOWERS = "end-followers"


class Flag:
    """
    The record's flags that the lifecycle sets (L{Record}'s field names;
    C{manuallyStopped} and C{interrupted} are saved).
    """

    #: A client stopped it (stop, kill, rm --force); until a start.
    MANUALLY_STOPPED = "manuallyStopped"
    #: The daemon, not the container or a client, ended its last run.
    INTERRUPTED = "interrupted"
    #: A client stop waits for the run's exit (which emits C{stop}).
    STOP_REQUESTED = "stopRequested"
    #: C{rm --force} killed the run: its exit is not restarted.
    REMOVING = "removing"


#: Flags a move sets: (flag, value) pairs.
_Flags = tuple[tuple[str, bool], ...]


@attrs.frozen
class Transition:
    """Where an event takes a container from a state, and what follows."""

    source: str
    event: str
    target: str
    #: The effects, in the order they are done.
    effects: tuple[str, ...]
    #: The flags the move sets, before its effects: (flag, value) pairs.
    flags: _Flags = ()


_E = Effect
#: What may be started (again).
_STARTABLE = (State.CREATED, State.EXITED, State.DEAD, State.RESTARTING)
#: An automatic restart starts from C{restarting}; C{rm --force} can make
#: that C{exited} while the run is being started.
_RESTARTED = (State.RESTARTING, State.EXITED)
_ALIVE = (State.RUNNING, State.STOPPING)
_ENDED = (_E.SAVE, _E.EMIT_DIE, _E.WAKE_EXITED, _E.END_FOLLOWERS)
_F = Flag
#: A run starts: the last run's flags are cleared (not C{manuallyStopped}:
#: only a start a client or the daemon asked for clears that).
_NEW_RUN: _Flags = ((_F.INTERRUPTED, False), (_F.STOP_REQUESTED, False), (_F.REMOVING, False))
#: A run ends: a client stop waiting for it is over.
_RUN_ENDED: _Flags = ((_F.STOP_REQUESTED, False),)

#: (sources, event, target, effects, flags)
_ROWS: list[tuple[tuple[str, ...], str, str, tuple[str, ...], _Flags]] = [
    (
        _STARTABLE,
        Event.SPAWNED,
        State.RUNNING,
        (_E.SAVE, _E.EMIT_START, _E.WAKE_STARTED),
        _NEW_RUN,
    ),
    (
        _RESTARTED,
        Event.RESPAWNED,
        State.RUNNING,
        (_E.SAVE, _E.EMIT_START, _E.EMIT_RESTART, _E.WAKE_STARTED),
        _NEW_RUN,
    ),
    (_STARTABLE, Event.SPAWN_FAILED, State.DEAD, _ENDED, ()),
    ((State.RUNNING,), Event.STOP_SIGNALLED, State.STOPPING, (_E.SAVE_IF_READ_AT_OPEN,), ()),
    (_ALIVE, Event.EXITED, State.EXITED, _ENDED, _RUN_ENDED),
    (
        (State.STOPPING,),
        Event.STOPPED,
        State.EXITED,
        (_E.SAVE, _E.EMIT_DIE, _E.EMIT_STOP, _E.WAKE_EXITED, _E.END_FOLLOWERS),
        _RUN_ENDED,
    ),
    (
        # From stopping: --health-on-failure=restart stopped it.
        _ALIVE,
        Event.EXITED_TO_RESTART,
        State.RESTARTING,
        (_E.SAVE, _E.EMIT_DIE, _E.WAKE_EXITED),
        _RUN_ENDED,
    ),
    (
        (State.RESTARTING,),
        Event.RESTART_STOPPED,
        State.EXITED,
        (_E.SAVE, _E.EMIT_STOP, _E.END_FOLLOWERS, _E.WAKE_ENDED),
        ((_F.MANUALLY_STOPPED, True),),
    ),
    ((State.RESTARTING,), Event.RESTART_DROPPED, State.EXITED, (_E.SAVE, _E.WAKE_ENDED), ()),
    ((State.EXITED, State.DEAD), Event.QUEUED_AT_OPEN, State.RESTARTING, (_E.SAVE,), ()),
    (_ALIVE, Event.RECLAIMED, State.EXITED, (_E.SAVE, _E.EMIT_DIE), ()),
    (_ALIVE, Event.LOST, State.DEAD, (_E.SAVE, _E.EMIT_DIE), ()),
    (
        (State.CREATED, State.EXITED, State.DEAD),
        Event.REMOVED,
        REMOVED,
        (_E.EMIT_DESTROY, _E.END_FOLLOWERS, _E.WAKE_REMOVED),
        (),
    ),
]

#: The table: (state, event) -> transition.
TRANSITIONS: dict[tuple[str, str], Transition] = {
    (source, event): Transition(source, event, target, effects, flags)
    for sources, event, target, effects, flags in _ROWS
    for source in sources
}

_EMITTED = {
    _E.EMIT_START: Action.START,
    _E.EMIT_RESTART: Action.RESTART,
    _E.EMIT_DIE: Action.DIE,
    _E.EMIT_STOP: Action.STOP,
    _E.EMIT_DESTROY: Action.DESTROY,
}
_SAVE = _E.SAVE
_SAVE_IF_READ = _E.SAVE_IF_READ_AT_OPEN
_EMIT_DIE = _E.EMIT_DIE
_WOKEN = {
    _E.WAKE_STARTED: "start",
    _E.WAKE_EXITED: "exit",
    _E.WAKE_ENDED: "ended",
    _E.WAKE_REMOVED: "removed",
}


class IllegalTransition(Exception):
    """A move the table does not allow: a bug in the supervisor."""


#: Told of every move tried: the container's name and id, its state, the
#: event, and the transition (None: the table has none, and the move
#: raises L{IllegalTransition}).
TransitionWatcher = Callable[[str, str, str, str, "Transition | None"], None]


class Lifecycle:
    """
    Moves records through L{TRANSITIONS} and does what follows; records
    the intents that come before a move (the C{*Asked} methods, L{interrupt},
    L{dropRestart}).

    @param save: saves a record's change (or keeps it to write later).
    @param emit: emits an event: its action, the record, the exit code.
    """

    def __init__(
        self,
        save: Callable[[Record], None],
        emit: Callable[[str, Record, int | None], None],
    ) -> None:
        self._save = save
        self._emit = emit
        self._watchers: list[TransitionWatcher] = []

    def watch(self, watcher: TransitionWatcher) -> None:
        """Tell C{watcher} of every move tried from now on."""
        self._watchers.append(watcher)

    def move(self, record: Record, event: str, exitCode: int | None = None) -> None:
        """
        Move C{record} on C{event}: its state and the transition's flags
        are set, then its effects done in order (C{exitCode} goes with
        C{die}).

        @raise IllegalTransition: if the table has no such move.
        """
        source = REMOVED if record.removed else record.state
        transition = TRANSITIONS.get((source, event))
        if self._watchers:
            for watcher in list(self._watchers):
                watcher(record.name, record.id, source, event, transition)
        if transition is None:
            raise IllegalTransition(f"{record.name}: no {event!r} from {source!r}")
        for flag, value in transition.flags:
            if getattr(record, flag) != value:
                setattr(record, flag, value)
        if transition.target == REMOVED:
            record.removed = True
        else:
            record.state = transition.target
        for effect in transition.effects:
            if effect == _SAVE:
                self._save(record)
            elif effect == _SAVE_IF_READ:
                if flagsReadAtOpen(record):
                    self._save(record)
            elif effect in _EMITTED:
                self._emit(_EMITTED[effect], record, exitCode if effect == _EMIT_DIE else None)
            elif effect in _WOKEN:
                wake(record, _WOKEN[effect])
            else:
                endFollowers(record)

    # -- intents, recorded before a move ----------------------------------

    def startAsked(self, record: Record) -> None:
        """
        A client start, or the daemon bringing C{record} back at open: a
        client's stop no longer holds (even if the start fails).
        """
        record.manuallyStopped = False

    def stopAsked(self, record: Record) -> None:
        """
        A client stops C{record}'s run: its exit is the C{stopped} move,
        and the restart policy holds off until a start.
        """
        record.manuallyStopped = True
        record.stopRequested = True

    def killAsked(self, record: Record) -> None:
        """
        A client kills C{record}'s run (SIGKILL or the stop signal): the
        restart policy holds off until a start.  Saved at once.
        """
        record.manuallyStopped = True
        self._save(record)

    def removeAsked(self, record: Record) -> None:
        """
        C{rm --force} kills C{record}'s run: the restart policy holds off,
        its exit is not restarted.  The first time only: saved, and C{kill}
        emitted (the caller sends SIGKILL each time).
        """
        if not record.removing:
            record.removing = True
            record.manuallyStopped = True
            self._save(record)
            self._emit(Action.KILL, record, None)

    def interrupt(self, record: Record) -> None:
        """
        The daemon, not the container or a client, ends C{record}'s run (its
        shutdown, or a dead daemon's): interrupted until the next run.
        """
        record.interrupted = True

    def dropRestart(self, record: Record, byClient: bool) -> None:
        """
        Move C{record} from C{restarting} on L{Event.RESTART_DROPPED}: by a
        client (C{rm --force}, a client stop) or by the daemon (interrupted).
        """
        if byClient:
            record.manuallyStopped = True
        else:
            record.interrupted = True
        self.move(record, Event.RESTART_DROPPED)
