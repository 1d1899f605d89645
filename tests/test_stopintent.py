"""
Tests for when a client stop's intent is saved: before the stop signal
only where a dead daemon's successor reads it (L{flagsReadAtOpen}), and
that the successor does the same either way.
"""

from __future__ import annotations

from typing import Any

from pycm.backends.memory import MemoryBackend
from pycm.backends.supervisor.restartpolicy import comesBackAtOpen, flagsReadAtOpen
from pycm.model import RestartPolicy, State
from pycm.testing import advanceClock
from tests.test_supervisor import SupervisorTestCase, spec
from tests.test_supervisor_durability import CheckingStore


class StopIntentTests(SupervisorTestCase):
    """A client stop of a container that outlives its stop signal, per restart policy."""

    def setUp(self) -> None:
        super().setUp()
        self.store = CheckingStore()
        self.backend = self.makeBackend()

    #: A container per restart policy: (name, policy).
    POLICIES = (("no", "no"), ("always", "always"), ("unless", "unless-stopped"),
                ("onfailure", "on-failure"))

    def stopSlowOnes(self) -> None:
        """Run one container of each of L{POLICIES} that outlives its stop signal; stop each."""
        for name, policy in self.POLICIES:
            self.run_(spec(name, "ignore-term", restartPolicy=RestartPolicy.parse(policy)))
            self.backend.stop(name, 10)
        self.clock.advance(0)

    def test_stopIntentSavedWhereReadAtOpen(self) -> None:
        """
        A client stop's intent (C{stopping}, C{manuallyStopped}) is saved at
        once only for the policies whose comeback at open reads it; with
        C{no} and C{always} it is saved with the exit (a commit a stop fewer).
        """
        self.stopSlowOnes()
        saved = {d["name"]: (d["state"], d["manuallyStopped"]) for d in self.store.load()}
        self.assertEqual(
            saved,
            {
                "no": ("running", False),
                "always": ("running", False),
                "unless": ("stopping", True),
                "onfailure": ("stopping", True),
            },
        )
        self.clock.advance(10)
        saved = {d["name"]: (d["state"], d["manuallyStopped"]) for d in self.store.load()}
        self.assertEqual(set(saved.values()), {("exited", True)})

    def test_deadDuringStops(self) -> None:
        """
        A daemon that dies during those stops leaves its successor to do
        what it would have done had every stop's intent been saved: only
        C{always} comes back.
        """
        self.stopSlowOnes()
        # The first backend died: it is never closed.
        second = MemoryBackend(self.clock, runtime=self.runtime, recordStore=self.store)
        opened = second.open()
        advanceClock(self.clock, 15)
        self.successResultOf(opened)
        self.assertEqual(
            {c.name: c.state for c in self.successResultOf(second.list())},
            {"no": "exited", "always": "running", "unless": "exited", "onfailure": "exited"},
        )

    def test_flagsReadWhereTheyDecide(self) -> None:
        """
        L{flagsReadAtOpen} is true exactly for the policies whose comeback at
        open a client stop's flag changes, for a record as a dead daemon's
        successor finds it (reclaimed: exited and interrupted).
        """
        for name, policy in self.POLICIES:
            self.run_(spec(name, restartPolicy=RestartPolicy.parse(policy)))
            record = self.backend._records[name]
            record.state, record.interrupted = State.EXITED, True
            comebacks: set[Any] = set()
            for stopped in (False, True):
                record.manuallyStopped = stopped
                comebacks.add(comesBackAtOpen(record))
            self.assertEqual(len(comebacks) == 2, flagsReadAtOpen(record), policy)
