"""
Resource limits for host processes through cgroups: C{--memory} and
C{--cpus}.

At start, L{detect} finds what this machine has -- the unified hierarchy
(cgroup v2) with the C{memory} and C{cpu} controllers, or the v1
hierarchies C{memory} and C{cpu} -- and proves it can use them by creating
the parent group (C{/pycm} at the hierarchy root, like Docker's
C{/docker}; the C{cgroup-parent} option changes it) and a probe group in
it, writing a limit, and removing the probe.  Each limit that passed is in
L{Cgroups.limits}; a limit that did not is refused for every container,
with the reason in L{Cgroups.reasons}, never silently ignored.

A container with limits gets its own group C{PARENT/NAME-ID} in each
hierarchy needed, with the limits written before its process starts; the
process joins it itself (L{Cgroups.prepare} returns the C{cgroup.procs}
files to write its pid to) before it executes the command, so every child
it ever forks is inside.  Containers without limits get no group.

v2 files: C{memory.max}, C{cpu.max} (C{"QUOTA PERIOD"}).  v1 files:
C{memory.limit_in_bytes}, C{cpu.cfs_period_us} and C{cpu.cfs_quota_us}.
"""

from __future__ import annotations

import errno
import os
import signal as _signal
from collections.abc import Iterable

import attrs

from pycm.errors import BackendError, BadRequest

#: The CPU accounting period written with a C{--cpus} quota, in microseconds.
CPU_PERIOD = 100_000
#: The smallest quota the kernel accepts, in microseconds.
MIN_CPU_QUOTA = 1_000
DEFAULT_PARENT = "/pycm"
_PROBE = "pycm-probe"


@attrs.frozen
class Mount:
    """One cgroup hierarchy mounted on this machine."""

    path: str
    version: int
    controllers: frozenset[str]


def parseMountinfo(text: str) -> list[Mount]:
    """The cgroup mounts listed in the text of C{/proc/self/mountinfo}."""
    mounts = []
    for line in text.splitlines():
        before, sep, after = line.partition(" - ")
        if not sep:
            continue
        fields = before.split()
        fsType, _, superOptions = (after.split() + ["", "", ""])[:3]
        if len(fields) < 5:
            continue
        path = fields[4].replace("\\040", " ")
        if fsType == "cgroup2":
            mounts.append(Mount(path, 2, frozenset()))
        elif fsType == "cgroup":
            options = frozenset(superOptions.split(","))
            mounts.append(Mount(path, 1, options & {"memory", "cpu", "cpuacct"}))
    return mounts


