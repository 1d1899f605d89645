"""
Tests for L{pycm.daemon.fanout}: each event encoded once for every
subscriber, filters evaluated once per distinct filter, and, through the
protocol on fake transports, every subscriber's events in order, none
lost, and a subscriber too far behind dropped without slowing the others.
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger
from twisted.trial.unittest import SynchronousTestCase

from pycm.daemon import fanout
from pycm.daemon.eventlog import EventLog
from pycm.daemon.fanout import EventFanOut, encodeEventLine
from pycm.model import ContainerEvent, ProgressEvent
from pycm.testing.server import FakeServer


def event(action: str = "create", name: str = "web", eventId: int = 1) -> ContainerEvent:
    return ContainerEvent(action, name, 1.0, id=eventId)


class EventFanOutTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.encoded: list[object] = []
        self.evaluated: list[dict[str, set[str]]] = []
        realEncode, realMatches = fanout.encodeEventLine, fanout.eventMatches

        def encode(e: Any) -> bytes:
            self.encoded.append(e)
            return realEncode(e)

        def matches(e: Any, filters: dict[str, set[str]]) -> bool:
            self.evaluated.append(filters)
            return realMatches(e, filters)

        self.patch(fanout, "encodeEventLine", encode)
        self.patch(fanout, "eventMatches", matches)

    def test_encodedOnceForAll(self) -> None:
        """
        Every subscriber gets the very same bytes object, the event's EVENT
        line with its LF, encoded once.
        """
        lines = EventFanOut()
        got: list[list[bytes]] = [[] for _ in range(5)]
        for sink in got:
            lines.add(sink.append, {})
        e = event()
        lines.publish(e)
        self.assertEqual(self.encoded, [e])
        self.assertEqual({id(sink[0]) for sink in got}, {id(got[0][0])})
        self.assertEqual(got[0], [encodeEventLine(e)])
        self.assertTrue(got[0][0].startswith(b'EVENT {"type":"container","id":1,'))
        self.assertTrue(got[0][0].endswith(b"\n"))

    def test_filterOncePerDistinctFilter(self) -> None:
        """
        Subscribers with equal filters share one evaluation; no filter
        costs none; an event nobody wants is not encoded.
        """
        lines = EventFanOut()
        webs: list[list[bytes]] = [[] for _ in range(4)]
        for sink in webs:
            lines.add(sink.append, {"name": {"web"}})
        dbs: list[bytes] = []
        lines.add(dbs.append, {"name": {"db"}, "action": {"create"}})
        lines.publish(event(name="other"))
        self.assertEqual((len(self.evaluated), self.encoded), (2, []))
        allOf: list[bytes] = []
        lines.add(allOf.append, {})
        lines.publish(event(name="web", eventId=2))
        self.assertEqual(len(self.evaluated), 4)
        self.assertEqual(len(self.encoded), 1)
        self.assertEqual([len(sink) for sink in webs] + [len(dbs), len(allOf)], [1] * 4 + [0, 1])

    def test_addAgainChangesFilter(self) -> None:
        """A subscriber added again keeps only its newer filter; len counts it once."""
        lines = EventFanOut()
        got: list[bytes] = []
        lines.add(got.append, {"name": {"web"}})
        lines.add(got.append, {"name": {"db"}})
        self.assertEqual(len(lines), 1)
        lines.publish(event(name="web"))
        lines.publish(event(name="db", eventId=2))
        self.assertEqual([b'"id":2' in line for line in got], [True])

    def test_filterCopied(self) -> None:
        """Changing the caller's filter afterwards changes nothing."""
        lines = EventFanOut()
        got: list[bytes] = []
        filters = {"name": {"web"}}
        lines.add(got.append, filters)
        filters["name"].add("db")
        lines.publish(event(name="db"))
        self.assertEqual(got, [])

    def test_removedWhileHandingOut(self) -> None:
        """
        A subscriber may remove another (or itself) while an event is handed
        out: the event still reaches everyone it was handed to, nothing
        fails, and the next event skips the removed one.
        """
        lines = EventFanOut()
        second: list[bytes] = []

        def first(line: bytes) -> None:
            lines.remove(second.append)
            lines.remove(first)

        lines.add(first, {})
        lines.add(second.append, {})
        lines.publish(event())
        lines.publish(event(eventId=2))
        self.assertEqual(len(second), 1)
        self.assertEqual(len(lines), 0)
        lines.remove(first)  # no error

    def test_failingSubscriberLogged(self) -> None:
        """A subscriber that raises is logged; the others still get the event."""
        logged: list[dict[str, Any]] = []
        self.patch(EventFanOut, "log", Logger(observer=logged.append))
        lines = EventFanOut()

        def broken(line: bytes) -> None:
            raise RuntimeError("boom")

        got: list[bytes] = []
        lines.add(broken, {})
        lines.add(got.append, {})
        lines.publish(event())
        self.assertEqual(len(got), 1)
        self.assertEqual(len(logged), 1)
        self.assertIn("log_failure", logged[0])

    def test_progressEvents(self) -> None:
        """Progress events (not numbered, not kept) go out too, filtered by name."""
        log = EventLog()
        got: list[bytes] = []
        log.lines.add(got.append, {"name": {"web"}})
        log.record(ProgressEvent("web", "pull", "pulling", 1.0))
        log.record(ProgressEvent("db", "pull", "pulling", 1.0))
        self.assertEqual(len(got), 1)
        self.assertIn(b'"type":"progress"', got[0])
        self.assertEqual(log.subscriberCount, 1)


