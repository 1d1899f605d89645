"""
What the swarm backend last told of its services, kept in the state
directory (L{SnapshotJournal}), so that after a reconnect to the manager
or a daemon restart (C{kill -9} included) the events of the gap are told,
none twice and none missed.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from typing import Any

from twisted.logger import Logger

from pycm.backends.swarm.events import (
    MarkKey,
    OwnChanges,
    allEventsBetween,
    baselineAfter,
    specDigest,
)
from pycm.backends.swarm.snapshot import ServiceView, Snapshot, TaskView
from pycm.files import replacePrivately
from pycm.model import Action, ContainerEvent
from pycm.statedir import UnsafeStateDir, openNoFollow

#: In the state directory: the last snapshot's services and tasks, and
#: pycm's own changes not yet seen.
JOURNAL_FILE = "swarm-journal.json"

#: The file's layout; another is not read.
FORMAT = 1

#: A journal longer than this is damaged (it holds a few hundred bytes a
#: service): it is not read whole.
MAX_BYTES = 16 * 1024 * 1024


class Damaged(ValueError):
    """The journal's content is not what this module writes."""


def _want(value: Any, kind: type | tuple[type, ...], what: str) -> Any:
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise Damaged(f"{what} is {type(value).__name__}")
    return value


def _time(value: Any, what: str) -> float:
    """A finite time (an integer too large for a float is not one)."""
    _want(value, (int, float), what)
    try:
        time = float(value)
    except OverflowError:
        raise Damaged(f"{what} is out of range") from None
    if not math.isfinite(time):
        raise Damaged(f"{what} is not finite")
    return time


def _refuseConstant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _optional(value: Any, kind: type | tuple[type, ...], what: str) -> Any:
    return None if value is None else _want(value, kind, what)


def _taskJSON(task: TaskView) -> dict[str, Any]:
    return {
        "id": task.id,
        "slot": task.slot,
        "node": task.node,
        "state": task.state,
        "desired": task.desiredState,
        "exit_code": task.exitCode,
        "error": task.error,
        "container": task.containerId,
        "updated": task.updated,
    }


def _task(data: Any) -> TaskView:
    _want(data, dict, "a task")
    return TaskView(
        id=_want(data.get("id"), str, "a task's id"),
        slot=_optional(data.get("slot"), int, "a task's slot"),
        node=_optional(data.get("node"), str, "a task's node"),
        state=_want(data.get("state"), str, "a task's state"),
        desiredState=_want(data.get("desired"), str, "a task's desired state"),
        exitCode=_optional(data.get("exit_code"), int, "a task's exit code"),
        error=_optional(data.get("error"), str, "a task's error"),
        containerId=_optional(data.get("container"), str, "a task's container"),
        updated=_time(data.get("updated"), "a task's time"),
    )


def _serviceJSON(service: ServiceView) -> dict[str, Any]:
    return {
        "name": service.name,
        "id": service.id,
        "version": service.version,
        "desired": service.desired,
        "created": service.created,
        "updated": service.updated,
        "spec": specDigest(service),
        "tasks": [_taskJSON(task) for task in service.tasks],
    }


def _service(data: Any) -> ServiceView:
    _want(data, dict, "a service")
    return ServiceView(
        name=_want(data.get("name"), str, "a service's name"),
        id=_want(data.get("id"), str, "a service's id"),
        version=_want(data.get("version"), int, "a service's version"),
        desired=_want(data.get("desired"), int, "a service's desired count"),
        created=_time(data.get("created"), "a service's time"),
        updated=_time(data.get("updated"), "a service's time"),
        spec={},
        specDigest=_want(data.get("spec"), str, "a service's spec digest"),
        tasks=tuple(_task(task) for task in _want(data.get("tasks"), list, "tasks")),
    )


def _eventJSON(owed: tuple[MarkKey | None, ContainerEvent]) -> dict[str, Any]:
    _, event = owed
    return {
        "action": event.action,
        "name": event.name,
        "time": event.time,
        "replicas": event.replicas,
    }


