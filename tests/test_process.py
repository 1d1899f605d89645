"""
Tests for L{pycm.backends.process.runtime}: the process runtime on fakes, on real
processes, and the conformance suite against the process backend.
"""

from __future__ import annotations

import errno
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import Clock, deferLater
from twisted.python.failure import Failure
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from pycm.backends.process import backend as processBackend
from pycm.backends.process import procfs
from pycm.backends.process.backend import makeBackend
from pycm.backends.process.cgroupdetect import detect
from pycm.backends.process.cgroups import NO_CGROUPS, Cgroups
from pycm.backends.process.output import MAX_LINE, OutputPacer
from pycm.backends.process.reclaim import MARK_DUTY, RECLAIM_POLL, CgroupReleaser, MarkSweep
from pycm.backends.process.run import LINGER, ProcessRun, RunProtocol
from pycm.backends.process.runtime import ProcessRuntime
from pycm.backends.process.spawn import (
    EXEC_HELPER,
    findExecutable,
    runEnvironment,
    spawnFailure,
)
from pycm.backends.supervisor.backend import RECLAIMED_ERROR, STARTING_ERROR, Record
from pycm.capabilities import HEALTH_OPTIONS
from pycm.errors import BackendError, BadRequest
from pycm.interfaces import (
    IContainerBackend,
    IRun,
    IRunObserver,
    IRuntime,
    IRuntimeStats,
    IRuntimeSweep,
)
from pycm.model import DEFAULT_PATH, Container, ContainerSpec, State
from pycm.store import SQLiteStore
from pycm.testing import BackendConformanceTests, ReactorFixture


def container(
    name: str = "web", command: tuple[str, ...] = ("sleep", "1000"), **kw: Any
) -> Container:
    """A container value for the runtime."""
    return Container(
        name=name,
        id="0123456789abcdef0123456789abcdef",
        backend="process",
        image="host",
        command=command,
        state=State.CREATED,
        created=0.0,
        **kw,
    )


@implementer(IRunObserver)
class RecordingObserver:
    """An IRunObserver that remembers what it heard."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, bytes]] = []
        self.exits: list[int | None] = []
        self.ended: Deferred[int | None] = Deferred()

    def output(self, stream: str, lines: list[bytes]) -> None:
        self.lines.extend((stream, line) for line in lines)

    def exited(self, exitCode: int | None) -> None:
        self.exits.append(exitCode)
        self.ended.callback(exitCode)

    def text(self, stream: str = "stdout") -> list[str]:
        return [line.decode("utf-8", "replace") for s, line in self.lines if s == stream]


# -- fakes -------------------------------------------------------------------


class FakeProcessTransport:
    """Enough of a process transport for L{RunProtocol}."""

    def __init__(self, pid: int) -> None:
        self.pid: int | None = pid
        self.paused = False
        self.pauses = 0
        self.closed: list[int] = []

    def pauseProducing(self) -> None:
        self.paused = True
        self.pauses += 1

    def resumeProducing(self) -> None:
        self.paused = False

    def closeChildFD(self, fd: int) -> None:
        self.closed.append(fd)


class FakeProcessReactor(Clock):
    """A Clock that records C{spawnProcess} calls instead of forking."""

    def __init__(self) -> None:
        super().__init__()
        self.spawned: list[dict[str, Any]] = []
        self.nextPid = 4242
        self.spawnError: Exception | None = None

    def spawnProcess(self, protocol: Any, executable: str, args: list[str], **kw: Any) -> Any:
        if self.spawnError is not None:
            raise self.spawnError
        transport = FakeProcessTransport(self.nextPid)
        self.nextPid += 1
        self.spawned.append(
            dict(protocol=protocol, executable=executable, args=args, transport=transport, **kw)
        )
        protocol.makeConnection(transport)
        if self.reapAtOnce:
            # What Twisted does when the child exited before it registered
            # its reap handler: processExited at once, and pid None.
            transport.pid = None
            protocol.processExited(ended(0))
        return transport

    reapAtOnce = False


class ManualCall:
    """A delayed call that runs only when the test says so."""

    def __init__(self, calls: list[ManualCall], f: Any, args: tuple[Any, ...]) -> None:
        self.calls, self.f, self.args = calls, f, args

    def active(self) -> bool:
        return self in self.calls

    def cancel(self) -> None:
        self.calls.remove(self)


class ManualScheduler:
    """
    A C{callLater} whose calls run one reactor turn at a time: L{turn}
    runs only the calls scheduled before it, as the real reactor does.
    """

    def __init__(self) -> None:
        self.calls: list[ManualCall] = []

    def callLater(self, delay: float, f: Any, *args: Any) -> ManualCall:
        call = ManualCall(self.calls, f, args)
        self.calls.append(call)
        return call

    def turn(self) -> None:
        current, self.calls[:] = list(self.calls), []
        for call in current:
            call.f(*call.args)

    def advance(self, seconds: float) -> None:
        self.turn()

    def getDelayedCalls(self) -> list[ManualCall]:
        return list(self.calls)


class FakeMarkSweep:
    """A L{MarkSweep} whose sweeps the test finishes by hand."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, int | None, str]] = []
        self.waiters: list[Deferred[None]] = []

    def kill(self, runId: str, notBefore: int | None, name: str) -> Deferred[None]:
        self.asked.append((runId, notBefore, name))
        self.waiters.append(Deferred())
        return self.waiters[-1]


class FakeRuntime:
    """What L{RunProtocol} needs of its runtime."""

    def __init__(self) -> None:
        self.reactor = Clock()
        self.proc = "/proc"
        self.cgroups = NO_CGROUPS
        self.released: list[str] = []
        self.log = ProcessRuntime.log
        self.markSweep = FakeMarkSweep()
        self.pacer = OutputPacer(self.reactor)

    def _releaseGroup(self, group: str) -> None:
        self.released.append(group)

    def protocol(
        self, observer: IRunObserver, runId: str | None = None, name: str = ""
    ) -> RunProtocol:
        """A L{RunProtocol} handed this runtime's collaborators."""
        return RunProtocol(
            observer,
            clock=self.reactor,
            pacer=self.pacer,
            sweepMarked=self.markSweep.kill,
            killCgroup=self.cgroups.killAll,
            releaseCgroup=self._releaseGroup,
            proc=self.proc,
            runId=runId,
            name=name,
        )


def ended(exitCode: int = 0, signum: int | None = None) -> Failure:
    """The reason processEnded gets."""
    from twisted.internet.error import ProcessDone, ProcessTerminated

    if exitCode == 0 and signum is None:
        return Failure(ProcessDone(0))
    return Failure(ProcessTerminated(exitCode if signum is None else None, signum))


# -- pure functions ------------------------------------------------------------


class HelpersTests(SynchronousTestCase):
    """Executable lookup."""

    def test_findExecutable(self) -> None:
        """
        Names without a slash are searched in PATH (relative entries from
        the workdir); names with one are taken from the workdir.
        """
        root = os.path.abspath(self.mktemp())
        os.makedirs(os.path.join(root, "bin"))
        tool = os.path.join(root, "bin", "tool")
        with open(tool, "w") as f:
            f.write("#!/bin/sh\n")
        os.chmod(tool, 0o755)
        self.assertEqual(findExecutable("tool", "/nonexistent:" + root + "/bin", "/"), tool)
        self.assertEqual(findExecutable("tool", "bin", root), tool)
        self.assertEqual(findExecutable("./bin/tool", "", root), tool)
        self.assertEqual(findExecutable(tool, "", "/"), tool)
        self.assertEqual(findExecutable("sh", DEFAULT_PATH, "/"), "/usr/bin/sh")

    def test_findExecutableErrors(self) -> None:
        """Missing, non-executable and directory commands give clear reasons."""
        root = os.path.abspath(self.mktemp())
        os.makedirs(os.path.join(root, "dir"))
        plain = os.path.join(root, "plain")
        open(plain, "w").close()
        os.chmod(plain, 0o644)
        cases = {
            ("nope", "/usr/bin"): "executable file not found in $PATH",
            ("./nope", ""): "no such file or directory",
            ("./dir", ""): "is a directory",
            ("", "/usr/bin"): "empty command",
        }
        if os.geteuid() != 0:
            cases[("./plain", "")] = "permission denied"
        for (command, path), message in cases.items():
            error = self.assertRaises(BackendError, findExecutable, command, path, root)
            self.assertIn(message, str(error))

    def test_spawnFailure(self) -> None:
        """
        A failed spawn names what failed; when the daemon or the machine is
        out of open files, it says that instead (the end-to-end test of the
        daemon's own limit: tests.test_connections_e2e.FileLimitE2ETests).
        """
        failure = spawnFailure("web", "/bin/app", OSError(errno.EACCES, "Permission denied"))
        self.assertEqual(str(failure), "could not start web: exec /bin/app: Permission denied")
        failure = spawnFailure("web", None, OSError(errno.EAGAIN, "Try again"))
        self.assertEqual(str(failure), "could not start web: spawn: Try again")
        failure = spawnFailure("web", "/bin/app", OSError(errno.ENFILE, "Too many open files"))
        self.assertEqual(
            str(failure),
            "could not start web: the system's table of open files is full"
            " (sysctl fs.file-max)",
        )
        limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        failure = spawnFailure("web", "/bin/app", OSError(errno.EMFILE, "Too many open files"))
        self.assertIn(f"as many files open as its limit allows ({limit};", str(failure))

    def test_makeBackendOptions(self) -> None:
        """Bad backend options are refused when the backend is made."""
        stateDir = self.mktemp()
        for options in (
            {"default-command": "'unbalanced"},
            {"default-command": "  "},
            {"log-max-size": "huge"},
            {"log-max-files": "0"},
            {"cgroups": "maybe"},
            {"state-sync": "never"},
            {"default-workdir": "relative"},
            {"default-image": "busybox"},
        ):
            self.assertRaises(BadRequest, makeBackend, Clock(), stateDir, options)

    def test_raiseFileLimit(self) -> None:
        """The soft limit of open files is raised towards the hard limit."""
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        self.addCleanup(resource.setrlimit, resource.RLIMIT_NOFILE, (soft, hard))
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(256, hard), hard))
        now = processBackend.raiseFileLimit(wanted=min(512, hard))
        self.assertEqual(now, min(512, hard))
        self.assertEqual(resource.getrlimit(resource.RLIMIT_NOFILE)[0], min(512, hard))

    def test_makeBackend(self) -> None:
        """
        makeBackend honours its options: default command, log sizes,
        workdir, no limits with cgroups=off; the backend is named process.
        """
        stateDir = self.mktemp()
        backend = makeBackend(
            Clock(),
            stateDir,
            {
                "default-command": "sleep 'a b'",
                "log-max-size": "1m",
                "log-max-files": "5",
                "cgroups": "off",
                "default-workdir": "/tmp",
                "docker-host": None,
            },
        )
        self.addCleanup(backend.store.close)
        self.assertTrue(verifyObject(IContainerBackend, backend))
        self.assertEqual(backend.name, "process")
        self.assertEqual(backend.defaultImage, "host")
        self.assertEqual(backend.runtime.defaultCommand, ("sleep", "a b"))
        self.assertEqual(backend.logStore.maxSize, 1024 * 1024)
        self.assertEqual(backend.logStore.maxFiles, 5)
        self.assertEqual(backend.runtime.defaultWorkdir, "/tmp")
        self.assertEqual(backend.capabilities.limits, frozenset())
        self.assertNotIn("memory", backend.capabilities.options)
        self.assertIs(backend.eventStore, backend.store)
        self.assertTrue(os.path.exists(os.path.join(stateDir, "state.db")))


