"""
Tests for L{pycm.backends.process.reaping}: children reaped through their
pidfd, once, with nothing missed, and Twisted's reaping where no pidfd.
These start real processes on the real reactor.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from typing import Any

from twisted.internet import process as _process
from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.error import ProcessTerminated
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from pycm.backends.process import procfs, reaping
from pycm.backends.process.reaping import LOST_STATUS, ExitWatch, ReapedProcess
from pycm.backends.process.runtime import ProcessRuntime
from pycm.backends.process.spawn import SpawnedProcess, Spawner

reactor: Any = _reactor

SH = "/bin/sh"
#: A command that waits (to be killed).
WAIT = "exec sleep 60"


class EndedProtocol(ProcessProtocol):
    """Counts a process's exits and ends; C{ended} fires with the end's reason."""

    def __init__(self) -> None:
        self.ended: Deferred[BaseException] = Deferred()
        self.exits = 0
        self.output = b""
        self.pid: int | None = None

    def connectionMade(self) -> None:
        self.pid = self.transport.pid  # type: ignore[union-attr]

    def outReceived(self, data: bytes) -> None:
        self.output += data

    def processExited(self, reason: Failure) -> None:
        self.exits += 1

    def processEnded(self, reason: Failure) -> None:
        self.ended.callback(reason.value)


def exitCodeOf(value: BaseException) -> int | None:
    """The exit code of an ended process (0 when it succeeded)."""
    if isinstance(value, ProcessTerminated):
        return value.exitCode
    return 0


def isOurZombie(pid: int) -> bool:
    """Whether C{pid} is an unreaped child of this process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[0] == "Z" and int(fields[1]) == os.getpid()


def waitForZombie(pid: int) -> None:
    """Block until child C{pid} has exited (a zombie), at most 10 seconds."""
    deadline = time.monotonic() + 10
    while not isOurZombie(pid):
        if time.monotonic() > deadline:
            raise AssertionError(f"pid {pid} did not exit")
        time.sleep(0.005)


def spawn(argv: list[str], protocol: ProcessProtocol, **kw: Any) -> ReapedProcess:
    """A L{ReapedProcess} of C{argv} with stdout a pipe."""
    return ReapedProcess(
        reactor, argv[0], argv, {}, None, protocol, childFDs=kw.pop("childFDs", {1: "r"}), **kw
    )


class OpenPidfdTests(SynchronousTestCase):
    """L{reaping.openPidfd}."""

    def test_noSuchProcess(self) -> None:
        """A pid that is not a process has no pidfd: None, not an error."""
        self.assertIsNone(reaping.openPidfd(2**22 + 1))

    def test_noPidfdOpen(self) -> None:
        """A Python without C{os.pidfd_open}: None."""
        self.patch(reaping, "os", type("NoPidfd", (), {})())
        self.assertIsNone(reaping.openPidfd(os.getpid()))

    def test_closeOnExec(self) -> None:
        """The pidfd is not inherited by the children spawned later."""
        fd = reaping.openPidfd(os.getpid())
        if fd is None:
            raise self.skipTest("no pidfd on this system")
        self.addCleanup(os.close, fd)
        self.assertFalse(os.get_inheritable(fd))


