"""
Tests for a swarm service's logs (L{pycm.backends.swarm.logs},
L{pycm.backends.swarm.loglines}): on the fake swarm manager on a clock,
on a scripted manager for the exact replays of a real one, and on the
real two-node swarm (C{PYCM_SWARM_HOST}; skipped without it, failed
without it under C{PYCM_REQUIRE_SWARM=1}).
"""

from __future__ import annotations

import os
import struct
import uuid
from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from pycm.backends.docker.engine import EngineError
from pycm.backends.swarm.loglines import (
    TaskCursor,
    inTimeOrder,
    nanosParam,
    parseBody,
    splitDetails,
    stampNanos,
)
from pycm.backends.swarm.logs import ServiceLogReader
from pycm.errors import NotFound
from pycm.model import LogFollow, LogLine
from pycm.testing import advanceClock, settleClock
from pycm.testing.swarmengine import FakeSwarmEngine
from tests.stubengine import StubEngine, wholeStream
from tests.swarmsupport import pollUntil, realManager, removeServices, uniqueServiceName

#: A line as the real manager (dockerd 20.10) sent it, framed.
REAL_LINE = (
    b"2026-11-30T21:05:29.958969697Z com.docker.swarm.node.id=911bn33xge7u9by6uhdlpuciz,"
    b"com.docker.swarm.service.id=k0sym7lbz89ve2ginh4vixjdh,"
    b"com.docker.swarm.task.id=j8jxv4e59m2wwsj4mxsqrolv7 out 2 527f96afc20b\n"
)


def framed(payload: bytes, stream: int = 1) -> bytes:
    return struct.pack(">BxxxL", stream, len(payload)) + payload


