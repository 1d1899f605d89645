"""
What the swarm backend last told of its services, kept in the state
directory (L{SnapshotJournal}), so that after a reconnect to the manager
or a daemon restart (C{kill -9} included) the events of the gap are told,
none twice and none missed.
"""

from __future__ import annotations

import json
import os
from typing import Any

from twisted.logger import Logger

from pycm.backends.swarm.events import OwnChanges, SpecDigest, eventsBetween, specDigest
from pycm.backends.swarm.snapshot import ServiceView, Snapshot, TaskView
from pycm.files import replacePrivately
from pycm.model import ContainerEvent
from pycm.statedir import UnsafeStateDir, openNoFollow

#: In the state directory: the last snapshot's services and tasks, and
#: pycm's own changes not yet seen.
JOURNAL_FILE = "swarm-journal.json"

#: The file's layout; another is not read.
FORMAT = 1


class Damaged(ValueError):
    """The journal's content is not what this module writes."""


def _want(value: Any, kind: type | tuple[type, ...], what: str) -> Any:
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise Damaged(f"{what} is {type(value).__name__}")
    return value


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
        updated=float(_want(data.get("updated"), (int, float), "a task's time")),
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
        created=float(_want(data.get("created"), (int, float), "a service's time")),
        updated=float(_want(data.get("updated"), (int, float), "a service's time")),
        spec=SpecDigest(_want(data.get("spec"), str, "a service's spec digest")),
        tasks=tuple(_task(task) for task in _want(data.get("tasks"), list, "tasks")),
    )


def encode(snapshot: Snapshot | None, own: OwnChanges) -> bytes:
    """
    The journal's bytes for C{snapshot} (its tasks' states, its specs'
    digests, not its time: the same from one look to the next while
    nothing changes, and not written again; None: no baseline yet) and
    C{own}.
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
            "removed": sorted([name, sid] for name, sid in own.removed),
            "updated": sorted([sid, version] for sid, version in own.updated),
        },
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


def decode(content: bytes) -> tuple[Snapshot | None, OwnChanges]:
    """
    The snapshot (None: no baseline yet) and marks of a journal's bytes.

    @raise Damaged: if they are not what L{encode} makes.
    """
    try:
        data = json.loads(content)
    except ValueError as e:  # UnicodeDecodeError too
        raise Damaged(f"not JSON ({e})") from None
    _want(data, dict, "the journal")
    if data.get("format") != FORMAT:
        raise Damaged(f"format {data.get('format')!r}, not {FORMAT}")
    own = _want(data.get("own"), dict, "own changes")
    created = _want(own.get("created"), list, "created")
    marks = OwnChanges(
        frozenset(_want(name, str, "a created name") for name in created),
        _pairs(own.get("removed"), "removed", str),
        _pairs(own.get("updated"), "updated", int),
    )
    if data.get("services") is None:
        return None, marks
    services = [_service(s) for s in _want(data.get("services"), list, "services")]
    down = _want(data.get("down"), list, "the nodes down")
    snapshot = Snapshot(
        time=0.0,
        services={service.name: service for service in services},
        downNodes=frozenset(_want(node, str, "a node down") for node in down),
    )
    if len(snapshot.services) != len(services):
        raise Damaged("a service is there twice")
    return snapshot, marks


class SnapshotJournal:
    """
    The baseline the events are told from (the last snapshot whose events
    were told) and pycm's own changes not yet seen in a snapshot
    (L{OwnChanges}), kept in C{path} when given.

    The backend marks each change of its own before its request goes out
    (L{mark}; L{unmark} if it failed), and calls L{telling} just before it
    tells the change's events; the watcher hands each snapshot to
    L{advance}, then its events on, then the snapshot to the waits.  The
    file is written before the events are handed on (by L{advance} and by
    L{telling}), so a daemon killed at any point tells nothing twice after
    its restart; a change whose events the backend had not told yet when
    it died is not kept, so the first snapshot after the restart tells it
    (as it tells another client's).

    A missing journal (the first start) or one that cannot be read (damaged,
    a link, not the daemon's: logged, as L{pycm.backends.docker.signals}
    does) leaves no baseline: the next snapshot becomes it and tells
    nothing (so nothing is told twice; what happened while no daemon
    watched is then not told).  A journal that cannot be written is logged
    once, and kept in memory.
    """

    log = Logger()

    def __init__(self, path: str | None = None) -> None:
        self.path = path
        self.baseline: Snapshot | None = None
        #: Every change of pycm's not yet seen...
        self.own = OwnChanges()
        #: ... and those whose events are being told (kept in the file).
        self.told = OwnChanges()
        self._written: bytes | None = None
        self._writeFailed = False
        if path is not None:
            self._read(path)

    def _read(self, path: str) -> None:
        try:
            fd = openNoFollow(path, os.O_RDONLY)
            with os.fdopen(fd, "rb") as f:
                content = f.read()
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
            self.baseline, self.own = decode(content)
        except Damaged as e:
            self.log.warn(
                "ignoring {path}, damaged: {error}; events while no daemon watched are not told",
                path=path,
                error=e,
            )
            return
        self.told = self.own
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
        self.own = self.own.plus(created, removed, updated)

    def unmark(
        self,
        created: tuple[str, ...] = (),
        removed: tuple[tuple[str, str], ...] = (),
        updated: tuple[tuple[str, int], ...] = (),
    ) -> None:
        """The request of a L{mark} failed: it did not happen."""
        self.own = self.own.without(created, removed, updated)
        told = self.told.without(created, removed, updated)
        if told != self.told:
            self.told = told
            self._write()

    def telling(
        self,
        created: tuple[str, ...] = (),
        removed: tuple[tuple[str, str], ...] = (),
        updated: tuple[tuple[str, int], ...] = (),
    ) -> None:
        """
        The backend is about to tell the events of these marked changes:
        keep them in the file (a snapshot that already showed one has
        dropped it: nothing to keep).
        """
        own = self.own
        self.told = self.told.plus(
            own.created & frozenset(created),
            own.removed & frozenset(removed),
            own.updated & frozenset(updated),
        )
        self._write()

    def advance(self, snapshot: Snapshot) -> list[ContainerEvent]:
        """
        The events since the baseline, C{snapshot} now the baseline (in the
        file before this returns: hand the events on after).  With no
        baseline yet, none.
        """
        events = [] if self.baseline is None else eventsBetween(self.baseline, snapshot, self.own)
        self.baseline = snapshot
        self.own = self.own.seenIn(snapshot)
        self.told = self.told.seenIn(snapshot)
        self._write()
        return events

    def _write(self) -> None:
        if self.path is None:
            return
        content = encode(self.baseline, self.told)
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
