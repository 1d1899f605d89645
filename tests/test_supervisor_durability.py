"""
Tests for L{pycm.backends.supervisor.backend}: nothing acknowledged is lost, on a
fake clock with simulated runs and record stores that check or fail their saves.
"""

from __future__ import annotations

import json
import signal
from typing import Any

from twisted.logger import Logger, formatEvent
from zope.interface import implementer

from pycm.backends.memory import MemoryBackend, MemoryRecordStore, SimulatedRuntime
from pycm.backends.supervisor.records import Record
from pycm.backends.supervisor.recordwriter import RETRY_INTERVAL, RecordWriter
from pycm.backends.supervisor.recovery import LOST_ERROR, RECLAIMED_ERROR
from pycm.backends.supervisor.runs import SHUTDOWN_ERROR
from pycm.errors import BackendError
from pycm.interfaces import IRecordStore
from pycm.model import (
    Container,
    ContainerEvent,
    ContainerSpec,
    RestartPolicy,
    State,
)
from pycm.testing import advanceClock
from tests.test_supervisor import SupervisorTestCase, spec


@implementer(IRecordStore)
class CheckingStore(MemoryRecordStore):
    """A record store that can fail its writes."""

    broken = False

    def save(self, name: str, record: dict[str, Any]) -> None:
        if self.broken:
            raise OSError("disk full")
        super().save(name, record)

    def delete(self, name: str) -> None:
        if self.broken:
            raise OSError("disk full")
        super().delete(name)


