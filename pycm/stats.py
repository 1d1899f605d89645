"""
Resource usage of running containers, what C{stats} answers: a backend
reads a L{Usage} of each running container (cumulative CPU time, memory,
processes, block I/O) and L{CpuSampler} turns the CPU time into
C{cpu_percent} over the last interval.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Hashable, Iterable
from typing import Any

import attrs
from twisted.internet.interfaces import IReactorTime

from pycm.model import Container


@attrs.frozen
class Usage:
    """
    One reading of a run's counters; None where the backend cannot know.

    @ivar cpuSeconds: the CPU time (user and system) the run used so far.
    @ivar cpuPercent: set by a source that measures its own interval (the
        Docker engine's two samples): used as it is, not from C{cpuSeconds}.
    """

    cpuSeconds: float | None = None
    memory: int | None = None
    memoryLimit: int | None = None
    pids: int | None = None
    readBytes: int | None = None
    writeBytes: int | None = None
    cpuPercent: float | None = None


@attrs.frozen
class ContainerStats:
    """One row of C{stats}' reply."""

    name: str
    state: str
    cpuPercent: float | None = None
    memory: int | None = None
    memoryLimit: int | None = None
    pids: int | None = None
    readBytes: int | None = None
    writeBytes: int | None = None

    @classmethod
    def idle(cls, container: Container) -> ContainerStats:
        """A container that is not running: every figure null."""
        return cls(container.name, container.state)

    @classmethod
    def of(
        cls, container: Container, usage: Usage | None, cpuPercent: float | None
    ) -> ContainerStats:
        """A running container's row."""
        if usage is None:
            return cls(container.name, container.state, cpuPercent)
        return cls(
            name=container.name,
            state=container.state,
            cpuPercent=cpuPercent,
            memory=usage.memory,
            memoryLimit=usage.memoryLimit,
            pids=usage.pids,
            readBytes=usage.readBytes,
            writeBytes=usage.writeBytes,
        )

    def toJSON(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "state": self.state,
            "cpu_percent": self.cpuPercent,
            "memory": self.memory,
            "memory_limit": self.memoryLimit,
            "pids": self.pids,
            "read_bytes": self.readBytes,
            "write_bytes": self.writeBytes,
        }


class CpuSampler:
    """
    Keeps recent CPU-time samples per run and gives C{cpu_percent} over
    I{the last interval}:

      - it keeps a few recent samples of each run's CPU time (one at most
        every L{KEEP_EVERY} seconds);
      - a C{stats} request measures from the newest kept sample that is at
        least L{MIN_INTERVAL} (1 s) old, else from the oldest kept one, to
        now: polling every second (as C{pycm stats} and C{pycm top} do)
        gives the CPU of the last second; two clients polling at once do
        not shorten each other's interval;
      - a run's first sample gives the average since the run started.

    C{cpu_percent} is a percentage of one CPU, as Docker's: 200.0 is two
    CPUs busy for the whole interval.  A run that restarts starts over.
    """

    #: The shortest interval a C{cpu_percent} is measured over when a
    #: sample that old is kept.
    MIN_INTERVAL = 1.0
    #: A new sample is kept only this long after the last kept one.
    KEEP_EVERY = 0.25
    #: The fewest runs held before ended ones are looked for.
    FORGET_FROM = 64

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._samples: dict[Hashable, collections.deque[tuple[float, float]]] = {}
        self._forgetAt = self.FORGET_FROM

    def percent(
        self, run: Hashable, started: float | None, cpuSeconds: float | None
    ) -> float | None:
        """
        The CPU use of C{run} (any key naming one run) since the sample the
        interval starts at, in percent of one CPU; then keep this sample.

        @param started: when the run started (the first sample's base).
        """
        if cpuSeconds is None:
            return None
        now = self._clock.seconds()
        samples = self._samples.get(run)
        if samples is None:
            samples = self._samples[run] = collections.deque()
        base: tuple[float, float] | None = None
        for sample in reversed(samples):
            if now - sample[0] >= self.MIN_INTERVAL:
                base = sample
                break
        if base is not None:
            while samples[0] is not base:
                samples.popleft()
        elif samples:
            base = samples[0]
        elif started is not None:
            base = (started, 0.0)
        if not samples or now - samples[-1][0] >= self.KEEP_EVERY:
            samples.append((now, cpuSeconds))
        if base is None or now <= base[0]:
            return 0.0 if base is not None else None
        used = max(cpuSeconds - base[1], 0.0)
        return round(100.0 * used / (now - base[0]), 2)

    def forgetEnded(self, aliveRuns: Callable[[], Iterable[Hashable]]) -> None:
        """
        Forget the samples of every run not in C{aliveRuns()}, once the
        sampler holds twice as many runs as it kept at the last forgetting
        (and L{FORGET_FROM} at least): a C{stats} of one container among
        thousands does not list them all, and a caller that calls this
        after each read holds ended runs to a bounded number (the docker
        backend calls it after a C{stats} of every container only).
        """
        if len(self._samples) < self._forgetAt:
            return
        alive = set(aliveRuns())
        for run in [r for r in self._samples if r not in alive]:
            del self._samples[run]
        self._forgetAt = max(2 * len(self._samples), self.FORGET_FROM)
