"""
The cgroups of runs whose records were put aside with nothing left to read
of them (L{pycm.backends.process.reclaim.sweepLeftovers}'s strays): found
by the processes in them, real processes carrying the markers, and only
ever removed once empty, never killed through.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from pycm.backends.process import procfs, reclaim
from pycm.backends.process.markers import groupsOfMarked, strayMark
from pycm.model import Container
from tests.test_process import container

RUN_1 = "1" * 32
RUN_2 = "2" * 32

#: The cgroup parent of the fake groups, as a cgroup path and as a directory.
PARENT = "/pycm"
PARENT_DIR = "/sys/fs/cgroup/unified/pycm"


class FakeGroups:
    """
    The groups a cgroup parent holds, with their live processes, by name.
    A group of C{then} holds its processes there once it was looked at
    once: what its first look saw is gone, others came.
    """

    def __init__(
        self, members: dict[str, list[int]], then: dict[str, list[int]] | None = None
    ) -> None:
        self.members = members
        self.then = dict(then or {})
        self.removed: list[str] = []
        self.killedIn: list[str] = []

    def groups(self) -> set[str]:
        return set(self.members)

    def dirsOf(self, group: str) -> list[str]:
        return [f"{PARENT_DIR}/{group}"]

    def pids(self, group: str) -> list[int]:
        listed = self.members.get(group, [])
        if group in self.then:
            self.members[group] = self.then.pop(group)
        return [pid for pid in listed if procfs.isSameProcess(pid, procfs.startTime(pid))]

    def killAll(self, group: str) -> list[int]:
        self.killedIn.append(group)
        pids = self.pids(group)
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        return pids

    def release(self, group: str) -> bool:
        """Remove C{group} if no live process is in it, as rmdir does."""
        if self.pids(group):
            return False
        self.removed.append(group)
        self.members.pop(group, None)
        return True


class FakeProc:
    """
    A C{/proc} of some real processes, whose C{cgroup} files say what the
    test wants (their C{stat} and C{environ} are copied from the real one).
    """

    def __init__(self, path: str) -> None:
        self.path = path
        os.makedirs(path)

    def add(self, pid: int, group: str) -> None:
        """C{pid}, in the fake group C{group}."""
        os.makedirs(f"{self.path}/{pid}")
        for name in ("stat", "environ"):
            shutil.copyfile(f"/proc/{pid}/{name}", f"{self.path}/{pid}/{name}")
        with open(f"{self.path}/{pid}/cgroup", "w") as f:
            f.write(f"1:pids:/\n0::{PARENT}/{group}\n")


def groupName(container: Container) -> str:
    return f"{container.name}-{container.id[:12]}"


class StrayGroupTests(SynchronousTestCase):
    """A stray's cgroup is removed only when its processes say it is one."""

    def setUp(self) -> None:
        self.state = os.path.realpath(self.mktemp())
        self.clock = Clock()

    def spawn(self, name: str | None, state: str | None = None) -> subprocess.Popen[bytes]:
        """
        A real process carrying the markers of a run of C{name} (none if
        None), once it runs: its environment is only readable after its
        exec is done (a shell that says so, then waits).
        """
        env = dict(os.environ)
        if name is not None:
            env.update(PYCM_STATE=state or self.state, PYCM_RUN_ID=RUN_1, PYCM_CONTAINER=name)
        process = subprocess.Popen(
            ["sh", "-c", "echo ready; read line"],
            env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        )  # fmt: skip
        self.addCleanup(process.communicate)
        self.addCleanup(process.kill)
        self.assertEqual(process.stdout.readline() if process.stdout else b"", b"ready\n")
        return process

    def sweep(
        self, groups: FakeGroups, proc: str = "/proc", runs: dict[str, Container] | None = None
    ) -> reclaim.CgroupReleaser:
        """The sweep at start, with C{lost} put aside; its releaser."""
        releaser = reclaim.CgroupReleaser(self.clock, groups)
        reclaim.sweepLeftovers(
            runs or {},
            {"lost"},
            proc=proc,
            stateMarker=self.state,
            cgroups=groups,  # type: ignore[arg-type]
            releaser=releaser,
            groupName=groupName,
        )
        return releaser

    def test_groupOfStrayRemoved(self) -> None:
        """
        The sweep at start removes the group whose every process is a run
        of a stray of this state directory, in that group, named for it,
        once they are killed (was: left, the record's id unread); it leaves
        an empty group (another daemon's, maybe: the parent may be shared),
        one holding another state directory's process or a process without
        markers, one named for another container, and the groups of runs
        it knows.
        """
        proc = FakeProc(self.mktemp())
        lost = self.spawn("lost")
        mixed = self.spawn("lost")
        unmarked = self.spawn(None)
        other = self.spawn("lost", state=self.state + "-other")
        misnamed = self.spawn("lost")
        web = container("web")
        members = {
            "lost-0123456789ab": [lost.pid],
            "lost-aaaaaaaaaaaa": [],
            "lost-bbbbbbbbbbbb": [other.pid],
            "lost-cccccccccccc": [mixed.pid, unmarked.pid],
            "other-dddddddddd": [misnamed.pid],
            groupName(web): [],
        }
        for group, pids in members.items():
            for pid in pids:
                proc.add(pid, group)
        groups = FakeGroups(members)
        self.sweep(groups, proc.path, {RUN_2: web})
        self.assertEqual(lost.wait(), -signal.SIGKILL)
        self.clock.advance(0.1)
        self.assertEqual(sorted(groups.removed), ["lost-0123456789ab", groupName(web)])
        self.assertIsNone(other.poll())
        self.assertIsNone(unmarked.poll())
        self.assertNotIn("lost-0123456789ab", groups.killedIn)

    def test_listedPidElsewhere(self) -> None:
        """
        A pid listed in a group that is now a process of a stray of this
        state directory sitting in another group (the pid reused since the
        group was listed) does not make the group a stray's: another
        daemon's group of the same name, and the process in it, are left
        alone (was: killed through the group and removed).
        """
        ours = self.spawn("lost")
        theirs = self.spawn("lost", state=self.state + "-other")
        groups = FakeGroups({"lost-0123456789ab": [ours.pid]}, {"lost-0123456789ab": [theirs.pid]})
        releaser = self.sweep(groups)
        self.clock.advance(5)
        releaser.close()
        self.assertIsNone(theirs.poll())
        self.assertEqual((groups.removed, groups.killedIn), ([], []))
        # Ours is killed all the same, by its markers.
        self.assertEqual(ours.wait(), -signal.SIGKILL)

    def test_neverKilledThrough(self) -> None:
        """
        A stray's group that holds another process after its own were
        killed by their markers is never killed through, nor removed
        (rmdir fails on it), even when the releaser closes (was: every
        process in it killed).
        """
        proc = FakeProc(self.mktemp())
        lost = self.spawn("lost")
        proc.add(lost.pid, "lost-0123456789ab")
        other = self.spawn(None)
        groups = FakeGroups(
            {"lost-0123456789ab": [lost.pid]}, {"lost-0123456789ab": [lost.pid, other.pid]}
        )
        releaser = self.sweep(groups, proc.path)
        self.assertEqual(lost.wait(), -signal.SIGKILL)
        self.clock.advance(1)
        releaser.close()
        self.clock.advance(5)
        self.assertIsNone(other.poll())
        self.assertEqual((groups.removed, groups.killedIn), ([], []))

    def test_noStrays(self) -> None:
        """Without strays or a state marker, no group is looked into."""
        lost = self.spawn("lost")
        members = {"lost-0123456789ab": [lost.pid]}
        groups = FakeGroups(dict(members))
        self.assertEqual(groupsOfMarked(members, groups.pids, groups.dirsOf, strayMark(
            self.state, {"web"}), "/proc"), [])  # fmt: skip
        reclaim.sweepLeftovers(
            {}, set(), proc="/proc", stateMarker=self.state,
            cgroups=groups, releaser=reclaim.CgroupReleaser(self.clock, groups),  # type: ignore[arg-type]
            groupName=groupName,
        )  # fmt: skip
        self.assertEqual(groups.removed, [])

    def test_names(self) -> None:
        """
        A group is a stray's only if named C{NAME-ID}, ID 1 to 12
        characters, no dash, and its process is in it (its C{cgroup}).
        """
        lost = self.spawn("lost")
        names = ["lost-0123456789ab", "lost-a", "lost-", "lost-0123456789abc", "lost-a-b",
                 "lostx-0123456789ab", "xlost-0123456789ab"]  # fmt: skip
        mark = strayMark(self.state, {"lost"})
        found = []
        for name in names:
            proc = FakeProc(self.mktemp())
            proc.add(lost.pid, name)
            groups = FakeGroups({name: [lost.pid]})
            found += groupsOfMarked([name], groups.pids, groups.dirsOf, mark, proc.path)
        self.assertEqual(found, ["lost-0123456789ab", "lost-a"])
        elsewhere = FakeProc(self.mktemp())
        elsewhere.add(lost.pid, "lost-a")
        groups = FakeGroups({"lost-b": [lost.pid]})
        found = groupsOfMarked(["lost-b"], groups.pids, groups.dirsOf, mark, elsewhere.path)
        self.assertEqual(found, [])


