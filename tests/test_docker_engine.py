"""
The Docker backend against a real engine: what is particular to Docker
(labels, foreign containers, exit codes of signals, the engine's options,
pulls, the event stream).  The shared conformance suite runs against it
too (L{tests.test_docker_conformance}).

Needs C{PYCM_DOCKER_HOST} (see L{tests.test_docker_support}); skips
without it, fails without it under C{PYCM_REQUIRE_DOCKER=1}.
"""

from __future__ import annotations

import os
import signal
from typing import Any

from twisted.internet import defer, reactor, task
from twisted.internet.protocol import Factory
from twisted.trial.unittest import TestCase
from zope.interface.verify import verifyObject

from pycm.backends.docker.translate import MANAGED_LABEL
from pycm.errors import BackendError, BadRequest, Conflict, NoImage, NotFound, Unavailable
from pycm.interfaces import IContainerBackend
from pycm.model import (
    ContainerEvent,
    ContainerSpec,
    LogLine,
    ProgressEvent,
    RestartPolicy,
    State,
)
from tests.test_docker_support import (
    engineBackend,
    removeContainers,
    requireEngine,
    testImage,
    uniqueName,
)


def sleep(seconds: float) -> defer.Deferred[None]:
    """A Deferred that fires after C{seconds} on the real reactor."""
    return task.deferLater(reactor, seconds, lambda: None)


@defer.inlineCallbacks
def eventually(check: Any, timeout: float = 15.0, interval: float = 0.1) -> Any:
    """Call C{check} (maybe returning a Deferred) until it returns true."""
    deadline = reactor.seconds() + timeout  # type: ignore[attr-defined]
    while True:
        result = yield defer.maybeDeferred(check)
        if result:
            return result
        if reactor.seconds() > deadline:  # type: ignore[attr-defined]
            raise AssertionError(f"still not true after {timeout} s: {check}")
        yield sleep(interval)


def openSockets() -> int:
    """How many sockets this process has open."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                count += 1
        except OSError:
            pass
    return count


class EngineTestCase(TestCase):
    """A backend on the test engine, opened, with its containers removed after."""

    timeout = 120
    backendOptions: dict[str, str] = {}

    @defer.inlineCallbacks
    def setUp(self) -> Any:
        requireEngine()
        self.backend = engineBackend(reactor, **self.backendOptions)
        self.events: list[ContainerEvent] = []
        self.backend.addObserver(self.events.append)
        self.names: list[str] = []
        yield self.backend.open()
        yield eventually(lambda: self.backend._events.connected)
        self.addCleanup(self.backend.close)
        self.addCleanup(lambda: removeContainers(self.backend, self.names))

    def name(self) -> str:
        """A fresh container name, removed after the test."""
        name = uniqueName()
        self.names.append(name)
        return name

    def actions(self, name: str) -> list[str]:
        """The actions of the events seen so far for C{name}."""
        return [e.action for e in self.events if e.name == name]

    def run_(self, name: str, *command: str, **spec: Any) -> defer.Deferred[Any]:
        """Create and start, as the daemon's C{run} does."""
        d = self.backend.create(ContainerSpec(name, command=command or None, **spec))
        return d.addCallback(lambda c: self.backend.start(c.name))