class ReapedProcessTests(TestCase):
    """L{ReapedProcess} on the real reactor with real children."""

    def setUp(self) -> None:
        if reaping.openPidfd(os.getpid()) is None:
            raise self.skipTest("no pidfd on this system")

    def test_reapedThroughPidfd(self) -> None:
        """
        A child leaves Twisted's reaping for its pidfd; it is reaped once
        with its status, its pidfd closed, and no zombie left.
        """
        protocol = EndedProtocol()
        process = spawn([SH, "-c", "read x; exit 7"], protocol, childFDs={0: "w", 1: "r"})
        pid = process.pid
        assert pid is not None
        watch = process.exitWatch
        assert watch is not None
        self.assertNotIn(pid, _process.reapProcessHandlers)
        self.assertIn(watch, reactor.getReaders())
        process.closeStdin()

        def ended(value: BaseException) -> None:
            self.assertEqual(exitCodeOf(value), 7)
            self.assertEqual(protocol.exits, 1)
            self.assertIsNone(process.exitWatch)
            self.assertEqual(watch.fd, -1)
            self.assertNotIn(watch, reactor.getReaders())
            self.assertFalse(isOurZombie(pid))

        return protocol.ended.addCallback(ended)

    def test_burst(self) -> None:
        """
        500 short children, each writing then exiting with its own status
        (pipes and exits in either order; a few even reaped inside the
        spawn, before any pidfd), are each reaped exactly once
        with their own status, and none is left a zombie or in Twisted's
        list.
        """
        protocols = []
        pids = []
        for index in range(500):
            protocol = EndedProtocol()
            spawn([SH, "-c", f"echo {index}; exit {index % 256}"], protocol)
            assert protocol.pid is not None
            pids.append(protocol.pid)
            protocols.append(protocol)
        self.assertFalse(set(pids) & set(_process.reapProcessHandlers))

        def ended(values: list[BaseException]) -> None:
            for index, (protocol, value) in enumerate(zip(protocols, values)):
                self.assertEqual(exitCodeOf(value), index % 256)
                self.assertEqual(protocol.exits, 1)
                self.assertEqual(protocol.output, f"{index}\n".encode())
            self.assertEqual([pid for pid in pids if isOurZombie(pid)], [])

        return gatherResults([p.ended for p in protocols]).addCallback(ended)

    def test_exitedBeforePidfd(self) -> None:
        """
        A child that exited before its pidfd was opened (a zombie still)
        is reaped at once through it, with its status.
        """

        def openLate(process: ReapedProcess, pid: int) -> int | None:
            os.kill(pid, signal.SIGKILL)
            waitForZombie(pid)
            return reaping.openPidfd(pid)

        self.patch(ReapedProcess, "openPidfd", openLate)
        protocol = EndedProtocol()
        process = spawn([SH, "-c", "read x"], protocol, childFDs={0: "w"})
        self.assertIsNotNone(process.exitWatch)
        return protocol.ended.addCallback(
            lambda value: self.assertEqual(getattr(value, "signal", None), signal.SIGKILL)
        )

    def test_noPidfdFallsBack(self) -> None:
        """
        A child whose pidfd cannot be opened stays with Twisted's reaping
        (C{SIGCHLD}) and is reaped once with its status.
        """
        self.patch(ReapedProcess, "openPidfd", lambda process, pid: None)
        protocol = EndedProtocol()
        process = spawn([SH, "-c", "read x; exit 5"], protocol, childFDs={0: "w", 1: "r"})
        self.assertIsNone(process.exitWatch)
        self.assertIs(_process.reapProcessHandlers.get(process.pid), process)
        process.closeStdin()

        def ended(value: BaseException) -> None:
            self.assertEqual(exitCodeOf(value), 5)
            self.assertEqual(protocol.exits, 1)

        return protocol.ended.addCallback(ended)

    def test_reactorDropsWatch(self) -> None:
        """
        The reactor dropping the pidfd's reader (as at its shutdown) hands
        the child back to Twisted's reaping, which still reaps its end.
        """
        protocol = EndedProtocol()
        process = spawn([SH, "-c", "read x"], protocol, childFDs={0: "w", 1: "r"})
        watch = process.exitWatch
        assert watch is not None
        reactor.removeReader(watch)
        watch.connectionLost(Failure(Exception("reactor shutdown")))
        self.assertEqual(watch.fd, -1)
        self.assertIsNone(process.exitWatch)
        self.assertIs(_process.reapProcessHandlers.get(process.pid), process)
        process.signalProcess(signal.SIGKILL)
        return protocol.ended.addCallback(
            lambda value: self.assertEqual(getattr(value, "signal", None), signal.SIGKILL)
        )

    def test_reapedBySomeoneElse(self) -> None:
        """
        A child that someone else reaped (its status lost) still ends,
        told as exit 255, rather than being watched forever.
        """
        protocol = EndedProtocol()
        process = spawn([SH, "-c", "read x"], protocol, childFDs={0: "w"})
        pid = process.pid
        assert pid is not None
        self.assertIsNotNone(process.exitWatch)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        return protocol.ended.addCallback(
            lambda value: self.assertEqual(exitCodeOf(value), LOST_STATUS >> 8)
        )


