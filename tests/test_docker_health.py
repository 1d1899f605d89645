"""
Health checks and C{--user} on the Docker backend: the engine's JSON both
ways (L{pycm.backends.docker.health}), the fake engine's checks
(L{pycm.testing.dockerhealth}), and the backend on the fake engine (its
create body, inspect, list, health events and C{wait --for=healthy}).
The engine suite (L{pycm.testing.enginesuite}) holds the fake's checks to
dockerd's.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from pycm.backends.docker.backend import CAPABILITIES, makeBackend
from pycm.backends.docker.containers import EngineView
from pycm.backends.docker.engine import EngineError
from pycm.backends.docker.health import (
    healthAction,
    healthcheckBody,
    healthcheckFrom,
    healthFrom,
)
from pycm.backends.docker.journal import EventJournal
from pycm.backends.docker.podman import PodmanHealthChecks
from pycm.backends.docker.telling import EventTeller
from pycm.backends.docker.translate import MANAGED_LABEL, containerFromInspect, createBody
from pycm.errors import BackendError, BadRequest
from pycm.health import HealthCheck, HealthStatus
from pycm.model import Action, ContainerEvent, ContainerSpec, WaitCondition
from pycm.testing import advanceClock, settleClock
from pycm.testing.dockerengine import FakeDockerEngine
from pycm.testing.dockerhealth import runShell
from pycm.testing.dockerstate import FakeContainer
from tests.stubengine import StubEngine

CHECK = HealthCheck("test -e /tmp/ok", interval=1.0, timeout=5.0, retries=2)


class HealthJSONTests(SynchronousTestCase):
    """The engine's C{Healthcheck}, C{State.Health} and health events, both ways."""

    def test_body(self) -> None:
        """A check is C{CMD-SHELL} with times in nanoseconds; none is C{NONE}."""
        self.assertEqual(
            healthcheckBody(HealthCheck("pg_isready", 2.0, 0.5, 4, 10.0)),
            {
                "Test": ["CMD-SHELL", "pg_isready"],
                "Interval": 2 * 10**9,
                "Timeout": 5 * 10**8,
                "Retries": 4,
                "StartPeriod": 10 * 10**9,
            },
        )
        self.assertEqual(healthcheckBody(HealthCheck(None)), {"Test": ["NONE"]})

    def test_createBody(self) -> None:
        """C{createBody} sends C{User} and C{Healthcheck} only when given."""
        spec = ContainerSpec(name="a", user="app:staff", healthcheck=CHECK)
        body = createBody(spec, "busybox")
        self.assertEqual(body["User"], "app:staff")
        self.assertEqual(body["Healthcheck"], healthcheckBody(CHECK))
        body = createBody(ContainerSpec(name="a"), "busybox")
        self.assertNotIn("User", body)
        self.assertNotIn("Healthcheck", body)

    def test_checkBack(self) -> None:
        """
        The inspect's check reads back as given; zero fields are dockerd's
        defaults; C{CMD} is one quoted line; C{NONE} is turned off; an
        empty or unknown test is none.
        """
        self.assertEqual(healthcheckFrom(healthcheckBody(CHECK)), CHECK)
        self.assertEqual(
            healthcheckFrom({"Test": ["CMD-SHELL", "true"]}), HealthCheck("true", 30, 30, 3, 0)
        )
        self.assertEqual(
            healthcheckFrom({"Test": ["CMD", "curl", "-f", "http://x/a b"]}).cmd,  # type: ignore[union-attr]
            "curl -f 'http://x/a b'",
        )
        self.assertEqual(healthcheckFrom({"Test": ["NONE"]}), HealthCheck(None))
        for config in (None, {}, {"Test": []}, {"Test": ["WHAT", "x"]}, "junk"):
            self.assertIsNone(healthcheckFrom(config), config)

    def test_healthBack(self) -> None:
        """
        C{State.Health} reads back with its log (output capped at 4 KiB);
        a container with a check and no C{Health} yet (never started) is
        C{starting}; one with no check, or a turned-off one, has none.
        """
        state = {
            "Health": {
                "Status": "unhealthy",
                "FailingStreak": 3,
                "Log": [
                    {
                        "Start": "2026-12-01T00:00:01.5Z",
                        "End": "2026-12-01T00:00:02Z",
                        "ExitCode": 1,
                        "Output": "x" * 5000,
                    }
                ],
            }
        }
        health = healthFrom(state, CHECK)
        assert health is not None
        self.assertEqual((health.status, health.failingStreak), ("unhealthy", 3))
        (result,) = health.log
        self.assertEqual((result.exitCode, len(result.output)), (1, 4096))
        self.assertEqual(result.end - result.start, 0.5)
        self.assertEqual(healthFrom({}, CHECK).toJSON(), {  # type: ignore[union-attr]
            "status": "starting", "failing_streak": 0, "log": []
        })  # fmt: skip
        self.assertIsNone(healthFrom(state, None))
        self.assertIsNone(healthFrom(state, HealthCheck(None)))

    def test_lastHealthOfAStoppedRun(self) -> None:
        """
        dockerd's C{unhealthy} of a stopped container whose streak is short
        of C{retries} reads as its run left it: C{healthy} if one of the
        run's checks passed, else C{starting}; a true C{unhealthy} (the
        streak reached C{retries}), or a running one's, stays.
        """

        def state(streak: int, codes: list[int], running: bool = False) -> dict[str, Any]:
            log = [
                {"Start": f"2026-12-01T00:00:0{i}Z", "End": f"2026-12-01T00:00:0{i}Z",
                 "ExitCode": code, "Output": ""}
                for i, code in enumerate(codes, 1)
            ]  # fmt: skip
            return {
                "Running": running,
                "StartedAt": "2026-12-01T00:00:02Z",
                "Health": {"Status": "unhealthy", "FailingStreak": streak, "Log": log},
            }

        def status(*args: Any, **kw: Any) -> str:
            return healthFrom(state(*args, **kw), CHECK).status  # type: ignore[union-attr]

        self.assertEqual(status(1, [0, 0, 1]), "healthy")
        # The pass was the run before's.
        self.assertEqual(status(1, [0, 1]), "starting")
        self.assertEqual(status(2, [0, 1, 1]), "unhealthy")
        self.assertEqual(status(1, [0, 0, 1], running=True), "unhealthy")

    def test_inspect(self) -> None:
        """C{containerFromInspect} has the health, the check and the user (none if empty)."""
        data = {
            "Name": "/a",
            "Config": {"Healthcheck": healthcheckBody(CHECK), "User": "1000"},
            "State": {"Status": "running", "Health": {"Status": "healthy", "Log": []}},
        }
        container = containerFromInspect(data)
        self.assertEqual(container.user, "1000")
        self.assertEqual(container.healthcheck, CHECK)
        self.assertEqual(container.health.status, "healthy")  # type: ignore[union-attr]
        self.assertEqual(container.detail()["healthcheck"]["cmd"], "test -e /tmp/ok")
        bare = containerFromInspect({"Name": "/a", "Config": {"User": ""}, "State": {}})
        self.assertEqual((bare.user, bare.health, bare.healthcheck), (None, None, None))
        self.assertIsNone(bare.summary()["health"])

    def test_action(self) -> None:
        """
        dockerd's C{health_status: S} and Podman's C{HealthStatus} (or
        attribute) give S; C{starting} and other actions None.
        """
        self.assertEqual(healthAction({"Action": "health_status: healthy"}), "healthy")
        attributes = {"health_status": "unhealthy"}
        podman = {"Action": "health_status", "Actor": {"Attributes": attributes}}
        self.assertEqual(healthAction(podman), "unhealthy")
        self.assertEqual(
            healthAction({"Action": "health_status", "HealthStatus": "healthy"}), "healthy"
        )
        for action in ("start", "exec_start: /bin/sh -c x", "health_status: bogus",
                       "health_status: starting"):  # fmt: skip
            self.assertIsNone(healthAction({"Action": action}), action)

    def test_capabilities(self) -> None:
        """The backend honours --user and the health options but --health-on-failure."""
        self.assertIn("user", CAPABILITIES.options)
        self.assertIn("health-cmd", CAPABILITIES.options)
        self.assertIn("no-healthcheck", CAPABILITIES.options)
        self.assertNotIn("health-on-failure", CAPABILITIES.options)
        spec = ContainerSpec(name="a", healthcheck=HealthCheck("true", onFailure="restart"))
        with self.assertRaisesRegex(BadRequest, "--health-on-failure"):
            CAPABILITIES.refuseUnsupported("docker", spec)


