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

Tracking: whatever limits are enforced, every container gets a group
C{PARENT/NAME-ID} in a I{tracking} hierarchy when the daemon can make one
(as Docker does): the unified hierarchy (v2, also in "hybrid" mode, where
it is a plain group with no controller), else the v1 C{pids}, C{freezer}
or C{name=systemd} hierarchy.  Every process a run ever forks is in it --
also one that calls C{setsid} or leaves its process group -- so stopping,
removing or reclaiming a container kills the whole group
(L{Cgroups.killAll}).  L{detect} proves tracking works by moving the
daemon itself into a probe group and back (the fast spawn path does that
around each spawn, so the child is born in its group).

A container with limits also gets a group of that name in each limit
hierarchy, with the limits written before its process starts; the process
joins them (L{Cgroups.prepare} returns the C{cgroup.procs} files to write
its pid to) before it executes the command.

Swap: a memory limit also limits swap (C{memory.swap.max} 0, v1
C{memory.memsw.limit_in_bytes}) where the kernel has swap accounting.
Where it does not, L{Cgroups.swapLimited} is False, the daemon logs it at
start, and the memory limit bounds RAM only (a container may swap).

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
    #: Every super option of a v1 mount (controllers, C{name=...}).
    options: frozenset[str] = frozenset()


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
            mounts.append(
                Mount(
                    path,
                    1,
                    options & {"memory", "cpu", "cpuacct"},
                    frozenset(o for o in options if o in ("pids", "freezer") or "=" in o),
                )
            )
    return mounts


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
            self.release(group)  # what was made of it, still empty
            raise BackendError(f"cannot set up the cgroup of {group}: {e}") from e
        return procs

    def _writeMemory(self, path: str, memory: int) -> None:
        if self.version == 2:
            _write(os.path.join(path, "memory.max"), str(memory))
            try:
                # No swap either, or the limit is only a suggestion.
                _write(os.path.join(path, "memory.swap.max"), "0")
            except OSError:
                self.swapLimited = False
        else:
            _write(os.path.join(path, "memory.limit_in_bytes"), str(memory))
            try:
                _write(os.path.join(path, "memory.memsw.limit_in_bytes"), str(memory))
            except OSError:
                self.swapLimited = False

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
                names.update(e.name for e in entries if e.is_dir() and e.name != _PROBE)
        return names

    def release(self, group: str) -> bool:
        """
        Remove C{group}'s directories.

        @return: True if none is left (False: processes still in it).
        """
        clean = True
        for path in reversed(self.groupDirs(group, "memory" in self.dirs, "cpus" in self.dirs)):
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


def _probe(cgroups: Cgroups, limit: str) -> bool:
    """
    Prove a limit can be set by setting it on a throwaway group.

    @return: whether a memory limit there limits swap too.
    """
    try:
        if limit == "memory":
            cgroups.prepare(_PROBE, 512 * 1024 * 1024, None)
        else:
            cgroups.prepare(_PROBE, None, 1.0)
    finally:
        cgroups.release(_PROBE)
    return cgroups.swapLimited


def parseProcCgroup(text: str) -> dict[str, str]:
    """
    C{/proc/PID/cgroup} as {hierarchy key: path}: the key is C{""} for the
    unified hierarchy, else each controller (and C{name=...}) of the line.
    """
    paths: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if not controllers:
            paths[""] = path
        for controller in controllers.split(","):
            if controller:
                paths[controller] = path
    return paths


def _probeTracking(mount: str, base: str, ownPath: str) -> str:
    """
    Prove the daemon can make a group under C{base} and move itself into
    it and back home; return its home C{cgroup.procs}.
    """
    home = os.path.join(mount, ownPath.lstrip("/"), "cgroup.procs")
    probe = os.path.join(base, _PROBE)
    os.makedirs(probe, exist_ok=True)
    me = str(os.getpid())
    try:
        _write(os.path.join(probe, "cgroup.procs"), me)
        _write(home, me)
    finally:
        try:
            os.rmdir(probe)
        except OSError:
            pass
    return home


