"""
Fault tests of the state directory against the real C{twistd pycm}: links
planted in it, a directory others may write, a damaged container record,
a state database the backend cannot open, and a lost C{events.db}.
"""

from __future__ import annotations

import glob
import json
import os
import socket
import sqlite3
import time

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from pycm.backends.process import procfs
from pycm.store import SQLiteStore
from tests.e2e import DEADLINE, RealDaemon, waitFor

VICTIM = b"root-only content\n"


def _output(daemon: RealDaemon) -> str:
    assert daemon.process is not None and daemon.process.stdout is not None
    return daemon.process.stdout.read().decode("utf-8", "replace") + daemon.log()


class PlantedLinkTests(SynchronousTestCase):
    """
    A link planted in the state directory (which someone else could write
    before the first start) never makes the daemon write through it: the
    daemon refuses to start, says which link and how to fix it.
    """

    def plantAndStart(self, name: str, backend: str = "memory") -> tuple[RealDaemon, str, str]:
        daemon = RealDaemon(self, backend=backend)
        os.mkdir(daemon.stateDir, 0o700)
        victim = os.path.join(daemon.home, "victim")
        with open(victim, "wb") as f:
            f.write(VICTIM)
        os.chmod(victim, 0o600)
        link = os.path.join(daemon.stateDir, name)
        os.makedirs(os.path.dirname(link), mode=0o700, exist_ok=True)
        target = victim
        if name == "logs":
            target = os.path.join(daemon.home, "elsewhere")
            os.mkdir(target)
        os.symlink(target, link)
        daemon.start(expectFailure=True)
        return daemon, link, target

    def test_linksRefused(self) -> None:
        """
        C{lock}, C{token}, C{events.db}, C{state.db}, a container's log file
        and its rotated name, or the C{logs} directory, planted as links:
        twistd exits non-zero naming the link, and the file (or directory)
        it points to is untouched.
        """
        for name, backend in (
            ("lock", "memory"),
            ("token", "memory"),
            ("events.db", "memory"),
            ("state.db", "process"),
            ("logs/web.log", "process"),
            ("logs/web.log.1", "process"),
            ("logs", "process"),
        ):
            with self.subTest(name=name):
                daemon, link, target = self.plantAndStart(name, backend)
                self.assertNotEqual(daemon.exitCode(), 0)
                output = _output(daemon)
                self.assertIn("symbolic link", output)
                self.assertIn(f"rm {link}", output)
                if os.path.isdir(target):
                    self.assertEqual(os.listdir(target), [])
                else:
                    with open(target, "rb") as f:
                        self.assertEqual(f.read(), VICTIM)

    def test_writableStateDirRefused(self) -> None:
        """
        A state directory that others may write is refused at start (not
        quietly fixed), with the command that fixes it.
        """
        daemon = RealDaemon(self)
        os.mkdir(daemon.stateDir)
        os.chmod(daemon.stateDir, 0o777)
        daemon.start(expectFailure=True)
        self.assertNotEqual(daemon.exitCode(), 0)
        self.assertIn(f"chmod 700 {daemon.stateDir}", _output(daemon))
        self.assertEqual(os.listdir(daemon.stateDir), [])

    def test_subdirectoriesPrivate(self) -> None:
        """The directories the daemon makes in its state directory are 0700."""
        daemon = RealDaemon(self, backend="process").start()
        client = daemon.connect()
        client.ok("run web host echo hello")
        waitFor(lambda: os.path.exists(os.path.join(daemon.stateDir, "logs", "web.log")), "a log")
        for directory in (daemon.stateDir, os.path.join(daemon.stateDir, "logs")):
            self.assertEqual(os.stat(directory).st_mode & 0o777, 0o700)