class _Podman(StubEngine):
    isPodman = True


class _FakePodman(FakeDockerEngine):
    """The fake engine as a Podman service with C{cgroupDriver}: only C{/info} differs."""

    isPodman = True
    cgroupDriver = "cgroupfs"

    def request(self, method: str, path: str, *args: Any, **kw: Any) -> defer.Deferred[Any]:
        if (method, path) == ("GET", "/info"):
            return self.later(defer.succeed((200, {"CgroupDriver": self.cgroupDriver})))
        return super().request(method, path, *args, **kw)


class _InfoEngine(StubEngine):
    """Answers C{GET /info} when told to, counting the requests."""

    isPodman = True

    def __init__(self) -> None:
        self.asked: list[defer.Deferred[Any]] = []

    def request(self, method: str, path: str, *args: Any, **kw: Any) -> defer.Deferred[Any]:
        assert (method, path) == ("GET", "/info")
        d: defer.Deferred[Any] = defer.Deferred()
        self.asked.append(d)
        return d


class PodmanHealthChecksTests(SynchronousTestCase):
    """L{PodmanHealthChecks} asks once at a time, and remembers only an answer."""

    def test_askedOnceRemembered(self) -> None:
        """Two at once share one request; the answer is kept (no second request)."""
        engine = _InfoEngine()
        checks = PodmanHealthChecks(engine)
        first, second = checks.run(), checks.run()
        self.assertEqual(len(engine.asked), 1)
        engine.asked[0].callback((200, {"CgroupDriver": "cgroupfs"}))
        self.assertEqual([self.successResultOf(d) for d in (first, second)], [False, False])
        self.assertFalse(self.successResultOf(checks.run()))
        self.assertEqual(len(engine.asked), 1)

    def test_failureNotRemembered(self) -> None:
        """An engine that cannot be asked counts as running checks, and is asked again."""
        engine = _InfoEngine()
        checks = PodmanHealthChecks(engine)
        d = checks.run()
        engine.asked[0].errback(EngineError(500, "boom"))
        self.assertTrue(self.successResultOf(d))
        checks.run()
        self.assertEqual(len(engine.asked), 2)
        engine.asked[1].callback((200, {"CgroupDriver": "systemd"}))
        self.assertIs(checks.known, True)