def _write(path: str, value: str) -> None:
    """Write C{value} to a cgroup file in one C{write}."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, value.encode("ascii"))
    finally:
        os.close(fd)


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def cpuQuota(cpus: float) -> int:
    """The quota, in microseconds per L{CPU_PERIOD}, for C{cpus} CPUs."""
    return max(MIN_CPU_QUOTA, round(cpus * CPU_PERIOD))


class Cgroups:
    """
    What this daemon can enforce, and the per-container groups.

    @ivar version: 2, 1, or None when no limit can be enforced.
    @ivar limits: the enforced limits: C{memory}, C{cpus}.
    @ivar reasons: for each limit not enforced, why.
    @ivar dirs: for each enforced limit, the parent group directory.
    """

    def __init__(
        self,
        version: int | None,
        dirs: dict[str, str],
        reasons: dict[str, str],
    ) -> None:
        self.version = version
        self.dirs = dict(dirs)
        self.limits = frozenset(dirs)
        self.reasons = dict(reasons)

    def describe(self) -> str:
        """One line for the daemon's log."""
        if not self.limits:
            return "no resource limits: " + "; ".join(
                f"{k}: {v}" for k, v in sorted(self.reasons.items())
            )
        parts = [f"{limit} via {path}" for limit, path in sorted(self.dirs.items())]
        return f"cgroup v{self.version}: " + ", ".join(parts)

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

    def groupDirs(self, group: str, memory: bool, cpus: bool) -> list[str]:
        """The group directories of C{group} for the limits it uses."""
        wanted = [k for k, used in (("memory", memory), ("cpus", cpus)) if used]
        dirs: list[str] = []
        for limit in wanted:
            path = os.path.join(self.dirs[limit], group)
            if path not in dirs:
                dirs.append(path)
        return dirs

    def prepare(self, group: str, memory: int | None, cpus: float | None) -> list[str]:
        """
        Create C{group} with its limits written.

        @return: the C{cgroup.procs} files the process must join (empty
            without limits).
        @raise BadRequest: for a limit that cannot be enforced.
        @raise BackendError: if the group cannot be set up.
        """
        self.check(memory, cpus)
        procs = []
        try:
            for path in self.groupDirs(group, memory is not None, cpus is not None):
                os.makedirs(path, exist_ok=True)
                procs.append(os.path.join(path, "cgroup.procs"))
            if memory is not None:
                self._writeMemory(os.path.join(self.dirs["memory"], group), memory)
            if cpus is not None:
                self._writeCpus(os.path.join(self.dirs["cpus"], group), cpus)
        except OSError as e:
            raise BackendError(f"cannot set up the cgroup of {group}: {e}") from e
        return procs

    def _writeMemory(self, path: str, memory: int) -> None:
        if self.version == 2:
            _write(os.path.join(path, "memory.max"), str(memory))
            try:
                # No swap either, or the limit is only a suggestion.
                _write(os.path.join(path, "memory.swap.max"), "0")
            except OSError:
                pass
        else:
            _write(os.path.join(path, "memory.limit_in_bytes"), str(memory))
            try:
                _write(os.path.join(path, "memory.memsw.limit_in_bytes"), str(memory))
            except OSError:
                pass

    def _writeCpus(self, path: str, cpus: float) -> None:
        quota = cpuQuota(cpus)
        if self.version == 2:
            _write(os.path.join(path, "cpu.max"), f"{quota} {CPU_PERIOD}")
        else:
            _write(os.path.join(path, "cpu.cfs_period_us"), str(CPU_PERIOD))
            _write(os.path.join(path, "cpu.cfs_quota_us"), str(quota))

    def pids(self, group: str) -> list[int]:
        """The processes in C{group}, in any of its hierarchies."""
        found: set[int] = set()
        for path in self.groupDirs(group, "memory" in self.dirs, "cpus" in self.dirs):
            try:
                text = _read(os.path.join(path, "cgroup.procs"))
            except OSError:
                continue
            found.update(int(word) for word in text.split() if word.isdigit())
        return sorted(found)

    def killAll(self, group: str) -> list[int]:
        """SIGKILL every process still in C{group}; return their pids."""
        pids = self.pids(group)
        for pid in pids:
            try:
                os.kill(pid, _signal.SIGKILL)
            except OSError:
                pass
        return pids

    def release(self, group: str) -> bool:
        """
        Remove C{group}'s directories.

        @return: True if none is left (False: processes still in it).
        """
        clean = True
        for path in self.groupDirs(group, "memory" in self.dirs, "cpus" in self.dirs):
            try:
                os.rmdir(path)
            except FileNotFoundError:
                pass
            except OSError as e:
                if e.errno in (errno.EBUSY, errno.ENOTEMPTY):
                    clean = False
        return clean


NO_CGROUPS = Cgroups(
    None,
    {},
    {
        "memory": "resource limits are turned off",
        "cpus": "resource limits are turned off",
    },
)


