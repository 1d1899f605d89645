"""
The C{stats} of the supervisor's records: each running one's usage from the
runtime's L{IRuntimeStats} (every figure None without it), its CPU share
from the L{CpuSampler}'s last reading.

The usage of many running containers is read L{USAGE_SLICE} at a time
between other requests (L{pycm.slicedwork}): on the process backend one
container's files take about 60 µs to read, so a C{stats} of 2,000 held
the reactor for 130-200 ms, every second for each C{pycm top}.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from twisted.internet.defer import Deferred, fail, maybeDeferred

from pycm.backends.supervisor.records import Record, RecordBook
from pycm.errors import BackendError, PycmError
from pycm.interfaces import IRuntime, IRuntimeStats
from pycm.model import State
from pycm.slicedwork import Job, SlicedWork, runAtOnce
from pycm.stats import ContainerStats, CpuSampler, Usage

#: Running containers whose usage is read in one slice (3-5 ms on the
#: process backend); a C{stats} of no more is answered at once.
USAGE_SLICE = 50


def readStats(
    names: Sequence[str],
    book: RecordBook,
    runtime: IRuntime,
    cpu: CpuSampler,
    slices: SlicedWork | None = None,
) -> Deferred[list[ContainerStats]]:
    """
    The stats of the containers named (none: the running ones), a slice at
    a time on C{slices} when more than L{USAGE_SLICE} are running (at once
    without C{slices}).

    @return: a Deferred that fails with L{pycm.errors.NotFound} for a name
        with no container, L{BackendError} if the usage could not be read.
    """
    try:
        if names:
            records = [book.lookup(name) for name in dict.fromkeys(names)]
        else:
            records = [r for r in book.byName.values() if r.state in State.ALIVE]
    except Exception:
        return fail()
    job = _statsJob(records, runtime, cpu, book)
    if slices is None or sum(1 for r in records if _running(r)) <= USAGE_SLICE:
        return maybeDeferred(runAtOnce, job)
    return slices.run(job)


def _running(record: Record) -> bool:
    return record.state in State.ALIVE and record.run is not None


def _statsJob(
    records: list[Record], runtime: IRuntime, cpu: CpuSampler, book: RecordBook
) -> Job[list[ContainerStats]]:
    """
    The stats of C{records}: the idle ones first, then the running ones,
    read L{USAGE_SLICE} a slice.  A container that stopped while earlier
    slices were read is idle; one removed meanwhile is left out.  The
    sampler then forgets ended runs (L{CpuSampler.forgetEnded}).
    """
    reader = IRuntimeStats(runtime, None)
    result = [ContainerStats.idle(r.toContainer()) for r in records if not _running(r)]
    running = [r for r in records if _running(r)]
    for start in range(0, len(running), USAGE_SLICE):
        if start:
            yield None
        pairs = []
        for r in running[start : start + USAGE_SLICE]:
            if book.byName.get(r.name) is not r:
                continue
            if _running(r):
                pairs.append((r.toContainer(), r.run))
            else:
                result.append(ContainerStats.idle(r.toContainer()))
        usages = _usage(reader, pairs) if pairs else []
        for (container, _), usage in zip(pairs, usages):
            key = (container.id, container.started)
            percent = cpu.percent(
                key, container.started, usage.cpuSeconds if usage is not None else None
            )
            result.append(ContainerStats.of(container, usage, percent))
    cpu.forgetEnded(
        lambda: [(r.id, r.started) for r in book.byName.values() if r.state in State.ALIVE]
    )
    return result


def _usage(reader: IRuntimeStats | None, pairs: list[Any]) -> list[Usage | None]:
    """The runtime's reading of these runs (Nones without a reader)."""
    if reader is None:
        return [None] * len(pairs)
    try:
        return list(reader.usage(pairs))
    except PycmError:
        raise
    except Exception as e:
        raise BackendError(f"cannot read the containers' usage: {e}") from e