class PodmanHealthTests(SynchronousTestCase):
    """A Podman service with no systemd runs no health checks: they are refused."""

    def backend(self, driver: str) -> Any:
        clock = Clock()
        clock.advance(1_700_000_000)
        engine = _FakePodman(clock)
        engine.cgroupDriver = driver
        backend = makeBackend(clock, None, {"network": "none"}, engine)
        backend.open()
        advanceClock(clock, 1.0)
        self.addCleanup(lambda: settleClock(clock, backend.close()))
        return backend, clock

    def test_cgroupfs(self) -> None:
        """
        With C{cgroupfs} (no systemd), C{info} lists no health option and a
        create with a check is refused naming it; C{--user} still goes.
        """
        backend, clock = self.backend("cgroupfs")
        self.assertNotIn("health-cmd", backend.capabilities.options)
        self.assertIn("user", backend.capabilities.options)
        spec = ContainerSpec(name="a", command=("sleep", "1"), healthcheck=CHECK)
        failure = self.failureResultOf(settleClock(clock, backend.create(spec)), BadRequest)
        self.assertIn("--health-cmd", str(failure.value))
        created = self.successResultOf(
            settleClock(clock, backend.create(ContainerSpec(name="b", user="1000")))
        )
        self.assertEqual(created.user, "1000")

    def test_systemd(self) -> None:
        """With C{systemd} the health options are honoured."""
        backend, clock = self.backend("systemd")
        self.assertIn("health-cmd", backend.capabilities.options)
        spec = ContainerSpec(name="a", command=("sleep", "1"), healthcheck=CHECK)
        self.assertEqual(
            self.successResultOf(settleClock(clock, backend.create(spec))).healthcheck, CHECK
        )


