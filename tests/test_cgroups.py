"""
Tests for L{pycm.backends.process.cgroups} and
L{pycm.backends.process.cgroupdetect} (on fake cgroup trees) and
L{pycm.backends.process.procfs}.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

from twisted.trial.unittest import SynchronousTestCase

from pycm.backends.process import procfs
from pycm.backends.process.cgroupdetect import Mount, detect, parseMountinfo, parseProcCgroup
from pycm.backends.process.cgroups import (
    CPU_PERIOD,
    NO_CGROUPS,
    Cgroups,
    checkCpus,
    cpuQuota,
)
from pycm.errors import BackendError, BadRequest

HYBRID = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""


def read(path: str) -> str:
    with open(path) as f:
        return f.read()


class MountinfoTests(SynchronousTestCase):
    """Finding the cgroup hierarchies in /proc/self/mountinfo."""

    def test_hybrid(self) -> None:
        """v1 mounts keep their memory/cpu controllers; v2 mounts are found."""
        self.assertEqual(
            parseMountinfo(HYBRID),
            [
                Mount("/sys/fs/cgroup/cpu,cpuacct", 1, frozenset({"cpu", "cpuacct"})),
                Mount("/sys/fs/cgroup/memory", 1, frozenset({"memory"})),
                Mount("/sys/fs/cgroup/pids", 1, frozenset(), frozenset({"pids"})),
                Mount("/sys/fs/cgroup/unified", 2, frozenset()),
            ],
        )

    def test_optionalFields(self) -> None:
        """Optional fields (shared:N) before the separator are skipped."""
        text = "30 1 0:26 / /sys/fs/cgroup rw shared:4 - cgroup2 cgroup2 rw,nsdelegate\n"
        self.assertEqual(parseMountinfo(text), [Mount("/sys/fs/cgroup", 2, frozenset())])

    def test_cpusRange(self) -> None:
        """
        --cpus below 0.01 or above the CPU count is refused (as Docker
        does), not rounded silently; the check is part of L{Cgroups.check}.
        """
        checkCpus(0.01, 2)
        checkCpus(2, 2)
        for bad in (0.005, 2.5):
            error = self.assertRaises(BadRequest, checkCpus, bad, 2)
            self.assertIn("0.01 to 2", str(error))
        cgroups = Cgroups(1, {"cpus": "/x"}, {})
        self.assertRaises(BadRequest, cgroups.check, None, 0.001)

    def test_swapNotLimitedIsSaid(self) -> None:
        """Where swap cannot be limited, the start-up line says so loudly."""
        cgroups = Cgroups(1, {"memory": "/x"}, {}, tracking="/t", swapLimited=False)
        self.assertIn("swap is not limited", cgroups.describe())
        self.assertIn("tracked in a cgroup under /t", cgroups.describe())
        self.assertIn("NOT tracked", NO_CGROUPS.describe())

    def test_parseProcCgroup(self) -> None:
        """/proc/self/cgroup gives each hierarchy's own group."""
        text = "9:name=systemd:/a\n8:pids:/b\n2:cpu,cpuacct:/c\n0::/d\n"
        self.assertEqual(
            parseProcCgroup(text),
            {"name=systemd": "/a", "pids": "/b", "cpu": "/c", "cpuacct": "/c", "": "/d"},
        )

    def test_cpuQuota(self) -> None:
        """--cpus becomes a quota per period, never below the kernel's minimum."""
        self.assertEqual(cpuQuota(0.5), CPU_PERIOD // 2)
        self.assertEqual(cpuQuota(2), CPU_PERIOD * 2)
        self.assertEqual(cpuQuota(0.0001), 1000)


class FakeTreeTests(SynchronousTestCase):
    """L{detect} and L{Cgroups} on directory trees that look like cgroupfs."""

    def setUp(self) -> None:
        self.root = os.path.abspath(self.mktemp())

    def v2(self, controllers: str = "cpuset cpu io memory pids") -> str:
        mount = os.path.join(self.root, "unified")
        os.makedirs(mount)
        with open(os.path.join(mount, "cgroup.controllers"), "w") as f:
            f.write(controllers + "\n")
        with open(os.path.join(mount, "cgroup.subtree_control"), "w") as f:
            f.write("\n")
        return f"41 31 0:38 / {mount} rw - cgroup2 cgroup2 rw\n"

    def v1(self) -> str:
        lines = []
        for name, options in (("memory", "rw,memory"), ("cpu", "rw,cpu,cpuacct")):
            mount = os.path.join(self.root, name)
            os.makedirs(mount)
            lines.append(f"35 31 0:32 / {mount} rw - cgroup cgroup {options}\n")
        return "".join(lines)

    def test_v2(self) -> None:
        """
        With v2 controllers, the parent group delegates memory and cpu, and
        a container's group gets memory.max and cpu.max.
        """
        cgroups = detect("/pycm", mountinfo=self.v2())
        base = os.path.join(self.root, "unified", "pycm")
        self.assertEqual(cgroups.version, 2)
        self.assertEqual(cgroups.limits, frozenset({"memory", "cpus"}))
        self.assertEqual(cgroups.dirs, {"memory": base, "cpus": base})
        self.assertIn("+memory", read(os.path.join(self.root, "unified", "cgroup.subtree_control")))
        procs = cgroups.prepare("web-1", 64 * 1024 * 1024, 1.5)
        self.assertEqual(procs, [os.path.join(base, "web-1", "cgroup.procs")])
        self.assertEqual(read(os.path.join(base, "web-1", "memory.max")), str(64 * 1024 * 1024))
        self.assertEqual(read(os.path.join(base, "web-1", "cpu.max")), "150000 100000")
        self.assertFalse(os.path.exists(os.path.join(base, "pycm-probe", "cgroup.procs")))

    def test_swapNotLimitedFoundAtStart(self) -> None:
        """
        Where the probe cannot limit swap, L{detect} says so at start (not
        only once a container with --memory has run).
        """
        mountinfo = self.v2()
        probe = os.path.join(self.root, "unified", "pycm", "pycm-probe")
        os.makedirs(os.path.join(probe, "memory.swap.max"))
        cgroups = detect("/pycm", mountinfo=mountinfo)
        self.assertIn("memory", cgroups.limits)
        self.assertFalse(cgroups.swapLimited)
        self.assertIn("swap is not limited", cgroups.describe())
        self.assertTrue(detect("/pycm", mountinfo=self.v1()).swapLimited)

    def test_v2WithoutControllers(self) -> None:
        """A v2 mount lacking the controllers falls through to v1."""
        cgroups = detect("/pycm", mountinfo=self.v2("hugetlb") + self.v1())
        self.assertEqual(cgroups.version, 1)

    def test_v1(self) -> None:
        """With v1 hierarchies, limits go to memory.limit_in_bytes and cfs quota."""
        cgroups = detect("/pycm", mountinfo=self.v1())
        self.assertEqual(cgroups.version, 1)
        self.assertEqual(cgroups.limits, frozenset({"memory", "cpus"}))
        memory = os.path.join(self.root, "memory", "pycm", "web-1")
        cpu = os.path.join(self.root, "cpu", "pycm", "web-1")
        procs = cgroups.prepare("web-1", 1000000, 0.25)
        self.assertEqual(
            procs, [os.path.join(memory, "cgroup.procs"), os.path.join(cpu, "cgroup.procs")]
        )
        self.assertEqual(read(os.path.join(memory, "memory.limit_in_bytes")), "1000000")
        self.assertEqual(read(os.path.join(cpu, "cpu.cfs_quota_us")), "25000")
        self.assertEqual(read(os.path.join(cpu, "cpu.cfs_period_us")), "100000")
        self.assertEqual(
            cgroups.prepare("web-2", 1000000, None),
            [os.path.join(self.root, "memory", "pycm", "web-2", "cgroup.procs")],
        )

    def test_nothingMounted(self) -> None:
        """No hierarchy: no limits, and a reason for each."""
        cgroups = detect("/pycm", mountinfo="")
        self.assertEqual(cgroups.limits, frozenset())
        self.assertEqual(set(cgroups.reasons), {"memory", "cpus"})
        self.assertIn("no resource limits", cgroups.describe())

    def test_unwritable(self) -> None:
        """A hierarchy the daemon cannot write to gives no limits, with the reason."""
        if os.geteuid() == 0:
            mountinfo = self.v1()
            for name in ("memory", "cpu"):
                open(os.path.join(self.root, name, "pycm"), "w").close()
        else:
            mountinfo = self.v1()
            for name in ("memory", "cpu"):
                os.chmod(os.path.join(self.root, name), 0o555)
        cgroups = detect("/pycm", mountinfo=mountinfo)
        self.assertEqual(cgroups.limits, frozenset())
        self.assertIn("cannot set memory limits", cgroups.reasons["memory"])

    def test_disabled(self) -> None:
        """cgroups=off means no limits whatever the machine has."""
        self.assertIs(detect("/pycm", mountinfo=self.v1(), enabled=False), NO_CGROUPS)

    def test_check(self) -> None:
        """
        Limits that are not enforced are refused with a BadRequest naming
        the option and the reason; bad values are refused too.
        """
        cgroups = Cgroups(1, {"memory": "/x"}, {"cpus": "no cpu controller"})
        cgroups.check(1024, None)
        error = self.assertRaises(BadRequest, cgroups.check, None, 1.0)
        self.assertIn("--cpus cannot be enforced by this daemon: no cpu controller", str(error))
        self.assertRaises(BadRequest, cgroups.check, 0, None)
        self.assertRaises(BadRequest, NO_CGROUPS.prepare, "x", 1024, None)

    def test_prepareFailure(self) -> None:
        """A group that cannot be created is a BackendError."""
        parent = os.path.join(self.root, "file")
        os.makedirs(self.root)
        open(parent, "w").close()
        cgroups = Cgroups(1, {"memory": parent}, {})
        self.assertRaises(BackendError, cgroups.prepare, "web", 1024, None)

    def test_prepareFailureLeavesNoGroup(self) -> None:
        """
        A group whose limit cannot be written (here the kernel refuses the
        value, injected) is removed again: a failed start leaves no empty
        group behind.
        """
        cgroups = detect("/pycm", mountinfo=self.v2())

        def refuse(path: str, memory: int) -> None:
            raise OSError(22, "Invalid argument")

        self.patch(cgroups, "_writeMemoryLimit", refuse)
        self.assertRaises(BackendError, cgroups.prepare, "web-1", 1024 * 1024, None)
        self.assertFalse(os.path.exists(os.path.join(self.root, "unified", "pycm", "web-1")))

    def test_pidsAndRelease(self) -> None:
        """pids reads cgroup.procs; release removes empty groups only."""
        cgroups = detect("/pycm", mountinfo=self.v1())
        cgroups.prepare("web-1", 1000000, None)
        group = os.path.join(self.root, "memory", "pycm", "web-1")
        with open(os.path.join(group, "cgroup.procs"), "w") as f:
            f.write("12\n34\n")
        self.assertEqual(cgroups.pids("web-1"), [12, 34])
        # On a real cgroupfs the interface files vanish with the directory.
        for name in os.listdir(group):
            os.unlink(os.path.join(group, name))
        self.assertTrue(cgroups.release("web-1"))
        self.assertFalse(os.path.exists(group))
        self.assertTrue(cgroups.release("web-1"))


class ProcfsTests(SynchronousTestCase):
    """Reading /proc/PID/stat."""

    def test_parseStat(self) -> None:
        """The command name may hold spaces and parentheses."""
        fields = ["S", "1", "100", "100"] + ["0"] * 15 + ["987654"] + ["0"] * 20
        stat = procfs.parseStat("4242 (a) (b c) " + " ".join(fields))
        self.assertEqual(
            (stat.pid, stat.state, stat.ppid, stat.pgrp, stat.session, stat.startTime),
            (4242, "S", 1, 100, 100, 987654),
        )
        self.assertTrue(stat.alive)

    def test_self(self) -> None:
        """This process is found, with its own group and a start time."""
        stat = procfs.readStat(os.getpid())
        self.assertEqual(stat.pgrp, os.getpgrp())
        self.assertEqual(stat.session, os.getsid(0))
        self.assertTrue(procfs.isSameProcess(os.getpid(), stat.startTime))
        self.assertFalse(procfs.isSameProcess(os.getpid(), stat.startTime + 1))
        self.assertFalse(procfs.isSameProcess(os.getpid(), None))
        self.assertIn(os.getpid(), procfs.groupMembers(os.getpgrp()))
        self.assertIn(os.getpid(), procfs.sessionMembers(os.getsid(0)))

    def test_missing(self) -> None:
        """A pid that does not exist has no stat and no start time."""
        self.assertIsNone(procfs.readStat(2**22 + 1))
        self.assertIsNone(procfs.startTime(2**22 + 1))
        self.assertEqual(procfs.allStats(self.mktemp()), [])


class KillIfMarkedTests(SynchronousTestCase):
    """L{procfs.killIfMarked}: only a process carrying the marker, never another."""

    def child(self, runId: str | None) -> subprocess.Popen[bytes]:
        """A C{sleep} with C{PYCM_RUN_ID=runId} (None: without one)."""
        env = {k: v for k, v in os.environ.items() if k != "PYCM_RUN_ID"}
        if runId is not None:
            env["PYCM_RUN_ID"] = runId
        child = subprocess.Popen(["sleep", "1000"], env=env)
        self.addCleanup(child.wait)
        self.addCleanup(child.kill)
        # Popen returns once the exec began; the kernel shows the new
        # environment only once it is done (before that, environ is empty).
        deadline = time.monotonic() + 10
        while not procfs.environ(child.pid) and time.monotonic() < deadline:
            time.sleep(0.001)
        return child

    def test_marked(self) -> None:
        """A process carrying one of the run ids gets the signal; it is named."""
        child = self.child("run-a")
        self.assertEqual(procfs.killIfMarked(child.pid, {"run-a", "run-b"}), "run-a")
        self.assertEqual(child.wait(), -signal.SIGKILL)

    def test_unmarked(self) -> None:
        """Another run id, or none, and the process is left alone."""
        other, bare = self.child("run-other"), self.child(None)
        self.assertIsNone(procfs.killIfMarked(other.pid, {"run-a"}))
        self.assertIsNone(procfs.killIfMarked(bare.pid, {"run-a"}))
        self.assertIsNone(procfs.killIfMarked(2**22 + 1, {"run-a"}))
        self.assertIsNone(other.poll())
        self.assertIsNone(bare.poll())

    def test_pidReusedAfterPidfd(self) -> None:
        """
        The signal goes through the pidfd opened first: if that process
        ended and its pid now names a marked process (simulated: the
        environment read is made to say so), nobody is signalled.
        """
        victim = self.child(None)
        gone = self.child(None)
        realPidfd = procfs._pidfd

        def pidfdThenExit(pid: int) -> int | None:
            fd = realPidfd(pid)
            gone.kill()
            gone.wait()
            return fd

        self.patch(procfs, "_pidfd", pidfdThenExit)
        self.patch(procfs, "environ", lambda pid, proc=procfs.PROC: b"PYCM_RUN_ID=run-a\0")
        self.assertIsNone(procfs.killIfMarked(gone.pid, {"run-a"}))
        self.assertIsNone(victim.poll())

    def test_withoutPidfd(self) -> None:
        """
        Without pidfds, the start time is read again after the environment:
        a change (the pid was reused) means no signal; no change, the signal.
        """
        child = self.child("run-a")

        def noPidfd(pid: int) -> int | None:
            raise OSError(38, "no pidfd_open")

        self.patch(procfs, "_pidfd", noPidfd)
        starts = iter([100, 101])
        self.patch(procfs, "startTime", lambda pid, proc=procfs.PROC: next(starts))
        self.assertIsNone(procfs.killIfMarked(child.pid, {"run-a"}))
        self.assertIsNone(child.poll())
        self.patch(procfs, "startTime", lambda pid, proc=procfs.PROC: 100)
        self.assertEqual(procfs.killIfMarked(child.pid, {"run-a"}), "run-a")
        self.assertEqual(child.wait(), -signal.SIGKILL)