class UnsafeAncestorTests(SynchronousTestCase):
    """
    A state directory that someone else could rename away and replace
    with their own (links and all) is refused by the real daemon at start.
    """

    def underShared(self, mode: int) -> tuple[RealDaemon, str]:
        daemon = RealDaemon(self)
        shared = os.path.join(daemon.home, "shared")
        os.mkdir(shared)
        os.chmod(shared, mode)
        daemon.stateDir = os.path.join(shared, "state")
        return daemon, shared

    def test_writableParentRefused(self) -> None:
        """
        Under a 0777 directory without the sticky bit, twistd exits
        non-zero naming that directory and the fix, and makes nothing.
        """
        daemon, shared = self.underShared(0o777)
        daemon.start(expectFailure=True)
        self.assertNotEqual(daemon.exitCode(), 0)
        output = _output(daemon)
        self.assertIn(f"under {shared},", output)
        self.assertIn(f"chmod go-w {shared}", output)
        self.assertEqual(os.listdir(shared), [])

    def test_stickyParentAccepted(self) -> None:
        """Under a sticky 1777 directory (as /tmp) the daemon starts and serves."""
        daemon, shared = self.underShared(0o1777)
        daemon.start()
        daemon.connect().ok("create web")
        self.assertEqual(os.stat(daemon.stateDir).st_mode & 0o777, 0o700)

    def test_otherOwnersParentRefused(self) -> None:
        """
        Under a directory of another user's (nobody), even 0755, the daemon
        as root refuses to start: that user could replace the state directory.
        """
        if os.geteuid() != 0:
            raise SkipTest("giving a directory to another user needs root")
        daemon, shared = self.underShared(0o755)
        os.chown(shared, 65534, 65534)
        daemon.start(expectFailure=True)
        self.assertNotEqual(daemon.exitCode(), 0)
        self.assertIn(f"under {shared}, which belongs to uid 65534", _output(daemon))
        self.assertEqual(os.listdir(shared), [])


class NotRegularStateFileTests(SynchronousTestCase):
    """
    A FIFO or a directory where the daemon keeps a file stops start-up at
    once (a FIFO used to block it for ever), naming the file and the fix.
    """

    def test_refusedAtOnce(self) -> None:
        """C{token}, C{lock} and C{events.mark}, each a FIFO then a directory."""
        for name in ("token", "lock", "events.mark"):
            for kind in ("FIFO", "directory"):
                with self.subTest(name=name, kind=kind):
                    daemon = RealDaemon(self)
                    os.mkdir(daemon.stateDir, 0o700)
                    path = os.path.join(daemon.stateDir, name)
                    if kind == "FIFO":
                        os.mkfifo(path, 0o600)
                    else:
                        os.mkdir(path, 0o700)
                    daemon.start(expectFailure=True)
                    self.assertNotEqual(daemon.exitCode(), 0)
                    output = _output(daemon)
                    self.assertIn(f"{path} is a {kind}, not a regular file", output)
                    self.assertIn(f"mv {path} {path}.old", output)


