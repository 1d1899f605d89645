"""
The pieces of a service's logs as the swarm manager gives them
(C{GET /services/ID/logs?details=1&timestamps=1}): exact times, the line's
details (which task, which node), merging in time order, where each task's
lines were given up to (L{TaskCursor}), node names (L{NodeNames}).
"""

from __future__ import annotations

import heapq
import re
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import unquote

import attrs
from twisted.internet import defer
from twisted.logger import Logger

from pycm.backends.docker.engine import EngineError
from pycm.backends.docker.follow import REPLY_BUDGET, replyCost
from pycm.backends.docker.interfaces import IDockerEngine
from pycm.backends.docker.stream import Demultiplexer, LogLineSplitter
from pycm.errors import PycmError
from pycm.model import LogLine
from pycm.slicedwork import Job

#: The attributes of a line's details that say where it comes from.
TASK_ATTRIBUTE = "com.docker.swarm.task.id"
NODE_ATTRIBUTE = "com.docker.swarm.node.id"

#: Seconds before the read began that a follow starts from, for the lines
#: of tasks that had none yet (node clocks may be a little behind ours).
CLOCK_MARGIN = 1.0

#: Seconds by which a task's line may be written to its log after a later
#: one of its own (its two streams are copied apart, each line stamped when
#: read): a line that much older than the last given of its task is taken
#: as given (L{TaskCursor}).
REORDER_MARGIN = 1.0

_STAMP = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$")


def stampNanos(stamp: str | None) -> int:
    """
    The engine's RFC 3339 timestamp as integer nanoseconds since the
    epoch (exact, unlike a float), or 0 if there is none or it is not one.
    """
    if not stamp:
        return 0
    match = _STAMP.match(stamp)
    if match is None:
        return 0
    head, fraction, zone = match.groups()
    zone = "+00:00" if zone == "Z" else zone
    try:
        whole = int(datetime.fromisoformat(head + zone).timestamp())
    except ValueError:
        return 0
    return whole * 1_000_000_000 + int(((fraction or "") + "000000000")[:9])


def nanosParam(nanos: int) -> str:
    """The engine's C{since} (C{seconds.nanoseconds}) for C{nanos}."""
    nanos = max(nanos, 0)
    return f"{nanos // 1_000_000_000}.{nanos % 1_000_000_000:09d}"


def splitDetails(text: str) -> tuple[dict[str, str], str]:
    """
    A line's details (C{k=v,k=v}, values URL-escaped) and its text.  A
    line with no details (its first word is no C{k=v} list) is all text.
    """
    head, sep, rest = text.partition(" ")
    if not sep:
        head, rest = text, ""
    attributes: dict[str, str] = {}
    if head:
        for pair in head.split(","):
            key, equals, value = pair.partition("=")
            if not equals or not key:
                return {}, text
            attributes[key] = unquote(value)
    return attributes, rest


@attrs.frozen
class RawLine:
    """One line as read: where it comes from, its exact time, and its text."""

    task: str | None
    nodeId: str | None
    stamp: str | None
    nanos: int
    stream: str
    text: str

    def logLine(self, nodeNames: Mapping[str, str]) -> LogLine:
        """The L{LogLine}, its node named by C{nodeNames} (else its id)."""
        node = None
        if self.nodeId is not None:
            node = nodeNames.get(self.nodeId, self.nodeId)
        return LogLine(self.nanos / 1e9, self.stream, self.text, task=self.task, node=node)


def parseBody(body: bytes) -> list[RawLine]:
    """Every line of a multiplexed C{logs?details=1&timestamps=1} body."""
    lines: list[RawLine] = []
    splitter = LogLineSplitter(lambda s, ts, text: lines.append(rawLine(s, ts, text)), True)
    Demultiplexer(splitter.frameReceived).feed(body)
    splitter.flush()
    return lines


