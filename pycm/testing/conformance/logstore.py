"""
The shared suite of L{ILogStore}: L{LogStoreTests}, run on every log
store (in memory and in files) so that a fake cannot drift.
"""

from __future__ import annotations

from typing import Protocol

from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from pycm.interfaces import ILogStore
from pycm.model import LogLine
from pycm.testing.conformance.mixin import SynchronousTestCaseMixin

__all__ = ["LogStoreFixture", "LogStoreTests"]


class LogStoreFixture(Protocol):
    """
    What L{LogStoreTests} needs: C{makeStore(testCase)}, a new, empty log
    store keeping at least 100 lines a container (C{testCase.addCleanup}
    undoes it).
    """

    def makeStore(self, testCase: SynchronousTestCase) -> ILogStore: ...


LINES = [
    LogLine(1_700_000_000.25, "stdout", "first"),
    LogLine(1_700_000_000.5, "stderr", "déjà vu \u2603 \"quoted\" \\ tab\t"),
    LogLine(1_700_000_001.0, "stdout", ""),
    LogLine(1_700_000_002.125, "stdout", "last"),
]


class LogStoreTests(SynchronousTestCaseMixin):
    """
    The behaviour every L{ILogStore} must have, as a mixin: subclass it
    with a trial C{SynchronousTestCase} and set C{fixture}.
    """

    fixture: LogStoreFixture

    def setUp(self) -> None:
        self.store = self.fixture.makeStore(self)

    def appendAll(self, name: str, lines: list[LogLine]) -> None:
        for line in lines:
            self.store.append(name, line)

    def test_interface(self) -> None:
        """The store provides L{ILogStore}."""
        self.assertTrue(verifyObject(ILogStore, self.store))

    def test_unknown(self) -> None:
        """A container that wrote nothing has no lines."""
        self.assertEqual(self.store.tail("web", None), [])
        self.assertEqual(self.store.tail("web", 5), [])

    def test_appendTail(self) -> None:
        """Appended lines come back, equal (time, stream, text), oldest first."""
        self.appendAll("web", LINES)
        self.assertEqual(self.store.tail("web", None), LINES)

    def test_appendLines(self) -> None:
        """C{appendLines} stores what one C{append} a line would."""
        self.store.appendLines("web", 1_700_000_000.5, "stderr", ["a", "b", ""])
        self.store.appendLines("web", 1_700_000_001.0, "stdout", ["c"])
        self.assertEqual(
            self.store.tail("web", None),
            [
                LogLine(1_700_000_000.5, "stderr", "a"),
                LogLine(1_700_000_000.5, "stderr", "b"),
                LogLine(1_700_000_000.5, "stderr", ""),
                LogLine(1_700_000_001.0, "stdout", "c"),
            ],
        )

    def test_tailCount(self) -> None:
        """C{tail(name, count)} gives the last C{count} lines, oldest first."""
        self.appendAll("web", LINES)
        self.assertEqual(self.store.tail("web", 2), LINES[-2:])
        self.assertEqual(self.store.tail("web", 1), LINES[-1:])
        self.assertEqual(self.store.tail("web", 0), [])
        self.assertEqual(self.store.tail("web", 100), LINES)

    def test_containersApart(self) -> None:
        """Each container has its own lines."""
        self.appendAll("web", LINES[:2])
        self.appendAll("db", LINES[2:])
        self.assertEqual(self.store.tail("web", None), LINES[:2])
        self.assertEqual(self.store.tail("db", None), LINES[2:])

    def test_remove(self) -> None:
        """
        C{remove} forgets a container's lines (and only its); removing an
        unknown one is no error; lines appended after start afresh.
        """
        self.appendAll("web", LINES)
        self.appendAll("db", LINES[:1])
        self.store.remove("web")
        self.store.remove("nosuch")
        self.assertEqual(self.store.tail("web", None), [])
        self.assertEqual(self.store.tail("db", None), LINES[:1])
        self.appendAll("web", LINES[3:])
        self.assertEqual(self.store.tail("web", None), LINES[3:])

    def test_prepare(self) -> None:
        """
        C{prepare} (before a run) adds no line, may be called again, and
        keeps what was there.
        """
        self.store.prepare("web")
        self.assertEqual(self.store.tail("web", None), [])
        self.appendAll("web", LINES[:1])
        self.store.prepare("web")
        self.appendAll("web", LINES[1:])
        self.assertEqual(self.store.tail("web", None), LINES)
