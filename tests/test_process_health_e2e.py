"""
End-to-end tests of health checks and C{--user} on the process backend:
the real C{twistd pycm} in a subprocess, real containers, real checks, and
the daemon killed with SIGKILL while a check runs.  They poll with
deadlines (L{tests.e2e.waitFor}); no fixed sleeps.
"""

from __future__ import annotations

import os
import pwd

from twisted.trial.unittest import SynchronousTestCase

from pycm.backends.process import procfs
from pycm.backends.supervisor.backend import RECLAIMED_ERROR
from tests.e2e import RealDaemon, waitFor
from tests.test_process_e2e import groupGone, killGroupLater


def daemonFor(testCase: SynchronousTestCase) -> RealDaemon:
    """A process-backend daemon (cgroups in a test parent group of its own)."""
    return RealDaemon(
        testCase,
        backend="process",
        args=["--backend-option", "cgroup-parent=/pycm-health-e2e"],
    )


def uidOf(pid: int) -> int | None:
    """The real uid of C{pid}, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("Uid:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def alive(pid: int) -> bool:
    stat = procfs.readStat(pid)
    return stat is not None and stat.alive


class DaemonHealthTests(SynchronousTestCase):
    """Health checks and --user through the real daemon."""

    def setUp(self) -> None:
        if os.geteuid() != 0:
            self.skipTest("only root runs containers as another user")

    def test_userAndHealth(self) -> None:
        """
        C{run --user=nobody --health-cmd=...}: the run and its checks are
        nobody's; C{wait --for=healthy} answers; the checks are no
        containers; an unknown user is refused with nothing created.
        """
        daemon = daemonFor(self).start()
        client = daemon.connect()
        hc = client.ok(
            "run --user=nobody --health-cmd='id -un' --health-interval=200ms hc host sleep 1000"
        )
        killGroupLater(self, hc["pid"])
        nobody = pwd.getpwnam("nobody").pw_uid
        waitFor(lambda: uidOf(hc["pid"]) == nobody, "the run to be nobody's")
        waited = client.ok("wait --for=healthy hc")
        self.assertEqual(waited["health"], "healthy")
        detail = client.ok("inspect hc")
        self.assertEqual(detail["user"], "nobody")
        self.assertEqual(detail["health"]["log"][-1]["output"], "nobody\n")
        self.assertEqual([c["name"] for c in client.ok("ls -a")], ["hc"])
        self.assertEqual(
            client.err("run --user=pycm-no-such-user xuser host sleep 1"), "bad_request"
        )
        self.assertEqual(client.err("inspect xuser"), "not_found")
        client.ok("stop hc")
        waitFor(lambda: groupGone(hc["pid"]), "hc's group to be gone")

    def test_checkGoneAfterCrash(self) -> None:
        """
        A check running when the daemon is killed outlives it (its own
        session); the next daemon kills it as part of its run's leftovers,
        and the container reads as reclaimed, not as a run that was
        starting.
        """
        pidFile = os.path.abspath(self.mktemp())
        daemon = daemonFor(self).start()
        client = daemon.connect()
        hc = client.ok(
            f"run --health-cmd='echo $$ > {pidFile}; exec sleep 1000'"
            " --health-interval=100ms --health-timeout=1h hc host sleep 1000"
        )
        killGroupLater(self, hc["pid"])
        waitFor(lambda: os.path.exists(pidFile) and open(pidFile).read().strip(), "a check")
        with open(pidFile) as f:
            check = int(f.read())
        killGroupLater(self, check)
        daemon.kill9()
        self.assertTrue(alive(check))
        daemon.start()
        client = daemon.connect()
        waitFor(lambda: not alive(check), "the check to be killed")
        waitFor(lambda: groupGone(hc["pid"]), "hc's group to be stopped")
        after = client.ok("inspect hc")
        self.assertEqual((after["state"], after["error"]), ("exited", RECLAIMED_ERROR))
