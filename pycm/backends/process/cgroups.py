"""
Cgroups for the runs of the process backend: each container's group, its
C{--memory} and C{--cpus} limits, and killing whatever is in it.  What this
machine can do is found at start by L{pycm.backends.process.cgroupdetect};
docs/process-backend.md says how it all fits.
"""

from __future__ import annotations

import errno
import os
import signal as _signal

import attrs

from pycm.errors import BackendError, BadRequest

#: The CPU accounting period written with a C{--cpus} quota, in microseconds.
CPU_PERIOD = 100_000
#: The smallest quota the kernel accepts, in microseconds.
MIN_CPU_QUOTA = 1_000
DEFAULT_PARENT = "/pycm"
#: The throwaway group detection writes limits to (never a container's).
PROBE_GROUP = "pycm-probe"


def movePid(procs: str, pid: int) -> None:
    """
    Move process C{pid} into the group of the C{cgroup.procs} file
    C{procs} (never creating the file: the group must exist).
    """
    fd = os.open(procs, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, str(pid).encode())
    finally:
        os.close(fd)


def writeCgroupFile(path: str, value: str) -> None:
    """Write C{value} to a cgroup file in one C{write}."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, value.encode("ascii"))
    finally:
        os.close(fd)


def readText(path: str) -> str:
    """The whole text of a small file (a cgroup file, C{/proc/self/mountinfo})."""
    with open(path) as f:
        return f.read()


#: The smallest C{--cpus} accepted (Docker's: one hundredth of a CPU).
MIN_CPUS = 0.01


def cpuQuota(cpus: float) -> int:
    """The quota, in microseconds per L{CPU_PERIOD}, for C{cpus} CPUs."""
    return max(MIN_CPU_QUOTA, round(cpus * CPU_PERIOD))


def checkCpus(cpus: float, available: int | None = None) -> None:
    """
    Refuse a C{--cpus} below L{MIN_CPUS} or above the machine's CPU count,
    as Docker does, rather than rounding it silently.

    @raise BadRequest: saying the range.
    """
    count = available if available is not None else (os.cpu_count() or 1)
    if cpus < MIN_CPUS or cpus > count:
        raise BadRequest(
            f"bad --cpus {cpus:g}: the range of CPUs is from {MIN_CPUS} to {count}"
            " (the CPUs available)"
        )


def parseOomKills(text: str) -> int | None:
    """
    The C{oom_kill} count of a v2 C{memory.events} or a v1
    C{memory.oom_control} (lines of C{KEY VALUE}): how many processes of
    the group the kernel's OOM killer killed; None if the file has no such
    line (a v1 kernel before 4.13).
    """
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "oom_kill" and value.strip().isdigit():
            return int(value)
    return None


@attrs.frozen
class OomCount:
    """
    A memory group's count of OOM events, read at a run's start and end.

    @ivar count: the group's count.
    @ivar exact: C{count} is C{oom_kill} (processes the OOM killer killed);
        False: v1 C{memory.failcnt} (times the limit was hit), which only
        says an OOM kill together with a main process ended by SIGKILL.
    """

    count: int
    exact: bool = True

    def killedSince(self, before: OomCount | None, exitCode: int | None) -> bool:
        """Did the OOM killer kill a process of the group since C{before}?"""
        start = 0 if before is None or before.exact != self.exact else before.count
        if self.count <= start:
            return False
        return self.exact or exitCode == -_signal.SIGKILL


class Cgroups:
    """
    What this daemon can enforce, and the per-container groups.

    @ivar version: 2, 1, or None when no limit can be enforced.
    @ivar limits: the enforced limits: C{memory}, C{cpus}.
    @ivar reasons: for each limit not enforced, why.
    @ivar dirs: for each enforced limit, the parent group directory.
    @ivar tracking: the parent group directory of the tracking hierarchy
        (every container gets a group there), or None.
    @ivar home: the C{cgroup.procs} file of the daemon's own group in the
        tracking hierarchy (where it goes back to after a spawn), or None.
    @ivar swapLimited: a memory limit also limits swap.
    """

    def __init__(
        self,
        version: int | None,
        dirs: dict[str, str],
        reasons: dict[str, str],
        tracking: str | None = None,
        home: str | None = None,
        swapLimited: bool = True,
    ) -> None:
        self.version = version
        self.dirs = dict(dirs)
        self.limits = frozenset(dirs)
        self.reasons = dict(reasons)
        self.tracking = tracking
        self.home = home
        self.swapLimited = swapLimited

    def describe(self) -> str:
        """One line for the daemon's log."""
        track = (
            f"every container tracked in a cgroup under {self.tracking}"
            if self.tracking
            else "containers NOT tracked by cgroups (process group and run marker only)"
        )
        if not self.limits:
            return (
                track
                + "; no resource limits: "
                + "; ".join(f"{k}: {v}" for k, v in sorted(self.reasons.items()))
            )
        parts = [f"{limit} via {path}" for limit, path in sorted(self.dirs.items())]
        if "memory" in self.limits and not self.swapLimited:
            parts.append("WARNING: swap is not limited (no swap accounting)")
        return f"{track}; cgroup v{self.version}: " + ", ".join(parts)

    def check(self, memory: int | None, cpus: float | None) -> None:
        """
        Refuse limits this daemon cannot enforce, or bad values.

        @raise BadRequest: naming the option and why.
        """
        for option, value in (("memory", memory), ("cpus", cpus)):
            if value is None:
                continue
            if option not in self.limits:
                raise BadRequest(
                    f"--{option} cannot be enforced by this daemon: "
                    f"{self.reasons.get(option, 'no cgroup controller')}"
                )
            if value <= 0:
                raise BadRequest(f"bad --{option} {value}: it must be positive")
        if cpus is not None:
            checkCpus(cpus)

    def groupDirs(self, group: str, memory: bool, cpus: bool) -> list[str]:
        """The group directories of C{group}: tracking, then the limits it uses."""
        wanted = [k for k, used in (("memory", memory), ("cpus", cpus)) if used]
        dirs: list[str] = []
        if self.tracking is not None:
            dirs.append(os.path.join(self.tracking, group))
        for limit in wanted:
            path = os.path.join(self.dirs[limit], group)
            if path not in dirs:
                dirs.append(path)
        return dirs

    def prepare(self, group: str, memory: int | None, cpus: float | None) -> list[str]:
        """
        Create C{group} with its limits written; if it cannot be, none of
        it is left.

        @return: the C{cgroup.procs} files the process must join (the
            tracking group's first; empty without tracking nor limits).
        @raise BadRequest: for a limit that cannot be enforced.
        @raise BackendError: if the group cannot be set up.
        """
        # The check at start (create checks too): a record made by a daemon
        # with other limits, or the runtime used on its own, must be refused
        # here (tests.test_process.RuntimeFakeTests.test_spawnRefusedUpFront,
        # tests.test_cgroups.FakeTreeTests.test_check).
        self.check(memory, cpus)
        procs = []
        try:
            for path in self.groupDirs(group, memory is not None, cpus is not None):
                makeGroupDir(path)
                procs.append(os.path.join(path, "cgroup.procs"))
            if memory is not None:
                self._writeMemoryLimit(os.path.join(self.dirs["memory"], group), memory)
            if cpus is not None:
                self._writeCpuLimit(os.path.join(self.dirs["cpus"], group), cpus)
        except OSError as e:
            self.release(group)  # what was made of it, still empty
            raise BackendError(f"cannot set up the cgroup of {group}: {e}") from e
        return procs

    def _writeMemoryLimit(self, path: str, memory: int) -> None:
        if self.version == 2:
            writeCgroupFile(os.path.join(path, "memory.max"), str(memory))
            try:
                # No swap either, or the limit is only a suggestion.
                writeCgroupFile(os.path.join(path, "memory.swap.max"), "0")
            except OSError:
                self.swapLimited = False
        else:
            writeCgroupFile(os.path.join(path, "memory.limit_in_bytes"), str(memory))
            try:
                writeCgroupFile(os.path.join(path, "memory.memsw.limit_in_bytes"), str(memory))
            except OSError:
                self.swapLimited = False

    def _writeCpuLimit(self, path: str, cpus: float) -> None:
        quota = cpuQuota(cpus)
        if self.version == 2:
            writeCgroupFile(os.path.join(path, "cpu.max"), f"{quota} {CPU_PERIOD}")
        else:
            writeCgroupFile(os.path.join(path, "cpu.cfs_period_us"), str(CPU_PERIOD))
            writeCgroupFile(os.path.join(path, "cpu.cfs_quota_us"), str(quota))

    def oomCount(self, group: str) -> OomCount | None:
        """
        C{group}'s count of OOM kills (L{OomCount}): v2 C{memory.events},
        v1 C{memory.oom_control}, else v1 C{memory.failcnt}, in its memory
        group (or a v2 tracking group with the memory controller); None if
        it has none or it cannot be read (gone already).
        """
        dirs = [self.dirs["memory"]] if "memory" in self.dirs else []
        if self.version != 1 and self.tracking is not None:
            dirs.append(self.tracking)
        name = "memory.oom_control" if self.version == 1 else "memory.events"
        for parent in dict.fromkeys(dirs):
            path = os.path.join(parent, group)
            try:
                # One look where there is no such group (a run without a limit).
                count = parseOomKills(readText(os.path.join(path, name)))
                if count is not None:
                    return OomCount(count)
                text = readText(os.path.join(path, "memory.failcnt")).strip()
            except OSError:
                continue
            if text.isdigit():
                return OomCount(int(text), exact=False)
        return None

    def dirsOf(self, group: str) -> list[str]:
        """Every directory C{group} may have: tracking, then each limit's."""
        return self.groupDirs(group, "memory" in self.dirs, "cpus" in self.dirs)

    def pids(self, group: str) -> list[int]:
        """The processes in C{group}, in any of its hierarchies."""
        found: set[int] = set()
        for path in self.dirsOf(group):
            try:
                text = readText(os.path.join(path, "cgroup.procs"))
            except OSError:
                continue
            found.update(int(word) for word in text.split() if word.isdigit())
        return sorted(found)

    def killAll(self, group: str, rounds: int = 10) -> list[int]:
        """
        SIGKILL every process in C{group} (never the daemon itself), again
        while new ones appear (a process may fork while it is being killed);
        return their pids.
        """
        me = os.getpid()
        killed: list[int] = []
        for _ in range(rounds):
            pids = [pid for pid in self.pids(group) if pid != me and pid not in killed]
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, _signal.SIGKILL)
                except OSError:
                    pass
            killed.extend(pids)
        return killed

    def groups(self) -> set[str]:
        """The names of the groups now under the parent(s)."""
        names: set[str] = set()
        for parent in {*self.dirs.values(), *([self.tracking] if self.tracking else [])}:
            try:
                entries = os.scandir(parent)
            except OSError:
                continue
            with entries:
                names.update(e.name for e in entries if e.is_dir() and e.name != PROBE_GROUP)
        return names

    def release(self, group: str) -> bool:
        """
        Remove C{group}'s directories.

        @return: True if none is left (False: processes still in it).
        """
        clean = True
        for path in reversed(self.dirsOf(group)):
            try:
                os.rmdir(path)
            except FileNotFoundError:
                pass
            except OSError as e:
                if e.errno in (errno.EBUSY, errno.ENOTEMPTY):
                    clean = False
        return clean


def makeGroupDir(path: str) -> None:
    """
    Make the group directory C{path} (and its parents, the first time):
    one C{mkdir} in the common case, as this runs for every start.
    """
    try:
        os.mkdir(path)
    except FileExistsError:
        if not os.path.isdir(path):
            raise
    except FileNotFoundError:
        os.makedirs(path, exist_ok=True)


NO_CGROUPS = Cgroups(
    None,
    {},
    {
        "memory": "resource limits are turned off",
        "cpus": "resource limits are turned off",
    },
)


def noCgroups(reason: str) -> Cgroups:
    """No limit enforced, for C{reason}."""
    return Cgroups(None, {}, {"memory": reason, "cpus": reason})
