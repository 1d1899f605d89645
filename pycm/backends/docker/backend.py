"""
The Docker backend: L{IContainerBackend} on a Docker (or Podman) engine,
through its Engine API, with the engine doing the container work.  How it
behaves, and why: docs/docker-backend.md.
"""

from __future__ import annotations

import builtins
import math
import os
import shlex
from collections.abc import Callable
from typing import Any

import attrs
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from zope.interface import implementer

from pycm.backends import takesOptions
from pycm.backends.docker.containers import EngineView, OneAtATime
from pycm.backends.docker.engine import EngineAddress, EngineClient, EngineError, defaultHost
from pycm.backends.docker.events import EngineEvents
from pycm.backends.docker.execcheck import ExecutableCheck
from pycm.backends.docker.follow import LogReader
from pycm.backends.docker.interfaces import IDockerEngine
from pycm.backends.docker.journal import EventJournal
from pycm.backends.docker.lookup import ContainerLookup
from pycm.backends.docker.options import OPTIONS, parseSeconds, parseYesNo
from pycm.backends.docker.podman import (
    EXEC_FAILURE_CODES,
    PODMAN_EXEC_FAILURE_CODES,
    PodmanHealthChecks,
    killFirst,
    stopBetweenRuns,
)
from pycm.backends.docker.pull import ImagePuller
from pycm.backends.docker.reconcile import Reconciler
from pycm.backends.docker.signals import SignalsSent
from pycm.backends.docker.telling import EventTeller
from pycm.backends.docker.translate import (
    LIST_FILTERS,
    MANAGED_LABEL,
    createBody,
    isMissingImage,
    isNameConflict,
    isStateConflict,
    mapEngineError,
)
from pycm.backends.docker.usage import UsageReader
from pycm.backends.docker.waiting import ContainerWaits
from pycm.capabilities import ALL_OPTIONS, STATS_FIGURES, Capabilities
from pycm.errors import BackendError, BadRequest, Conflict, NotFound, PycmError
from pycm.interfaces import IContainerBackend
from pycm.model import (
    Action,
    Container,
    ContainerEvent,
    ContainerSpec,
    LogLine,
    ProgressEvent,
    State,
    parseSignal,
)
from pycm.slicedwork import SlicedWork
from pycm.stats import ContainerStats

#: In the state directory: which signals pycm sent which container.
SIGNALS_FILE = "docker-signals.json"
_EVENT_FILTERS = {"type": ["container"], **LIST_FILTERS}

CAPABILITIES = Capabilities(
    # dockerd has no --health-on-failure (nor Podman's compatible API).
    options=ALL_OPTIONS - {"health-on-failure"},
    limits=frozenset({"memory", "cpus"}),
    images="a Docker image reference (e.g. busybox:latest)",
    stats=STATS_FIGURES,
)


@takesOptions(*OPTIONS)
def makeBackend(
    reactor: Any,
    stateDir: Any,
    options: dict[str, str],
    engine: IDockerEngine | None = None,
) -> DockerBackend:
    """
    Build the Docker backend from the daemon's backend options (see
    L{OPTIONS}).  The engine keeps the containers' state; C{stateDir} (None:
    nowhere) keeps only which signals pycm sent them (L{SignalsSent}).

    @param engine: the engine to use (a fake, in tests); None: an
        L{EngineClient} at C{docker-host}, with C{request-timeout}.

    @raise BadRequest: for a bad option value (the daemon reports it and
        exits, as twistd does for its own options).
    """
    # The daemon refuses them (pycm.backends.checkOptions); other callers may not.
    if unknown := ", ".join(sorted(set(options) - set(OPTIONS))):
        DockerBackend.log.warn("docker backend ignores options it does not know: {unknown}",
                               unknown=unknown)

    def get(key: str) -> str:
        return options.get(key) or OPTIONS[key][0]

    pull = get("pull").strip().lower()
    if pull not in ("never", "missing"):
        raise BadRequest(f"--pull must be never or missing, not {pull!r}")
    if engine is None:
        try:
            address = EngineAddress.parse(get("docker-host") or defaultHost(dict(os.environ)))
        except BackendError as e:
            raise BadRequest(str(e)) from None
        timeout = parseSeconds("request-timeout", get("request-timeout"))
        engine = EngineClient(reactor, address, timeout)
    return DockerBackend(
        reactor,
        engine,
        defaultImage=get("default-image"),
        pull=pull == "missing",
        pullTimeout=parseSeconds("pull-timeout", get("pull-timeout")),
        networkMode=get("network") or None,
        defaultCommand=tuple(shlex.split(get("default-command"))) or None,
        init=parseYesNo("init", get("init")),
        stopOnClose=parseYesNo("stop-on-close", get("stop-on-close")),
        signals=SignalsSent(
            os.path.join(getattr(stateDir, "path", stateDir), SIGNALS_FILE) if stateDir else None
        ),
    )


