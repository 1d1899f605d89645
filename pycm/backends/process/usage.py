"""
The process backend's C{stats}: each run's usage from its cgroups, else
from C{/proc} (docs/process-backend.md says which file gives which figure).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TypeVar

import attrs

from pycm.backends.process import procfs
from pycm.backends.process.cgroups import Cgroups
from pycm.stats import Usage

_TICK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")
_Figure = TypeVar("_Figure", int, float)
#: A v1 memory limit at least this large means "no limit".
_NO_LIMIT = 2**60


def _read(path: str) -> str | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return os.read(fd, 65536).decode("ascii", "replace")
    except OSError:
        return None
    finally:
        os.close(fd)


def _keyed(text: str | None, key: str) -> int | None:
    """The value of C{key} in a C{KEY VALUE} per line cgroup file."""
    if text is None:
        return None
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _number(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text.strip())
    except ValueError:
        return None


def parseIOStat(text: str) -> tuple[int, int]:
    """C{(rbytes, wbytes)} summed over the devices of a v2 C{io.stat}."""
    read = written = 0
    for line in text.splitlines():
        for field in line.split()[1:]:
            key, _, value = field.partition("=")
            if key == "rbytes" and value.isdigit():
                read += int(value)
            elif key == "wbytes" and value.isdigit():
                written += int(value)
    return read, written


class CgroupFiles:
    """
    Reads a group's interface files, remembering which ones a hierarchy
    does not have (a v2 group without the memory controller has no
    C{memory.current}; its siblings have none either): each absence is
    learnt from a directory where another file was read, so a group that
    vanished meanwhile teaches nothing.
    """

    def __init__(self) -> None:
        self._absent: set[tuple[str, str]] = set()
        self._missed: list[tuple[str, str]] = []
        self._found = False

    def read(self, directory: str, name: str) -> str | None:
        parent = directory.rpartition("/")[0]
        if (parent, name) in self._absent:
            return None
        text = _read(f"{directory}/{name}")
        if text is None:
            self._missed.append((parent, name))
        else:
            self._found = True
        return text

    def done(self) -> None:
        """The end of one directory's reads: learn what it lacked."""
        if self._found:
            self._absent.update(self._missed)
        self._missed, self._found = [], False


def cgroupUsage(dirs: Sequence[str], files: CgroupFiles | None = None) -> Usage:
    """What the cgroup files in C{dirs} say (None where none does)."""
    files = files if files is not None else CgroupFiles()
    cpu: float | None = None
    memory = limit = pids = readBytes = writeBytes = None
    for path in dirs:
        if cpu is None:
            usec = _keyed(files.read(path, "cpu.stat"), "usage_usec")
            if usec is not None:
                cpu = usec / 1e6
            else:
                nsec = _number(files.read(path, "cpuacct.usage"))
                cpu = None if nsec is None else nsec / 1e9
        if memory is None:
            current = _number(files.read(path, "memory.current"))
            if current is not None:
                inactive = _keyed(files.read(path, "memory.stat"), "inactive_file")
                memory = max(current - (inactive or 0), 0)
                limit = _number(files.read(path, "memory.max"))
            else:
                current = _number(files.read(path, "memory.usage_in_bytes"))
                if current is not None:
                    stat = files.read(path, "memory.stat")
                    inactive = _keyed(stat, "total_inactive_file")
                    memory = max(current - (inactive or 0), 0)
                    limit = _number(files.read(path, "memory.limit_in_bytes"))
                    if limit is not None and limit >= _NO_LIMIT:
                        limit = None
        if pids is None:
            pids = _number(files.read(path, "pids.current"))
        if readBytes is None:
            text = files.read(path, "io.stat")
            if text is not None:
                readBytes, writeBytes = parseIOStat(text)
        files.done()
    return Usage(cpu, memory, limit, pids, readBytes, writeBytes)