# -- the run protocol on fakes ------------------------------------------------------


class RunProtocolTests(SynchronousTestCase):
    """L{RunProtocol}: status pipe, line splitting, backpressure, exit."""

    def setUp(self) -> None:
        self.runtime = FakeRuntime()
        self.observer = RecordingObserver()
        self.protocol = self.runtime.protocol(self.observer)
        self.transport = FakeProcessTransport(99999999)
        self.protocol.makeConnection(self.transport)
        self.protocol.run = ProcessRun(99999999, 1, None, NO_CGROUPS.killAll)
        self.killed: list[tuple[int, int]] = []
        self.patch(procfs, "signalGroup", lambda pgid, sig: self.killed.append((pgid, sig)))

    def feed(self, fd: int, data: bytes, chunk: int) -> None:
        for i in range(0, len(data), chunk):
            self.protocol.childDataReceived(fd, data[i : i + chunk])
            self.runtime.reactor.advance(0)

    def test_started(self) -> None:
        """An empty status pipe means the exec worked: started fires with the run."""
        self.protocol.childConnectionLost(3)
        self.assertIs(self.successResultOf(self.protocol.started), self.protocol.run)

    def test_execFailed(self) -> None:
        """
        A status message means the exec failed: started fails with it as a
        BackendError, and the observer hears neither output nor exit.
        """
        self.protocol.childDataReceived(3, b"exec /bin/x: ")
        self.protocol.childDataReceived(3, b"No such file or directory")
        self.protocol.childConnectionLost(3)
        error = self.failureResultOf(self.protocol.started, BackendError).value
        self.assertEqual(str(error), "exec /bin/x: No such file or directory")
        self.protocol.childDataReceived(1, b"late\n")
        self.protocol.processEnded(ended(127))
        self.assertEqual(self.observer.lines, [])
        self.assertEqual(self.observer.exits, [])

    def test_linesInAnyChunks(self) -> None:
        """
        Output split into chunks of any size gives the same lines, per
        stream, including empty lines and a last line without a newline.
        """
        data = b"one\n\ntwo three\r\n" + b"x" * 100 + b"\nlast"
        expected = [b"one", b"", b"two three\r", b"x" * 100, b"last"]
        for chunk in range(1, 20):
            self.setUp()
            self.feed(1, data, chunk)
            self.feed(2, b"err\n", chunk)
            self.protocol.childConnectionLost(1)
            self.protocol.childConnectionLost(2)
            self.assertEqual([line for s, line in self.observer.lines if s == "stdout"], expected)
            self.assertEqual([line for s, line in self.observer.lines if s == "stderr"], [b"err"])

    def test_longLinesCut(self) -> None:
        """
        A line longer than MAX_LINE is delivered as pieces of at most
        MAX_LINE bytes, losing nothing, and never buffered beyond that.
        """
        data = b"a" * (MAX_LINE * 2 + 10) + b"\n" + b"b" * (MAX_LINE + 1)
        self.feed(1, data, 8192)
        self.assertLessEqual(len(self.protocol._lines["stdout"]), MAX_LINE)
        self.protocol.childConnectionLost(1)
        lengths = [len(line) for _, line in self.observer.lines]
        self.assertEqual(lengths, [MAX_LINE, MAX_LINE, 10, MAX_LINE, 1])
        self.assertEqual(
            b"".join(line for _, line in self.observer.lines), data.replace(b"\n", b"")
        )

    def test_invalidUtf8Kept(self) -> None:
        """Bytes that are not UTF-8 reach the observer unchanged."""
        self.feed(1, b"\xff\xfe bad \x80\n", 3)
        self.assertEqual(self.observer.lines, [("stdout", b"\xff\xfe bad \x80")])

    def test_backpressure(self) -> None:
        """
        Handling output is paced on the runtime's clock: once the time spent
        on it (here 1 ms a line, the observer advancing the clock) empties
        the budget, reading is paused, and resumed once half of it is back;
        over a long flood the share of time spent is the pacer's share, and
        every line arrives, in order, whole, whatever the chunks.
        """
        clock = self.runtime.reactor
        pacer = self.runtime.pacer = self.protocol._pacer = OutputPacer(
            clock, share=0.5, burst=0.01
        )

        class SlowObserver(RecordingObserver):
            def output(self, stream: str, lines: list[bytes]) -> None:
                clock.rightNow += 0.001 * len(lines)
                super().output(stream, lines)

        self.observer = SlowObserver()
        self.protocol._observer = self.observer
        data = b"".join(b"line %d\n" % i for i in range(3000))
        start = clock.seconds()
        offset, size, reads = 0, 1, 0
        while offset < len(data):
            if self.transport.paused:
                self.assertEqual(pacer.holding, 1)
                clock.advance(clock.getDelayedCalls()[0].getTime() - clock.seconds())
                continue
            size = size % 97 + 1
            self.protocol.childDataReceived(1, data[offset : offset + size * 3])
            offset += size * 3
            reads += 1
        self.protocol.childConnectionLost(1)
        self.assertEqual([s for s, _ in self.observer.lines], ["stdout"] * 3000)
        self.assertEqual(
            [line for _, line in self.observer.lines], [b"line %d" % i for i in range(3000)]
        )
        self.assertGreater(self.transport.pauses, 10)
        busy = 3000 * 0.001
        elapsed = clock.seconds() - start
        self.assertLess(busy / elapsed, 0.5 + 0.01 / elapsed + 0.02)
        self.assertGreater(busy / elapsed, 0.45)

    def test_pausedReaderForgottenAtEnd(self) -> None:
        """A run that ends while paused leaves no waiting reader nor timer behind."""
        clock = self.runtime.reactor
        self.runtime.pacer = self.protocol._pacer = OutputPacer(clock, share=0.5, burst=0.01)
        clock.rightNow += 1
        self.runtime.pacer.spend(0.02)
        self.protocol.childDataReceived(1, b"x\n")
        self.assertTrue(self.transport.paused)
        self.protocol.childConnectionLost(3)
        self.protocol.processExited(ended(0))
        self.protocol.processEnded(ended(0))
        self.assertEqual(self.runtime.pacer.holding, 0)
        self.assertEqual(clock.getDelayedCalls(), [])
        self.assertEqual(self.observer.exits, [0])

    def test_exitReported(self) -> None:
        """
        The exit code is the status, or minus the signal number; pending
        output and partial lines are delivered before the exit.
        """
        for reason, code in ((ended(0), 0), (ended(3), 3), (ended(signum=15), -15)):
            self.setUp()
            self.protocol.childConnectionLost(3)
            self.protocol.childDataReceived(1, b"".join(b"%d\n" % i for i in range(1000)) + b"tail")
            self.protocol.processExited(reason)
            self.protocol.processEnded(reason)
            self.assertEqual(self.observer.exits, [code])
            self.assertEqual(len(self.observer.lines), 1001)
            self.assertEqual(self.observer.lines[-1], ("stdout", b"tail"))

    def test_leftoversKilledOnExit(self) -> None:
        """
        When the main process exits, its whole group gets SIGKILL, and the
        run ignores signals from then on (its pid may be reused).
        """
        self.protocol.childConnectionLost(3)
        self.protocol.processExited(ended(0))
        self.assertEqual(self.killed, [(99999999, signal.SIGKILL)])
        self.protocol.run.signal(signal.SIGTERM)  # type: ignore[union-attr]
        self.assertEqual(self.killed, [(99999999, signal.SIGKILL)])

    def test_exitToldAfterMarkSweep(self) -> None:
        """
        When the main process exits, what carries the run's marker is
        killed (given its start time, so older processes are not read),
        and the exit is told only once that is done.
        """
        protocol = self.runtime.protocol(self.observer, "run-1", "web")
        protocol.makeConnection(self.transport)
        protocol.run = ProcessRun(4242, ["boot", 777], None, NO_CGROUPS.killAll)
        protocol.childConnectionLost(3)
        protocol.processExited(ended(0))
        self.assertEqual(self.runtime.markSweep.asked, [("run-1", 777, "web")])
        protocol.processEnded(ended(0))
        self.assertEqual(self.observer.exits, [])
        self.runtime.markSweep.waiters[0].callback(None)
        self.assertEqual(self.observer.exits, [0])

    def test_lingeringPipesClosed(self) -> None:
        """
        If a stray process keeps the output pipes open after the main
        process exited, they are closed after LINGER seconds.
        """
        self.protocol.childConnectionLost(3)
        self.protocol.processExited(ended(0))
        self.runtime.reactor.advance(LINGER - 0.01)
        self.assertEqual(self.transport.closed, [])
        self.runtime.reactor.advance(0.02)
        self.assertEqual(sorted(self.transport.closed), [1, 2, 3])
        self.protocol.processEnded(ended(0))
        self.assertEqual(self.observer.exits, [0])
        self.assertEqual(self.runtime.reactor.getDelayedCalls(), [])


