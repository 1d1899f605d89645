"""
The backend conformance suite, part one: the interface, and a container's
life from C{create} to C{remove} (start, stop, restart, kill, exit codes).
"""

from __future__ import annotations

import signal as _signal
from collections.abc import Generator
from typing import Any

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.trial.unittest import SkipTest
from zope.interface.verify import verifyObject

from pycm.capabilities import ALL_OPTIONS, SCALING_OPTIONS, Capabilities
from pycm.errors import BackendError, BadRequest, Conflict, NoImage, NotFound
from pycm.health import HealthCheck, OnFailure
from pycm.interfaces import IContainerBackend
from pycm.model import (
    Action,
    ContainerSpec,
    RestartPolicy,
    State,
    WaitCondition,
)
from pycm.testing.conformance.base import BackendTestsBase


class BackendLifecycleTests(BackendTestsBase):
    """The behaviour of C{create}, C{start}, C{stop}, C{restart}, C{kill} and C{remove}."""

    # the interface

    def test_interface(self) -> None:
        """The backend provides L{IContainerBackend}."""
        self.assertTrue(verifyObject(IContainerBackend, self.backend))

    def test_attributes(self) -> None:
        """C{name}, C{capabilities} and C{defaultImage} have their types."""
        self.assertIsInstance(self.backend.name, str)
        self.assertTrue(self.backend.name)
        self.assertIsInstance(self.backend.capabilities, Capabilities)
        self.assertLessEqual(self.backend.capabilities.options, ALL_OPTIONS | SCALING_OPTIONS)
        self.assertIsInstance(self.backend.defaultImage, str)

    # create

    @inlineCallbacks
    def test_create(self) -> Generator[Deferred[Any], Any, None]:
        """C{create} makes a C{created} container and emits C{create}."""
        spec = self.spec("create", self.fixture.longCommand)
        container = yield self.create(spec)
        self.assertEqual(container.name, spec.name)
        self.assertEqual(container.state, State.CREATED)
        self.assertEqual(container.backend, self.backend.name)
        self.assertEqual(container.image, self.fixture.image or self.backend.defaultImage)
        self.assertEqual(container.command, self.fixture.longCommand)
        self.assertIsNone(container.pid)
        self.assertIsNone(container.exitCode)
        self.assertIsNone(container.started)
        self.assertEqual(container.restartCount, 0)
        self.assertTrue(container.id)
        inspected = yield self.settle(self.backend.inspect(spec.name))
        self.assertEqual(inspected.id, container.id)
        self.assertEqual(inspected.state, State.CREATED)
        listed = yield self.settle(self.backend.list())
        self.assertIn(spec.name, [c.name for c in listed])
        yield self.assertActions(spec.name, [Action.CREATE])

    @inlineCallbacks
    def test_createDefaults(self) -> Generator[Deferred[Any], Any, None]:
        """Without image and command, the backend's defaults fill in."""
        container = yield self.create(ContainerSpec(self.containerName("defaults")))
        self.assertEqual(container.image, self.backend.defaultImage)
        self.assertIsInstance(container.command, tuple)
        self.assertTrue(container.command)

    @inlineCallbacks
    def test_createConflict(self) -> Generator[Deferred[Any], Any, None]:
        """Creating a taken name fails with L{Conflict}, changing nothing."""
        spec = self.spec("conflict", self.fixture.longCommand)
        first = yield self.create(spec)
        error = yield self.assertFails(self.backend.create(spec), Conflict)
        self.assertEqual(str(error), f'container name "{spec.name}" is already in use')
        again = yield self.settle(self.backend.inspect(spec.name))
        self.assertEqual(again.id, first.id)
        yield self.assertActions(spec.name, [Action.CREATE])

    @inlineCallbacks
    def test_createNoImage(self) -> Generator[Deferred[Any], Any, None]:
        """An image the backend lacks fails with L{NoImage}."""
        name = self.containerName("noimage")
        spec = ContainerSpec(
            name, image=self.fixture.missingImage, command=self.fixture.longCommand
        )
        yield self.assertFails(self.backend.create(spec), NoImage)
        yield self.assertFails(self.backend.inspect(name), NotFound)

    @inlineCallbacks
    def test_createUnsupportedOption(self) -> Generator[Deferred[Any], Any, None]:
        """An option the backend cannot honour fails with L{BadRequest}."""
        missing = sorted((ALL_OPTIONS | SCALING_OPTIONS) - self.backend.capabilities.options)
        if not missing:
            raise SkipTest(f"{self.backend.name} supports every option")
        option = missing[0]
        values = {
            "env": {"A": "1"},
            "labels": {"a": "1"},
            "restartPolicy": RestartPolicy("always"),
            "stopTimeout": 1.0,
            "stopSignal": "SIGINT",
            "memory": 64 * 1024 * 1024,
            "cpus": 0.5,
            "workdir": "/tmp",
            "replicas": 2,
            "constraints": ("node.role==worker",),
            "healthcheck": HealthCheck("true", onFailure=OnFailure.RESTART),
            "user": "nobody",
        }
        field = ContainerSpec.OPTION_FIELDS[option]
        spec = self.spec("option", self.fixture.longCommand, **{field: values[field]})
        error = yield self.assertFails(self.backend.create(spec), BadRequest)
        self.assertIn(option, str(error))

    @inlineCallbacks
    def test_inspectDetails(self) -> Generator[Deferred[Any], Any, None]:
        """C{inspect} reports every detail given at creation."""
        options = self.backend.capabilities.options
        kw: dict[str, Any] = {}
        if "env" in options:
            kw["env"] = {"GREETING": "hello world"}
        if "label" in options:
            kw["labels"] = {"team": "infra"}
        if "restart" in options:
            kw["restartPolicy"] = RestartPolicy("on-failure", 3)
        if "stop-timeout" in options:
            kw["stopTimeout"] = 7.0
        if "stop-signal" in options:
            kw["stopSignal"] = "SIGINT"
        if "memory" in options:
            kw["memory"] = 64 * 1024 * 1024
        if "cpus" in options:
            kw["cpus"] = 0.5
        if "workdir" in options:
            kw["workdir"] = "/tmp"
        spec = self.spec("details", self.fixture.longCommand, **kw)
        yield self.create(spec)
        container = yield self.settle(self.backend.inspect(spec.name))
        self.assertEqual(dict(container.env), kw.get("env", {}))
        self.assertEqual(dict(container.labels), kw.get("labels", {}))
        self.assertEqual(container.restartPolicy, kw.get("restartPolicy", RestartPolicy()))
        self.assertEqual(container.stopTimeout, kw.get("stopTimeout", 10.0))
        self.assertEqual(container.stopSignal, kw.get("stopSignal", "SIGTERM"))
        self.assertEqual(container.memory, kw.get("memory"))
        self.assertEqual(container.cpus, kw.get("cpus"))
        self.assertEqual(container.workdir, kw.get("workdir"))
        self.assertIsNone(container.error)

    # missing containers

    @inlineCallbacks
    def test_notFound(self) -> Generator[Deferred[Any], Any, None]:
        """Every operation on a name nobody created fails with L{NotFound}."""
        name = self.containerName("missing")
        calls = [
            lambda: self.backend.start(name),
            lambda: self.backend.stop(name, None),
            lambda: self.backend.restart(name, None),
            lambda: self.backend.kill(name, int(_signal.SIGKILL)),
            lambda: self.backend.remove(name, False),
            lambda: self.backend.remove(name, True),
            lambda: self.backend.inspect(name),
            lambda: self.backend.logs(name, None),
            lambda: self.backend.follow(name, None, lambda line: None),
            lambda: self.backend.wait(name, WaitCondition.NOT_RUNNING),
        ]
        for call in calls:
            error = yield self.assertFails(call(), NotFound)
            self.assertIn(name, str(error))

    # start, stop, restart, kill

    @inlineCallbacks
    def test_start(self) -> Generator[Deferred[Any], Any, None]:
        """C{start} makes it C{running} and emits C{start}."""
        spec = self.spec("start", self.fixture.longCommand)
        container = yield self.runContainer(spec)
        self.assertEqual(container.state, State.RUNNING)
        self.assertIsNotNone(container.started)
        self.assertIsNone(container.exitCode)
        inspected = yield self.settle(self.backend.inspect(spec.name))
        self.assertEqual(inspected.state, State.RUNNING)
        yield self.assertActions(spec.name, [Action.CREATE, Action.START])

    @inlineCallbacks
    def test_startRunning(self) -> Generator[Deferred[Any], Any, None]:
        """Starting a running container is a no-op firing with it."""
        spec = self.spec("startrunning", self.fixture.longCommand)
        first = yield self.runContainer(spec)
        again = yield self.settle(self.backend.start(spec.name))
        self.assertEqual(again.state, State.RUNNING)
        self.assertEqual(again.started, first.started)
        self.assertEqual(again.pid, first.pid)
        yield self.assertActions(spec.name, [Action.CREATE, Action.START])

    @inlineCallbacks
    def test_stop(self) -> Generator[Deferred[Any], Any, None]:
        """
        C{stop} sends the stop signal and fires once it has exited;
        events C{die} (with the exit code) and C{stop}.
        """
        spec = self.spec("stop", self.fixture.longCommand)
        yield self.runContainer(spec)
        container = yield self.settle(self.backend.stop(spec.name, None))
        self.assertEqual(container.state, State.EXITED)
        self.assertIn(container.exitCode, self.fixture.signalledExitCodes(_signal.SIGTERM))
        self.assertIsNone(container.pid)
        self.assertIsNotNone(container.finished)
        yield self.assertActions(
            spec.name, [Action.CREATE, Action.START, Action.DIE, Action.STOP]
        )
        die = [e for e in self.recorder.events if e.action == Action.DIE and e.name == spec.name][0]
        self.assertEqual(die.exitCode, container.exitCode)

    @inlineCallbacks
    def test_stopNotRunning(self) -> Generator[Deferred[Any], Any, None]:
        """Stopping a container that is not running is a no-op."""
        spec = self.spec("stopcreated", self.fixture.longCommand)
        yield self.create(spec)
        container = yield self.settle(self.backend.stop(spec.name, None))
        self.assertEqual(container.state, State.CREATED)
        yield self.assertActions(spec.name, [Action.CREATE])

    @inlineCallbacks
    def test_stopEscalates(self) -> Generator[Deferred[Any], Any, None]:
        """A run ignoring the stop signal gets C{kill}ed after the timeout."""
        if self.fixture.ignoreTermCommand is None:
            raise SkipTest("the fixture has no command ignoring SIGTERM")
        spec = self.spec("escalate", self.fixture.ignoreTermCommand)
        yield self.runContainer(spec)
        yield self.sleep(0.5)  # let a real shell install its trap
        container = yield self.settle(self.backend.stop(spec.name, 1.0))
        self.assertEqual(container.state, State.EXITED)
        self.assertIn(container.exitCode, self.fixture.signalledExitCodes(_signal.SIGKILL))
        self.assertGreaterEqual(container.finished - container.started, 1.0)
        yield self.assertActions(
            spec.name,
            [Action.CREATE, Action.START, Action.KILL, Action.DIE, Action.STOP],
        )

    @inlineCallbacks
    def test_stopDefaultTimeout(self) -> Generator[Deferred[Any], Any, None]:
        """C{stop} with no timeout waits the container's stop timeout."""
        if self.fixture.ignoreTermCommand is None:
            raise SkipTest("the fixture has no command ignoring SIGTERM")
        if "stop-timeout" not in self.backend.capabilities.options:
            raise SkipTest("no --stop-timeout")
        spec = self.spec("stoptimeout", self.fixture.ignoreTermCommand, stopTimeout=1.0)
        yield self.runContainer(spec)
        yield self.sleep(0.5)
        container = yield self.settle(self.backend.stop(spec.name, None))
        self.assertIn(container.exitCode, self.fixture.signalledExitCodes(_signal.SIGKILL))
        self.assertLess(container.finished - container.started, 9.0)

    @inlineCallbacks
    def checkRestart(
        self, what: str, policy: RestartPolicy
    ) -> Generator[Deferred[Any], Any, None]:
        """
        C{restart} stops then starts, with one C{restart} event (the
        start is the client's, not a restart policy's); a stop after it
        shows that nothing more came of the restart.
        """
        spec = self.spec(what, self.fixture.longCommand, restartPolicy=policy)
        yield self.runContainer(spec)
        container = yield self.settle(self.backend.restart(spec.name, None))
        self.assertEqual(container.state, State.RUNNING)
        yield self.settle(self.backend.stop(spec.name, None))
        yield self.assertActions(
            spec.name,
            [
                Action.CREATE,
                Action.START,
                Action.DIE,
                Action.STOP,
                Action.START,
                Action.RESTART,
                Action.DIE,
                Action.STOP,
            ],
        )

    def test_restart(self) -> Deferred[None]:
        """C{restart} stops then starts; events end C{start}, C{restart}."""
        return self.checkRestart("restart", RestartPolicy())

    def test_restartWithPolicy(self) -> Deferred[None]:
        """C{restart} of a container with a restart policy is one restart."""
        return self.checkRestart("restartpolicy", RestartPolicy("always"))

    @inlineCallbacks
    def test_restartCreated(self) -> Generator[Deferred[Any], Any, None]:
        """C{restart} of a container that is not running starts it."""
        spec = self.spec("restartcreated", self.fixture.longCommand)
        yield self.create(spec)
        container = yield self.settle(self.backend.restart(spec.name, None))
        self.assertEqual(container.state, State.RUNNING)
        yield self.assertActions(spec.name, [Action.CREATE, Action.START, Action.RESTART])

    @inlineCallbacks
    def test_kill(self) -> Generator[Deferred[Any], Any, None]:
        """C{kill} sends the signal and emits C{kill}, then C{die}."""
        spec = self.spec("kill", self.fixture.longCommand)
        yield self.runContainer(spec)
        container = yield self.settle(self.backend.kill(spec.name, int(_signal.SIGKILL)))
        self.assertIn(container.state, (State.RUNNING, State.EXITED))
        container = yield self.waitFor(spec.name, WaitCondition.NOT_RUNNING)
        self.assertEqual(container.state, State.EXITED)
        self.assertIn(container.exitCode, self.fixture.signalledExitCodes(_signal.SIGKILL))
        yield self.assertActions(
            spec.name, [Action.CREATE, Action.START, Action.KILL, Action.DIE]
        )

    @inlineCallbacks
    def test_killNotRunning(self) -> Generator[Deferred[Any], Any, None]:
        """Killing a container that is not running fails with L{Conflict}."""
        spec = self.spec("killcreated", self.fixture.longCommand)
        yield self.create(spec)
        yield self.assertFails(self.backend.kill(spec.name, int(_signal.SIGKILL)), Conflict)

    @inlineCallbacks
    def test_exitCode(self) -> Generator[Deferred[Any], Any, None]:
        """A run's own exit status is its C{exit_code}; it emits C{die}."""
        spec = self.spec("exitcode", self.fixture.exitCommand(3))
        yield self.runContainer(spec)
        container = yield self.waitFor(spec.name, WaitCondition.NOT_RUNNING)
        self.assertEqual(container.state, State.EXITED)
        self.assertEqual(container.exitCode, 3)
        yield self.assertActions(spec.name, [Action.CREATE, Action.START, Action.DIE])
        die = [e for e in self.recorder.events if e.action == Action.DIE and e.name == spec.name][0]
        self.assertEqual(die.exitCode, 3)

    @inlineCallbacks
    def test_startExited(self) -> Generator[Deferred[Any], Any, None]:
        """An exited container can be started again."""
        spec = self.spec("startexited", self.fixture.exitCommand(0))
        yield self.runContainer(spec)
        yield self.waitFor(spec.name, WaitCondition.NOT_RUNNING)
        container = yield self.settle(self.backend.start(spec.name))
        self.assertIn(container.state, (State.RUNNING, State.EXITED))
        container = yield self.waitFor(spec.name, WaitCondition.NOT_RUNNING)
        self.assertEqual(container.exitCode, 0)
        yield self.eventsUntil(lambda _: self.count(spec.name, Action.DIE) == 2)
        self.assertEqual(self.count(spec.name, Action.START), 2)

    @inlineCallbacks
    def test_deadOnFailedStart(self) -> Generator[Deferred[Any], Any, None]:
        """
        A run that cannot be started fails C{start} with L{BackendError};
        the container is C{dead} with an C{error}, listed and removable.
        """
        if self.fixture.badCommand is None:
            raise SkipTest("the fixture has no command that cannot start")
        spec = self.spec("dead", self.fixture.badCommand)
        yield self.create(spec)
        yield self.assertFails(self.backend.start(spec.name), BackendError)
        container = yield self.settle(self.backend.inspect(spec.name))
        self.assertEqual(container.state, State.DEAD)
        self.assertTrue(container.error)
        listed = yield self.settle(self.backend.list())
        self.assertIn(spec.name, [c.name for c in listed])
        yield self.settle(self.backend.remove(spec.name, False))
        yield self.assertFails(self.backend.inspect(spec.name), NotFound)

    # remove

    @inlineCallbacks
    def test_remove(self) -> Generator[Deferred[Any], Any, None]:
        """C{remove} forgets a stopped container and emits C{destroy}."""
        spec = self.spec("remove", self.fixture.longCommand)
        yield self.create(spec)
        result = yield self.settle(self.backend.remove(spec.name, False))
        self.assertIsNone(result)
        yield self.assertFails(self.backend.inspect(spec.name), NotFound)
        listed = yield self.settle(self.backend.list())
        self.assertNotIn(spec.name, [c.name for c in listed])
        yield self.assertActions(spec.name, [Action.CREATE, Action.DESTROY])

    @inlineCallbacks
    def test_removeRunning(self) -> Generator[Deferred[Any], Any, None]:
        """Removing a running container without force is a L{Conflict}."""
        spec = self.spec("removerunning", self.fixture.longCommand)
        yield self.runContainer(spec)
        yield self.assertFails(self.backend.remove(spec.name, False), Conflict)
        container = yield self.settle(self.backend.inspect(spec.name))
        self.assertEqual(container.state, State.RUNNING)

    @inlineCallbacks
    def test_removeForce(self) -> Generator[Deferred[Any], Any, None]:
        """C{remove --force} kills a running container first."""
        spec = self.spec("removeforce", self.fixture.longCommand)
        yield self.runContainer(spec)
        yield self.settle(self.backend.remove(spec.name, True))
        yield self.assertFails(self.backend.inspect(spec.name), NotFound)
        yield self.assertActions(
            spec.name,
            [Action.CREATE, Action.START, Action.KILL, Action.DIE, Action.DESTROY],
        )

    @inlineCallbacks
    def test_removeThenCreate(self) -> Generator[Deferred[Any], Any, None]:
        """A removed container's name can be used again, with a new id."""
        spec = self.spec("reuse", self.fixture.longCommand)
        first = yield self.create(spec)
        yield self.settle(self.backend.remove(spec.name, False))
        second = yield self.create(spec)
        self.assertNotEqual(first.id, second.id)
