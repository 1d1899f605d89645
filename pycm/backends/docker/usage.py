"""
C{stats}: what pycm's running containers use, from the engine's one-shot
stats (L{UsageReader}).
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer

from pycm.backends.docker.containers import EngineView
from pycm.backends.docker.engine import EngineError
from pycm.backends.docker.interfaces import IDockerEngine
from pycm.backends.docker.lookup import ContainerLookup
from pycm.backends.docker.statsjson import usageFromStats
from pycm.backends.docker.translate import mapEngineError
from pycm.model import Container, State
from pycm.stats import ContainerStats, CpuSampler


class UsageReader:
    """
    Reads containers' figures from one engine, with the daemon's own CPU
    samples (L{CpuSampler}) for an engine that sends no previous one.
    """

    def __init__(
        self, clock: Any, engine: IDockerEngine, view: EngineView, lookup: ContainerLookup
    ) -> None:
        self.engine = engine
        self.view = view
        self.lookup = lookup
        self.cpu = CpuSampler(clock)

    @defer.inlineCallbacks
    def stats(self, names: Any) -> Any:
        """
        One C{GET /containers/ID/stats?stream=false} per running container
        of C{names} (none: every running one), all at once
        (L{usageFromStats}); C{cpu_percent} is the engine's own interval
        when it sends a previous sample, else the daemon's.

        @return: Deferred firing with a list of L{ContainerStats}.
        """
        if names:
            containers = []
            for name in dict.fromkeys(names):
                data = yield self.lookup.resolve(name)
                containers.append(self.view.container(data))
        else:
            containers = [c for c in (yield self.lookup.list()) if c.state in State.ALIVE]
        running = [c for c in containers if c.state in State.ALIVE]
        usages = yield defer.gatherResults([self._usage(c) for c in running], consumeErrors=True)
        result = [ContainerStats.idle(c) for c in containers if c.state not in State.ALIVE]
        for container, usage in zip(running, usages):
            cpu = usage.cpuPercent if usage is not None else None
            if usage is not None and cpu is None:
                cpu = self.cpu.percent(
                    (container.id, container.started), container.started, usage.cpuSeconds
                )
            result.append(ContainerStats.of(container, usage, cpu))
        if not names:
            self.cpu.forgetEnded(lambda: [(c.id, c.started) for c in running])
        return result

    @defer.inlineCallbacks
    def _usage(self, container: Container) -> Any:
        """The engine's figures for one container; None if it just stopped."""
        try:
            _, data = yield self.engine.request(
                "GET", f"/containers/{container.id}/stats", {"stream": False}
            )
        except EngineError as e:
            if e.status in (404, 409):
                return None
            raise mapEngineError(e.status, e.message, name=container.name) from None
        return usageFromStats(data, container.memory)