class ReadWhileAliveTests(SynchronousTestCase):
    """L{procfs.readWhileAlive} and L{procfs.cgroupPaths}."""

    def test_alive(self) -> None:
        """A process that lives throughout: what was read."""
        self.assertEqual(procfs.readWhileAlive(os.getpid(), lambda: "read"), "read")

    def test_goneMeanwhile(self) -> None:
        """A process that ends (and is reaped) while it is read: None."""
        process = subprocess.Popen(["sleep", "1000"])
        self.addCleanup(process.wait)
        self.addCleanup(process.kill)

        def readAndEnd() -> str:
            process.kill()
            process.wait()
            return "read"

        self.assertIsNone(procfs.readWhileAlive(process.pid, readAndEnd))

    def test_noSuchProcess(self) -> None:
        """A pid that names no process: None, nothing read."""
        process = subprocess.Popen(["true"])
        process.wait()
        self.assertIsNone(procfs.readWhileAlive(process.pid, self.fail))

    def test_cgroupPaths(self) -> None:
        """Each hierarchy's path; None for no such process."""
        proc = FakeProc(self.mktemp())
        proc.add(os.getpid(), "web-0123456789ab")
        paths = procfs.cgroupPaths(os.getpid(), proc.path)
        self.assertEqual(paths, ["/", "/pycm/web-0123456789ab"])
        self.assertIsNone(procfs.cgroupPaths(os.getpid() + 10**7, proc.path))
