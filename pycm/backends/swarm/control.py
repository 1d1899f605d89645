"""
The swarm backend's requests to the engines (L{ServiceControl}): the
manager's C{/info} check, services created, read, updated (with the
version Swarm wants, read again when another update came first) and
removed, an image looked up, and signals sent to tasks' containers through
the engine of the node each runs on (L{NodeEngines}).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from pycm.backends.docker.engine import EngineError
from pycm.backends.docker.execcheck import ExecutableCheck
from pycm.backends.docker.follow import LogReader
from pycm.backends.docker.interfaces import IDockerEngine
from pycm.backends.docker.podman import EXEC_FAILURE_CODES
from pycm.backends.docker.translate import isManaged, isMissingImage
from pycm.backends.swarm.snapshot import ServiceView, TaskView
from pycm.errors import (
    BackendError,
    BadRequest,
    Conflict,
    NoImage,
    NotFound,
    PycmError,
    Unavailable,
)

#: How a task's error begins when its container could not be started.
START_FAILED = "starting container failed"
#: How many times an update is tried again when another came first.
UPDATE_TRIES = 5


def notManagerMessage(address: str, state: str) -> str:
    """What C{open} says when the engine cannot manage a swarm."""
    start = f"the swarm backend needs a swarm manager: the docker engine at {address}"
    if state in ("", "inactive"):
        return (
            f"{start} is not part of a swarm; start one there with 'docker swarm init' "
            "(or give --docker-host a manager's address)"
        )
    if state == "active":
        return (
            f"{start} is a swarm worker, not a manager; give --docker-host a manager's "
            "address (or make this node a manager: 'docker node promote NODE', run on a "
            "manager; a new swarm starts with 'docker swarm init')"
        )
    return (
        f"{start} is not a working swarm member (its swarm state: {state}); join it "
        "again, or start a new swarm with 'docker swarm init'"
    )


class NodeEngines:
    """
    Which engine reaches each node's containers: the manager's own for
    its node, and those named with C{--swarm-node-host} (by hostname or
    node id) for the others.
    """

    def __init__(
        self,
        manager: IDockerEngine,
        others: Mapping[str, IDockerEngine] | None = None,
        hostnames: Callable[[], Mapping[str, str]] = dict,
    ) -> None:
        """
        @param hostnames: node id -> hostname, as the manager last said
            (a task names its node by hostname: an engine given by node id
            is found through it).
        """
        self.manager = manager
        self.others = dict(others or {})
        self.hostnames = hostnames
        #: The manager's hostname (its node's), from its C{/info}.
        self.managerNode: str | None = None

    def engineFor(self, node: str | None) -> IDockerEngine:
        """
        The engine of C{node} (a hostname, or a node id).

        @raise BackendError: naming the node and the option, when no engine
            is known for it.
        """
        if node and node == self.managerNode:
            return self.manager
        if node and node in self.others:
            return self.others[node]
        names = self.hostnames()
        for key, engine in self.others.items():
            if node and names.get(key) == node:
                return engine
        node = node or "an unknown node"
        raise BackendError(
            f"no engine is known for node {node}: give its address with "
            f"--swarm-node-host {node}=unix:///PATH (or tcp://HOST:PORT)"
        )

    def close(self) -> defer.Deferred[Any]:
        return defer.DeferredList([engine.close() for engine in self.others.values()])


class _NoMarks:
    """A journal that keeps no marks (for a control used alone)."""

    def mark(self, **marks: Any) -> None:
        pass

    def unmark(self, **marks: Any) -> None:
        pass

    def telling(self, **marks: Any) -> None:
        pass

    def identify(self, name: str, sid: str) -> None:
        pass


class ServiceControl:
    """
    pycm's requests about services, on the manager's engine.  Each change
    is marked in C{journal} before its request goes out (and unmarked if
    it failed), so that the snapshots do not tell it again
    (L{pycm.backends.swarm.journal.SnapshotJournal.mark}).  C{clock} times
    the log reads of the exec checks.
    """

    log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        engine: IDockerEngine,
        address: str = "the manager",
        journal: Any = None,
    ) -> None:
        self.clock = clock
        self.engine = engine
        self.address = address
        self.journal = journal if journal is not None else _NoMarks()
        #: Service name -> the marks of its changes whose events are not
        #: told yet (L{told} hands them to the journal's C{telling}).
        self.marks: dict[str, list[dict[str, Any]]] = {}

    def _mark(self, name: str, **marks: Any) -> None:
        self.journal.mark(**marks)
        self.marks.setdefault(name, []).append(marks)

    def _unmark(self, name: str, **marks: Any) -> None:
        self.journal.unmark(**marks)
        pending = self.marks.get(name, [])
        if marks in pending:
            pending.remove(marks)

    def told(self, name: str) -> None:
        """
        The backend is about to tell the events of its changes of C{name}:
        the journal keeps their marks (L{SnapshotJournal.telling}).
        """
        for marks in self.marks.pop(name, []):
            self.journal.telling(**marks)

    @defer.inlineCallbacks
    def checkManager(self) -> Any:
        """
        Ask C{GET /info}: fire with the manager's hostname, or fail with
        L{BackendError} (naming C{docker swarm init}) if the engine is not
        a swarm manager.
        """
        try:
            _, info = yield self.engine.request("GET", "/info")
        except EngineError as e:
            raise engineFailure(e) from None
        swarm = (info or {}).get("Swarm") or {}
        if not swarm.get("ControlAvailable"):
            raise BackendError(
                notManagerMessage(self.address, str(swarm.get("LocalNodeState") or ""))
            )
        return str((info or {}).get("Name") or "")

    @defer.inlineCallbacks
    def imageCommand(self, image: str) -> Any:
        """
        The command C{image} runs (its entrypoint and command) on the
        manager's engine; L{NoImage} if it has no such image.
        """
        try:
            _, data = yield self.engine.request("GET", f"/images/{image}/json")
        except EngineError as e:
            if e.status == 404 or isMissingImage(e.message):
                raise NoImage(image, e.message) from None
            raise engineFailure(e) from None
        config = (data or {}).get("Config") or {}
        return [str(w) for w in (config.get("Entrypoint") or []) + (config.get("Cmd") or [])]

    @defer.inlineCallbacks
    def create(self, name: str, body: dict[str, Any]) -> Any:
        """C{POST /services/create}; fires with the new service's id."""
        self._mark(name, created=(name,))
        try:
            _, result = yield self.engine.request("POST", "/services/create", None, body)
        except Exception as e:
            self._unmark(name, created=(name,))
            if not isinstance(e, EngineError):
                raise

            lowered = e.message.lower()
            if e.status == 409 or "already exists" in lowered or "conflicts with" in lowered:
                raise Conflict(f'container name "{name}" is already in use') from None
            raise engineFailure(e, name) from None
        sid = str((result or {}).get("ID", ""))
        # pycm's own service of that name: not another client's made after it.
        self.journal.identify(name, sid)
        return sid

    @defer.inlineCallbacks
    def get(self, name: str) -> Any:
        """C{GET /services/NAME}: pycm's service, or L{NotFound}."""
        try:
            _, service = yield self.engine.request("GET", f"/services/{name}")
        except EngineError as e:
            raise engineFailure(e, name) from None
        spec = (service or {}).get("Spec") or {}
        if not isManaged(spec.get("Labels")) or spec.get("Name") != name:
            # Someone else's service (or one matched by id prefix).
            raise NotFound(name)
        return service

    @defer.inlineCallbacks
    def update(
        self,
        name: str,
        change: Callable[[dict[str, Any], dict[str, Any]], dict[str, Any] | None],
        service: dict[str, Any] | None = None,
    ) -> Any:
        """
        Change pycm's service C{name}: C{change(service, spec)} edits a copy
        of its spec in place (or returns None to change nothing), and it is
        sent with the service's version; when another update came first,
        the service is read again and C{change} applied again.

        @return: Deferred firing with the service as it was before the
            change (None: nothing changed).
        """
        for attempt in range(UPDATE_TRIES):
            if service is None or attempt:
                service = yield self.get(name)
            spec = copy.deepcopy(service.get("Spec") or {})
            if change(service, spec) is None:
                return None
            version = int((service.get("Version") or {}).get("Index") or 0)
            mark = ((str(service["ID"]), version),)
            self._mark(name, updated=mark)
            try:
                yield self.engine.request(
                    "POST", f"/services/{service['ID']}/update", {"version": version}, spec
                )
            except Exception as e:
                self._unmark(name, updated=mark)
                if not isinstance(e, EngineError):
                    raise
                if "out of sequence" in e.message.lower() and attempt + 1 < UPDATE_TRIES:
                    continue
                raise engineFailure(e, name) from None
            return service
        raise BackendError(f"cannot update {name}: it kept changing")  # pragma: no cover

    @defer.inlineCallbacks
    def remove(self, name: str, serviceId: str) -> Any:
        """C{DELETE /services/ID}."""
        mark = ((name, serviceId),)
        self._mark(name, removed=mark)
        try:
            yield self.engine.request("DELETE", f"/services/{serviceId}")
        except Exception as e:
            self._unmark(name, removed=mark)
            if not isinstance(e, EngineError):
                raise
            raise engineFailure(e, name) from None

    @defer.inlineCallbacks
    def signalTasks(
        self, nodes: NodeEngines, service: ServiceView, signum: int, strict: bool
    ) -> Any:
        """
        Send C{signum} to every running task of C{service} through its
        node's engine; fire with the ids of the tasks it was sent to.

        @param strict: fail (before sending any) when a running task's node
            has no engine known (L{NodeEngines.engineFor}), and when one
            cannot be sent; else skip those (said in the log).
        """
        targets = []
        for task in service.tasks:
            if not task.running or task.containerId is None:
                continue
            try:
                engine = nodes.engineFor(task.node)
            except BackendError:
                if strict:
                    raise
                continue
            targets.append((task, engine))
        sending = []
        for task, engine in targets:
            d = self.signal(engine, task.containerId or "", signum)
            if not strict:
                d.addErrback(self._notSent, task)
            sending.append(d)
        results = yield defer.gatherResults(sending, consumeErrors=True).addErrback(
            lambda f: f.value.subFailure if isinstance(f.value, defer.FirstError) else f
        )
        return [task.id for (task, _), sent in zip(targets, results) if sent]

    def _notSent(self, failure: Failure, task: TaskView) -> bool:
        """A signal that could not be sent (its node's engine is away): skipped."""
        failure.trap(PycmError)
        self.log.warn(
            "cannot signal task {task} on {node}: {why}",
            task=task.id,
            node=task.node,
            why=failure.getErrorMessage(),
        )
        return False

    @defer.inlineCallbacks
    def execFailure(
        self, nodes: NodeEngines, tasks: list[TaskView], lookFirst: bool = False
    ) -> Any:
        """
        Why these tasks' command could not be executed, if that is why they
        ended (exit 126 or 127 under docker-init, which says so on stderr):
        read on the engine of each task's node; None if none says so (or
        their nodes' engines are unknown).

        @param lookFirst: also look for the command in the container of one
            running task: under an init the engine runs a container whose
            command does not exist, and a look may see its task running
            before the init's exit 127 is reported.
        """
        if lookFirst:
            why = yield self._missingCommand(nodes, [t for t in tasks if t.running])
            if why is not None:
                return why
        for task in tasks:
            if (task.error or "").startswith(START_FAILED):
                # Without an init the engine says so itself.
                return task.error
            if task.exitCode not in EXEC_FAILURE_CODES or not task.containerId:
                continue
            try:
                engine = nodes.engineFor(task.node)
            except BackendError:
                continue
            why = yield self._executables(engine).failure(task.containerId)
            if why is not None:
                return why
        return None

    def _executables(self, engine: IDockerEngine) -> ExecutableCheck:
        """The exec checks of a node's C{engine}."""
        return ExecutableCheck(engine, LogReader(engine, self.clock))

    @defer.inlineCallbacks
    def _missingCommand(self, nodes: NodeEngines, running: list[TaskView]) -> Any:
        """
        Why the first running task on a node of known engine cannot execute
        its command (its filesystem looked at), or None.
        """
        for task in running:
            if not task.containerId:
                continue
            try:
                engine = nodes.engineFor(task.node)
            except BackendError:
                continue
            try:
                _, data = yield engine.request("GET", f"/containers/{task.containerId}/json")
            except (EngineError, PycmError):
                return None
            why = yield self._executables(engine).missing(task.containerId, data)
            return why
        return None

    @defer.inlineCallbacks
    def signal(self, engine: IDockerEngine, containerId: str, signum: int) -> Any:
        """
        Send C{signum} to a task's container; fires with whether it was
        sent (False: the container is no longer running, or gone).
        """
        try:
            yield engine.request("POST", f"/containers/{containerId}/kill", {"signal": str(signum)})
        except EngineError as e:
            if e.status in (404, 409) or "is not running" in e.message:
                return False
            raise BackendError(f"docker engine: {e.message}") from None
        return True


def engineFailure(error: EngineError, name: str | None = None) -> PycmError:
    """
    The pycm error an engine's error status is: 404 L{NotFound} (for
    C{name}), 400 L{BadRequest}, 503 L{Unavailable} (the manager cannot
    act: not a manager any more, or its swarm has no leader), anything
    else L{BackendError}, each with the engine's words.
    """
    if error.status == 404 and name is not None:
        return NotFound(name)
    if error.status == 400:
        return BadRequest(f"swarm: {error.message}")
    if error.status == 503:
        return Unavailable(f"swarm manager: {error.message}")
    return BackendError(f"docker engine: {error.message}")


__all__ = ["NodeEngines", "ServiceControl", "engineFailure", "notManagerMessage"]
