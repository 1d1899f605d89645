"""
Tests for where the process backend puts its containers' cgroups under
systemd (L{pycm.backends.process.cgroupdetect.placeUnderSystemd}): below
the service's own delegated cgroup, the daemon moved to its C{daemon} leaf
on cgroup v2, instead of C{/pycm} at the hierarchy's root.  Most run on
fake trees (directories that look like cgroupfs, with fake mountinfo and
C{/proc/self/cgroup} text); L{RealUnifiedTests} moves a real process in a
real cgroup v2 hierarchy.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from pycm.backends.process.cgroupdetect import (
    Placement,
    detect,
    isDelegated,
    parseMountinfo,
)

SERVICE = "/system.slice/pycm.service"
SYSTEMD = {"INVOCATION_ID": "0123456789abcdef"}


def read(path: str) -> str:
    with open(path) as f:
        return f.read()


def write(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


class FakeTreeTests(SynchronousTestCase):
    """L{detect} on fake trees, as a daemon started by systemd sees them."""

    def setUp(self) -> None:
        self.root = os.path.abspath(self.mktemp())

    def v2(self) -> str:
        """A unified hierarchy with memory and cpu; the service's group holds the daemon."""
        mount = os.path.join(self.root, "unified")
        write(os.path.join(mount, "cgroup.controllers"), "cpu io memory pids\n")
        write(os.path.join(mount, "cgroup.subtree_control"), "cpu io memory pids\n")
        write(os.path.join(mount, SERVICE.lstrip("/"), "cgroup.procs"), f"{os.getpid()}\n")
        return f"41 31 0:38 / {mount} rw - cgroup2 cgroup2 rw\n"

    def v1(self) -> str:
        lines = []
        for name, options in (("memory", "rw,memory"), ("cpu", "rw,cpu,cpuacct"),
                              ("pids", "rw,pids")):
            mount = os.path.join(self.root, name)
            os.makedirs(os.path.join(mount, SERVICE.lstrip("/")))
            lines.append(f"35 31 0:32 / {mount} rw - cgroup cgroup {options}\n")
        return "".join(lines)

    def test_v2BelowOwnCgroup(self) -> None:
        """
        cgroup v2, delegated: the daemon moves to OWN/daemon, OWN delegates
        memory and cpu to its children, and every container (limits and
        tracking) goes to OWN/containers; the daemon's home is its leaf.
        """
        mountinfo = self.v2()
        own = os.path.join(self.root, "unified", SERVICE.lstrip("/"))
        cgroups = detect(None, mountinfo=mountinfo, procCgroup=f"0::{SERVICE}\n",
                         environ=SYSTEMD, delegated=lambda path: path == own)
        containers = os.path.join(own, "containers")
        self.assertEqual(cgroups.dirs, {"memory": containers, "cpus": containers})
        self.assertEqual(cgroups.tracking, containers)
        self.assertEqual(cgroups.home, os.path.join(own, "daemon", "cgroup.procs"))
        self.assertEqual(read(os.path.join(own, "daemon", "cgroup.procs")), str(os.getpid()))
        self.assertIn("+memory", read(os.path.join(own, "cgroup.subtree_control")))
        self.assertIn("+cpu", read(os.path.join(containers, "cgroup.subtree_control")))
        self.assertFalse(os.path.exists(os.path.join(self.root, "unified", "pycm")))

    def test_v1BelowOwnCgroupPerController(self) -> None:
        """
        cgroup v1: each controller's groups go below the daemon's own group
        in that hierarchy; the daemon stays where it is (v1 allows a
        process beside child groups).
        """
        procCgroup = (f"8:pids:{SERVICE}\n4:memory:{SERVICE}\n2:cpu,cpuacct:{SERVICE}\n"
                      "0::/\n")
        cgroups = detect(None, mountinfo=self.v1(), procCgroup=procCgroup, environ=SYSTEMD,
                         delegated=lambda path: True)
        below = SERVICE.lstrip("/") + "/containers"
        self.assertEqual(cgroups.version, 1)
        self.assertEqual(cgroups.dirs, {"memory": os.path.join(self.root, "memory", below),
                                        "cpus": os.path.join(self.root, "cpu", below)})
        self.assertEqual(cgroups.tracking, os.path.join(self.root, "pids", below))
        self.assertEqual(cgroups.home, os.path.join(self.root, "pids", SERVICE.lstrip("/"),
                                                    "cgroup.procs"))
        self.assertFalse(os.path.exists(os.path.join(self.root, "pids", SERVICE.lstrip("/"),
                                                     "daemon")))

    def test_notUnderSystemd(self) -> None:
        """Without INVOCATION_ID: /pycm at the hierarchy's root, as before."""
        cgroups = detect(None, mountinfo=self.v2(), procCgroup=f"0::{SERVICE}\n", environ={},
                         delegated=lambda path: True)
        self.assertEqual(cgroups.tracking, os.path.join(self.root, "unified", "pycm"))

    def test_notDelegated(self) -> None:
        """
        Under systemd without Delegate=yes: /pycm at the root (nothing moved),
        and a warning saying so.
        """
        events: list[dict[str, object]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        cgroups = detect(None, mountinfo=self.v2(), procCgroup=f"0::{SERVICE}\n",
                         environ=SYSTEMD, delegated=lambda path: False)
        self.assertEqual(cgroups.tracking, os.path.join(self.root, "unified", "pycm"))
        self.assertFalse(os.path.exists(
            os.path.join(self.root, "unified", SERVICE.lstrip("/"), "daemon")))
        self.assertTrue(any("not delegated" in str(e.get("log_format")) for e in events))

    def test_rootCgroupNotUsed(self) -> None:
        """A daemon in the root group (no service cgroup) keeps /pycm."""
        cgroups = detect(None, mountinfo=self.v2(), procCgroup="0::/\n", environ=SYSTEMD,
                         delegated=lambda path: True)
        self.assertEqual(cgroups.tracking, os.path.join(self.root, "unified", "pycm"))

    def test_explicitParentWins(self) -> None:
        """An operator's cgroup-parent is used as given, under systemd too."""
        cgroups = detect("/elsewhere", mountinfo=self.v2(), procCgroup=f"0::{SERVICE}\n",
                         environ=SYSTEMD, delegated=lambda path: True)
        self.assertEqual(cgroups.tracking, os.path.join(self.root, "unified", "elsewhere"))


class PieceTests(SynchronousTestCase):
    def test_placement(self) -> None:
        """A placement gives each hierarchy its parent, else the default, without a slash."""
        placement = Placement("/pycm", {"": "/a.service/containers"})
        self.assertEqual(placement.relative(""), "a.service/containers")
        self.assertEqual(placement.relative("memory"), "pycm")

    def test_isDelegated(self) -> None:
        """
        systemd's mark, the C{trusted.delegate} (or C{user.delegate})
        attribute set to 1, says delegated; a group without it is not.
        """
        directory = tempfile.mkdtemp()
        self.addCleanup(os.rmdir, directory)
        self.assertFalse(isDelegated(directory))
        try:
            os.setxattr(directory, "user.delegate", b"1")
        except OSError:
            # No extended attributes here: a group the daemon may write to.
            write(os.path.join(directory, "cgroup.procs"), "")
            self.addCleanup(os.unlink, os.path.join(directory, "cgroup.procs"))
            self.assertEqual(isDelegated(directory), os.access(directory, os.W_OK))
            return
        self.assertTrue(isDelegated(directory))


#: Run in a child moved into a test group: what detect() makes of it.
_CHILD = """
import json, sys
from pycm.backends.process.cgroupdetect import detect
cgroups = detect(None, mountinfo=sys.argv[1], procCgroup=open("/proc/self/cgroup").read(),
                 environ={"INVOCATION_ID": "test"})
print(json.dumps({"tracking": cgroups.tracking, "home": cgroups.home,
                  "cgroup": open("/proc/self/cgroup").read()}))
"""


class RealUnifiedTests(SynchronousTestCase):
    """
    On a real cgroup v2 hierarchy: a child process in a group marked
    delegated (C{trusted.delegate}, as systemd marks a C{Delegate=yes}
    service's) runs L{detect} as a daemon started by systemd would.  What
    cannot run here: systemd itself (it is not PID 1), so the group is
    made and marked by the test; and on this machine's hybrid layout the
    unified hierarchy has no controllers, so the controllers' delegation
    to OWN/containers is checked on fake trees only (L{FakeTreeTests}).
    The v1 hierarchies are left out (the child is given the cgroup2 mount
    alone) so that no group is made in them.
    """

    def test_daemonMovesToLeaf(self) -> None:
        """
        The child ends up in OWN/daemon, its containers tracked in
        OWN/containers, and the test group is removed afterwards.
        """
        if os.geteuid() != 0:
            raise SkipTest("moving processes between cgroups needs root")
        text = read("/proc/self/mountinfo")
        unified = [line for line in text.splitlines() if " - cgroup2 " in line]
        if not unified:
            raise SkipTest("no cgroup v2 hierarchy mounted")
        [mount] = parseMountinfo(unified[0])
        name = f"pycm-systemd-test-{os.getpid()}"
        own = os.path.join(mount.path, name)
        os.mkdir(own)
        self.addCleanup(self.removeGroup, own)
        os.setxattr(own, "trusted.delegate", b"1")

        def joinGroup() -> None:
            with open(os.path.join(own, "cgroup.procs"), "w") as f:
                f.write(str(os.getpid()))

        result = subprocess.run(
            [sys.executable, "-c", _CHILD, unified[0] + "\n"],
            capture_output=True, text=True, timeout=60, preexec_fn=joinGroup,
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        seen = json.loads(result.stdout)
        self.assertEqual(seen["tracking"], os.path.join(own, "containers"))
        self.assertEqual(seen["home"], os.path.join(own, "daemon", "cgroup.procs"))
        self.assertIn(f"0::/{name}/daemon\n", seen["cgroup"])

    def removeGroup(self, own: str) -> None:
        for child in ("containers/pycm-probe", "containers", "daemon", ""):
            try:
                os.rmdir(os.path.join(own, child) if child else own)
            except FileNotFoundError:
                pass
