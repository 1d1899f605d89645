"""
C{GET /services/ID/logs} of L{pycm.testing.swarmengine.FakeSwarmEngine}:
the logs of a service's tasks' containers on their nodes, each line
tagged, with C{details}, with its node, service and task ids as the real
manager tags them; C{tail} and C{since} per task, as the real one does.
A follow takes in the service's new tasks, and goes on (silent) after the
service is removed, as the real one does, until its reader cancels it.
"""

from __future__ import annotations

import struct
from typing import Any

import attrs
from twisted.internet.defer import Deferred

from pycm.backends.docker.engine import EngineError
from pycm.testing.dockerstate import FakeContainer, Feed, discard, flag, frame
from pycm.testing.fakeengine import writeBody
from pycm.testing.swarmstate import FakeService, FakeTask
from pycm.testing.swarmtasks import Cluster

_STREAMS = {1: "stdout", 2: "stderr"}
_HEADER = struct.Struct(">BxxxL")


@attrs.define(eq=False)
class _Follow:
    """One client following a service's logs."""

    feed: Feed
    service: FakeService
    params: dict[str, Any]

    def line(self, task: FakeTask, stream: str, nanos: int, text: bytes) -> bytes:
        """One line of C{task} in the multiplexed format, tagged if asked."""
        if flag(self.params.get("details")):
            text = task.logAttributes() + b" " + text
        return frame(stream, nanos, text, flag(self.params.get("timestamps")))

    def wants(self, stream: str) -> bool:
        return flag(self.params.get(stream))


@attrs.define(eq=False)
class ServiceLogs:
    """The service logs of a cluster, and the clients following them."""

    cluster: Cluster
    follows: list[_Follow] = attrs.Factory(list)

    def __attrs_post_init__(self) -> None:
        self.cluster.containerStarted.append(self._newContainer)

    def check(self, params: dict[str, Any]) -> None:
        """@raise EngineError: as dockerd's, for logs of no stream."""
        if not (flag(params.get("stdout")) or flag(params.get("stderr"))):
            raise EngineError(500, "Bad parameters: you must choose at least one stream")

    def _containers(self, service: FakeService) -> list[tuple[FakeTask, FakeContainer]]:
        """The tasks of C{service} with a container on a live node, slot by slot."""
        found = []
        tasks = sorted(self.cluster.serviceTasks(service), key=lambda t: (t.slot, t.created))
        for task in tasks:
            node = self.cluster.node(task.nodeId)
            if node is None or not node.alive or not task.containerId:
                continue
            container = node.engine.containers.get(task.containerId)
            if container is not None:
                found.append((task, container))
        return found

    def backlog(self, service: FakeService, params: dict[str, Any]) -> bytes:
        """The body of C{GET /services/ID/logs} without C{follow}."""
        self.check(params)
        reader = _Follow(Feed(lambda data: None, Deferred()), service, params)
        return b"".join(
            reader.line(task, stream, nanos, text)
            for task, container in self._containers(service)
            for nanos, stream, text in container.backlog(params)
        )

    def follow(self, feed: Feed, service: FakeService, params: dict[str, Any]) -> None:
        """Write the backlog to C{feed}, then the tasks' new lines as they come."""
        follow = _Follow(feed, service, params)
        if service.id not in self.cluster.services:
            feed.end()
            return
        if not flag(params.get("follow")):
            # The manager's answer of a read, a piece a turn.
            writeBody(self.cluster.clock, feed, self.backlog(service, params))
            return
        for task, container in self._containers(service):
            for nanos, stream, text in container.backlog(params):
                feed.write(follow.line(task, stream, nanos, text))
            if container.status in ("created", "running"):
                self._listen(follow, task, container)
        self.follows.append(follow)
        feed.ended.addBoth(self._forget, follow)

    def _forget(self, result: object, follow: _Follow) -> object:
        if follow in self.follows:
            self.follows.remove(follow)
        return result

    def _newContainer(self, task: FakeTask) -> None:
        """A task of a followed service got a container: follow it too."""
        node = self.cluster.node(task.nodeId)
        if node is None:
            return
        container = node.engine.containers.get(task.containerId)
        for follow in list(self.follows):
            if follow.service is task.service and container is not None:
                self._listen(follow, task, container)

    def _listen(self, follow: _Follow, task: FakeTask, container: FakeContainer) -> None:
        """Pass the new lines of C{container} (of C{task}) on to C{follow}."""

        def received(data: bytes) -> None:
            while len(data) >= _HEADER.size:
                number, length = _HEADER.unpack_from(data)
                payload = data[_HEADER.size : _HEADER.size + length]
                data = data[_HEADER.size + length :]
                stream = _STREAMS.get(number, "stdout")
                if follow.wants(stream):
                    follow.feed.write(
                        follow.line(task, stream, self.cluster.now(), payload.rstrip(b"\n"))
                    )

        listener = Feed(received, Deferred())
        container.followers.append(listener)
        follow.feed.ended.addBoth(discard, container.followers, listener)

    def endAll(self) -> None:
        for follow in list(self.follows):
            follow.feed.end()


__all__ = ["ServiceLogs"]
