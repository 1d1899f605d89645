"""
The C{stats} of the supervisor's records: each running one's usage from the
runtime's L{IRuntimeStats} (every figure None without it), its CPU share
from the L{CpuSampler}'s last reading.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from pycm.backends.supervisor.records import Record, RecordBook
from pycm.errors import BackendError, PycmError
from pycm.interfaces import IRuntime, IRuntimeStats
from pycm.model import State
from pycm.stats import ContainerStats, CpuSampler


def readStats(
    names: Sequence[str], book: RecordBook, runtime: IRuntime, cpu: CpuSampler
) -> list[ContainerStats]:
    """
    The stats of the containers named (none: the running ones).

    @raise NotFound: for a name with no container.
    @raise BackendError: if the usage could not be read.
    """
    if names:
        records = [book.lookup(name) for name in dict.fromkeys(names)]
    else:
        records = [r for r in book.byName.values() if r.state in State.ALIVE]
    try:
        return _readStats(records, runtime, cpu, book.byName.values())
    except PycmError:
        raise
    except Exception as e:
        raise BackendError(f"cannot read the containers' usage: {e}") from e


def _readStats(
    records: list[Record], runtime: IRuntime, cpu: CpuSampler, everyRecord: Iterable[Record]
) -> list[ContainerStats]:
    """
    The stats of C{records}: the idle ones first, then the running ones.

    @param everyRecord: every record of the supervisor (the sampler forgets
        the runs of those no longer alive).
    """
    running = [r for r in records if r.state in State.ALIVE and r.run is not None]
    reader = IRuntimeStats(runtime, None)
    pairs = [(r.toContainer(), r.run) for r in running]
    usages = reader.usage(pairs) if reader is not None and pairs else [None] * len(pairs)
    result = [ContainerStats.idle(r.toContainer()) for r in records if r not in running]
    for (container, _), usage in zip(pairs, usages):
        key = (container.id, container.started)
        percent = cpu.percent(
            key, container.started, usage.cpuSeconds if usage is not None else None
        )
        result.append(ContainerStats.of(container, usage, percent))
    cpu.keepOnly((r.id, r.started) for r in everyRecord if r.state in State.ALIVE)
    return result
