"""
The Docker backend's objects on their own: the event journal, the
per-container locks, pycm's requests in flight, the engine-side view of its
containers, and the teller of the engine's events (Docker's and Podman's),
on fake clocks.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from pycm.backends.docker.containers import EngineView, OneAtATime, RequestsInFlight
from pycm.backends.docker.journal import EventJournal, untilEvent
from pycm.backends.docker.telling import EventTeller
from pycm.model import ContainerEvent, State
from tests.stubengine import StubEngine
from tests.test_docker_podman import podmanEvent, podmanInspect


class EventJournalTests(SynchronousTestCase):
    """L{EventJournal}: the told events, numbered, and who waits for one."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.connected = True
        self.journal = EventJournal(self.clock, lambda: self.connected, 3.0)

    def test_waitsFromTheMark(self) -> None:
        """An event before the mark does not count; one after it fires the waiter."""
        self.journal.note("web", "start")
        mark = self.journal.mark()
        waiting = self.journal.awaitEvent(mark, "web", "start")
        self.assertNoResult(waiting)
        self.journal.note("db", "start")
        self.journal.note("web", "die")
        self.assertNoResult(waiting)
        self.journal.note("web", "start")
        self.successResultOf(waiting)
        self.assertEqual(self.journal.awaited, [])

    def test_alreadySeen(self) -> None:
        """An event noted after the mark, before the wait began, fires it at once."""
        mark = self.journal.mark()
        self.journal.note("web", "create")
        self.successResultOf(self.journal.awaitEvent(mark, "web", "create"))

    def test_graceTime(self) -> None:
        """With no event, the waiter fires after the grace time, and is gone."""
        waiting = self.journal.awaitEvent(self.journal.mark(), "web", "stop")
        self.clock.advance(2.9)
        self.assertNoResult(waiting)
        self.clock.advance(0.1)
        self.successResultOf(waiting)
        self.assertEqual((self.journal.awaited, self.clock.getDelayedCalls()), ([], []))

    def test_streamDown(self) -> None:
        """With the event stream down no event is coming: the wait fires at once."""
        self.connected = False
        self.successResultOf(self.journal.awaitEvent(self.journal.mark(), "web", "stop"))
        self.assertEqual(self.journal.awaited, [])

    def test_eventAfterHasNoGrace(self) -> None:
        """L{EventJournal.eventAfter} waits however long; cancelling it leaves no waiter."""
        waiting = self.journal.eventAfter(self.journal.mark(), "web", "die")
        self.clock.advance(1000)
        self.assertNoResult(waiting)
        waiting.cancel()
        self.failureResultOf(waiting, CancelledError)
        self.assertEqual(self.journal.awaited, [])

    def test_eventAtWaitsForItsTime(self) -> None:
        """
        L{EventJournal.awaitEventAt} fires on an event of that action at
        or after the time asked, not on an earlier one nor on another
        action; one already noted fires it at once, whatever the mark.
        """
        self.journal.note("web", "die", 10.0)
        waiting = self.journal.awaitEventAt("web", "die", 12.0)
        self.assertNoResult(waiting)
        self.journal.note("web", "start", 12.5)
        self.journal.note("db", "die", 12.5)
        self.journal.note("web", "die", 11.9)
        self.assertNoResult(waiting)
        self.journal.note("web", "die", 12.0)
        self.successResultOf(waiting)
        self.assertEqual(self.journal.awaited, [])
        self.successResultOf(self.journal.awaitEventAt("web", "die", 12.0))

    def test_eventAtGraceAndDestroy(self) -> None:
        """
        With no such event it fires after the grace time; a destroy
        forgets a name's times (a new container of that name starts over).
        """
        self.journal.note("web", "die", 12.0)
        self.journal.note("web", "destroy", 13.0)
        waiting = self.journal.awaitEventAt("web", "die", 12.0)
        self.clock.advance(2.9)
        self.assertNoResult(waiting)
        self.clock.advance(0.1)
        self.successResultOf(waiting)
        self.assertEqual((self.journal.awaited, self.clock.getDelayedCalls()), ([], []))
        self.assertEqual(self.journal.lastTimes, {})

    def test_tellEmitsAndNotes(self) -> None:
        """C{tell} gives the event to every observer, past one that fails, and notes it."""
        seen: list[Any] = []

        def broken(event: Any) -> None:
            raise RuntimeError("observer bug")

        self.journal.observers.extend([broken, seen.append])
        mark = self.journal.mark()
        self.journal.tell(ContainerEvent("start", "web", 1.0))
        self.assertEqual([e.action for e in seen], ["start"])
        self.assertTrue(self.journal.seen(mark, "web", frozenset({"start"})))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_releaseAll(self) -> None:
        """Closing fires every waiter."""
        waiting = self.journal.eventAfter(self.journal.mark(), "web", "die")
        self.journal.releaseAll()
        self.successResultOf(waiting)
        self.assertEqual(self.journal.awaited, [])

    def test_untilEvent(self) -> None:
        """The request's answer, or C{(200, None)} when the event comes first."""
        cancelled: list[bool] = []
        request: Deferred[Any] = Deferred(lambda _: cancelled.append(True))
        event: Deferred[None] = Deferred()
        outcome = untilEvent(request, event)
        event.callback(None)
        self.assertEqual(self.successResultOf(outcome), (200, None))
        self.assertEqual(cancelled, [True])
        request = Deferred()
        outcome = untilEvent(request, Deferred())
        request.callback((200, {"StatusCode": 0}))
        self.assertEqual(self.successResultOf(outcome), (200, {"StatusCode": 0}))


