"""
The protocol's replies on a full disk: a daemon on the memory backend whose
record store, event store and log files cannot be written (fakes; the real
thing is in tests.test_diskfull_e2e).
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import Logger
from twisted.trial.unittest import SynchronousTestCase

from pycm.backends.memory import MemoryBackend
from pycm.backends.process.logfiles import FileLogStore
from pycm.backends.supervisor.recordwriter import RETRY_INTERVAL, RecordWriter
from pycm.client import format as fmt
from pycm.daemon.eventlog import EventLog
from pycm.daemon.protocol import PycmServerFactory, PycmServerProtocol
from pycm.daemon.session import DaemonState
from pycm.testing.server import FakeConnection
from tests.test_events import FlakyStore
from tests.test_logfiles import FakeDisk
from tests.test_supervisor_durability import CheckingStore


class FullDiskProtocolTests(SynchronousTestCase):
    """What a client sees while the daemon's disk is full, and after."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.records = CheckingStore()
        self.eventStore = FlakyStore()
        self.disk = FakeDisk()
        quiet = Logger(observer=lambda event: None)
        self.patch(RecordWriter, "log", quiet)
        self.patch(EventLog, "log", quiet)
        logs = FileLogStore(self.mktemp(), write=self.disk.write)
        logs.log = quiet
        self.addCleanup(logs.close)
        self.backend = MemoryBackend(self.clock, recordStore=self.records, logStore=logs)
        self.successResultOf(self.backend.open())
        self.events = EventLog(self.eventStore, clock=self.clock)
        state = DaemonState(self.clock, self.backend, self.events)
        factory = PycmServerFactory(state, requireAuth=False)
        protocol = factory.buildProtocol(None)
        assert isinstance(protocol, PycmServerProtocol)
        transport = StringTransport()
        protocol.makeConnection(transport)
        self.client = FakeConnection(protocol, transport, self.clock)

    def fill(self) -> None:
        self.records.broken = True
        self.eventStore.broken = True
        self.disk.room = 0

    def free(self) -> None:
        self.records.broken = False
        self.eventStore.broken = False
        self.disk.room = None

    def test_stopKillRemoveSayNotSaved(self) -> None:
        """
        C{stop}, C{kill} and C{rm} answer OK with C{"saved": false}; C{info}
        counts what waits; once space returns it is written by itself and
        C{saved} is gone from the replies.
        """
        client = self.client
        for name in ("aa", "bb", "cc"):
            client.ok(f"run {name} memory sleep infinity")
        self.fill()
        self.assertIs(client.ok("stop -t 1 aa")["saved"], False)
        self.assertIs(client.ok("kill bb")["saved"], False)
        self.clock.advance(0)
        self.assertEqual(client.ok("rm -f cc"), {"name": "cc", "removed": True, "saved": False})
        unsaved = client.ok("info")["unsaved"]
        self.assertEqual(unsaved["containers"], 2)
        self.assertGreater(unsaved["events"], 0)
        self.free()
        self.clock.advance(RETRY_INTERVAL)
        self.assertEqual(client.ok("info")["unsaved"], {"containers": 0, "events": 0})
        self.assertNotIn("saved", client.ok("inspect aa"))
        self.assertEqual(sorted(r["name"] for r in self.records.load()), ["aa", "bb"])
        self.assertEqual(client.ok("rm bb"), {"name": "bb", "removed": True})

    def test_eventsNotLost(self) -> None:
        """
        Events of changes made while the event store is full reach
        subscribers with their ids, and C{events --since} replays them.
        """
        client = self.client
        client.ok("run aa memory sleep infinity")
        live: list = []
        self.events.subscribe(live.append)
        self.fill()
        client.ok("kill aa")
        self.clock.advance(0)
        self.assertEqual([(e.id, e.action) for e in live], [(3, "kill"), (4, "die")])
        replay = self.events.since(0)
        self.assertEqual([e.id for e in replay], [1, 2, 3, 4])
        self.free()
        self.clock.advance(RETRY_INTERVAL)
        self.assertEqual(self.eventStore.lastId(), 4)

    def test_startRefused(self) -> None:
        """
        What would start a process that a later daemon could not find is
        refused with the reason: C{run} and C{create} of a new container.
        """
        self.fill()
        self.assertEqual(self.client.err("run aa memory sleep infinity"), "backend")
        self.assertEqual(self.client.ok("list"), [])

    def test_logsSayLinesDropped(self) -> None:
        """C{logs} ends with a line of the daemon's saying lines were dropped."""
        self.disk.room = 0
        self.client.ok("run aa memory echo hello world")
        self.clock.advance(1)
        [line] = self.client.ok("logs aa")
        self.assertEqual(
            (line["stream"], line["line"]), ("pycm", "[pycm: 1 lines dropped: disk full]")
        )


class ClientFormatTests(SynchronousTestCase):
    """The client tells a person when a change is not saved yet."""

    def test_notSaved(self) -> None:
        """C{stop}, C{kill} and C{rm} replies with C{saved} false say so."""
        container = {"name": "web", "image": "host", "state": "exited", "exit_code": -9,
                     "saved": False}
        self.assertEqual(
            fmt.formatReply("kill", container, 0), ["web  exited  exit code -9" + fmt.NOT_SAVED]
        )
        self.assertEqual(
            fmt.formatReply("rm", {"name": "web", "removed": True, "saved": False}, 0),
            ["web removed" + fmt.NOT_SAVED],
        )
        del container["saved"]
        self.assertEqual(fmt.formatReply("stop", container, 0), ["web  exited  exit code -9"])