class HealthEventTests(SynchronousTestCase):
    """L{EventTeller} tells health events once per change of a run's health."""

    def event(self, action: str, nano: int, **attributes: str) -> dict[str, Any]:
        return {
            "Action": action,
            "timeNano": nano,
            "Actor": {"ID": "c1", "Attributes": {"name": "a", MANAGED_LABEL: "true", **attributes}},
        }

    def test_oncePerChange(self) -> None:
        """
        A repeated status (Podman tells each check's) is told once; a new
        run (start) tells its first status again; no health event is
        another container's.
        """
        journal = EventJournal(Clock(), lambda: True, 3.0)
        told: list[ContainerEvent] = []
        journal.observers.append(told.append)  # type: ignore[arg-type]
        teller = EventTeller(_Podman(), EngineView(), journal)
        for nano, (action, attrs) in enumerate(
            [
                ("health_status", {"health_status": "healthy"}),
                ("health_status", {"health_status": "healthy"}),
                ("health_status: unhealthy", {}),
                ("health_status: unhealthy", {}),
                ("health_status: healthy", {}),
            ],
            1,
        ):
            teller.received(self.event(action, nano * 10**9, **attrs))
        teller.received(self.event("start", 6 * 10**9))
        teller.received(self.event("health_status: healthy", 7 * 10**9))
        health = [(e.action, e.status, e.time) for e in told if e.action == Action.HEALTH_STATUS]
        self.assertEqual(
            health,
            [
                ("health_status", "healthy", 1.0),
                ("health_status", "unhealthy", 3.0),
                ("health_status", "healthy", 5.0),
                ("health_status", "healthy", 7.0),
            ],
        )
        self.assertEqual(told[0].toJSON()["status"], "healthy")


class FakeShellTests(SynchronousTestCase):
    """The fake engine's tiny shell (L{runShell})."""

    def test_commands(self) -> None:
        """It knows true, false, exit, test, [, touch, rm, echo, sleep, && and ;."""
        container = FakeContainer("c", "a", "busybox", {}, {}, 0)
        self.assertEqual(runShell(container, "test -e /ok")[0], 1)
        self.assertEqual(runShell(container, "touch /ok && [ -f /ok ]")[0], 0)
        self.assertEqual(runShell(container, "exit 3")[0], 3)
        self.assertEqual(runShell(container, "echo hi && false"), (1, "hi\n", 0.0))
        self.assertEqual(runShell(container, "sleep 2"), (0, "", 2.0))
        self.assertEqual(runShell(container, "rm /ok")[0], 0)
        self.assertEqual(runShell(container, "rm /ok")[0], 1)
        self.assertEqual(runShell(container, "pg_isready")[0], 127)
        self.assertEqual(runShell(container, "false; echo x; exit 4; true"), (4, "x\n", 0.0))