class OneAtATimeTests(SynchronousTestCase):
    """L{OneAtATime}: one operation per container name at a time."""

    def test_serial(self) -> None:
        """A second operation on a name waits for the first; another name does not."""
        first: Deferred[str] = Deferred()
        queue = OneAtATime()
        started: list[str] = []

        def operation(label: str, result: Any) -> Any:
            started.append(label)
            return result

        a = queue.run("web", operation, "a", first)
        b = queue.run("web", operation, "b", "b done")
        c = queue.run("db", operation, "c", "c done")
        self.assertEqual(started, ["a", "c"])
        self.assertEqual(self.successResultOf(c), "c done")
        first.callback("a done")
        self.assertEqual((self.successResultOf(a), self.successResultOf(b)), ("a done", "b done"))
        self.assertEqual(queue.locks, {})

    def test_failureReleases(self) -> None:
        """An operation that raises fails its Deferred and lets the next one run."""
        queue = OneAtATime()

        def broken() -> None:
            raise ValueError("bad")

        self.failureResultOf(queue.run("web", broken), ValueError)
        self.assertEqual(self.successResultOf(queue.run("web", lambda: 1)), 1)
        self.assertEqual(queue.locks, {})


class RequestsInFlightTests(SynchronousTestCase):
    """L{RequestsInFlight}: pycm's own requests, so their events are told as pycm's."""

    def test_stops(self) -> None:
        """A die at or after the stop was sent is the stop's; one before is not."""
        inFlight = RequestsInFlight()
        inFlight.beginStop("web", 10.0, restart=False)
        self.assertTrue(inFlight.stopping("web"))
        self.assertFalse(inFlight.starting("web"))
        self.assertTrue(inFlight.stoppedBy("web", 10.0))
        self.assertFalse(inFlight.stoppedBy("web", 9.9))
        inFlight.endStop("web", restart=False)
        self.assertFalse(inFlight.stoppedBy("web", 11.0))
        self.assertEqual((dict(inFlight.stops), inFlight.stopSent), ({}, {}))

    def test_overlapping(self) -> None:
        """Two stops at once: the first to end leaves the other in effect."""
        inFlight = RequestsInFlight()
        inFlight.beginStop("web", 10.0, restart=False)
        inFlight.beginStop("web", 12.0, restart=False)
        inFlight.endStop("web", restart=False)
        self.assertTrue(inFlight.stoppedBy("web", 12.0))
        inFlight.endStop("web", restart=False)
        self.assertFalse(inFlight.stopping("web"))

    def test_restart(self) -> None:
        """A restart is a stop and a start of pycm's, until it ends."""
        inFlight = RequestsInFlight()
        inFlight.beginStop("web", 10.0, restart=True)
        self.assertTrue(inFlight.starting("web"))
        self.assertTrue(inFlight.restartedBy("web", 10.5))
        self.assertFalse(inFlight.restartedBy("web", 9.0))
        inFlight.endStop("web", restart=True)
        self.assertFalse(inFlight.starting("web") or inFlight.restartedBy("web", 11.0))
        self.assertEqual((dict(inFlight.starts), inFlight.restartSent), ({}, {}))


