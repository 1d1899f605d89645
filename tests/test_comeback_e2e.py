"""
A real process-backend daemon killed with more C{always} containers than
one batch brings back (L{pycm.backends.supervisor.comeback.BATCH}), then
started again: it answers while they come back, a client's stop of one
holds, and every other one ends with one live process of its own.  Real
time (L{tests.e2e.waitFor}), no fixed sleeps.
"""

from __future__ import annotations

import os

from twisted.trial.unittest import SynchronousTestCase

from pycm.backends.supervisor.comeback import BATCH
from tests.e2e import RealDaemon, killAll, marked, waitFor

#: Containers a batch at a time: several batches after the first.
COUNT = 6 * BATCH + 3


class ReopenedOnManyTests(SynchronousTestCase):
    """The next daemon brings back what a killed one ran."""

    def test_broughtBackOnceEach(self) -> None:
        """
        After SIGKILL of a daemon running L{COUNT} C{always} containers,
        the next one answers, a client's C{stop} of the last (waiting for
        its batch, or just started by it) leaves it C{exited}, and every
        other container runs again with exactly one live process, the
        killed daemon's all gone.
        """
        daemon = RealDaemon(
            self, backend="process", args=["--backend-option", "cgroup-parent=/pycm-e2e-comeback"]
        )
        marker = os.path.realpath(daemon.stateDir)
        self.addCleanup(killAll, marker)
        daemon.start()
        client = daemon.connect()
        names = [f"c{i:02d}" for i in range(COUNT)]
        before = {name: client.ok(f"run --restart=always {name} host sleep 1000")["pid"]
                  for name in names}  # fmt: skip
        daemon.kill9()

        daemon.start()
        client = daemon.connect()
        last = names[-1]
        self.assertEqual(client.ok(f"stop {last}")["state"], "exited")
        waitFor(
            lambda: all(c["state"] != "restarting" for c in client.ok("list")),
            "every container to be brought back",
        )
        listed = {c["name"]: c for c in client.ok("list")}
        self.assertEqual(listed[last]["state"], "exited")
        running = {name for name, c in listed.items() if c["state"] == "running"}
        self.assertEqual(running, set(names[:-1]))
        for name in running:
            self.assertNotEqual(listed[name]["pid"], before[name], name)

        def oneProcessEach() -> bool:
            owners = sorted(name or "" for name, _ in marked(marker).values())
            return owners == sorted(running)

        waitFor(oneProcessEach, "one live process for each running container, no other")
