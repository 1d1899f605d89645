"""
Tests for L{pycm.backends.process.runcpus}: a run gets every CPU, not the
daemon's pin.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from collections.abc import Iterable

from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from pycm.backends.process.runcpus import RunCpus, cpuList, everyCpu, onlineCpus, readCpuList

from .e2e import RealDaemon, waitFor


class FakeKernel:
    """
    The daemon's CPU mask as the kernel keeps it: the mask it asked for
    (C{requested}, what a child inherits) and the mask applied, that one
    narrowed to C{allowed} (its cgroup's), which is all it can read back.
    C{refuse} fails every change.
    """

    def __init__(self, requested: set[int], allowed: set[int], refuse: int = 0) -> None:
        self.requested = set(requested)
        self.allowed = allowed
        self.refuse = refuse
        self.sets: list[set[int]] = []
        self.gets = 0

    def get(self, pid: int) -> set[int]:
        assert pid == 0
        self.gets += 1
        return self.requested & self.allowed

    def set(self, pid: int, cpus: Iterable[int]) -> None:
        assert pid == 0
        if self.refuse:
            raise OSError(self.refuse, os.strerror(self.refuse))
        self.sets.append(set(cpus))
        self.requested = set(cpus)


EVERY = range(8)


class RunCpusTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.logged: list[dict] = []
        globalLogPublisher.addObserver(self.logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.logged.append)
        self.online = {0, 1, 2, 3}

    def cpus(self, kernel: FakeKernel) -> RunCpus:
        return RunCpus(EVERY, online=lambda: set(self.online), getAffinity=kernel.get,
                       setAffinity=kernel.set)

    def inherited(self, kernel: FakeKernel, cpus: RunCpus, spawns: int = 1) -> list[set[int]]:
        """What the children of C{spawns} spawns inherit."""
        children: list[set[int]] = []
        for _ in range(spawns):
            cpus.spawnWide(lambda: children.append(set(kernel.requested)))
        return children

    def levels(self, level: LogLevel) -> list[dict]:
        return [e for e in self.logged if e.get("log_level") == level]

    def test_pinnedDaemonSpawnsWide(self) -> None:
        """
        The child of a daemon pinned to CPU 0 asks for every CPU; the
        daemon is pinned again after.
        """
        kernel = FakeKernel(requested={0}, allowed=set(EVERY))
        self.assertEqual(self.inherited(kernel, self.cpus(kernel), 2), [set(EVERY)] * 2)
        self.assertEqual(kernel.requested, {0})
        self.assertEqual(kernel.sets, [set(EVERY), {0}] * 2)

    def test_narrowDaemonCgroup(self) -> None:
        """
        A daemon whose own cgroup allows one CPU (C{AllowedCPUs=0}, its
        containers' cgroup parent elsewhere): its children still ask for
        every CPU, and it asks for CPU 0 again after, not for every CPU.
        """
        kernel = FakeKernel(requested={0}, allowed={0})
        self.assertEqual(self.inherited(kernel, self.cpus(kernel), 2), [set(EVERY)] * 2)
        self.assertEqual(kernel.requested, {0})
        kernel.allowed = set(EVERY)
        self.assertEqual(kernel.get(0), {0})

    def test_putBackWhenTheSpawnFails(self) -> None:
        """A spawn that raises leaves the daemon pinned as it was."""
        kernel = FakeKernel(requested={1}, allowed=set(EVERY))

        def spawn() -> None:
            raise OSError(errno.EMFILE, "Too many open files")

        self.assertRaises(OSError, self.cpus(kernel).spawnWide, spawn)
        self.assertEqual(kernel.requested, {1})

    def test_notPinnedNoChange(self) -> None:
        """
        A daemon with every online CPU is never changed: one look at its
        mask a spawn, and the spawn's result is returned.
        """
        kernel = FakeKernel(requested=set(EVERY), allowed={0, 1, 2, 3})
        cpus = self.cpus(kernel)
        self.assertEqual([cpus.spawnWide(lambda: 7) for _ in range(3)], [7] * 3)
        self.assertEqual((kernel.sets, kernel.gets), ([], 3))

    def test_cpuOffline(self) -> None:
        """A daemon that holds every CPU still online is not pinned."""
        kernel = FakeKernel(requested=set(EVERY), allowed={0, 1, 2})
        cpus = self.cpus(kernel)
        self.online = {0, 1, 2}
        self.assertEqual(self.inherited(kernel, cpus, 2), [set(EVERY)] * 2)
        self.assertEqual(kernel.sets, [])

    def test_pinnedLater(self) -> None:
        """An operator who pins the daemon while it runs gets the same."""
        kernel = FakeKernel(requested=set(EVERY), allowed=set(EVERY))
        cpus = self.cpus(kernel)
        self.inherited(kernel, cpus)
        kernel.requested = {1}
        self.assertEqual(self.inherited(kernel, cpus), [set(EVERY)])
        self.assertEqual(kernel.requested, {1})

    def test_refusedSaysSoOnce(self) -> None:
        """
        A kernel that refuses the change (EPERM under a seccomp filter, say)
        never stops a run: the spawns go on with the daemon's mask, each
        tries again, and one warning says so.
        """
        kernel = FakeKernel(requested={0}, allowed=set(EVERY), refuse=errno.EPERM)
        self.assertEqual(self.inherited(kernel, self.cpus(kernel), 3), [{0}] * 3)
        (warning,) = self.levels(LogLevel.warn)
        self.assertEqual((warning["error"], warning["cpus"]), (os.strerror(errno.EPERM), [0]))
        kernel.refuse = 0
        self.assertEqual(self.inherited(kernel, self.cpus(kernel)), [set(EVERY)])

    def test_cannotPutBackIsCritical(self) -> None:
        """A mask that cannot be put back is logged as critical."""
        kernel = FakeKernel(requested={0}, allowed=set(EVERY))

        def spawn() -> None:
            kernel.refuse = errno.EINVAL

        self.cpus(kernel).spawnWide(spawn)
        (critical,) = self.levels(LogLevel.critical)
        self.assertEqual(critical["cpus"], [0])

    def test_cpuList(self) -> None:
        """The kernel's CPU lists; a list that cannot be read is None."""
        self.assertEqual(cpuList("0-3,5,7-8\n"), {0, 1, 2, 3, 5, 7, 8})
        self.assertEqual(cpuList("0\n"), {0})
        path = self.mktemp()
        self.assertIsNone(readCpuList(path))
        with open(path, "w") as f:
            f.write("0-1,4-7\n")
        self.assertEqual(readCpuList(path), {0, 1, 4, 5, 6, 7})
        self.assertEqual(everyCpu(path), range(8))
        self.assertEqual(onlineCpus(path + ".missing"), set(range(os.cpu_count() or 1)))


def _widest() -> set[int]:
    """The widest CPU mask a fresh process here may have."""
    script = (
        "import json, os; from pycm.backends.process.runcpus import everyCpu;"
        " os.sched_setaffinity(0, everyCpu()); print(json.dumps(sorted(os.sched_getaffinity(0))))"
    )
    out = subprocess.check_output([sys.executable, "-c", script], env=dict(os.environ))
    return set(json.loads(out))


class PinnedDaemonE2ETests(SynchronousTestCase):
    """A real daemon pinned to one CPU, as C{taskset} or C{CPUAffinity=} pins it."""

    def setUp(self) -> None:
        self.widest = _widest()
        if len(self.widest) < 2:
            raise self.skipTest("needs two CPUs: with one, a pin changes nothing")
        self.pin = {min(self.widest)}
        self.daemon = RealDaemon(
            self, backend="process", cpus=self.pin,
            args=["--backend-option", "cgroup-parent=/pycm-e2e"],
        ).start()
        self.client = self.daemon.connect()

    def processOf(self, name: str) -> int:
        pid = self.client.ok(f"inspect {name}")["pid"]
        self.assertIsInstance(pid, int)
        return int(pid)

    def test_runsGetEveryCpu(self) -> None:
        """
        Containers started every way (the command itself, and the exec
        helper a memory limit takes), what they fork and their health
        checks may use every CPU; the daemon stays pinned.
        """
        mask = os.path.join(self.daemon.home, "check-mask")
        self.client.ok("run plain host sh -c 'sleep 1000 & wait'")
        self.client.ok("run --memory 64m limited host sleep 1000")
        self.client.ok(
            "run --health-interval=1s --health-cmd="
            f"'grep Cpus_allowed_list: /proc/self/status > {mask}' checked host sleep 1000"
        )
        plain = self.processOf("plain")
        self.assertEqual(os.sched_getaffinity(plain), self.widest)
        self.assertEqual(os.sched_getaffinity(self.processOf("limited")), self.widest)
        waitFor(lambda: _children(plain) != [], "the container's child")
        (child,) = _children(plain)
        self.assertEqual(os.sched_getaffinity(child), self.widest)
        waitFor(lambda: os.path.exists(mask) and os.path.getsize(mask) > 0, "a health check")
        with open(mask) as f:
            self.assertEqual(cpuList(f.read().split(":")[1]), self.widest)
        assert self.daemon.process is not None
        self.assertEqual(os.sched_getaffinity(self.daemon.process.pid), self.pin)


def _children(pid: int) -> list[int]:
    """The children of C{pid}'s main thread."""
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(word) for word in f.read().split()]
