"""
The agents of L{pycm.testing.swarmengine.FakeSwarmEngine}'s nodes: each
runs the tasks the scheduler gave its node as containers of the node's
L{pycm.testing.dockerengine.FakeDockerEngine} (so a task runs the
simulated commands), moves them from C{assigned} to C{running} a state a
step, reports how they end, and stops them with their grace period.  An
agent of a killed node does nothing: its tasks' states stand still.
L{NodeEngine} is a node's engine as a client reaches it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs
from twisted.internet import defer
from twisted.internet.defer import Deferred
from zope.interface import implementer

from pycm.backends.docker.engine import EngineError, Stream
from pycm.backends.docker.interfaces import IDockerEngine
from pycm.errors import Unavailable
from pycm.testing.dockerengine import FakeDockerEngine
from pycm.testing.swarmstate import FakeNode, FakeTask

if TYPE_CHECKING:
    from pycm.testing.swarmtasks import Cluster


@attrs.define(eq=False)
class Agents:
    """The agents of C{cluster}'s nodes (one object: they share their ways)."""

    cluster: Cluster

    def nodeOf(self, task: FakeTask) -> FakeNode | None:
        """The node of C{task} if its agent is there to move it, else None."""
        if task.id not in self.cluster.tasks:
            return None
        node = self.cluster.node(task.nodeId)
        return node if node is not None and node.alive else None

    def step(self, task: FakeTask) -> None:
        """Move C{task} on from C{assigned} to C{ready}, one state a step."""
        node = self.nodeOf(task)
        if node is None or task.finished:
            return
        if not task.runnable:
            self.shutDown(task)
            return
        if task.state == "assigned":
            self.cluster.touch(task, "accepted", "accepted")
            self.cluster.later(self.step, task)
        elif task.state == "accepted":
            self.cluster.touch(task, "preparing", "preparing")
            self.cluster.later(self._createContainer, node, task)

    def _createContainer(self, node: FakeNode, task: FakeTask) -> None:
        service = task.service
        containerSpec = task.spec.get("ContainerSpec") or {}
        limits = (task.spec.get("Resources") or {}).get("Limits") or {}
        command = list(containerSpec.get("Command") or ()) + list(containerSpec.get("Args") or ())
        labels = {
            **(containerSpec.get("Labels") or {}),
            "com.docker.swarm.node.id": node.id,
            "com.docker.swarm.service.id": service.id,
            "com.docker.swarm.service.name": service.name,
            "com.docker.swarm.task": "",
            "com.docker.swarm.task.id": task.id,
            "com.docker.swarm.task.name": task.name,
        }
        body = {
            "Image": containerSpec.get("Image", ""),
            "Cmd": command or None,
            "Env": list(containerSpec.get("Env") or ()),
            "WorkingDir": containerSpec.get("Dir") or "",
            "User": containerSpec.get("User") or "",
            "Labels": labels,
            "StopSignal": containerSpec.get("StopSignal") or "SIGTERM",
            "HostConfig": {
                "Memory": int(limits.get("MemoryBytes") or 0),
                "NanoCpus": int(limits.get("NanoCPUs") or 0),
            },
        }

        def created(answer: tuple[int, Any]) -> None:
            task.containerId = answer[1]["Id"]
            if task.id not in self.cluster.tasks or not task.runnable:
                self.shutDown(task)
                return
            self.cluster.touch(task, "ready", "prepared")
            for hear in list(self.cluster.containerStarted):
                hear(task)
            if task.desiredState == "running":
                self.cluster.later(self.start, task)

        def refused(failure: Any) -> None:
            failure.trap(EngineError)
            task.err = failure.value.message
            task.exitCode = 0
            self.cluster.touch(task, "rejected")
            self.cluster.taskEnded(task)

        d = node.engine.request("POST", "/containers/create", {"name": task.name}, body)
        d.addCallbacks(created, refused)

    def start(self, task: FakeTask) -> None:
        node = self.nodeOf(task)
        if node is None or task.state != "ready" or task.desiredState != "running":
            return
        self.cluster.touch(task, "starting", "starting")
        task.exitCode = 0
        self.cluster.later(self._run, node, task)

    def _run(self, node: FakeNode, task: FakeTask) -> None:
        if self.nodeOf(task) is None or task.state != "starting":
            return
        if not task.runnable:
            self.shutDown(task)
            return
        engine = node.engine
        path = f"/containers/{task.containerId}"
        wait = engine.request("POST", path + "/wait", {"condition": "next-exit"}, timeout=0)

        def started(_: object) -> None:
            container = engine.containers.get(task.containerId)
            task.pid = container.pid if container is not None else 0
            if task.state == "starting":
                self.cluster.touch(task, "running", "started")
            wait.addCallbacks(lambda answer: self._exited(task, answer[1]["StatusCode"]), _ignore)

        def failed(failure: Any) -> None:
            failure.trap(EngineError)
            wait.cancel()
            wait.addErrback(_ignore)
            task.err = f"starting container failed: {failure.value.message}"
            task.exitCode = 127
            self.cluster.touch(task, "failed")
            self.cluster.taskEnded(task)

        engine.request("POST", path + "/start").addCallbacks(started, failed)

    def _exited(self, task: FakeTask, status: int) -> None:
        """C{task}'s container exited with C{status}."""
        if self.nodeOf(task) is None or task.finished:
            return
        task.exitCode = status
        task.pid = 0
        if not task.runnable and not task.nodeLost:
            self.cluster.touch(task, "shutdown", "shutdown")
            self.reap(task)
            return
        if status == 0:
            self.cluster.touch(task, "complete", "finished")
        else:
            task.err = f"task: non-zero exit ({status})"
            self.cluster.touch(task, "failed")
        if task.runnable:
            self.cluster.taskEnded(task)
        else:
            self.reap(task)

    def orphaned(self, task: FakeTask) -> None:
        """
        The node of C{task} is back after it was lost: its container (that
        ran on meanwhile) is killed, and the task fails with its exit code.
        """
        node = self.nodeOf(task)
        container = node.engine.containers.get(task.containerId) if node else None
        if node is None or task.finished or container is None:
            return
        if container.status == "running":
            node.engine.request(
                "POST", f"/containers/{task.containerId}/kill", {"signal": "SIGKILL"}
            ).addErrback(_ignore)
        else:
            self._exited(task, container.exitCode)

    def shutDown(self, task: FakeTask) -> None:
        """Stop C{task}: its container with its grace period, then C{shutdown}."""
        node = self.nodeOf(task)
        if node is None:
            if task.id in self.cluster.tasks and not task.nodeId and not task.finished:
                self.cluster.touch(task, "shutdown", "shutdown")
                self.reap(task)
            return
        if task.finished:
            self.reap(task)
        elif task.state in ("starting", "running"):
            task.exitCode = -1
            self.cluster.touch(task)
            grace = task.service.stopGrace()
            node.engine.request(
                "POST", f"/containers/{task.containerId}/stop", {"t": grace}, timeout=0
            ).addErrback(_ignore)
        else:
            self.cluster.touch(task, "shutdown", "shutdown")
            self.reap(task)

    def reap(self, task: FakeTask) -> None:
        """A task meant to be removed is deleted once it stopped."""
        if task.desiredState == "remove" and task.finished:
            self.cluster.later(self.cluster.deleteTask, task)