class RuntimeFakeTests(SynchronousTestCase):
    """L{ProcessRuntime.spawn} and C{reclaim} on a fake process reactor."""

    def setUp(self) -> None:
        self.reactor = FakeProcessReactor()
        self.runtime = ProcessRuntime(
            self.reactor,
            python="/usr/bin/python3-fake",
            launcher=("/usr/bin/env-fake", "/usr/bin/setsid-fake"),
            proc=os.path.abspath(self.mktemp()),
        )

    def test_interfaces(self) -> None:
        """The runtime provides IRuntime; its only image is host."""
        self.assertTrue(verifyObject(IRuntime, self.runtime))
        self.assertEqual(self.runtime.images, frozenset({"host"}))
        self.assertEqual(self.runtime.defaultCommand, ("sleep", "infinity"))

    def test_spawnArgumentsSetsid(self) -> None:
        """
        A run without limits is C{env -C WORKDIR setsid -- COMMAND} from an
        argument list (no shell), with a small clean environment plus
        --env, /dev/null as stdin, stdout/stderr pipes and no PTY; it fires
        once /proc shows it leading its own session.
        """
        c = container(command=("sleep", "1000"), env={"A": "1"}, workdir="/tmp")
        os.makedirs(os.path.join(self.runtime.proc, "4242"))
        stat = os.path.join(self.runtime.proc, "4242", "stat")
        fields = ["S", "1", "1", "1"] + ["0"] * 15 + ["77"] + ["0"] * 20
        with open(stat, "w") as f:
            f.write("4242 (env) " + " ".join(fields))
        d = self.runtime.spawn(c, RecordingObserver())
        self.reactor.advance(0.01)
        self.assertNoResult(d)
        fields[2:4] = ["4242", "4242"]
        with open(stat, "w") as f:
            f.write("4242 (sleep) " + " ".join(fields))
        self.reactor.advance(0.01)
        run = self.successResultOf(d)
        self.assertEqual(run.startTime, [None, 77])
        [call] = self.reactor.spawned
        self.assertEqual(call["executable"], "/usr/bin/env-fake")
        self.assertEqual(
            call["args"], ["env", "-C", "/tmp", "/usr/bin/setsid-fake", "--", "sleep", "1000"]
        )
        self.assertIsNone(call["path"])
        self.assertEqual(
            call["env"],
            {
                "PATH": DEFAULT_PATH,
                "HOME": self.runtime.baseEnvironment["HOME"],
                "LANG": "C.UTF-8",
                "PYCM_CONTAINER": "web",
                "A": "1",
            },
        )
        stdin = call["childFDs"][0]
        self.assertEqual(os.readlink(f"/proc/self/fd/{stdin}"), "/dev/null")
        self.assertEqual({k: v for k, v in call["childFDs"].items() if k}, {1: "r", 2: "r"})
        self.assertIs(call["usePTY"], False)
        self.assertTrue(verifyObject(IRun, run))
        self.assertEqual(run.pid, 4242)
        self.runtime.close()

    def test_spawnArguments(self) -> None:
        """
        Without setsid (and for runs with limits), a run is the exec helper
        from an argument list (no shell), with a small clean environment
        plus --env, the workdir, stdin not given, stdout/stderr/status
        pipes, and no PTY; it fires once the status pipe closes empty.
        """
        self.runtime.launcher = None
        c = container(command=("sleep", "1000"), env={"A": "1", "PATH": "/bin"}, workdir="/tmp")
        d = self.runtime.spawn(c, RecordingObserver())
        self.assertNoResult(d)
        [call] = self.reactor.spawned
        self.assertEqual(call["executable"], "/usr/bin/python3-fake")
        args = call["args"]
        self.assertEqual(args[:5], ["/usr/bin/python3-fake", "-I", "-S", "-c", EXEC_HELPER])
        self.assertEqual(args[5:], ["/tmp", "/bin/sleep", "-", "0", "--", "sleep", "1000"])
        self.assertEqual(
            call["env"],
            {
                "PATH": "/bin",
                "HOME": self.runtime.baseEnvironment["HOME"],
                "LANG": "C.UTF-8",
                "PYCM_CONTAINER": "web",
                "A": "1",
            },
        )
        self.assertEqual(call["childFDs"], {1: "r", 2: "r", 3: "r"})
        self.assertIs(call["usePTY"], False)
        self.assertIsNone(call["path"])
        call["protocol"].childConnectionLost(3)
        run = self.successResultOf(d)
        self.assertTrue(verifyObject(IRun, run))
        self.assertEqual(run.pid, 4242)

    def test_reapedInsideSpawnProcess(self) -> None:
        """
        A child so quick that Twisted reaps it inside spawnProcess (the
        transport's pid is then None) still gives a run with its pid, whose
        leftovers are killed, and spawn fires.
        """
        killed: list[tuple[int, int]] = []
        self.patch(procfs, "signalGroup", lambda *a: killed.append(a))
        self.reactor.reapAtOnce = True
        run = self.successResultOf(self.runtime.spawn(container(), RecordingObserver()))
        self.assertEqual(run.pid, 4242)
        self.assertTrue(run.exited)
        self.assertEqual(killed, [(4242, signal.SIGKILL)])
        run.signal(signal.SIGTERM)
        self.assertEqual(killed, [(4242, signal.SIGKILL)])

    def test_spawnRefusedUpFront(self) -> None:
        """
        A missing workdir, a missing executable or limits that cannot be
        enforced fail spawn at once, without starting anything.
        """
        cases = [
            (container(workdir="/nonexistent-dir"), BackendError, "does not exist"),
            (container(workdir="relative"), BackendError, "absolute"),
            (container(command=("no-such-cmd",)), BackendError, "not found"),
            (container(memory=1 << 26), BadRequest, "--memory"),
            (container(cpus=0.5), BadRequest, "--cpus"),
        ]
        for c, kind, message in cases:
            error = self.failureResultOf(self.runtime.spawn(c, RecordingObserver()), kind)
            self.assertIn(message, str(error.value))
        self.assertEqual(self.reactor.spawned, [])

    def test_spawnOSError(self) -> None:
        """spawnProcess itself failing is a BackendError with the reason."""
        self.reactor.spawnError = OSError(12, "Cannot allocate memory")
        error = self.failureResultOf(
            self.runtime.spawn(container(), RecordingObserver()), BackendError
        )
        self.assertIn("Cannot allocate memory", str(error.value))

    def test_failedSpawnLeavesNoGroup(self) -> None:
        """
        A spawn that fails after the run's cgroup was made, with an
        OSError or any other error (here a value spawnProcess refuses),
        removes the group (on a fake tracking hierarchy).
        """
        tracking = os.path.abspath(self.mktemp())
        os.makedirs(tracking)
        self.runtime = ProcessRuntime(
            self.reactor,
            python="/usr/bin/python3-fake",
            launcher=("/usr/bin/env-fake", "/usr/bin/setsid-fake"),
            proc=self.runtime.proc,
            cgroups=Cgroups(2, {}, {}, tracking=tracking),
        )
        group = os.path.join(tracking, ProcessRuntime.groupName(container()))
        for error in (OSError(12, "Cannot allocate memory"), TypeError("expected str")):
            self.reactor.spawnError = error
            self.failureResultOf(self.runtime.spawn(container(), RecordingObserver()))
            self.assertFalse(os.path.exists(group), error)

    def test_capabilities(self) -> None:
        """
        Without cgroups, --memory and --cpus are not offered; --user and
        the health check options always are.
        """
        caps = self.runtime.capabilities
        self.assertEqual(caps.limits, frozenset())
        self.assertEqual(
            caps.options,
            frozenset({"env", "label", "restart", "stop-timeout", "stop-signal", "workdir"})
            | HEALTH_OPTIONS
            | {"user"},
        )
        limited = ProcessRuntime(self.reactor, cgroups=Cgroups(1, {"memory": "/x"}, {}))
        self.assertEqual(limited.capabilities.limits, frozenset({"memory"}))
        self.assertIn("memory", limited.capabilities.options)
        self.assertNotIn("cpus", limited.capabilities.options)
        self.assertNotIn("swap", limited.capabilities.imageDescription)
        noSwap = Cgroups(1, {"memory": "/x"}, {}, swapLimited=False)
        self.assertIn(
            "--memory bounds RAM only",
            ProcessRuntime(self.reactor, cgroups=noSwap).capabilities.imageDescription,
        )

    def test_containmentSaidPrecisely(self) -> None:
        """
        C{info} says what stop, rm and kill reach, with and without a
        tracking cgroup, and what is out of reach (a process that drops its
        environment, and leaves the cgroup); never that every process of a
        container is reached.
        """
        tracked = Cgroups(2, {}, {}, tracking="/x")
        for runtime, reached in (
            (self.runtime, "the run's process group and every process that still carries"),
            (
                ProcessRuntime(self.reactor, cgroups=tracked),
                "the run's process group, every process in its cgroup, and every process",
            ),
        ):
            images = runtime.capabilities.imageDescription
            self.assertIn(reached, images)
            self.assertIn("is out of reach", images)
            self.assertNotIn("every process of a container", images)
        self.assertIn(
            "a container run as root can always do that",
            ProcessRuntime(self.reactor, cgroups=tracked).capabilities.imageDescription,
        )

    def fakeProc(self, pid: int, start: int, state: str = "S") -> str:
        """A /proc with one process."""
        proc = self.mktemp()
        os.makedirs(os.path.join(proc, str(pid)))
        with open(os.path.join(proc, str(pid), "stat"), "w") as f:
            fields = [state, "1", str(pid), str(pid)] + ["0"] * 15 + [str(start)] + ["0"] * 20
            f.write(f"{pid} (sleep) " + " ".join(fields) + "\n")
        return proc

    def test_reclaimRecycledPid(self) -> None:
        """A pid whose start time differs is left alone: reclaim fires False."""
        killed: list[tuple[int, int]] = []
        self.patch(procfs, "signalGroup", lambda *a: killed.append(a))
        self.runtime.proc = self.fakeProc(777, 5000)
        for startTime in (4999, None):
            d = self.runtime.reclaim(container(), 777, startTime)
            self.assertIs(self.successResultOf(d), False)
        self.assertIs(self.successResultOf(self.runtime.reclaim(container(), None, 5)), False)
        self.assertEqual(killed, [])

    def test_reclaimStopThenKill(self) -> None:
        """
        A surviving run gets its stop signal, SIGKILL after its stop
        timeout, and reclaim fires with SIGKILL once it is gone: the signal
        it ended by (it cannot be caught), for its record's exit code.
        """
        killed: list[tuple[int, int]] = []
        self.patch(procfs, "signalGroup", lambda *a: killed.append(a))
        proc = self.runtime.proc = self.fakeProc(777, 5000)
        c = container(stopTimeout=2.0, stopSignal="SIGINT")
        d = self.runtime.reclaim(c, 777, 5000)
        self.assertEqual(killed, [(777, signal.SIGINT)])
        self.reactor.advance(1.0)
        self.assertNoResult(d)
        self.reactor.pump([RECLAIM_POLL] * 30)
        self.assertIn((777, signal.SIGKILL), killed)
        self.assertNoResult(d)
        os.unlink(os.path.join(proc, "777", "stat"))
        self.reactor.advance(RECLAIM_POLL)
        self.assertEqual(self.successResultOf(d), signal.SIGKILL)

    def test_reclaimStopSignalEnough(self) -> None:
        """
        A run gone after its stop signal makes reclaim fire True: how it
        ended is not known (it may have caught the signal, and it is not
        this daemon's child: no wait status), so no signal is claimed.
        """
        self.patch(procfs, "signalGroup", lambda *a: None)
        proc = self.runtime.proc = self.fakeProc(777, 5000)
        d = self.runtime.reclaim(container(stopTimeout=2.0), 777, 5000)
        os.unlink(os.path.join(proc, "777", "stat"))
        self.reactor.advance(RECLAIM_POLL)
        self.assertIs(self.successResultOf(d), True)

    def test_reclaimZombieIsGone(self) -> None:
        """A zombie (exited, not yet reaped by init) counts as gone."""
        self.patch(procfs, "signalGroup", lambda *a: None)
        self.runtime.proc = self.fakeProc(777, 5000, state="Z")
        self.assertIs(self.successResultOf(self.runtime.reclaim(container(), 777, 5000)), False)

    def test_reclaimSurvivor(self) -> None:
        """A process that survives SIGKILL makes reclaim fail loudly."""
        self.patch(procfs, "signalGroup", lambda *a: None)
        self.runtime.proc = self.fakeProc(777, 5000)
        d = self.runtime.reclaim(container(stopTimeout=0.0), 777, 5000)
        self.reactor.pump([RECLAIM_POLL] * 200)
        self.failureResultOf(d, BackendError)