class DurabilityTests(SupervisorTestCase):
    """Records are saved before events and replies; they survive restarts."""

    def setUp(self) -> None:
        super().setUp()
        self.store = CheckingStore()
        self.backend = self.makeBackend()
        self.backend.addObserver(self.recorder)

    def savedState(self, name: str) -> str | None:
        for data in self.store.load():
            if data["name"] == name:
                return data["state"]
        return None

    def test_savedBeforeEvents(self) -> None:
        """Each event finds the record already saved in its new state."""
        seen: list[tuple[str, str | None]] = []

        def observer(event: ContainerEvent) -> None:
            seen.append((event.action, self.savedState(event.name)))

        self.backend.addObserver(observer)
        self.run_(spec("web", "exit", "1", restartPolicy=RestartPolicy("on-failure", 1)))
        advanceClock(self.clock, 1)
        self.successResultOf(self.backend.remove("web", False))
        self.assertEqual(
            seen,
            [
                ("create", "created"),
                ("start", "running"),
                ("die", "restarting"),
                ("start", "running"),
                ("restart", "running"),
                ("die", "exited"),
                ("destroy", None),
            ],
        )

    def test_savedBeforeReplies(self) -> None:
        """A stop's reply fires after its exited state is saved."""
        self.run_(spec("web"))
        states: list[str | None] = []
        d = self.backend.stop("web", None)
        d.addCallback(lambda c: states.append(self.savedState("web")))
        self.clock.advance(0)
        self.assertEqual(states, ["exited"])

    def test_saveFailure(self) -> None:
        """A create whose record cannot be saved fails and takes no name."""
        self.store.broken = True
        self.failureResultOf(self.backend.create(spec("web")), BackendError)
        self.store.broken = False
        self.successResultOf(self.backend.create(spec("web")))

    def test_recordRoundTrip(self) -> None:
        """L{Record.toDict} and L{Record.fromDict} are inverses."""
        self.run_(
            spec(
                "web",
                "sleep",
                "5",
                env={"A": "b"},
                labels={"x": "y"},
                restartPolicy=RestartPolicy("on-failure", 4),
                memory=10,
                cpus=0.25,
                workdir="/w",
            )
        )
        record = self.backend._records["web"]
        again = Record.fromDict(record.toDict())
        self.assertEqual(again.toContainer(), record.toContainer())

    def test_damagedRecordQuarantined(self) -> None:
        """
        A record with missing fields is put aside (named by the backend's
        C{quarantined}); L{open} succeeds and serves the other records.
        """
        self.successResultOf(self.backend.create(ContainerSpec(name="good")))
        self.store.records["web"] = '{"name": "web"}'
        backend = MemoryBackend(self.clock, recordStore=self.store)
        self.successResultOf(backend.open())
        self.assertEqual([c.name for c in self.successResultOf(backend.list())], ["good"])
        self.assertEqual([q["name"] for q in backend.quarantined], ["web"])
        self.assertIn("corrupt container record", backend.quarantined[0]["reason"])
        self.assertNotIn("web", self.store.records)

    def test_wrongTypedFieldsQuarantined(self) -> None:
        """
        A record with one field of the wrong type or out of range is put
        aside like bad JSON, its reason naming the field; L{open} succeeds,
        and C{list} and C{inspect} serve the rest.
        """
        damages: dict[str, tuple[str, Any]] = {
            "env": ("env", {"A": 1}),
            "labels": ("labels", ["x"]),
            "signal": ("stopSignal", "SIGFOO"),
            "created": ("created", "yesterday"),
            "started": ("started", 1e300),
            "command": ("command", ["sleep", 1000]),
            "timeout": ("stopTimeout", -5),
            "memory": ("memory", -1),
            "cpus": ("cpus", "2"),
            "pid": ("pid", True),
            "count": ("restartCount", -1),
            "policy": ("restartPolicy", "sometimes"),
            "image": ("image", None),
            "workdir": ("workdir", 7),
        }
        for name in [*damages, "good"]:
            self.run_(spec(name, restartPolicy=RestartPolicy("always"), env={"A": "1"}))
        for name, (field, value) in damages.items():
            record = json.loads(self.store.records[name])
            record[field] = value
            self.store.records[name] = json.dumps(record)
        backend = MemoryBackend(self.clock, runtime=SimulatedRuntime(self.clock),
                                recordStore=self.store)  # fmt: skip
        self.successResultOf(backend.open())
        reasons = {q["name"]: q["reason"] for q in backend.quarantined}
        self.assertEqual(sorted(reasons), sorted(damages))
        for name, (field, _) in damages.items():
            self.assertIn(f"field {field!r}", reasons[name])
        self.assertEqual([c.name for c in self.successResultOf(backend.list())], ["good"])
        self.assertEqual(self.inspect("good", backend).state, State.RUNNING)

    def test_duplicateIdQuarantined(self) -> None:
        """
        A record with the id of another (a copy of a running one that a
        dead daemon left) is put aside, naming the field and the other
        record; the run of the one served, whose id, run id and pid the
        copy holds, is reclaimed for the one served only (not stopped
        twice, nor found lost).
        """
        run = self.run_(spec("web", "sleep", "infinity"))
        copy = json.loads(self.store.records["web"])
        copy["name"] = "xweb"
        self.store.records["xweb"] = json.dumps(copy)
        reclaimed: list[str] = []
        reclaim = self.runtime.reclaim

        def recordingReclaim(container: Container, pid: int | None, startTime: Any) -> Any:
            if pid is not None:
                reclaimed.append(container.name)
            return reclaim(container, pid, startTime)

        self.patch(self.runtime, "reclaim", recordingReclaim)
        second = MemoryBackend(self.clock, runtime=self.runtime, recordStore=self.store)
        opened = second.open()
        advanceClock(self.clock, 15)
        self.successResultOf(opened)
        self.assertEqual(reclaimed, ["web"])
        [quarantined] = second.quarantined
        self.assertEqual(quarantined["name"], "xweb")
        self.assertIn("field 'id' is also the id of 'web'", quarantined["reason"])
        self.assertNotIn(run.pid, self.runtime.runs)
        web = self.inspect("web", second)
        self.assertEqual((web.state, web.error), (State.EXITED, RECLAIMED_ERROR))

    def test_badStopSignalAtClose(self) -> None:
        """
        A container whose stop signal is not one (a record from before the
        checks) is sent SIGTERM at close, which goes on to stop and save
        every other container: no process is left, close succeeds.
        """
        self.run_(spec("aa", "sleep", "infinity"))
        self.run_(spec("bb", "sleep", "infinity"))
        self.backend._records["aa"].stopSignal = "SIGFOO"
        closed = self.backend.close()
        advanceClock(self.clock, 1)
        self.successResultOf(closed)
        self.assertEqual(self.runtime.runs, {})
        for name in ("aa", "bb"):
            saved = json.loads(self.store.records[name])
            self.assertEqual((saved["state"], saved["exitCode"]), ("exited", -signal.SIGTERM))

    def test_badStopSignalKill(self) -> None:
        """C{kill} of a container whose stop signal is not one still signals it."""
        self.run_(spec("aa", "sleep", "infinity"))
        self.backend._records["aa"].stopSignal = "SIGFOO"
        self.successResultOf(self.backend.kill("aa", signal.SIGTERM))
        advanceClock(self.clock, 1)
        self.assertEqual(self.inspect("aa").exitCode, -signal.SIGTERM)
        self.assertEqual(self.inspect("aa").state, State.EXITED)

    def test_quarantinedRunStopped(self) -> None:
        """
        A running container whose record is damaged while its daemon is
        dead (here: the command is missing) is put aside, and the run it
        left is still stopped: what can be read of the record (pid, start
        time, run id, id) goes to the runtime's reclaim.
        """
        pid = self.run_(spec("web", "sleep", "infinity")).pid
        self.run_(spec("good", "sleep", "infinity"))
        damaged = json.loads(self.store.records["web"])
        del damaged["command"]
        self.store.records["web"] = json.dumps(damaged)
        # The first backend died: it is never closed.
        second = MemoryBackend(self.clock, runtime=self.runtime, recordStore=self.store)
        opened = second.open()
        advanceClock(self.clock, 15)
        self.successResultOf(opened)
        self.assertEqual([q["name"] for q in second.quarantined], ["web"])
        self.assertNotIn(pid, self.runtime.runs)
        self.assertEqual([c.name for c in self.successResultOf(second.list())], ["good"])

    def policies(self) -> None:
        """Create one container per interesting case, all running."""
        for name, policy in (
            ("always", "always"),
            ("always-stopped", "always"),
            ("unless", "unless-stopped"),
            ("unless-stopped", "unless-stopped"),
            ("onfailure", "on-failure"),
            ("no", "no"),
        ):
            self.run_(spec(name, restartPolicy=RestartPolicy.parse(policy)))
        self.successResultOf(
            self.backend.create(spec("created", restartPolicy=RestartPolicy("always")))
        )
        for name in ("always-stopped", "unless-stopped"):
            d = self.backend.stop(name, None)
            self.clock.advance(0)
            self.successResultOf(d)

    def states(self, backend: MemoryBackend) -> dict[str, str]:
        return {c.name: c.state for c in self.successResultOf(backend.list())}

    def test_closeThenOpen(self) -> None:
        """
        C{close} stops every running container, not as a client stop: the
        next C{open} brings back C{always}, C{unless-stopped} (unless a
        client stopped it) and interrupted C{on-failure} ones.
        """
        self.policies()
        closing = self.backend.close()
        self.clock.advance(0)
        self.successResultOf(closing)
        self.assertEqual(set(self.states(self.backend).values()), {"exited", "created"})
        self.assertEqual(self.inspect("no").error, SHUTDOWN_ERROR)
        self.assertIsNone(self.inspect("always-stopped").error)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        second = self.makeBackend(SimulatedRuntime(self.clock))
        self.assertEqual(
            self.states(second),
            {
                "always": "running",
                "always-stopped": "running",
                "unless": "running",
                "unless-stopped": "exited",
                "onfailure": "running",
                "no": "exited",
                "created": "created",
            },
        )

    def test_closeStopsInParallel(self) -> None:
        """C{close} stops containers in parallel, each with its stop timeout."""
        self.run_(spec("a", "ignore-term", stopTimeout=5))
        self.run_(spec("b", "ignore-term", stopTimeout=5))
        closing = self.backend.close()
        self.clock.advance(4.9)
        self.assertNoResult(closing)
        self.clock.advance(0.1)
        self.clock.advance(0)
        self.successResultOf(closing)
        self.assertEqual(self.inspect("a").exitCode, -signal.SIGKILL)

    def test_daemonDiedProcessesSurvived(self) -> None:
        """
        After a daemon died, C{open} stops the runs it left (C{exited}, with
        an C{error} saying so) and applies restart policies.
        """
        self.policies()
        second = MemoryBackend(self.clock, runtime=self.runtime, recordStore=self.store)
        opening = second.open()  # same runtime: the runs survived
        self.clock.advance(0)
        self.successResultOf(opening)
        self.assertEqual(self.states(second)["always"], "running")
        self.assertEqual(self.states(second)["no"], "exited")
        self.assertEqual(self.inspect("no", second).error, RECLAIMED_ERROR)
        self.assertEqual(self.inspect("unless-stopped", second).state, "exited")
        self.assertEqual(
            self.runtime.runs.keys(), {c.pid for c in self.successResultOf(second.list()) if c.pid}
        )

    def test_daemonDiedProcessesGone(self) -> None:
        """Runs a dead daemon left that are gone are C{dead}: lost."""
        self.policies()
        second = self.makeBackend(SimulatedRuntime(self.clock))
        container = self.inspect("no", second)
        self.assertEqual((container.state, container.error), (State.DEAD, LOST_ERROR))
        self.assertEqual(self.states(second)["unless"], "running")


