"""
Tests for L{pycm.daemon.connectionlimit} on its own: the count of open
connections, and who makes room at the cap, with stand-in connections.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from pycm.backends.memory import MemoryBackend
from pycm.daemon.connectionlimit import ConnectionLimit
from pycm.daemon.eventlog import EventLog
from pycm.daemon.session import DaemonState


class Waiting:
    """A stand-in connection waiting for its auth: records being displaced."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.madeRoom: list[int] = []

    def makeRoom(self, maximum: int) -> None:
        self.madeRoom.append(maximum)


class ConnectionLimitTests(SynchronousTestCase):
    def setUp(self) -> None:
        clock = Clock()
        self.state = DaemonState(clock, MemoryBackend(clock), EventLog())
        self.limit = ConnectionLimit(self.state, 3)

    def open(self, name: str, peer: str | None = None) -> Waiting:
        connection = Waiting(name)
        self.assertTrue(self.limit.admit())
        self.limit.opened()
        if peer is not None:
            self.limit.waiting(connection, peer)
        return connection

    def test_counts(self) -> None:
        """opened and released keep the shared count of open connections."""
        a = self.open("a")
        self.open("b")
        self.assertEqual(self.state.connections, 2)
        self.limit.released(a)
        self.assertEqual(self.state.connections, 1)

    def test_biggestPeerMakesRoom(self) -> None:
        """
        At the cap, the oldest waiting connection of the peer holding the
        most makes room; a settled one never does.
        """
        a1 = self.open("a1", "uid:1")
        b1 = self.open("b1", "uid:2")
        b2 = self.open("b2", "uid:2")
        self.assertTrue(self.limit.admit())
        self.assertEqual((a1.madeRoom, b1.madeRoom, b2.madeRoom), ([], [3], []))
        self.limit.released(b1)
        self.limit.opened()
        self.limit.settled(b2)
        self.limit.settled(a1)
        self.assertFalse(self.limit.admit())
        self.assertEqual((a1.madeRoom, b2.madeRoom), ([], []))

    def test_releasedUnknown(self) -> None:
        """Releasing a connection that never waited changes only the count."""
        c = self.open("c")
        self.limit.released(c)
        self.limit.settled(c)
        self.assertEqual(self.state.connections, 0)