class LogLinePartsTests(SynchronousTestCase):
    """The pieces of a service's log lines (L{pycm.backends.swarm.loglines})."""

    def test_stampNanos(self) -> None:
        """Timestamps are exact integer nanoseconds, in any zone; junk is 0."""
        self.assertEqual(stampNanos("1970-01-01T00:00:01.000000002Z"), 1_000_000_002)
        self.assertEqual(stampNanos("1970-01-01T01:00:01.5+01:00"), 1_500_000_000)
        self.assertEqual(stampNanos("1970-01-01T00:00:03Z"), 3_000_000_000)
        self.assertEqual(stampNanos("yesterday"), 0)
        self.assertEqual(stampNanos(None), 0)
        self.assertEqual(nanosParam(1_000_000_002), "1.000000002")

    def test_splitDetails(self) -> None:
        """A line's details are its first word of C{k=v} pairs, values unescaped."""
        self.assertEqual(
            splitDetails("a=1,b=x%20y hello world"), ({"a": "1", "b": "x y"}, "hello world")
        )
        self.assertEqual(splitDetails("a=1 "), ({"a": "1"}, ""))
        self.assertEqual(splitDetails("no details here"), ({}, "no details here"))
        self.assertEqual(splitDetails(" text after no details"), ({}, "text after no details"))

    def test_realLine(self) -> None:
        """A real manager's line gives its task, node id, exact time and text."""
        [line] = parseBody(framed(REAL_LINE))
        self.assertEqual(line.task, "j8jxv4e59m2wwsj4mxsqrolv7")
        self.assertEqual(line.nodeId, "911bn33xge7u9by6uhdlpuciz")
        self.assertEqual(line.nanos, stampNanos("2026-11-30T21:05:29.958969697Z"))
        self.assertEqual((line.stream, line.text), ("stdout", "out 2 527f96afc20b"))
        logLine = line.logLine({"911bn33xge7u9by6uhdlpuciz": "worker"})
        self.assertEqual((logLine.task, logLine.node), ("j8jxv4e59m2wwsj4mxsqrolv7", "worker"))

    def test_inTimeOrder(self) -> None:
        """Lines read task by task are merged by time, ties kept in order."""
        body = b"".join(
            framed(f"1970-01-01T00:00:0{s}Z task.id={t} {t}{s}\n".encode(), n)
            for s, t, n in ((3, "a", 1), (5, "a", 2), (1, "b", 1), (3, "b", 1), (4, "c", 2))
        )
        texts = [line.text for line in inTimeOrder(parseBody(body))]
        self.assertEqual(texts, ["b1", "a3", "b3", "c4", "a5"])

    def test_cursor(self) -> None:
        """
        A replay lets through what was not given yet: per task, lines after
        the last given, and at its very time only those beyond the count
        given (a third line at that time is new).
        """
        body = b"".join(
            framed(f"1970-01-01T00:00:0{s}Z com.docker.swarm.task.id={t} {x}\n".encode())
            for s, t, x in ((1, "a", "a1"), (2, "a", "a2"), (2, "a", "a2'"), (1, "b", "b1"))
        )
        cursor = TaskCursor()
        for line in parseBody(body)[1:3]:
            cursor.given(line)
        replay = body + framed(b"1970-01-01T00:00:02Z com.docker.swarm.task.id=a a2''\n")
        admit = cursor.replay()
        self.assertEqual([x.text for x in parseBody(replay) if admit(x)], ["b1", "a2''"])
        # Nothing of a older than its lines given is new; b, first seen in
        # the replay, may yet write a line up to REORDER_MARGIN older.
        self.assertEqual(cursor.earliest(["a"]), 2_000_000_000)
        self.assertEqual(cursor.earliest(["a", "b"]), 0)

    def test_cursorLateLine(self) -> None:
        """
        A line older than its task's last given is new if it was not given
        itself (a task's two streams are written out of their times' order),
        unless it is older than where the cursor starts from, or older than
        the last given by more than REORDER_MARGIN.
        """

        def line(nanos: int, text: str, stream: int = 1) -> Any:
            [raw] = parseBody(
                framed(f"{_stamp(nanos)} com.docker.swarm.task.id=a {text}\n".encode(), stream)
            )
            return raw

        cursor = TaskCursor()
        for given in (line(5 * S, "err 1", 2), line(10 * S + 57_000, "err 2", 2)):
            cursor.given(given)
        cursor.startFrom(5 * S)
        self.assertEqual(cursor.earliest(["a"]), 9 * S + 57_000)
        replay = [
            line(5 * S, "err 1", 2),
            line(10 * S, "out 2"),
            line(10 * S + 57_000, "err 2", 2),
            line(10 * S + 57_000, "err 2'", 2),
            line(9 * S, "too old"),
        ]
        admit = cursor.replay()
        self.assertEqual([x.text for x in replay if admit(x)], ["out 2", "err 2'"])
        self.assertEqual([x.text for x in replay if cursor.replay()(x)], [])
        cursor.startFrom(11 * S)
        self.assertFalse(cursor.replay()(line(10 * S + 1, "older than the start")))


def service(engine: FakeSwarmEngine, command: list[str], replicas: int = 1, **fields: Any) -> str:
    """Create a service on C{engine} straight away; its id."""
    template: dict[str, Any] = {"ContainerSpec": {"Image": "busybox", "Args": command}}
    template.update(fields)
    body = {
        "Name": "s" + uuid.uuid4().hex[:8],
        "TaskTemplate": template,
        "Mode": {"Replicated": {"Replicas": replicas}},
    }
    return str(engine.cluster.createService(body).id)


def write(engine: FakeSwarmEngine, sid: str, slot: int, text: str, stream: str = "stdout") -> None:
    """The running task of C{slot} writes a line."""
    [task] = [t for t in engine.tasksOf(sid) if t.slot == slot and t.state == "running"]
    node = engine.findNode(task.nodeId)
    node.engine.containers[task.containerId].run.write(stream, text)


