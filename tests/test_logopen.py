"""
Tests for L{pycm.backends.process.logopen}: a container's log file is
opened only if pycm made it, and what that refuses, through
L{FileLogStore} and the supervisor (a run whose log file was planted is
not started; its C{logs} fail with a C{backend} error).
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet.task import Clock
from twisted.logger import Logger, formatEvent
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from pycm.backends.memory import MemoryBackend
from pycm.backends.process.logfiles import PYCM_STREAM, FileLogStore
from pycm.backends.process.logopen import UnsafeLogFile, openLogFile
from pycm.backends.supervisor.runs import Runs
from pycm.errors import BackendError
from pycm.model import ContainerSpec, LogLine, RestartPolicy, State
from pycm.statedir import UnsafeStateDir
from tests.test_statedir import noHang

VICTIM = b"root-only content\n"
WRITE = os.O_RDWR | os.O_APPEND | os.O_CREAT


class PlantedTestCase(SynchronousTestCase):
    """A log directory, and a victim file outside it that must stay untouched."""

    def setUp(self) -> None:
        self.home = self.mktemp()
        os.mkdir(self.home)
        self.logs = os.path.join(self.home, "logs")
        os.mkdir(self.logs, 0o700)
        self.victim = os.path.join(self.home, "victim")
        with open(self.victim, "wb") as f:
            f.write(VICTIM)
        os.chmod(self.victim, 0o600)

    def plant(self, kind: str, name: str = "web.log") -> str:
        """Put a C{kind} of thing at C{logs/name}: what an attacker would."""
        path = os.path.join(self.logs, name)
        if kind == "hard link":
            os.link(self.victim, path)
        elif kind == "symbolic link":
            os.symlink(self.victim, path)
        elif kind == "FIFO":
            os.mkfifo(path, 0o600)
        elif kind == "directory":
            os.mkdir(path, 0o700)
        else:
            raise ValueError(kind)
        return path

    def assertVictimUntouched(self) -> None:
        with open(self.victim, "rb") as f:
            self.assertEqual(f.read(), VICTIM)


#: What the refusal says of each kind of thing planted.
SAID = {
    "hard link": "has 2 names (a hard link)",
    "symbolic link": "is a symbolic link",
    "FIFO": "is a FIFO",
    "directory": "is a directory",
}


class OpenLogFileTests(PlantedTestCase):
    """L{openLogFile} opens what pycm makes, and nothing else."""

    def test_plainFile(self) -> None:
        """A missing file is made 0600; a file of pycm's opens again."""
        path = os.path.join(self.logs, "web.log")
        os.close(openLogFile(path, WRITE))
        self.assertEqual(os.stat(path).st_mode & 0o777, 0o600)
        os.close(openLogFile(path, os.O_RDONLY))

    def test_refused(self) -> None:
        """
        A hard link, a symbolic link, a FIFO or a directory where the log
        goes, for writing or reading: an L{UnsafeLogFile} (a
        L{BackendError} for a request, an C{OSError} for the writers)
        naming the file, what it is and the fix, never waited on; the
        file a link names is untouched.
        """
        for kind, said in SAID.items():
            path = self.plant(kind)
            for flags in (WRITE, os.O_RDONLY):
                with self.subTest(kind=kind, flags=flags), noHang():
                    error = self.assertRaises(UnsafeLogFile, openLogFile, path, flags)
                    self.assertIsInstance(error, OSError)
                    self.assertIsInstance(error, UnsafeStateDir)
                    self.assertIsInstance(error, BackendError)
                    self.assertEqual(error.what, said)
                    self.assertIn(f"the log file {path} {said}", str(error))
                    remove = "rm -r" if kind == "directory" else "rm"
                    self.assertIn(f"remove it ({remove} {path})", str(error))
                    self.assertEqual(str(error).count(said), 1)
            (os.rmdir if kind == "directory" else os.unlink)(path)
        self.assertVictimUntouched()

    def test_otherOwner(self) -> None:
        """A file of another user's (nobody) is refused: someone put it there."""
        if os.geteuid() != 0:
            raise SkipTest("giving a file to another user needs root")
        path = os.path.join(self.logs, "web.log")
        with open(path, "wb") as f:
            f.write(VICTIM)
        os.chown(path, 65534, 65534)
        for flags in (WRITE, os.O_RDONLY):
            with self.subTest(flags=flags):
                error = self.assertRaises(UnsafeLogFile, openLogFile, path, flags)
                self.assertIn("belongs to uid 65534, not to this user (0)", str(error))
        with open(path, "rb") as f:
            self.assertEqual(f.read(), VICTIM)

    def test_otherErrorsUnchanged(self) -> None:
        """A missing file opened for reading is the plain C{FileNotFoundError}."""
        self.assertRaises(
            FileNotFoundError, openLogFile, os.path.join(self.logs, "gone.log"), os.O_RDONLY
        )


