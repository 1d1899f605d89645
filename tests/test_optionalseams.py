"""
The optional seams of a backend (L{ICreateAndStart}, L{IJournaledEvents}):
the daemon uses them only where a backend declares them, and keeps the
behaviour of the plain L{IContainerBackend} for the others.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from pycm.backends.memory import MemoryBackend
from pycm.daemon.eventlog import EventLog
from pycm.daemon.handlers import containers
from pycm.interfaces import ICreateAndStart, IJournaledEvents
from pycm.model import State


class Undeclared:
    """
    A backend with the optional methods and attributes, but declaring no
    optional interface: a stand-in for a backend whose names merely match.
    """

    def __init__(self, backend: MemoryBackend) -> None:
        self._backend = backend
        self.capabilities = backend.capabilities
        self.name = backend.name
        self.commits = backend.commits
        self.calls: list[str] = []

    def create(self, spec: Any) -> Any:
        self.calls.append("create")
        return self._backend.create(spec)

    def start(self, name: str) -> Any:
        self.calls.append("start")
        return self._backend.start(name)

    def createAndStart(self, spec: Any) -> Any:
        self.calls.append("createAndStart")
        return self._backend.createAndStart(spec)

    def addJournalObserver(self, observer: Any) -> None:
        self.calls.append("addJournalObserver")

    def addObserver(self, observer: Any) -> None:
        self.calls.append("addObserver")


def session(backend: Any) -> Any:
    """A stand-in for a L{pycm.daemon.session.Session}: handlers read C{state.backend}."""
    return SimpleNamespace(state=SimpleNamespace(backend=backend))


class OptionalSeamsTests(SynchronousTestCase):
    """The daemon's use of L{ICreateAndStart} and L{IJournaledEvents}."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.backend = MemoryBackend(self.clock)
        self.successResultOf(self.backend.open())

    def test_supervisorProvidesBoth(self) -> None:
        """The supervising backends declare both optional seams, and have them."""
        verifyObject(ICreateAndStart, self.backend)
        verifyObject(IJournaledEvents, self.backend)

    def test_runInOneOperation(self) -> None:
        """C{run} on a backend declaring L{ICreateAndStart} calls C{createAndStart}."""
        calls: list[str] = []
        createAndStart = self.backend.createAndStart

        def recorded(spec: Any) -> Any:
            calls.append(spec.name)
            return createAndStart(spec)

        self.patch(self.backend, "createAndStart", recorded)
        words = ["web", self.backend.defaultImage, "sleep", "9"]
        d = containers.run(session(self.backend), {}, words)
        self.assertEqual(self.successResultOf(d)["state"], State.RUNNING)
        self.assertEqual(calls, ["web"])

    def test_runUndeclaredCreateThenStart(self) -> None:
        """
        C{run} on a backend that does not declare L{ICreateAndStart} is
        C{create} then C{start}, whatever methods it happens to have.
        """
        backend = Undeclared(self.backend)
        d = containers.run(session(backend), {}, ["web", self.backend.defaultImage, "sleep", "9"])
        self.assertEqual(self.successResultOf(d)["state"], State.RUNNING)
        self.assertEqual(backend.calls, ["create", "start"])

    def test_attachUndeclared(self) -> None:
        """
        A backend that does not declare L{IJournaledEvents} is heard through
        C{addObserver}, even with the same C{commits} and C{addJournalObserver}
        (a declared one is heard as events are emitted: see
        L{tests.test_groupcommit.JournalObserverTests}).
        """
        backend = Undeclared(self.backend)
        EventLog(commits=self.backend.commits).attach(backend)  # type: ignore[arg-type]
        self.assertEqual(backend.calls, ["addObserver"])