class DamagedStateTests(SynchronousTestCase):
    """A damaged record is put aside; a state that cannot open ends the daemon."""

    def test_damagedRecordQuarantined(self) -> None:
        """
        A record with bad JSON and one with missing fields are quarantined:
        the daemon starts, C{info} names them, the log says so, and the
        other containers are served.
        """
        daemon = RealDaemon(self, backend="process").start()
        client = daemon.connect()
        for name in ("web", "broken", "partial"):
            client.ok(f"create {name}")
        daemon.stop()
        db = sqlite3.connect(os.path.join(daemon.stateDir, "state.db"))
        db.execute("UPDATE containers SET record = '{not json' WHERE name = 'broken'")
        db.execute(
            """UPDATE containers SET record = '{"name": "partial"}' WHERE name = 'partial'"""
        )
        db.commit()
        db.close()
        daemon.start()
        client = daemon.connect()
        info = client.ok("info")
        self.assertEqual([q["name"] for q in info["quarantined"]], ["broken", "partial"])
        self.assertEqual([c["name"] for c in client.ok("list")], ["web"])
        client.ok("start web")
        self.assertIn("the record of 'broken' is damaged", daemon.log())
        daemon.stop()
        self.assertEqual(daemon.exitCode(), -15)

    def test_damagedRunningRecordStopped(self) -> None:
        """
        Running containers whose records are damaged while the daemon is
        dead (kill -9) -- one cut short as by a torn write, one without its
        command, one of which only the name is left -- are quarantined and
        their processes stopped by the next daemon, found by what can still
        be read of the records (or by name and state directory, in their
        environment); the other container is served.
        """
        daemon = RealDaemon(self, backend="process").start()
        client = daemon.connect()
        pids = {}
        for name in ("web", "api", "app", "db"):
            pid = client.ok(f"run {name} host sleep 1000")["pid"]
            pids[name] = (pid, procfs.startTime(pid))
        for pid, start in pids.values():
            self.addCleanup(lambda p=pid, t=start: procfs.isSameProcess(p, t) and os.kill(p, 9))
        # The cgroups of app's run (where this machine has them): nothing of
        # its record names them once it is cut short.
        appGroups = _groupsOf(f"app-{client.ok('inspect app')['id'][:12]}")
        daemon.kill9()
        db = sqlite3.connect(os.path.join(daemon.stateDir, "state.db"))
        [(text,)] = db.execute("SELECT record FROM containers WHERE name = 'web'")
        db.execute(
            "UPDATE containers SET record = ? WHERE name = 'web'",
            (text[: text.index('"state"')],),
        )
        [(text,)] = db.execute("SELECT record FROM containers WHERE name = 'api'")
        record = json.loads(text)
        del record["command"]
        db.execute("UPDATE containers SET record = ? WHERE name = 'api'", (json.dumps(record),))
        db.execute(
            """UPDATE containers SET record = '{"name":"app","broken":' WHERE name = 'app'"""
        )
        db.commit()
        db.close()
        daemon.start()
        client = daemon.connect()
        quarantined = [q["name"] for q in client.ok("info")["quarantined"]]
        self.assertEqual(quarantined, ["api", "app", "web"])
        for name in quarantined:
            pid, start = pids[name]
            waitFor(lambda p=pid, t=start: not procfs.isSameProcess(p, t), f"{name}'s sleep to end")
        app = pids["app"][0]
        self.assertIn(f"[{app}], left running by a previous daemon for ['app']", daemon.log())
        # Found by its processes before they were killed (was: left behind).
        waitFor(lambda: not any(os.path.exists(path) for path in appGroups), "app's cgroups")
        self.assertEqual([c["name"] for c in client.ok("list")], ["db"])
        client.ok("start db")
        daemon.stop()
        self.assertEqual(daemon.exitCode(), -15)

    def test_wrongTypedFieldsQuarantined(self) -> None:
        """
        Records with one field of the wrong type or out of range (an int in
        C{env} or in the command, an unknown stop signal, a time that is
        not one, a negative stop timeout or memory, another's id) are
        quarantined, each named with its field: the daemon starts and
        serves the rest, C{list} and C{inspect} answer, no process of theirs
        is started, and a clean stop leaves none running, nor any cgroup.
        """
        daemon = RealDaemon(self, backend="process").start()
        client = daemon.connect()
        client.ok("run --restart=always -e A=1 xx host sleep 1000")
        for name in ("ss", "cmd", "neg", "mem", "twin"):
            client.ok(f"run --restart=always {name} host sleep 1000")
        client.ok("run --restart=always good host sleep 1000")
        client.ok("create tt host")
        daemon.stop()
        db = sqlite3.connect(os.path.join(daemon.stateDir, "state.db"))
        rows = db.execute("SELECT name, record FROM containers")
        records = {name: json.loads(text) for name, text in rows}
        records["xx"]["env"] = {"A": 1}
        records["ss"]["stopSignal"] = "SIGFOO"
        records["tt"]["created"] = "yesterday"
        records["cmd"]["command"] = ["sleep", 1000]
        records["neg"]["stopTimeout"] = -5
        records["mem"]["memory"] = -1
        records["twin"]["id"] = records["good"]["id"]
        for name, record in records.items():
            db.execute(
                "UPDATE containers SET record = ? WHERE name = ?", (json.dumps(record), name)
            )
        db.commit()
        db.close()
        daemon.start()
        client = daemon.connect()
        damaged = {"xx": "env", "ss": "stopSignal", "tt": "created", "cmd": "command",
                   "neg": "stopTimeout", "mem": "memory", "twin": "id"}  # fmt: skip
        quarantined = {q["name"]: q["reason"] for q in client.ok("info")["quarantined"]}
        self.assertEqual(sorted(quarantined), sorted(damaged))
        log = daemon.log()
        for name, field in damaged.items():
            self.assertIn(f"'{field}'", quarantined[name])
            self.assertIn(f"the record of {name!r} is damaged", log)
        [good] = client.ok("list")
        self.assertEqual((good["name"], good["state"]), ("good", "running"))
        self.assertEqual(client.ok("inspect good")["name"], "good")
        client.err("inspect tt")
        pid = good["pid"]
        start = procfs.startTime(pid)
        self.addCleanup(lambda: procfs.isSameProcess(pid, start) and os.kill(pid, 9))
        daemon.stop()
        self.assertEqual(daemon.exitCode(), -15)
        self.assertNotIn("Traceback", daemon.log())
        self.assertNotIn("is closed", daemon.log())
        waitFor(lambda: not procfs.isSameProcess(pid, start), "good's sleep to end")
        self.assertEqual(_sleepsOf(daemon), [])
        groups = [f"{name}-{record['id'][:12]}" for name, record in records.items()]
        patterns = [f"/sys/fs/cgroup/{at}pycm/{group}" for at in ("", "*/") for group in groups]
        self.assertEqual([path for pattern in patterns for path in glob.glob(pattern)], [])

    def test_backendOpenFailureExits(self) -> None:
        """
        When the backend cannot open its state (here a containers table
        without its record column), twistd exits non-zero within seconds,
        and a client that connected during start-up is closed, not left
        waiting for an answer.
        """
        daemon = RealDaemon(self, backend="process")
        os.mkdir(daemon.stateDir, 0o700)
        SQLiteStore(os.path.join(daemon.stateDir, "state.db")).close()
        db = sqlite3.connect(os.path.join(daemon.stateDir, "state.db"))
        db.execute("DROP TABLE containers")
        db.execute("CREATE TABLE containers (name TEXT PRIMARY KEY)")
        db.commit()
        db.close()
        started = time.monotonic()
        daemon.start(expectFailure=True)
        port = waitFor(lambda: _listeningPort(daemon), "the daemon to listen")
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE)
        except ConnectionRefusedError:
            sock = None  # it had already stopped listening
        except ConnectionResetError:
            sock = None  # queued by the kernel, then reset as the listener closed
        if sock is not None:
            self.addCleanup(sock.close)
            try:
                sock.sendall(b"ping\n")
                self.assertEqual(sock.recv(100), b"")
            except (ConnectionResetError, BrokenPipeError):
                pass  # closed: what is asserted is that it is not left waiting
        self.assertEqual(daemon.exitCode(deadline=15), 1)
        self.assertLess(time.monotonic() - started, 15)
        log = daemon.log()
        self.assertIn("pycm is stopping", log)
        self.assertNotIn("pycm is ready", log)


