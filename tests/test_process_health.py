"""
Tests for the process backend's health checks
(L{pycm.backends.process.health}, L{ProcessRuntime.probe}): the check's
protocol on a fake transport and clock, and real checks of real runs on the
reactor (in cgroups when this machine has them).
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from collections.abc import Generator
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import CancelledError, Deferred, inlineCallbacks
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.task import Clock, deferLater
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from pycm.backends.process import health as processHealth
from pycm.backends.process import procfs
from pycm.backends.process.backend import makeBackend
from pycm.backends.process.cgroupdetect import detect
from pycm.backends.process.health import (
    JOIN_SCRIPT,
    READ_LIMIT,
    SHELL,
    CheckProtocol,
    checkSetup,
)
from pycm.backends.process.run import ProcessRun
from pycm.backends.process.runtime import ProcessRuntime
from pycm.health import MAX_OUTPUT, HealthCheck, HealthResult, HealthStatus
from pycm.interfaces import IRuntimeHealth
from pycm.model import Container, ContainerSpec, State, WaitCondition
from pycm.testing.conformance import RunRecorder

#: The parent cgroup of these tests' containers (their own: other modules'
#: real cgroup tests may run at the same time).
CGROUP_PARENT = "/pycm-health-tests"


def container(cmd: str | None, name: str = "web", **kw: Any) -> Container:
    """A container value whose health check is C{cmd}."""
    return Container(
        name=name,
        id="0123456789abcdef0123456789abcdef",
        backend="process",
        image="host",
        command=("sleep", "1000"),
        state=State.CREATED,
        created=0.0,
        healthcheck=HealthCheck(cmd),
        **kw,
    )


class FakeTransport:
    """A process transport that remembers which pipes were closed."""

    def __init__(self, pid: int | None) -> None:
        self.pid = pid
        self.pipes = {1: object()}
        self.closed: list[int] = []

    def closeChildFD(self, fd: int) -> None:
        self.closed.append(fd)
        self.pipes.pop(fd, None)


class CheckProtocolTests(SynchronousTestCase):
    """L{CheckProtocol} on a fake transport and clock (no process)."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(100)
        self.done: list[CheckProtocol] = []
        self.killed: list[tuple[int, int]] = []

        def signalGroup(pgid: int, signum: int) -> bool:
            self.killed.append((pgid, signum))
            return True

        self.patch(processHealth.procfs, "signalGroup", signalGroup)
        self.check = CheckProtocol(self.clock, 2.0, self.done.append)
        self.transport = FakeTransport(4242)
        self.check.makeConnection(self.transport)  # type: ignore[arg-type]

    def end(self, code: int = 0) -> None:
        reason = Failure(ProcessDone(0) if code == 0 else ProcessTerminated(code))
        self.check.processExited(reason)
        self.check.processEnded(reason)

    def test_exitAndOutput(self) -> None:
        """The exit code and the output (one pipe: stdout and stderr) are told."""
        self.check.childDataReceived(1, b"out\n")
        self.clock.advance(0.5)
        self.check.childDataReceived(1, b"err\n")
        self.end(3)
        result = self.successResultOf(self.check.result)
        self.assertEqual(result, HealthResult(100.0, 100.5, 3, "out\nerr\n"))
        self.assertEqual(self.done, [self.check])
        self.assertEqual(self.killed, [(4242, signal.SIGKILL)])

    def test_outputCapped(self) -> None:
        """Only the first L{MAX_OUTPUT} bytes are kept; reading goes on."""
        for _ in range(10):
            self.check.childDataReceived(1, b"x" * 1000)
        self.assertEqual(self.transport.closed, [])
        self.end()
        self.assertEqual(self.successResultOf(self.check.result).output, "x" * MAX_OUTPUT)

    def test_floodStopsReading(self) -> None:
        """Past L{READ_LIMIT} bytes the daemon closes the pipe."""
        chunk = b"y" * 65536
        for _ in range(READ_LIMIT // len(chunk) + 1):
            self.check.childDataReceived(1, chunk)
        self.assertEqual(self.transport.closed, [1])

    def test_timeout(self) -> None:
        """
        At its timeout the check's process group is killed, its pipes
        closed, and the result (-1, saying so) told at once.
        """
        self.check.childDataReceived(1, b"partial")
        self.clock.advance(2)
        result = self.successResultOf(self.check.result)
        self.assertEqual(result.exitCode, -1)
        self.assertEqual(result.output, "health check timed out after 2s")
        self.assertEqual(result.end - result.start, 2.0)
        self.assertEqual(self.killed, [(4242, signal.SIGKILL)])
        self.assertEqual(self.transport.closed, [1])
        # Reaped later: forgotten then, the result unchanged.
        self.end(-9)
        self.assertEqual(self.done, [self.check])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_cannotStart(self) -> None:
        """What the join script says on its status pipe makes the result -1."""
        self.check.childDataReceived(processHealth.STATUS_FD, b"cannot join the cgroup /x\n")
        self.end(126)
        result = self.successResultOf(self.check.result)
        self.assertEqual(
            (result.exitCode, result.output),
            (-1, "cannot start the health check: cannot join the cgroup /x"),
        )

    def test_cancel(self) -> None:
        """Cancelling the result kills the check's group and stops its timer."""
        self.check.result.cancel()
        self.failureResultOf(self.check.result, CancelledError)
        self.assertEqual(self.killed, [(4242, signal.SIGKILL)])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_lingeringPipe(self) -> None:
        """
        A child that left the group and holds the pipe is given
        L{processHealth.LINGER} seconds, then the pipe is closed.
        """
        self.check.processExited(Failure(ProcessDone(0)))
        self.assertNoResult(self.check.result)
        self.clock.advance(processHealth.LINGER)
        self.assertEqual(self.transport.closed, [1])
        self.check.processEnded(Failure(ProcessDone(0)))
        self.assertEqual(self.successResultOf(self.check.result).exitCode, 0)


class CheckSetupTests(SynchronousTestCase):
    """L{checkSetup}: the command line of a check."""

    def test_plain(self) -> None:
        """Without cgroups nor user: the shell itself."""
        setup = checkSetup("true", {}, "/", [], [])
        self.assertEqual((setup.executable, setup.argv), (SHELL, [SHELL, "-c", "true"]))
        self.assertFalse(setup.status)

    def test_joinAndSwitch(self) -> None:
        """With cgroups, the join script first; the user switch right before the shell."""
        setup = checkSetup("true", {}, "/", ["/a/cgroup.procs"], ["setpriv", "--"])
        self.assertEqual(
            setup.argv,
            [SHELL, "-c", JOIN_SCRIPT, "pycm-health", "1", "/a/cgroup.procs"]
            + ["setpriv", "--", SHELL, "-c", "true"],
        )
        self.assertTrue(setup.status)


def alive(pid: int) -> bool:
    """Is C{pid} a live (not zombie) process?"""
    stat = procfs.readStat(pid)
    return stat is not None and stat.alive


class RealChecksTests(TestCase):
    """Real checks of real runs, with the runtime on the reactor."""

    timeout = 60

    def setUp(self) -> None:
        self.cgroups = detect(CGROUP_PARENT)
        self.runtime = ProcessRuntime(reactor, cgroups=self.cgroups)
        self.runtime.stateMarker = "/var/lib/pycm-health-tests"
        self.addCleanup(self.runtime.close)
        self.tmp = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.tmp, True)

    @inlineCallbacks
    def start(self, c: Container) -> Generator[Deferred[Any], Any, ProcessRun]:
        recorder = RunRecorder()
        run = yield self.runtime.spawn(c, recorder, "run-health-1")
        self.addCleanup(self.stop, run, recorder)
        return run

    @inlineCallbacks
    def stop(self, run: ProcessRun, recorder: RunRecorder) -> Generator[Deferred[Any], Any, None]:
        run.signal(signal.SIGKILL)
        yield recorder.ended

    @inlineCallbacks
    def waitFor(self, path: str) -> Generator[Deferred[Any], Any, int]:
        """The pid a check wrote into C{path}, once it is there."""
        for _ in range(500):
            if os.path.exists(path):
                with open(path) as f:
                    text = f.read().strip()
                if text:
                    return int(text)
            yield deferLater(reactor, 0.01, lambda: None)
        self.fail(f"nothing written to {path}")

    @inlineCallbacks
    def assertGone(self, pid: int) -> Generator[Deferred[Any], Any, None]:
        for _ in range(200):
            if not alive(pid):
                return
            yield deferLater(reactor, 0.01, lambda: None)
        self.fail(f"pid {pid} still alive")

    def test_provided(self) -> None:
        """The process runtime provides L{IRuntimeHealth}."""
        self.assertTrue(IRuntimeHealth.providedBy(self.runtime))

    @inlineCallbacks
    def test_asTheContainer(self) -> Generator[Deferred[Any], Any, None]:
        """
        A check runs with the run's environment (its --env, its marker),
        working directory and cgroup; stdout and stderr in one output.
        """
        cmd = 'echo "$FOO $PYCM_CONTAINER $PYCM_RUN_ID"; pwd; cat /proc/self/cgroup; echo e >&2'
        c = container(cmd, env={"FOO": "bar"}, workdir=self.tmp)
        run = yield self.start(c)
        result = yield self.runtime.probe(c, run, 10)
        self.assertEqual(result.exitCode, 0, result.output)
        lines = result.output.splitlines()
        self.assertEqual(lines[0], "bar web run-health-1")
        self.assertEqual(lines[1], self.tmp)
        self.assertEqual(lines[-1], "e")
        if self.cgroups.tracking is not None:
            self.assertIn(f":/{CGROUP_PARENT.strip('/')}/{run.group}", result.output)
            with open(f"/proc/{run.pid}/cgroup") as f:
                runGroups = sorted(f.read().splitlines())
            self.assertEqual(sorted(lines[2:-1]), runGroups)

    @inlineCallbacks
    def test_limitedCgroups(self) -> Generator[Deferred[Any], Any, None]:
        """A check of a run with --memory joins every cgroup of the run."""
        if "memory" not in self.cgroups.limits:
            self.skipTest("no memory limit on this machine")
        c = container("cat /proc/self/cgroup", memory=64 << 20)
        run = yield self.start(c)
        result = yield self.runtime.probe(c, run, 10)
        with open(f"/proc/{run.pid}/cgroup") as f:
            runGroups = sorted(f.read().splitlines())
        self.assertEqual(sorted(result.output.splitlines()), runGroups)

    @inlineCallbacks
    def test_exitCode(self) -> Generator[Deferred[Any], Any, None]:
        """The check's exit status is its result's."""
        c = container("exit 3")
        run = yield self.start(c)
        result = yield self.runtime.probe(c, run, 10)
        self.assertEqual((result.exitCode, result.output), (3, ""))

    @inlineCallbacks
    def test_outputCapped(self) -> Generator[Deferred[Any], Any, None]:
        """A check that writes more than 4 KiB: the first 4 KiB are kept."""
        c = container("head -c 100000 /dev/zero | tr '\\0' x")
        run = yield self.start(c)
        result = yield self.runtime.probe(c, run, 10)
        self.assertEqual((result.exitCode, result.output), (0, "x" * MAX_OUTPUT))

    @inlineCallbacks
    def test_flood(self) -> Generator[Deferred[Any], Any, None]:
        """A check that writes without end is cut off, long before its timeout."""
        c = container("yes")
        run = yield self.start(c)
        result = yield self.runtime.probe(c, run, 30)
        self.assertEqual(result.output, "y\n" * (MAX_OUTPUT // 2))
        self.assertLess(result.end - result.start, 10)
        self.assertIn(result.exitCode, (-signal.SIGPIPE, 128 + signal.SIGPIPE))

    @inlineCallbacks
    def test_timeoutKillsTheCheckAndItsChildren(self) -> Generator[Deferred[Any], Any, None]:
        """
        At its timeout the check and the children it started are killed
        before the result is told (so the next check never overlaps it).
        """
        pidFile = os.path.join(self.tmp, "pid")
        c = container(f"sleep 100 & echo $! > {pidFile}; wait")
        run = yield self.start(c)
        d = self.runtime.probe(c, run, 2)
        child = yield self.waitFor(pidFile)
        result = yield d
        self.assertEqual(result.exitCode, -1)
        self.assertEqual(result.output, "health check timed out after 2s")
        yield self.assertGone(child)
        self.assertTrue(alive(run.pid))

    @inlineCallbacks
    def test_cancelKills(self) -> Generator[Deferred[Any], Any, None]:
        """Cancelling a check's Deferred kills it."""
        pidFile = os.path.join(self.tmp, "pid")
        c = container(f"echo $$ > {pidFile}; sleep 100")
        run = yield self.start(c)
        d = self.runtime.probe(c, run, 30)
        pid = yield self.waitFor(pidFile)
        d.cancel()
        self.failureResultOf(d, CancelledError)
        yield self.assertGone(pid)

    @inlineCallbacks
    def test_runEndKillsChecks(self) -> Generator[Deferred[Any], Any, None]:
        """
        A check still running when its run ends is killed with it; later
        checks of that run are refused.
        """
        pidFile = os.path.join(self.tmp, "pid")
        c = container(f"echo $$ > {pidFile}; sleep 100")
        recorder = RunRecorder()
        run = yield self.runtime.spawn(c, recorder, "run-health-2")
        d = self.runtime.probe(c, run, 30)
        pid = yield self.waitFor(pidFile)
        run.signal(signal.SIGKILL)
        yield recorder.ended
        result = yield d
        # Killed either by the run's end (-1, saying so) or, reaped first,
        # by the SIGKILL of the run's cgroup it is in.
        self.assertIn(
            (result.exitCode, result.output),
            [(-1, "health check killed: the container stopped"), (-signal.SIGKILL, "")],
        )
        yield self.assertGone(pid)
        for _ in range(200):
            if not self.runtime.prober.live():
                break
            yield deferLater(reactor, 0.01, lambda: None)
        self.assertEqual(self.runtime.prober.live(), 0)
        late = yield self.runtime.probe(c, run, 30)
        self.assertEqual((late.exitCode, late.output), (-1, "the container is not running"))

    @inlineCallbacks
    def test_closeKillsChecks(self) -> Generator[Deferred[Any], Any, None]:
        """Closing the runtime (the daemon stops) kills every check."""
        pidFile = os.path.join(self.tmp, "pid")
        c = container(f"echo $$ > {pidFile}; sleep 100")
        run = yield self.start(c)
        d = self.runtime.probe(c, run, 30)
        pid = yield self.waitFor(pidFile)
        self.runtime.prober.close()
        result = yield d
        self.assertEqual(result.output, "health check killed: the daemon stopped")
        yield self.assertGone(pid)

    @inlineCallbacks
    def test_leftoverCheckSwept(self) -> Generator[Deferred[Any], Any, None]:
        """
        A check carries its run's marker: after a crash, the sweep of that
        run's leftovers kills it too (it is found as part of the run, never
        as a container of its own).
        """
        pidFile = os.path.join(self.tmp, "pid")
        # Not `exec sleep`: while the shell executes it, its environ reads
        # empty (the new program's is not set up yet).
        c = container(f"echo $$ > {pidFile}; sleep 100")
        run = yield self.start(c)
        d = self.runtime.probe(c, run, 30)
        d.addErrback(lambda f: f.trap(CancelledError))
        pid = yield self.waitFor(pidFile)
        with open(f"/proc/{pid}/environ", "rb") as f:
            self.assertIn(b"PYCM_RUN_ID=run-health-1\0", f.read())
        found = yield self.runtime.sweep({"run-health-1": c})
        self.assertEqual(found, ["run-health-1"])
        yield self.assertGone(pid)

    @inlineCallbacks
    def test_cannotStart(self) -> Generator[Deferred[Any], Any, None]:
        """A check that cannot start (its workdir is gone): -1 and why."""
        workdir = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, workdir, True)
        c = container("true", workdir=workdir)
        run = yield self.start(c)
        os.rmdir(workdir)
        result = yield self.runtime.probe(c, run, 10)
        self.assertEqual(result.exitCode, -1)
        self.assertIn("cannot start the health check", result.output)
        self.assertIn(workdir, result.output)

    @inlineCallbacks
    def test_cannotJoinCgroup(self) -> Generator[Deferred[Any], Any, None]:
        """A check that cannot join its run's cgroup: -1 and why."""
        if self.cgroups.tracking is None:
            self.skipTest("no cgroups on this machine")
        c = container("echo never")
        run = yield self.start(c)
        ghost = ProcessRun(run.pid, run.startTime, "no-such-group", lambda group: None)
        result = yield self.runtime.probe(c, ghost, 10)
        self.assertEqual(result.exitCode, -1)
        self.assertIn("cannot start the health check: ", result.output)
        self.assertIn("no-such-group", result.output)
        self.assertNotIn("never", result.output)

    @inlineCallbacks
    def test_manyInTurn(self) -> Generator[Deferred[Any], Any, None]:
        """Checks one after the other leave nothing behind."""
        c = container("echo ok")
        run = yield self.start(c)
        for _ in range(20):
            result = yield self.runtime.probe(c, run, 10)
            self.assertEqual((result.exitCode, result.output), (0, "ok\n"))
        self.assertEqual(self.runtime.prober.live(), 0)


class BackendHealthTests(TestCase):
    """
    The process backend as a whole (the supervisor scheduling the checks,
    the runtime running them): real processes, real health.
    """

    timeout = 60

    @inlineCallbacks
    def setUp(self) -> Generator[Deferred[Any], Any, None]:
        self.backend = makeBackend(
            reactor, self.mktemp(), {"cgroups": "auto", "cgroup-parent": CGROUP_PARENT}
        )
        self.addCleanup(self.backend.close)
        yield self.backend.open()
        self.tmp = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.tmp, True)
        os.chmod(self.tmp, 0o755)  # the check runs as nobody

    @inlineCallbacks
    def test_healthyThenUnhealthy(self) -> Generator[Deferred[Any], Any, None]:
        """
        A check that passes makes the container healthy; once it fails
        C{retries} times in a row, unhealthy, with the checks' output in
        its log; stopping it leaves no check behind.
        """
        flag = os.path.join(self.tmp, "ok")
        open(flag, "w").close()
        check = HealthCheck(f"test -f {flag} && echo fine || {{ echo gone; exit 1; }}", 0.1, 5, 2)
        spec = ContainerSpec("hc", command=("sleep", "1000"), healthcheck=check, user="nobody")
        yield self.backend.create(spec)
        yield self.backend.start("hc")
        c = yield self.backend.wait("hc", WaitCondition.HEALTHY)
        self.assertEqual(c.health.status, HealthStatus.HEALTHY)
        self.assertEqual(c.health.log[-1].output, "fine\n")
        os.unlink(flag)
        c = yield self.backend.wait("hc", WaitCondition.UNHEALTHY)
        self.assertEqual(c.health.status, HealthStatus.UNHEALTHY)
        self.assertEqual(c.health.log[-1].output, "gone\n")
        yield self.backend.stop("hc", 5)
        self.assertEqual(self.backend.runtime.prober.live(), 0)
