"""
The shared suites of the stores (L{pycm.testing.conformance}) on each
implementation, fake and real: L{IRecordStore} on L{MemoryRecordStore},
L{NullRecordStore} and L{SQLiteStore}; L{ILogStore} on L{MemoryLogStore}
and L{FileLogStore}; L{IEventStore} on L{MemoryEventStore} and
L{SQLiteStore}.
"""

from __future__ import annotations

import os

from twisted.trial.unittest import SynchronousTestCase

from pycm.backends.memory import MemoryLogStore, MemoryRecordStore, NullRecordStore
from pycm.backends.process.logfiles import FileLogStore
from pycm.daemon.eventlog import MemoryEventStore
from pycm.interfaces import IEventStore, ILogStore, IRecordStore
from pycm.store import SQLiteStore
from pycm.testing.conformance import (
    DurableEventStoreTests,
    EventStoreTests,
    LogStoreTests,
    RecordStoreTests,
)


class SharedMemoryRecordStoreFixture:
    """A L{MemoryRecordStore}: a restarted daemon is given the same one."""

    keepsRecords = True

    def makeStore(self, testCase: SynchronousTestCase) -> IRecordStore:
        return MemoryRecordStore()

    def reopen(self, testCase: SynchronousTestCase, store: IRecordStore) -> IRecordStore:
        return store


class NullRecordStoreFixture:
    """A L{NullRecordStore}: it keeps nothing, and says so."""

    keepsRecords = False

    def makeStore(self, testCase: SynchronousTestCase) -> IRecordStore:
        return NullRecordStore()

    def reopen(self, testCase: SynchronousTestCase, store: IRecordStore) -> IRecordStore:
        return NullRecordStore()


class SQLiteFixture:
    """An L{SQLiteStore} in a fresh directory; reopened on the same file."""

    keepsRecords = True

    def open(self, testCase: SynchronousTestCase, path: str, keep: int = 10_000) -> SQLiteStore:
        store = SQLiteStore(path, keepEvents=keep)
        testCase.addCleanup(store.close)
        return store

    def makeStore(self, testCase: SynchronousTestCase, keep: int = 10_000) -> SQLiteStore:
        directory = testCase.mktemp()
        os.makedirs(directory)
        return self.open(testCase, os.path.join(directory, "state.db"), keep)

    def reopen(
        self, testCase: SynchronousTestCase, store: IRecordStore | IEventStore
    ) -> SQLiteStore:
        assert isinstance(store, SQLiteStore)
        store.close()
        return self.open(testCase, store.path, store.keepEvents)


class MemoryRecordStoreTests(RecordStoreTests, SynchronousTestCase):
    """L{MemoryRecordStore} passes the record store suite."""

    fixture = SharedMemoryRecordStoreFixture()


class NullRecordStoreTests(RecordStoreTests, SynchronousTestCase):
    """
    L{NullRecordStore} passes the record store suite as a store that keeps
    nothing: every call succeeds, and it loads and lists nothing.
    """

    fixture = NullRecordStoreFixture()


class SQLiteRecordStoreTests(RecordStoreTests, SynchronousTestCase):
    """L{SQLiteStore} passes the record store suite."""

    fixture = SQLiteFixture()


class MemoryLogStoreFixture:
    """A L{MemoryLogStore}."""

    def makeStore(self, testCase: SynchronousTestCase) -> ILogStore:
        return MemoryLogStore()


class FileLogStoreFixture:
    """A L{FileLogStore} in a fresh directory."""

    def makeStore(self, testCase: SynchronousTestCase) -> ILogStore:
        store = FileLogStore(os.path.abspath(testCase.mktemp()))
        testCase.addCleanup(store.close)
        return store


class MemoryLogStoreTests(LogStoreTests, SynchronousTestCase):
    """L{MemoryLogStore} passes the log store suite."""

    fixture = MemoryLogStoreFixture()


class FileLogStoreTests(LogStoreTests, SynchronousTestCase):
    """L{FileLogStore} passes the log store suite."""

    fixture = FileLogStoreFixture()


class MemoryEventStoreFixture:
    """A L{MemoryEventStore}: it forgets everything when the daemon stops."""

    def makeStore(self, testCase: SynchronousTestCase, keep: int) -> IEventStore:
        return MemoryEventStore(retain=keep)

    def reopen(self, testCase: SynchronousTestCase, store: IEventStore) -> IEventStore | None:
        return None


class MemoryEventStoreTests(EventStoreTests, SynchronousTestCase):
    """L{MemoryEventStore} passes the event store suite."""

    fixture = MemoryEventStoreFixture()


class SQLiteEventStoreTests(DurableEventStoreTests, SynchronousTestCase):
    """L{SQLiteStore} passes the event store suite."""

    fixture = SQLiteFixture()
