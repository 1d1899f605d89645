"""
The engine's events about pycm's containers, told as pycm's: a policy
restart as C{start} then C{restart}, the stop signal of a pycm stop not as
a C{kill}, an exit code as the contract has it (L{EventTeller}).
"""

from __future__ import annotations

from typing import Any

from pycm.backends.docker.containers import EngineView
from pycm.backends.docker.health import healthAction
from pycm.backends.docker.interfaces import IDockerEngine
from pycm.backends.docker.journal import EventJournal
from pycm.backends.docker.podman import PodmanEvents
from pycm.backends.docker.translate import (
    ACTION_ALIASES,
    ACTIONS,
    RESTART_POLICY_LABEL,
    isManaged,
    mapExitCode,
)
from pycm.errors import PycmError
from pycm.model import Action, ContainerEvent, State, parseSignal


class EventTeller:
    """
    Turns each engine event (the JSON of C{GET /events}) into a pycm
    L{ContainerEvent} told through the L{EventJournal}, noting in the
    L{EngineView} what it says.
    """

    def __init__(self, engine: IDockerEngine, view: EngineView, journal: EventJournal) -> None:
        """
        @param engine: the engine client; its C{isPodman} decides whether
            Podman's events are made Docker's (L{PodmanEvents}).
        """
        self.engine = engine
        self.view = view
        self.journal = journal
        self.podman = PodmanEvents(view, journal)

    def received(self, raw: dict[str, Any]) -> None:
        """Turn one engine event into a pycm event, and note what it says."""
        view, journal = self.view, self.journal
        action = str(raw.get("Action") or raw.get("status") or "")
        action = action.split(":", 1)[0]
        action = ACTION_ALIASES.get(action, action)
        actor = raw.get("Actor") or {}
        attributes = actor.get("Attributes") or {}
        name = str(attributes.get("name", ""))
        cid = str(actor.get("ID") or raw.get("id") or "")
        if not name or not isManaged(attributes):
            return
        if action == "health_status":
            status = healthAction(raw)
            view.details.pop(cid, None)
            return None if status is None else self._health(name, cid, status, raw)
        if action == "oom":
            # The kernel's OOM killer sent SIGKILL: the die that follows
            # (137) is -9, as inspect (OOMKilled) has it, and says so.
            view.oomKilled.add(name)
            nano = raw.get("timeNano")
            when = nano / 1e9 if isinstance(nano, int) else float(raw.get("time", 0))
            return journal.tell(ContainerEvent(Action.OOM, name, when))
        if action not in ACTIONS:
            return
        if action == Action.DESTROY and not view.firstDestroy(cid):
            return
        podman = self.engine.isPodman
        if podman and self.podman.dropped(action):
            return
        view.details.pop(cid, None)
        nano = raw.get("timeNano")
        when = nano / 1e9 if isinstance(nano, int) else float(raw.get("time", 0))
        exitCode = oomKilled = None
        if action in (Action.START, Action.DESTROY):
            # A new run starts its health again (C{starting}, untold).
            view.healthTold.pop(cid, None)
        if action == Action.START:
            view.signals.forget(name)
            previous = view.lastAction.get(name)
            view.known[name] = (cid, State.RUNNING)
            if not view.inFlight.starting(name):
                # Not a pycm start or restart: the engine's restart policy
                # (or a start by another client of the engine).
                # The label, for a start that comes before the daemon
                # learnt the policy (Podman restarts at once, with no
                # back-off, so one may come while it reconciles).
                policy = view.policies.get(name) or attributes.get(RESTART_POLICY_LABEL)
                automatic = policy != "no" if policy else previous == Action.DIE
                if automatic:
                    journal.tell(ContainerEvent(action, name, when))
                    action = Action.RESTART
        elif action == Action.CREATE:
            view.signals.forget(name)
            view.oomKilled.discard(name)
            view.known[name] = (cid, State.CREATED)
        elif action == Action.KILL:
            try:
                signum = parseSignal(str(attributes.get("signal", "9")))
            except PycmError:
                signum = 9
            view.signals.add(name, signum)
            if view.inFlight.stopping(name) and signum != 9:
                # The stop signal of a pycm stop: the contract's kill event
                # is only for a stop that had to escalate.
                return journal.note(name, "stop-signal")
        elif action == Action.DIE:
            try:
                code = int(attributes.get("exitCode", ""))
            except ValueError:
                code = None
            if podman:
                self.podman.beforeDie(name, code, when)
            oomKilled = True if name in view.oomKilled else None
            exitCode = mapExitCode(code, view.signals.get(name), bool(oomKilled))
            view.exited(name, cid, exitCode)
        elif action == Action.DESTROY:
            view.removed(name, cid)
        view.lastAction[name] = action
        journal.tell(ContainerEvent(action, name, when, exitCode, oomKilled=oomKilled))
        if podman:
            self.podman.after(name, action, when)
        if action in (Action.DESTROY, Action.START):
            view.justCreated.pop(name, None)
        if action == Action.DESTROY:
            view.lastAction.pop(name, None)
            view.policies.pop(name, None)

    def _health(self, name: str, cid: str, status: str, raw: dict[str, Any]) -> None:
        """
        A health event: told once per change of the container's health
        (dockerd tells only changes; Podman has told every check's).
        """
        view = self.view
        if view.healthTold.get(cid) == status:
            return
        view.healthTold[cid] = status
        nano = raw.get("timeNano")
        when = nano / 1e9 if isinstance(nano, int) else float(raw.get("time", 0))
        self.journal.tell(ContainerEvent(Action.HEALTH_STATUS, name, when, status=status))