def _groupsOf(group: str) -> list[str]:
    """The directories of the cgroup C{group} under the default parent, in any hierarchy."""
    patterns = [f"/sys/fs/cgroup/{at}pycm/{group}" for at in ("", "*/")]
    return [path for pattern in patterns for path in glob.glob(pattern)]


def _sleepsOf(daemon: RealDaemon) -> list[int]:
    """The pids of processes that run in this daemon's state directory's containers."""
    marker = b"PYCM_STATE=" + os.fsencode(os.path.realpath(daemon.stateDir))
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                environ = f.read()
        except OSError:
            continue
        if marker in environ.split(b"\0"):
            found.append(int(entry))
    return found


def _listeningPort(daemon: RealDaemon) -> int | None:
    for line in daemon.log().splitlines():
        if "pycm listening on tcp:" in line:
            return int(line.split("pycm listening on tcp:")[1].split()[0].rsplit(":", 1)[1])
    return None


class LostEventLogTests(SynchronousTestCase):
    """Event ids never repeat, even when C{events.db} is lost."""

    def lastIdThenLose(self, daemon: RealDaemon, crash: bool) -> int:
        client = daemon.connect()
        for name in ("a1", "a2", "a3"):
            client.ok(f"create {name}")
        lastId = client.ok("events")["last_id"]
        self.assertGreaterEqual(lastId, 3)
        if crash:
            daemon.kill9()
        else:
            daemon.stop()
        for path in glob.glob(os.path.join(daemon.stateDir, "events.db*")):
            os.unlink(path)
        return lastId

    def newIdAfterRestart(self, daemon: RealDaemon) -> int:
        daemon.start()
        client = daemon.connect()
        client.ok("events --since=0")
        client.ok("create b1")

        def created() -> int | None:
            client.ok("ping")
            ids = [e["id"] for e in client.events if e.get("type") == "container"]
            return ids[-1] if ids else None

        return waitFor(created, "the create event")

    def test_idsGoOnAfterStop(self) -> None:
        """
        Events made, daemon stopped, C{events.db} deleted, daemon started:
        the new event's id is the next one after the old ones.
        """
        daemon = RealDaemon(self).start()
        lastId = self.lastIdThenLose(daemon, crash=False)
        self.assertEqual(self.newIdAfterRestart(daemon), lastId + 1)

    def test_idsGoOnAfterCrash(self) -> None:
        """
        The same after C{kill -9}: the new ids are above the old ones (the
        mark written ahead may skip some, never repeat one).
        """
        daemon = RealDaemon(self).start()
        lastId = self.lastIdThenLose(daemon, crash=True)
        self.assertGreater(self.newIdAfterRestart(daemon), lastId)