class ManySubscribersTests(SynchronousTestCase):
    """Many event connections on fake transports, through the protocol."""

    def test_everyEventInOrderToEverySubscriber(self) -> None:
        """
        50 subscribers (a few filtered) get every event they want, in
        order, as the same bytes on the wire.
        """
        server = FakeServer()
        subscribers = [server.connect() for _ in range(50)]
        for conn in subscribers[:45]:
            self.assertTrue(conn.ok("events")["events"])
        for conn in subscribers[45:]:
            conn.ok("events --filter name=c7 --filter action=destroy")
        maker = server.connect()
        for i in range(100):
            maker.ok(f"create c{i}")
        for i in range(100):
            maker.ok(f"rm c{i}")
        everything = subscribers[0].lines()
        self.assertEqual(
            [line.split(b'"id":')[1].split(b",")[0] for line in everything],
            [str(i).encode() for i in range(1, 201)],
        )
        for conn in subscribers[1:45]:
            self.assertEqual(conn.lines(), everything)
        for conn in subscribers[45:]:
            [line] = conn.lines()
            self.assertIn(b'"action":"destroy","name":"c7"', line)

    def test_slowSubscriberDroppedOthersNot(self) -> None:
        """
        A subscriber that stops reading is disconnected once its unread
        events pass the backlog limit; the others, before and after it in
        the fan-out, get every event in order and keep being served.
        """
        server = FakeServer(maxEventBacklog=2048)
        before = server.connect()
        before.ok("events")
        slow = server.connect()
        slow.ok("events")
        after = server.connect()
        after.ok("events")
        slow.transport.producer.pauseProducing()
        maker = server.connect()
        for i in range(30):
            maker.ok(f"create c{i}")
        self.assertTrue(slow.transport.disconnected)
        slow.disconnect()
        self.assertEqual(server.events.subscriberCount, 2)
        for conn in (before, after):
            lines = conn.lines()
            self.assertEqual(len(lines), 30)
            self.assertTrue(lines[-1].endswith(b'"name":"c29","time":"1970-01-01T00:00:00.000Z"}'))
            self.assertFalse(conn.transport.disconnected)
            self.assertEqual(conn.ok("ping"), "pong")

    def test_queuedWhilePausedThenInOrder(self) -> None:
        """
        Events for a subscriber not reading (under the backlog limit) wait
        as the shared lines, and go out in order once it reads.
        """
        server = FakeServer()
        slow = server.connect()
        slow.ok("events")
        slow.transport.producer.pauseProducing()
        maker = server.connect()
        for i in range(5):
            maker.ok(f"create c{i}")
        self.assertEqual(slow.lines(), [])
        self.assertEqual(len(slow.protocol._events), 5)
        slow.transport.producer.resumeProducing()
        self.assertEqual(
            [line.split(b'"name":"')[1][:2] for line in slow.lines()],
            [b"c0", b"c1", b"c2", b"c3", b"c4"],
        )
