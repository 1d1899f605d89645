"""
The real C{twistd pycm} starting on a state directory in trouble: its lock
file deleted under a running daemon, files others may write, a damaged
event log, and (as root, on a 2 MiB tmpfs) a full disk after a crash.
"""

from __future__ import annotations

import os
import signal

from twisted.trial.unittest import SynchronousTestCase

from tests.e2e import RealDaemon, waitFor
from tests.test_diskfull_e2e import _fill, _mountTmpfs


def _output(daemon: RealDaemon) -> str:
    assert daemon.process is not None and daemon.process.stdout is not None
    return daemon.process.stdout.read().decode("utf-8", "replace") + daemon.log()


def _sleeps(daemon: RealDaemon) -> list[dict[str, object]]:
    return [c for c in daemon.connect(unix=True).ok("list") if c["state"] == "running"]


def _stopLeftover(pid: int, stateDir: str) -> None:
    """Kill C{pid} if it still runs as a container of C{stateDir}."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            mine = f"PYCM_STATE={stateDir}".encode() in f.read().split(b"\0")
    except OSError:
        return
    if mine:
        os.kill(pid, signal.SIGKILL)


class DeletedLockTests(SynchronousTestCase):
    """
    C{rm STATE/lock} under a running daemon does not let a second daemon
    share the state directory (and kill the first one's containers).
    """

    def test_secondDaemonRefused(self) -> None:
        """
        The second start exits non-zero, naming the state directory; the
        first daemon's container runs on, and the first daemon serves.
        """
        first = RealDaemon(self, backend="process").start()
        client = first.connect(unix=True)
        client.ok("run dup1 host sleep infinity")
        pid = client.ok("inspect dup1")["pid"]
        os.unlink(os.path.join(first.stateDir, "lock"))
        second = RealDaemon(self, backend="process", stateDir=first.stateDir)
        second.start(expectFailure=True)
        self.assertNotEqual(second.exitCode(), 0)
        output = _output(second)
        self.assertIn(f"another pycm daemon is using state directory {first.stateDir}", output)
        os.kill(pid, 0)  # still running
        self.assertEqual(client.ok("inspect dup1")["state"], "running")


class WritableFileTests(SynchronousTestCase):
    """Files in the state directory that others may write stop the start."""

    def test_refused(self) -> None:
        """
        C{state.db} left 0666: the daemon exits non-zero naming it and the
        chmod to run, and leaves the mode as it was.
        """
        daemon = RealDaemon(self, backend="process").start()
        daemon.connect(unix=True).ok("create lg")
        daemon.stop()
        path = os.path.join(daemon.stateDir, "state.db")
        os.chmod(path, 0o666)
        daemon.start(expectFailure=True)
        self.assertNotEqual(daemon.exitCode(), 0)
        output = _output(daemon)
        self.assertIn(f"{path} in the state directory may be written by group or others", output)
        self.assertIn(f"chmod go-w {path}", output)
        self.assertEqual(os.stat(path).st_mode & 0o777, 0o666)
        os.chmod(path, 0o644)  # as an older pycm made it under umask 022
        daemon.start()
        self.assertEqual(daemon.connect(unix=True).ok("inspect lg")["state"], "created")


class EmptyEventLogTests(SynchronousTestCase):
    """A 0-byte C{events.db} is called the event log, with what to do."""

    def test_message(self) -> None:
        """The daemon names the event log, the mv to run, and loses no id."""
        daemon = RealDaemon(self).start()
        client = daemon.connect()
        client.ok("create a1")
        lastId = client.ok("events")["last_id"]
        daemon.stop()
        path = os.path.join(daemon.stateDir, "events.db")
        open(path, "wb").close()
        daemon.start(expectFailure=True)
        self.assertNotEqual(daemon.exitCode(), 0)
        output = _output(daemon)
        self.assertIn(f"the event log {path} is empty", output)
        self.assertNotIn("no records", output)
        os.rename(path, path + ".damaged")
        daemon.start()
        client = daemon.connect()
        client.ok("events")
        client.ok("create a2")

        def created() -> int | None:
            client.ok("ping")
            ids = [e["id"] for e in client.events if e.get("name") == "a2"]
            return ids[0] if ids else None

        self.assertGreater(waitFor(created, "the create event of a2"), lastId)


class FullDiskStartTests(SynchronousTestCase):
    """
    A daemon killed, or stopped, while its state directory's disk is full
    starts again on it, with its state.  Root only (a tmpfs).
    """

    def setUp(self) -> None:
        if os.geteuid() != 0:
            raise self.skipTest("needs root, to mount a 2 MiB tmpfs for the state directory")
        self.mount = _mountTmpfs(self)
        self.daemon = RealDaemon(
            self, backend="process", stateDir=os.path.join(self.mount, "state")
        ).start()
        client = self.daemon.connect(unix=True)
        client.ok("run sleeper host sleep infinity")
        client.ok("create idle")
        # Had no daemon started again to stop it (a failed test), it would run on.
        self.addCleanup(_stopLeftover, client.ok("inspect sleeper")["pid"], self.daemon.stateDir)

    def test_restartEmptyLockFile(self) -> None:
        """
        The same with the lock file left empty (as a daemon killed between
        cutting it and writing its pid leaves it) and the disk full again:
        the pid cannot be written, which is a warning naming the file, and
        the daemon starts and serves.
        """
        self.daemon.kill9()
        lock = os.path.join(self.daemon.stateDir, "lock")
        os.truncate(lock, 0)
        _fill(os.path.join(self.mount, "filler"))
        self.daemon.start()
        names = {c["name"] for c in self.daemon.connect(unix=True).ok("list")}
        self.assertEqual(names, {"sleeper", "idle"})
        self.assertIn(f"cannot write this daemon's pid in {lock}", self.daemon.log())

    def test_restartAfterCrash(self) -> None:
        """
        kill -9 on a full disk, then start again: the daemon serves its
        containers, and its pid is in the lock file (written over the old
        one in place: no new block needed).
        """
        _fill(os.path.join(self.mount, "filler"))
        self.daemon.kill9()
        self.daemon.start()
        names = {c["name"] for c in self.daemon.connect(unix=True).ok("list")}
        self.assertEqual(names, {"sleeper", "idle"})
        with open(os.path.join(self.daemon.stateDir, "lock")) as f:
            self.assertEqual(f.read(), f"{self.daemon.pid}\n")  # written in place

    def test_restartAfterStop(self) -> None:
        """
        Stopped cleanly (SQLite's -wal and -shm files gone), disk filled,
        started: the databases open in exclusive locking mode (their index
        in memory), with a warning naming them, and the daemon serves; once
        there is room again, its changes are written and outlive a restart.
        """
        self.daemon.stop()
        filler = os.path.join(self.mount, "filler")
        _fill(filler)
        self.daemon.start()
        client = self.daemon.connect(unix=True)
        self.assertEqual({c["name"] for c in client.ok("list")}, {"sleeper", "idle"})
        path = os.path.join(self.daemon.stateDir, "state.db")
        self.assertIn(
            f"the state database {path}: its disk is full, so it is open in exclusive "
            f"locking mode", self.daemon.log(),
        )
        os.unlink(filler)
        client.ok("create later")
        self.daemon.stop()
        self.daemon.start()
        names = {c["name"] for c in self.daemon.connect(unix=True).ok("list")}
        self.assertEqual(names, {"sleeper", "idle", "later"})
