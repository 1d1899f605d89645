"""
The cgroups of runs whose records were put aside with nothing left to read
of them (L{pycm.backends.process.reclaim.sweepLeftovers}'s strays): found
by the processes in them, real processes carrying the markers.
"""

from __future__ import annotations

import os
import signal
import subprocess

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from pycm.backends.process import reclaim
from pycm.backends.process.markers import groupsOfMarked, strayMark
from pycm.model import Container
from tests.test_process import container

RUN_1 = "1" * 32
RUN_2 = "2" * 32


class FakeGroups:
    """The groups a cgroup parent holds, with their processes, by name."""

    def __init__(self, members: dict[str, list[int]]) -> None:
        self.members = members
        self.released: list[str] = []

    def groups(self) -> set[str]:
        return set(self.members)

    def pids(self, group: str) -> list[int]:
        return list(self.members.get(group, []))

    def killAll(self, group: str) -> list[int]:
        for pid in self.pids(group):
            os.kill(pid, signal.SIGKILL)
        return self.pids(group)

    def release(self, group: str) -> bool:
        self.released.append(group)
        self.members.pop(group, None)
        return True


def groupName(container: Container) -> str:
    return f"{container.name}-{container.id[:12]}"


class StrayGroupTests(SynchronousTestCase):
    """A stray's cgroup is removed only when its processes say it is one."""

    def setUp(self) -> None:
        self.state = os.path.realpath(self.mktemp())

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

    def test_groupOfStrayRemoved(self) -> None:
        """
        The sweep at start removes the group whose every process is a run
        of a stray of this state directory, named for it (was: left, the
        record's id unread); it leaves an empty group (another daemon's,
        maybe: the parent may be shared), one holding another state
        directory's process or a process without markers, one named for
        another container, and the groups of runs it knows.
        """
        lost = self.spawn("lost")
        mixed = self.spawn("lost")
        unmarked = self.spawn(None)
        other = self.spawn("lost", state=self.state + "-other")
        misnamed = self.spawn("lost")
        web = container("web")
        groups = FakeGroups(
            {
                "lost-0123456789ab": [lost.pid],
                "lost-aaaaaaaaaaaa": [],
                "lost-bbbbbbbbbbbb": [other.pid],
                "lost-cccccccccccc": [mixed.pid, unmarked.pid],
                "other-dddddddddd": [misnamed.pid],
                groupName(web): [],
            }
        )
        releaser = reclaim.CgroupReleaser(Clock(), groups)
        reclaim.sweepLeftovers(
            {RUN_2: web},
            {"lost"},
            proc="/proc",
            stateMarker=self.state,
            cgroups=groups,  # type: ignore[arg-type]
            releaser=releaser,
            groupName=groupName,
        )
        self.assertEqual(groups.released, ["lost-0123456789ab", groupName(web)])
        self.assertEqual(lost.wait(), -signal.SIGKILL)
        self.assertIsNone(other.poll())
        self.assertIsNone(unmarked.poll())

    def test_noStrays(self) -> None:
        """Without strays or a state marker, no group is looked into."""
        lost = self.spawn("lost")
        members = {"lost-0123456789ab": [lost.pid]}
        self.assertEqual(groupsOfMarked(members, members.__getitem__, strayMark(
            self.state, {"web"}), "/proc"), [])  # fmt: skip
        groups = FakeGroups(dict(members))
        reclaim.sweepLeftovers(
            {}, set(), proc="/proc", stateMarker=self.state,
            cgroups=groups, releaser=reclaim.CgroupReleaser(Clock(), groups),  # type: ignore[arg-type]
            groupName=groupName,
        )  # fmt: skip
        self.assertEqual(groups.released, [])

    def test_names(self) -> None:
        """A group is a stray's only if named C{NAME-ID}, ID 1 to 12 characters, no dash."""
        lost = self.spawn("lost")
        names = ["lost-0123456789ab", "lost-a", "lost-", "lost-0123456789abc", "lost-a-b",
                 "lostx-0123456789ab", "xlost-0123456789ab"]  # fmt: skip
        found = groupsOfMarked(
            names, lambda group: [lost.pid], strayMark(self.state, {"lost"}), "/proc"
        )
        self.assertEqual(found, ["lost-0123456789ab", "lost-a"])
