"""
twistd's C{--logfile}, checked before twistd opens it
(L{pycm.daemon.startup.makeLogFilePrivate}): a link, another user's file, a
hard link or a directory others may write stops the start; a new file is
created 0600 without following a link.  Unit tests on real files in a
temporary directory, and one on the real C{twistd pycm}.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile

from twisted.trial.unittest import SynchronousTestCase

from pycm.daemon.startup import UnsafeLogFile, kernelGuardsShared, makeLogFilePrivate
from pycm.statedir import UnsafeStateDir

from .e2e import DEADLINE, twistdCommand


def guarded() -> bool:
    return True


def unguarded() -> bool:
    return False


class LogFileCheckTests(SynchronousTestCase):
    """What makes a log file path unsafe, and what is done to a safe one."""

    def setUp(self) -> None:
        self.directory = os.path.abspath(self.mktemp())
        os.makedirs(self.directory)
        os.chmod(self.directory, 0o755)
        self.path = os.path.join(self.directory, "pycm.log")
        self.victim = os.path.join(self.directory, "victim")
        with open(self.victim, "w") as f:
            f.write("precious\n")
        os.chmod(self.victim, 0o644)

    def assertVictimUntouched(self) -> None:
        with open(self.victim) as f:
            self.assertEqual(f.read(), "precious\n")
        self.assertEqual(stat.S_IMODE(os.stat(self.victim).st_mode), 0o644)

    def test_linkRefused(self) -> None:
        """
        A symbolic link (to a file, or dangling) is refused, never followed:
        the file it names is neither changed nor created.
        """
        os.symlink(self.victim, self.path)
        error = self.assertRaises(UnsafeLogFile, makeLogFilePrivate, self.path, guarded)
        self.assertIn("is a symbolic link", str(error))
        self.assertIn("--logfile", str(error))
        self.assertVictimUntouched()
        os.unlink(self.path)
        nowhere = os.path.join(self.directory, "made-through-the-link")
        os.symlink(nowhere, self.path)
        self.assertRaises(UnsafeLogFile, makeLogFilePrivate, self.path, guarded)
        self.assertFalse(os.path.lexists(nowhere))

    def test_hardLinkRefused(self) -> None:
        """A file with two names is refused: the log would go into the other too."""
        os.link(self.victim, self.path)
        error = self.assertRaises(UnsafeLogFile, makeLogFilePrivate, self.path, guarded)
        self.assertIn("2 names", str(error))
        self.assertVictimUntouched()

    def test_othersFileRefused(self) -> None:
        """
        Another user's file is refused: its owner could read the log.
        (Needs root, to give a file away.)
        """
        if os.geteuid() != 0:
            raise self.skipTest("giving a file to another user needs root")
        with open(self.path, "w"):
            pass
        os.chmod(self.path, 0o644)
        os.chown(self.path, 4242, 4242)
        error = self.assertRaises(UnsafeLogFile, makeLogFilePrivate, self.path, guarded)
        self.assertIn("belongs to uid 4242", str(error))
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o644)

    def test_notRegularRefused(self) -> None:
        """A FIFO is refused at once (opening it would block the start)."""
        os.mkfifo(self.path)
        error = self.assertRaises(UnsafeLogFile, makeLogFilePrivate, self.path, guarded)
        self.assertIn("not a regular file", str(error))

    def test_writableDirectoryRefused(self) -> None:
        """
        A directory group or others may write without the sticky bit is
        refused: they could put a link where twistd opens the log.
        """
        for mode in (0o777, 0o775):
            os.chmod(self.directory, mode)
            error = self.assertRaises(UnsafeStateDir, makeLogFilePrivate, self.path, guarded)
            self.assertIn("--logfile", str(error))
            self.assertFalse(os.path.lexists(self.path))

    def test_sharedStickyDirectory(self) -> None:
        """
        In a sticky directory every user may write (as C{/tmp}) a new file
        is made 0600 if the kernel guards such directories, and refused if
        it does not (twistd reopens the log there by name at each rotation).
        """
        os.chmod(self.directory, 0o1777)
        error = self.assertRaises(UnsafeLogFile, makeLogFilePrivate, self.path, unguarded)
        self.assertIn("fs.protected_symlinks", str(error))
        self.assertFalse(os.path.lexists(self.path))
        self.assertIsNone(makeLogFilePrivate(self.path, guarded))
        self.assertEqual(stat.S_IMODE(os.lstat(self.path).st_mode), 0o600)
        os.chmod(self.directory, 0o1775)
        self.assertRaises(UnsafeLogFile, makeLogFilePrivate, self.path, guarded)

    def test_ownFileKept(self) -> None:
        """This user's own file in a private directory is used, its mode cut to 0640."""
        with open(self.path, "w") as f:
            f.write("old\n")
        os.chmod(self.path, 0o644)
        self.assertIn("now 640", makeLogFilePrivate(self.path, unguarded) or "")
        with open(self.path) as f:
            self.assertEqual(f.read(), "old\n")

    def test_kernelGuards(self) -> None:
        """The guards are on only if all three sysctls read 1 or more."""
        values = {"protected_symlinks": "1\n", "protected_hardlinks": "1\n",
                  "protected_regular": "2\n"}

        def read(path: str) -> str:
            return values[os.path.basename(path)]

        self.assertTrue(kernelGuardsShared(read))
        values["protected_regular"] = "0\n"
        self.assertFalse(kernelGuardsShared(read))
        del values["protected_regular"]

        def missing(path: str) -> str:
            raise FileNotFoundError(path)

        self.assertFalse(kernelGuardsShared(missing))


class LogFileE2ETests(SynchronousTestCase):
    """The real C{twistd pycm} with a planted C{--logfile}."""

    def test_plantedLinkStopsTheStart(self) -> None:
        """
        C{twistd --logfile LINK pycm} exits non-zero with the reason on
        stderr, and the file the link names is not written.
        """
        home = tempfile.mkdtemp(prefix="pycm-logfile-")
        self.addCleanup(shutil.rmtree, home, ignore_errors=True)
        victim = os.path.join(home, "victim")
        with open(victim, "w") as f:
            f.write("precious\n")
        logPath = os.path.join(home, "pycm.log")
        os.symlink(victim, logPath)
        result = subprocess.run(
            [*twistdCommand(), "-n", "--pidfile=", "--logfile", logPath,
             "pycm", "--backend", "memory", "--state-dir", os.path.join(home, "state"),
             "--listen", "tcp:0:interface=127.0.0.1"],
            cwd=home, stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=DEADLINE,
        )
        self.assertNotEqual(result.returncode, 0)
        self.assertIn(f"the log file {logPath} is a symbolic link", result.stderr)
        with open(victim) as f:
            self.assertEqual(f.read(), "precious\n")