class SpawnerReapingTests(TestCase):
    """Every way L{Spawner} starts a process is reaped through a pidfd."""

    def setUp(self) -> None:
        if reaping.openPidfd(os.getpid()) is None:
            raise self.skipTest("no pidfd on this system")
        self.spawner = Spawner(reactor)
        self.addCleanup(self.spawner.close)

    def check(self, protocol: EndedProtocol) -> Deferred[None]:
        """
        C{protocol}'s process (one that waits) is watched through its
        pidfd, and reaped once killed.
        """
        transport: Any = protocol.transport
        self.assertIsInstance(transport, ReapedProcess)
        self.assertIsNotNone(transport.exitWatch)
        transport.signalProcess("KILL")
        return protocol.ended.addCallback(
            lambda value: self.assertEqual(getattr(value, "signal", None), signal.SIGKILL)
        )

    def test_native(self) -> None:
        """The command itself (L{SpawnedProcess})."""
        protocol = EndedProtocol()
        self.spawner.spawnNative(protocol, SH, [SH, "-c", WAIT], {}, "/", None, None)
        self.assertIsInstance(protocol.transport, SpawnedProcess)
        return self.check(protocol)

    def test_launcher(self) -> None:
        """C{env -C DIR setsid -- COMMAND}."""
        protocol = EndedProtocol()
        env = "/usr/bin/env" if os.path.exists("/usr/bin/env") else "/bin/env"
        path = {"PATH": "/usr/bin:/bin"}
        self.spawner.spawnLauncher(protocol, (env, "setsid"), [SH, "-c", WAIT], path, "/")
        return self.check(protocol)

    def test_helper(self) -> None:
        """The exec helper."""
        protocol = EndedProtocol()
        self.spawner.spawnHelper(protocol, sys.executable, SH, [SH, "-c", WAIT], {}, "/", [])
        return self.check(protocol)

    def test_check(self) -> None:
        """A health check."""
        protocol = EndedProtocol()
        self.spawner.spawnCheck(protocol, SH, [SH, "-c", WAIT], {}, "/", None)
        return self.check(protocol)


class ExitWatchTests(SynchronousTestCase):
    """L{ExitWatch} on a fake process."""

    def test_readDescriptor(self) -> None:
        """It reads the pidfd, reaps on read, and closes the pidfd once."""
        reaped: list[bool] = []
        fake: Any = type("FakeProcess", (), {"reapProcess": lambda self: reaped.append(True)})()
        read, write = os.pipe()
        os.close(write)
        watch = ExitWatch(fake, read)
        self.assertEqual(watch.fileno(), read)
        watch.doRead()
        self.assertEqual(reaped, [True])
        watch.close()
        watch.close()
        self.assertEqual(watch.fileno(), -1)


class LivePidsTests(SynchronousTestCase):
    """
    The marker sweep does not read the main processes of live runs (their
    pids are their own until reaped): L{ProcessRuntime.livePids}.
    """

    def setUp(self) -> None:
        from tests.test_process import FakeProcessReactor

        self.reactor = FakeProcessReactor()
        self.runtime = ProcessRuntime(
            self.reactor,
            python="/usr/bin/python3-fake",
            launcher=("/usr/bin/env-fake", "/usr/bin/setsid-fake"),
            proc=os.path.abspath(self.mktemp()),
        )

    def test_fromSpawnToReaping(self) -> None:
        """A run's main pid is live from its spawn until it is reaped."""
        from tests.test_process import RecordingObserver, container, ended

        self.patch(procfs, "signalGroup", lambda *a: True)
        self.runtime.spawn(container(), RecordingObserver(), runId="run-1")
        self.assertEqual(self.runtime.livePids, {4242})
        self.reactor.spawned[0]["protocol"].processExited(ended(0))
        self.assertEqual(self.runtime.livePids, set())

    def test_sweepSkipsThem(self) -> None:
        """The runtime's look at C{/proc} is told to skip the live pids."""
        skipped: list[Any] = []
        self.patch(procfs, "allStats", lambda proc, skip=(): skipped.append(skip) or [])
        self.runtime.livePids.add(4242)
        self.runtime.killMarked({"run-1"})
        self.assertEqual(skipped, [{4242}])

    def test_allStatsSkip(self) -> None:
        """C{allStats} does not read the stat of a skipped pid at all."""
        proc = self.mktemp()
        for pid in (10, 11):
            os.makedirs(os.path.join(proc, str(pid)))
            with open(os.path.join(proc, str(pid), "stat"), "w") as f:
                f.write(f"{pid} (sleep) S 1 {pid} {pid} " + "0 " * 15 + "777 0 0\n")
        self.assertEqual([s.pid for s in procfs.allStats(proc, {10})], [11])
        self.assertEqual(sorted(s.pid for s in procfs.allStats(proc)), [10, 11])
