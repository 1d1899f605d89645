"""
pycm's containers as the engine has them now: one inspected by name or id,
or all of them listed through a cache of inspects (L{ContainerLookup}).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater

from pycm.backends.docker.containers import EngineView
from pycm.backends.docker.engine import EngineError
from pycm.backends.docker.interfaces import IDockerEngine
from pycm.backends.docker.translate import LIST_FILTERS, isManaged, mapEngineError
from pycm.errors import NotFound
from pycm.model import Container

#: How many times an inspect is asked when the engine fails it for the
#: exit of the container's process under way (L{isExitRace}).
INSPECT_TRIES = 10
#: Seconds between those tries (the engine records the exit meanwhile):
#: at most about half a second in all.
INSPECT_RETRY_DELAY = 0.05


def isExitRace(error: EngineError) -> bool:
    """
    Did the engine fail an inspect because the container's process exited
    while it looked?  Podman 4.3 reads C{/proc/PID/cgroup} of a process
    that is gone before its exit is recorded (a 500, C{read
    /proc/N/cgroup: no such process}); asked again, it answers.
    """
    return error.status == 500 and "no such process" in error.message


class ContainerLookup:
    """
    Asks one engine about pycm's containers (those with pycm's label;
    any other is L{NotFound}), keeping each inspect in the L{EngineView}'s
    cache until an event about that container.
    """

    def __init__(
        self,
        engine: IDockerEngine,
        view: EngineView,
        isConnected: Callable[[], bool],
        clock: IReactorTime,
    ) -> None:
        """
        @param isConnected: is the event stream open (else the cache may
            be stale, and L{list} inspects every container)?
        @param clock: times the tries of an inspect that raced an exit.
        """
        self.clock = clock
        self.engine = engine
        self.view = view
        self.isConnected = isConnected

    @defer.inlineCallbacks
    def inspect(self, ref: str, name: str, quiet: bool = False) -> Any:
        """
        C{GET /containers/REF/json} for one of pycm's containers.

        @return: Deferred firing with the engine's JSON; L{NotFound} if
            there is none with that name (or it is not pycm's), or None with
            C{quiet}.
        """
        tries = INSPECT_TRIES
        while True:
            try:
                _, data = yield self.engine.request("GET", f"/containers/{ref}/json")
                break
            except EngineError as e:
                tries -= 1
                if tries > 0 and isExitRace(e):
                    yield deferLater(self.clock, INSPECT_RETRY_DELAY, lambda: None)
                    continue
                if e.status == 404 and quiet:
                    return None
                raise mapEngineError(e.status, e.message, name=name) from None
        if (
            not isinstance(data, dict)
            or str(data.get("Name", "")).lstrip("/") != name
            or not isManaged((data.get("Config") or {}).get("Labels"))
        ):
            if quiet:
                return None
            raise NotFound(name)
        self.view.details[data["Id"]] = data
        return data

    def resolve(self, name: str) -> Deferred[dict[str, Any]]:
        """The engine's inspect of pycm's container C{name}; L{NotFound} if none."""
        return self.inspect(name, name)

    @defer.inlineCallbacks
    def list(self) -> Any:
        """
        One C{GET /containers/json}; details come from a cache of inspects
        that every event for a container and every state change empties.

        @return: Deferred firing with a list of L{Container}s.
        """
        try:
            _, summaries = yield self.engine.request(
                "GET", "/containers/json", {"all": True, "filters": LIST_FILTERS}
            )
        except EngineError as e:
            raise mapEngineError(e.status, e.message, name=None) from None
        view = self.view
        useCache = self.isConnected()
        result: list[Container] = []
        missing: list[tuple[str, str]] = []
        ids = set()
        for summary in summaries or ():
            cid = summary.get("Id", "")
            name = (summary.get("Names") or ["/"])[0].lstrip("/")
            ids.add(cid)
            cached = view.details.get(cid) if useCache else None
            if cached is not None and _unchanged(cached, summary):
                result.append(view.container(cached))
            else:
                missing.append((cid, name))
        if missing:
            found = yield defer.gatherResults(
                [self.inspect(cid, name, quiet=True) for cid, name in missing],
                consumeErrors=True,
            ).addErrback(lambda f: f.value.subFailure)
            result.extend(view.container(data) for data in found if data is not None)
        for cid in list(view.details):
            if cid not in ids:
                del view.details[cid]
        return result


def _unchanged(cached: dict[str, Any], summary: dict[str, Any]) -> bool:
    """
    Is a cached inspect still the container the engine lists?  Not if its
    state changed, nor while its health check runs: each check changes its
    health's streak and log, with no event.
    """
    state = cached.get("State") or {}
    return state.get("Status") == summary.get("State") and not (
        state.get("Running") and state.get("Health")
    )