class DockerBackendTests(EngineTestCase):
    """Docker-specific behaviour of the backend against a real engine."""

    def test_interface(self) -> None:
        """The backend provides IContainerBackend, named docker."""
        self.assertTrue(verifyObject(IContainerBackend, self.backend))
        self.assertEqual(self.backend.name, "docker")

    @defer.inlineCallbacks
    def test_optionsReachTheEngine(self) -> Any:
        """env, label, workdir, memory, cpus, stop options end up in the engine's config."""
        name = self.name()
        container = yield self.run_(
            name,
            "sh",
            "-c",
            'echo "A=$A in $(pwd)"; sleep 1000',
            env={"A": "one two"},
            labels={"team": "x"},
            workdir="/tmp",
            memory=64 << 20,
            cpus=0.5,
            stopTimeout=1.5,
            stopSignal="SIGHUP",
        )
        self.assertEqual(container.state, State.RUNNING)
        self.assertIsNotNone(container.pid)
        _, raw = yield self.backend.engine.request("GET", f"/containers/{name}/json")
        self.assertEqual(raw["HostConfig"]["Memory"], 64 << 20)
        self.assertEqual(raw["HostConfig"]["NanoCpus"], 500_000_000)
        self.assertEqual(raw["HostConfig"]["NetworkMode"], "none")
        # Podman reports the signal's number.
        self.assertIn(str(raw["Config"]["StopSignal"]), ("SIGHUP", str(int(signal.SIGHUP))))
        self.assertEqual(raw["Config"]["StopTimeout"], 2)
        self.assertEqual(raw["Config"]["Labels"][MANAGED_LABEL], "true")
        inspected = yield self.backend.inspect(name)
        self.assertEqual(inspected.env, {"A": "one two"})
        self.assertEqual(inspected.labels, {"team": "x"})
        self.assertEqual(inspected.workdir, "/tmp")
        self.assertEqual(inspected.stopTimeout, 1.5)
        self.assertEqual(inspected.stopSignal, "SIGHUP")
        self.assertEqual((inspected.memory, inspected.cpus), (64 << 20, 0.5))
        self.assertEqual(inspected.image, testImage())
        lines = yield eventually(lambda: self.backend.logs(name, None))
        self.assertEqual([line.line for line in lines], ["A=one two in /tmp"])

    @defer.inlineCallbacks
    def test_foreignContainers(self) -> Any:
        """A container pycm did not create is not listed, not found, and its name conflicts."""
        name = self.name()
        yield self.backend.engine.request(
            "POST",
            "/containers/create",
            {"name": name},
            {"Image": testImage(), "Cmd": ["true"], "HostConfig": {"NetworkMode": "none"}},
        )
        listed = yield self.backend.list()
        self.assertNotIn(name, [c.name for c in listed])
        yield self.assertFailure(self.backend.inspect(name), NotFound)
        yield self.assertFailure(self.backend.start(name), NotFound)
        yield self.assertFailure(self.backend.remove(name, True), NotFound)
        error = yield self.assertFailure(
            self.backend.create(ContainerSpec(name, command=("true",))), Conflict
        )
        self.assertIn("already in use", str(error))

    @defer.inlineCallbacks
    def test_privateLabelsRefused(self) -> Any:
        """A client cannot set pycm's own labels (it could fake the managed mark)."""
        yield self.assertFailure(
            self.backend.create(ContainerSpec(self.name(), labels={MANAGED_LABEL: "x"})),
            BadRequest,
        )

    @defer.inlineCallbacks
    def test_stopReportsTheSignal(self) -> Any:
        """stop of a sleep: exit code -15, events die then stop, no kill event."""
        name = self.name()
        yield self.run_(name, "sleep", "1000")
        stopped = yield self.backend.stop(name, 5)
        self.assertEqual((stopped.state, stopped.exitCode), (State.EXITED, -15))
        self.assertEqual(self.actions(name), ["create", "start", "die", "stop"])
        die = [e for e in self.events if e.name == name and e.action == "die"][0]
        self.assertEqual(die.exitCode, -15)
        listed = yield self.backend.list()
        self.assertEqual(
            [(c.state, c.exitCode) for c in listed if c.name == name], [(State.EXITED, -15)]
        )
        again = yield self.backend.stop(name, 5)
        self.assertEqual(again.exitCode, -15)
        self.assertEqual(self.actions(name), ["create", "start", "die", "stop"])

    @defer.inlineCallbacks
    def test_stopEscalates(self) -> Any:
        """A container ignoring TERM is killed after the timeout: -9 and a kill event."""
        name = self.name()
        yield self.run_(name, "sh", "-c", "trap '' TERM; sleep 1000 & wait; sleep 1000")
        yield sleep(0.3)
        started = reactor.seconds()  # type: ignore[attr-defined]
        stopped = yield self.backend.stop(name, 1)
        self.assertGreaterEqual(reactor.seconds() - started, 0.9)  # type: ignore[attr-defined]
        self.assertEqual(stopped.exitCode, -9)
        self.assertEqual(self.actions(name), ["create", "start", "kill", "die", "stop"])

    @defer.inlineCallbacks
    def test_stopSignalRememberedAcrossRestarts(self) -> Any:
        """
        A container pycm stopped still shows -15 (not the engine's 143)
        after a daemon restart on the same state directory; on another
        state directory, which never saw the stop, it shows 143.
        """
        name = self.name()
        stateDir = os.path.abspath(self.mktemp())
        os.makedirs(stateDir)
        first = engineBackend(reactor, stateDir=stateDir)
        yield first.open()
        try:
            yield first.create(ContainerSpec(name, command=("sleep", "1000")))
            yield first.start(name)
            stopped = yield first.stop(name, 10)
        finally:
            yield first.close()
        self.assertEqual(stopped.exitCode, -15)
        for directory, expected in [(stateDir, -15), (None, 143)]:
            again = engineBackend(reactor, stateDir=directory)
            yield again.open()
            try:
                seen = yield again.inspect(name)
            finally:
                yield again.close()
            self.assertEqual((seen.state, seen.exitCode), (State.EXITED, expected))

    @defer.inlineCallbacks
    def test_ownExitCodeAbove128(self) -> Any:
        """A program's own exit 143 (no signal sent) stays 143."""
        name = self.name()
        yield self.run_(name, "sh", "-c", "exit 143")
        container = yield self.backend.wait(name, "not-running")
        self.assertEqual(container.exitCode, 143)

    @defer.inlineCallbacks
    def test_oomKillIsSignal9(self) -> Any:
        """
        A container the kernel's OOM killer ends reports -9 everywhere: its
        die event, wait and inspect agree, and say it was OOM-killed
        (inspect's C{oom_killed}, the die's; not on Podman, which does not know).
        """
        name = self.name()
        yield self.run_(name, "sh", "-c", "head -c 400000000 /dev/zero | tail", memory=16 << 20)
        waited = yield self.backend.wait(name, "not-running")
        _, raw = yield self.backend.engine.request("GET", f"/containers/{name}/json")
        inspected = yield self.backend.inspect(name)
        yield eventually(lambda: "die" in self.actions(name))
        die = [e.exitCode for e in self.events if e.name == name and e.action == "die"]
        expected = -9
        if self.backend.engine.isPodman:
            # Podman 4.3 (conmon, cgroup v1) reports no OOM kill: neither
            # OOMKilled nor an oom event, so pycm sees a plain 137 (README).
            self.assertFalse(raw["State"]["OOMKilled"], raw["State"])
            expected = 137
        else:
            self.assertTrue(raw["State"]["OOMKilled"], raw["State"])
        self.assertEqual(
            (die, waited.exitCode, inspected.exitCode), ([expected], expected, expected)
        )
        oomKilled = [e.oomKilled for e in self.events if e.name == name and e.action == "die"]
        told = expected == -9 or None
        self.assertEqual((inspected.oomKilled, oomKilled), (told is True, [told]))

    @defer.inlineCallbacks
    def test_killWithSignal(self) -> Any:
        """kill --signal=HUP: a kill event, then die with -1; killing it again conflicts."""
        name = self.name()
        yield self.run_(name, "sleep", "1000")
        waiting = self.backend.wait(name, "next-exit")
        yield self.backend.kill(name, 1)
        container = yield waiting
        self.assertEqual((container.state, container.exitCode), (State.EXITED, -1))
        yield eventually(lambda: "die" in self.actions(name))
        self.assertEqual(self.actions(name), ["create", "start", "kill", "die"])
        yield self.assertFailure(self.backend.kill(name, 9), Conflict)

    @defer.inlineCallbacks
    def test_startFailure(self) -> Any:
        """A command that does not exist: BackendError with the engine's reason, then dead."""
        from pycm.errors import BackendError

        name = self.name()
        yield self.backend.create(ContainerSpec(name, command=("no-such-program",)))
        error = yield self.assertFailure(self.backend.start(name), BackendError)
        self.assertIn("no-such-program", str(error))
        container = yield self.backend.inspect(name)
        self.assertEqual(container.state, State.DEAD)
        self.assertIn("no-such-program", container.error)
        listed = yield self.backend.list()
        self.assertIn(name, [c.name for c in listed])

    @defer.inlineCallbacks
    def test_restartPolicy(self) -> Any:
        """on-failure:2 is handed to the engine; restart_count comes from it."""
        name = self.name()
        yield self.run_(name, "sh", "-c", "exit 1", restartPolicy=RestartPolicy("on-failure", 2))

        @defer.inlineCallbacks
        def done() -> Any:
            c = yield self.backend.inspect(name)
            return c if c.state == State.EXITED and c.restartCount == 2 else None

        container = yield eventually(done, timeout=30)
        self.assertEqual(container.exitCode, 1)
        self.assertEqual(str(container.restartPolicy), "on-failure:2")
        yield eventually(lambda: self.actions(name).count("die") == 3)

    @defer.inlineCallbacks
    def test_policyRestartAfterDaemonRestart(self) -> Any:
        """
        A daemon that starts again while the engine waits to restart a
        container by its policy tells that restart as start, restart: it
        learns the policy from the engine, not from its own memory.
        """
        name = self.name()
        yield self.run_(name, "sh", "-c", "exit 1", restartPolicy=RestartPolicy("always"))

        @defer.inlineCallbacks
        def backingOff() -> Any:
            _, raw = yield self.backend.engine.request("GET", f"/containers/{name}/json")
            if self.backend.engine.isPodman:
                # Podman restarts at once, with no back-off (and no
                # restarting state): the new daemon sees the next one.
                return raw["RestartCount"] >= 2
            # From the 5th restart on the engine waits 3.2 s and more.
            return raw["State"]["Restarting"] and raw["RestartCount"] >= 5

        yield eventually(backingOff, timeout=30, interval=0.05)
        yield self.backend.close()
        again = engineBackend(reactor)
        events: list[ContainerEvent] = []
        again.addObserver(events.append)
        yield again.open()
        self.addCleanup(again.close)
        yield eventually(lambda: again._events.connected)

        def fromFirstStart() -> list[str]:
            # Podman restarts with no back-off: a die may come first.
            actions = [e.action for e in events if e.name == name]
            return actions[actions.index("start") :] if "start" in actions else []

        yield eventually(lambda: len(fromFirstStart()) >= 2)
        self.assertEqual(fromFirstStart()[:2], ["start", "restart"])
        yield again.remove(name, True)

    @defer.inlineCallbacks
    def test_restart(self) -> Any:
        """restart: stop then start; events die, stop, start, restart; still running."""
        name = self.name()
        yield self.run_(name, "sleep", "1000")
        container = yield self.backend.restart(name, 5)
        self.assertEqual(container.state, State.RUNNING)
        self.assertIsNone(container.exitCode)
        self.assertEqual(self.actions(name), ["create", "start", "die", "stop", "start", "restart"])

    @defer.inlineCallbacks
    def test_logsDemultiplexed(self) -> Any:
        """stdout and stderr lines come apart, in order, with times; tail counts lines."""
        name = self.name()
        yield self.run_(name, "sh", "-c", "echo out1; echo err1 >&2; echo out2; printf tail")
        yield self.backend.wait(name, "not-running")
        lines = yield self.backend.logs(name, None)
        self.assertEqual(
            sorted((line.stream, line.line) for line in lines),
            [("stderr", "err1"), ("stdout", "out1"), ("stdout", "out2"), ("stdout", "tail")],
        )
        self.assertTrue(all(line.time > 1e9 for line in lines))
        last = yield self.backend.logs(name, 1)
        self.assertEqual(len(last), 1)
        none = yield self.backend.logs(name, 0)
        self.assertEqual(none, [])

    @defer.inlineCallbacks
    def test_follow(self) -> Any:
        """follow: the backlog, then each new line once, then it ends when the container stops."""
        name = self.name()
        yield self.run_(name, "sh", "-c", "echo a; echo b; sleep 1; echo c; echo d >&2; sleep 1000")
        yield eventually(lambda: self.backend.logs(name, None).addCallback(len))
        seen: list[LogLine] = []
        following = yield self.backend.follow(name, 10, seen.append)
        self.assertEqual([line.line for line in following.backlog], ["a", "b"])
        yield eventually(lambda: len(seen) >= 2)
        self.assertEqual(sorted(line.line for line in seen), ["c", "d"])
        self.assertNoResult(following.ended)
        yield self.backend.stop(name, 5)
        yield following.ended
        self.assertEqual(len(seen), 2)

    @defer.inlineCallbacks
    def test_followCancel(self) -> Any:
        """Cancelling a follow ends it and closes the stream."""
        name = self.name()
        yield self.run_(name, "sleep", "1000")
        following = yield self.backend.follow(name, None, lambda line: None)
        self.assertEqual(following.backlog, [])
        following.cancel()
        yield following.ended

    @defer.inlineCallbacks
    def test_waitConditions(self) -> Any:
        """wait running/next-exit/removed each fire when their condition holds."""
        name = self.name()
        yield self.backend.create(ContainerSpec(name, command=("sleep", "1000")))
        notRunning = yield self.backend.wait(name, "not-running")
        self.assertEqual(notRunning.state, State.CREATED)
        running = self.backend.wait(name, "running")
        self.assertNoResult(running)
        yield self.backend.start(name)
        container = yield running
        self.assertEqual(container.state, State.RUNNING)
        removed = self.backend.wait(name, "removed")
        yield self.backend.remove(name, True)
        gone = yield removed
        self.assertEqual(gone.name, name)
        self.assertEqual(gone.state, State.EXITED)
        yield self.assertFailure(self.backend.wait(name, "running"), NotFound)

    @defer.inlineCallbacks
    def test_waitRemovedAgreesWithStop(self) -> Any:
        """wait --for=removed reports the exit code stop reported (-15), not 143."""
        name = self.name()
        yield self.run_(name, "sleep", "1000")
        removed = self.backend.wait(name, "removed")
        stopped = yield self.backend.stop(name, 5)
        self.assertEqual(stopped.exitCode, -15)
        yield self.backend.remove(name, False)
        gone = yield removed
        self.assertEqual((gone.state, gone.exitCode), (State.EXITED, -15))

    @defer.inlineCallbacks
    def test_waitCancel(self) -> Any:
        """A cancelled wait fails with CancelledError and leaves nothing behind."""
        name = self.name()
        yield self.run_(name, "sleep", "1000")
        waiting = self.backend.wait(name, "not-running")
        yield sleep(0.2)
        waiting.cancel()
        yield self.assertFailure(waiting, defer.CancelledError)
        self.assertEqual(self.backend._journal.awaited, [])
        still = yield self.backend.inspect(name)
        self.assertEqual(still.state, State.RUNNING)

    @defer.inlineCallbacks
    def test_timedOutWaitsCloseTheirConnections(self) -> Any:
        """
        A wait that times out (the command's --timeout cancels it) or whose
        own request times out while the engine holds the body back closes
        its connection: no socket stays open until the container exits.
        """
        name = self.name()
        container = yield self.run_(name, "sleep", "1000")
        # The event stream's socket comes and goes on its own (Podman ends
        # the stream every few seconds under load, and it is opened again):
        # closed here, so that only the waits' sockets are counted.
        yield self.backend._events.stop()
        self.addCleanup(self.backend._events.start)
        yield self.backend.engine.close()
        before = openSockets()
        waits = [self.backend.wait(name, "not-running").addTimeout(0.5, reactor) for _ in range(20)]
        waits += [
            self.backend.engine.request(
                "POST",
                f"/containers/{container.id}/wait",
                {"condition": "not-running"},
                timeout=0.5,
            )
            for _ in range(20)
        ]
        results = yield defer.DeferredList(waits, consumeErrors=True)
        self.assertTrue(all(not ok for ok, _ in results))
        yield self.backend.engine.close()
        yield eventually(lambda: openSockets() <= before, timeout=5)
        still = yield self.backend.inspect(name)
        self.assertEqual(still.state, State.RUNNING)

    @defer.inlineCallbacks
    def test_closeEndsStreams(self) -> Any:
        """
        Closing the engine client ends the streams being read (a follow of
        a container that never exits): no connection is left open.
        """
        # A first line: Podman answers a log follow only with one.
        container = yield self.run_(self.name(), "sh", "-c", "echo up; sleep 1000")
        before = openSockets()
        stream = yield self.backend.engine.stream(
            "GET",
            f"/containers/{container.id}/logs",
            {"follow": True, "stdout": True, "stderr": True},
            lambda data: None,
        )
        self.assertFalse(stream.ended.called)
        yield self.backend.engine.close()
        yield stream.ended.addTimeout(5, reactor)
        yield eventually(lambda: openSockets() < before + 1, timeout=5)

    @defer.inlineCallbacks
    def test_concurrentEventsAllDelivered(self) -> Any:
        """
        Many containers run and removed at once: the engine's events come
        a little out of timestamp order, and every one still reaches the
        observers (none is dropped as old), so no operation waits for its
        event in vain.
        """
        names: list[str] = []
        # Four batches of 25 catch events dropped for their timestamp (the
        # bug this guards against) every time here, with half the peak
        # load on the engine of fewer, larger batches.
        for _ in range(4):
            batch = [self.name() for _ in range(25)]
            names += batch
            yield defer.gatherResults([self.run_(n, "sleep", "1000") for n in batch])
            yield defer.gatherResults([self.backend.remove(n, True) for n in batch])
        expected = ["create", "start", "kill", "die", "destroy"]
        wrong = {n: self.actions(n) for n in names if self.actions(n) != expected}
        self.assertEqual(wrong, {})

    @defer.inlineCallbacks
    def test_removeRunning(self) -> Any:
        """rm of a running container conflicts; --force kills it: kill, die, destroy."""
        name = self.name()
        yield self.run_(name, "sleep", "1000")
        yield self.assertFailure(self.backend.remove(name, False), Conflict)
        yield self.backend.remove(name, True)
        self.assertEqual(self.actions(name), ["create", "start", "kill", "die", "destroy"])
        yield self.assertFailure(self.backend.inspect(name), NotFound)

    @defer.inlineCallbacks
    def test_missingImage(self) -> Any:
        """An image the engine does not have is no_image (pull=never)."""
        error = yield self.assertFailure(
            self.backend.create(ContainerSpec(self.name(), image="pycm-test/no-such-image:1")),
            NoImage,
        )
        self.assertIn("pycm-test/no-such-image:1", str(error))

    @defer.inlineCallbacks
    def test_listCache(self) -> Any:
        """list follows state changes made behind its back, through the engine."""
        name = self.name()
        yield self.run_(name, "sleep", "1000")
        before = yield self.backend.list()
        self.assertEqual([c.state for c in before if c.name == name], [State.RUNNING])
        yield self.backend.engine.request("POST", f"/containers/{name}/kill", {"signal": "KILL"})
        yield eventually(
            lambda: self.backend.list().addCallback(
                lambda cs: (
                    [(c.state, c.exitCode) for c in cs if c.name == name] == [(State.EXITED, -9)]
                )
            )
        )


