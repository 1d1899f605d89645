"""
Tests for the JSON of C{list}: each container's summary encoded once per
container value (L{pycm.model.Container.summaryJSON}) and joined
(L{pycm.daemon.replies.encodeSummaries}), many at first a slice a turn.
"""

from __future__ import annotations

import json

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from pycm.daemon.replies import (
    SUMMARIES_AT_ONCE,
    SUMMARIES_PER_TURN,
    encodeListing,
    encodeReply,
    encodeSummaries,
)
from pycm.model import Container, Replicas, cachedSummaryJSON
from pycm.testing.server import FakeServer
from pycm.wirejson import EncodedArray, encodeJSONBytes


def container(name: str, **fields: object) -> Container:
    """A container value as a backend reports one."""
    values: dict = dict(
        name=name, id="id-" + name, backend="memory", image="img", command=("sh", "-c", "é"),
        state="running", created=1.5, labels={"k": "v"},
    )
    values.update(fields)
    return Container(**values)  # type: ignore[arg-type]


class SummaryJSONTests(SynchronousTestCase):
    def test_sameAsTheSummary(self) -> None:
        """The cached JSON is the wire's encoding of the summary, whatever it holds."""
        for value in (
            container("a"),
            container("b", saved=False, exitCode=3, finished=2.0),
            container("c", replicas=Replicas(1, 2)),
        ):
            self.assertEqual(value.summaryJSON(), encodeJSONBytes(value.summary()))
            self.assertEqual(json.loads(value.summaryJSON()), value.summary())

    def test_encodedOnce(self) -> None:
        """A container value is encoded on first use only; a changed one anew."""
        value = container("a")
        self.assertIsNone(cachedSummaryJSON(value))
        first = value.summaryJSON()
        self.assertIs(value.summaryJSON(), first)
        self.assertIs(cachedSummaryJSON(value), first)
        self.assertEqual(value, container("a"))
        changed = attrs.evolve(value, state="exited")
        self.assertIsNone(cachedSummaryJSON(changed))
        self.assertIn(b'"state":"exited"', changed.summaryJSON())


class EncodeSummariesTests(SynchronousTestCase):
    def test_fewAtOnce(self) -> None:
        """Up to SUMMARIES_AT_ONCE not yet encoded: the array at once."""
        values = [container(f"c{i:04d}") for i in range(SUMMARIES_AT_ONCE)]
        result = encodeSummaries(Clock(), values)
        assert isinstance(result, EncodedArray)
        self.assertEqual(result.decode(), [value.summary() for value in values])
        self.assertEqual(
            encodeReply(b"OK", result),
            encodeReply(b"OK", [value.summary() for value in values]),
        )

    def test_manyInSlices(self) -> None:
        """
        More than SUMMARIES_AT_ONCE not yet encoded: SUMMARIES_PER_TURN a
        reactor turn, then the same array as encoded at once.
        """
        clock = Clock()
        values = [container(f"c{i:04d}") for i in range(SUMMARIES_AT_ONCE + 11)]
        # Encoded already: they cost nothing and do not count.
        for value in values[:10]:
            value.summaryJSON()
        result = encodeSummaries(clock, values)
        assert isinstance(result, Deferred)
        encoded = sum(cachedSummaryJSON(value) is not None for value in values)
        self.assertEqual(encoded, 10 + SUMMARIES_PER_TURN)
        self.assertNoResult(result)
        clock.advance(0)
        array = self.successResultOf(result)
        self.assertEqual(array.decode(), [value.summary() for value in values])

    def test_listOfManyThroughTheProtocol(self) -> None:
        """
        A first C{list} of many containers is one line, answered once its
        slices are encoded; another connection's ping is answered meanwhile.
        """
        server = FakeServer()
        conn = server.connect()
        count = SUMMARIES_AT_ONCE + SUMMARIES_PER_TURN + 1
        conn.send("".join(f"create c{i:04d}\n" for i in range(count)))
        for _ in range(count):
            server.clock.advance(0)
        conn.lines()
        conn.send("list\n")
        self.assertEqual(conn.lines(), [])
        other = server.connect()
        self.assertEqual(other.ok("ping"), "pong")
        server.clock.advance(0)
        [(kind, value)] = conn.replies()
        self.assertEqual(kind, "OK")
        self.assertEqual([item["name"] for item in value], [f"c{i:04d}" for i in range(count)])
        # Encoded now: the next list is answered at once, the same.
        conn.send("list\n")
        self.assertEqual(conn.replies(), [("OK", value)])


class EncodedArrayTests(SynchronousTestCase):
    def test_line(self) -> None:
        """The line is the prefix, the array's JSON and the suffix, for any length."""
        for items in ([], [b"1"], [b"1", b"2"], [b'"a"', b"{}", b"[3]"]):
            array = EncodedArray(items)
            expected = b"[" + b",".join(items) + b"]"
            self.assertEqual(array.encode(), expected)
            self.assertEqual(array.line(b"OK ", b"\n"), b"OK " + expected + b"\n")
            self.assertEqual(array.decode(), [json.loads(item) for item in items])


class EncodeListingTests(SynchronousTestCase):
    def test_sortedByName(self) -> None:
        """Every container's summary, sorted by name, whatever the backend's order."""
        values = [container(name) for name in ("b", "c", "a")]
        result = encodeListing(Clock(), values)
        assert isinstance(result, EncodedArray)
        self.assertEqual([item["name"] for item in result.decode()], ["a", "b", "c"])
        self.assertEqual([value.name for value in values], ["b", "c", "a"])

    def test_sameContainersSameArray(self) -> None:
        """
        The same containers listed again give the same array and line, not
        made again; one changed container gives a new one, with the change.
        """
        values = [container(f"c{i}") for i in range(5)]
        first = encodeListing(Clock(), list(values))
        assert isinstance(first, EncodedArray)
        line = first.line(b"OK ", b"\n")
        again = encodeListing(Clock(), list(values))
        self.assertIs(again, first)
        self.assertIs(first.line(b"OK ", b"\n"), line)
        values[2] = attrs.evolve(values[2], state="exited")
        changed = encodeListing(Clock(), values)
        assert isinstance(changed, EncodedArray)
        self.assertIsNot(changed, first)
        self.assertEqual(changed.decode()[2]["state"], "exited")
        shorter = encodeListing(Clock(), values[:4])
        assert isinstance(shorter, EncodedArray)
        self.assertEqual(len(shorter.decode()), 4)

    def test_backendChangingItsList(self) -> None:
        """A backend that changes the list it returned does not fool the next list."""
        values = [container(f"c{i}") for i in range(3)]
        encodeListing(Clock(), values)
        values.append(container("c3"))
        result = encodeListing(Clock(), values)
        assert isinstance(result, EncodedArray)
        self.assertEqual(len(result.decode()), 4)

    def test_listThroughTheProtocolAfterAChange(self) -> None:
        """C{list} twice, then after a change: each reply is the containers as they are."""
        conn = FakeServer().connect()
        conn.ok("create bb")
        conn.ok("create aa")
        self.assertEqual([c["name"] for c in conn.ok("list")], ["aa", "bb"])
        self.assertEqual([c["state"] for c in conn.ok("list")], ["created", "created"])
        conn.ok("start bb")
        self.assertEqual([c["state"] for c in conn.ok("list")], ["created", "running"])
        conn.ok("rm --force bb")
        self.assertEqual([c["name"] for c in conn.ok("list")], ["aa"])
