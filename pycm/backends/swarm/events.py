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


class SpecDigest(dict[str, Any]):
    """
    A service's spec known only by its digest (L{specDigest}): a service
    read back from the journal, which keeps no specs.
    """

    def __init__(self, digest: str) -> None:
        super().__init__()
        self.digest = digest


def specDigest(service: ServiceView) -> str:
    """
    A digest of C{service}'s spec but its desired count: what changes
    with an update, and only with one (the manager raises the version on
    its own too, as a rolling update goes on).
    """
    spec = service.spec
    if isinstance(spec, SpecDigest):
        return spec.digest
    plain = dict(spec)
    mode = plain.get("Mode")
    if isinstance(mode, dict) and isinstance(mode.get("Replicated"), dict):
        replicated = {k: v for k, v in mode["Replicated"].items() if k != "Replicas"}
        plain["Mode"] = dict(mode, Replicated=replicated)
    text = json.dumps(plain, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@attrs.frozen
class OwnChanges:
    """
    What pycm itself did to the services, whose events the backend tells:
    the names of services it created, C{(name, service id)} of those it
    removed, and C{(service id, version)} of those it updated (from that
    version: an update names the version it changes, so the next version
    is pycm's, whoever else updates it after).

    Mark a change before its request goes out, drop the mark if it failed
    (L{without}); L{seenIn} drops the marks a snapshot shows done.
    """

    created: frozenset[str] = frozenset()
    removed: frozenset[tuple[str, str]] = frozenset()
    updated: frozenset[tuple[str, int]] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.created or self.removed or self.updated)

    def plus(
        self,
        created: Iterable[str] = (),
        removed: Iterable[tuple[str, str]] = (),
        updated: Iterable[tuple[str, int]] = (),
    ) -> OwnChanges:
        """These marks and those."""
        return OwnChanges(
            self.created | frozenset(created),
            self.removed | frozenset(removed),
            self.updated | frozenset(updated),
        )

    def without(
        self,
        created: Iterable[str] = (),
        removed: Iterable[tuple[str, str]] = (),
        updated: Iterable[tuple[str, int]] = (),
    ) -> OwnChanges:
        """These marks but those."""
        return OwnChanges(
            self.created - frozenset(created),
            self.removed - frozenset(removed),
            self.updated - frozenset(updated),
        )

    def updatedBetween(self, sid: str, old: int, new: int) -> bool:
        """Did pycm make a version of C{sid} after C{old}, up to C{new}?"""
        return any(mark == sid and old <= since < new for mark, since in self.updated)

    def removedHere(self, sid: str) -> bool:
        """Did pycm remove service C{sid}?"""
        return any(mark == sid for _, mark in self.removed)

    def seenIn(self, snapshot: Snapshot) -> OwnChanges:
        """
        The marks C{snapshot} does not show done yet: a creation not seen
        (nor removed by pycm since), a removal of a service still there,
        an update of a service still at its version or before.
        """
        byId = {service.id: service for service in snapshot.services.values()}
        gone = {name for name, sid in self.removed if sid not in byId}
        return OwnChanges(
            frozenset(
                name for name in self.created if name not in snapshot.services and name not in gone
            ),
            frozenset((name, sid) for name, sid in self.removed if sid in byId),
            frozenset(
                (sid, since)
                for sid, since in self.updated
                if sid in byId and byId[sid].version <= since
            ),
        )


@attrs.frozen
class _Timed:
    """An event with the engine's time of it, to sort a service's events."""

    time: float
    event: ContainerEvent


def _time(engineTime: float, fallback: float) -> float:
    return engineTime if engineTime > 0 else fallback


def _lost(task: TaskView | None, snapshot: Snapshot) -> bool:
    """Does C{task} say it runs on a node the manager sees down?"""
    return task is not None and task.running and task.node in snapshot.downNodes


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
        if after is not None and after.running and not _lost(after, new):
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
) -> list[ContainerEvent]:
    """The events of one service between two looks (None: not there)."""
    now = new.time
    service = after or before
    assert service is not None
    name = service.name
    first: list[ContainerEvent] = []
    timed: list[_Timed] = []
    last: list[ContainerEvent] = []
    if before is None and after is not None and name not in own.created:
        first.append(ContainerEvent(Action.CREATE, name, _time(after.created, now)))
    if before is not None and after is None and not own.removedHere(before.id):
        last.append(ContainerEvent(Action.DESTROY, name, now))
    if (
        before is not None
        and after is not None
        and after.version != before.version
        and not own.updatedBetween(after.id, before.version, after.version)
    ):
        when = _time(after.updated, now)
        if after.desired != before.desired:
            timed.append(
                _Timed(when, ContainerEvent(Action.SCALE, name, when, replicas=after.desired))
            )
        elif specDigest(after) != specDigest(before):
            timed.append(_Timed(when, ContainerEvent(Action.UPDATE, name, when)))
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
    goes through a rolling update).  A task that came and went between the two
    gives its C{start} and its C{die}.  A task running on a node that went
    down dies (exit code unknown); it starts again if it runs once the
    node is back.

    Services come one after the other in name order; a service's events
    are its C{create}, then its C{scale}/C{update} and tasks' events in
    the order the engine's times give (a task's C{start} before its
    C{die}), then its C{destroy}.  A name whose service was replaced (a
    new id) is the old one's destroy, then the new one's create.
    """
    events: list[ContainerEvent] = []
    for name in sorted(set(old.services) | set(new.services)):
        before = old.services.get(name)
        after = new.services.get(name)
        if before is not None and after is not None and before.id != after.id:
            events.extend(_serviceEvents(before, None, own, old, new))
            events.extend(_serviceEvents(None, after, own, old, new))
        else:
            events.extend(_serviceEvents(before, after, own, old, new))
    return events
