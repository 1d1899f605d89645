"""
The events between two snapshots of the swarm (L{eventsBetween}): per
task C{start} and C{die}, and for the services that changed without pycm
doing it C{create}, C{scale}, C{update} and C{destroy}.

The backend tells the events of its own operations itself; what pycm did
is in an L{OwnChanges}, marked before each request goes out, so that the
diff that shows its effect tells nothing of it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

import attrs

from pycm.backends.swarm.snapshot import ServiceView, Snapshot, TaskView
from pycm.model import Action, ContainerEvent

#: The error of a failed task whose process ran and exited non-zero.
_EXITED_ERROR = "task: non-zero exit"


def taskRan(task: TaskView) -> bool:
    """
    Did this task's process run?  True while it runs; of a task seen only
    once it ended, what its end says: C{complete} ran; C{failed} ran only
    if its process exited (not when its container could not start); a
    task shut down ran if it has an exit code other than 0 (a task shut
    down before its container started has 0, as has a process that exits
    0 on its stop signal: such a task, come and gone unseen, is missed).
    """
    if task.running or task.state == "complete":
        return True
    if task.exitCode is None or task.containerId is None:
        return False
    if task.state == "failed":
        return (task.error or "").startswith(_EXITED_ERROR)
    if task.ended:
        return task.exitCode != 0
    return False


def specDigest(service: ServiceView) -> str:
    """
    A digest of C{service}'s spec but its desired count: what changes
    with an update, and only with one (the manager raises the version on
    its own too, as a rolling update goes on).  A service read back from
    the journal has only its L{ServiceView.specDigest}.
    """
    if service.specDigest is not None:
        return service.specDigest
    plain = dict(service.spec)
    mode = plain.get("Mode")
    if isinstance(mode, dict) and isinstance(mode.get("Replicated"), dict):
        replicated = {k: v for k, v in mode["Replicated"].items() if k != "Replicas"}
        plain["Mode"] = dict(mode, Replicated=replicated)
    text = json.dumps(plain, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


#: Which mark of pycm's an event is of: C{("created", name)},
#: C{("removed", (name, id))} or C{("updated", (id, version))}.
MarkKey = tuple[str, Any]


@attrs.frozen
class OwnChanges:
    """
    What pycm itself did to the services, whose events the backend tells:
    the names of services it created (with their ids in C{createdIds} once
    the manager gave them), C{(name, service id)} of those it removed, and
    C{(service id, version)} of those it updated (from that version: an
    update names the version it changes, so the next version is pycm's,
    whoever else updates it after).

    Mark a change before its request goes out, drop the mark if it failed
    (L{without}); L{seenIn} drops the marks a snapshot shows done.
    """

    created: frozenset[str] = frozenset()
    removed: frozenset[tuple[str, str]] = frozenset()
    updated: frozenset[tuple[str, int]] = frozenset()
    createdIds: frozenset[tuple[str, str]] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.created or self.removed or self.updated)

    @classmethod
    def of(
        cls,
        created: Iterable[str] = (),
        removed: Iterable[tuple[str, str]] = (),
        updated: Iterable[tuple[str, int]] = (),
    ) -> OwnChanges:
        """The marks of these changes."""
        return cls(frozenset(created), frozenset(removed), frozenset(updated))

    def plus(self, other: OwnChanges) -> OwnChanges:
        """These marks and C{other}'s."""
        return OwnChanges(
            self.created | other.created,
            self.removed | other.removed,
            self.updated | other.updated,
            self.createdIds | other.createdIds,
        )

    def without(self, other: OwnChanges) -> OwnChanges:
        """These marks but C{other}'s (a name's id goes with its name)."""
        created = self.created - other.created
        return OwnChanges(
            created,
            self.removed - other.removed,
            self.updated - other.updated,
            frozenset(pair for pair in self.createdIds - other.createdIds if pair[0] in created),
        )

    def within(self, other: OwnChanges) -> OwnChanges:
        """These marks that C{other} has too (with the ids either knows)."""
        created = self.created & other.created
        ids = self.createdIds | other.createdIds
        return OwnChanges(
            created,
            self.removed & other.removed,
            self.updated & other.updated,
            frozenset(pair for pair in ids if pair[0] in created),
        )

    def keys(self) -> frozenset[MarkKey]:
        """Each mark's L{MarkKey}."""
        return frozenset(
            [("created", name) for name in self.created]
            + [("removed", pair) for pair in self.removed]
            + [("updated", pair) for pair in self.updated]
        )

    def createdId(self, name: str) -> str | None:
        """The id of the service pycm created as C{name}, if known."""
        return next((sid for mark, sid in self.createdIds if mark == name), None)

    def createdHere(self, name: str, sid: str) -> bool:
        """Is service C{sid}, named C{name}, one pycm is creating?"""
        return name in self.created and self.createdId(name) in (None, sid)

    def updatedBetween(self, sid: str, old: int, new: int) -> MarkKey | None:
        """The mark of pycm's version of C{sid} after C{old}, up to C{new} (None: none)."""
        for mark, since in sorted(self.updated):
            if mark == sid and old <= since < new:
                return ("updated", (mark, since))
        return None

    def removedHere(self, sid: str) -> MarkKey | None:
        """The mark of pycm's removal of service C{sid} (None: none)."""
        for name, mark in sorted(self.removed):
            if mark == sid:
                return ("removed", (name, mark))
        return None

    def seenIn(self, snapshot: Snapshot) -> OwnChanges:
        """
        The marks C{snapshot} does not show done yet: a creation not seen
        (nor removed by pycm since), a removal of a service still there,
        an update of a service still at its version or before.  A
        creation whose service has another id there is not done either:
        the journal decides whether its service is gone (L{without}).
        """
        byId = {service.id: service for service in snapshot.services.values()}
        gone = {name for name, sid in self.removed if sid not in byId}
        created = frozenset(
            name
            for name in self.created
            if name not in gone
            and not (
                name in snapshot.services and self.createdHere(name, snapshot.services[name].id)
            )
        )
        return OwnChanges(
            created,
            frozenset((name, sid) for name, sid in self.removed if sid in byId),
            frozenset(
                (sid, since)
                for sid, since in self.updated
                if sid in byId and byId[sid].version <= since
            ),
            frozenset(pair for pair in self.createdIds if pair[0] in created),
        )