# -- the seams between runtime, runs and cleanup ---------------------------------


class FakeCgroups:
    """The part of L{Cgroups} a L{CgroupReleaser} uses, with groups that stay busy."""

    def __init__(self, busyFor: int) -> None:
        self.busyFor = busyFor
        self.killed: list[str] = []
        self.released: list[str] = []

    def killAll(self, group: str) -> list[int]:
        self.killed.append(group)
        return []

    def release(self, group: str) -> bool:
        self.released.append(group)
        return len(self.released) > self.busyFor


class RunSeamTests(SynchronousTestCase):
    """
    A run and its protocol act through what they were handed (the kill
    and release of their cgroup, the marker sweep), never a runtime.
    """

    def setUp(self) -> None:
        self.signalled: list[tuple[int, int]] = []
        self.patch(procfs, "signalGroup", lambda pgid, sig: self.signalled.append((pgid, sig)))
        self.killedGroups: list[str] = []
        self.releasedGroups: list[str] = []

    def test_runKillsItsCgroupOnSigkill(self) -> None:
        """
        SIGKILL reaches the run's group and, through the kill function it
        was handed, its cgroup; other signals only the group; none once
        the run exited.
        """
        run = ProcessRun(4242, [None, 1], "web-0123", self.killedGroups.append)
        run.signal(signal.SIGTERM)
        self.assertEqual(self.killedGroups, [])
        run.signal(signal.SIGKILL)
        self.assertEqual(self.killedGroups, ["web-0123"])
        self.assertEqual(self.signalled, [(4242, signal.SIGTERM), (4242, signal.SIGKILL)])
        run.exited = True
        run.signal(signal.SIGKILL)
        self.assertEqual(self.killedGroups, ["web-0123"])

    def test_runWithoutCgroupKillsNoCgroup(self) -> None:
        """A run without a cgroup never calls its cgroup kill function."""
        run = ProcessRun(4242, None, None, self.killedGroups.append)
        run.signal(signal.SIGKILL)
        self.assertEqual(self.killedGroups, [])

    def test_protocolUsesWhatItWasHanded(self) -> None:
        """
        The protocol gives its run the cgroup kill function, kills the
        cgroup at exit, asks the marker sweep with the run's start time,
        releases the cgroup at the end and then reports the exit.
        """
        clock = Clock()
        swept: list[tuple[str, int | None, str]] = []
        sweeps: list[Deferred[None]] = []

        def sweepMarked(runId: str, notBefore: int | None, name: str) -> Deferred[None]:
            swept.append((runId, notBefore, name))
            sweeps.append(Deferred())
            return sweeps[-1]

        observer = RecordingObserver()
        protocol = RunProtocol(
            observer,
            clock=clock,
            pacer=OutputPacer(clock),
            sweepMarked=sweepMarked,
            killCgroup=self.killedGroups.append,
            releaseCgroup=self.releasedGroups.append,
            proc=os.path.abspath(self.mktemp()),
            bootId="boot-1",
            group="web-0123",
            runId="run-1",
            name="web",
        )
        protocol.makeConnection(FakeProcessTransport(4242))
        assert protocol.run is not None
        self.assertEqual((protocol.run.pid, protocol.run.group), (4242, "web-0123"))
        protocol.run.startTime = ["boot-1", 555]
        protocol.run.signal(signal.SIGKILL)
        self.assertEqual(self.killedGroups, ["web-0123"])
        protocol.childConnectionLost(3)
        protocol.processExited(ended(0))
        # At the exit the group is removed, or what is left in it killed.
        self.assertEqual(self.killedGroups, ["web-0123"])
        self.assertEqual(self.releasedGroups, ["web-0123"])
        self.assertEqual(swept, [("run-1", 555, "web")])
        protocol.processEnded(ended(0))
        self.assertEqual(self.releasedGroups, ["web-0123", "web-0123"])
        self.assertEqual(observer.exits, [])
        sweeps[0].callback(None)
        self.assertEqual(observer.exits, [0])
        self.assertEqual(clock.getDelayedCalls(), [])