def rawLine(stream: str, stamp: str | None, text: str) -> RawLine:
    """The L{RawLine} of one split line."""
    attributes, text = splitDetails(text)
    return RawLine(
        attributes.get(TASK_ATTRIBUTE),
        attributes.get(NODE_ATTRIBUTE),
        stamp,
        stampNanos(stamp),
        stream,
        text,
    )


def inTimeOrder(lines: Iterable[RawLine]) -> list[RawLine]:
    """C{lines} merged in time order (lines of one time keep their order)."""
    return sorted(lines, key=lambda line: line.nanos)


class NewestRawLines:
    """
    The newest lines of a read by their time, whatever order they come in
    (task by task): past C{budget} bytes of reply, the oldest go, so that
    a read holds no more than a reply can carry.  A line is counted
    without its node (L{pycm.backends.docker.follow.replyCost}): its name
    is known only later, so what is kept is at least what fits, and
    L{newestThatFit} then counts exactly.

    @ivar received: how many lines were given.
    @ivar cut: whether a line went for the budget.
    """

    def __init__(self, budget: int = REPLY_BUDGET) -> None:
        self._heap: list[tuple[int, int, int, RawLine]] = []
        self.budget = budget
        self.size = 0
        self.received = 0
        self.cut = False

    def append(self, line: RawLine) -> None:
        """Keep C{line}, dropping the oldest past the budget."""
        cost = replyCost(LogLine(line.nanos / 1e9, line.stream, line.text, task=line.task))
        heapq.heappush(self._heap, (line.nanos, self.received, cost, line))
        self.received += 1
        self.size += cost
        while self.size > self.budget and self._heap:
            self.size -= heapq.heappop(self._heap)[2]
            self.cut = True

    def items(self) -> list[RawLine]:
        """The lines kept, in the order they came."""
        return [entry[3] for entry in sorted(self._heap, key=lambda entry: entry[1])]


def newestThatFit(lines: list[LogLine], budget: int = REPLY_BUDGET) -> Job[int]:
    """
    How many of the newest of C{lines} (in time order, their nodes named)
    a reply can carry, as a L{pycm.slicedwork.Job} (L{LINES_PER_SLICE}
    lines a slice).
    """
    size = fit = 0
    for line in reversed(lines):
        if fit and fit % LINES_PER_SLICE == 0:
            yield None
        size += replyCost(line)
        if size > budget:
            break
        fit += 1
    return fit


#: Lines of L{mergeInTimeOrder}'s work in one slice (a few milliseconds).
LINES_PER_SLICE = 2000


def mergeInTimeOrder(
    lines: list[RawLine], keep: Callable[[RawLine], bool] = lambda line: True
) -> Job[list[RawLine]]:
    """
    L{inTimeOrder} of those of C{lines} that C{keep} keeps, as a
    L{pycm.slicedwork.Job}: runs of L{LINES_PER_SLICE} lines sorted one a
    slice, then merged (a tie goes to the earlier run: the order is
    L{inTimeOrder}'s), L{LINES_PER_SLICE} lines a slice.
    """
    runs: list[list[RawLine]] = []
    for start in range(0, len(lines), LINES_PER_SLICE):
        if runs:
            yield None
        run = [line for line in lines[start : start + LINES_PER_SLICE] if keep(line)]
        runs.append(inTimeOrder(run))
    merged: list[RawLine] = []
    for line in heapq.merge(*runs, key=lambda line: line.nanos):
        if merged and len(merged) % LINES_PER_SLICE == 0:
            yield None
        merged.append(line)
    return merged


