"""
Tests for C{events --since} replayed in slices (L{pycm.daemon.replay}),
on fake transports and a L{Clock}: one slice a reactor turn, other
connections served in between, and no gap or double between the replay
and the live events that come during it.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from pycm.daemon import replay
from pycm.daemon.eventlog import EventLog, MemoryEventStore
from pycm.daemon.replay import EventReplay
from pycm.daemon.session import Session
from pycm.model import ContainerEvent
from pycm.testing.server import FakeConnection, FakeServer, RecordingConnection

#: The slice the tests replay in (patched in: the daemon's is larger).
REPLAY_SLICE = 16
#: Enough events for four slices and a bit.
EVENTS = 4 * REPLAY_SLICE + 10


def eventIds(lines: list[bytes]) -> list[int]:
    """The ids of the EVENT lines among C{lines}."""
    return [json.loads(line[6:])["id"] for line in lines if line.startswith(b"EVENT ")]


def turn(clock: Clock) -> None:
    """
    One reactor turn: the calls due now, not the zero-delay calls they
    make (which the reactor leaves to its next turn, and L{Clock.advance}
    would run at once).
    """
    due = [call for call in clock.getDelayedCalls() if call.getTime() <= clock.seconds()]
    for call in due:
        if call.active():
            func, args, kw = call.func, call.args, call.kw
            call.cancel()
            func(*args, **kw)


def stalledReplay(server: FakeServer, requests: str) -> FakeConnection:
    """
    A connection that sent C{requests} (C{events --since}...) and stopped
    reading; ten turns later its replay waits, with nothing scheduled.
    """
    slow = server.connect()
    slow.send(requests)
    slow.stopReading()
    for _ in range(10):
        turn(server.clock)
    assert server.clock.getDelayedCalls() == [], "the replay did not wait"
    return slow


def drain(server: FakeServer) -> None:
    """Run the reactor turns until nothing is scheduled."""
    while server.clock.getDelayedCalls():
        turn(server.clock)


def withEvents(count: int) -> tuple[FakeServer, FakeConnection]:
    """A server whose log holds C{count} events, and the connection that made them."""
    server = FakeServer()
    maker = server.connect()
    for i in range(count):
        maker.ok(f"create c{i}")
    return server, maker


class SlicedReplayTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.patch(replay, "REPLAY_SLICE", REPLAY_SLICE)

    def test_oneSliceATurn(self) -> None:
        """
        The OK reply, then one slice of events in the same turn, then one a
        turn (a zero-delay call), until last_id; nothing more after.
        """
        server, _ = withEvents(EVENTS)
        conn = server.connect()
        conn.send("events --since 0\n")
        lines = conn.lines()
        self.assertEqual(lines[0], b'OK {"events":true,"last_id":%d}' % EVENTS)
        self.assertEqual(eventIds(lines), list(range(1, REPLAY_SLICE + 1)))
        seen = eventIds(lines)
        turns = 0
        while server.clock.getDelayedCalls():
            turn(server.clock)
            turns += 1
            slice = eventIds(conn.lines())
            self.assertLessEqual(len(slice), REPLAY_SLICE)
            seen += slice
        self.assertEqual(turns, 4)
        self.assertEqual(seen, list(range(1, EVENTS + 1)))

    def test_othersServedMeanwhile(self) -> None:
        """
        While a replay runs, another connection's request is answered at
        once, and so is a request of the replaying connection itself.
        """
        server, _ = withEvents(EVENTS)
        conn = server.connect()
        conn.send("events --since 0\n")
        conn.lines()
        other = server.connect()
        other.send("ping\n")
        self.assertEqual(other.lines(), [b'OK "pong"'])
        conn.send("ping\n")
        self.assertIn(b'OK "pong"', conn.lines())
        self.assertTrue(server.clock.getDelayedCalls())

    def test_liveEventsDuringReplay(self) -> None:
        """
        Events made while the replay runs come after it, once each and in
        order: no gap, no double, whatever the turn they come in.
        """
        server, maker = withEvents(EVENTS)
        conn = server.connect()
        conn.send("events --since 5\n")
        seen = eventIds(conn.lines())
        made = EVENTS
        while server.clock.getDelayedCalls():
            maker.send(f"create live{made}\n")
            maker.send(f"rm live{made}\n")
            made += 2
            turn(server.clock)
            seen += eventIds(conn.lines())
        maker.lines()
        maker.ok("create last")
        seen += eventIds(conn.lines())
        self.assertEqual(seen, list(range(6, made + 2)))

    def test_filteredReplay(self) -> None:
        """A filter applies to the replay and to the live events after it."""
        server, maker = withEvents(EVENTS)
        conn = server.connect()
        conn.send("events --since 0 --filter name=c7 --filter name=c70\n")
        maker.ok("rm c7")
        server.clock.advance(0)
        while server.clock.getDelayedCalls():
            server.clock.advance(0)
        values = [json.loads(line[6:]) for line in conn.lines() if line.startswith(b"EVENT")]
        self.assertEqual(
            [(v["action"], v["name"]) for v in values],
            [("create", "c7"), ("create", "c70"), ("destroy", "c7")],
        )

    def test_offStopsTheReplay(self) -> None:
        """events --off during a replay: nothing more after its reply."""
        server, maker = withEvents(EVENTS)
        conn = server.connect()
        conn.send("events --since 0\n")
        conn.lines()
        self.assertFalse(conn.ok("events --off")["events"])
        maker.ok("create after")
        server.clock.advance(0)
        self.assertEqual(conn.lines(), [])
        self.assertEqual(server.clock.getDelayedCalls(), [])
        self.assertEqual(server.events.subscriberCount, 0)

    def test_eventsAgainFinishesTheReplay(self) -> None:
        """
        A second C{events} while a replay runs: the rest of the first
        replay (a slice a turn, as the client reads), and the live events it
        held, come before the second reply.
        """
        server, maker = withEvents(EVENTS)
        conn = server.connect()
        conn.send("events --since 0\n")
        seen = eventIds(conn.lines())
        maker.ok("create held")
        conn.send("events\n")
        while server.clock.getDelayedCalls():
            turn(server.clock)
        lines = conn.lines()
        self.assertEqual(lines[-1], b'OK {"events":true,"last_id":%d}' % (EVENTS + 1))
        seen += eventIds(lines)
        self.assertEqual(seen, list(range(1, EVENTS + 2)))
        self.assertEqual(server.clock.getDelayedCalls(), [])

    def test_disconnectDuringReplay(self) -> None:
        """A connection gone during its replay leaves no call and no subscription."""
        server, _ = withEvents(EVENTS)
        conn = server.connect()
        conn.send("events --since 0\n")
        conn.disconnect()
        self.assertEqual(server.clock.getDelayedCalls(), [])
        self.assertEqual(server.events.subscriberCount, 0)

    def test_replayPacedByTheClient(self) -> None:
        """
        A client that does not read its replay holds up the replay, not
        the daemon's memory: once its connection is full, no further slice
        is read from the log nor anything scheduled for it; when it reads
        again, the rest comes in order, then the live events held meanwhile.
        """
        server, maker = withEvents(EVENTS)
        slow = stalledReplay(server, "events --since 0\n")
        self.assertLessEqual(len(slow.protocol._events), REPLAY_SLICE)
        maker.ok("create live")
        slow.startReading()
        drain(server)
        self.assertEqual(eventIds(slow.lines()), list(range(1, EVENTS + 2)))
        self.assertFalse(slow.closed)

    def test_eventsAgainWaitsForTheReplay(self) -> None:
        """
        C{events --since} asked again, in the same read, while a replay
        runs: its reply waits for the replay to be over, at the client's
        pace, instead of writing the rest of the log at once; then its own
        replay follows, as the client reads.
        """
        server, _ = withEvents(EVENTS)
        slow = stalledReplay(server, "events --since 0\nevents --since 0\n")
        written = slow.lines()
        self.assertLessEqual(len(eventIds(written)), 2 * REPLAY_SLICE)
        slow.startReading()
        drain(server)
        lines = written + slow.lines()
        replies = [i for i, line in enumerate(lines) if line.startswith(b"OK ")]
        self.assertEqual(len(replies), 2)
        self.assertEqual(eventIds(lines[: replies[1]]), list(range(1, EVENTS + 1)))
        self.assertEqual(eventIds(lines[replies[1] :]), list(range(1, EVENTS + 1)))

    def test_fellBehindClosedNotGapped(self) -> None:
        """
        A client that reads its replay so slowly that the log drops events
        it has not been sent is closed once the replay reaches them, never
        sent the rest with a gap it could not see; others are served.
        """
        server = FakeServer()
        server.events.store = MemoryEventStore(retain=6 * REPLAY_SLICE)
        maker = server.connect()
        for i in range(6 * REPLAY_SLICE):
            maker.ok(f"create c{i}")
        slow = stalledReplay(server, "events --since 0\n")
        for i in range(6 * REPLAY_SLICE):
            maker.ok(f"create d{i}")
        slow.startReading()
        drain(server)
        ids = eventIds(slow.lines())
        self.assertGreaterEqual(len(ids), REPLAY_SLICE)
        self.assertEqual(ids, list(range(1, len(ids) + 1)))
        self.assertTrue(slow.closed)
        self.assertEqual(maker.ok("ping"), "pong")

    def test_heldLiveCountedWhileReplayWaits(self) -> None:
        """
        The live events held up behind a replay the client does not read
        count against its backlog as they come: under the limit it stays,
        past it it is dropped as a slow subscriber; another subscriber gets
        every live event and the daemon still answers.
        """
        server = FakeServer(maxEventBacklog=256 * 20)
        maker = server.connect()
        for i in range(EVENTS):
            maker.ok(f"create c{i}")
        reader = server.connect()
        reader.ok("events")
        reader.lines()
        slow = server.connect()
        slow.send("events --since 0\n")
        slow.stopReading()
        for i in range(20):
            maker.ok(f"create live{i}")
        self.assertFalse(slow.closed)
        for i in range(20, 25):
            maker.ok(f"create live{i}")
        self.assertTrue(slow.closed)
        while server.clock.getDelayedCalls():
            turn(server.clock)
        self.assertEqual(eventIds(reader.lines()), list(range(EVENTS + 1, EVENTS + 26)))
        self.assertEqual(reader.ok("ping"), "pong")

    def test_sinceLastIdOrAboveReplaysNothing(self) -> None:
        """--since at or above the last id replays nothing and schedules nothing."""
        server, _ = withEvents(3)
        conn = server.connect()
        self.assertEqual(conn.ok("events --since 3")["last_id"], 3)
        self.assertEqual(conn.ok("events --since 99")["last_id"], 3)
        self.assertEqual(server.clock.getDelayedCalls(), [])


class ReplayFailureTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.patch(replay, "REPLAY_SLICE", REPLAY_SLICE)

    def test_logUnreadableLater(self) -> None:
        """
        If the log cannot be read for a later slice, the failure is logged
        and the session sends nothing more (no silent gap): it is no longer
        subscribed.
        """
        server, _ = withEvents(EVENTS)
        clock, log = server.clock, server.events
        state = server.state
        connection = RecordingConnection()
        session = Session(state, connection, requireAuth=False)
        session.subscribe({}, 0)
        connection.reply()
        self.assertEqual(len(connection.events), REPLAY_SLICE)

        def broken(eventId: int, limit: int = 0) -> Any:
            raise OSError("disk I/O error")

        self.patch(log.store, "since", broken)
        clock.advance(0)
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)
        self.assertFalse(session.subscribed)
        self.assertEqual(log.subscriberCount, 0)

    def test_firstSliceErrorIsTheRequests(self) -> None:
        """An error reading the first slice is the request's: nothing subscribed."""
        server, _ = withEvents(3)

        def broken(eventId: int, limit: int = 0) -> Any:
            raise OSError("disk I/O error")

        self.patch(server.events.store, "since", broken)
        conn = server.connect()
        conn.err("events --since 0")
        self.flushLoggedErrors(OSError)
        self.assertEqual(server.events.subscriberCount, 0)
        self.assertFalse(conn.protocol.session.subscribed)

    def test_replayStandsAlone(self) -> None:
        """
        L{EventReplay} alone: finish sends what is left at once and calls
        done(True) once; cancel stops it without calling done.
        """
        clock = Clock()
        log = EventLog()
        for i in range(3 * REPLAY_SLICE):
            log.record(ContainerEvent("create", f"c{i}", 1.0))
        sent: list[Any] = []
        done: list[bool] = []
        replay = EventReplay(log, clock, 0, log.lastId, {}, sent.append, done.append)
        replay.start()
        self.assertEqual(len(sent), REPLAY_SLICE)
        replay.finish()
        self.assertEqual(
            ([v["id"] for v in sent], done), (list(range(1, 3 * REPLAY_SLICE + 1)), [True])
        )
        self.assertEqual(clock.getDelayedCalls(), [])
        other = EventReplay(log, clock, 0, log.lastId, {}, sent.append, done.append)
        other.start()
        other.cancel()
        self.assertFalse(other.running)
        self.assertEqual((clock.getDelayedCalls(), done), ([], [True]))
