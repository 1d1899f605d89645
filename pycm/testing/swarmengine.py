"""
L{FakeSwarmEngine}: an L{IDockerEngine} that answers as the manager of a
Docker Swarm cluster (dockerd 20.10 in swarm mode) whose nodes, services
and tasks live in memory on an injected clock, for the swarm backend's
tests on any machine.  Each node is a
L{pycm.testing.dockerengine.FakeDockerEngine}, and a task is a container
of its node running a simulated command (C{sleep}, C{exit N}, C{echo},
C{fail}, ...).  L{pycm.testing.swarmsuite} holds it to the real swarm;
L{pycm.testing.swarmstate} keeps the cluster's objects and
L{pycm.testing.swarmtasks} moves its tasks.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable
from typing import Any

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from pycm.backends.docker.engine import EngineError, Stream
from pycm.backends.docker.interfaces import IDockerEngine
from pycm.backends.docker.stream import JSONLines
from pycm.testing.dockerstate import (
    Feed,
    discard,
    eventMatches,
    flag,
    imageReference,
    parseFilters,
    sinceNanos,
)
from pycm.testing.fakeengine import AnswersLater
from pycm.testing.swarmagent import NodeEngine, unreachable
from pycm.testing.swarmlogs import ServiceLogs
from pycm.testing.swarmstate import (
    NOT_IN_SWARM,
    NOT_MANAGER,
    FakeNode,
    FakeService,
    FakeTask,
    checkFilters,
    serviceMatches,
    taskMatches,
)
from pycm.testing.swarmtasks import Cluster

#: How many of its last events dockerd keeps to replay to a stream with
#: C{since} (moby's daemon/events/events.go, C{eventsLimit}).
EVENTS_KEPT = 256

_SERVICE_FILTERS = ("id", "label", "mode", "name", "runtime")
_TASK_FILTERS = ("_up-to-date", "desired-state", "id", "label", "name", "node", "service")
_NODE_FILTERS = ("id", "label", "membership", "name", "node.label", "role")


@implementer(IDockerEngine)
class FakeSwarmEngine(AnswersLater):
    """
    The manager of an in-memory swarm on C{clock}, with a manager node and
    a worker node to begin with (C{manager}, C{worker}).

    Test controls: L{addNode}, L{killNode} (its dockerd dies: its
    containers with it, and the manager sees it C{down} after
    C{heartbeat} seconds and moves its tasks), L{restoreNode},
    L{setReachable} (the manager's API stops answering, or answers again;
    the cluster goes on), L{nodeEngine} (a node's own engine, to signal
    a task's container).  Its event stream has the cluster's service and
    node events and, as the real one, the events of the manager node's
    own containers.

    @param mode: C{manager}; C{worker} or C{inactive} for an engine that
        is a swarm's worker, or in no swarm (its swarm calls fail with
        503 as dockerd's do).
    @param stepDelay: seconds between two states of a task.
    """

    isPodman = False
    timeout = 10.0

    def __init__(
        self,
        clock: IReactorTime,
        images: Iterable[str] = ("busybox:latest",),
        nodes: Iterable[tuple[str, str]] = (("manager", "manager"), ("worker", "worker")),
        mode: str = "manager",
        stepDelay: float = 0.05,
        heartbeat: float = 6.0,
    ) -> None:
        super().__init__(clock)
        self.mode = mode
        self.reachable = True
        self.events: list[dict[str, Any]] = []
        self._eventFeeds: list[Feed] = []
        self.cluster = Cluster(
            clock,
            self._emit,
            stepDelay=stepDelay,
            heartbeat=heartbeat,
            images=tuple(images),
        )
        for hostname, role in nodes:
            self.cluster.addNode(hostname, role)
        self.logs = ServiceLogs(self.cluster)
        # The manager's own containers' events are in its stream too.
        self.manager.engine.stream("GET", "/events", {}, JSONLines(self._localEvent).feed)

    # -- test controls ------------------------------------------------------

    @property
    def manager(self) -> FakeNode:
        """The node this engine is (the first manager)."""
        return next(n for n in self.cluster.nodes if n.role == "manager")

    def findNode(self, ref: str) -> FakeNode:
        """The node C{ref} names (its hostname or id)."""
        for node in self.cluster.nodes:
            if ref in (node.hostname, node.id):
                return node
        found = [n for n in self.cluster.nodes if n.id.startswith(ref)]
        if len(found) == 1 and ref:
            return found[0]
        raise EngineError(404, f"node {ref} not found")

    def addNode(
        self, hostname: str, role: str = "worker", labels: dict[str, str] | None = None
    ) -> FakeNode:
        """A new node joins the swarm."""
        return self.cluster.addNode(hostname, role, labels)

    def killNode(self, hostname: str) -> None:
        """Kill the dockerd of a node (not the manager's: see L{setReachable})."""
        node = self.findNode(hostname)
        if node is self.manager:
            raise ValueError("the manager is this engine: use setReachable(False)")
        self.cluster.killNode(node)

    def restoreNode(self, hostname: str) -> None:
        """Start a killed node's dockerd again."""
        self.cluster.restoreNode(self.findNode(hostname))

    def setReachable(self, reachable: bool, forgetEvents: bool = False) -> None:
        """
        Make the manager's API unreachable (its streams end, its calls
        fail with L{Unavailable}) or reachable again.

        @param forgetEvents: back, it has no events from before (a
            C{since} replays none), as a restarted dockerd.
        """
        self.reachable = reachable
        if forgetEvents:
            self.events.clear()
            self.manager.engine.events.clear()
        if not reachable:
            self.cancelPending()
            self._endStreams()

    def nodeEngine(self, hostname: str) -> IDockerEngine:
        """The engine of node C{hostname}, as a client reaches it."""
        node = self.findNode(hostname)
        if node is self.manager:
            return NodeEngine(node, lambda: self.reachable)
        return NodeEngine(node, lambda: node.alive)

    def tasksOf(self, service: str) -> list[FakeTask]:
        """The tasks of service C{service} (a name or id), oldest first."""
        found = self._service(service)
        return sorted(self.cluster.serviceTasks(found), key=lambda t: (t.slot, t.created))

    # -- IDockerEngine -------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        params: dict[str, Any] | None = None,
        body: Any = None,
        timeout: float | None = None,
        raw: bool = False,
    ) -> Deferred[Any]:
        """Answer C{method path} on the next turn of the clock."""
        if not self.reachable:
            return defer.fail(unreachable("the manager"))
        parts = path.strip("/").split("/")
        if (method, parts[0], parts[-1]) == ("GET", "images", "json") and len(parts) > 2:
            return self.later(defer.maybeDeferred(self._image, "/".join(parts[1:-1])))
        if parts[0] in ("containers", "images"):
            return self.manager.engine.request(method, path, params, body, timeout, raw)
        try:
            answer = self._answer(method, parts, params or {}, body)
        except EngineError as e:
            return self.later(defer.fail(e))
        return self.later(defer.succeed(answer))

    def stream(
        self,
        method: str,
        path: str,
        params: dict[str, Any] | None,
        onData: Callable[[bytes], None],
        body: Any = None,
        headerTimeout: float | None = None,
    ) -> Deferred[Stream]:
        """Open a stream of C{GET /events} or a service's log follow."""
        if not self.reachable:
            return defer.fail(unreachable("the manager"))
        parts = path.strip("/").split("/")
        if parts[0] in ("containers", "images"):
            return self.manager.engine.stream(method, path, params, onData, body, headerTimeout)
        params = params or {}
        try:
            if (method, parts) == ("GET", ["events"]):
                opener = functools.partial(self._followEvents, params=params)
            elif method == "GET" and len(parts) == 3 and parts[::2] == ["services", "logs"]:
                self._manager()
                self.logs.check(params)
                opener = functools.partial(
                    self.logs.follow, service=self._service(parts[1]), params=params
                )
            else:
                raise EngineError(404, f"page not found: {method} {path}")
        except EngineError as e:
            return self.later(defer.fail(e))
        return self.openStream(opener, onData)

    def close(self) -> Deferred[None]:
        """End every stream, fail every pending call with a cancel."""
        self.cancelPending()
        self._endStreams()
        for node in self.cluster.nodes:
            node.engine.close()
        return defer.succeed(None)

    # -- plumbing ------------------------------------------------------------

    def _endStreams(self) -> None:
        for feed in list(self._eventFeeds):
            feed.end()
        self.logs.endAll()

    def _manager(self) -> None:
        """@raise EngineError: 503, as dockerd's, unless this is a manager."""
        if self.mode == "worker":
            raise EngineError(503, NOT_MANAGER)
        if self.mode != "manager":
            raise EngineError(503, NOT_IN_SWARM)

    def _answer(self, method: str, parts: list[str], params: dict[str, Any], body: Any) -> Any:
        if (method, parts) == ("GET", ["info"]):
            return (200, self._info())
        self._manager()
        route = (method, parts[0], len(parts))
        if route == ("GET", "nodes", 1):
            return (200, self._nodes(params))
        if route == ("GET", "nodes", 2):
            return (200, self.findNode(parts[1]).toJSON())
        if (method, parts) == ("POST", ["services", "create"]):
            return (201, {"ID": self.cluster.createService(body).id})
        if route == ("GET", "services", 1):
            return (200, self._services(params))
        if route == ("GET", "services", 2):
            return (200, self._service(parts[1]).toJSON())
        if route == ("DELETE", "services", 2):
            service = self._service(parts[1])
            self.cluster.removeService(service)
            return (200, None)
        if route == ("POST", "services", 3) and parts[2] == "update":
            return (200, self._update(self._service(parts[1]), params, body))
        if route == ("GET", "services", 3) and parts[2] == "logs":
            service = self._service(parts[1])
            return (200, self.logs.backlog(service, params))
        if route == ("GET", "tasks", 1):
            return (200, self._tasks(params))
        if route == ("GET", "tasks", 2):
            return (200, self._task(parts[1]).toJSON())
        raise EngineError(404, f"page not found: {method} /{'/'.join(parts)}")

    # -- answers ---------------------------------------------------------------

    def _info(self) -> dict[str, Any]:
        """C{GET /info}, with what it says of the swarm."""
        manager = self.manager
        if self.mode == "inactive":
            swarm: dict[str, Any] = {
                "NodeID": "",
                "NodeAddr": "",
                "LocalNodeState": "inactive",
                "ControlAvailable": False,
                "Error": "",
                "RemoteManagers": None,
            }
        else:
            swarm = {
                "NodeID": manager.id,
                "NodeAddr": manager.addr,
                "LocalNodeState": "active",
                "ControlAvailable": self.mode == "manager",
                "Error": "",
                "RemoteManagers": [{"NodeID": manager.id, "Addr": manager.addr + ":2377"}],
            }
            if self.mode == "manager":
                nodes = self.cluster.nodes
                swarm["Nodes"] = len(nodes)
                swarm["Managers"] = sum(1 for n in nodes if n.role == "manager")
        return {
            "ID": "FAKE:SWARM:ENGINE",
            "Name": manager.hostname,
            "ServerVersion": "20.10.24+dfsg1",
            "OperatingSystem": "Debian GNU/Linux (fake)",
            "Containers": sum(len(n.engine.containers) for n in self.cluster.nodes),
            "Swarm": swarm,
        }

    def _image(self, name: str) -> tuple[int, dict[str, Any]]:
        """C{GET /images/NAME/json} of the manager's images (their command runs for ever)."""
        reference = imageReference(name)
        if reference not in self.manager.engine.images:
            raise EngineError(404, f"no such image: {name}: No such image: {reference}")
        return (
            200,
            {
                "Id": "sha256:" + reference.encode().hex()[:64].ljust(64, "0"),
                "RepoTags": [reference],
                "Config": {"Cmd": ["sleep", "infinity"], "Entrypoint": None, "Env": ["PATH=/bin"]},
            },
        )

    def _nodes(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        filters = checkFilters(parseFilters(params.get("filters")), _NODE_FILTERS)
        found = []
        for node in self.cluster.nodes:
            if "role" in filters and node.role not in filters["role"]:
                continue
            if "name" in filters and not any(node.hostname.startswith(n) for n in filters["name"]):
                continue
            if "id" in filters and not any(node.id.startswith(i) for i in filters["id"]):
                continue
            found.append(node.toJSON())
        return found

    def _service(self, ref: str) -> FakeService:
        """The service C{ref} names: its id, its name, or the one id it begins."""
        services = self.cluster.services
        if ref in services:
            return services[ref]
        for service in services.values():
            if service.name == ref:
                return service
        found = [s for s in services.values() if s.id.startswith(ref)]
        if len(found) > 1:
            raise EngineError(400, f"service {ref} is ambiguous ({len(found)} matches found)")
        if len(found) == 1 and ref:
            return found[0]
        raise EngineError(404, f"service {ref} not found")

    def _services(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        filters = checkFilters(parseFilters(params.get("filters")), _SERVICE_FILTERS)
        withStatus = flag(params.get("status"))
        found = []
        for service in self.cluster.services.values():
            if serviceMatches(service, filters):
                status = self._status(service) if withStatus else None
                found.append(service.toJSON(status))
        return found

    def _status(self, service: FakeService) -> dict[str, int]:
        """C{ServiceStatus} of C{GET /services?status=1}."""
        running = sum(
            1
            for t in self.cluster.serviceTasks(service)
            if t.desiredState == "running" and t.state == "running"
        )
        return {"RunningTasks": running, "DesiredTasks": service.replicas, "CompletedTasks": 0}

    def _update(self, service: FakeService, params: dict[str, Any], body: Any) -> dict[str, Any]:
        raw = params.get("version")
        try:
            version = int(str("" if raw is None else raw))
        except ValueError:
            shown = "" if raw is None else raw
            raise EngineError(
                400,
                f"invalid service version '{shown}': strconv.ParseUint: parsing "
                f'"{shown}": invalid syntax',
            ) from None
        self.cluster.updateService(service, body, version)
        return {"Warnings": None}

    def _task(self, ref: str) -> FakeTask:
        tasks = self.cluster.tasks
        if ref in tasks:
            return tasks[ref]
        found = [t for t in tasks.values() if t.id.startswith(ref)]
        if len(found) == 1 and ref:
            return found[0]
        raise EngineError(404, f"task {ref} not found")

    def _tasks(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        filters = checkFilters(parseFilters(params.get("filters")), _TASK_FILTERS)
        if "service" in filters:
            filters["service"] = [self._service(ref).id for ref in filters["service"]]
        if "node" in filters:
            filters["node"] = [self.findNode(ref).id for ref in filters["node"]]
        return [t.toJSON() for t in self.cluster.tasks.values() if taskMatches(t, filters)]

    # -- events ------------------------------------------------------------------

    def _emit(self, kind: str, action: str, actorId: str, attributes: dict[str, str]) -> None:
        """Tell a cluster event to the event streams."""
        nanos = max(
            int(round(self.clock.seconds() * 10**9)),
            self.events[-1]["timeNano"] + 1 if self.events else 0,
        )
        event = {
            "Type": kind,
            "Action": action,
            "Actor": {"ID": actorId, "Attributes": dict(attributes)},
            "scope": "swarm",
            "time": nanos // 10**9,
            "timeNano": nanos,
        }
        self.events.append(event)
        del self.events[:-EVENTS_KEPT]
        for feed in list(self._eventFeeds):
            if feed.accepts(event):
                self.clock.callLater(0, feed.write, json.dumps(event).encode() + b"\n")

    def _localEvent(self, event: dict[str, Any]) -> None:
        """Pass an event of the manager's own containers on."""
        for feed in list(self._eventFeeds):
            if feed.accepts(event):
                feed.write(json.dumps(event).encode() + b"\n")

    def _followEvents(self, feed: Feed, params: dict[str, Any]) -> None:
        filters = parseFilters(params.get("filters"))
        feed.accepts = lambda event: eventMatches(event, filters)
        since = sinceNanos(params.get("since"))
        if since is not None:
            # One history of the last few, as dockerd keeps (its own
            # containers' events among the cluster's).
            local = self.manager.engine.events
            history = sorted(self.events + local, key=lambda e: e["timeNano"])[-EVENTS_KEPT:]
            for event in history:
                if event["timeNano"] >= since and feed.accepts(event):
                    feed.write(json.dumps(event).encode() + b"\n")
        self._eventFeeds.append(feed)
        feed.ended.addBoth(discard, self._eventFeeds, feed)


__all__ = ["EVENTS_KEPT", "FakeSwarmEngine", "NodeEngine"]