@attrs.frozen
class OwnEvent:
    """An event a snapshot shows of pycm's own change C{mark} (the backend's to tell)."""

    mark: MarkKey
    event: ContainerEvent


@attrs.frozen
class _Timed:
    """An event with the engine's time of it, to sort a service's events."""

    time: float
    event: ContainerEvent | OwnEvent


def _time(engineTime: float, fallback: float) -> float:
    return engineTime if engineTime > 0 else fallback


def _lost(task: TaskView | None, snapshot: Snapshot) -> bool:
    """Does C{task} say it runs on a node the manager sees down?"""
    return task is not None and task.running and task.node in snapshot.downNodes


def _back(task: TaskView | None, snapshot: Snapshot) -> bool:
    """Does C{task}, lost before, run again, its node back (and meant to run)?"""
    return (
        task is not None
        and task.running
        and task.desiredState == "running"
        and not _lost(task, snapshot)
    )


def baselineAfter(old: Snapshot, new: Snapshot) -> Snapshot:
    """
    C{new} as the baseline of the next look's events: a task told dead
    as its node went down that comes back only to be shut down (the
    manager replaced it) is kept ended, so that it neither starts again
    nor dies twice.
    """
    services = dict(new.services)
    for name, service in new.services.items():
        before = old.services.get(name)
        if before is None or before.id != service.id:
            continue
        lost = {t.id for t in before.tasks if _lost(t, old)}
        if not lost:
            continue
        tasks = tuple(
            attrs.evolve(t, state="orphaned")
            if t.id in lost and t.running and not _lost(t, new) and not _back(t, new)
            else t
            for t in service.tasks
        )
        services[name] = attrs.evolve(service, tasks=tasks)
    return attrs.evolve(new, services=services)


def _taskEvents(
    name: str,
    before: TaskView | None,
    after: TaskView | None,
    old: Snapshot,
    new: Snapshot,
) -> list[_Timed]:
    """
    C{start} and C{die} of one task between two looks (None: not there).
    A task first seen ended is started at the time it ended: its start is
    not known, and a slot's next task starts after it anyway.  A task on a
    node gone down dies then (its exit code unknown), and starts again if
    it runs once its node is back.
    """
    now = new.time
    task = after or before
    assert task is not None
    if before is not None and before.ended:
        return []
    start = ContainerEvent(Action.START, name, now, node=task.node, task=task.id)
    if _lost(before, old):
        if after is not None and _back(after, new):
            when = _time(after.updated, now)
            return [_Timed(when, attrs.evolve(start, time=when))]
        return []
    ranBefore = before is not None and taskRan(before)
    if not (ranBefore or (after is not None and taskRan(after))):
        return []
    lostNow = _lost(after, new)
    endedNow = after is None or after.ended or lostNow
    endTime = now if after is None or lostNow else _time(after.updated, now)
    events: list[_Timed] = []
    if not ranBefore:
        started = _time(after.updated, now) if after is not None and not endedNow else endTime
        events.append(_Timed(started, attrs.evolve(start, time=started)))
    if endedNow:
        code = after.exitCode if after is not None and not lostNow else None
        die = ContainerEvent(Action.DIE, name, endTime, code, node=task.node, task=task.id)
        events.append(_Timed(endTime, die))
    return events