def processUsage(pids: Sequence[int], proc: str = procfs.PROC, io: bool = True) -> Usage:
    """
    The sums over processes C{pids} (see the module docstring); without
    C{io}, the I/O is not read (None).
    """
    ticks = threads = pages = 0
    readBytes: int | None = 0 if io else None
    writeBytes: int | None = 0 if io else None
    for pid in pids:
        stat = _read(f"{proc}/{pid}/stat")
        if stat is None:
            continue
        try:
            fields = stat[stat.rindex(")") + 1 :].split()
            # fields[N - 3] is field N of proc(5).
            ticks += sum(int(f) for f in fields[11:15])
            threads += int(fields[17])
            resident = int(fields[21])
        except (ValueError, IndexError):
            continue
        pages += resident or _residentPages(_read(f"{proc}/{pid}/statm"))
        if readBytes is None or writeBytes is None:
            continue
        read, written = _ioBytes(_read(f"{proc}/{pid}/io"))
        if read is None or written is None:
            readBytes = writeBytes = None
        else:
            readBytes += read
            writeBytes += written
    return Usage(ticks / _TICK, pages * _PAGE, None, threads, readBytes, writeBytes)


def _residentPages(text: str | None) -> int:
    """
    The resident pages of a C{/proc/PID/statm} (its second field), 0 if
    unreadable.  C{stat}'s figure is the kernel's per-CPU estimate (Linux
    6.2 on), which reads 0 for a process that has not yet run since its
    exec; recent kernels give C{statm} the exact sum: it is read then only.
    """
    fields = (text or "").split()
    return int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else 0


def _ioBytes(text: str | None) -> tuple[int | None, int | None]:
    """C{read_bytes} and C{write_bytes} of a C{/proc/PID/io}."""
    found: dict[str, int] = {}
    for line in (text or "").splitlines():
        key, _, value = line.partition(": ")
        if key in ("read_bytes", "write_bytes") and value.isdigit():
            found[key] = int(value)
    return found.get("read_bytes"), found.get("write_bytes")


def _either(first: _Figure | None, then: _Figure | None) -> _Figure | None:
    """C{first}, or C{then} if C{first} is None."""
    return first if first is not None else then


def _merge(first: Usage, then: Usage) -> Usage:
    """C{first}'s figures, with C{then}'s where C{first} has None."""
    return Usage(
        _either(first.cpuSeconds, then.cpuSeconds),
        _either(first.memory, then.memory),
        first.memoryLimit if first.memory is not None else then.memoryLimit,
        _either(first.pids, then.pids),
        _either(first.readBytes, then.readBytes),
        first.writeBytes if first.readBytes is not None else then.writeBytes,
    )


def _complete(usage: Usage) -> bool:
    return None not in (usage.cpuSeconds, usage.memory, usage.pids, usage.readBytes)


class UsageReader:
    """
    Reads runs' usage for one runtime, keeping what it learnt of the
    hierarchies (L{CgroupFiles}) from one request to the next.
    """

    def __init__(self, cgroups: Cgroups, proc: str = procfs.PROC) -> None:
        self.cgroups = cgroups
        self.proc = proc
        self.files = CgroupFiles()

    def read(self, runs: Sequence[tuple[str | None, int, int | None, float | None]]) -> list[Usage]:
        """
        The usage of each run, given as C{(group, pid, memory, cpus)}: its
        cgroup's name (None without one), its process group, and the
        limits it was started with (the groups it has; a memory limit is
        also what a hierarchy without the memory controller cannot tell).
        """
        result: list[Usage] = []
        groupless: dict[int, int] = {}
        for index, (group, pgid, memoryLimit, cpus) in enumerate(runs):
            if group is None:
                usage = Usage()
                groupless[pgid] = index
            else:
                dirs = self.cgroups.groupDirs(group, memoryLimit is not None, cpus is not None)
                usage = cgroupUsage(dirs, self.files)
                if not _complete(usage):
                    pids = self._members(dirs[0])
                    fallback = processUsage(pids, self.proc, io=usage.readBytes is None)
                    usage = _merge(usage, fallback)
            if usage.memoryLimit is None and memoryLimit is not None:
                usage = attrs.evolve(usage, memoryLimit=memoryLimit)
            result.append(usage)
        if groupless:
            members: dict[int, list[int]] = {pgid: [] for pgid in groupless}
            for stat in procfs.allStats(self.proc):
                if not stat.alive:
                    continue
                if stat.pgrp in members:
                    members[stat.pgrp].append(stat.pid)
                elif stat.pid in members:
                    # The leader itself, between its spawn and its setsid.
                    members[stat.pid].append(stat.pid)
            for pgid, index in groupless.items():
                usage = processUsage(members[pgid], self.proc)
                result[index] = attrs.evolve(usage, memoryLimit=runs[index][2])
        return result

    def _members(self, directory: str) -> list[int]:
        text = _read(f"{directory}/cgroup.procs")
        return [int(word) for word in text.split() if word.isdigit()] if text else []