def detectTracking(
    mounts: list[Mount], relative: str, own: dict[str, str]
) -> tuple[str | None, str | None, str]:
    """
    The tracking hierarchy: the unified one, else v1 C{pids}, C{freezer}
    or C{name=systemd}.

    @param own: the daemon's own groups (L{parseProcCgroup}).
    @return: (parent group directory, the daemon's home C{cgroup.procs},
        why there is none).
    """
    candidates: list[tuple[str, str]] = [(m.path, "") for m in mounts if m.version == 2]
    v1 = [m for m in mounts if m.version == 1]
    for key in ("pids", "freezer", "name=systemd"):
        for m in v1:
            if key in m.controllers or key in m.options:
                candidates.append((m.path, key))
    why = "no cgroup hierarchy to track containers in"
    for mount, key in candidates:
        if key not in own:
            continue
        base = os.path.join(mount, relative)
        try:
            home = _probeTracking(mount, base, own[key])
        except OSError as e:
            why = f"cannot track containers in {base}: {e.strerror or e}"
            continue
        return base, home, ""
    return None, None, why


def detect(
    parent: str = DEFAULT_PARENT,
    mountinfo: str | None = None,
    enabled: bool = True,
    procCgroup: str | None = None,
) -> Cgroups:
    """
    Find out how containers are tracked and which limits this daemon can
    enforce: see L{_detectLimits} and L{detectTracking}.

    @param procCgroup: the text of C{/proc/self/cgroup} (for tests).
    """
    limits = _detectLimits(parent, mountinfo, enabled)
    if not enabled or (mountinfo is not None and procCgroup is None):
        return limits  # a test's fake tree: no tracking unless asked
    try:
        if mountinfo is None:
            mountinfo = _read("/proc/self/mountinfo")
        if procCgroup is None:
            procCgroup = _read("/proc/self/cgroup")
    except OSError:
        return limits
    tracking, home, _ = detectTracking(
        parseMountinfo(mountinfo), parent.strip("/"), parseProcCgroup(procCgroup)
    )
    return Cgroups(
        limits.version, limits.dirs, limits.reasons, tracking, home, limits.swapLimited
    )


def _detectLimits(
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
        swapLimited = True
        for limit, controller in (("memory", "memory"), ("cpus", "cpu")):
            if controller not in wanted:
                reasons[limit] = f"no {controller} controller in {mount.path}"
                continue
            try:
                swapLimited &= _probe(Cgroups(2, {limit: base}, {}), limit)
            except (OSError, BackendError, BadRequest) as e:
                reasons[limit] = f"cannot set {controller} limits under {base}: {e}"
            else:
                dirs[limit] = base
        if dirs:
            return Cgroups(2, dirs, reasons, swapLimited=swapLimited)

    dirs = {}
    v1reasons: dict[str, str] = {}
    swapLimited = True
    for limit, controller in (("memory", "memory"), ("cpus", "cpu")):
        v1 = next((m for m in mounts if m.version == 1 and controller in m.controllers), None)
        if v1 is None:
            v1reasons[limit] = f"no cgroup {controller} controller is mounted"
            continue
        base = os.path.join(v1.path, relative)
        try:
            os.makedirs(base, exist_ok=True)
            swapLimited &= _probe(Cgroups(1, {limit: base}, {}), limit)
        except (OSError, BackendError, BadRequest) as e:
            v1reasons[limit] = f"cannot set {controller} limits under {base}: {e}"
        else:
            dirs[limit] = base
    if dirs:
        return Cgroups(1, dirs, v1reasons, swapLimited=swapLimited)
    if reasons:
        return Cgroups(None, {}, reasons)
    return Cgroups(None, {}, v1reasons or _none("no cgroup hierarchy found").reasons)


def _none(reason: str) -> Cgroups:
    return Cgroups(None, {}, {"memory": reason, "cpus": reason})