class FakeManagerTests(SynchronousTestCase):
    """L{ServiceLogReader} on L{FakeSwarmEngine}."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.engine = FakeSwarmEngine(self.clock)
        self.reader = ServiceLogReader(self.clock, self.engine)
        self.cancelled: list[Deferred[None]] = []

    def settle(self, d: Deferred[Any]) -> Any:
        return self.successResultOf(settleClock(self.clock, d))

    def running(self, replicas: int = 2) -> str:
        sid = service(self.engine, ["sleep", "infinity"], replicas)
        advanceClock(self.clock, 5)
        nodes = {t.nodeId for t in self.engine.tasksOf(sid) if t.state == "running"}
        self.assertEqual(len(nodes), replicas)
        return sid

    def test_read(self) -> None:
        """
        A service's lines from tasks on both nodes, merged in time order,
        each with its task and its node's hostname; C{tail} counts overall.
        """
        sid = self.running()
        for n, slot in enumerate((1, 2, 2, 1, 2)):
            write(self.engine, sid, slot, f"line {n}")
            advanceClock(self.clock, 1)
        lines = self.settle(self.reader.read(sid, "web", None))
        self.assertEqual([x.line for x in lines], [f"line {n}" for n in range(5)])
        tasks = {t.slot: t for t in self.engine.tasksOf(sid)}
        hosts = {t.slot: self.engine.findNode(t.nodeId).hostname for t in tasks.values()}
        self.assertEqual(
            [(x.task, x.node) for x in lines[:2]],
            [(tasks[1].id, hosts[1]), (tasks[2].id, hosts[2])],
        )
        self.assertEqual(set(hosts.values()), {"manager", "worker"})
        tail = self.settle(self.reader.read(sid, "web", 2))
        self.assertEqual([x.line for x in tail], ["line 3", "line 4"])
        since = self.settle(self.reader.read(sid, "web", None, since=lines[2].time))
        self.assertEqual([x.line for x in since], ["line 2", "line 3", "line 4"])

    def test_readGone(self) -> None:
        """The logs of a service that is not there are L{NotFound}."""
        self.failureResultOf(
            settleClock(self.clock, self.reader.read("nope", "web", None)), NotFound
        )

    def follow(
        self, sid: str, tail: int | None = None, since: float | None = None
    ) -> tuple[LogFollow, list[LogLine], Deferred[None]]:
        seen: list[LogLine] = []
        stopped: Deferred[None] = Deferred(lambda d: self.cancelled.append(d))
        follow = self.settle(self.reader.follow(sid, "web", tail, seen.append, stopped, since))
        return follow, seen, stopped

    def test_follow(self) -> None:
        """
        The backlog, then the new lines of every task (one started since
        too), none in both; C{ended} fires once the service has stopped.
        """
        sid = self.running()
        write(self.engine, sid, 1, "old 1")
        write(self.engine, sid, 2, "old 2")  # at the same time: replayed, not doubled
        follow, seen, stopped = self.follow(sid, tail=1)
        self.assertEqual([x.line for x in follow.backlog], ["old 2"])
        write(self.engine, sid, 2, "new 2")
        advanceClock(self.clock, 1)
        write(self.engine, sid, 1, "new 1")
        self.assertEqual([x.line for x in seen], ["new 2", "new 1"])
        self.assertNoResult(follow.ended)
        stopped.callback(None)
        self.settle(follow.ended)
        write_after = [t for t in self.engine.tasksOf(sid) if t.state == "running"]
        self.assertTrue(write_after)
        write(self.engine, sid, 1, "after the end")
        self.assertEqual([x.line for x in seen], ["new 2", "new 1"])

    def test_followWholeBacklog(self) -> None:
        """A follow with no C{tail} gives the whole backlog, as a read with none does."""
        sid = self.running(1)
        for n in range(3):
            write(self.engine, sid, 1, f"old {n}")
            advanceClock(self.clock, 1)
        lines = self.settle(self.reader.read(sid, "web", None))
        follow, _, stopped = self.follow(sid)
        self.assertEqual([x.line for x in follow.backlog], ["old 0", "old 1", "old 2"])
        self.assertEqual(follow.backlog, lines)
        stopped.callback(None)
        self.settle(follow.ended)

    def test_followRestarts(self) -> None:
        """Lines of tasks that came and went while followed are all given, once."""
        sid = service(
            self.engine,
            ["delay", "1", "echo", "hi"],
            RestartPolicy={"Condition": "any", "Delay": 1_000_000_000},
        )
        advanceClock(self.clock, 3)
        follow, seen, stopped = self.follow(sid, tail=None)
        advanceClock(self.clock, 10)
        everything = self.settle(self.reader.read(sid, "web", None))
        given = follow.backlog + seen
        self.assertGreater(len(seen), 3)
        # The manager keeps 5 tasks a slot: the oldest lines are gone from it.
        self.assertEqual(given[-len(everything) :], everything)
        self.assertEqual(len({line.task for line in given}), len(given))
        stopped.callback(None)
        self.settle(follow.ended)

    def test_followRemoved(self) -> None:
        """
        The manager's stream goes on after its service is removed (as the
        real one's): the follow ends when the backend says it is gone, its
        last read (of a service no longer there) notwithstanding.
        """
        sid = self.running(1)
        write(self.engine, sid, 1, "last words")
        follow, seen, stopped = self.follow(sid, tail=0)
        self.settle(self.engine.request("DELETE", f"/services/{sid}"))
        advanceClock(self.clock, 5)
        self.assertNoResult(follow.ended)
        stopped.callback(None)
        self.settle(follow.ended)
        self.assertEqual(seen, [])

    def test_streamEndsAlone(self) -> None:
        """A stream the manager ends (it became unreachable) ends the follow."""
        sid = self.running(1)
        follow, seen, stopped = self.follow(sid)
        self.engine.setReachable(False)
        self.settle(follow.ended)
        self.assertEqual(self.cancelled, [stopped])

    def test_cancel(self) -> None:
        """A cancelled follow ends at once and gives no line after."""
        sid = self.running(1)
        follow, seen, stopped = self.follow(sid)
        follow.cancel()
        self.successResultOf(follow.ended)
        self.assertEqual(self.cancelled, [stopped])
        write(self.engine, sid, 1, "too late")
        advanceClock(self.clock, 1)
        self.assertEqual(seen, [])


class ScriptedManager(StubEngine):
    """
    A manager whose answers a test writes: the exact bytes a real one
    replays (from C{since}, inclusive, a task's lines at one time and all),
    which the fake manager, delivering each line once as it is written,
    cannot show.  Logs hold (nanos, task, node, text) lines.
    """

    def __init__(self) -> None:
        self.lines: list[tuple[int, str, str, str]] = []
        self.asked: list[tuple[str, str, dict[str, Any]]] = []
        self.onData: Callable[[bytes], object] | None = None
        self.streamEnded: Deferred[None] = Deferred()
        self.nodes = [{"ID": "n1", "Description": {"Hostname": "one"}}]

    def body(self, since: int, tail: Any = "all") -> bytes:
        """
        The lines from C{since} on, the last C{tail} of each task as they
        were written (not necessarily in time order, as a real log's).
        """
        kept = [line for line in self.lines if line[0] >= since]
        if tail != "all":
            perTask: dict[str, int] = {}
            for index in range(len(kept) - 1, -1, -1):
                task = kept[index][1]
                perTask[task] = perTask.get(task, 0) + 1
                if perTask[task] > int(tail):
                    del kept[index]
        return b"".join(
            framed(
                f"{_stamp(n)} com.docker.swarm.node.id={node},"
                f"com.docker.swarm.task.id={task} {text}\n".encode()
            )
            for n, task, node, text in kept
        )

    def request(self, method: str, path: str, params: Any = None, *a: Any, **k: Any) -> Any:
        self.asked.append((method, path, dict(params or {})))
        if path == "/nodes":
            return succeed((200, self.nodes))
        since = _nanos(params["since"]) if params and "since" in params else 0
        return succeed((200, self.body(since, (params or {}).get("tail", "all"))))

    def stream(self, method: str, path: str, params: Any, onData: Any, *a: Any, **k: Any) -> Any:
        if not params.get("follow"):
            # A read: what the manager holds, whole.
            d = self.request(method, path, params)
            return d.addCallback(lambda answer: wholeStream(onData, answer[1]))
        self.asked.append((method, path, dict(params)))
        self.onData = onData
        self.sinceNanos = _nanos(params["since"])
        stream = _ScriptedStream(self.streamEnded)
        return succeed(stream)

    def replay(self) -> None:
        """The stream sends what the manager holds from its C{since} on."""
        assert self.onData is not None
        self.onData(self.body(self.sinceNanos))

    def send(self, n: int, task: str, text: str, node: str = "n1") -> None:
        """A task writes a line, and the stream carries it."""
        self.lines.append((n, task, node, text))
        if self.onData is not None and not self.streamEnded.called:
            self.onData(self._one(n, task, node, text))

    def _one(self, n: int, task: str, node: str, text: str) -> bytes:
        return framed(
            f"{_stamp(n)} com.docker.swarm.node.id={node},com.docker.swarm.task.id={task} "
            f"{text}\n".encode()
        )


class _ScriptedStream:
    failure = None

    def __init__(self, ended: Deferred[None]) -> None:
        self.ended = ended
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True
        if not self.ended.called:
            self.ended.callback(None)


def _stamp(nanos: int) -> str:
    import time

    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(nanos // 10**9)) + (
        f".{nanos % 10**9:09d}Z"
    )


def _nanos(param: str) -> int:
    seconds, _, fraction = param.partition(".")
    return int(seconds) * 10**9 + int((fraction + "000000000")[:9])


S = 10**9


class ScriptedManagerTests(SynchronousTestCase):
    """L{ServiceLogReader.follow} against a manager's exact replays."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(100)
        self.manager = ScriptedManager()
        self.reader = ServiceLogReader(self.clock, self.manager, lambda: {"n1": "one"})
        self.seen: list[LogLine] = []
        self.cancelled: list[Deferred[None]] = []
        self.stopped: Deferred[None] = Deferred(self.cancelled.append)

    def follow(self, tail: int | None = None, ended: Any = lambda task: False) -> LogFollow:
        d = self.reader.follow("sid", "web", tail, self.seen.append, self.stopped, ended=ended)
        return self.successResultOf(d)

    def texts(self) -> list[str]:
        return [line.line for line in self.seen]

    def test_replayNotDoubled(self) -> None:
        """
        The stream starts at the earliest last line of the running tasks and
        replays from there: lines already in the backlog (those at the very
        time of a task's last one too) are not given again; a new line at
        that time is.
        """
        self.manager.lines = [
            (10 * S, "a", "n1", "a10"),
            (20 * S, "a", "n1", "a20"),
            (20 * S, "a", "n1", "a20'"),
            (15 * S, "b", "n1", "b15"),
            (5 * S, "old", "n1", "old5"),
        ]
        follow = self.follow(tail=10, ended=lambda task: task == "old")
        self.assertEqual([x.line for x in follow.backlog], ["old5", "a10", "b15", "a20", "a20'"])
        self.assertEqual(self.manager.sinceNanos, 15 * S)
        self.manager.lines.append((20 * S, "a", "n1", "a20''"))
        self.manager.lines.append((16 * S, "b", "n1", "b16"))
        self.manager.replay()
        self.assertEqual(self.texts(), [])  # held until the backlog is handed on
        self.clock.advance(0)
        self.assertEqual(self.texts(), ["a20''", "b16"])

    def test_tailInTimeOrder(self) -> None:
        """
        A task's log is in the order its lines were written, which two
        streams can make differ from their times' order by a line or two:
        the tail is still the last lines by time (the engine is asked for
        more than the tail, and the cut is made here).
        """
        self.manager.lines = [
            (10 * S, "a", "n1", "a10"),
            (12 * S, "a", "n1", "a12"),
            (11 * S, "a", "n1", "a11"),
            (13 * S, "a", "n1", "a13"),
        ]
        lines = self.successResultOf(self.reader.read("sid", "web", 2))
        self.assertEqual([x.line for x in lines], ["a12", "a13"])
        follow = self.follow(tail=2)
        self.assertEqual([x.line for x in follow.backlog], ["a12", "a13"])

    def test_followLateLine(self) -> None:
        """
        A line the backlog's read lacked, written after it though older than
        its task's last line there (its other stream's, copied first), is
        followed: together the backlog and the followed lines are every
        line from the backlog's first on, once (a late line older than the
        backlog is not given).
        """
        self.manager.lines = [
            (10 * S, "a", "n1", "a out 1"),
            (10 * S + 57_000, "a", "n1", "a err 1"),
            (10 * S + S // 10, "b", "n1", "b out 1"),
            (10 * S + S // 10 + 57_000, "b", "n1", "b err 1"),
            (10 * S + S // 5, "a", "n1", "a out 2"),
            (10 * S + S // 5 + 57_000, "a", "n1", "a err 2"),
            # b's stderr line is in its log before its stdout line.
            (10 * S + 3 * S // 10 + 57_000, "b", "n1", "b err 2"),
        ]
        follow = self.follow(tail=4)
        self.assertEqual(
            [x.line for x in follow.backlog], ["b err 1", "a out 2", "a err 2", "b err 2"]
        )
        self.manager.lines.append((10 * S + 3 * S // 10, "b", "n1", "b out 2"))
        self.manager.lines.append((10 * S + S // 20, "a", "n1", "late, before the backlog"))
        self.manager.replay()
        self.clock.advance(0)
        self.manager.send(10 * S + 2 * S // 5, "a", "a out 3")
        self.manager.lines.append((10 * S + S // 2, "b", "n1", "b out 3 (not streamed yet)"))
        self.stopped.callback(None)
        self.successResultOf(follow.ended)
        self.assertEqual(self.texts(), ["b out 2", "a out 3", "b out 3 (not streamed yet)"])
        everything = sorted((n, text) for n, _, _, text in self.manager.lines)
        given = sorted((round(x.time * S), x.line) for x in follow.backlog + self.seen)
        self.assertEqual([text for _, text in given], [t for _, t in everything[-len(given) :]])

    def test_lastRead(self) -> None:
        """
        Once the service stops, the stream is closed and one more read gives
        the lines it had not delivered yet, and only those; then C{ended}.
        """
        self.manager.lines = [(10 * S, "a", "n1", "a10")]
        follow = self.follow()
        self.clock.advance(0)
        self.manager.send(11 * S, "a", "a11")
        self.manager.lines.append((12 * S, "a", "n1", "a12 (not streamed yet)"))
        self.assertNoResult(follow.ended)
        self.stopped.callback(None)
        self.successResultOf(follow.ended)
        self.assertEqual(self.texts(), ["a11", "a12 (not streamed yet)"])
        reads = [params for _, path, params in self.manager.asked if path.endswith("/logs")]
        self.assertEqual(reads[-1]["since"], nanosParam(min(10 * S, 99 * S)))

    def test_noBacklog(self) -> None:
        """
        C{tail} 0: no backlog, and only the lines after each task's last
        one are followed (none of the second before the read).
        """
        self.manager.lines = [(99 * S + 5, "a", "n1", "a99"), (90 * S, "b", "n1", "b90")]
        follow = self.follow(tail=0)
        self.assertEqual(follow.backlog, [])
        self.manager.lines.append((100 * S, "a", "n1", "a100"))
        self.manager.replay()
        self.clock.advance(0)
        self.assertEqual(self.texts(), ["a100"])

    def test_newTask(self) -> None:
        """A task with no line at the backlog's read is followed from a second before it."""
        follow = self.follow()
        self.assertEqual(follow.backlog, [])
        self.assertEqual(self.manager.sinceNanos, 99 * S)
        self.clock.advance(0)
        self.manager.send(100 * S, "c", "c100")
        self.assertEqual(self.texts(), ["c100"])

    def test_unknownNode(self) -> None:
        """
        A line from a node the snapshot does not know waits for the
        manager's node list, and the lines after it wait behind it.
        """
        pending: Deferred[Any] = Deferred()
        self.manager.request = lambda method, path, *a, **k: (  # type: ignore[method-assign]
            pending if path == "/nodes" else succeed((200, b""))
        )
        self.follow()
        self.clock.advance(0)
        self.manager.send(100 * S, "c", "c100", node="n2")
        self.manager.send(101 * S, "a", "a101")
        self.assertEqual(self.texts(), [])
        pending.callback((200, [{"ID": "n2", "Description": {"Hostname": "two"}}]))
        self.assertEqual([(x.line, x.node) for x in self.seen], [("c100", "two"), ("a101", "one")])

    def test_nodesUnanswered(self) -> None:
        """
        A line from an unknown node while the manager's node list fails
        carries the node's id; the next one, once the manager answers,
        its name (the failure is not remembered as the name).
        """
        answers: list[Deferred[Any]] = [
            defer.fail(EngineError(500, "manager busy")),
            succeed((200, [{"ID": "n2", "Description": {"Hostname": "two"}}])),
        ]
        self.manager.request = lambda method, path, *a, **k: (  # type: ignore[method-assign]
            answers.pop(0) if path == "/nodes" else succeed((200, b""))
        )
        self.follow()
        self.clock.advance(0)
        self.manager.send(100 * S, "c", "c100", node="n2")
        self.manager.send(101 * S, "c", "c101", node="n2")
        self.assertEqual([(x.line, x.node) for x in self.seen], [("c100", "n2"), ("c101", "two")])

    def test_streamEnds(self) -> None:
        """A stream the manager ends (it went away) ends the follow."""
        follow = self.follow()
        self.clock.advance(0)
        self.manager.streamEnded.callback(None)
        self.successResultOf(follow.ended)
        self.assertEqual(self.cancelled, [self.stopped])

    def test_notFound(self) -> None:
        """The follow of a service the manager does not have is L{NotFound}."""
        self.manager.request = lambda *a, **k: defer.fail(  # type: ignore[method-assign]
            EngineError(404, "service sid not found")
        )
        self.failureResultOf(
            self.reader.follow("sid", "web", None, self.seen.append, self.stopped), NotFound
        )
        self.assertEqual(self.cancelled, [self.stopped])


#: Both streams, every 0.2 s, until the test plants /ctl/stop (a directory
#: of the test's, bound into each task: both nodes share the filesystem).
SHOUT = (
    'i=0; while [ ! -e /ctl/stop ]; do i=$((i+1)); echo "out $i"; echo "err $i" >&2;'
    " sleep 0.2; done"
)


class RealSwarmTests(TestCase):
    """
    L{ServiceLogReader} on the real two-node swarm: a service with a task
    on each node, its lines read and followed.
    """

    timeout = 180

    @defer.inlineCallbacks
    def setUp(self) -> Any:
        cluster, self.reactor, self.engine = realManager(self)
        self.name = uniqueServiceName("logs")
        image = cluster.image
        self.control = os.path.abspath(self.mktemp())
        os.makedirs(self.control)
        body = {
            "Name": self.name,
            "Labels": {"io.pycm.test": "logs"},
            "TaskTemplate": {
                "ContainerSpec": {
                    "Image": image,
                    "Args": ["sh", "-c", SHOUT],
                    "Mounts": [
                        {"Type": "bind", "Source": self.control, "Target": "/ctl", "ReadOnly": True}
                    ],
                    "StopGracePeriod": 1_000_000_000,
                },
                "RestartPolicy": {"Condition": "none"},
                "Placement": {"MaxReplicas": 1},
            },
            "Mode": {"Replicated": {"Replicas": 2}},
        }
        _, created = yield self.engine.request("POST", "/services/create", body=body)
        self.sid = created["ID"]
        self.addCleanup(removeServices, self.engine, [self.name])
        tasks = yield self.tasksUntil(
            lambda ts: sum(t["Status"]["State"] == "running" for t in ts) == 2
        )
        self.tasks = {t["ID"] for t in tasks}
        _, nodes = yield self.engine.request("GET", "/nodes")
        self.hosts = {n["ID"]: n["Description"]["Hostname"] for n in nodes}
        self.assertEqual(set(self.hosts.values()), {cluster.managerNode, cluster.workerNode})
        self.reader = ServiceLogReader(self.reactor, self.engine)

        @defer.inlineCallbacks
        def bothWrote() -> Any:
            lines = yield self.reader.read(self.sid, self.name, None)
            return {(line.task, line.stream) for line in lines} == {
                (task, stream) for task in self.tasks for stream in ("stdout", "stderr")
            }

        yield pollUntil(self.reactor, bothWrote, "lines of both tasks on both streams")

    @defer.inlineCallbacks
    def tasksUntil(self, done: Callable[[list[dict[str, Any]]], bool]) -> Any:
        """
        Poll the service's tasks until C{done(tasks)}; fire with them, even
        when the list is empty (a scaled-down service's tasks may be gone).
        """
        filters = {"service": [self.name]}

        @defer.inlineCallbacks
        def check() -> Any:
            _, tasks = yield self.engine.request("GET", "/tasks", {"filters": filters})
            return [tasks] if done(tasks) else None

        [tasks] = yield pollUntil(self.reactor, check, f"tasks of {self.name} as wanted")
        return tasks

    @defer.inlineCallbacks
    def test_read(self) -> Any:
        """
        The lines of both tasks, on both nodes, merged in time order, each
        tagged with its task and its node's hostname; C{tail} counts overall.
        """
        lines = yield self.reader.read(self.sid, self.name, None)
        self.assertEqual({line.task for line in lines}, self.tasks)
        self.assertEqual({line.node for line in lines}, set(self.hosts.values()))
        self.assertEqual({line.stream for line in lines}, {"stdout", "stderr"})
        times = [line.time for line in lines]
        self.assertEqual(times, sorted(times))
        tail = yield self.reader.read(self.sid, self.name, 3)
        self.assertEqual(len(tail), 3)
        self.assertGreaterEqual(tail[0].time, lines[-3].time)

    @defer.inlineCallbacks
    def test_follow(self) -> Any:
        """
        The backlog, then the new lines until the service has stopped (its
        tasks told to finish, so their logs stay): together every line from
        the backlog's first on, once.
        """
        seen: list[LogLine] = []
        stopped: Deferred[None] = Deferred()
        follow = yield self.reader.follow(self.sid, self.name, 4, seen.append, stopped)
        self.assertEqual(len(follow.backlog), 4)
        yield pollUntil(
            self.reactor,
            lambda: {line.task for line in seen} == self.tasks,
            "new lines of both tasks followed",
        )
        with open(os.path.join(self.control, "stop"), "w"):
            pass
        yield self.tasksUntil(
            lambda ts: {t["ID"] for t in ts if t["Status"]["State"] == "complete"} == self.tasks
        )
        self.assertNoResult(follow.ended)
        stopped.callback(None)
        yield follow.ended
        self.assertEqual({line.task for line in seen}, self.tasks)
        everything = yield self.reader.read(self.sid, self.name, None)

        def key(line: LogLine) -> tuple[Any, ...]:
            return (line.time, line.task, line.stream, line.line)

        given = sorted(map(key, follow.backlog + seen))
        self.assertEqual(given, sorted(map(key, everything))[-len(given) :])
        self.assertEqual(len(set(given)), len(given))
        self.assertEqual(sorted(map(key, everything))[-1], given[-1])
