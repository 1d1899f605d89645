"""
Tests for what C{--health-on-failure} does when a container turns
unhealthy, on the supervisor (the memory backend and a L{Clock}): the
actions, and the backoff of the restarts that follow.
"""

from __future__ import annotations

import os
from typing import Any

from pycm.backends.supervisor.restartpolicy import (
    INITIAL_BACKOFF,
    MAX_BACKOFF,
    nextHealthBackoff,
)
from pycm.health import HealthStatus, OnFailure
from pycm.model import RestartPolicy, State
from tests.test_supervisor import spec
from tests.test_supervisor_health import HealthTestCase, check


class OnFailureTests(HealthTestCase):
    """What C{--health-on-failure} does when a container turns unhealthy."""

    def test_none(self) -> None:
        """C{none}: it goes on running, and on being checked."""
        self.runChecked("web", "false", interval=1, retries=1)
        self.advance(5)
        c = self.inspect("web")
        self.assertEqual((c.state, len(c.health.log)), (State.RUNNING, 5))

    def test_stop(self) -> None:
        """
        C{stop}: a client's stop (C{stop} event), so the restart policy
        holds off.
        """
        self.runChecked(
            "web", "false", interval=1, retries=2, onFailure=OnFailure.STOP,
            restartPolicy=RestartPolicy("always"),
        )  # fmt: skip
        self.advance(10)
        c = self.inspect("web")
        self.assertEqual((c.state, c.exitCode, c.health.status), ("exited", -15, "unhealthy"))
        self.assertEqual(
            self.recorder.actions("web"),
            ["create", "start", "health_status", "die", "stop"],
        )

    def test_kill(self) -> None:
        """
        C{kill}: SIGKILL (a C{kill} event), not a client's stop: the
        restart policy restarts it (counted), and its health starts again.
        """
        self.runChecked(
            "web", "false", interval=1, retries=1, onFailure=OnFailure.KILL,
            restartPolicy=RestartPolicy("on-failure", 1),
        )  # fmt: skip
        self.advance(1)
        self.assertEqual(self.inspect("web").state, State.RESTARTING)
        self.advance(0.1)
        c = self.inspect("web")
        self.assertEqual((c.state, c.restartCount, c.health.status), ("running", 1, "starting"))
        self.advance(1)
        c = self.inspect("web")
        self.assertEqual((c.state, c.exitCode), ("exited", -9))
        self.assertEqual(
            self.recorder.actions("web"),
            ["create", "start", "health_status", "kill", "die", "start", "restart"]
            + ["health_status", "kill", "die"],
        )
        self.assertEqual(self.statuses("web"), ["unhealthy", "unhealthy"])

    def test_restart(self) -> None:
        """
        C{restart}: its stop signal, then, after the restart policy's first
        backoff, a new run (C{restart} emitted), counted in
        C{restart_count}, whatever the policy.
        """
        self.runChecked("web", "false", interval=1, retries=1, onFailure=OnFailure.RESTART)
        self.advance(1)
        self.assertEqual(self.inspect("web").state, State.RESTARTING)
        self.advance(INITIAL_BACKOFF)
        c = self.inspect("web")
        self.assertEqual((c.state, c.restartCount, c.health.status), ("running", 1, "starting"))
        self.assertEqual(
            self.recorder.actions("web"),
            ["create", "start", "health_status", "die", "start", "restart"],
        )
        self.assertEqual(self.store.load()[0]["restartCount"], 1)
        self.advance(1.5)
        self.assertEqual(self.inspect("web").restartCount, 2)
        self.done(self.backend.restart("web", 1))
        self.assertEqual(self.inspect("web").restartCount, 0)

    def test_restartBacksOff(self) -> None:
        """
        A check that always fails is a crash loop: each restart waits the
        restart policy's backoff (doubling, at most a minute), not one
        every interval; a client start ends the wait and the backoff.
        """
        self.runChecked("web", "false", interval=1, retries=1, onFailure=OnFailure.RESTART)
        starts: list[float] = []
        dies: list[float] = []
        self.backend.addObserver(lambda event: {"start": starts, "die": dies}.get(
            event.action, []).append(self.clock.seconds()))
        self.advance(16)
        # Was: a restart every interval (15 in 16 s).
        self.assertEqual(len(starts), 6)
        waits = [round(start - die, 3) for die, start in zip(dies, starts)]
        self.assertEqual(waits, [0.1, 0.2, 0.4, 0.8, 1.6, 3.2])
        self.advance(1000)
        waits = [round(start - die, 3) for die, start in zip(dies, starts)]
        self.assertEqual(max(waits), MAX_BACKOFF)
        self.assertEqual(self.inspect("web").state, State.RESTARTING)
        self.done(self.backend.start("web"))
        self.assertEqual(self.record("web").backoff, 0.0)

    def test_restartBacksOffLongRuns(self) -> None:
        """
        Runs that last 10 s or more before they turn unhealthy are a crash
        loop all the same: Docker's defaults (interval 30 s, retries 3, no
        start period: 90 s a run), or an interval of 10 s and one retry;
        each wait doubles.  (Was: 0.1 s every time, the backoff reset by
        the run's length.)
        """
        self.backsOffLongRuns(onFailure=OnFailure.RESTART)

    def test_killBacksOffLongRuns(self) -> None:
        """
        C{kill} then the restart policy's restart (C{always},
        C{on-failure}) backs off as C{restart} does: by health, not by the
        run's length.  (Was: 0.1 s every time, the crash's rule.)
        """
        self.backsOffLongRuns(onFailure=OnFailure.KILL, restartPolicy=RestartPolicy("always"))

    def test_killOnFailureBacksOffLongRuns(self) -> None:
        """The same with C{--restart=on-failure} (SIGKILL is a failure)."""
        self.backsOffLongRuns(
            onFailure=OnFailure.KILL, restartPolicy=RestartPolicy("on-failure")
        )

    def backsOffLongRuns(self, **kw: Any) -> None:
        """Two checks that always fail, in runs of 90 s and 10 s: the waits double."""
        self.runChecked("docker", "false", interval=30, retries=3, **kw)
        self.runChecked("tens", "false", interval=10, retries=1, **kw)
        docker, tens = self.restartWaits("docker"), self.restartWaits("tens")
        self.advance(547)
        self.assertEqual(docker, [0.1, 0.2, 0.4, 0.8, 1.6, 3.2])
        self.assertEqual(tens[:8], [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8])
        self.advance(1000)
        self.assertEqual(docker[-1], MAX_BACKOFF)
        self.assertEqual(tens[-1], MAX_BACKOFF)
        # The backoff each restart used is saved with it.
        saved = {data["name"]: data["backoff"] for data in self.store.load()}
        self.assertEqual(saved, {"docker": MAX_BACKOFF, "tens": MAX_BACKOFF})

    def test_restartAfterHealthyResetsBackoff(self) -> None:
        """
        A run that was healthy, however briefly, then turned unhealthy
        starts the backoff over (0.1 s, saved so); the next run that never
        is healthy doubles it again: by health, not by the run's length
        (here 2 s, under the 10 s that reset it after a crash).
        """
        self.afterHealthyResetsBackoff(onFailure=OnFailure.RESTART)

    def test_killAfterHealthyResetsBackoff(self) -> None:
        """
        The same for C{kill} and the restart policy's restart.  (Was: the
        crash's rule, 1.6 s then 3.2 s: runs under 10 s.)
        """
        self.afterHealthyResetsBackoff(
            onFailure=OnFailure.KILL, restartPolicy=RestartPolicy("unless-stopped")
        )

    def afterHealthyResetsBackoff(self, **kw: Any) -> None:
        """Runs unhealthy after 1 s, one healthy for 1 s first: 0.1 s after it."""
        path = self.mktemp()
        self.runChecked("web", f"test -e {path}", interval=1, retries=1, **kw)
        waits = self.restartWaits("web")
        self.advance(5.5)
        self.assertEqual(waits, [0.1, 0.2, 0.4, 0.8])
        self.assertEqual(self.inspect("web").state, State.RUNNING)
        with open(path, "w"):
            pass
        self.advance(1)
        self.assertEqual(self.health("web").status, HealthStatus.HEALTHY)
        os.remove(path)
        self.advance(1)
        self.assertEqual(self.inspect("web").state, State.RESTARTING)
        self.assertEqual(self.store.load()[0]["backoff"], INITIAL_BACKOFF)
        self.advance(INITIAL_BACKOFF + 1 + 0.2 + 1)
        # Was: 1.6 then 3.2 (runs of 2 s and 1 s).
        self.assertEqual(waits, [0.1, 0.2, 0.4, 0.8, 0.1, 0.2])

    def test_nextHealthBackoff(self) -> None:
        """
        After a failed health check's restart the backoff doubles (to at
        most a minute) unless the run was healthy, whatever its length.
        """
        self.assertEqual(nextHealthBackoff(0.0, False), INITIAL_BACKOFF)
        self.assertEqual(nextHealthBackoff(0.4, False), 0.8)
        self.assertEqual(nextHealthBackoff(MAX_BACKOFF, False), MAX_BACKOFF)
        self.assertEqual(nextHealthBackoff(MAX_BACKOFF, True), INITIAL_BACKOFF)
        self.assertEqual(nextHealthBackoff(0.0, True), INITIAL_BACKOFF)

    def unhealthyIgnoringTerm(self) -> None:
        """C{web}, which ignores SIGTERM, unhealthy after a second: being stopped."""
        self.run_(
            spec(
                "web", "ignore-term", stopTimeout=3,
                healthcheck=check("false", interval=1, retries=1, onFailure=OnFailure.RESTART),
            )
        )  # fmt: skip
        self.advance(1)
        self.assertEqual(self.inspect("web").state, State.STOPPING)

    def test_restartNotAfterAClientStop(self) -> None:
        """A client stop while the unhealthy run is being stopped: no restart."""
        self.unhealthyIgnoringTerm()
        d = self.backend.stop("web", 1)
        self.advance(5)
        self.assertEqual(self.done(d).state, State.EXITED)
        self.advance(100)
        self.assertEqual(self.inspect("web").state, State.EXITED)

    def test_restartSlowStop(self) -> None:
        """A restart waits for the run to stop (here: escalating to SIGKILL)."""
        self.unhealthyIgnoringTerm()
        self.advance(3 + INITIAL_BACKOFF)
        c = self.inspect("web")
        self.assertEqual((c.state, c.restartCount), (State.RUNNING, 1))