class StoreTests(PlantedTestCase):
    """L{FileLogStore} writes and reads no file that it did not make."""

    def setUp(self) -> None:
        super().setUp()
        self.logged: list[dict[str, Any]] = []
        self.store = FileLogStore(self.logs)
        self.store.log = Logger(observer=self.logged.append)
        self.addCleanup(self.store.close)

    def messages(self) -> list[str]:
        return [formatEvent(event) for event in self.logged]

    def test_prepareRefuses(self) -> None:
        """
        L{FileLogStore.prepare} refuses each kind of planted file; a missing
        file or one of pycm's is fine.
        """
        for kind, said in SAID.items():
            path = self.plant(kind)
            with self.subTest(kind=kind), noHang():
                error = self.assertRaises(UnsafeLogFile, self.store.prepare, "web")
                self.assertEqual(error.what, said)
            (os.rmdir if kind == "directory" else os.unlink)(path)
        self.store.prepare("web")
        self.store.append("web", LogLine(1.0, "stdout", "hello"))
        self.store.prepare("web")
        self.assertEqual(self.store.tail("web", None), [LogLine(1.0, "stdout", "hello")])
        self.assertVictimUntouched()

    def test_prepareLeavesOtherErrors(self) -> None:
        """
        Any other failure to open (here the log directory became a file:
        C{ENOTDIR}) does not refuse the run; the writers drop and count its
        lines, as on a full disk.
        """
        os.rmdir(self.logs)
        with open(self.logs, "wb"):
            pass
        self.store.prepare("web")
        self.store.append("web", LogLine(1.0, "stdout", "hello"))
        self.assertEqual(self.store.dropped("web"), 1)

    def test_writtenNeverThroughPlanted(self) -> None:
        """
        Lines of a container whose log file was planted (after its start,
        or once the file was closed) are dropped and counted, never written
        through it; the daemon's log says so once, the reason once, with
        the fix and without the full disk's wording; once the file is gone,
        writing resumes after a line marking the gap.
        """
        for kind, said in SAID.items():
            with self.subTest(kind=kind), noHang():
                path = self.plant(kind)
                del self.logged[:]
                self.store.append("web", LogLine(1.0, "stdout", "hello"))
                self.store.appendLines("web", 2.0, "stdout", ["a", "b"])
                self.assertEqual(self.store.dropped("web"), 3)
                self.assertVictimUntouched()
                [message] = self.messages()
                self.assertIn(f"cannot write the log of web: the log file {path}", message)
                self.assertEqual(message.count(said), 1)
                self.assertNotIn("start again", message)
                self.assertNotIn("written again", message)
                (os.rmdir if kind == "directory" else os.unlink)(path)
                self.store.append("web", LogLine(3.0, "stdout", "back"))
                self.assertEqual(
                    self.store.tail("web", None),
                    [
                        LogLine(1.0, PYCM_STREAM, f"[pycm: 3 lines dropped: the log file {said}]"),
                        LogLine(3.0, "stdout", "back"),
                    ],
                )
                self.store.remove("web")

    def test_tailRefuses(self) -> None:
        """
        C{logs} on a planted current or rotated file: an L{UnsafeLogFile}
        (a C{backend} error for the client, not an internal one), nothing
        of the file it names shown.
        """
        for name in ("web.log", "web.log.1"):
            for kind in ("hard link", "symbolic link", "FIFO"):
                with self.subTest(name=name, kind=kind), noHang():
                    path = self.plant(kind, name)
                    error = self.assertRaises(UnsafeLogFile, self.store.tail, "web", None)
                    self.assertIn(path, str(error))
                    os.unlink(path)