class EngineViewTests(SynchronousTestCase):
    """L{EngineView}: what the events and inspects said of pycm's containers."""

    def test_containerWithStartError(self) -> None:
        """An exited container whose command could not run is dead, with the error."""
        view = EngineView()
        view.startErrors["c1"] = "cannot start web: exec: not found"
        container = view.container(podmanInspect("exited"))
        self.assertEqual((container.state, container.error), (State.DEAD, view.startErrors["c1"]))
        self.assertEqual(view.policies, {"web": container.restartPolicy.name})

    def test_exitsBounded(self) -> None:
        """Exit codes are kept for the last 1000 containers, newest last."""
        view = EngineView()
        for i in range(1001):
            view.exited("web", f"c{i}", i)
        self.assertEqual(len(view.exits), 1000)
        self.assertNotIn("c0", view.exits)
        self.assertEqual(view.known["web"], ("c1000", State.EXITED))

    def test_firstDestroy(self) -> None:
        """A destroy is told once per id."""
        view = EngineView()
        self.assertTrue(view.firstDestroy("c1"))
        self.assertFalse(view.firstDestroy("c1"))


class _Engine(StubEngine):
    """An engine that is or is not Podman, asked nothing."""

    def __init__(self, podman: bool) -> None:
        self.isPodman = podman


class EventTellerTests(SynchronousTestCase):
    """L{EventTeller}: the engine's events told as pycm's."""

    def teller(self, podman: bool) -> tuple[EventTeller, list[Any]]:
        view = EngineView()
        journal = EventJournal(Clock(), lambda: True, 3.0)
        seen: list[Any] = []
        journal.observers.append(seen.append)
        return EventTeller(_Engine(podman), view, journal), seen

    def test_policyRestart(self) -> None:
        """A start nobody in pycm asked for, with a policy, is a start then a restart."""
        teller, seen = self.teller(podman=False)
        teller.view.policies["web"] = "always"
        teller.received(podmanEvent("start", nano=1))
        self.assertEqual([e.action for e in seen], ["start", "restart"])
        self.assertEqual(teller.view.known["web"], ("c1", State.RUNNING))

    def test_pycmStart(self) -> None:
        """The start of a pycm start is a start alone."""
        teller, seen = self.teller(podman=False)
        teller.view.policies["web"] = "always"
        teller.view.inFlight.beginStart("web")
        teller.received(podmanEvent("start", nano=1))
        self.assertEqual([e.action for e in seen], ["start"])

    def test_stopSignal(self) -> None:
        """The stop signal of a pycm stop is noted, not told; the die is -15."""
        teller, seen = self.teller(podman=False)
        teller.view.inFlight.beginStop("web", 0.0, restart=False)
        kill = podmanEvent("kill", nano=1)
        kill["Actor"]["Attributes"]["signal"] = "15"
        teller.received(kill)
        teller.received(podmanEvent("die", 143, nano=2))
        self.assertEqual([(e.action, e.exitCode) for e in seen], [("die", -15)])
        self.assertEqual(teller.view.exits["c1"], -15)

    def test_podmanEscalatedStop(self) -> None:
        """On Podman a stop that escalated is told kill, die, stop; its own stop is dropped."""
        teller, seen = self.teller(podman=True)
        teller.view.inFlight.beginStop("web", 0.0, restart=False)
        teller.received(podmanEvent("stop", nano=1))
        teller.received(podmanEvent("die", 137, nano=2))
        self.assertEqual([e.action for e in seen], ["kill", "die", "stop"])
        self.assertEqual(teller.view.lastAction["web"], "stop")

    def test_destroyOnce(self) -> None:
        """A second destroy of the same id is not told; the view forgets the name."""
        teller, seen = self.teller(podman=False)
        teller.received(podmanEvent("create", nano=1))
        teller.received(podmanEvent("destroy", nano=2))
        teller.received(podmanEvent("remove", nano=3))
        self.assertEqual([e.action for e in seen], ["create", "destroy"])
        self.assertNotIn("web", teller.view.known)

    def test_notPycms(self) -> None:
        """An event of a container without pycm's label is not told."""
        teller, seen = self.teller(podman=False)
        event = podmanEvent("start")
        event["Actor"]["Attributes"] = {"name": "other"}
        teller.received(event)
        self.assertEqual(seen, [])
