"""
Log files planted in the state directory of a running C{twistd pycm}
(process backend), as an attacker reported them: C{run} refuses to start
the container, naming the file and the fix; C{logs} gives the same clear
C{backend} error; nothing is ever written through the file.
"""

from __future__ import annotations

import os

from twisted.trial.unittest import SynchronousTestCase

from tests.e2e import RealDaemon

VICTIM = b"root-only content\n"


class PlantedLogFileTests(SynchronousTestCase):
    """A hard link, a symbolic link or a FIFO planted as a container's log."""

    def setUp(self) -> None:
        self.daemon = RealDaemon(self, backend="process").start()
        self.client = self.daemon.connect()
        self.logs = os.path.join(self.daemon.stateDir, "logs")
        self.victim = os.path.join(self.daemon.home, "victim")
        with open(self.victim, "wb") as f:
            f.write(VICTIM)
        os.chmod(self.victim, 0o600)

    def assertVictimUntouched(self) -> None:
        with open(self.victim, "rb") as f:
            self.assertEqual(f.read(), VICTIM)

    def assertRefused(self, line: str, path: str, said: str) -> None:
        kind, (code, message) = self.client.request(line)
        self.assertEqual((kind, code), ("ERR", "backend"), message)
        self.assertIn(f"the log file {path} {said}", message)
        self.assertIn(f"rm {path}", message)

    def test_hardLink(self) -> None:
        """
        C{run} on a planted hard link (the reporter's C{x4}): an error from
        the real client, the container C{dead} and never run, its C{logs}
        refused too, the link's target untouched; the daemon's log says it
        once, with no traceback.  Once the link is removed it starts.
        """
        path = os.path.join(self.logs, "x4.log")
        os.link(self.victim, path)
        result = self.daemon.pycm("run", "x4", "host", "echo", "hello-x4")
        self.assertNotEqual(result.returncode, 0)
        self.assertEqual(result.stdout, b"")
        stderr = result.stderr.decode()
        self.assertIn(f"Error: backend: the log file {path} has 2 names (a hard link)", stderr)
        container = self.client.ok("inspect x4")
        self.assertEqual((container["state"], container["pid"]), ("dead", None))
        self.assertRefused("logs x4", path, "has 2 names (a hard link)")
        self.assertVictimUntouched()
        log = self.daemon.log()
        self.assertEqual(log.count("x4 could not be started: the log file"), 1)
        self.assertNotIn("Traceback", log)
        os.unlink(path)
        self.client.ok("start x4")
        self.client.ok("wait x4")
        self.assertEqual([line["line"] for line in self.client.ok("logs x4")], ["hello-x4"])
        self.assertVictimUntouched()

    def test_symbolicLink(self) -> None:
        """
        C{logs} of a container whose log file is a planted symbolic link
        (the reporter's C{x2}): a C{backend} error naming it, as for a FIFO,
        not an internal error with a traceback; C{start} is refused the same.
        """
        self.client.ok("create x2 host echo hi")
        path = os.path.join(self.logs, "x2.log")
        os.symlink(self.victim, path)
        self.assertRefused("logs x2", path, "is a symbolic link")
        self.assertRefused("start x2", path, "is a symbolic link")
        self.assertVictimUntouched()
        self.assertNotIn("Traceback", self.daemon.log())

    def test_fifo(self) -> None:
        """
        C{run} on a planted FIFO (the reporter's C{x1}) is refused at once,
        rather than said to run while all its output is lost.
        """
        path = os.path.join(self.logs, "x1.log")
        os.mkfifo(path, 0o600)
        self.assertRefused("run x1 host echo hi", path, "is a FIFO")
        container = self.client.ok("inspect x1")
        self.assertEqual(container["state"], "dead")
        self.assertRefused("logs x1", path, "is a FIFO")