def _event(data: Any) -> tuple[MarkKey | None, ContainerEvent]:
    """An owed event, as read back: told at the next look (its mark is gone with the daemon)."""
    _want(data, dict, "an owed event")
    action = _want(data.get("action"), str, "an owed event's action")
    if action not in (Action.CREATE, Action.DESTROY, Action.SCALE, Action.UPDATE):
        raise Damaged(f"an owed event is {action!r}")
    return None, ContainerEvent(
        action,
        _want(data.get("name"), str, "an owed event's name"),
        _time(data.get("time"), "an owed event's time"),
        replicas=_optional(data.get("replicas"), int, "an owed event's replicas"),
    )


def encode(
    snapshot: Snapshot | None,
    own: OwnChanges,
    owed: Iterable[tuple[MarkKey | None, ContainerEvent]] = (),
) -> bytes:
    """
    The journal's bytes for C{snapshot} (its tasks' states, its specs'
    digests, not its time: the same from one look to the next while
    nothing changes, and not written again; None: no baseline yet),
    C{own} (the marks of changes being told) and C{owed} (the events
    of pycm's changes a snapshot showed before the backend told them).
    """
    services = None
    if snapshot is not None:
        services = [_serviceJSON(snapshot.services[name]) for name in sorted(snapshot.services)]
    data = {
        "format": FORMAT,
        "services": services,
        "down": None if snapshot is None else sorted(snapshot.downNodes),
        "own": {
            "created": sorted(own.created),
            "ids": sorted([name, sid] for name, sid in own.createdIds),
            "removed": sorted([name, sid] for name, sid in own.removed),
            "updated": sorted([sid, version] for sid, version in own.updated),
        },
        "owed": [_eventJSON(item) for item in owed],
    }
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode("utf-8")


def _pairs(items: Any, what: str, second: type) -> frozenset[tuple[Any, Any]]:
    """C{[[str, second], ...]} as a set of pairs."""
    pairs = set()
    for item in _want(items, list, what):
        if not (isinstance(item, list) and len(item) == 2):
            raise Damaged(f"a mark of {what} is {item!r}")
        pairs.add((_want(item[0], str, what), _want(item[1], second, what)))
    return frozenset(pairs)


def decode(
    content: bytes,
) -> tuple[Snapshot | None, OwnChanges, list[tuple[MarkKey | None, ContainerEvent]]]:
    """
    The snapshot (None: no baseline yet), marks and owed events of a
    journal's bytes (a journal of before the owed events and ids has none).

    @raise Damaged: if they are not what L{encode} makes.
    """
    if len(content) > MAX_BYTES:
        raise Damaged(f"longer than {MAX_BYTES} bytes")
    try:
        data = json.loads(content, parse_constant=_refuseConstant)
    except ValueError as e:  # UnicodeDecodeError too
        raise Damaged(f"not JSON ({e})") from None
    except RecursionError:
        raise Damaged("nested too deep") from None
    _want(data, dict, "the journal")
    if data.get("format") != FORMAT:
        raise Damaged(f"format {data.get('format')!r}, not {FORMAT}")
    own = _want(data.get("own"), dict, "own changes")
    created = frozenset(
        _want(name, str, "a created name") for name in _want(own.get("created"), list, "created")
    )
    marks = OwnChanges(
        created,
        _pairs(own.get("removed"), "removed", str),
        _pairs(own.get("updated"), "updated", int),
        frozenset(pair for pair in _pairs(own.get("ids", []), "ids", str) if pair[0] in created),
    )
    owed = [_event(item) for item in _want(data.get("owed", []), list, "owed events")]
    if data.get("services") is None:
        return None, marks, owed
    services = [_service(s) for s in _want(data.get("services"), list, "services")]
    down = _want(data.get("down"), list, "the nodes down")
    snapshot = Snapshot(
        time=0.0,
        services={service.name: service for service in services},
        downNodes=frozenset(_want(node, str, "a node down") for node in down),
    )
    if len(snapshot.services) != len(services):
        raise Damaged("a service is there twice")
    return snapshot, marks, owed