class CgroupReleaserTests(SynchronousTestCase):
    """L{CgroupReleaser}: a run's cgroup is removed once empty, retrying on the clock."""

    def test_emptyRemovedUnread(self) -> None:
        """An empty group is removed at once, without reading or killing it."""
        clock = Clock()
        cgroups = FakeCgroups(busyFor=0)
        releaser = CgroupReleaser(clock, cgroups)
        self.assertTrue(releaser.release("web-1"))
        self.assertEqual((cgroups.released, cgroups.killed), (["web-1"], []))
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_retriesUntilRemoved(self) -> None:
        """
        A busy group is killed and tried again at once, then every 0.1 s
        until it goes.
        """
        clock = Clock()
        cgroups = FakeCgroups(busyFor=3)
        releaser = CgroupReleaser(clock, cgroups)
        self.assertFalse(releaser.release("web-1"))
        self.assertEqual(len(cgroups.released), 2)
        self.assertEqual(cgroups.killed, ["web-1"])
        clock.advance(0.1)
        clock.advance(0.1)
        self.assertEqual(len(cgroups.released), 4)
        self.assertEqual(cgroups.killed, ["web-1"] * 2)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_releaseAgainCancelsRetry(self) -> None:
        """Releasing a group again replaces its retry: no stale timer is left."""
        clock = Clock()
        cgroups = FakeCgroups(busyFor=2)
        releaser = CgroupReleaser(clock, cgroups)
        self.assertFalse(releaser.release("web-1"))
        self.assertEqual(len(clock.getDelayedCalls()), 1)
        self.assertTrue(releaser.release("web-1"))
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_givesUp(self) -> None:
        """After its attempts a group that stays busy is left; no timer remains."""
        clock = Clock()
        cgroups = FakeCgroups(busyFor=100)
        releaser = CgroupReleaser(clock, cgroups)
        releaser.release("web-1", attempts=2)
        clock.pump([0.1] * 5)
        self.assertEqual(len(cgroups.released), 6)
        self.assertEqual(len(cgroups.killed), 3)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_closeTriesOnceMoreAndCancels(self) -> None:
        """Closing tries each waiting group once more and leaves no timer."""
        clock = Clock()
        cgroups = FakeCgroups(busyFor=100)
        releaser = CgroupReleaser(clock, cgroups)
        releaser.release("web-1")
        releaser.close()
        self.assertEqual(cgroups.released, ["web-1"] * 3)
        self.assertEqual(clock.getDelayedCalls(), [])


class EnvironmentTests(SynchronousTestCase):
    """L{runEnvironment}: what a run's environment is made of."""

    def test_markersLast(self) -> None:
        """
        The base, then C{--env}, then the markers, which C{--env} cannot
        override or add when the daemon has none.
        """
        c = container(
            env={"A": "1", "PATH": "/bin", "PYCM_CONTAINER": "x", "PYCM_RUN_ID": "forged",
                 "PYCM_STATE": "forged"},
        )  # fmt: skip
        base = {"PATH": DEFAULT_PATH, "HOME": "/root", "LANG": "C.UTF-8"}
        self.assertEqual(
            runEnvironment(base, c, "/state", "run-1"),
            {"PATH": "/bin", "HOME": "/root", "LANG": "C.UTF-8", "A": "1",
             "PYCM_CONTAINER": "web", "PYCM_STATE": "/state", "PYCM_RUN_ID": "run-1"},
        )  # fmt: skip
        self.assertEqual(
            runEnvironment(base, c, None, None),
            {"PATH": "/bin", "HOME": "/root", "LANG": "C.UTF-8", "A": "1",
             "PYCM_CONTAINER": "web"},
        )  # fmt: skip
        self.assertEqual(base["PATH"], DEFAULT_PATH)

    def test_runtimeInterfaces(self) -> None:
        """The process runtime provides IRuntimeSweep and IRuntimeStats too."""
        runtime = ProcessRuntime(FakeProcessReactor(), launcher=None, native=False)
        self.assertTrue(verifyObject(IRuntimeSweep, runtime))
        self.assertTrue(verifyObject(IRuntimeStats, runtime))


# -- real processes -------------------------------------------------------------


def waitUntil(predicate: Any, timeout: float = 10.0, interval: float = 0.02) -> Deferred[None]:
    """Poll C{predicate} on the real reactor until true, failing after C{timeout}."""

    @inlineCallbacks
    def poll() -> Iterator[Deferred[Any]]:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"condition not met within {timeout}s: {predicate}")
            yield deferLater(reactor, interval, lambda: None)

    return poll()


class RealRuntimeTests(TestCase):
    """L{ProcessRuntime} with real processes on the real reactor (setsid)."""

    timeout = 60
    useHelper = False
    native = True

    def setUp(self) -> None:
        if self.useHelper:
            self.runtime = ProcessRuntime(reactor, launcher=None, native=False)
        else:
            self.runtime = ProcessRuntime(reactor, native=self.native)
            if not self.native and self.runtime.launcher is None:
                raise SkipTest("no env -C and setsid on this machine")
        self.addCleanup(self.runtime.close)
        self.runs: list[ProcessRun] = []

    def tearDown(self) -> None:
        for run in self.runs:
            if not run.exited:
                run.signal(signal.SIGKILL)

    @inlineCallbacks
    def spawn(self, command: tuple[str, ...], **kw: Any) -> Iterator[Deferred[Any]]:
        observer = RecordingObserver()
        run = yield self.runtime.spawn(container(command=command, **kw), observer)
        self.runs.append(run)
        return run, observer

    @inlineCallbacks
    def test_outputAndExit(self) -> None:
        """stdout and stderr arrive as lines; the exit status is reported."""
        run, observer = yield self.spawn(
            ("sh", "-c", "echo out; echo err >&2; printf part; exit 3")
        )
        code = yield observer.ended
        self.assertEqual(code, 3)
        self.assertEqual(observer.text("stdout"), ["out", "part"])
        self.assertEqual(observer.text("stderr"), ["err"])

    @inlineCallbacks
    def test_ownSession(self) -> None:
        """A run leads its own session and process group, and has a start time."""
        run, observer = yield self.spawn(("sleep", "1000"))
        stat = procfs.readStat(run.pid)
        self.assertEqual((stat.session, stat.pgrp), (run.pid, run.pid))
        self.assertEqual(run.startTime, [self.runtime.bootId, stat.startTime])
        self.assertNotEqual(stat.session, os.getsid(0))
        run.signal(signal.SIGTERM)
        code = yield observer.ended
        self.assertEqual(code, -signal.SIGTERM)

    @inlineCallbacks
    def test_environmentWorkdirStdin(self) -> None:
        """
        The run sees only the clean environment plus --env, runs in its
        workdir, has /dev/null as stdin and default signal dispositions.
        """
        self.patch(os, "environ", dict(os.environ, PYCM_TEST_LEAK="1"))
        workdir = os.path.abspath(self.mktemp())
        os.makedirs(workdir)
        script = "env | sort; pwd; readlink /proc/self/fd/0; grep SigIgn /proc/self/status"
        run, observer = yield self.spawn(
            ("sh", "-c", script), env={"FOO": "bar baz"}, workdir=workdir
        )
        yield observer.ended
        out = observer.text()
        self.assertIn("FOO=bar baz", out)
        self.assertIn("LANG=C.UTF-8", out)
        self.assertIn("PYCM_CONTAINER=web", out)
        self.assertNotIn("PYCM_TEST_LEAK=1", out)
        self.assertIn(workdir, out)
        self.assertIn("/dev/null", out)
        [ignored] = [int(line.split()[1], 16) for line in out if line.startswith("SigIgn:")]
        for signum in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGTERM, signal.SIGINT):
            self.assertFalse(ignored & (1 << (signum - 1)), signum)

    @inlineCallbacks
    def test_execFailureLate(self) -> None:
        """
        An executable that passes the up-front checks but cannot be
        executed (a script with a missing interpreter): with the helper,
        spawn fails with the reason, through its status pipe; with setsid,
        the run exits 126 or 127 and the reason is a stderr line.
        """
        script = os.path.abspath(self.mktemp())
        with open(script, "w") as f:
            f.write("#!/nonexistent/interpreter\n")
        os.chmod(script, 0o755)
        observer = RecordingObserver()
        d = self.runtime.spawn(container(command=(script,)), observer)
        if self.useHelper or self.native:
            error = yield self.assertFailure(d, BackendError)
            self.assertIn("exec", str(error))
            self.assertIn("No such file or directory", str(error))
            yield deferLater(reactor, 0.1, lambda: None)
            self.assertEqual(observer.exits, [])
        else:
            yield d
            code = yield observer.ended
            self.assertIn(code, (126, 127))
            self.assertIn(script, " ".join(observer.text("stderr")))

    @inlineCallbacks
    def test_groupKilledOnStop(self) -> None:
        """
        The stop signal reaches children and grandchildren: after it no
        process of the group is left.
        """
        run, observer = yield self.spawn(
            ("sh", "-c", "sleep 1000 & sh -c 'sleep 1000 & wait' & wait")
        )
        yield waitUntil(lambda: len(procfs.groupMembers(run.pid)) >= 4)
        run.signal(signal.SIGTERM)
        yield observer.ended
        yield waitUntil(lambda: procfs.groupMembers(run.pid) == [])

    @inlineCallbacks
    def test_leftoversKilledAfterExit(self) -> None:
        """
        When the main process exits on its own, background children it
        left are killed, and the exit is reported promptly.
        """
        run, observer = yield self.spawn(("sh", "-c", "sleep 1000 & sleep 1000 & exit 5"))
        started = time.monotonic()
        code = yield observer.ended
        self.assertEqual(code, 5)
        self.assertLess(time.monotonic() - started, LINGER)
        yield waitUntil(lambda: procfs.groupMembers(run.pid) == [])

    @inlineCallbacks
    def test_strayHoldingPipes(self) -> None:
        """
        A process that escaped into another session but holds the output
        pipe does not keep the run alive: the exit is reported after LINGER.
        """
        run, observer = yield self.spawn(
            ("sh", "-c", "setsid sh -c 'echo $$; exec sleep 1000' & sleep 0.2; exit 0")
        )
        code = yield observer.ended
        self.assertEqual(code, 0)
        [strayPid] = [int(line) for line in observer.text()]
        os.kill(strayPid, signal.SIGKILL)

    @inlineCallbacks
    def test_strayHoldingPipesWhilePaused(self) -> None:
        """
        Output the run wrote before it exited is all logged even when
        reading was paused (the output budget spent) and a stray that
        escaped the run (own session, no marker) holds the pipes: what is
        in them is read before they are closed.
        """
        pidFile = os.path.abspath(self.mktemp())
        self.addCleanup(self.killStray, pidFile)
        self.runtime.pacer = OutputPacer(reactor, share=0.001, burst=0.01)
        self.runtime.pacer.spend(1.0)
        script = (
            f"setsid env -i sh -c 'echo $$ > {pidFile}; exec sleep 1000' & "
            "while [ ! -s " + pidFile + " ]; do sleep 0.01; done; seq 1 10000"
        )
        run, observer = yield self.spawn(("sh", "-c", script))
        code = yield observer.ended
        self.assertEqual(code, 0)
        self.assertEqual(observer.text(), [str(i) for i in range(1, 10001)])

    def killStray(self, pidFile: str) -> None:
        try:
            with open(pidFile) as f:
                os.kill(int(f.read()), signal.SIGKILL)
        except (OSError, ValueError):
            pass

    @inlineCallbacks
    def test_longLinesAndBinary(self) -> None:
        """Very long lines are cut, not lost; invalid UTF-8 is kept."""
        run, observer = yield self.spawn(
            ("sh", "-c", "head -c 200000 /dev/zero | tr '\\0' a; printf '\\n\\377\\376\\n'")
        )
        yield observer.ended
        lines = [line for _, line in observer.lines]
        self.assertEqual(
            [len(line) for line in lines[:-1]], [MAX_LINE] * 3 + [200000 - 3 * MAX_LINE]
        )
        self.assertEqual(lines[-1], b"\xff\xfe")

    @inlineCallbacks
    def test_floodKeepsReactorResponsive(self) -> None:
        """
        A run writing 30 MB as fast as it can does not grow the daemon's
        memory, and the reactor keeps answering timers within 100 ms.
        """
        gaps: list[float] = []
        last = [time.monotonic()]

        def tick() -> None:
            now = time.monotonic()
            gaps.append(now - last[0])
            last[0] = now

        from twisted.internet.task import LoopingCall

        ticker = LoopingCall(tick)
        ticker.start(0.01)
        self.addCleanup(ticker.stop)
        before = _rss()
        observer = _CountingObserver()
        flood = f"yes '{'x' * 99}' | head -c 30000000"
        run = yield self.runtime.spawn(container(command=("sh", "-c", flood)), observer)
        self.runs.append(run)
        code = yield observer.ended
        self.assertEqual(code, 0)
        # Every line of 99 x's and its newline arrives, nothing else.
        self.assertEqual(observer.count, 300_000)
        self.assertEqual(observer.bytes, 300_000 * 99)
        self.assertLess(max(gaps), 0.1)
        self.assertLess(_rss() - before, 30 * 1024 * 1024)