class SaveFailureTests(SupervisorTestCase):
    """
    A state store that cannot be written (a full disk): what stops or
    removes a container is done at once and kept in memory until it can be
    written, saying so (C{saved} False); what starts one is refused.
    """

    def setUp(self) -> None:
        super().setUp()
        self.store = CheckingStore()
        self.backend = self.makeBackend()
        self.backend.addObserver(self.recorder)
        self.logged: list[dict[str, Any]] = []
        self.patch(RecordWriter, "log", Logger(observer=self.logged.append))

    def saved(self, name: str) -> dict[str, Any] | None:
        found = [r for r in self.store.load() if r["name"] == name]
        return found[0] if found else None

    def test_stopWhenNotSaved(self) -> None:
        """
        A client stop on a full disk stops the container and replies with
        it, C{saved} False; the record is written by the retry once the
        store works again, and the container is then C{saved}.
        """
        self.run_(spec("web", "sleep", "infinity"))
        self.store.broken = True
        d = self.backend.stop("web", 1)
        advanceClock(self.clock, 1)
        container = self.successResultOf(d)
        self.assertEqual((container.state, container.saved), (State.EXITED, False))
        self.assertEqual(container.summary()["saved"], False)
        self.assertFalse(self.inspect("web").saved)
        self.assertNotEqual(self.saved("web")["state"], State.EXITED)  # type: ignore[index]
        self.store.broken = False
        self.clock.advance(RETRY_INTERVAL)
        self.assertEqual(self.saved("web")["state"], State.EXITED)  # type: ignore[index]
        self.assertTrue(self.inspect("web").saved)
        self.assertNotIn("saved", self.inspect("web").summary())
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_killWhenNotSaved(self) -> None:
        """
        C{kill} of an C{always} container on a full disk kills it and
        disables its policy at once (it is not restarted), C{saved} False.
        """
        self.run_(spec("web", "sleep", "infinity", restartPolicy=RestartPolicy("always")))
        self.store.broken = True
        container = self.successResultOf(self.backend.kill("web", signal.SIGKILL))
        self.assertFalse(container.saved)
        advanceClock(self.clock, 5)
        self.assertEqual(self.inspect("web").state, State.EXITED)
        self.store.broken = False
        advanceClock(self.clock, RETRY_INTERVAL)
        record = self.saved("web")
        assert record is not None
        self.assertEqual((record["state"], record["manuallyStopped"]), (State.EXITED, True))

    def test_removeWhenNotSaved(self) -> None:
        """
        C{rm --force} on a full disk removes the container at once (it is
        gone from C{list}, C{destroy} is emitted) and fires with it,
        C{saved} False; its record is deleted once the store works again.
        """
        self.run_(spec("web", "sleep", "infinity"))
        self.store.broken = True
        d = self.backend.remove("web", True)
        advanceClock(self.clock, 1)
        removed = self.successResultOf(d)
        assert isinstance(removed, Container)
        self.assertFalse(removed.saved)
        self.assertEqual(self.successResultOf(self.backend.list()), [])
        self.assertEqual(self.recorder.actions("web")[-1], "destroy")
        self.assertIsNotNone(self.saved("web"))
        self.store.broken = False
        advanceClock(self.clock, RETRY_INTERVAL)
        self.assertIsNone(self.saved("web"))

    def test_removeSavedFiresWithNone(self) -> None:
        """A removal that is on disk fires with None, as before."""
        self.successResultOf(self.backend.create(spec("web")))
        self.assertIsNone(self.successResultOf(self.backend.remove("web", False)))

    def test_createAfterUnsavedRemove(self) -> None:
        """
        A new container of the name of one whose removal waits is refused
        while the disk is full; once it is created, the removal that waited
        never deletes it.
        """
        self.successResultOf(self.backend.create(spec("web")))
        self.store.broken = True
        self.successResultOf(self.backend.remove("web", False))
        self.failureResultOf(self.backend.create(spec("web")), BackendError)
        self.store.broken = False
        created = self.successResultOf(self.backend.create(spec("web", "sleep", "1")))
        self.assertTrue(created.saved)
        self.clock.advance(RETRY_INTERVAL)
        self.assertEqual(self.saved("web")["command"], ["sleep", "1"])  # type: ignore[index]

    def test_startFailsWhenNotSaved(self) -> None:
        """A client start that cannot save its run id fails, nothing spawned."""
        self.successResultOf(self.backend.create(spec("web", "sleep", "infinity")))
        self.store.broken = True
        self.failureResultOf(self.backend.start("web"), BackendError)
        self.assertEqual(self.runtime.runs, {})

    def test_loggedOncePerEpisode(self) -> None:
        """
        The daemon's log says once that records cannot be written and once
        that they are again, with the count, however many changes waited.
        """
        for name in ("a", "b", "c"):
            self.run_(spec(name, "sleep", "infinity"))
        self.store.broken = True
        for name in ("a", "b", "c"):
            self.successResultOf(self.backend.kill(name, signal.SIGKILL))
        advanceClock(self.clock, 5)
        self.assertEqual(len(self.logged), 1)
        self.assertIn("disk full", formatEvent(self.logged[0]))
        self.store.broken = False
        self.clock.advance(RETRY_INTERVAL)
        self.assertEqual(len(self.logged), 2)
        self.assertIn("changes of 3 containers had waited", formatEvent(self.logged[1]))

    def test_closeWritesWhatWaits(self) -> None:
        """Closing writes what waits when it can, and leaves no timer."""
        self.run_(spec("web", "sleep", "infinity"))
        self.store.broken = True
        self.successResultOf(self.backend.kill("web", signal.SIGKILL))
        advanceClock(self.clock, 1)
        self.store.broken = False
        self.successResultOf(self.backend.close())
        self.assertTrue(self.saved("web")["manuallyStopped"])  # type: ignore[index]
        self.assertEqual(self.clock.getDelayedCalls(), [])