class SupervisorTests(PlantedTestCase):
    """
    The supervisor starts no run whose log file was planted: C{run} (and
    C{start}, and an automatic restart) fails with a C{backend} error
    naming it, the container is left C{dead} with that error, and nothing
    is written through the file.  (The memory backend's simulated runs
    over the process backend's log files: the start is the supervisor's.)
    """

    def setUp(self) -> None:
        super().setUp()
        self.clock = Clock()
        self.logged: list[dict[str, Any]] = []
        self.patch(Runs, "_log", Logger(observer=self.logged.append))
        self.store = FileLogStore(self.logs)
        self.addCleanup(self.store.close)
        self.backend = MemoryBackend(self.clock, logStore=self.store)
        self.successResultOf(self.backend.open())

    def readLogs(self, name: str) -> Any:
        """C{logs NAME}'s lines, once its read (a slice a turn) is done."""
        d = self.backend.logs(name, None)
        self.clock.advance(0)
        return self.successResultOf(d)

    def test_runRefused(self) -> None:
        """
        C{run} of a container whose log file is a planted hard link fails,
        saying why; the run was never spawned, C{logs} fails the same way,
        and the victim is untouched.  Once the link is removed, C{start}
        runs it and its output is kept.
        """
        path = self.plant("hard link", "x4.log")
        failure = self.failureResultOf(
            self.backend.createAndStart(ContainerSpec("x4", command=("echo", "hello-x4"))),
            BackendError,
        )
        self.assertIn(f"the log file {path} has 2 names", str(failure.value))
        self.assertEqual(self.backend.runtime.runs, {})
        container = self.successResultOf(self.backend.inspect("x4"))
        self.assertEqual(container.state, State.DEAD)
        self.assertEqual(container.error, str(failure.value))
        self.failureResultOf(self.backend.logs("x4", None), UnsafeLogFile)
        self.assertVictimUntouched()
        [message] = [formatEvent(event) for event in self.logged]
        self.assertEqual(message, f"x4 could not be started: {failure.value}")
        os.unlink(path)
        self.successResultOf(self.backend.start("x4"))
        self.clock.advance(1)
        lines = self.readLogs("x4")
        self.assertEqual([line.line for line in lines], ["hello-x4"])
        self.assertVictimUntouched()

    def test_storeWithoutPrepare(self) -> None:
        """
        A log store written before C{prepare} existed (it has none) is not
        asked: its containers start as before.
        """
        class WithoutPrepare:
            def __init__(self, inner: FileLogStore) -> None:
                self._inner = inner

            def __getattr__(self, name: str) -> Any:
                if name == "prepare":
                    raise AttributeError(name)
                return getattr(self._inner, name)

        backend = MemoryBackend(self.clock, logStore=WithoutPrepare(self.store))
        self.successResultOf(backend.open())
        container = self.successResultOf(
            backend.createAndStart(ContainerSpec("old", command=("echo", "hi"))))
        self.assertEqual(container.state, State.RUNNING)

    def test_restartRefused(self) -> None:
        """
        An automatic restart after the log file was replaced by a planted
        one (while the daemon kept the old one open) is refused the same:
        the container is C{dead}, with the error, and nothing is written
        through the planted file.
        """
        self.successResultOf(
            self.backend.createAndStart(
                ContainerSpec("web", command=("echo", "hi"), restartPolicy=RestartPolicy("always"))
            )
        )
        self.clock.advance(0)
        path = os.path.join(self.logs, "web.log")
        os.unlink(path)
        self.plant("hard link")
        self.clock.advance(1)
        container = self.successResultOf(self.backend.inspect("web"))
        self.assertEqual(container.state, State.DEAD)
        self.assertIn(f"the log file {path} has 2 names", container.error or "")
        self.assertVictimUntouched()

    def test_deletedLogMadeAgain(self) -> None:
        """
        A log file deleted between two runs (while the daemon kept it open)
        is made again for the next run: C{logs} shows that run's lines
        (they used to go to the deleted file).
        """
        self.successResultOf(
            self.backend.createAndStart(ContainerSpec("web", command=("echo", "again")))
        )
        self.clock.advance(1)
        os.unlink(os.path.join(self.logs, "web.log"))
        self.successResultOf(self.backend.start("web"))
        self.clock.advance(1)
        lines = self.readLogs("web")
        self.assertEqual([line.line for line in lines], ["again"])

