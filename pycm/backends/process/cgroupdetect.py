"""
What this machine can do with cgroups, found once at start: where the
containers' groups go (L{Placement}: below the daemon's own delegated
cgroup under systemd, else the parent at each hierarchy's root), the
limits it can enforce (proved on a probe group) and the hierarchy it tracks
every container in.  See docs/process-backend.md.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterable, Mapping

import attrs
from twisted.logger import Logger

from pycm.backends.process.cgroups import (
    DEFAULT_PARENT,
    NO_CGROUPS,
    PROBE_GROUP,
    Cgroups,
    noCgroups,
    readText,
    writeCgroupFile,
)
from pycm.errors import BackendError, BadRequest

log = Logger()

#: Under systemd, the leaf of the service's own cgroup the daemon moves to
#: (on cgroup v2 a group with children may hold no process) ...
DAEMON_LEAF = "daemon"
#: ... and the parent of the containers' groups beside it.
CONTAINERS_GROUP = "containers"


@attrs.frozen
class Placement:
    """
    Where the containers' groups go in each hierarchy: the parent group,
    relative to the hierarchy's root, by hierarchy key (C{""} for the
    unified one, else a v1 controller or C{name=...}), or L{default}.
    """

    default: str
    byKey: Mapping[str, str] = attrs.field(factory=dict)

    def relative(self, key: str) -> str:
        """The parent group of hierarchy C{key}, without a leading slash."""
        return self.byKey.get(key, self.default).strip("/")


def isDelegated(path: str) -> bool:
    """
    Did systemd delegate the cgroup C{path} (C{Delegate=yes})?  systemd
    (251 and later) marks it with the C{trusted.delegate} extended
    attribute (C{user.delegate} for a user's manager); where the file
    system has no extended attributes, a group the daemon may write to.
    """
    unsupported = False
    for name in ("trusted.delegate", "user.delegate"):
        try:
            if os.getxattr(path, name) == b"1":
                return True
        except OSError as e:
            unsupported |= e.errno in (errno.ENOTSUP, errno.EOPNOTSUPP)
    return unsupported and os.access(os.path.join(path, "cgroup.procs"), os.W_OK)


def _moveToLeaf(ownDir: str) -> None:
    """
    Move every process of C{ownDir} (the daemon, at start) into its
    L{DAEMON_LEAF} group, so that C{ownDir} may have children with
    controllers (cgroup v2's rule: no process in a group that has some).
    """
    leaf = os.path.join(ownDir, DAEMON_LEAF)
    os.makedirs(leaf, exist_ok=True)
    try:
        pids = readText(os.path.join(ownDir, "cgroup.procs")).split()
    except FileNotFoundError:  # only on a fake tree
        pids = []
    for pid in [*pids, str(os.getpid())]:
        try:
            writeCgroupFile(os.path.join(leaf, "cgroup.procs"), pid)
        except ProcessLookupError:  # gone meanwhile
            pass


def placeUnderSystemd(
    mounts: list[Mount],
    own: dict[str, str],
    environ: Mapping[str, str],
    delegated: Callable[[str], bool] = isDelegated,
) -> Placement | None:
    """
    Under systemd (C{INVOCATION_ID}) in a delegated cgroup OWN (the
    service's, C{Delegate=yes}): containers go to OWN/containers in each
    hierarchy where the daemon's group is delegated; on cgroup v2 the
    daemon first moves itself to OWN/daemon, and C{own} is updated to say
    so.  None when not under systemd or nothing is delegated (the parent
    at the root of each hierarchy then).
    """
    if not environ.get("INVOCATION_ID"):
        return None
    byKey: dict[str, str] = {}
    for mount in mounts:
        keys = [""] if mount.version == 2 else sorted(mount.controllers | mount.options)
        for key in keys:
            path = own.get(key, "/")
            ownDir = os.path.join(mount.path, path.lstrip("/"))
            if path == "/" or key in byKey or not delegated(ownDir):
                continue
            if mount.version == 2:
                try:
                    _moveToLeaf(ownDir)
                except OSError as e:
                    log.warn(
                        "cannot move the daemon into {leaf} ({error}): containers' "
                        "cgroups go to the default parent",
                        leaf=os.path.join(ownDir, DAEMON_LEAF),
                        error=e.strerror or e,
                    )
                    continue
                own[key] = f"{path.rstrip('/')}/{DAEMON_LEAF}"
            byKey[key] = f"{path.rstrip('/')}/{CONTAINERS_GROUP}"
    if not byKey:
        log.warn(
            "under systemd, but its cgroup is not delegated (Delegate=yes in the unit): "
            "containers' cgroups go to the default parent"
        )
        return None
    log.info(
        "under systemd: containers' cgroups below the service's own delegated cgroup "
        "({where})",
        where=", ".join(f"{k or 'unified'}: {v}" for k, v in sorted(byKey.items())),
    )
    return Placement(DEFAULT_PARENT, byKey)


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
            have = set(readText(os.path.join(level, "cgroup.subtree_control")).split())
        except FileNotFoundError:  # only on a fake tree: cgroupfs always has it
            have = set()
        missing = [c for c in controllers if c not in have]
        if missing:
            writeCgroupFile(
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
            cgroups.prepare(PROBE_GROUP, 512 * 1024 * 1024, None)
        else:
            cgroups.prepare(PROBE_GROUP, None, 1.0)
    finally:
        cgroups.release(PROBE_GROUP)
    return cgroups.swapLimited


def _probeUnder(
    version: int,
    base: str,
    limit: str,
    controller: str,
    dirs: dict[str, str],
    reasons: dict[str, str],
) -> bool:
    """
    L{_probe} C{limit} in the parent group C{base} (made if missing): note
    C{base} in C{dirs} if it works, else why not in C{reasons}.

    @return: whether a memory limit there limits swap too (True if not
        known).
    """
    try:
        os.makedirs(base, exist_ok=True)
        swapLimited = _probe(Cgroups(version, {limit: base}, {}), limit)
    except (OSError, BackendError, BadRequest) as e:
        reasons[limit] = f"cannot set {controller} limits under {base}: {e}"
        return True
    dirs[limit] = base
    return swapLimited


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
    probe = os.path.join(base, PROBE_GROUP)
    os.makedirs(probe, exist_ok=True)
    me = str(os.getpid())
    try:
        writeCgroupFile(os.path.join(probe, "cgroup.procs"), me)
        writeCgroupFile(home, me)
    finally:
        try:
            os.rmdir(probe)
        except OSError:
            pass
    return home


def detectTracking(
    mounts: list[Mount], placement: Placement | str, own: dict[str, str]
) -> tuple[str | None, str | None, str]:
    """
    The tracking hierarchy: the unified one, else v1 C{pids}, C{freezer}
    or C{name=systemd}.

    @param placement: where containers' groups go (a path: the same in
        every hierarchy).
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
    if isinstance(placement, str):
        placement = Placement(placement)
    why = "no cgroup hierarchy to track containers in"
    for mount, key in candidates:
        if key not in own:
            continue
        base = os.path.join(mount, placement.relative(key))
        try:
            home = _probeTracking(mount, base, own[key])
        except OSError as e:
            why = f"cannot track containers in {base}: {e.strerror or e}"
            continue
        return base, home, ""
    return None, None, why


def detect(
    parent: str | None = None,
    mountinfo: str | None = None,
    enabled: bool = True,
    procCgroup: str | None = None,
    environ: Mapping[str, str] | None = None,
    delegated: Callable[[str], bool] = isDelegated,
) -> Cgroups:
    """
    Find out where containers' groups go (L{placeUnderSystemd}), how they
    are tracked and which limits this daemon can enforce: see
    L{_detectLimits} and L{detectTracking}.

    @param parent: the parent group at each hierarchy's root (the
        C{cgroup-parent} option); None: below the daemon's own delegated
        cgroup under systemd, else L{DEFAULT_PARENT}.
    @param procCgroup: the text of C{/proc/self/cgroup} (for tests: a fake
        tree without it has no tracking, nor systemd's placement).
    @param environ: the daemon's environment (for tests).
    @param delegated: whether a group is delegated (for tests).
    """
    if not enabled:
        return NO_CGROUPS
    placement = Placement(parent or DEFAULT_PARENT)
    fake = mountinfo is not None and procCgroup is None
    try:
        if mountinfo is None:
            mountinfo = readText("/proc/self/mountinfo")
    except OSError as e:
        return noCgroups(f"cannot read /proc/self/mountinfo: {e}")
    try:
        if procCgroup is None and not fake:
            procCgroup = readText("/proc/self/cgroup")
    except OSError:
        procCgroup = ""  # limits, but no tracking
    own = parseProcCgroup(procCgroup or "")
    if parent is None and not fake:
        environ = os.environ if environ is None else environ
        placement = placeUnderSystemd(parseMountinfo(mountinfo), own, environ, delegated) or (
            placement
        )
    limits = _detectLimits(placement, mountinfo, enabled)
    if fake:
        return limits  # a test's fake tree: no tracking unless asked
    tracking, home, _ = detectTracking(parseMountinfo(mountinfo), placement, own)
    return Cgroups(limits.version, limits.dirs, limits.reasons, tracking, home, limits.swapLimited)


def _detectLimits(
    placement: Placement,
    mountinfo: str | None = None,
    enabled: bool = True,
) -> Cgroups:
    """
    Find out which limits this daemon can enforce, setting up the parent
    group(s) on the way.  Never raises: what fails is a reason in
    L{Cgroups.reasons}.

    @param placement: the parent groups, relative to each hierarchy root.
    @param mountinfo: the text of C{/proc/self/mountinfo} (for tests).
    @param enabled: False turns limits off (the C{cgroups=off} option).
    """
    if not enabled:
        return NO_CGROUPS
    if mountinfo is None:
        try:
            mountinfo = readText("/proc/self/mountinfo")
        except OSError as e:
            return noCgroups(f"cannot read /proc/self/mountinfo: {e}")
    mounts = parseMountinfo(mountinfo)
    reasons: dict[str, str] = {}

    unified = [m for m in mounts if m.version == 2]
    for mount in unified:
        try:
            available = set(readText(os.path.join(mount.path, "cgroup.controllers")).split())
        except OSError:
            continue
        wanted = [c for c in ("memory", "cpu") if c in available]
        if not wanted:
            continue
        relative = placement.relative("")
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
            swapLimited &= _probeUnder(2, base, limit, controller, dirs, reasons)
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
        base = os.path.join(v1.path, placement.relative(controller))
        swapLimited &= _probeUnder(1, base, limit, controller, dirs, v1reasons)
    if dirs:
        return Cgroups(1, dirs, v1reasons, swapLimited=swapLimited)
    if reasons:
        return Cgroups(None, {}, reasons)
    return Cgroups(None, {}, v1reasons or noCgroups("no cgroup hierarchy found").reasons)