def unreachable(what: str) -> Unavailable:
    return Unavailable(f"cannot reach the docker engine at {what}: connection refused")


@implementer(IDockerEngine)
class NodeEngine:
    """
    The engine of one node, as a client reaches it: its
    L{FakeDockerEngine} while the node is up, L{Unavailable} while it is
    killed.
    """

    isPodman = False

    def __init__(self, node: FakeNode, up: Callable[[], bool]) -> None:
        self.node = node
        self._up = up

    @property
    def engine(self) -> FakeDockerEngine:
        engine: FakeDockerEngine = self.node.engine
        return engine

    @property
    def timeout(self) -> float:
        return self.engine.timeout

    def request(
        self,
        method: str,
        path: str,
        params: dict[str, Any] | None = None,
        body: Any = None,
        timeout: float | None = None,
        raw: bool = False,
    ) -> Deferred[Any]:
        if not self._up():
            return defer.fail(unreachable(self.node.hostname))
        return self.engine.request(method, path, params, body, timeout, raw)

    def stream(
        self,
        method: str,
        path: str,
        params: dict[str, Any] | None,
        onData: Callable[[bytes], None],
        body: Any = None,
        headerTimeout: float | None = None,
    ) -> Deferred[Stream]:
        if not self._up():
            return defer.fail(unreachable(self.node.hostname))
        return self.engine.stream(method, path, params, onData, body, headerTimeout)

    def close(self) -> Deferred[None]:
        return defer.succeed(None)


def _ignore(failure: Any) -> None:
    return None


__all__ = ["Agents", "NodeEngine", "unreachable"]
