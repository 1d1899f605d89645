"""
End to end, a real daemon killed with SIGKILL between a stop's reply and
the look for the stopped run's marker: a process of that run that left its
session and its cgroup is still killed by the next daemon, although the
run's record is gone (C{rm}) or names a newer run (C{start}): its run id
was in the journal (C{STATE/ended-runs}) before the reply.  The daemon
that is killed puts its look an hour after a run's end
(C{mark-sweep-delay}), so the kill always comes first.
"""

from __future__ import annotations

import os

from twisted.trial.unittest import SynchronousTestCase

from pycm.backends.process import procfs
from pycm.backends.process.markjournal import JOURNAL_NAME
from tests.e2e import RealDaemon, waitFor
from tests.test_process_e2e import escapeTarget, isAlive, killGroupLater, runEscapee


class EscapingRuns(SynchronousTestCase):
    """A process daemon and runs with a process that escapes (no test of its own)."""

    #: How long the daemon puts off the look after a run's end (seconds).
    sweepDelay = 1

    def setUp(self) -> None:
        self.target = escapeTarget()
        self.daemon = RealDaemon(
            self,
            backend="process",
            args=[
                "--backend-option",
                "cgroup-parent=/pycm-e2e",
                "--backend-option",
                f"mark-sweep-delay={self.sweepDelay}",
            ],
        ).start()
        self.client = self.daemon.connect()

    def escaping(self, name: str) -> tuple[str, int, int]:
        """
        Run C{name}, whose shell leaves the container's cgroup and starts a
        child in a new session; return the run's id and the child's pid and
        start time.
        """
        # The child lets go of the run's output pipes: the run ends (and
        # the stop replies) without waiting for them.
        script = (
            f"echo $$ > {self.target}; "
            "setsid sh -c 'echo $$; exec sleep 1000 >/dev/null 2>&1' & exec sleep 2000"
        )
        _, pid, start = runEscapee(self, self.client, name, script)
        env = procfs.environ(pid) or b""
        runId = next(
            v.split(b"=", 1)[1].decode() for v in env.split(b"\0") if v.startswith(b"PYCM_RUN_ID=")
        )
        return runId, pid, start


class CrashBeforeLookTests(EscapingRuns):
    """A kill -9 before the look: the next daemon finds the run by its journaled id."""

    sweepDelay = 3600

    def crashBeforeLook(self, runId: str) -> None:
        """SIGKILL the daemon while the journal names C{runId} (its look an hour away)."""
        self.daemon.kill9()
        with open(os.path.join(self.daemon.stateDir, JOURNAL_NAME)) as f:
            self.assertIn(runId, f.read().split())

    def test_stopRemoveCrash(self) -> None:
        """
        C{stop}, then C{rm} (the record and its run id are gone), then a
        SIGKILL: the escaped process outlives that daemon and the next one
        kills it at start.
        """
        runId, pid, start = self.escaping("esc-gone")
        self.assertEqual(self.client.ok("stop esc-gone")["state"], "exited")
        self.client.ok("rm esc-gone")
        self.crashBeforeLook(runId)
        self.assertTrue(isAlive(pid, start))
        self.daemon.start()
        waitFor(lambda: not isAlive(pid, start), "the escaped process to be killed", 10)
        self.assertEqual(os.path.getsize(os.path.join(self.daemon.stateDir, JOURNAL_NAME)), 0)

    def test_stopStartCrash(self) -> None:
        """
        C{stop}, then C{start} (the record now names the new run), then a
        SIGKILL: the old run's escaped process is killed by the next daemon.
        """
        runId, pid, start = self.escaping("esc-again")
        self.client.ok("stop esc-again")
        container = self.client.ok("start esc-again")
        killGroupLater(self, container["pid"])
        self.crashBeforeLook(runId)
        self.assertTrue(isAlive(pid, start))
        self.daemon.start()
        waitFor(lambda: not isAlive(pid, start), "the escaped process to be killed", 10)


class LaterLookTests(EscapingRuns):
    """Without a crash, the later look comes (a second after the stop)."""

    def test_stopThenLook(self) -> None:
        """
        Without a crash, C{stop} replies at once and the escaped process is
        killed by the later look, which empties the journal.
        """
        runId, pid, start = self.escaping("esc-later")
        self.client.ok("stop esc-later")
        waitFor(lambda: not isAlive(pid, start), "the escaped process to be killed", 10)
        path = os.path.join(self.daemon.stateDir, JOURNAL_NAME)
        waitFor(lambda: os.path.getsize(path) == 0, "the journal to be emptied", 10)