def _ensureV2Parent(mount: str, parent: str, controllers: Iterable[str]) -> None:
    """
    Make C{mount/parent} exist with C{controllers} enabled for its children:
    each level from the root down delegates them to the next.
    """
    levels = [mount]
    for part in [p for p in parent.split("/") if p]:
        levels.append(os.path.join(levels[-1], part))
    for level in levels:
        os.makedirs(level, exist_ok=True)
        try:
            have = set(_read(os.path.join(level, "cgroup.subtree_control")).split())
        except FileNotFoundError:  # only on a fake tree: cgroupfs always has it
            have = set()
        missing = [c for c in controllers if c not in have]
        if missing:
            _write(
                os.path.join(level, "cgroup.subtree_control"),
                " ".join("+" + c for c in missing),
            )


def _probe(cgroups: Cgroups, limit: str) -> None:
    """Prove a limit can be set by setting it on a throwaway group."""
    try:
        if limit == "memory":
            cgroups.prepare(_PROBE, 512 * 1024 * 1024, None)
        else:
            cgroups.prepare(_PROBE, None, 1.0)
    finally:
        cgroups.release(_PROBE)


def detect(
    parent: str = DEFAULT_PARENT,
    mountinfo: str | None = None,
    enabled: bool = True,
) -> Cgroups:
    """
    Find out which limits this daemon can enforce, setting up the parent
    group(s) on the way.  Never raises: what fails is a reason in
    L{Cgroups.reasons}.

    @param parent: the parent group path, relative to each hierarchy root.
    @param mountinfo: the text of C{/proc/self/mountinfo} (for tests).
    @param enabled: False turns limits off (the C{cgroups=off} option).
    """
    if not enabled:
        return NO_CGROUPS
    if mountinfo is None:
        try:
            mountinfo = _read("/proc/self/mountinfo")
        except OSError as e:
            return _none(f"cannot read /proc/self/mountinfo: {e}")
    mounts = parseMountinfo(mountinfo)
    relative = parent.strip("/")
    reasons: dict[str, str] = {}

    unified = [m for m in mounts if m.version == 2]
    for mount in unified:
        try:
            available = set(_read(os.path.join(mount.path, "cgroup.controllers")).split())
        except OSError:
            continue
        wanted = [c for c in ("memory", "cpu") if c in available]
        if not wanted:
            continue
        base = os.path.join(mount.path, relative)
        dirs: dict[str, str] = {}
        try:
            _ensureV2Parent(mount.path, relative, wanted)
        except OSError as e:
            reasons = {
                "memory": f"cannot delegate controllers under {base}: {e.strerror}",
                "cpus": f"cannot delegate controllers under {base}: {e.strerror}",
            }
            break
        for limit, controller in (("memory", "memory"), ("cpus", "cpu")):
            if controller not in wanted:
                reasons[limit] = f"no {controller} controller in {mount.path}"
                continue
            try:
                _probe(Cgroups(2, {limit: base}, {}), limit)
            except (OSError, BackendError, BadRequest) as e:
                reasons[limit] = f"cannot set {controller} limits under {base}: {e}"
            else:
                dirs[limit] = base
        if dirs:
            return Cgroups(2, dirs, reasons)

    dirs = {}
    v1reasons: dict[str, str] = {}
    for limit, controller in (("memory", "memory"), ("cpus", "cpu")):
        v1 = next((m for m in mounts if m.version == 1 and controller in m.controllers), None)
        if v1 is None:
            v1reasons[limit] = f"no cgroup {controller} controller is mounted"
            continue
        base = os.path.join(v1.path, relative)
        try:
            os.makedirs(base, exist_ok=True)
            _probe(Cgroups(1, {limit: base}, {}), limit)
        except (OSError, BackendError, BadRequest) as e:
            v1reasons[limit] = f"cannot set {controller} limits under {base}: {e}"
        else:
            dirs[limit] = base
    if dirs:
        return Cgroups(1, dirs, v1reasons)
    if reasons:
        return Cgroups(None, {}, reasons)
    return Cgroups(None, {}, v1reasons or _none("no cgroup hierarchy found").reasons)


def _none(reason: str) -> Cgroups:
    return Cgroups(None, {}, {"memory": reason, "cpus": reason})