class RealHelperRuntimeTests(RealRuntimeTests):
    """The same, with the Python exec helper instead of posix_spawn."""

    useHelper = True


class RealLauncherRuntimeTests(RealRuntimeTests):
    """The same, with C{env -C DIR setsid} instead of posix_spawn."""

    native = False


def _marked(runId: str) -> list[int]:
    """The live processes started with C{PYCM_RUN_ID=runId}."""
    return [
        stat.pid
        for stat in procfs.allStats()
        if stat.alive and procfs.runId(procfs.environ(stat.pid) or b"") == runId
    ]


def _commandLine(pid: int) -> bytes:
    """The command line of C{pid} as /proc has it, or C{b""} once it is gone."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


def _running(group: int, commandLine: bytes) -> list[int]:
    """The members of process group C{group} running exactly C{commandLine}."""
    return [pid for pid in procfs.groupMembers(group) if _commandLine(pid) == commandLine]


def _killQuietly(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass


def _rss() -> int:
    """This process's resident set size in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@implementer(IRunObserver)
class _CountingObserver:
    """Counts lines and bytes without keeping them."""

    def __init__(self) -> None:
        self.count = 0
        self.bytes = 0
        self.ended: Deferred[int | None] = Deferred()

    def output(self, stream: str, lines: list[bytes]) -> None:
        self.count += len(lines)
        self.bytes += sum(map(len, lines))

    def exited(self, exitCode: int | None) -> None:
        self.ended.callback(exitCode)


class MarkSweepTests(SynchronousTestCase):
    """L{MarkSweep}: one look at /proc for every run that ended in a turn."""

    def setUp(self) -> None:
        self.reactor = FakeProcessReactor()
        self.runtime = ProcessRuntime(self.reactor, launcher=None, native=False)
        self.looks: list[tuple[set[str], int | None]] = []

        def killMarked(runIds: set[str], notBefore: int | None = None) -> dict[str, list[int]]:
            self.looks.append((set(runIds), notBefore))
            return {"run-1": [4242]} if "run-1" in runIds else {}

        self.runtime.markSweep = MarkSweep(self.reactor, killMarked)

    def test_oneLookPerTurn(self) -> None:
        """
        Runs that end in one reactor turn share one look, from the earliest
        start time; each waiter fires after it.
        """
        first = self.runtime.markSweep.kill("run-1", 500, "a")
        second = self.runtime.markSweep.kill("run-2", 300, "b")
        self.assertEqual(self.looks, [])
        self.assertNoResult(first)
        self.reactor.advance(0)
        self.assertEqual(self.looks, [({"run-1", "run-2"}, 300)])
        self.successResultOf(first)
        self.successResultOf(second)
        third = self.runtime.markSweep.kill("run-3", None, "c")
        self.reactor.advance(0)
        self.assertEqual(self.looks[1], ({"run-3"}, None))
        self.successResultOf(third)

    def test_pacedByItsCost(self) -> None:
        """
        After a look that took T seconds, the next waits until T/MARK_DUTY
        seconds from its start, so many runs ending one after another
        share looks and cost the daemon at most MARK_DUTY of its time.
        """

        def slowLook(runIds: set[str], notBefore: int | None = None) -> dict[str, list[int]]:
            self.looks.append((set(runIds), notBefore))
            self.reactor.rightNow += 0.2
            return {}

        self.runtime.markSweep = MarkSweep(self.reactor, slowLook)
        self.runtime.markSweep.kill("run-1", None, "a")
        self.reactor.advance(0)
        self.assertEqual(len(self.looks), 1)
        waiters = [self.runtime.markSweep.kill(f"run-{i}", None, "b") for i in (2, 3)]
        wait = 0.2 * (1 / MARK_DUTY - 1)
        self.reactor.advance(wait - 0.01)
        self.assertEqual(len(self.looks), 1)
        self.assertNoResult(waiters[0])
        self.reactor.advance(0.02)
        self.assertEqual(self.looks[1], ({"run-2", "run-3"}, None))
        self.successResultOf(waiters[1])

    def test_closeFinishesPending(self) -> None:
        """Closing the runtime does a pending look at once: no waiter is left."""
        waiter = self.runtime.markSweep.kill("run-1", 1, "a")
        self.runtime.close()
        self.successResultOf(waiter)
        self.assertEqual(len(self.looks), 1)
        self.assertEqual(self.reactor.getDelayedCalls(), [])


