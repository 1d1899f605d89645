"""
C{stats} on the swarm backend (L{ServiceUsage}): a service's figures are
the sums of its running tasks', each read from the engine of its node
(C{GET /containers/ID/stats?stream=false}, as the Docker backend reads a
container's), with the daemon's own CPU samples where the engine sends no
previous one.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from twisted.internet import defer

from pycm.backends.docker.engine import EngineError
from pycm.backends.docker.translate import usageFromStats
from pycm.backends.swarm.control import NodeEngines
from pycm.backends.swarm.snapshot import ServiceView, TaskView
from pycm.errors import BackendError, Unavailable
from pycm.model import Container, State
from pycm.stats import ContainerStats, CpuSampler, Usage


def _sum(values: Sequence[int | float | None]) -> Any:
    """The sum of the known values (None: none known)."""
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def addUp(usages: Sequence[Usage]) -> Usage:
    """One L{Usage} of several tasks': each figure summed where known."""
    return Usage(
        cpuSeconds=_sum([u.cpuSeconds for u in usages]),
        memory=_sum([u.memory for u in usages]),
        memoryLimit=_sum([u.memoryLimit for u in usages]),
        pids=_sum([u.pids for u in usages]),
        readBytes=_sum([u.readBytes for u in usages]),
        writeBytes=_sum([u.writeBytes for u in usages]),
        cpuPercent=(
            _sum([u.cpuPercent for u in usages])
            if all(u.cpuPercent is not None for u in usages)
            else None
        ),
    )


class ServiceUsage:
    """Reads services' figures through their tasks' nodes' engines."""

    def __init__(self, clock: Any, nodes: NodeEngines) -> None:
        self.nodes = nodes
        self.cpu = CpuSampler(clock)
        #: Service id -> the run its CPU samples are kept for (its running
        #: tasks when last read): one run a service, samples of others dropped.
        self._runs: dict[str, tuple[str, tuple[str, ...]]] = {}

    @defer.inlineCallbacks
    def stats(
        self, rows: Sequence[tuple[Container, ServiceView]], services: Collection[str]
    ) -> Any:
        """
        The rows of C{stats} for these containers (with their services):
        a running one's figures summed over its running tasks (a task on a
        node whose engine pycm was not given counts as unknown: none of
        that figure), the others' all None.

        @param services: the ids of every service there is now: the CPU
            samples of the others, and of a service's earlier tasks, are
            dropped.
        """
        running = [(c, s) for c, s in rows if c.state == State.RUNNING]
        usages = yield defer.gatherResults(
            [self._service(c, s) for c, s in running], consumeErrors=True
        ).addErrback(_firstError)
        result = [ContainerStats.idle(c) for c, _ in rows if c.state != State.RUNNING]
        for (container, service), usage in zip(running, usages):
            cpu = usage.cpuPercent if usage is not None else None
            if usage is not None and cpu is None:
                key = (service.id, tuple(sorted(t.id for t in service.tasks if t.running)))
                self._runs[service.id] = key
                cpu = self.cpu.percent(key, container.started, usage.cpuSeconds)
            result.append(ContainerStats.of(container, usage, cpu))
        alive = set(services)
        self._runs = {sid: key for sid, key in self._runs.items() if sid in alive}
        self.cpu.forgetEnded(self._runs.values)
        return result

    @defer.inlineCallbacks
    def _service(self, container: Container, service: ServiceView) -> Any:
        tasks = [t for t in service.tasks if t.running and t.containerId]
        usages = yield defer.gatherResults(
            [self._task(container, t) for t in tasks], consumeErrors=True
        ).addErrback(_firstError)
        known = [u for u in usages if u is not None]
        if not known or len(known) < len(tasks):
            # A task's figures unknown: a sum of the others would mislead.
            return None
        return addUp(known)

    @defer.inlineCallbacks
    def _task(self, container: Container, task: TaskView) -> Any:
        """
        One task's figures; None if its node's engine is unknown or does
        not answer (its node is down), or the task just stopped.
        """
        try:
            engine = self.nodes.engineFor(task.node)
        except BackendError:
            return None
        try:
            _, data = yield engine.request(
                "GET", f"/containers/{task.containerId}/stats", {"stream": False}
            )
        except Unavailable:
            return None
        except EngineError as e:
            if e.status in (404, 409):
                return None
            raise BackendError(f"docker engine of {task.node}: {e.message}") from None
        return usageFromStats(data, container.memory)


def _firstError(failure: Any) -> Any:
    if isinstance(failure.value, defer.FirstError):
        return failure.value.subFailure
    return failure


__all__ = ["ServiceUsage", "addUp"]