class TaskCursor:
    """
    Which of each task's lines have been given: the time of its last line
    given, the lines given within L{REORDER_MARGIN} of it, and the time
    below which none of its lines is new (its floor).  A task's lines come
    in the order they were written, which is not always their times'
    order: a line older than the last given is new if it was not given
    itself.  A read from an earlier time goes through a L{replay}, which
    lets through only what was not given yet.
    """

    def __init__(self) -> None:
        #: Task -> the time of its last line given.
        self.last: dict[str | None, int] = {}
        #: Task -> the time below which none of its lines is new.
        self.floors: dict[str | None, int] = {}
        self._recent: dict[str | None, Counter[tuple[int, str, str]]] = {}
        self._order: dict[str | None, deque[tuple[int, str, str]]] = {}

    def given(self, line: RawLine) -> None:
        """
        Note that C{line} was given (read before the replays): no line of
        its task older than it is new (see L{startFrom}).
        """
        self.floors[line.task] = min(self.floors.get(line.task, line.nanos), line.nanos)
        self._note(line)

    def _note(self, line: RawLine) -> None:
        task = line.task
        last = max(self.last.get(task, -1), line.nanos)
        self.last[task] = last
        key = (line.nanos, line.stream, line.text)
        recent = self._recent.setdefault(task, Counter())
        order = self._order.setdefault(task, deque())
        recent[key] += 1
        order.append(key)
        horizon = last - int(REORDER_MARGIN * 1e9)
        while order and order[0][0] < horizon:
            old = order.popleft()
            recent[old] -= 1
            if not recent[old]:
                del recent[old]

    def startFrom(self, nanos: int) -> None:
        """
        Of the tasks given so far, no line older than C{nanos} is new
        (older than their last given, for those whose last is older).
        """
        for task, last in self.last.items():
            self.floors[task] = max(self.floors.get(task, -1), min(nanos, last))

    def _lowest(self, task: str | None) -> int:
        """The time below which no line of C{task} is new, for now."""
        return max(self.floors.get(task, -1), self.last.get(task, -1) - int(REORDER_MARGIN * 1e9))

    def earliest(self, tasks: Iterable[str | None]) -> int | None:
        """
        The earliest time among C{tasks} that have a line given at which
        one of their lines may still be new.
        """
        times = [self._lowest(task) for task in tasks if task in self.last]
        return min(times) if times else None

    def replay(self) -> Callable[[RawLine], bool]:
        """
        A filter for one read from an earlier time: true for each line not
        given yet (which it then notes as given).
        """
        given = {task: Counter(recent) for task, recent in self._recent.items()}

        def admit(line: RawLine) -> bool:
            if line.nanos < self._lowest(line.task):
                return False
            key = (line.nanos, line.stream, line.text)
            seen = given.get(line.task)
            if seen is not None and seen[key] > 0:
                seen[key] -= 1
                return False
            self._note(line)
            return True

        return admit


class NodeNames:
    """
    Node id -> hostname: what the caller knows (the snapshot's nodes),
    else from the manager's C{GET /nodes}, asked once per unknown id.
    """

    log = Logger()

    def __init__(
        self, engine: IDockerEngine, known: Callable[[], Mapping[str, str]] = dict
    ) -> None:
        self.engine = engine
        self.known = known
        self.asked: dict[str, str] = {}

    def names(self) -> dict[str, str]:
        """Every id -> hostname known now."""
        return {**self.asked, **self.known()}

    @defer.inlineCallbacks
    def resolve(self, ids: Iterable[str | None]) -> Any:
        """
        Fire with L{names} once every id of C{ids} is known, or the
        manager could not say (those lines then carry the id).  An id the
        manager's list lacks is its own name from then on; one asked while
        the manager did not answer is asked again next time.
        """
        names = self.names()
        missing = {i for i in ids if i is not None and i not in names}
        if missing:
            try:
                _, nodes = yield self.engine.request("GET", "/nodes")
            except (EngineError, PycmError) as e:
                self.log.info("cannot list the swarm's nodes: {error}", error=e)
                return names
            for node in nodes or ():
                hostname = (node.get("Description") or {}).get("Hostname")
                if node.get("ID") and hostname:
                    self.asked[str(node["ID"])] = str(hostname)
            for nodeId in missing - set(self.asked):
                # A node the manager does not name: its lines carry its id.
                self.asked[nodeId] = nodeId
            names = self.names()
        return names
