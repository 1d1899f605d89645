"""
End-to-end: the real C{twistd pycm} (process backend) with its state
directory on a 2 MiB tmpfs that a container fills with its output.

These need root (to mount the tmpfs); they skip with that reason otherwise.
CI runs them as root.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from pycm.daemon.eventlog import MARK_STEP
from tests.e2e import LineClient, RealDaemon, waitFor

#: The size of the state directory's filesystem.
TMPFS_SIZE = "2m"
#: Bytes of a file made before the disk fills, removed to give space back.
FILLER_SIZE = 512 * 1024
#: How long the daemon's descriptors are watched while the disk is full.
WATCH_SECONDS = 2.0
#: Descriptors a flooding container may add to the daemon: its two pipes,
#: its log file, and a little slack for the connections of the test.
FLOOD_FDS = 8

FLOOD = "while :; do echo xxxxxxxxxxxxxxxx; done"
TICKER = "while :; do echo tick; sleep 0.01; done"


def _mountTmpfs(testCase: SynchronousTestCase) -> str:
    """A private 2 MiB tmpfs, unmounted in cleanup (after the daemon stops)."""
    where = tempfile.mkdtemp(prefix="pycm-diskfull-")
    testCase.addCleanup(shutil.rmtree, where, ignore_errors=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE},mode=0700", "tmpfs", where],
        check=True,
        timeout=30,
    )

    def unmount() -> None:
        if subprocess.run(["umount", where], timeout=30).returncode != 0:
            subprocess.run(["umount", "-l", where], timeout=30)

    testCase.addCleanup(unmount)
    return where


def _descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _diskFull(path: str) -> bool:
    return os.statvfs(path).f_bavail == 0


class DiskFullTests(SynchronousTestCase):
    """
    A full disk does not take the daemon down: descriptors stay bounded,
    new clients are served, C{logs} says lines were dropped, C{kill},
    C{stop} and C{rm} work (saying their change is not saved yet), and
    everything is written, and resumes, by itself when space returns.
    """

    def setUp(self) -> None:
        if os.geteuid() != 0:
            raise self.skipTest("needs root, to mount a 2 MiB tmpfs for the state directory")
        self.mount = _mountTmpfs(self)
        self.filler = os.path.join(self.mount, "filler")
        with open(self.filler, "wb") as f:
            f.write(b"\0" * FILLER_SIZE)
        self.daemon = RealDaemon(
            self, backend="process", stateDir=os.path.join(self.mount, "state")
        ).start()
        self.client = self.daemon.connect(unix=True)

    def container(self, name: str) -> dict[str, Any]:
        return self.client.ok(f"inspect {name}")

    def test_fullDisk(self) -> None:
        """
        The whole episode, as an operator lives it: a flood fills the
        state directory's disk, the daemon stays whole and in control, and
        recovers by itself when space is given back; nothing acknowledged
        is lost across a daemon restart.
        """
        client = self.client
        client.ok("run sleeper host sleep 1000")
        client.ok(f"run ticker host sh -c '{TICKER}'")
        waitFor(lambda: client.ok("logs ticker"), "the ticker's first line")
        baseline = _descriptors(self.daemon.pid)
        client.ok(f"run --restart=always flood host sh -c '{FLOOD}'")
        waitFor(lambda: _diskFull(self.mount), "the disk to fill")

        # Descriptors stay bounded while every line fails to be written.
        most = baseline
        end = time.monotonic() + WATCH_SECONDS
        while time.monotonic() < end:
            most = max(most, _descriptors(self.daemon.pid))
        self.assertLessEqual(most, baseline + FLOOD_FDS)

        # New clients are served; logs say lines are being dropped.
        other = self.daemon.connect()
        self.assertEqual(other.ok("ping"), "pong")
        marker = client.ok("logs --tail=3 flood")[-1]
        self.assertEqual(marker["stream"], "pycm")
        self.assertRegex(marker["line"], r"^\[pycm: \d+ lines dropped: disk full\]$")

        # kill and stop work, and say their change is not saved yet.
        killed = client.ok("kill flood")
        self.assertIs(killed["saved"], False)
        waitFor(lambda: self.container("flood")["state"] == "exited", "flood to exit")
        stopped = client.ok("stop -t 1 sleeper")
        self.assertEqual((stopped["state"], stopped["saved"]), ("exited", False))
        self.assertTrue(_diskFull(self.mount))
        self.assertGreater(client.ok("info")["unsaved"]["containers"], 0)

        # "disk full" once per container's episode, never per line.
        log = self.daemon.log()
        self.assertEqual(log.count("cannot write the log of flood: disk full"), 1)
        self.assertEqual(log.count("cannot save container records"), 1)

        # The ticker's lines are dropped too, once its last page is full.
        waitFor(
            lambda: client.ok("logs --tail=1 ticker")[0]["stream"] == "pycm",
            "the ticker's lines to be dropped",
        )

        # Space returns: everything is written by itself.
        os.unlink(self.filler)
        waitFor(
            lambda: client.ok("info")["unsaved"] == {"containers": 0, "events": 0},
            "what waited to be written",
        )
        waitFor(
            lambda: client.ok("logs --tail=5 ticker")[-1]["line"] == "tick",
            "the ticker's log to resume",
        )
        lines = client.ok("logs --tail=all ticker")
        notes = [line["line"] for line in lines if line["stream"] == "pycm"]
        self.assertEqual(len(notes), 1, notes)
        self.assertRegex(notes[0], r"^\[pycm: \d+ lines dropped: disk full\]$")
        self.assertIn("the log of ticker is written again", self.daemon.log())
        self.assertNotIn("saved", self.container("sleeper"))
        removed = client.ok("rm flood")
        self.assertEqual(removed, {"name": "flood", "removed": True})
        lastId = client.ok("info")["last_event_id"]

        # Nothing acknowledged was lost.
        self.daemon.stop()
        self.daemon.start()
        after = self.daemon.connect(unix=True)
        names = {c["name"]: c for c in after.ok("list")}
        self.assertNotIn("flood", names)
        self.assertEqual(
            (names["sleeper"]["state"], names["sleeper"]["exit_code"]), ("exited", -15)
        )
        after.ok("events --since=0")
        events = _replayed(after, lastId)
        self.assertEqual([event["id"] for event in events], list(range(1, lastId + 1)))
        flood = [event["action"] for event in events if event["name"] == "flood"]
        self.assertEqual(flood, ["create", "start", "kill", "die", "destroy"])


    def test_crashWhileFullIdsNeverRepeat(self) -> None:
        """
        Events handed out while the disk is full, past the point where the
        id mark must be written again (one C{destroy} per container
        removed), cannot be stored; the daemon is then killed (kill -9)
        before space returns.  The next daemon hands out no id it had
        handed out: its first one is above them all (ids may skip after a
        crash, never repeat).
        """
        client = self.client
        os.unlink(self.filler)
        count = MARK_STEP * 6 // 10
        for i in range(count):
            client.ok(f"create c{i}")
        with open(os.path.join(self.daemon.stateDir, "events.mark")) as f:
            mark = int(f.read())
        lastId = client.ok("info")["last_event_id"]
        self.assertLess(mark - lastId, count)  # the removals go past the mark
        _fill(self.filler)
        self.assertTrue(_diskFull(self.mount))
        for i in range(count):
            client.ok(f"rm c{i}")
        info = client.ok("info")
        self.assertGreater(info["last_event_id"], mark)
        self.assertGreater(info["unsaved"]["events"], 0)
        lastId = info["last_event_id"]
        self.daemon.kill9()
        os.unlink(self.filler)
        self.daemon.start()
        after = self.daemon.connect(unix=True)
        after.ok("events")
        after.ok("create fresh")

        def created() -> int | None:
            after.ok("ping")
            ids = [e["id"] for e in after.events if e.get("name") == "fresh"]
            return ids[0] if ids else None

        self.assertGreater(waitFor(created, "the create event of fresh"), lastId)


def _fill(path: str) -> None:
    """Write C{path} until the disk it is on is full."""
    with open(path, "wb", buffering=0) as f:
        for chunk in (65536, 4096, 1):
            try:
                while True:
                    f.write(b"\0" * chunk)
            except OSError:
                pass


def _replayed(client: LineClient, lastId: int) -> list[dict[str, Any]]:
    """The events C{events --since} replays, up to id C{lastId}."""
    events: list[dict[str, Any]] = []
    while not events or events[-1]["id"] < lastId:
        kind, _, rest = client.readLine().decode().partition(" ")
        assert kind == "EVENT", (kind, rest)
        events.append(json.loads(rest))
    return events