class DockerHealthTests(SynchronousTestCase):
    """The Docker backend's health checks and --user, on the fake engine."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.engine = FakeDockerEngine(self.clock)
        self.backend = makeBackend(self.clock, None, {"network": "none"}, self.engine)
        self.events: list[Any] = []
        self.backend.addObserver(self.events.append)
        self.backend.open()
        self.clock.advance(0)
        self.addCleanup(lambda: settleClock(self.clock, self.backend.close()))

    def settle(self, d: defer.Deferred[Any]) -> Any:
        return self.successResultOf(settleClock(self.clock, d))

    def run_(self, check: HealthCheck | None = CHECK, **fields: Any) -> FakeContainer:
        spec = ContainerSpec(name="a", command=("sleep", "infinity"), healthcheck=check, **fields)
        self.settle(self.backend.create(spec))
        self.settle(self.backend.start("a"))
        (container,) = self.engine.containers.values()
        return container

    def told(self) -> list[str | None]:
        return [e.status for e in self.events if getattr(e, "action", None) == "health_status"]

    def test_reachesTheEngine(self) -> None:
        """The check and the user are in the engine's config as dockerd keeps them."""
        container = self.run_(user="1000:1000")
        self.assertEqual(container.config["User"], "1000:1000")
        self.assertEqual(
            container.config["Healthcheck"],
            {"Test": ["CMD-SHELL", CHECK.cmd], "Interval": 10**9, "Timeout": 5 * 10**9,
             "Retries": 2},
        )  # fmt: skip
        inspected = self.settle(self.backend.inspect("a"))
        self.assertEqual((inspected.user, inspected.healthcheck), ("1000:1000", CHECK))

    def test_healthInInspectAndList(self) -> None:
        """
        C{inspect} and C{list} show the health as it is now: C{starting},
        then (the file made) C{healthy} with the check's result, a list
        right after a check not served stale from its cache.
        """
        container = self.run_()
        self.assertEqual(self.settle(self.backend.inspect("a")).health.status, "starting")
        (listed,) = self.settle(self.backend.list())
        self.assertEqual(listed.summary()["health"]["status"], "starting")
        container.files.add("/tmp/ok")
        advanceClock(self.clock, 1.0)
        (listed,) = self.settle(self.backend.list())
        self.assertEqual(listed.health.status, "healthy")
        advanceClock(self.clock, 1.0)
        (listed,) = self.settle(self.backend.list())
        self.assertEqual(len(listed.health.log), 2)
        self.assertEqual(listed.health.log[-1].exitCode, 0)

    def test_eventsOncePerChange(self) -> None:
        """
        Each change is one C{health_status} event with its status, none
        for the checks between, none doubled by a reconnection of the
        event stream (the engine replays the last seconds).
        """
        container = self.run_()
        container.files.add("/tmp/ok")
        advanceClock(self.clock, 3.0)
        container.files.discard("/tmp/ok")
        advanceClock(self.clock, 3.0)
        for feed in list(self.engine._eventFeeds):
            feed.end()
        advanceClock(self.clock, 1.0)
        self.assertTrue(self.backend._events.connected)
        self.assertEqual(self.told(), ["healthy", "unhealthy"])

    def test_noHealthWithoutCheck(self) -> None:
        """With no check, or --no-healthcheck, the health is null and wait is BadRequest."""
        self.run_(check=HealthCheck(None))
        container = self.settle(self.backend.inspect("a"))
        self.assertIsNone(container.health)
        self.assertEqual(container.healthcheck, HealthCheck(None))
        failure = self.failureResultOf(
            settleClock(self.clock, self.backend.wait("a", WaitCondition.HEALTHY))
        )
        self.assertIsInstance(failure.value, BadRequest)
        self.assertIn("no health check", str(failure.value))

    def test_waitHealthy(self) -> None:
        """C{wait --for=healthy} fires once a check passes, with the container then."""
        container = self.run_(check=HealthCheck("test -e /tmp/ok", interval=1.0, retries=5))
        d = self.backend.wait("a", WaitCondition.HEALTHY)
        advanceClock(self.clock, 2.5)
        self.assertNoResult(d)
        container.files.add("/tmp/ok")
        advanceClock(self.clock, 1.0)
        self.assertEqual(self.successResultOf(d).health.status, HealthStatus.HEALTHY)
        # At once when healthy already.
        self.assertEqual(self.settle(self.backend.wait("a", "healthy")).health.status, "healthy")

    def test_waitHealthyFailsUnhealthy(self) -> None:
        """C{wait --for=healthy} fails saying so once it turned unhealthy first."""
        self.run_()
        d = self.backend.wait("a", WaitCondition.HEALTHY)
        advanceClock(self.clock, 2.5)
        failure = self.failureResultOf(d, BackendError)
        self.assertIn("unhealthy", str(failure.value))
        self.assertIn("2 times in a row", str(failure.value))

    def test_waitHealthyFailsOnExit(self) -> None:
        """C{wait --for=healthy} fails saying so once it exited with no restart."""
        self.run_(check=HealthCheck("true", interval=10.0))
        d = self.backend.wait("a", WaitCondition.HEALTHY)
        self.settle(self.backend.kill("a", 9))
        failure = self.failureResultOf(settleClock(self.clock, d), BackendError)
        self.assertIn("exited with code", str(failure.value))
        self.assertIn("before it was healthy", str(failure.value))

    def test_waitUnhealthyAcrossRestarts(self) -> None:
        """
        C{wait --for=unhealthy} is not met by the stop (a stopped container
        keeps its last health, C{healthy}, though dockerd says
        C{unhealthy}) and keeps waiting across a restart until a check
        fails.
        """
        container = self.run_()
        container.files.add("/tmp/ok")
        advanceClock(self.clock, 1.0)
        d = self.backend.wait("a", WaitCondition.UNHEALTHY)
        self.settle(self.backend.stop("a", 1))
        self.assertEqual(container.health.status, "unhealthy")  # type: ignore[union-attr]
        self.assertEqual(self.settle(self.backend.inspect("a")).health.status, "healthy")
        self.assertNoResult(d)
        self.settle(self.backend.start("a"))
        self.assertNoResult(d)
        container.files.discard("/tmp/ok")
        advanceClock(self.clock, 2.5)
        self.assertEqual(self.successResultOf(d).health.status, "unhealthy")

    def test_waitHealthyAcrossAClientRestart(self) -> None:
        """C{wait --for=healthy} is not ended by a client's restart (its exit)."""
        container = self.run_(check=HealthCheck("test -e /tmp/ok", interval=1.0, retries=5))
        d = self.backend.wait("a", WaitCondition.HEALTHY)
        self.settle(self.backend.restart("a", 1))
        advanceClock(self.clock, 1.5)
        self.assertNoResult(d)
        container.files.add("/tmp/ok")
        advanceClock(self.clock, 1.0)
        self.assertEqual(self.successResultOf(d).health.status, "healthy")

    def test_waitHealthySeesARestartsExit(self) -> None:
        """
        The exit of a client's restart (dockerd shows the container
        C{exited} between its stop and its start; the fake engine, never)
        does not fail C{wait --for=healthy}.
        """
        container = self.run_(check=HealthCheck("test -e /tmp/ok", interval=1.0, retries=5))
        d = self.backend.wait("a", WaitCondition.HEALTHY)
        inFlight = self.backend._view.inFlight
        inFlight.beginStop("a", self.clock.seconds(), restart=True)
        self.engine.request("POST", "/containers/a/kill", {"signal": "9"})
        advanceClock(self.clock, 1.5)
        self.assertNoResult(d)
        inFlight.endStop("a", restart=True)
        self.settle(self.backend.start("a"))
        container.files.add("/tmp/ok")
        advanceClock(self.clock, 1.0)
        self.assertEqual(self.successResultOf(d).health.status, "healthy")

    def test_waitUnhealthyOfAStoppedOne(self) -> None:
        """C{wait --for=unhealthy} answers at once when the last health was unhealthy."""
        self.run_()
        advanceClock(self.clock, 2.5)
        self.settle(self.backend.stop("a", 1))
        container = self.settle(self.backend.wait("a", WaitCondition.UNHEALTHY))
        self.assertEqual((container.state, container.health.status), ("exited", "unhealthy"))

    def test_waitCancelled(self) -> None:
        """A cancelled health wait leaves nothing waiting in the journal."""
        self.run_()
        d = self.backend.wait("a", WaitCondition.HEALTHY)
        advanceClock(self.clock, 0.5)
        d.cancel()
        self.failureResultOf(d, defer.CancelledError)
        self.assertEqual(self.backend._journal.awaited, [])

    def test_startPeriodAndTimeout(self) -> None:
        """
        Failures in the start period do not count; a check slower than
        its timeout is exit -1 saying so.
        """
        check = HealthCheck("sleep 3", interval=1.0, timeout=2.0, retries=1, startPeriod=5.0)
        self.run_(check=check)
        advanceClock(self.clock, 4.0)
        health = self.settle(self.backend.inspect("a")).health
        self.assertEqual((health.status, health.failingStreak), ("starting", 0))
        self.assertEqual(health.log[0].exitCode, -1)
        self.assertIn("exceeded timeout", health.log[0].output)
        advanceClock(self.clock, 6.0)
        health = self.settle(self.backend.inspect("a")).health
        self.assertEqual(health.status, "unhealthy")
