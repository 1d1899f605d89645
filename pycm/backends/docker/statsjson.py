"""
The engine's C{GET /containers/ID/stats} as pycm's L{Usage}
(L{usageFromStats}), with no I/O.
"""

from __future__ import annotations

from typing import Any

from pycm.stats import Usage


def usageFromStats(data: Any, memoryLimit: int | None) -> Usage:
    """
    A L{Usage} from the engine's C{GET /containers/ID/stats?stream=false}.

    C{cpuPercent} is Docker's own when the engine sent a previous sample
    (C{precpu_stats}): the container's share of the host's CPU time between
    the two, times the online CPUs.  Memory is Docker's figure too: usage
    less the inactive page cache.  The limit is C{memoryLimit} (the
    container's C{--memory}): the engine reports the host's memory for a
    container without one.  Block I/O sums C{io_service_bytes_recursive}.
    """
    if not isinstance(data, dict):
        return Usage()
    cpu = data.get("cpu_stats") or {}
    pre = data.get("precpu_stats") or {}
    total = (cpu.get("cpu_usage") or {}).get("total_usage")
    cpuSeconds = total / 1e9 if isinstance(total, (int, float)) else None
    percent = None
    preTotal = (pre.get("cpu_usage") or {}).get("total_usage")
    system, preSystem = cpu.get("system_cpu_usage"), pre.get("system_cpu_usage")
    if (
        isinstance(total, (int, float))
        and isinstance(preTotal, (int, float))
        and isinstance(system, (int, float))
        and isinstance(preSystem, (int, float))
        and system > preSystem
    ):
        online = cpu.get("online_cpus") or len(
            (cpu.get("cpu_usage") or {}).get("percpu_usage") or ()
        ) or 1
        percent = round(max(total - preTotal, 0) / (system - preSystem) * online * 100.0, 2)
    memory = None
    mem = data.get("memory_stats") or {}
    if isinstance(mem.get("usage"), int):
        stat = mem.get("stats") or {}
        inactive = stat.get("total_inactive_file", stat.get("inactive_file", 0))
        memory = max(mem["usage"] - (inactive if isinstance(inactive, int) else 0), 0)
    pids = (data.get("pids_stats") or {}).get("current")
    entries = (data.get("blkio_stats") or {}).get("io_service_bytes_recursive")
    readBytes = writeBytes = None
    if isinstance(entries, list):
        readBytes = writeBytes = 0
        for entry in entries:
            op = str((entry or {}).get("op", "")).lower()
            value = (entry or {}).get("value")
            if not isinstance(value, int):
                continue
            if op == "read":
                readBytes += value
            elif op == "write":
                writeBytes += value
    return Usage(
        cpuSeconds=cpuSeconds,
        memory=memory,
        memoryLimit=memoryLimit,
        pids=pids if isinstance(pids, int) else None,
        readBytes=readBytes,
        writeBytes=writeBytes,
        cpuPercent=percent,
    )
