"""
Tests for the helpers of the tests that need a real swarm
(L{tests.swarmsupport}) that can go wrong without one: the worker
outage's lock and its check of the pid it kills, and the removal of a
test's services.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase

from pycm.backends.docker.engine import EngineError
from tests.stubengine import StubEngine
from tests.swarmsupport import (
    SwarmCluster,
    isWorkerDockerd,
    killWorker,
    outageLockPath,
    releaseOutageLock,
    removeServices,
    tryOutageLock,
)


def cluster(directory: str) -> SwarmCluster:
    return SwarmCluster(
        host="unix:///nowhere",
        workerHost="unix:///nowhere",
        managerNode="m",
        workerNode="w",
        workerPidfile=os.path.join(directory, "worker", "dockerd.pid"),
        workerRestart="true",
        image="busybox",
        directory=directory,
    )


def lockedElsewhere(path: str) -> bool:
    """Does another process find C{path} locked?"""
    script = (
        "import fcntl, os, sys\n"
        "fd = os.open(sys.argv[1], os.O_RDWR)\n"
        "try:\n    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
        "except BlockingIOError:\n    sys.exit(3)\n"
    )
    return subprocess.run([sys.executable, "-c", script, path]).returncode == 3


class WorkerOutageTests(SynchronousTestCase):
    """L{killWorker} kills only this worker's dockerd, one outage at a time."""

    def setUp(self) -> None:
        self.dir = self.mktemp()
        os.makedirs(os.path.join(self.dir, "worker"))
        self.proc = os.path.join(self.dir, "proc")
        self.cluster = cluster(self.dir)
        self.addCleanup(releaseOutageLock, self.cluster)

    def process(self, pid: int, *argv: str) -> None:
        """A process in the fake C{/proc}."""
        os.makedirs(os.path.join(self.proc, str(pid)))
        with open(os.path.join(self.proc, str(pid), "cmdline"), "wb") as f:
            f.write(b"".join(arg.encode() + b"\0" for arg in argv))

    def test_isWorkerDockerd(self) -> None:
        """Only a dockerd given this pidfile (either spelling) is the worker's."""
        pidfile = self.cluster.workerPidfile
        self.process(10, "dockerd", "--data-root", "/x", "--pidfile", pidfile)
        self.process(11, "/usr/bin/dockerd", f"--pidfile={pidfile}")
        self.process(12, "dockerd", "--pidfile", "/other/dockerd.pid")
        self.process(13, "sleep", "--pidfile", pidfile)
        found = {pid: isWorkerDockerd(pid, pidfile, self.proc) for pid in (10, 11, 12, 13, 14)}
        self.assertEqual(found, {10: True, 11: True, 12: False, 13: False, 14: False})

    def test_stalePidfile(self) -> None:
        """
        A pidfile naming another process (its dockerd gone, the pid reused)
        is refused, nothing killed, and the outage lock let go.
        """
        self.process(os.getpid(), "python", "trial")
        with open(self.cluster.workerPidfile, "w") as f:
            f.write(f"{os.getpid()}\n")
        self.assertRaises(AssertionError, killWorker, self.cluster, self.proc)
        self.assertFalse(lockedElsewhere(outageLockPath(self.cluster)))

    def test_lock(self) -> None:
        """The outage lock, held here, is held for other processes too, until let go."""
        self.assertTrue(tryOutageLock(self.cluster))
        self.assertTrue(tryOutageLock(self.cluster))  # this process holds it already
        path = outageLockPath(self.cluster)
        self.assertEqual(path, os.path.join(self.dir, "outage.lock"))
        self.assertTrue(lockedElsewhere(path))
        releaseOutageLock(self.cluster)
        self.assertFalse(lockedElsewhere(path))


class RemovingEngine(StubEngine):
    """Answers each C{DELETE} as the test says, and notes what it was asked."""

    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    def request(self, method: str, path: str, *a: Any, **k: Any) -> Any:
        self.asked.append(path)
        answer = self.answers.get(path.rsplit("/", 1)[1])
        if isinstance(answer, Exception):
            return defer.fail(answer)
        return defer.succeed((200, None))


class RemoveServicesTests(SynchronousTestCase):
    """L{removeServices} tries every service, and says which could not be removed."""

    def test_everyOneTried(self) -> None:
        """One gone already is fine; one refused and one timed out are named; all are tried."""
        engine = RemovingEngine(
            {
                "gone": EngineError(404, "service gone not found"),
                "busy": EngineError(500, "rpc error"),
                "slow": defer.TimeoutError("timed out"),
            }
        )
        names = ["gone", "busy", "slow", "fine"]
        failure = self.failureResultOf(removeServices(engine, names), AssertionError)
        self.assertEqual(engine.asked, [f"/services/{name}" for name in names])
        message = str(failure.value)
        self.assertIn("busy: rpc error", message)
        self.assertIn("slow:", message)
        self.assertNotIn("gone", message)

    def test_allRemoved(self) -> None:
        """Nothing refused: no failure."""
        engine = RemovingEngine({"gone": EngineError(404, "not found")})
        self.successResultOf(removeServices(engine, ["gone", "fine"]))