@implementer(IContainerBackend)
class DockerBackend:
    """
    L{IContainerBackend} on a Docker engine: each operation asks the
    engine, then waits for its own event (L{EventJournal}); what the
    engine does not keep is in an L{EngineView}.

    @ivar eventGrace: how long an operation waits for its own event to come
        back on the event stream before it replies anyway.
    """

    name = "docker"
    capabilities = CAPABILITIES
    log = Logger()
    eventGrace = 3.0
    #: How often a C{wait --for=running} looks again, besides the events.
    pollInterval = 1.0
    #: How long a stop waits for Podman to settle a container between two
    #: runs of its restart policy (L{stopBetweenRuns}).
    podmanSettleTime = 5.0

    def __init__(
        self,
        reactor: Any,
        engine: IDockerEngine,
        defaultImage: str = "busybox:latest",
        pull: bool = False,
        pullTimeout: float = 300.0,
        networkMode: str | None = None,
        init: bool = True,
        stopOnClose: bool = False,
        defaultCommand: tuple[str, ...] | None = None,
        signals: SignalsSent | None = None,
    ) -> None:
        self.reactor = reactor
        self.engine = engine
        self.defaultImage = defaultImage
        self.pull = pull
        self.pullTimeout = pullTimeout
        self.networkMode = networkMode
        self.init = init
        self.stopOnClose = stopOnClose
        self.defaultCommand = defaultCommand
        self._oneAtATime = OneAtATime()
        self._view = EngineView(signals)
        self._journal = EventJournal(reactor, lambda: self._events.connected, self.eventGrace)
        self._teller = EventTeller(engine, self._view, self._journal)
        self._lookup = ContainerLookup(engine, self._view, lambda: self._events.connected, reactor)
        self._reconciler = Reconciler(
            reactor, engine, self._view, self._journal,
            lambda cid, name: self._lookup.inspect(cid, name, quiet=True),
        )
        self._events = EngineEvents(
            reactor, engine, _EVENT_FILTERS, self._teller.received, self._connected
        )
        self.capabilities = CAPABILITIES
        self._healthChecks = PodmanHealthChecks(engine)
        self._slices = SlicedWork(reactor)  # a log's lines, split between requests
        self._logs = LogReader(engine, reactor, self._slices)
        self._executables = ExecutableCheck(engine, self._logs)
        self._waits = ContainerWaits(engine, self._view, self._journal, self._lookup,
                                     self.pollInterval)
        self._puller = ImagePuller(reactor, engine, pullTimeout, self._journal.emit)
        self._usage = UsageReader(reactor, engine, self._view, self._lookup)

    # -- lifecycle ------------------------------------------------------------

    def open(self) -> Deferred[None]:
        """
        Follow the engine's events; fire once it said whether it runs health
        checks (L{PodmanHealthChecks}), or cannot be reached (calls then fail
        with L{Unavailable} until it is)."""
        self._events.start()
        return self._learnHealthChecks().addErrback(lambda _: None)

    @defer.inlineCallbacks
    def close(self) -> Any:
        """Stop following events (and, with C{stop-on-close}, the containers)."""
        if self.stopOnClose:
            try:
                containers = yield self.list()
            except PycmError:
                containers = []
            yield defer.DeferredList(
                [
                    self.stop(c.name, None)
                    for c in containers
                    if c.state in State.ALIVE or c.state == State.RESTARTING
                ],
                consumeErrors=True,
            )
        yield self._events.stop()
        self._journal.releaseAll()
        self._slices.stop()
        yield self.engine.close()

    def _connected(self, reconnect: bool) -> Deferred[Any]:
        return defer.gatherResults(
            [self._learnHealthChecks(), self._reconciler.connected(reconnect, self._events)],
            consumeErrors=True,
        )

    @defer.inlineCallbacks
    def _learnHealthChecks(self) -> Any:
        """Honour the health options only if the engine runs checks (L{PodmanHealthChecks})."""
        runs = yield self._healthChecks.run()
        self.capabilities = CAPABILITIES if runs else PodmanHealthChecks.without(CAPABILITIES)

    def addObserver(self, observer: Callable[[ContainerEvent | ProgressEvent], None]) -> None:
        self._journal.observers.append(observer)

    def removeObserver(self, observer: Callable[[ContainerEvent | ProgressEvent], None]) -> None:
        if observer in self._journal.observers:
            self._journal.observers.remove(observer)

    # -- create ---------------------------------------------------------------

    def create(self, spec: ContainerSpec) -> Deferred[Container]:
        return self._oneAtATime.run(spec.name, self._create, spec)

    @defer.inlineCallbacks
    def _create(self, spec: ContainerSpec) -> Any:
        if spec.healthcheck is not None:
            yield self._learnHealthChecks()
        self.capabilities.refuseUnsupported(self.name, spec)
        image = spec.image or self.defaultImage
        if spec.command is None and self.defaultCommand:
            spec = attrs.evolve(spec, command=self.defaultCommand)
        body = createBody(spec, image, self.networkMode, self.init)
        mark = self._journal.mark()
        try:
            _, created = yield self._createRequest(spec.name, image, body)
        except EngineError as e:
            if not (self.pull and e.status == 404 and isMissingImage(e.message)):
                raise mapEngineError(e.status, e.message, name=spec.name, image=image) from None
            yield self.pullImage(image, spec.name)
            try:
                _, created = yield self._createRequest(spec.name, image, body)
            except EngineError as e2:
                raise mapEngineError(e2.status, e2.message, name=spec.name, image=image) from None
        yield self._journal.awaitEvent(mark, spec.name, Action.CREATE)
        data = yield self._lookup.inspect(created["Id"], spec.name)
        # The daemon's run is create then start: spare start a lookup.
        self._view.justCreated[spec.name] = data
        return self._view.container(data)

    @defer.inlineCallbacks
    def _createRequest(self, name: str, image: str, body: dict[str, Any]) -> Any:
        try:
            result = yield self.engine.request("POST", "/containers/create", {"name": name}, body)
        except EngineError as e:
            if isNameConflict(e.status, e.message):
                raise Conflict(f'container name "{name}" is already in use') from None
            raise
        return result

    def pullImage(self, image: str, name: str | None = None) -> Deferred[None]:
        """Pull C{image} for the container C{name} (L{ImagePuller.pull})."""
        return self._puller.pull(image, name)

    # -- start, stop, restart, kill, remove -------------------------------------

    def start(self, name: str) -> Deferred[Container]:
        return self._oneAtATime.run(name, self._start, name)

    @defer.inlineCallbacks
    def _start(self, name: str) -> Any:
        view = self._view
        data = view.justCreated.pop(name, None)
        if data is None:
            data = yield self._lookup.resolve(name)
        cid = data["Id"]
        view.startErrors.pop(cid, None)
        if self.init and not (data.get("State") or {}).get("Running"):
            missing = yield self._executables.missing(cid, data)
            if missing is not None:
                message = f"cannot start {name}: {missing}"
                view.startErrors[cid] = message
                self._journal.emit(ContainerEvent(Action.DIE, name, self.reactor.seconds(), None))
                raise BackendError(message)
        mark = self._journal.mark()
        view.inFlight.beginStart(name)
        try:
            status, _ = yield self.engine.request("POST", f"/containers/{cid}/start")
            if status != 304:
                view.signals.forget(name)
            # Inspect at once: the reply is the container as it was started,
            # before a quick exit and a policy restart change it.
            data = yield self._lookup.inspect(cid, name)
            if status != 304:
                yield self._journal.awaitEvent(mark, name, Action.START)
        except EngineError as e:
            if e.status == 404 and "no such container" in e.message.lower():
                raise NotFound(name) from None
            # Another 404 (a missing network) is not about the container.
            # A list asks the engine again (its cached inspect says created).
            view.details.pop(cid, None)
            raise BackendError(f"cannot start {name}: {e.message}") from None
        finally:
            view.inFlight.endStart(name)
        container = view.container(data)
        if status != 304:
            # A client start resets the engine's count; a run that already
            # ended may have been counted again before the inspect.
            container = attrs.evolve(container, restartCount=0)
        execCodes = PODMAN_EXEC_FAILURE_CODES if self.engine.isPodman else EXEC_FAILURE_CODES
        if status != 304 and self.init and container.exitCode in execCodes:
            why = yield self._executables.failure(cid)
            if why is not None:
                message = f"cannot start {name}: {why}"
                view.startErrors[cid] = message
                raise BackendError(message)
        return container

    def stop(self, name: str, timeout: float | None) -> Deferred[Container]:
        return self._oneAtATime.run(name, self._stopOrRestart, name, timeout, False)

    def restart(self, name: str, timeout: float | None) -> Deferred[Container]:
        return self._oneAtATime.run(name, self._stopOrRestart, name, timeout, True)

    @defer.inlineCallbacks
    def _stopOrRestart(self, name: str, timeout: float | None, restart: bool) -> Any:
        view = self._view
        data = yield self._lookup.resolve(name)
        cid = data["Id"]
        container = view.container(data)
        seconds = container.stopTimeout if timeout is None else timeout
        params = {"t": math.ceil(max(seconds, 0))}
        alive = container.state in State.ALIVE or container.state == State.RESTARTING
        if alive:
            view.signals.add(name, parseSignal(container.stopSignal), 9)
        mark = self._journal.mark()
        view.inFlight.beginStop(name, self.reactor.seconds(), restart)
        try:
            if not restart and self.engine.isPodman:
                status = yield stopBetweenRuns(
                    self.reactor, self.engine, self._journal, view.inFlight, name, cid,
                    params, self.podmanSettleTime,
                )
            else:
                status, _ = yield self.engine.request(
                    "POST",
                    f"/containers/{cid}/{'restart' if restart else 'stop'}",
                    params,
                    timeout=params["t"] + self.engine.timeout,
                )
            if restart:
                view.signals.forget(name)
                yield self._journal.awaitEvent(mark, name, Action.RESTART)
            elif status != 304:
                yield self._journal.awaitEvent(mark, name, Action.STOP)
        except EngineError as e:
            raise mapEngineError(e.status, e.message, name=name) from None
        finally:
            view.inFlight.endStop(name, restart)
        data = yield self._lookup.inspect(cid, name)
        return view.container(data)

    def kill(self, name: str, signal: int) -> Deferred[Container]:
        # Not serialized: a kill must be able to cut a slow stop short.
        return self._kill(name, signal)

    @defer.inlineCallbacks
    def _kill(self, name: str, signal: int) -> Any:
        data = yield self._lookup.resolve(name)
        cid = data["Id"]
        mark = self._journal.mark()
        self._view.signals.add(name, signal)
        try:
            yield self.engine.request("POST", f"/containers/{cid}/kill", {"signal": str(signal)})
        except EngineError as e:
            if isStateConflict(e.status, e.message) or "is not running" in e.message:
                raise Conflict(f"container {name} is not running") from None
            raise mapEngineError(e.status, e.message, name=name) from None
        yield self._journal.awaitEvent(mark, name, Action.KILL)
        data = yield self._lookup.inspect(cid, name)
        return self._view.container(data)

    def remove(self, name: str, force: bool) -> Deferred[None]:
        if force:
            return self._remove(name, force)
        return self._oneAtATime.run(name, self._remove, name, force)

    @defer.inlineCallbacks
    def _remove(self, name: str, force: bool) -> Any:
        view = self._view
        view.justCreated.pop(name, None)
        data = yield self._lookup.resolve(name)
        cid = data["Id"]
        if force:
            view.signals.add(name, 9)
        mark = self._journal.mark()
        try:
            if force and self.engine.isPodman and (data.get("State") or {}).get("Running"):
                # Podman's remove --force is a stop (the stop signal, then
                # SIGKILL after the stop timeout); Docker's, as pycm's, a
                # SIGKILL at once.
                yield killFirst(self.engine, cid)
            yield self.engine.request("DELETE", f"/containers/{cid}", {"force": force, "v": True})
        except EngineError as e:
            if isStateConflict(e.status, e.message):
                raise Conflict(
                    f"container {name} is running: stop it first, or use --force"
                ) from None
            raise mapEngineError(e.status, e.message, name=name) from None
        view.details.pop(cid, None)
        yield self._journal.awaitEvent(mark, name, Action.DESTROY)
        if self._events.connected and not self._journal.seen(
            mark, name, frozenset({Action.DESTROY})
        ):
            # Removed, and the engine told no destroy in the grace time (an
            # engine that tells none, or a late one, then not told twice).
            self._teller.received(
                {
                    "Action": Action.DESTROY,
                    "Actor": {"ID": cid, "Attributes": {"name": name, MANAGED_LABEL: "true"}},
                    "timeNano": int(self.reactor.seconds() * 10**9),
                }
            )

    # -- list, inspect, stats -------------------------------------------------

    def list(self) -> Deferred[builtins.list[Container]]:
        """pycm's containers (L{ContainerLookup.list})."""
        return self._lookup.list()

    @defer.inlineCallbacks
    def inspect(self, name: str) -> Any:
        data = yield self._lookup.resolve(name)
        return self._view.container(data)

    def stats(self, names: Any) -> Deferred[builtins.list[ContainerStats]]:
        """The figures of C{names} (none: the running ones); L{UsageReader.stats}."""
        return self._usage.stats(names)

    # -- logs -----------------------------------------------------------------

    @defer.inlineCallbacks
    def logs(self, name: str, tail: int | None, since: float | None = None) -> Any:
        data = yield self._lookup.resolve(name)
        try:
            lines = yield self._logs.read(data["Id"], tail, since, name)
        except EngineError as e:
            raise mapEngineError(e.status, e.message, name=name) from None
        return [line for _, line in lines]

    @defer.inlineCallbacks
    def follow(
        self,
        name: str,
        tail: int | None,
        observer: Callable[[LogLine], None],
        since: float | None = None,
    ) -> Any:
        """The backlog, then the lines as they come (L{LogReader.follow})."""
        data = yield self._lookup.resolve(name)
        return (yield self._logs.follow(data["Id"], name, tail, observer, since))

    # -- wait -----------------------------------------------------------------

    def wait(self, name: str, condition: str) -> Deferred[Container]:
        # From the call on: an exit before the engine has the wait counts.
        return self._waits.wait(name, condition, self._journal.mark())


__all__ = ["CAPABILITIES", "OPTIONS", "DockerBackend", "makeBackend"]
