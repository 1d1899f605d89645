"""
When the engine's event stream opens again, what the engine holds compared
with what the events said: the events an engine restart lost are told
(L{Reconciler}).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from pycm.backends.docker.containers import EngineView
from pycm.backends.docker.engine import EngineError
from pycm.backends.docker.events import EngineEvents
from pycm.backends.docker.interfaces import IDockerEngine
from pycm.backends.docker.journal import EventJournal
from pycm.backends.docker.translate import LIST_FILTERS, RESTART_POLICY_LABEL
from pycm.errors import PycmError
from pycm.model import Action, ContainerEvent, State
from pycm.timestamps import parseTime


class Reconciler:
    """
    Compares the engine's containers with the L{EngineView} each time the
    event stream (re)opens, and tells through the L{EventJournal} what an
    engine restart lost; learns the restart policies of containers this
    daemon has not seen yet (after a daemon restart), so their policy
    restarts are told as such.
    """

    log = Logger()

    def __init__(
        self,
        clock: Any,
        engine: IDockerEngine,
        view: EngineView,
        journal: EventJournal,
        inspect: Callable[[str, str], Deferred[dict[str, Any] | None]],
    ) -> None:
        """
        @param inspect: C{inspect(id, name)}: the engine's inspect of one of
            pycm's containers, None if it is gone (and not an error).
        """
        self.clock = clock
        self.engine = engine
        self.view = view
        self.journal = journal
        self.inspect = inspect

    def tell(self, name: str, action: str, when: float, exitCode: int | None = None) -> None:
        self.journal.tell(ContainerEvent(action, name, when, exitCode))

    @defer.inlineCallbacks
    def connected(self, reconnect: bool, events: EngineEvents | None = None) -> Any:
        """
        The event stream is (again) open: compare, and tell what was lost
        if C{reconnect}.

        The comparison is against one snapshot of what the events said,
        taken before the engine's list was asked for (the list is the
        engine's state at some moment after that); a container an event
        changes after the snapshot is left to that event.  Before
        comparing, C{events} (the stream) catches up with the engine's
        history up to the list's answer, so that no event the engine
        still has, about a change before the list, can come after this
        told the change (twice, or a destroy of a container the list did
        not have yet).  Podman keeps its history in a file, kept across
        restarts of its service, and the stream's replay tells all it
        lost: on Podman nothing is told here.
        """
        view = self.view
        remembered = view.signals.names()
        known = dict(view.known)
        try:
            _, summaries = yield self.engine.request(
                "GET", "/containers/json", {"all": True, "filters": LIST_FILTERS}
            )
        except (PycmError, EngineError, defer.CancelledError):
            # Unreachable again (the next connection compares again), or
            # the backend is closing.
            return
        current: dict[str, tuple[str, str]] = {}
        unknownPolicy: list[tuple[str, str]] = []
        for summary in summaries or ():
            names = summary.get("Names") or ["/"]
            name = names[0].lstrip("/")
            cid = str(summary.get("Id", ""))
            state = str(summary.get("State", ""))
            alive = state in ("running", "restarting", "paused")
            current[name] = (cid, "running" if alive else state)
            policy = (summary.get("Labels") or {}).get(RESTART_POLICY_LABEL)
            if policy:
                view.policies.setdefault(name, policy)
            elif name not in view.policies:
                unknownPolicy.append((cid, name))
            if name not in view.lastAction:
                view.lastAction[name] = Action.START if state == "running" else Action.DIE
        # What was sent to containers removed meanwhile, or restarted while
        # no daemon watched, no longer applies.
        view.signals.settle(
            remembered, {name: state == "running" for name, (_, state) in current.items()}
        )

        def untouched(name: str) -> bool:
            # No event has changed it since the snapshot.
            return view.known.get(name) == known.get(name)

        if reconnect and not self.engine.isPodman:
            if events is not None:
                yield self._catchUp(events)
            yield self._tellLost(known, current, untouched)
        for name in set(known) | set(current):
            if not untouched(name):
                continue
            if name in current:
                cid, state = current[name]
                view.known[name] = (cid, State.RUNNING if state == "running" else State.EXITED)
            else:
                view.known.pop(name, None)
        view.details.clear()
        if unknownPolicy:
            # Created before the policy label, by an older pycm.
            found = yield defer.gatherResults(
                [self.inspect(cid, name) for cid, name in unknownPolicy],
                consumeErrors=True,
            ).addErrback(lambda f: [])
            for data in found:
                if data is not None:
                    view.container(data)

    @defer.inlineCallbacks
    def _catchUp(self, events: EngineEvents) -> Any:
        """
        C{events} catches up with the engine's history up to the engine's
        time after the list's answer: C{SystemTime} of C{GET /info} asked
        then, in the engine's own clock (the daemon's may be behind or
        ahead of a remote engine's; an HTTP C{Date} is truncated to the
        second, before the answer; the last event may be long before it).
        Without it (or on L{EngineEvents.catchUpTimeout}) this compares
        with what the stream delivered, as before catching up existed.
        """
        try:
            _, info = yield self.engine.request("GET", "/info")
            until = parseTime(info["SystemTime"])
            if until is None:
                raise ValueError("SystemTime is null")
        except (PycmError, EngineError, defer.CancelledError) as e:
            self.log.info("no engine time to catch up with its events: {why}", why=str(e))
            return
        except (KeyError, TypeError, ValueError):
            self.log.info("no engine time to catch up with its events (no SystemTime)")
            return
        # To the microsecond below: the list was answered well before.
        yield events.catchUp(until)

    @defer.inlineCallbacks
    def _tellLost(
        self,
        known: dict[str, tuple[str, str]],
        current: dict[str, tuple[str, str]],
        untouched: Callable[[str], bool],
    ) -> Any:
        """Tell the events between C{known} (the events') and C{current} (the engine's)."""
        stopped = [
            (name, cid)
            for name, (cid, state) in known.items()
            if state == State.RUNNING
            and current.get(name, ("", ""))[0] == cid
            and current[name][1] != "running"
        ]
        found = yield defer.gatherResults(
            [self.inspect(cid, name) for name, cid in stopped],
            consumeErrors=True,
        ).addErrback(lambda f: [None] * len(stopped))
        codes = {
            name: self.view.container(data).exitCode if data is not None else None
            for (name, _), data in zip(stopped, found, strict=True)
        }
        now = self.clock.seconds()
        for name, (cid, state) in known.items():
            if not untouched(name):
                continue
            now_ = current.get(name)
            if now_ is None or now_[0] != cid:
                if state == State.RUNNING:
                    self.tell(name, Action.DIE, now, None)
                self.tell(name, Action.DESTROY, now)
            elif name in codes:
                self.tell(name, Action.DIE, now, codes[name])
        for name, (cid, state) in current.items():
            if not untouched(name):
                continue
            before = known.get(name)
            if before is None or before[0] != cid:
                self.tell(name, Action.CREATE, now)
                if state == "running":
                    self.tell(name, Action.START, now)
            elif before[1] != State.RUNNING and state == "running":
                self.tell(name, Action.START, now)
