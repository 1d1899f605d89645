"""
What the Docker backend knows of pycm's containers beyond the engine's
answers: what the events said of them (L{EngineView}), what pycm has asked
the engine that is still under way (L{RequestsInFlight}), and one
operation per container at a time (L{OneAtATime}).
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import Any

import attrs
from twisted.internet import defer
from twisted.internet.defer import Deferred, DeferredLock

from pycm.backends.docker.signals import SignalsSent
from pycm.backends.docker.translate import containerFromInspect
from pycm.model import Container, State

#: How many exit codes (and told destroys) are kept, the oldest dropped.
_KEPT = 1000


class OneAtATime:
    """A lock per container name, held while an operation on it runs."""

    def __init__(self) -> None:
        self.locks: dict[str, DeferredLock] = {}

    def run(self, name: str, f: Callable[..., Any], *args: Any) -> Deferred[Any]:
        """Run C{f(*args)} under C{name}'s lock (dropped once nobody holds or wants it)."""
        lock = self.locks.get(name)
        if lock is None:
            lock = self.locks[name] = DeferredLock()

        def release(result: Any) -> Any:
            lock.release()
            if not lock.locked and not lock.waiting and self.locks.get(name) is lock:
                del self.locks[name]
            return result

        def locked(_: Any) -> Deferred[Any]:
            return defer.maybeDeferred(f, *args).addBoth(release)

        return lock.acquire().addCallback(locked)


class RequestsInFlight:
    """
    pycm's start, stop and restart requests the engine has not answered
    yet, by container name, with when the last stop or restart was sent:
    the events they cause are pycm's, not the engine's policy's.
    """

    def __init__(self) -> None:
        self.starts: collections.Counter[str] = collections.Counter()
        self.stops: collections.Counter[str] = collections.Counter()
        self.restarts: collections.Counter[str] = collections.Counter()
        #: When pycm last asked the engine to stop (or restart) each
        #: container it is stopping: Podman's die events of earlier runs
        #: may come after that, and are not the stop's.
        self.stopSent: dict[str, float] = {}
        #: When pycm last asked the engine to restart each container it is
        #: restarting: a late start event of the run before is not its.
        self.restartSent: dict[str, float] = {}

    def starting(self, name: str) -> bool:
        """Is a pycm start or restart of C{name} under way?"""
        return bool(self.starts[name])

    def stopping(self, name: str) -> bool:
        """Is a pycm stop or restart of C{name} under way?"""
        return bool(self.stops[name])

    def beginStart(self, name: str) -> None:
        self.starts[name] += 1

    def endStart(self, name: str) -> None:
        self.starts[name] -= 1
        if self.starts[name] <= 0:
            del self.starts[name]

    def beginStop(self, name: str, now: float, restart: bool) -> None:
        """A stop (or, with C{restart}, a restart) of C{name} sent at C{now}."""
        self.stops[name] += 1
        self.stopSent[name] = now
        if restart:
            # The engine's start during POST /restart is pycm's, not its
            # restart policy's: one restart event, not two.
            self.beginStart(name)
            self.restarts[name] += 1
            self.restartSent[name] = now

    def endStop(self, name: str, restart: bool) -> None:
        self.stops[name] -= 1
        if self.stops[name] <= 0:
            del self.stops[name]
            self.stopSent.pop(name, None)
        if restart:
            self.endStart(name)
            self.restarts[name] -= 1
            if self.restarts[name] <= 0:
                del self.restarts[name]
                self.restartSent.pop(name, None)

    def stoppedBy(self, name: str, when: float) -> bool:
        """Is a die of C{name} at C{when} the end of a pycm stop or restart?"""
        sent = self.stopSent.get(name)
        return bool(self.stops[name]) and sent is not None and when >= sent

    def restartedBy(self, name: str, when: float) -> bool:
        """
        Is a start of C{name} at C{when} the one of a pycm restart?  Not
        the start of the run before it, whose event may come late.
        """
        sent = self.restartSent.get(name)
        return bool(self.restarts[name]) and sent is not None and when >= sent


class EngineView:
    """
    The engine-side view of pycm's containers: ids and last known states
    by name, as the events told them; a cache of inspects; restart
    policies, last actions, exit codes; the signals pycm sent
    (L{SignalsSent}) and its requests under way (L{RequestsInFlight}).
    """

    def __init__(self, signals: SignalsSent | None = None) -> None:
        self.signals = signals if signals is not None else SignalsSent()
        self.inFlight = RequestsInFlight()
        #: Name -> (id, L{State}) as the events told it.
        self.known: dict[str, tuple[str, str]] = {}
        #: The engine's inspect of each container, by id, until an event
        #: about it (L{DockerBackend.list} serves from it).
        self.details: dict[str, dict[str, Any]] = {}
        #: The restart policy of each container, as last inspected.
        self.policies: dict[str, str] = {}
        #: The last engine action seen for each container.
        self.lastAction: dict[str, str] = {}
        #: The exit code of each container's last die event, by id, as
        #: reported then (kept past its destroy, for C{wait --for=removed}).
        self.exits: collections.OrderedDict[str, int | None] = collections.OrderedDict()
        #: The ids whose destroy was told (an engine's late one is not told
        #: again after pycm told it for want of one).
        self.destroyed: collections.deque[str] = collections.deque(maxlen=_KEPT)
        #: Containers the kernel's OOM killer hit, until their die event.
        self.oomKilled: set[str] = set()
        #: Containers whose command could not be executed, by id: dead.
        self.startErrors: dict[str, str] = {}
        #: The inspect of a container just created, for the start that follows.
        self.justCreated: dict[str, dict[str, Any]] = {}
        #: The health status last told of each container's run, by id.
        self.healthTold: dict[str, str] = {}

    def container(self, data: dict[str, Any]) -> Container:
        """
        The L{Container} of an engine inspect, with the signals pycm sent
        it, a stop under way, and a start error; learns its policy.
        """
        name = str(data.get("Name", "")).lstrip("/")
        container = containerFromInspect(
            data, self.signals.get(name), stopping=self.inFlight.stopping(name)
        )
        self.policies[container.name] = container.restartPolicy.name
        startError = self.startErrors.get(container.id)
        if startError is not None and container.state in (State.EXITED, State.CREATED):
            container = attrs.evolve(container, state=State.DEAD, error=startError)
        return container

    def exited(self, name: str, cid: str, exitCode: int | None) -> None:
        """A die event of C{cid} (C{name}) told C{exitCode}."""
        self.oomKilled.discard(name)
        self.known[name] = (cid, State.EXITED)
        self.exits[cid] = exitCode
        self.exits.move_to_end(cid)
        while len(self.exits) > _KEPT:
            self.exits.popitem(last=False)

    def firstDestroy(self, cid: str) -> bool:
        """Is this the first destroy of C{cid} told (and now remembered)?"""
        if cid in self.destroyed:
            return False
        self.destroyed.append(cid)
        return True

    def removed(self, name: str, cid: str) -> None:
        """A destroy event of C{cid} (C{name}) was told."""
        self.startErrors.pop(cid, None)
        self.known.pop(name, None)
        self.signals.forget(name)
        self.oomKilled.discard(name)
