"""
Tests for L{pycm.backends.supervisor.backend}: random sequences of requests and
exits (hypothesis) against a model of the lifecycle.
"""

from __future__ import annotations

import signal
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from pycm.backends.memory import MemoryBackend, MemoryRecordStore
from pycm.backends.supervisor.restartpolicy import flagsReadAtOpen
from pycm.errors import BackendError, BadRequest, Conflict, NotFound
from pycm.health import HealthCheck, OnFailure
from pycm.model import (
    RestartPolicy,
    State,
    WaitCondition,
)
from pycm.testing import advanceClock
from tests.test_supervisor import spec

#: The health checks the state machine's containers have.
HEALTH_CHECKS = [
    None,
    HealthCheck(None),
    HealthCheck("true", interval=1),
    HealthCheck("false", interval=0.5, retries=2, onFailure=OnFailure.RESTART),
    HealthCheck("false", interval=0.5, retries=1, onFailure=OnFailure.STOP),
    HealthCheck("exit 2", interval=0.5, retries=1, startPeriod=1, onFailure=OnFailure.KILL),
    HealthCheck("sleep 3", interval=1, timeout=2),
]


class SupervisorStateMachine(RuleBasedStateMachine):
    """
    Random sequences of operations and clock advances on a memory backend:
    the engine's invariants hold after each step, and every operation's
    Deferred eventually fires with a result or an expected error.
    """

    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock()
        self.store = MemoryRecordStore()
        self.backend = MemoryBackend(self.clock, recordStore=self.store)
        self.backend.open()
        self.names: set[str] = set()
        self.pending: list[Deferred[Any]] = []
        self.unexpected: list[Any] = []

    def track(self, d: Deferred[Any]) -> None:
        def check(f: Any) -> None:
            if not f.check(NotFound, Conflict, BackendError):
                self.unexpected.append(f)

        d.addErrback(check)
        self.pending.append(d)

    names_ = st.sampled_from(["a", "b", "c"])

    @rule(
        name=names_,
        command=st.sampled_from(
            [("sleep", "infinity"), ("exit", "0"), ("exit", "3"), ("sleep", "2"),
             ("ignore-term",), ("unstartable",), ("echo", "hi")]
        ),
        policy=st.sampled_from(["no", "on-failure:2", "always", "unless-stopped"]),
        healthcheck=st.sampled_from(HEALTH_CHECKS),
    )  # fmt: skip
    def create(
        self, name: str, command: tuple[str, ...], policy: str, healthcheck: HealthCheck | None
    ) -> None:
        s = spec(
            name,
            *command,
            restartPolicy=RestartPolicy.parse(policy),
            stopTimeout=3,
            healthcheck=healthcheck,
        )
        self.track(self.backend.create(s))
        self.names.add(name)

    @rule(name=names_)
    def start(self, name: str) -> None:
        self.track(self.backend.start(name))

    @rule(name=names_, timeout=st.sampled_from([None, 0, 1]))
    def stop(self, name: str, timeout: float | None) -> None:
        self.track(self.backend.stop(name, timeout))

    @rule(name=names_)
    def restart(self, name: str) -> None:
        self.track(self.backend.restart(name, 1))

    @rule(name=names_, signum=st.sampled_from([signal.SIGTERM, signal.SIGKILL, signal.SIGUSR1]))
    def kill(self, name: str, signum: int) -> None:
        self.track(self.backend.kill(name, signum))

    @rule(name=names_, force=st.booleans())
    def remove(self, name: str, force: bool) -> None:
        self.track(self.backend.remove(name, force))

    @rule(name=names_, condition=st.sampled_from(WaitCondition.ALL))
    def wait(self, name: str, condition: str) -> None:
        d = self.backend.wait(name, condition)
        # BadRequest: a health condition without a health check;
        # BackendError: healthy, and it ended or turned unhealthy first.
        d.addErrback(lambda f: f.trap(NotFound, CancelledError, BadRequest, BackendError))
        self.clock.callLater(50, d.cancel)

    @rule(seconds=st.sampled_from([0, 0.05, 0.5, 3, 20]))
    def advance(self, seconds: float) -> None:
        advanceClock(self.clock, seconds)

    @invariant()
    def consistent(self) -> None:
        assert not self.unexpected, self.unexpected
        saved = {d["name"]: d for d in self.store.load()}
        records = self.backend._records
        assert saved.keys() == records.keys(), (saved.keys(), records.keys())
        for name, record in records.items():
            expected = record.toDict()
            if record.state == State.STOPPING and not flagsReadAtOpen(record):
                # A stop's intent is saved with the exit where no successor reads it.
                for key in ("state", "manuallyStopped"):
                    expected[key] = saved[name][key]
                assert saved[name]["state"] in State.ALIVE, name
            assert saved[name] == expected, name
            alive = record.state in State.ALIVE
            assert alive == (record.run is not None), record
            restarting = record.pendingRestart is not None and record.pendingRestart.active()
            assert (record.state == State.RESTARTING) == restarting or record.lock.locked, record
            if record.killTimer is not None and record.killTimer.active():
                assert record.state == State.STOPPING, record
            assert (record.health is None) == (not record.checksHealth), record
            if record.healthMonitor is not None:
                assert record.state == State.RUNNING and record.run is not None, record
                assert not record.healthMonitor.stopped, record

    def teardown(self) -> None:
        for name in sorted(self.names):
            self.track(self.backend.stop(name, None))
        advanceClock(self.clock, 120)
        for d in self.pending:
            assert d.called, d
        assert not self.unexpected, self.unexpected
        for record in self.backend._records.values():
            assert record.state not in State.ALIVE, record
            assert record.state != State.RESTARTING, record
            assert record.healthMonitor is None, record


class SupervisorStateMachineTests(SynchronousTestCase):
    """Runs L{SupervisorStateMachine}."""

    def test_stateMachine(self) -> None:
        """No sequence of operations breaks the engine's invariants."""
        run_state_machine_as_test(
            SupervisorStateMachine,
            settings=settings(max_examples=150, stateful_step_count=40, deadline=None),
        )