class SnapshotJournal:
    """
    The baseline the events are told from (the last snapshot whose events
    were told) and pycm's own changes not yet seen in a snapshot
    (L{OwnChanges}), kept in C{path} when given.

    The backend marks each change of its own before its request goes out
    (L{mark}; L{unmark} if it failed; L{identify} once the manager gave a
    created service's id), and calls L{telling} just before it tells the
    change's events; the watcher hands each snapshot to L{advance}, then
    its events on, then the snapshot to the waits.  The file is written
    before the events are handed on (by L{advance} and by L{telling}), so
    a daemon killed at any point tells nothing twice after its restart.
    A change a snapshot showed before the backend told it is I{owed}: its
    events (as the snapshot saw them) are kept in the file until the
    backend tells it, and told by the first look after a restart if the
    daemon died first (or by the next look if its request failed after
    all).  A change whose events the backend had not told yet when it
    died and no snapshot showed is not kept: the first snapshot after the
    restart tells it (as it tells another client's).

    A created service told but never seen is pycm's until a look begun
    after it was told (on C{clock}; any look after a restart) does not
    show it, or shows another service of its name: it was removed, and
    its C{destroy} is told then.

    A missing journal (the first start) or one that cannot be read (damaged,
    a link, not the daemon's: logged, as L{pycm.backends.docker.signals}
    does) leaves no baseline: the next snapshot becomes it and tells
    nothing (so nothing is told twice; what happened while no daemon
    watched is then not told).  A journal that cannot be written is logged
    once, and kept in memory.
    """

    log = Logger()

    def __init__(self, path: str | None = None, clock: Any = None) -> None:
        self.path = path
        self.clock = clock
        self.baseline: Snapshot | None = None
        #: Every change of pycm's not yet seen...
        self.own = OwnChanges()
        #: ... and those whose events are being told (kept in the file).
        self.told = OwnChanges()
        #: Created names told -> when (None: no clock, never known gone
        #: unless another service takes the name).
        self.toldAt: dict[str, float | None] = {}
        #: The events of pycm's changes seen before they were told, by
        #: mark (None: due at the next look).
        self.owed: list[tuple[MarkKey | None, ContainerEvent]] = []
        self._written: bytes | None = None
        self._writeFailed = False
        if path is not None:
            self._read(path)

    def _read(self, path: str) -> None:
        try:
            fd = openNoFollow(path, os.O_RDONLY)
            with os.fdopen(fd, "rb") as f:
                content = f.read(MAX_BYTES + 1)
        except FileNotFoundError:
            return
        except (OSError, UnsafeStateDir) as e:
            self.log.warn(
                "ignoring {path}: {error}; events while no daemon watched are not told",
                path=path,
                error=e,
            )
            return
        try:
            self.baseline, self.own, self.owed = decode(content)
        except Damaged as e:
            self.log.warn(
                "ignoring {path}, damaged: {error}; events while no daemon watched are not told",
                path=path,
                error=e,
            )
            return
        self.told = self.own
        # Any look from now on began after they were told.
        self.toldAt = {name: -math.inf for name in self.own.created}
        self._written = content

    def mark(
        self,
        created: tuple[str, ...] = (),
        removed: tuple[tuple[str, str], ...] = (),
        updated: tuple[tuple[str, int], ...] = (),
    ) -> None:
        """
        pycm is about to create services C{created} (names), remove
        C{removed} (C{(name, id)}), update C{updated} (C{(id, version)}):
        their events are the backend's, not the snapshots'.
        """
        self.own = self.own.plus(OwnChanges.of(created, removed, updated))

    def identify(self, name: str, sid: str) -> None:
        """pycm's creation of C{name} made service C{sid} (the manager's answer)."""
        if name in self.own.created:
            ids = frozenset({(name, sid)})
            self.own = self.own.plus(OwnChanges(createdIds=ids))
            if name in self.told.created:
                self.told = self.told.plus(OwnChanges(createdIds=ids))
                self._write()

    def unmark(
        self,
        created: tuple[str, ...] = (),
        removed: tuple[tuple[str, str], ...] = (),
        updated: tuple[tuple[str, int], ...] = (),
    ) -> None:
        """
        The request of a L{mark} failed: it did not happen (if a snapshot
        showed it anyway, its owed events are told by the next look).
        """
        marks = OwnChanges.of(created, removed, updated)
        self.own = self.own.without(marks)
        for name in created:
            self.toldAt.pop(name, None)
        keys = marks.keys()
        owed = [(None if key in keys else key, event) for key, event in self.owed]
        told = self.told.without(marks)
        if told != self.told or owed != self.owed:
            self.told = told
            self.owed = owed
            self._write()

    def telling(
        self,
        created: tuple[str, ...] = (),
        removed: tuple[tuple[str, str], ...] = (),
        updated: tuple[tuple[str, int], ...] = (),
    ) -> None:
        """
        The backend is about to tell the events of these marked changes:
        keep them in the file; the events a snapshot already showed of one
        (owed) are its to tell now, not the journal's.
        """
        marks = OwnChanges.of(created, removed, updated)
        now = None if self.clock is None else self.clock.seconds()
        fresh = marks.within(self.own)
        for name in fresh.created:
            self.toldAt.setdefault(name, now)
        self.told = self.told.plus(fresh)
        keys = marks.keys()
        self.owed = [(key, event) for key, event in self.owed if key not in keys]
        self._write()

    def advance(self, snapshot: Snapshot) -> list[ContainerEvent]:
        """
        The events since the baseline, C{snapshot} now the baseline (in the
        file before this returns: hand the events on after).  With no
        baseline yet, none but those owed.
        """
        due = [event for key, event in self.owed if key is None]
        self.owed = [(key, event) for key, event in self.owed if key is not None]
        events: list[ContainerEvent] = []
        told = self.told.keys()
        if self.baseline is not None:
            for item in allEventsBetween(self.baseline, snapshot, self.own):
                if isinstance(item, ContainerEvent):
                    events.append(item)
                elif item.mark not in told:
                    self.owed.append((item.mark, item.event))
        gone = self._createdGone(snapshot)
        self.baseline = (
            snapshot if self.baseline is None else baselineAfter(self.baseline, snapshot)
        )
        self.own = self.own.seenIn(snapshot).without(gone)
        self.told = self.told.seenIn(snapshot).without(gone)
        for name in list(self.toldAt):
            if name not in self.told.created:
                del self.toldAt[name]
        self._write()
        destroys = [
            ContainerEvent(Action.DESTROY, name, snapshot.time) for name in sorted(gone.created)
        ]
        return due + destroys + events

    def _createdGone(self, snapshot: Snapshot) -> OwnChanges:
        """
        The told creations C{snapshot} shows gone: not there in a look
        begun after they were told, or another service in their place.
        """
        gone = set()
        for name in self.told.created:
            service = snapshot.services.get(name)
            sid = self.told.createdId(name) or self.own.createdId(name)
            when = self.toldAt.get(name)
            if service is None:
                if when is not None and snapshot.time > when:
                    gone.add(name)
            elif sid is not None and service.id != sid:
                gone.add(name)
        removed = {name for name, _ in self.own.removed}
        return OwnChanges.of(created=gone - removed)

    def _write(self) -> None:
        if self.path is None:
            return
        content = encode(self.baseline, self.told, self.owed)
        if content == self._written:
            return
        try:
            # Not fsynced, as the event store's transactions are not: it
            # survives the daemon being killed; after a power loss a torn
            # journal is a damaged one.
            replacePrivately(self.path, content)
        except OSError as e:
            if not self._writeFailed:
                self._writeFailed = True
                self.log.warn(
                    "cannot write {path} ({error}): after a daemon restart, the swarm's "
                    "events while it was down may be told twice or not at all",
                    path=self.path,
                    error=e,
                )
            return
        self._written = content
