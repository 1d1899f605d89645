"""
The daemon killed (SIGKILL) in the middle of a burst of concurrent C{run}s
on the process backend (issue 12's crash test of group commits): several
connections pipeline their C{run}s, the daemon dies while it answers them,
and the next daemon must have every container whose C{run} was
acknowledged (an C{OK} the client read), and leave no process of this
state directory unmanaged.

Real C{twistd pycm}, real processes, real SIGKILL; it polls with deadlines
(L{tests.e2e.waitFor}), no fixed sleeps.
"""

from __future__ import annotations

import json
import os
import threading

from twisted.trial.unittest import SynchronousTestCase

from pycm.backends.process import procfs
from pycm.backends.supervisor.backend import LOST_ERROR, RECLAIMED_ERROR
from tests.e2e import LineClient, RealDaemon, killAll, marked, waitFor

#: Connections pipelining their runs at once, and runs each sends.
CONNECTIONS = 4
RUNS = 50
#: The daemon is killed once this many runs were acknowledged.
KILL_AFTER = 40


class Burst:
    """
    One connection that sends all its C{run}s at once and reads the
    replies until the daemon dies: C{acked} holds the containers it was
    told were running.
    """

    def __init__(self, client: LineClient, prefix: str, policy: str) -> None:
        self.client = client
        self.names = [f"{prefix}{i:03d}" for i in range(RUNS)]
        self.policy = policy
        self.acked: dict[str, dict] = {}
        self.thread = threading.Thread(target=self._read, daemon=True)

    def send(self) -> None:
        lines = "".join(f"run --restart={self.policy} {n} host sleep 1000\n" for n in self.names)
        self.client.send(lines)
        self.thread.start()

    def _read(self) -> None:
        for name in self.names:
            try:
                line = self.client.readLine().decode()
            except (ConnectionError, OSError):
                return
            kind, _, rest = line.partition(" ")
            if kind == "OK":
                self.acked[name] = json.loads(rest)


class CrashDuringBurstTests(SynchronousTestCase):
    """SIGKILL while concurrent runs are being group-committed."""

    def test_acknowledgedRunsSurviveCrash(self) -> None:
        """
        Every container whose C{run} was acknowledged before the SIGKILL is
        there after the restart, with the id it was given: C{always} ones
        running again once brought back (a new process), the others stopped and reclaimed
        (C{exited}, or C{dead} if their process was gone); every process
        carrying this state directory's mark then belongs to a running
        container (no orphan).
        """
        daemon = RealDaemon(
            self, backend="process", args=["--backend-option", "cgroup-parent=/pycm-e2e-burst"]
        )
        marker = os.path.realpath(daemon.stateDir)
        self.addCleanup(killAll, marker)
        daemon.start()
        bursts = [
            Burst(daemon.connect(unix=True), f"b{c}x", "always" if c % 2 else "no")
            for c in range(CONNECTIONS)
        ]
        for burst in bursts:
            burst.send()
        waitFor(
            lambda: sum(len(b.acked) for b in bursts) >= KILL_AFTER, "runs to be acknowledged"
        )
        daemon.kill9()
        for burst in bursts:
            burst.thread.join(30)
        acked = {name: c for burst in bursts for name, c in burst.acked.items()}
        self.assertGreaterEqual(len(acked), KILL_AFTER)
        self.assertLess(len(acked), CONNECTIONS * RUNS, "the daemon died after the burst")

        daemon.start()
        client = daemon.connect()
        # More than a batch of always ones are restarting until their turn.
        waitFor(
            lambda: all(c["state"] != "restarting" for c in client.ok("list")),
            "the always containers to be brought back",
        )
        listed = {c["name"]: c for c in client.ok("list")}
        for name, before in acked.items():
            self.assertIn(name, listed, f"{name} was acknowledged, and is lost")
            after = client.ok(f"inspect {name}")
            self.assertEqual(after["id"], before["id"])
            if before["restart_policy"] == "always":
                self.assertEqual(after["state"], "running", name)
                self.assertNotEqual(after["pid"], before["pid"])
            else:
                self.assertIn(
                    (after["state"], after.get("error")),
                    [("exited", RECLAIMED_ERROR), ("dead", LOST_ERROR)],
                    name,
                )

        def managed() -> bool:
            running = {
                c["pid"]: c["name"] for c in client.ok("list") if c["state"] == "running"
            }
            return all(
                running.get(procfs.readStat(pid).pgrp if procfs.readStat(pid) else pid) == name
                for pid, (name, _) in marked(marker).items()
            )

        waitFor(managed, "every marked process to belong to a running container")
        for name in listed:
            client.ok(f"rm --force {name}")
        waitFor(lambda: not marked(marker), "every container process to be gone")