class PullTests(EngineTestCase):
    """Pulling from the loopback registry of C{.ci/docker-setup.sh}."""

    backendOptions = {"pull": "missing"}

    def setUp(self) -> Any:
        self.registry = os.environ.get("PYCM_TEST_REGISTRY", "")
        if not self.registry:
            requireEngine()
            if os.environ.get("PYCM_REQUIRE_DOCKER") == "1":
                raise AssertionError("PYCM_REQUIRE_DOCKER=1 but PYCM_TEST_REGISTRY is unset")
            from twisted.trial.unittest import SkipTest

            raise SkipTest("PYCM_TEST_REGISTRY is not set (see .ci/docker-setup.sh)")
        return super().setUp()

    @defer.inlineCallbacks
    def test_pullMissing(self) -> Any:
        """With pull=missing, an image only the registry has is pulled, with progress."""
        image = f"{self.registry}/{testImage()}"
        yield self.backend.engine.request("DELETE", f"/images/{image}").addErrback(lambda f: None)
        self.addCleanup(
            lambda: self.backend.engine.request("DELETE", f"/images/{image}", {"force": True})
        )
        progress: list[ProgressEvent] = []

        def observe(event: object) -> None:
            if isinstance(event, ProgressEvent):
                progress.append(event)

        self.backend.addObserver(observe)
        self.addCleanup(self.backend.removeObserver, observe)
        name = self.name()
        container = yield self.backend.create(ContainerSpec(name, image=image, command=("true",)))
        self.assertEqual(container.image, image)
        self.assertTrue(progress)
        self.assertEqual({(e.name, e.action) for e in progress}, {(name, "pull")})
        self.assertTrue(any(image in e.detail for e in progress), progress)
        if not self.backend.engine.isPodman:
            # Podman's progress has the layers' statuses only, no closing line.
            self.assertTrue(any("Status" in e.detail for e in progress), progress)

    @defer.inlineCallbacks
    def test_notFoundNotAboutTheImage(self) -> Any:
        """
        A 404 at start about a network (the engine checks it only then) is
        a backend error saying what is missing, not not_found.  (The same at
        create, which the engine is slow to produce: L{tests.test_docker_units}.)
        """
        backend = engineBackend(reactor, pull="missing", network="pycm-no-such-network")
        yield backend.open()
        self.addCleanup(backend.close)
        name = self.name()
        if self.backend.engine.isPodman:
            # Podman checks the network at create already.
            error = yield self.assertFailure(
                backend.create(ContainerSpec(name, command=("true",))), BackendError
            )
            self.assertEqual(type(error), BackendError)
            self.assertIn("pycm-no-such-network", str(error))
            return
        yield backend.create(ContainerSpec(name, command=("true",)))
        error = yield self.assertFailure(backend.start(name), BackendError)
        self.assertEqual(type(error), BackendError)
        self.assertIn("pycm-no-such-network", str(error))

    @defer.inlineCallbacks
    def test_pullRegistryUnreachable(self) -> Any:
        """A registry that cannot be reached is unavailable, not no_image."""
        port = reactor.listenTCP(0, Factory(), interface="127.0.0.1")  # type: ignore[attr-defined]
        address = port.getHost()
        yield port.stopListening()
        image = f"127.0.0.1:{address.port}/pycm-test/unreachable:1"
        error = yield self.assertFailure(
            self.backend.create(ContainerSpec(self.name(), image=image)), Unavailable
        )
        self.assertIn(image, str(error))
        self.assertIn("unreachable", str(error))

    @defer.inlineCallbacks
    def test_pullUnknown(self) -> Any:
        """An image the registry does not have either is no_image, with the reason."""
        image = f"{self.registry}/pycm-test/nothing-here:1"
        error = yield self.assertFailure(
            self.backend.create(ContainerSpec(self.name(), image=image)), NoImage
        )
        self.assertIn(image, str(error))
