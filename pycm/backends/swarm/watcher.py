"""
Looking at the swarm (L{SwarmWatcher}): pycm's services (C{GET /services}
with its label), their tasks (C{GET /tasks}) and the nodes (C{GET /nodes}),
read together into a L{Snapshot} on an injected clock.  It looks promptly
after every change pycm makes (L{SwarmWatcher.poke}) and on the engine's
service, node and task-container events, often while an operation waits
for something, rarely when idle; it keeps trying when the manager goes
away, and says so (L{SwarmWatcher.connected}).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from pycm.backends.docker.engine import EngineError
from pycm.backends.docker.events import EngineEvents
from pycm.backends.docker.interfaces import IDockerEngine
from pycm.backends.swarm.control import engineFailure
from pycm.backends.swarm.reading import SnapshotReader, nodeNames
from pycm.backends.swarm.snapshot import Snapshot
from pycm.backends.swarm.translate import LIST_FILTERS
from pycm.errors import PycmError, Unavailable

#: The engine events that make the watcher look again at once.
EVENT_FILTERS = {"type": ["service", "node", "container"]}


class SwarmWatcher:
    """
    Read the swarm into L{Snapshot}s and hand each new one to
    C{onSnapshot}, then to the callers of L{waitFor}.

    @ivar latest: the newest snapshot, or None before the first.
    @ivar connected: did the last look at the swarm succeed?
    @ivar activeInterval: seconds between looks while someone waits (or
        just after a change).
    @ivar idleInterval: seconds between looks otherwise, and the longest
        wait between two tries while the manager is away.
    """

    log = Logger()
    #: Looks at the active pace after the last change seen.
    activeLooks = 8
    #: Seconds between looks while L{busy}.
    waitInterval = 1.0

    def __init__(
        self,
        clock: Any,
        engine: IDockerEngine,
        onSnapshot: Callable[[Snapshot], None] = lambda snapshot: None,
        activeInterval: float = 0.1,
        idleInterval: float = 5.0,
        followEvents: bool = True,
    ) -> None:
        self.clock = clock
        self.engine = engine
        self.onSnapshot = onSnapshot
        self.activeInterval = activeInterval
        self.idleInterval = idleInterval
        self.latest: Snapshot | None = None
        #: Node id -> hostname, as the last look saw them.
        self.nodeNames: dict[str, str] = {}
        #: Reads the engine's lists, reusing the views of what is unchanged.
        self.reader = SnapshotReader()
        #: The last C{GET /nodes} body, and how many node events (or event
        #: stream reconnections) had come when it was asked for.
        self._nodes: list[Any] | None = None
        self._nodesAsked = -1
        self._nodeEvents = 0
        #: Does someone wait on the snapshots (a C{wait}, a log follow)?
        #: Then the watcher looks every L{waitInterval}.
        self.busy: Callable[[], bool] = lambda: False
        #: What each snapshot read goes through first (the backend maps
        #: the exit codes of signals pycm sent).
        self.prepare: Callable[[Snapshot], Snapshot] = lambda snapshot: snapshot
        self.connected = False
        self._running = False
        self._call: Any = None
        self._inFlight: Deferred[Any] | None = None
        self._again = False
        self._waiters: list[_Waiter] = []
        self._quietLooks = 0
        self._failures = 0
        self._events: EngineEvents | None = None
        if followEvents:
            self._events = EngineEvents(
                clock, engine, EVENT_FILTERS, self._engineEvent, self._eventsConnected
            )

    # -- running ----------------------------------------------------------------

    def start(self) -> None:
        """Look now, and keep looking until L{stop}."""
        self._running = True
        if self._events is not None:
            self._events.start()
        self.poke()

    def stop(self) -> Deferred[None]:
        """Stop looking; the waiters fail with L{Unavailable}."""
        self._running = False
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        if self._inFlight is not None:
            self._inFlight.cancel()
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.fail(Unavailable("the swarm backend is closing"))
        if self._events is not None:
            return self._events.stop()
        return defer.succeed(None)

    def poke(self) -> None:
        """Look again as soon as possible (after the look under way, if any)."""
        self._quietLooks = 0
        if self._inFlight is not None:
            self._again = True
            return
        self._schedule(0)

    def _engineEvent(self, event: dict[str, Any]) -> None:
        kind = event.get("Type")
        if kind == "container":
            attributes = (event.get("Actor") or {}).get("Attributes") or {}
            if "com.docker.swarm.task.id" not in attributes:
                return
        elif kind == "node":
            self._nodeEvents += 1
        self.poke()

    def _eventsConnected(self, reconnect: bool) -> None:
        # Node events may have been missed while the stream was away.
        self._nodeEvents += 1
        self.poke()

    def _schedule(self, delay: float) -> None:
        if not self._running:
            return
        if self._call is not None and self._call.active():
            if self._call.getTime() <= self.clock.seconds() + delay:
                return
            self._call.cancel()
        self._call = self.clock.callLater(delay, self._look)

    def _nextDelay(self) -> float:
        if not self.connected:
            return min(self.activeInterval * 2 ** min(self._failures, 8), self.idleInterval)
        if self._waiters:
            return min(w.interval or self.activeInterval for w in self._waiters)
        if self._quietLooks < self.activeLooks:
            return self.activeInterval
        if self.busy():
            return min(self.waitInterval, self.idleInterval)
        return self.idleInterval

    # -- looking ------------------------------------------------------------------

    def _look(self) -> None:
        self._call = None
        if not self._running or self._inFlight is not None:
            return
        self._again = False
        d = self._inFlight = self.read()
        d.addCallbacks(self._read, self._failed)
        d.addBoth(self._lookDone)

    def _nodesKnown(self) -> bool:
        """
        Are the nodes of the last C{GET /nodes} still what the engine says
        (no node event since it was asked, the event stream following)?
        """
        return (
            self._nodes is not None
            and self._events is not None
            and self._events.connected
            and self._nodesAsked == self._nodeEvents
        )

    def read(self, nodes: bool = True) -> Deferred[Snapshot]:
        """
        One look at the swarm (three requests at once), as a L{Snapshot}.

        @param nodes: ask for the nodes too (False: only when no node event
            came since they were last read, or a task is on a node not
            known then; C{list} reads the services and tasks afresh so).
        """
        engine = self.engine
        params = {"filters": LIST_FILTERS}
        asked = self._nodeEvents
        known = None if nodes or not self._nodesKnown() else self._nodes
        requests = [
            engine.request("GET", "/services", params),
            engine.request("GET", "/tasks", params),
        ]
        if known is None:
            requests.append(engine.request("GET", "/nodes"))
        now = self.clock.seconds()
        gathered = defer.gatherResults(requests, consumeErrors=True)

        def build(results: list[tuple[int, Any]]) -> Any:
            services, tasks = results[0][1], results[1][1]
            nodeList: Any = known
            if known is None:
                nodeList = results[2][1]
                if isinstance(nodeList, list):
                    self._nodes, self._nodesAsked = nodeList, asked
                    self.nodeNames = nodeNames(nodeList)
            elif _unknownNode(tasks, self.nodeNames):
                return self.read()
            return self.prepare(self.reader.snapshotOf(now, services, tasks, nodeList))

        def unwrap(failure: Failure) -> Failure:
            if isinstance(failure.value, defer.FirstError):
                for request in requests:
                    request.cancel()
                failure = failure.value.subFailure
            if isinstance(failure.value, EngineError):
                return Failure(engineFailure(failure.value))
            return failure

        return gathered.addCallbacks(build, unwrap)

    def offer(self, snapshot: Snapshot) -> None:
        """
        A snapshot read by someone else (a C{list}): taken like one of the
        watcher's own, unless a newer one is already in.
        """
        if self.latest is not None and snapshot.time < self.latest.time:
            return
        self._read(snapshot)

    def _read(self, snapshot: Snapshot) -> None:
        if not self._running:
            return
        if self.latest is not None and snapshot.time < self.latest.time:
            return
        if not self.connected and self._failures:
            self.log.info("the swarm manager answers again")
        self.connected = True
        self._failures = 0
        previous = self.latest
        if previous is not None and previous.services == snapshot.services:
            self._quietLooks += 1
            self.latest = snapshot
        else:
            self._quietLooks = 0
            self.latest = snapshot
            try:
                self.onSnapshot(snapshot)
            except Exception:
                self.log.failure("handling a swarm snapshot")
        for waiter in list(self._waiters):
            waiter.check(snapshot)

    def _failed(self, failure: Failure) -> None:
        if failure.check(defer.CancelledError) or not self._running:
            return
        self._failures += 1
        if self.connected or self._failures == 1:
            self.log.warn(
                "cannot read the swarm ({why}); trying again", why=failure.getErrorMessage()
            )
        self.connected = False
        for waiter in list(self._waiters):
            waiter.unavailable(failure)

    def _lookDone(self, _: object) -> None:
        self._inFlight = None
        if not self._running:
            return
        self._schedule(0 if self._again else self._nextDelay())

    # -- waiting ------------------------------------------------------------------

    def waitFor(
        self,
        predicate: Callable[[Snapshot], Any],
        timeout: float,
        describe: Callable[[], str] | None = None,
        failFast: bool = False,
        interval: float | None = None,
    ) -> Deferred[Any]:
        """
        Look at the swarm until C{predicate(snapshot)} is true (not None,
        not False) on a snapshot taken after this call, and fire with that
        value; a predicate that raises fails the wait with its exception.

        @param timeout: seconds to wait; then L{Unavailable} saying
            C{describe()}.
        @param failFast: fail at once with L{Unavailable} when a look fails
            (else the wait goes on while the manager is away, until
            C{timeout}).
        @param interval: look this often while waiting (None: the active
            interval); a stop looks faster, to see its tasks' exit codes
            before Swarm drops them.
        """
        waiter = _Waiter(self, predicate, describe, failFast, interval)
        d = waiter.deferred
        if timeout > 0:
            waiter.timer = self.clock.callLater(timeout, waiter.expire)
        self._waiters.append(waiter)
        self.poke()
        return d


def _unknownNode(tasks: Any, names: dict[str, str]) -> bool:
    """Is one of C{tasks} (a C{GET /tasks} body) on a node not in C{names}?"""
    for task in tasks if isinstance(tasks, list) else ():
        nodeId = task.get("NodeID") if isinstance(task, dict) else None
        if nodeId and nodeId not in names:
            return True
    return False


class _Waiter:
    """One L{SwarmWatcher.waitFor}."""

    def __init__(
        self,
        watcher: SwarmWatcher,
        predicate: Callable[[Snapshot], Any],
        describe: Callable[[], str] | None,
        failFast: bool,
        interval: float | None = None,
    ) -> None:
        self.watcher = watcher
        self.interval = interval
        self.predicate = predicate
        self.describe = describe
        self.failFast = failFast
        self.timer: Any = None
        self.deferred: Deferred[Any] = Deferred(lambda _: self._forget())

    def _forget(self) -> None:
        if self in self.watcher._waiters:
            self.watcher._waiters.remove(self)
        if self.timer is not None and self.timer.active():
            self.timer.cancel()

    def check(self, snapshot: Snapshot) -> None:
        try:
            value = self.predicate(snapshot)
        except Exception:
            # A PycmError says why the wait failed; anything else is a bug,
            # which fails this wait rather than leave it to time out.
            self._forget()
            self.deferred.errback()
            return
        if value is not None and value is not False:
            self._forget()
            self.deferred.callback(value)

    def unavailable(self, failure: Failure) -> None:
        if self.failFast:
            self._forget()
            error = failure.value
            if not isinstance(error, PycmError):
                error = Unavailable(f"cannot read the swarm: {failure.getErrorMessage()}")
            self.deferred.errback(error)

    def fail(self, error: Exception) -> None:
        self._forget()
        self.deferred.errback(error)

    def expire(self) -> None:
        self.timer = None
        what = self.describe() if self.describe is not None else "the swarm to change"
        if not self.watcher.connected:
            what += " (the swarm manager does not answer)"
        self.fail(Unavailable(f"timed out waiting for {what}"))


__all__ = ["EVENT_FILTERS", "SwarmWatcher"]