class KillMarkedTests(SynchronousTestCase):
    """L{ProcessRuntime.killMarked} over a simulated process table."""

    def setUp(self) -> None:
        self.runtime = ProcessRuntime(FakeProcessReactor(), launcher=None, native=False)
        #: The process table of each successive look.
        self.tables: list[list[procfs.ProcStat]] = []
        self.read: list[int] = []
        self.marked = {10: "run-1", 11: "run-1", 12: "run-2", os.getpid(): "run-1"}
        self.patch(procfs, "allStats", lambda *a: self.tables.pop(0) if self.tables else [])

        def killIfMarked(pid: int, runIds: Any, signum: int = 9, proc: str = "") -> str | None:
            self.read.append(pid)
            runId = self.marked.get(pid)
            return runId if runId in runIds else None

        self.patch(procfs, "killIfMarked", killIfMarked)

    def stat(self, pid: int, start: int, state: str = "S") -> procfs.ProcStat:
        return procfs.ProcStat(pid, state, 1, pid, pid, start)

    def test_againWhileNewOnesTurnUp(self) -> None:
        """
        A marked child that turns up in the next look (forked while its
        parent was being killed) is killed too; the looks stop once one
        finds nothing new; a process killed already is not read again.
        """
        first = [self.stat(10, 100), self.stat(20, 100)]
        self.tables = [first, first + [self.stat(11, 101)], first + [self.stat(11, 101)]]
        found = self.runtime.killMarked({"run-1"})
        self.assertEqual(found, {"run-1": [10, 11]})
        self.assertEqual(self.read, [10, 20, 20, 11, 20])
        self.assertEqual(self.tables, [])

    def test_olderSkipped(self) -> None:
        """
        Processes older than the runs, zombies, and the daemon itself are
        never read; other runs' processes are not killed.
        """
        self.tables = [
            [
                self.stat(10, 99),
                self.stat(11, 100),
                self.stat(12, 150),
                self.stat(13, 150, "Z"),
                self.stat(os.getpid(), 150),
            ]
        ]
        self.assertEqual(self.runtime.killMarked({"run-1"}, notBefore=100), {"run-1": [11]})
        self.assertEqual(self.read, [11, 12])

    def test_nothingToLookFor(self) -> None:
        """No run ids: no look at all."""
        self.assertEqual(self.runtime.killMarked(set()), {})
        self.assertEqual(self.read, [])


class RealReclaimTests(TestCase):
    """L{ProcessRuntime.reclaim} on real processes left by a 'dead daemon'."""

    timeout = 30

    def orphan(self, script: str) -> subprocess.Popen[bytes]:
        """A process group in its own session, as a dead daemon leaves it."""
        child = subprocess.Popen(["sh", "-c", script], start_new_session=True)
        self.addCleanup(self.cleanup, child)
        return child

    def cleanup(self, child: subprocess.Popen[bytes]) -> None:
        try:
            os.killpg(child.pid, signal.SIGKILL)
        except OSError:
            pass
        child.wait()

    @inlineCallbacks
    def test_reclaimStopsGroup(self) -> None:
        """A survivor recognised by pid and start time is stopped, group and all."""
        child = self.orphan("sleep 1000 & sleep 1000 & wait")
        yield waitUntil(lambda: len(procfs.groupMembers(child.pid)) >= 3)
        runtime = ProcessRuntime(reactor)
        start = procfs.startTime(child.pid)
        stopped = yield runtime.reclaim(container(), child.pid, start)
        self.assertIs(stopped, True)
        yield waitUntil(lambda: procfs.groupMembers(child.pid) == [])

    @inlineCallbacks
    def test_reclaimEscalates(self) -> None:
        """A survivor that ignores the stop signal gets SIGKILL after the timeout."""
        child = self.orphan("trap '' TERM; sleep 1000 & wait")
        yield waitUntil(lambda: len(procfs.groupMembers(child.pid)) >= 2)
        runtime = ProcessRuntime(reactor)
        started = time.monotonic()
        stopped = yield runtime.reclaim(
            container(stopTimeout=0.5), child.pid, procfs.startTime(child.pid)
        )
        self.assertEqual(stopped, signal.SIGKILL)
        self.assertGreaterEqual(time.monotonic() - started, 0.5)
        yield waitUntil(lambda: procfs.groupMembers(child.pid) == [])

    @inlineCallbacks
    def test_sweepKillsMarkedProcesses(self) -> None:
        """
        L{ProcessRuntime.sweep} kills every process started with the run id
        of one of the given runs (whatever its session or group: also one
        that called setsid), and only those; it says which runs it found.
        """
        # A run id of this test process's own: another test run on the
        # machine neither counts nor kills these.
        swept = f"run-swept-{os.getpid()}"
        env = dict(os.environ, PYCM_RUN_ID=swept)
        child = subprocess.Popen(
            ["sh", "-c", "sleep 1000 & setsid sleep 1002 & env -u PYCM_RUN_ID sleep 1001 & exit 0"],
            start_new_session=True,
            env=env,
        )
        self.addCleanup(_killpgQuietly, child.pid)
        self.addCleanup(lambda: [_killQuietly(pid) for pid in _marked(swept)])
        child.wait()  # as init would reap it
        # Until each background job has exec'd its sleep, the shell's forks
        # (whose command line is the whole script) are in the group too.
        yield waitUntil(
            lambda: sorted(_commandLine(pid) for pid in _marked(swept))
            == [b"sleep\x001000\x00", b"sleep\x001002\x00"]
            and len(_running(child.pid, b"sleep\x001001\x00")) == 1
        )
        [unmarked] = _running(child.pid, b"sleep\x001001\x00")
        self.addCleanup(_killQuietly, unmarked)
        runtime = ProcessRuntime(reactor, cgroups=NO_CGROUPS)
        found = yield runtime.sweep({swept: container(), "run-other": container()})
        self.assertEqual(found, [swept])
        yield waitUntil(lambda: _marked(swept) == [])
        self.assertTrue(procfs.isSameProcess(unmarked, procfs.startTime(unmarked)))

    @inlineCallbacks
    def test_reclaimOtherBoot(self) -> None:
        """
        A run saved during another boot (its boot id differs) is lost, and
        nothing is signalled, even if pid and start time match now.
        """
        child = self.orphan("exec sleep 1000")
        runtime = ProcessRuntime(reactor, cgroups=NO_CGROUPS)
        start = procfs.startTime(child.pid)
        stopped = yield runtime.reclaim(container(), child.pid, ["another-boot", start])
        self.assertIs(stopped, False)
        self.assertIsNone(child.poll())
        stopped = yield runtime.reclaim(
            container(stopTimeout=0), child.pid, [runtime.bootId, start]
        )
        self.assertIs(stopped, True)

    @inlineCallbacks
    def test_reclaimWrongStartTime(self) -> None:
        """A live pid with another start time (a recycled pid) is not touched."""
        child = self.orphan("exec sleep 1000")
        runtime = ProcessRuntime(reactor)
        start = procfs.startTime(child.pid)
        stopped = yield runtime.reclaim(container(), child.pid, start - 1)
        self.assertIs(stopped, False)
        self.assertIsNone(child.poll())


class BackendReclaimTests(TestCase):
    """L{ProcessBackend.open} settles what a killed daemon left behind."""

    timeout = 30

    @inlineCallbacks
    def test_survivorStoppedOnOpen(self) -> None:
        """
        A record saved as running by a daemon that died, whose process
        still runs, is stopped on open: the record is exited with the
        reason in error, and the process group is gone.
        """
        stateDir = self.mktemp()
        os.makedirs(stateDir)
        child = subprocess.Popen(["sh", "-c", "sleep 1000 & wait"], start_new_session=True)
        self.addCleanup(child.wait)
        self.addCleanup(lambda: _killpgQuietly(child.pid))
        record = Record(
            name="web",
            id="f" * 32,
            backend="process",
            image="host",
            command=("sh", "-c", "sleep 1000 & wait"),
            created=1.0,
            state=State.RUNNING,
            pid=child.pid,
            started=2.0,
            startTime=procfs.startTime(child.pid),
        )
        store = SQLiteStore(os.path.join(stateDir, "state.db"))
        store.save("web", record.toDict())
        store.save(
            "gone",
            Record(
                name="gone",
                id="e" * 32,
                backend="process",
                image="host",
                command=("true",),
                created=1.0,
                state=State.RUNNING,
                pid=child.pid,
                startTime=1,
            ).toDict(),
        )
        store.close()
        backend = makeBackend(reactor, stateDir, {"cgroups": "off"})
        yield backend.open()
        self.addCleanup(backend.close)
        web = yield backend.inspect("web")
        self.assertEqual(web.state, State.EXITED)
        self.assertEqual(web.error, RECLAIMED_ERROR)
        gone = yield backend.inspect("gone")
        self.assertEqual(gone.state, State.DEAD)
        yield waitUntil(lambda: procfs.groupMembers(child.pid) == [])