def _serviceEvents(
    before: ServiceView | None,
    after: ServiceView | None,
    own: OwnChanges,
    old: Snapshot,
    new: Snapshot,
) -> list[ContainerEvent | OwnEvent]:
    """The events of one service between two looks (None: not there)."""
    now = new.time
    service = after or before
    assert service is not None
    name = service.name
    first: list[ContainerEvent | OwnEvent] = []
    timed: list[_Timed] = []
    last: list[ContainerEvent | OwnEvent] = []
    if before is None and after is not None:
        create = ContainerEvent(Action.CREATE, name, _time(after.created, now))
        mine = own.createdHere(name, after.id)
        first.append(OwnEvent(("created", name), create) if mine else create)
    if before is not None and after is None:
        destroy = ContainerEvent(Action.DESTROY, name, now)
        removal = own.removedHere(before.id)
        last.append(destroy if removal is None else OwnEvent(removal, destroy))
    if before is not None and after is not None and after.version != before.version:
        when = _time(after.updated, now)
        update = own.updatedBetween(after.id, before.version, after.version)
        changes: list[ContainerEvent] = []
        if after.desired != before.desired:
            changes.append(ContainerEvent(Action.SCALE, name, when, replicas=after.desired))
        if specDigest(after) != specDigest(before):
            changes.append(ContainerEvent(Action.UPDATE, name, when))
        for change in changes:
            timed.append(_Timed(when, change if update is None else OwnEvent(update, change)))
    tasksBefore = {task.id: task for task in before.tasks} if before is not None else {}
    tasksAfter = {task.id: task for task in after.tasks} if after is not None else {}
    ids = list(tasksBefore) + [tid for tid in tasksAfter if tid not in tasksBefore]
    for tid in ids:
        timed.extend(_taskEvents(name, tasksBefore.get(tid), tasksAfter.get(tid), old, new))
    timed.sort(key=lambda item: item.time)
    return first + [item.event for item in timed] + last


def eventsBetween(
    old: Snapshot, new: Snapshot, own: OwnChanges = OwnChanges()
) -> list[ContainerEvent]:
    """
    What happened between snapshot C{old} and snapshot C{new}: per task,
    C{start} when it first runs and C{die} when a task that ran ends or is
    gone (with its exit code, node and task id); per service that pycm
    did not change itself (C{own}), C{create}, C{destroy}, C{scale} (its
    desired count changed: C{replicas} is the new one) and C{update} (its
    spec changed otherwise: the version alone also changes as the manager
    goes through a rolling update; an update that changed both is both).
    A task that came and went between the two gives its C{start} and its
    C{die}.  A task running on a node that went down dies (exit code
    unknown); it starts again if it runs once the node is back.

    Services come one after the other in name order; a service's events
    are its C{create}, then its C{scale}/C{update} and tasks' events in
    the order the engine's times give (a task's C{start} before its
    C{die}), then its C{destroy}.  A name whose service was replaced (a
    new id) is the old one's destroy, then the new one's create.
    """
    return [e for e in allEventsBetween(old, new, own) if isinstance(e, ContainerEvent)]


def allEventsBetween(
    old: Snapshot, new: Snapshot, own: OwnChanges = OwnChanges()
) -> list[ContainerEvent | OwnEvent]:
    """L{eventsBetween}, with those of pycm's own changes as L{OwnEvent}s in their places."""
    events: list[ContainerEvent | OwnEvent] = []
    for name in sorted(set(old.services) | set(new.services)):
        before = old.services.get(name)
        after = new.services.get(name)
        if before is not None and after is not None and before.id != after.id:
            events.extend(_serviceEvents(before, None, own, old, new))
            events.extend(_serviceEvents(None, after, own, old, new))
        else:
            events.extend(_serviceEvents(before, after, own, old, new))
    return events
