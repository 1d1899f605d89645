"""
The backend conformance suite, part two: C{logs}, C{follow} and C{wait}.
"""

from __future__ import annotations

import signal as _signal
from collections.abc import Generator
from typing import Any

from twisted.internet import defer
from twisted.internet.defer import Deferred, inlineCallbacks

from pycm.model import (
    Action,
    Container,
    LogLine,
    State,
    WaitCondition,
)
from pycm.testing.conformance.base import BackendTestsBase


class BackendLogsTests(BackendTestsBase):
    """The behaviour of C{logs}, C{follow} and C{wait}."""

    # logs

    @inlineCallbacks
    def test_logs(self) -> Generator[Deferred[Any], Any, None]:
        """Output is kept as log lines, oldest first; C{tail} limits."""
        spec = self.spec("logs", self.fixture.echoCommand("hello world"))
        yield self.runContainer(spec)
        yield self.waitFor(spec.name, WaitCondition.NOT_RUNNING)
        yield self.settle(self.backend.start(spec.name))
        yield self.eventsUntil(lambda _: self.count(spec.name, Action.DIE) == 2)
        lines = yield self.settle(self.backend.logs(spec.name, None))
        self.assertEqual([(x.stream, x.line) for x in lines], [("stdout", "hello world")] * 2)
        self.assertIsInstance(lines[0], LogLine)
        self.assertLessEqual(lines[0].time, lines[1].time)
        last = yield self.settle(self.backend.logs(spec.name, 1))
        self.assertEqual(last, lines[-1:])
        none = yield self.settle(self.backend.logs(spec.name, 0))
        self.assertEqual(none, [])

    @inlineCallbacks
    def test_logsSince(self) -> Generator[Deferred[Any], Any, None]:
        """
        C{since} keeps the lines written at or after a time, for C{logs}
        and for C{follow}'s backlog; C{tail} counts among those.
        """
        spec = self.spec("logssince", self.fixture.echoCommand("first"))
        yield self.runContainer(spec)
        yield self.waitFor(spec.name, WaitCondition.NOT_RUNNING)
        # Far enough apart that the two lines' times differ.
        yield self.sleep(getattr(self.fixture, "logTimeResolution", 0.1))
        yield self.settle(self.backend.start(spec.name))
        yield self.eventsUntil(lambda _: self.count(spec.name, Action.DIE) == 2)
        lines = yield self.settle(self.backend.logs(spec.name, None))
        self.assertEqual(len(lines), 2)
        self.assertLess(lines[0].time, lines[1].time)
        since = yield self.settle(self.backend.logs(spec.name, None, lines[1].time))
        self.assertEqual(since, lines[1:])
        both = yield self.settle(self.backend.logs(spec.name, None, lines[0].time))
        self.assertEqual(both, lines)
        lastOne = yield self.settle(self.backend.logs(spec.name, 1, lines[0].time))
        self.assertEqual(lastOne, lines[1:])
        later = yield self.settle(self.backend.logs(spec.name, None, lines[1].time + 1))
        self.assertEqual(later, [])
        follow = yield self.settle(
            self.backend.follow(spec.name, None, lambda line: None, lines[1].time)
        )
        follow.cancel()
        self.assertEqual(follow.backlog, lines[1:])

    @inlineCallbacks
    def test_logsRemoved(self) -> Generator[Deferred[Any], Any, None]:
        """A container created again after C{remove} has no old output."""
        spec = self.spec("logsremoved", self.fixture.echoCommand("old"))
        yield self.runContainer(spec)
        yield self.waitFor(spec.name, WaitCondition.NOT_RUNNING)
        yield self.settle(self.backend.remove(spec.name, False))
        yield self.create(spec)
        lines = yield self.settle(self.backend.logs(spec.name, None))
        self.assertEqual(lines, [])

    @inlineCallbacks
    def test_follow(self) -> Generator[Deferred[Any], Any, None]:
        """
        C{follow} gives the backlog, then each new line, and ends when
        the container stops running; nothing is missed or repeated.
        """
        spec = self.spec("follow", self.fixture.delayedEchoCommand("later"))
        yield self.runContainer(spec)
        seen: list[LogLine] = []
        follow = yield self.settle(self.backend.follow(spec.name, None, seen.append))
        yield self.settle(follow.ended)
        everything = yield self.settle(self.backend.logs(spec.name, None))
        self.assertEqual(follow.backlog + seen, everything)
        self.assertEqual([x.line for x in everything], ["later"])

    @inlineCallbacks
    def test_followExited(self) -> Generator[Deferred[Any], Any, None]:
        """Following a container that has exited gives its backlog, and ends."""
        spec = self.spec("followexited", self.fixture.echoCommand("done"))
        yield self.runContainer(spec)
        yield self.waitFor(spec.name, WaitCondition.NOT_RUNNING)
        seen: list[LogLine] = []
        follow = yield self.settle(self.backend.follow(spec.name, 10, seen.append))
        yield self.settle(follow.ended)
        self.assertEqual([x.line for x in follow.backlog], ["done"])
        self.assertEqual(seen, [])

    @inlineCallbacks
    def test_followCancel(self) -> Generator[Deferred[Any], Any, None]:
        """Cancelling a follow ends it at once."""
        spec = self.spec("followcancel", self.fixture.longCommand)
        yield self.runContainer(spec)
        follow = yield self.settle(self.backend.follow(spec.name, None, lambda x: None))
        follow.cancel()
        yield self.settle(follow.ended, 5)

    @inlineCallbacks
    def test_followRemoved(self) -> Generator[Deferred[Any], Any, None]:
        """A follow ends when its container is removed."""
        spec = self.spec("followremoved", self.fixture.longCommand)
        yield self.runContainer(spec)
        follow = yield self.settle(self.backend.follow(spec.name, None, lambda x: None))
        yield self.settle(self.backend.remove(spec.name, True))
        yield self.settle(follow.ended, 5)

    # wait

    @inlineCallbacks
    def test_waitNotRunningNow(self) -> Generator[Deferred[Any], Any, None]:
        """C{wait not-running} fires at once for a container not running."""
        spec = self.spec("waitnow", self.fixture.longCommand)
        yield self.create(spec)
        container = yield self.settle(self.backend.wait(spec.name, "not-running"), 1)
        self.assertEqual(container.state, State.CREATED)

    @inlineCallbacks
    def test_waitRunning(self) -> Generator[Deferred[Any], Any, None]:
        """C{wait running} fires once it runs, at once if it does."""
        spec = self.spec("waitrunning", self.fixture.longCommand)
        yield self.create(spec)
        waiting = self.backend.wait(spec.name, WaitCondition.RUNNING)
        yield self.settle(self.backend.start(spec.name))
        container = yield self.settle(waiting)
        self.assertEqual(container.state, State.RUNNING)
        again = yield self.settle(self.backend.wait(spec.name, WaitCondition.RUNNING), 1)
        self.assertEqual(again.state, State.RUNNING)

    @inlineCallbacks
    def test_waitNextExit(self) -> Generator[Deferred[Any], Any, None]:
        """C{wait next-exit} fires with the container as it exited."""
        spec = self.spec("waitexit", self.fixture.longCommand)
        yield self.runContainer(spec)
        waiting = self.backend.wait(spec.name, WaitCondition.NEXT_EXIT)
        yield self.settle(self.backend.kill(spec.name, int(_signal.SIGTERM)))
        container = yield self.settle(waiting)
        self.assertEqual(container.state, State.EXITED)
        self.assertIn(container.exitCode, self.fixture.signalledExitCodes(_signal.SIGTERM))

    @inlineCallbacks
    def test_waitRemoved(self) -> Generator[Deferred[Any], Any, None]:
        """C{wait removed} fires once the container is removed."""
        spec = self.spec("waitremoved", self.fixture.longCommand)
        yield self.create(spec)
        waiting = self.backend.wait(spec.name, WaitCondition.REMOVED)
        yield self.settle(self.backend.remove(spec.name, False))
        yield self.settle(waiting)

    @inlineCallbacks
    def test_waitCancel(self) -> Generator[Deferred[Any], Any, None]:
        """A wait can be cancelled; the container is unaffected."""
        spec = self.spec("waitcancel", self.fixture.longCommand)
        yield self.create(spec)
        waiting = self.backend.wait(spec.name, WaitCondition.RUNNING)
        waiting.cancel()
        self.failureResultOf(waiting, defer.CancelledError)
        container = yield self.startExisting(spec.name)
        self.assertEqual(container.state, State.RUNNING)

    def startExisting(self, name: str) -> Deferred[Container]:
        return self.settle(self.backend.start(name))