class ContainmentTests(TestCase):
    """Every process of a container goes with it, also one that called setsid."""

    timeout = 60

    def makeBackend(self, cgroups: str) -> Deferred[Any]:
        stateDir = self.mktemp()
        backend = makeBackend(
            reactor, stateDir, {"cgroups": cgroups, "cgroup-parent": "/pycm-test"}
        )
        self.addCleanup(backend.close)
        return backend.open().addCallback(lambda _: backend)

    @inlineCallbacks
    def check(self, cgroups: str, how: str, escape: bool = False) -> Iterator[Deferred[Any]]:
        backend = yield self.makeBackend(cgroups)
        tracking = backend.runtime.cgroups.tracking
        if cgroups == "auto" and tracking is None:
            raise SkipTest("no cgroup to track containers in here")
        script = "sleep 1000 & setsid sleep 2000 & exec sleep 3000"
        if escape:
            if os.geteuid() != 0:
                raise SkipTest("only root can move a process out of its container's cgroup")
            # The shell moves itself to the hierarchy's root group, then
            # starts its children there.
            root = os.path.join(os.path.dirname(tracking), "cgroup.procs")
            script = f"echo $$ > {root}; {script}"
        yield backend.create(
            ContainerSpec(
                name="a1",
                image="host",
                command=("sh", "-c", script),
                env={"PYCM_RUN_ID": "forged", "PYCM_CONTAINER": "forged"},
            )
        )
        yield backend.start("a1")
        runId = backend._records["a1"].runId
        main = backend._records["a1"].pid
        self.addCleanup(lambda: [_killQuietly(pid) for pid in _marked(runId)])

        def escaped() -> bool:
            marked = _marked(runId)
            sessions = [procfs.readStat(pid) for pid in marked if pid != main]
            return len(marked) == 3 and any(s is not None and s.session == s.pid for s in sessions)

        yield waitUntil(escaped)
        env = procfs.environ(backend._records["a1"].pid) or b""
        self.assertIn(b"\0PYCM_CONTAINER=a1\0", b"\0" + env)
        if escape:
            group = backend.runtime.groupName(backend._records["a1"].toContainer())
            self.assertEqual(backend.runtime.cgroups.pids(group), [])
        if how == "stop":
            yield backend.stop("a1", 5)
        else:
            yield backend.remove("a1", True)
        yield waitUntil(lambda: _marked(runId) == [], timeout=5)

    def test_stopWithCgroup(self) -> None:
        """C{stop} kills a process that left the session (cgroup tracking)."""
        return self.check("auto", "stop")

    def test_removeWithCgroup(self) -> None:
        """C{rm --force} does too."""
        return self.check("auto", "rm")

    def test_stopWithoutCgroup(self) -> None:
        """Without cgroups, the run marker finds it."""
        return self.check("off", "stop")

    def test_stopEscapedCgroup(self) -> None:
        """
        C{stop} kills processes that left both the session and the cgroup
        (as root can): the run marker finds them.
        """
        return self.check("auto", "stop", escape=True)

    def test_removeEscapedCgroup(self) -> None:
        """C{rm --force} does too."""
        return self.check("auto", "rm", escape=True)

    @inlineCallbacks
    def test_startInterruptedByCrash(self) -> None:
        """
        A daemon killed while starting a container left its record
        C{created} with the run id saved and no pid: the next daemon kills
        every process started with that run id (also one that called
        setsid) and says so in the record's error.
        """
        stateDir = self.mktemp()
        os.makedirs(stateDir)
        # A run id of this test process's own (see test_sweepKillsMarkedProcesses).
        interrupted = f"run-interrupted-{os.getpid()}"
        env = dict(os.environ, PYCM_RUN_ID=interrupted)
        child = subprocess.Popen(
            ["sh", "-c", "setsid sleep 2000 & exec sleep 3000"], start_new_session=True, env=env
        )
        self.addCleanup(child.wait)
        self.addCleanup(lambda: [_killQuietly(pid) for pid in _marked(interrupted)])
        yield waitUntil(lambda: len(_marked(interrupted)) == 2)
        record = Record(
            name="web",
            id="f" * 32,
            backend="process",
            image="host",
            command=("sleep", "3000"),
            created=1.0,
            runId=interrupted,
        )
        store = SQLiteStore(os.path.join(stateDir, "state.db"))
        store.save("web", record.toDict())
        store.close()
        backend = makeBackend(reactor, stateDir, {"cgroups": "off"})
        yield backend.open()
        self.addCleanup(backend.close)
        yield waitUntil(lambda: _marked(interrupted) == [], timeout=5)
        web = yield backend.inspect("web")
        self.assertEqual((web.state, web.error), (State.CREATED, STARTING_ERROR))


def _killpgQuietly(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError:
        pass


# -- cgroups on this machine ---------------------------------------------------------


class RealLimitsTests(TestCase):
    """Limits really applied, where this machine lets the daemon set them."""

    timeout = 30

    def setUp(self) -> None:
        self.cgroups = detect(parent="/pycm-test")
        if not self.cgroups.limits:
            raise SkipTest(f"no cgroup limits here: {self.cgroups.describe()}")

    @inlineCallbacks
    def test_runJoinsItsGroup(self) -> None:
        """
        A run with --memory/--cpus is inside its own group with those
        limits, from before its command starts; the group goes after exit.
        """
        runtime = ProcessRuntime(reactor, cgroups=self.cgroups)
        observer = RecordingObserver()
        c = container(command=("cat", "/proc/self/cgroup"), memory=64 * 1024 * 1024, cpus=0.5)
        yield runtime.spawn(c, observer)
        yield observer.ended
        group = runtime.groupName(c)
        self.assertTrue(any(line.endswith("/pycm-test/" + group) for line in observer.text()))
        yield waitUntil(
            lambda: (
                not any(os.path.exists(os.path.join(p, group)) for p in self.cgroups.dirs.values())
            )
        )

    @inlineCallbacks
    def test_memoryLimitEnforced(self) -> None:
        """A run that allocates over its --memory limit is killed by the kernel."""
        runtime = ProcessRuntime(reactor, cgroups=self.cgroups)
        if "memory" not in self.cgroups.limits:
            raise SkipTest("no memory limit here")
        observer = RecordingObserver()
        hog = (sys.executable, "-c", "x = bytearray(200 * 1024 * 1024); print('survived')")
        yield runtime.spawn(container(command=hog, memory=32 * 1024 * 1024), observer)
        code = yield observer.ended
        self.assertEqual(code, -signal.SIGKILL)
        self.assertNotIn("survived", observer.text())


# -- conformance -----------------------------------------------------------------------


class ProcessFixture(ReactorFixture):
    """The conformance fixture of the process backend, with real processes."""

    image = "host"
    missingImage = "busybox"
    longCommand = ("sleep", "1000")
    ignoreTermCommand = ("sh", "-c", "trap '' TERM; exec sleep 1000")
    badCommand = ("pycm-no-such-executable",)
    busyCommand = ("sh", "-c", "while :; do :; done")
    idCommand = ("sh", "-c", 'echo "$(id -u):$(id -g)"')

    def __init__(self, limits: bool) -> None:
        super().__init__(reactor)
        self.limits = limits

    def exitCommand(self, code: int) -> tuple[str, ...]:
        return ("sh", "-c", f"exit {code}")

    def echoCommand(self, text: str) -> tuple[str, ...]:
        return ("printf", "%s\\n", text)

    def delayedEchoCommand(self, text: str) -> tuple[str, ...]:
        return ("sh", "-c", 'sleep 1; printf "%s\\n" "$1"', "sh", text)

    def makeBackend(self, testCase: TestCase) -> Deferred[IContainerBackend]:
        stateDir = testCase.mktemp()
        options = {"cgroups": "auto" if self.limits else "off", "cgroup-parent": "/pycm-test"}
        backend = makeBackend(reactor, stateDir, options)
        testCase.addCleanup(lambda: self.settle(testCase, backend.close(), 60))
        return backend.open().addCallback(lambda _: backend)


class ProcessConformanceTests(BackendConformanceTests, TestCase):
    """The conformance suite on the process backend, limits as detected."""

    fixture = ProcessFixture(limits=True)


class ProcessNoLimitsConformanceTests(BackendConformanceTests, TestCase):
    """The conformance suite on the process backend without cgroups."""

    fixture = ProcessFixture(limits=False)


class ProcessBackendTests(TestCase):
    """Process-backend specifics through the backend interface."""

    timeout = 60

    @inlineCallbacks
    def test_limitRefusedWithReason(self) -> None:
        """Without cgroups, --memory is refused with BadRequest saying why."""
        backend = makeBackend(reactor, self.mktemp(), {"cgroups": "off"})
        yield backend.open()
        self.addCleanup(backend.close)
        d = backend.create(ContainerSpec("lim", image="host", command=("true",), memory=1 << 26))
        error = yield self.assertFailure(d, BadRequest)
        self.assertIn("--memory cannot be enforced", str(error))

    @inlineCallbacks
    def test_badCommandStaysDead(self) -> None:
        """A missing executable: start fails, the record is dead with its error."""
        backend = makeBackend(reactor, self.mktemp(), {"cgroups": "off"})
        yield backend.open()
        self.addCleanup(backend.close)
        yield backend.create(ContainerSpec("bad", image="host", command=("no-such-cmd",)))
        error = yield self.assertFailure(backend.start("bad"), BackendError)
        self.assertIn("executable file not found", str(error))
        bad = yield backend.inspect("bad")
        self.assertEqual(bad.state, State.DEAD)
        self.assertIn("no-such-cmd", bad.error)

    @inlineCallbacks
    def test_recordsAndLogsSurviveReopen(self) -> None:
        """Records and logs written by one backend are there for the next."""
        stateDir = self.mktemp()
        backend = makeBackend(reactor, stateDir, {"cgroups": "off"})
        yield backend.open()
        yield backend.create(ContainerSpec("hello", image="host", command=("echo", "hi")))
        yield backend.start("hello")
        yield backend.wait("hello", "not-running")
        yield backend.close()
        again = makeBackend(reactor, stateDir, {"cgroups": "off"})
        yield again.open()
        self.addCleanup(again.close)
        hello = yield again.inspect("hello")
        self.assertEqual((hello.state, hello.exitCode), (State.EXITED, 0))
        logs = yield again.logs("hello", None)
        self.assertEqual([line.line for line in logs], ["hi"])
