"""
The Docker backend: pycm in front of a Docker engine, through its Engine
API (L{pycm.backends.docker.engine}), with the engine doing the container
work.

Containers pycm creates carry the label C{io.pycm.managed=true}; the
backend sees only those (any other container is L{NotFound}, and its name
is a L{Conflict} for C{create}).  Events come from one filtered
C{GET /events} stream (L{pycm.backends.docker.events}); every operation's
Deferred fires only after the observers have seen its event (or after
L{DockerBackend.eventGrace} seconds if the stream is late), so the event
log is in step with the replies.  How engine states and exit codes map to
pycm's is in L{pycm.backends.docker.translate}.

While the engine is unreachable every call fails with L{Unavailable}; the
backend keeps trying in the background and recovers by itself.

Choices worth knowing (options: L{OPTIONS}):
  - Containers run under docker-init (C{HostConfig.Init}, option C{init})
    so a stop signal reaches the command as on a host (C{stop} of
    C{sleep} gives -15, not a timeout and -9).  Since the engine then starts
    even a command that does not exist, C{start} first looks for the
    executable in the container's filesystem; a missing one fails C{start}
    with L{BackendError} and the container is C{dead} (remembered in
    memory only: after a daemon restart it shows as C{exited} 127).
  - C{close} leaves the containers running (the engine owns them); option
    C{stop-on-close} stops them instead.
  - Restarts by the engine's restart policy appear as C{start} then
    C{restart}, as the contract has it; so does a C{docker start} of a
    stopped pycm container from outside pycm when it has a policy.
  - Pull progress goes to the log, and to the observers as
    L{ProgressEvent}s (one each time a layer's status changes), so event
    subscribers such as the shell see it.
  - On Podman's compatible API (L{EngineClient.isPodman}; 4.3 tested) the
    replies and events are made Docker's: its C{remove} event is
    C{destroy}; its own C{stop} and C{restart} events (a restart is told
    before the container stops, a stop only now and then) are dropped and
    the backend tells them where Docker does (L{_podmanEvents}), with the
    C{kill} of a stop that escalated; C{remove --force} sends SIGKILL
    first (Podman's is a stop); a stop that finds the container between
    two runs of its policy is repeated once it runs; a log follow waits
    for Podman's first line with no time limit.  Any engine that tells no
    C{destroy} after a remove gets one from the backend, after the grace
    time.
"""

from __future__ import annotations

import collections
import math
import os
import posixpath
import re
import shlex
from collections.abc import Callable
from typing import Any

import attrs
from twisted.internet import defer, task
from twisted.internet.defer import Deferred, DeferredLock
from twisted.logger import Logger
from zope.interface import implementer

from pycm.backends.docker.engine import (
    EngineAddress,
    EngineClient,
    EngineError,
    Stream,
    defaultHost,
)
from pycm.backends.docker.events import EngineEvents
from pycm.backends.docker.interfaces import IDockerEngine
from pycm.backends.docker.signals import SignalsSent
from pycm.backends.docker.stream import Demultiplexer, JSONLines, LogLineSplitter
from pycm.backends.docker.translate import (
    ACTION_ALIASES,
    ACTIONS,
    MANAGED_LABEL,
    RESTART_POLICY_LABEL,
    commandOf,
    containerFromInspect,
    createBody,
    isManaged,
    isMissingImage,
    isNameConflict,
    isStateConflict,
    mapEngineError,
    mapExitCode,
    mapPullError,
    sinceParam,
    splitImage,
    usageFromStats,
)
from pycm.errors import (
    BackendError,
    BadRequest,
    Conflict,
    NotFound,
    PycmError,
    Unavailable,
)
from pycm.interfaces import IContainerBackend
from pycm.model import (
    ALL_OPTIONS,
    DEFAULT_PATH,
    STATS_FIGURES,
    Action,
    Capabilities,
    Container,
    ContainerEvent,
    ContainerSpec,
    LogFollow,
    LogLine,
    ProgressEvent,
    State,
    WaitCondition,
    parseSignal,
    parseTime,
)
from pycm.stats import ContainerStats, CpuSampler

#: The backend options C{makeBackend} takes (C{--docker-host} and so on on
#: the daemon's command line), with their defaults and help.
OPTIONS: dict[str, tuple[str, str]] = {
    "docker-host": (
        "",
        "the engine: unix:///PATH or tcp://HOST:PORT (default: $DOCKER_HOST, "
        "else unix:///var/run/docker.sock)",
    ),
    "default-image": ("busybox:latest", "the image of a run/create that names none"),
    "pull": ("never", "never: a missing image is ERR no_image; missing: pull it"),
    "request-timeout": ("10", "seconds an engine request may take"),
    "pull-timeout": ("300", "seconds a pull may take"),
    "default-command": (
        "",
        "the command of a run/create that gives none, as shell words (default: the image's own)",
    ),
    "network": ("", "HostConfig.NetworkMode of new containers (e.g. none)"),
    "init": ("yes", "yes: run docker-init as PID 1 (signals behave as on a host)"),
    "stop-on-close": (
        "no",
        "yes: stop pycm's running containers when the daemon stops",
    ),
}

_TINI_EXEC_FAILED = re.compile(r"\[FATAL tini \(\d+\)\] exec (.*) failed: (.*)")
#: Podman's init (catatonit) says this, and exits 1, when it cannot exec.
_CATATONIT_EXEC_FAILED = re.compile(r"ERROR \(catatonit:\d+\): failed to exec pid1: (.*)")
_LIST_FILTERS = {"label": [f"{MANAGED_LABEL}=true"]}
#: In the state directory: which signals pycm sent which container.
SIGNALS_FILE = "docker-signals.json"
_EVENT_FILTERS = {"type": ["container"], **_LIST_FILTERS}

CAPABILITIES = Capabilities(
    options=ALL_OPTIONS,
    limits=frozenset({"memory", "cpus"}),
    images="a Docker image reference (e.g. busybox:latest)",
    stats=STATS_FIGURES,
)


def _yesNo(option: str, text: str) -> bool:
    value = text.strip().lower()
    if value in ("yes", "true", "1", "on"):
        return True
    if value in ("no", "false", "0", "off"):
        return False
    raise BadRequest(f"--{option} must be yes or no, not {text!r}")


def _seconds(option: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0 or math.isinf(value):
        raise BadRequest(f"--{option} must be a positive number of seconds, not {text!r}")
    return value


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
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        DockerBackend.log.warn(
            "docker backend ignores options it does not know: {unknown}",
            unknown=", ".join(unknown),
        )

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
        engine = EngineClient(reactor, address, _seconds("request-timeout", get("request-timeout")))
    return DockerBackend(
        reactor,
        engine,
        defaultImage=get("default-image"),
        pull=pull == "missing",
        pullTimeout=_seconds("pull-timeout", get("pull-timeout")),
        networkMode=get("network") or None,
        defaultCommand=tuple(shlex.split(get("default-command"))) or None,
        init=_yesNo("init", get("init")),
        stopOnClose=_yesNo("stop-on-close", get("stop-on-close")),
        signals=SignalsSent(
            os.path.join(getattr(stateDir, "path", stateDir), SIGNALS_FILE) if stateDir else None
        ),
    )


class _Waiter:
    """Someone waiting for an event (name, action) after a sequence number."""

    def __init__(self, name: str, actions: frozenset[str], after: int) -> None:
        self.name = name
        self.actions = actions
        self.after = after
        self.deferred: Deferred[None] = Deferred(lambda d: None)


@implementer(IContainerBackend)
class DockerBackend:
    """
    L{IContainerBackend} on a Docker engine.

    @ivar eventGrace: how long an operation waits for its own event to come
        back on the event stream before it replies anyway.
    """

    name = "docker"
    capabilities = CAPABILITIES
    log = Logger()
    eventGrace = 3.0
    #: How often a C{wait --for=running} looks again, besides the events.
    pollInterval = 1.0

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
        self._observers: list[Callable[[ContainerEvent | ProgressEvent], None]] = []
        self._locks: dict[str, DeferredLock] = {}
        self._stopping: collections.Counter[str] = collections.Counter()
        self._signals = signals if signals is not None else SignalsSent()
        #: Containers the kernel's OOM killer hit, until their die event.
        self._oomKilled: set[str] = set()
        self._known: dict[str, tuple[str, str]] = {}
        self._details: dict[str, dict[str, Any]] = {}
        self._seq = 0
        self._recent: collections.deque[tuple[int, str, str]] = collections.deque(maxlen=2000)
        self._waiters: list[_Waiter] = []
        self._events = EngineEvents(
            reactor, engine, _EVENT_FILTERS, self._engineEvent, self._connected
        )
        self._closed = False
        #: Containers whose command could not be executed, by id: dead.
        self._startErrors: dict[str, str] = {}
        #: The inspect of a container just created, for the start that follows.
        self._justCreated: dict[str, dict[str, Any]] = {}
        #: pycm start/restart calls in flight, by name.
        self._clientStarts: collections.Counter[str] = collections.Counter()
        #: pycm restart calls in flight, by name (Podman: see L{_podmanEvents}).
        self._restarting: collections.Counter[str] = collections.Counter()
        #: When pycm last asked the engine to restart each container it is
        #: restarting: a late start event of the run before is not its.
        self._restartSent: dict[str, float] = {}
        #: When pycm last asked the engine to stop (or restart) each
        #: container it is stopping: Podman's die events of earlier runs may
        #: come after that, and are not the stop's.
        self._stopSent: dict[str, float] = {}
        #: The ids whose destroy was told (an engine's late one is not told
        #: again after pycm told it for want of one).
        self._destroyed: collections.deque[str] = collections.deque(maxlen=1000)
        #: The restart policy of each container, as last inspected.
        self._policies: dict[str, str] = {}
        #: The last engine action seen for each container.
        self._lastAction: dict[str, str] = {}
        #: The exit code of each container's last die event, by id, as
        #: reported then (kept past its destroy, for C{wait --for=removed}).
        self._exits: collections.OrderedDict[str, int | None] = collections.OrderedDict()
        #: CPU samples, for an engine that sends no previous one.
        self._cpu = CpuSampler(reactor)

    # -- lifecycle ------------------------------------------------------------

    def open(self) -> Deferred[None]:
        """
        Start following the engine's events.  Fires at once: if the engine
        is not there yet, calls fail with L{Unavailable} until it is.
        """
        self._events.start()
        return defer.succeed(None)

    @defer.inlineCallbacks
    def close(self) -> Any:
        """Stop following events (and, with C{stop-on-close}, the containers)."""
        self._closed = True
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
        for waiter in self._waiters:
            if not waiter.deferred.called:
                waiter.deferred.callback(None)
        self._waiters = []
        yield self.engine.close()

    def addObserver(self, observer: Callable[[ContainerEvent | ProgressEvent], None]) -> None:
        self._observers.append(observer)

    def removeObserver(self, observer: Callable[[ContainerEvent | ProgressEvent], None]) -> None:
        if observer in self._observers:
            self._observers.remove(observer)

    # -- events ---------------------------------------------------------------

    def _emit(self, event: ContainerEvent | ProgressEvent) -> None:
        for observer in list(self._observers):
            try:
                observer(event)
            except Exception:
                self.log.failure("event observer {observer!r} failed", observer=observer)

    def _engineEvent(self, raw: dict[str, Any]) -> None:
        """Turn one engine event into a pycm event, and note what it says."""
        action = str(raw.get("Action") or raw.get("status") or "")
        action = action.split(":", 1)[0]
        action = ACTION_ALIASES.get(action, action)
        actor = raw.get("Actor") or {}
        attributes = actor.get("Attributes") or {}
        name = str(attributes.get("name", ""))
        cid = str(actor.get("ID") or raw.get("id") or "")
        if not name or not isManaged(attributes):
            return
        if action == "oom":
            # The kernel's OOM killer sent SIGKILL: the die that follows
            # (137) is -9, as inspect (OOMKilled) has it.
            self._oomKilled.add(name)
            return
        if action not in ACTIONS:
            return
        if action == Action.DESTROY:
            if cid in self._destroyed:
                return
            self._destroyed.append(cid)
        podman = self.engine.isPodman
        if podman and action in (Action.RESTART, Action.STOP):
            # Podman tells a restart (pycm's or its policy's) before the
            # container stops, and a stop only now and then: the backend
            # tells both itself (L{_podmanEvents}, and the start below).
            return
        self._details.pop(cid, None)
        nano = raw.get("timeNano")
        when = nano / 1e9 if isinstance(nano, int) else float(raw.get("time", 0))
        exitCode = None
        if action == Action.START:
            self._signals.forget(name)
            previous = self._lastAction.get(name)
            self._known[name] = (cid, State.RUNNING)
            if not self._clientStarts[name]:
                # Not a pycm start or restart: the engine's restart policy
                # (or a start by another client of the engine).
                # The label, for a start that comes before the daemon
                # learnt the policy (Podman restarts at once, with no
                # back-off, so one may come while it reconciles).
                policy = self._policies.get(name) or attributes.get(RESTART_POLICY_LABEL)
                automatic = policy != "no" if policy else previous == Action.DIE
                if automatic:
                    self._emit(ContainerEvent(action, name, when))
                    self._note(name, action)
                    action = Action.RESTART
        elif action == Action.CREATE:
            self._signals.forget(name)
            self._oomKilled.discard(name)
            self._known[name] = (cid, State.CREATED)
        elif action == Action.KILL:
            try:
                signum = parseSignal(str(attributes.get("signal", "9")))
            except PycmError:
                signum = 9
            self._signals.add(name, signum)
            if self._stopping[name] and signum != 9:
                # The stop signal of a pycm stop: the contract's kill event
                # is only for a stop that had to escalate.
                return self._note(name, "stop-signal")
        elif action == Action.DIE:
            try:
                code = int(attributes.get("exitCode", ""))
            except ValueError:
                code = None
            if podman and code == 128 + 9 and self._stoppedBy(name, when):
                # Podman tells no kill when a stop escalates: tell it
                # before the die, as Docker does.
                self._emit(ContainerEvent(Action.KILL, name, when))
                self._note(name, Action.KILL)
            exitCode = mapExitCode(code, self._signals.get(name), name in self._oomKilled)
            self._oomKilled.discard(name)
            self._known[name] = (cid, State.EXITED)
            self._exits[cid] = exitCode
            self._exits.move_to_end(cid)
            while len(self._exits) > 1000:
                self._exits.popitem(last=False)
        elif action == Action.DESTROY:
            self._startErrors.pop(cid, None)
            self._known.pop(name, None)
            self._signals.forget(name)
            self._oomKilled.discard(name)
        self._lastAction[name] = action
        self._emit(ContainerEvent(action, name, when, exitCode))
        self._note(name, action)
        if podman:
            self._podmanEvents(name, action, when)
        if action in (Action.DESTROY, Action.START):
            self._justCreated.pop(name, None)
        if action == Action.DESTROY:
            self._lastAction.pop(name, None)
            self._policies.pop(name, None)

    def _podmanEvents(self, name: str, action: str, when: float) -> None:
        """
        Tell what Podman's event stream leaves out after C{action}: the
        C{stop} after the die of a pycm stop or restart, and the
        C{restart} after the start of a pycm restart (Podman tells its
        own restart first, which L{_engineEvent} drops).
        """
        if action == Action.DIE and self._stoppedBy(name, when):
            self._lastAction[name] = Action.STOP
            self._emit(ContainerEvent(Action.STOP, name, when))
            self._note(name, Action.STOP)
        elif action == Action.START and self._restartedBy(name, when):
            self._lastAction[name] = Action.RESTART
            self._emit(ContainerEvent(Action.RESTART, name, when))
            self._note(name, Action.RESTART)

    def _restartedBy(self, name: str, when: float) -> bool:
        """
        Is a start of C{name} at C{when} the one of a pycm restart?  Not
        the start of the run before it, whose event may come late.
        """
        sent = self._restartSent.get(name)
        return bool(self._restarting[name]) and sent is not None and when >= sent

    def _stoppedBy(self, name: str, when: float) -> bool:
        """Is a die of C{name} at C{when} the end of a pycm stop or restart?"""
        sent = self._stopSent.get(name)
        return bool(self._stopping[name]) and sent is not None and when >= sent

    def _note(self, name: str, action: str) -> None:
        """Record that C{action} happened to C{name}; fire who waits for it."""
        self._seq += 1
        self._recent.append((self._seq, name, action))
        fired = [
            w
            for w in self._waiters
            if w.name == name and action in w.actions and self._seq > w.after
        ]
        for waiter in fired:
            self._waiters.remove(waiter)
            if not waiter.deferred.called:
                waiter.deferred.callback(None)

    def _mark(self) -> int:
        """A point in the event sequence to wait from."""
        return self._seq

    def _seen(self, mark: int, name: str, actions: frozenset[str]) -> bool:
        """Has an event in C{actions} for C{name} been seen after C{mark}?"""
        for seq, seen, action in reversed(self._recent):
            if seq <= mark:
                break
            if seen == name and action in actions:
                return True
        return False

    def _awaitEvent(
        self, mark: int, name: str, *actions: str, grace: float | None = None
    ) -> Deferred[None]:
        """
        Fire once an event in C{actions} for C{name} has been seen after
        C{mark}, or at once if the stream is down, or after the grace time.
        """
        wanted = frozenset(actions)
        if self._seen(mark, name, wanted):
            return defer.succeed(None)
        if not self._events.connected:
            return defer.succeed(None)
        waiter = _Waiter(name, wanted, mark)
        self._waiters.append(waiter)
        d = waiter.deferred
        timeout = self.eventGrace if grace is None else grace

        def late() -> None:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
            if not d.called:
                self.log.warn(
                    "no {actions} event for {name} from the engine within {t} s",
                    actions="/".join(sorted(wanted)),
                    name=name,
                    t=timeout,
                )
                d.callback(None)

        call = self.reactor.callLater(timeout, late)

        def stopTimer(result: Any) -> Any:
            if call.active():
                call.cancel()
            return result

        return d.addBoth(stopTimer)

    def _eventAfter(self, mark: int, name: str, *actions: str) -> Deferred[None]:
        """
        Fire once an event in C{actions} for C{name} has been seen after
        C{mark}, however late; cancelling it stops the waiting.
        """
        wanted = frozenset(actions)
        if self._seen(mark, name, wanted):
            return defer.succeed(None)
        waiter = _Waiter(name, wanted, mark)
        self._waiters.append(waiter)

        def forget(result: Any) -> Any:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
            return result

        return waiter.deferred.addBoth(forget)

    @defer.inlineCallbacks
    def _connected(self, reconnect: bool) -> Any:
        """
        The event stream is (again) open: compare the engine's containers
        with what the events said, and emit what an engine restart lost;
        learn the restart policies of containers this daemon has not seen
        yet (after a daemon restart), so their policy restarts are told as
        such.

        The comparison is against one snapshot of what the events said,
        taken with the engine's list; a container a live event changes
        while this looks at it is left to that event.
        """
        remembered = self._signals.names()
        try:
            _, summaries = yield self.engine.request(
                "GET", "/containers/json", {"all": True, "filters": _LIST_FILTERS}
            )
        except (PycmError, EngineError, defer.CancelledError):
            # Unreachable again (the next connection compares again), or
            # the backend is closing.
            return
        current: dict[str, tuple[str, str]] = {}
        unknownPolicy: list[tuple[str, str]] = []
        for summary in summaries or ():
            names = summary.get("Names") or ["/"]
            name = names[0].lstrip("/")
            cid = str(summary.get("Id", ""))
            state = str(summary.get("State", ""))
            alive = state in ("running", "restarting", "paused")
            current[name] = (cid, "running" if alive else state)
            policy = (summary.get("Labels") or {}).get(RESTART_POLICY_LABEL)
            if policy:
                self._policies.setdefault(name, policy)
            elif name not in self._policies:
                unknownPolicy.append((cid, name))
            if name not in self._lastAction:
                self._lastAction[name] = Action.START if state == "running" else Action.DIE
        # What was sent to containers removed meanwhile, or restarted while
        # no daemon watched, no longer applies.
        self._signals.settle(
            remembered, {name: state == "running" for name, (_, state) in current.items()}
        )
        known = dict(self._known)

        def untouched(name: str) -> bool:
            # No live event has changed it since the snapshot.
            return self._known.get(name) == known.get(name)

        if reconnect:
            stopped = [
                (name, cid)
                for name, (cid, state) in known.items()
                if state == State.RUNNING
                and current.get(name, ("", ""))[0] == cid
                and current[name][1] != "running"
            ]
            found = yield defer.gatherResults(
                [self._inspectId(cid, name, quiet=True) for name, cid in stopped],
                consumeErrors=True,
            ).addErrback(lambda f: [None] * len(stopped))
            codes = {
                name: self._container(data).exitCode if data is not None else None
                for (name, _), data in zip(stopped, found, strict=True)
            }
            now = self.reactor.seconds()
            for name, (cid, state) in known.items():
                if not untouched(name):
                    continue
                now_ = current.get(name)
                if now_ is None or now_[0] != cid:
                    if state == State.RUNNING:
                        self._emit(ContainerEvent(Action.DIE, name, now, None))
                        self._note(name, Action.DIE)
                    self._emit(ContainerEvent(Action.DESTROY, name, now))
                    self._note(name, Action.DESTROY)
                elif name in codes:
                    self._emit(ContainerEvent(Action.DIE, name, now, codes[name]))
                    self._note(name, Action.DIE)
            for name, (cid, state) in current.items():
                if not untouched(name):
                    continue
                before = known.get(name)
                if before is None or before[0] != cid:
                    self._emit(ContainerEvent(Action.CREATE, name, now))
                    self._note(name, Action.CREATE)
                    if state == "running":
                        self._emit(ContainerEvent(Action.START, name, now))
                        self._note(name, Action.START)
                elif before[1] != State.RUNNING and state == "running":
                    self._emit(ContainerEvent(Action.START, name, now))
                    self._note(name, Action.START)
        for name in set(known) | set(current):
            if not untouched(name):
                continue
            if name in current:
                cid, state = current[name]
                self._known[name] = (cid, State.RUNNING if state == "running" else State.EXITED)
            else:
                self._known.pop(name, None)
        self._details.clear()
        if unknownPolicy:
            # Created before the policy label, by an older pycm.
            found = yield defer.gatherResults(
                [self._inspectId(cid, name, quiet=True) for cid, name in unknownPolicy],
                consumeErrors=True,
            ).addErrback(lambda f: [])
            for data in found:
                if data is not None:
                    self._container(data)

    # -- helpers --------------------------------------------------------------

    def _lock(self, name: str) -> DeferredLock:
        lock = self._locks.get(name)
        if lock is None:
            lock = self._locks[name] = DeferredLock()
        return lock

    def _serially(self, name: str, f: Callable[..., Any], *args: Any) -> Deferred[Any]:
        """Run C{f} under C{name}'s lock: one operation per container at a time."""
        lock = self._lock(name)

        def release(result: Any) -> Any:
            lock.release()
            if not lock.locked and not lock.waiting and self._locks.get(name) is lock:
                del self._locks[name]
            return result

        def locked(_: Any) -> Deferred[Any]:
            return defer.maybeDeferred(f, *args).addBoth(release)

        return lock.acquire().addCallback(locked)

    def _container(self, data: dict[str, Any]) -> Container:
        name = str(data.get("Name", "")).lstrip("/")
        container = containerFromInspect(
            data, self._signals.get(name), stopping=self._stopping[name] > 0
        )
        self._policies[container.name] = container.restartPolicy.name
        startError = self._startErrors.get(container.id)
        if startError is not None and container.state in (State.EXITED, State.CREATED):
            container = attrs.evolve(container, state=State.DEAD, error=startError)
        return container

    def _fail(self, error: BaseException, name: str | None = None, **kw: Any) -> Exception:
        if isinstance(error, EngineError):
            return mapEngineError(error.status, error.message, name=name, **kw)
        return error  # type: ignore[return-value]

    @defer.inlineCallbacks
    def _inspectId(self, ref: str, name: str, quiet: bool = False) -> Any:
        """
        C{GET /containers/REF/json} for one of pycm's containers.

        @return: Deferred firing with the engine's JSON; L{NotFound} if
            there is none with that name (or it is not pycm's), or None with
            C{quiet}.
        """
        try:
            _, data = yield self.engine.request("GET", f"/containers/{ref}/json")
        except EngineError as e:
            if e.status == 404 and quiet:
                return None
            raise self._fail(e, name) from None
        if (
            not isinstance(data, dict)
            or str(data.get("Name", "")).lstrip("/") != name
            or not isManaged((data.get("Config") or {}).get("Labels"))
        ):
            if quiet:
                return None
            raise NotFound(name)
        self._details[data["Id"]] = data
        return data

    def _resolve(self, name: str) -> Deferred[dict[str, Any]]:
        return self._inspectId(name, name)

    # -- create ---------------------------------------------------------------

    def create(self, spec: ContainerSpec) -> Deferred[Container]:
        return self._serially(spec.name, self._create, spec)

    @defer.inlineCallbacks
    def _create(self, spec: ContainerSpec) -> Any:
        image = spec.image or self.defaultImage
        if spec.command is None and self.defaultCommand:
            spec = attrs.evolve(spec, command=self.defaultCommand)
        body = createBody(spec, image, self.networkMode, self.init)
        mark = self._mark()
        try:
            _, created = yield self._createRequest(spec.name, image, body)
        except EngineError as e:
            if not (self.pull and e.status == 404 and isMissingImage(e.message)):
                raise self._fail(e, spec.name, image=image) from None
            yield self.pullImage(image, spec.name)
            try:
                _, created = yield self._createRequest(spec.name, image, body)
            except EngineError as e2:
                raise self._fail(e2, spec.name, image=image) from None
        yield self._awaitEvent(mark, spec.name, Action.CREATE)
        data = yield self._inspectId(created["Id"], spec.name)
        # The daemon's run is create then start: spare start a lookup.
        self._justCreated[spec.name] = data
        return self._container(data)

    @defer.inlineCallbacks
    def _createRequest(self, name: str, image: str, body: dict[str, Any]) -> Any:
        try:
            result = yield self.engine.request("POST", "/containers/create", {"name": name}, body)
        except EngineError as e:
            if isNameConflict(e.status, e.message):
                raise Conflict(f'container name "{name}" is already in use') from None
            raise
        return result

    @defer.inlineCallbacks
    def pullImage(self, image: str, name: str | None = None) -> Any:
        """
        Pull C{image} (C{POST /images/create}), logging its progress and,
        for the container C{name}, emitting a L{ProgressEvent} each time a
        layer's status changes.

        @return: Deferred firing with None once pulled; L{NoImage} if the
            registry has no such image, L{Unavailable} if it cannot be
            reached, L{BackendError} for other failures (see
            L{mapPullError}).
        """
        fromImage, tag = splitImage(image)
        errors: list[str] = []
        lastStatus: dict[str, str] = {}

        def progress(item: Any) -> None:
            if not isinstance(item, dict):
                return
            if item.get("error"):
                errors.append(str(item["error"]))
                return
            status = str(item.get("status", ""))
            key = str(item.get("id", ""))
            if lastStatus.get(key) != status:
                lastStatus[key] = status
                self.log.info("pulling {image}: {id} {status}", image=image, id=key, status=status)
                if name is not None:
                    detail = " ".join(part for part in (image, key, status) if part)
                    self._emit(ProgressEvent(
                        name, "pull", detail, self.reactor.seconds(),
                        image=image, layer=key, status=status,
                    ))

        parser = JSONLines(progress)
        self.log.info("pulling {image}", image=image)
        try:
            stream: Stream = yield self.engine.stream(
                "POST", "/images/create", {"fromImage": fromImage, "tag": tag}, parser.feed
            )
        except EngineError as e:
            raise mapPullError(image, e.status, e.message) from None
        timedOut = [False]

        def timeout() -> None:
            timedOut[0] = True
            stream.cancel()

        call = self.reactor.callLater(self.pullTimeout, timeout)
        yield stream.ended
        if call.active():
            call.cancel()
        parser.flush()
        if timedOut[0]:
            raise Unavailable(f"pulling {image} took longer than {self.pullTimeout:g} s")
        if errors:
            raise mapPullError(image, None, errors[-1])
        self.log.info("pulled {image}", image=image)

    # -- start, stop, restart, kill, remove -------------------------------------

    def start(self, name: str) -> Deferred[Container]:
        return self._serially(name, self._start, name)

    @defer.inlineCallbacks
    def _start(self, name: str) -> Any:
        data = self._justCreated.pop(name, None)
        if data is None:
            data = yield self._resolve(name)
        cid = data["Id"]
        self._startErrors.pop(cid, None)
        if self.init and not (data.get("State") or {}).get("Running"):
            missing = yield self._missingExecutable(cid, data)
            if missing is not None:
                message = f"cannot start {name}: {missing}"
                self._startErrors[cid] = message
                self._emit(ContainerEvent(Action.DIE, name, self.reactor.seconds(), None))
                raise BackendError(message)
        mark = self._mark()
        self._clientStarts[name] += 1
        try:
            status, _ = yield self.engine.request("POST", f"/containers/{cid}/start")
            if status != 304:
                self._signals.forget(name)
            # Inspect at once: the reply is the container as it was started,
            # before a quick exit and a policy restart change it.
            data = yield self._inspectId(cid, name)
            if status != 304:
                yield self._awaitEvent(mark, name, Action.START)
        except EngineError as e:
            if e.status == 404 and "no such container" in e.message.lower():
                raise NotFound(name) from None
            # Another 404 (a missing network) is not about the container.
            raise BackendError(f"cannot start {name}: {e.message}") from None
        finally:
            self._clientStarts[name] -= 1
            if self._clientStarts[name] <= 0:
                del self._clientStarts[name]
        container = self._container(data)
        if status != 304:
            # A client start resets the engine's count; a run that already
            # ended may have been counted again before the inspect.
            container = attrs.evolve(container, restartCount=0)
        # docker-init exits 127 (126) when it cannot exec; catatonit 1.
        execCodes = (1, 126, 127) if self.engine.isPodman else (126, 127)
        if status != 304 and self.init and container.exitCode in execCodes:
            why = yield self._execFailure(cid)
            if why is not None:
                message = f"cannot start {name}: {why}"
                self._startErrors[cid] = message
                raise BackendError(message)
        return container

    @defer.inlineCallbacks
    def _missingExecutable(self, cid: str, data: dict[str, Any]) -> Any:
        """
        Why the container's command cannot be executed, or None if it can
        (as far as a look at its filesystem tells).  Under docker-init the
        engine starts a container whose command does not exist (init
        then exits 127), so look first: C{HEAD /containers/ID/archive} of
        the command, along the container's C{PATH}.
        """
        command = commandOf(data)
        path = command[0] if command else None
        if not path:
            return None
        config = data.get("Config") or {}
        searchPath = DEFAULT_PATH
        for item in config.get("Env") or ():
            if item.startswith("PATH="):
                searchPath = item[len("PATH=") :]
        if "/" in path:
            workdir = config.get("WorkingDir") or "/"
            candidates = [path if path.startswith("/") else posixpath.join(workdir, path)]
        else:
            candidates = [posixpath.join(d, path) for d in searchPath.split(":") if d]

        def exists(candidate: str) -> Deferred[bool]:
            d = self.engine.request("HEAD", f"/containers/{cid}/archive", {"path": candidate})

            def failed(f: Any) -> bool:
                return not (f.check(EngineError) and f.value.status == 404)

            return d.addCallbacks(lambda _: True, failed)

        if not candidates:
            return None
        found = yield defer.gatherResults([exists(c) for c in candidates])
        if any(found):
            return None
        if "/" in path:
            return f'exec: "{path}": no such file or directory'
        return f'exec: "{path}": executable file not found in $PATH'

    @defer.inlineCallbacks
    def _execFailure(self, cid: str) -> Any:
        """
        Why docker-init could not run the command, from its last words, or
        None: with C{init}, a command that cannot be executed is not an
        engine start error but a quick exit 127 (126) with this message.
        """
        try:
            lines = yield self._readLogs(cid, 5)
        except (EngineError, PycmError):
            return None
        for _, line in reversed(lines):
            match = _TINI_EXEC_FAILED.match(line.line)
            if line.stream == "stderr" and match:
                return f"exec {match.group(1)}: {match.group(2)}"
            match = _CATATONIT_EXEC_FAILED.match(line.line)
            if line.stream == "stderr" and match:
                return f"exec: {match.group(1)}"
        return None

    def stop(self, name: str, timeout: float | None) -> Deferred[Container]:
        return self._serially(name, self._stopOrRestart, name, timeout, False)

    def restart(self, name: str, timeout: float | None) -> Deferred[Container]:
        return self._serially(name, self._stopOrRestart, name, timeout, True)

    @defer.inlineCallbacks
    def _stopOrRestart(self, name: str, timeout: float | None, restart: bool) -> Any:
        data = yield self._resolve(name)
        cid = data["Id"]
        container = self._container(data)
        seconds = container.stopTimeout if timeout is None else timeout
        params = {"t": math.ceil(max(seconds, 0))}
        alive = container.state in State.ALIVE or container.state == State.RESTARTING
        if alive:
            self._signals.add(name, parseSignal(container.stopSignal), 9)
        mark = self._mark()
        self._stopping[name] += 1
        self._stopSent[name] = self.reactor.seconds()
        if restart:
            # The engine's start during POST /restart is pycm's, not its
            # restart policy's: one restart event, not two.
            self._clientStarts[name] += 1
            self._restarting[name] += 1
            self._restartSent[name] = self._stopSent[name]
        try:
            status, _ = yield self.engine.request(
                "POST",
                f"/containers/{cid}/{'restart' if restart else 'stop'}",
                params,
                timeout=params["t"] + self.engine.timeout,
            )
            if status == 304 and not restart and self.engine.isPodman:
                status = yield self._podmanStopBetweenRuns(name, cid, params)
            if restart:
                self._signals.forget(name)
                yield self._awaitEvent(mark, name, Action.RESTART)
            elif status != 304:
                yield self._awaitEvent(mark, name, Action.STOP)
        except EngineError as e:
            raise self._fail(e, name) from None
        finally:
            self._stopping[name] -= 1
            if self._stopping[name] <= 0:
                del self._stopping[name]
                self._stopSent.pop(name, None)
            if restart:
                self._clientStarts[name] -= 1
                if self._clientStarts[name] <= 0:
                    del self._clientStarts[name]
                self._restarting[name] -= 1
                if self._restarting[name] <= 0:
                    del self._restarting[name]
                    self._restartSent.pop(name, None)
        data = yield self._inspectId(cid, name)
        return self._container(data)

    #: How long a stop waits for Podman to settle a container between two
    #: runs of its restart policy (L{_podmanStopBetweenRuns}).
    podmanSettleTime = 5.0

    @defer.inlineCallbacks
    def _podmanStopBetweenRuns(self, name: str, cid: str, params: dict[str, Any]) -> Any:
        """
        Podman answers 304 to a stop that finds the container between two
        runs of its restart policy (C{stopped}, not yet C{exited}), and
        starts it again: look until it is C{exited} for good, stopping it
        again once it runs (a stop of a running container ends the
        policy), for at most L{podmanSettleTime} seconds.

        @return: Deferred firing with the status of the last stop.
        """
        # No stop is in effect: the die of a run the policy starts now is
        # not this stop's.
        self._stopSent.pop(name, None)
        deadline = self.reactor.seconds() + self.podmanSettleTime
        while self.reactor.seconds() < deadline:
            _, data = yield self.engine.request("GET", f"/containers/{cid}/json")
            status = str(((data or {}).get("State") or {}).get("Status", ""))
            if status in ("exited", "created", "dead", "removing", ""):
                return 304
            if status == "running":
                self._stopSent[name] = self.reactor.seconds()
                stopped, _ = yield self.engine.request(
                    "POST",
                    f"/containers/{cid}/stop",
                    params,
                    timeout=params["t"] + self.engine.timeout,
                )
                if stopped != 304:
                    return stopped
                self._stopSent.pop(name, None)
            yield task.deferLater(self.reactor, 0.05, lambda: None)
        return 304

    def kill(self, name: str, signal: int) -> Deferred[Container]:
        # Not serialized: a kill must be able to cut a slow stop short.
        return defer.ensureDeferred(self._kill(name, signal))

    async def _kill(self, name: str, signal: int) -> Container:
        data = await self._resolve(name)
        cid = data["Id"]
        mark = self._mark()
        self._signals.add(name, signal)
        try:
            await self.engine.request("POST", f"/containers/{cid}/kill", {"signal": str(signal)})
        except EngineError as e:
            if isStateConflict(e.status, e.message) or "is not running" in e.message:
                raise Conflict(f"container {name} is not running") from None
            raise self._fail(e, name) from None
        await self._awaitEvent(mark, name, Action.KILL)
        data = await self._inspectId(cid, name)
        return self._container(data)

    def remove(self, name: str, force: bool) -> Deferred[None]:
        if force:
            return defer.ensureDeferred(self._remove(name, force))
        return self._serially(name, lambda: defer.ensureDeferred(self._remove(name, force)))

    async def _remove(self, name: str, force: bool) -> None:
        self._justCreated.pop(name, None)
        data = await self._resolve(name)
        cid = data["Id"]
        if force:
            self._signals.add(name, 9)
        mark = self._mark()
        try:
            if force and self.engine.isPodman and (data.get("State") or {}).get("Running"):
                # Podman's remove --force is a stop (the stop signal, then
                # SIGKILL after the stop timeout); Docker's, as pycm's, a
                # SIGKILL at once.
                await self._killQuietly(cid)
            await self.engine.request("DELETE", f"/containers/{cid}", {"force": force, "v": True})
        except EngineError as e:
            if isStateConflict(e.status, e.message):
                raise Conflict(
                    f"container {name} is running: stop it first, or use --force"
                ) from None
            raise self._fail(e, name) from None
        self._details.pop(cid, None)
        await self._awaitEvent(mark, name, Action.DESTROY)
        if self._events.connected and not self._seen(mark, name, frozenset({Action.DESTROY})):
            # Removed, and the engine told no destroy in the grace time (an
            # engine that tells none, or a late one, then not told twice).
            self._engineEvent(
                {
                    "Action": Action.DESTROY,
                    "Actor": {"ID": cid, "Attributes": {"name": name, MANAGED_LABEL: "true"}},
                    "timeNano": int(self.reactor.seconds() * 10**9),
                }
            )

    async def _killQuietly(self, cid: str) -> None:
        """SIGKILL the container C{cid}, unless it is no longer running."""
        try:
            await self.engine.request("POST", f"/containers/{cid}/kill", {"signal": "9"})
        except EngineError as e:
            if not isStateConflict(e.status, e.message):
                raise

    # -- list, inspect ----------------------------------------------------------

    @defer.inlineCallbacks
    def list(self) -> Any:
        """
        One C{GET /containers/json}; details come from a cache of inspects
        that every event for a container and every state change empties.
        """
        try:
            _, summaries = yield self.engine.request(
                "GET", "/containers/json", {"all": True, "filters": _LIST_FILTERS}
            )
        except EngineError as e:
            raise self._fail(e) from None
        useCache = self._events.connected
        result: list[Container] = []
        missing: list[tuple[str, str]] = []
        ids = set()
        for summary in summaries or ():
            cid = summary.get("Id", "")
            name = (summary.get("Names") or ["/"])[0].lstrip("/")
            ids.add(cid)
            cached = self._details.get(cid) if useCache else None
            if cached is not None and (cached.get("State") or {}).get("Status") == summary.get(
                "State"
            ):
                result.append(self._container(cached))
            else:
                missing.append((cid, name))
        if missing:
            found = yield defer.gatherResults(
                [self._inspectId(cid, name, quiet=True) for cid, name in missing],
                consumeErrors=True,
            ).addErrback(lambda f: f.value.subFailure)
            result.extend(self._container(data) for data in found if data is not None)
        for cid in list(self._details):
            if cid not in ids:
                del self._details[cid]
        return result

    @defer.inlineCallbacks
    def inspect(self, name: str) -> Any:
        data = yield self._resolve(name)
        return self._container(data)

    # -- stats ----------------------------------------------------------------

    @defer.inlineCallbacks
    def stats(self, names: Any) -> Any:
        """
        One C{GET /containers/ID/stats?stream=false} per running container,
        all at once (L{usageFromStats}); C{cpu_percent} is the engine's own
        interval when it sends a previous sample, else the daemon's
        (L{CpuSampler}).
        """
        if names:
            containers = []
            for name in dict.fromkeys(names):
                containers.append((yield self.inspect(name)))
        else:
            containers = [c for c in (yield self.list()) if c.state in State.ALIVE]
        running = [c for c in containers if c.state in State.ALIVE]
        usages = yield defer.gatherResults([self._usage(c) for c in running], consumeErrors=True)
        result = [ContainerStats.idle(c) for c in containers if c.state not in State.ALIVE]
        for container, usage in zip(running, usages):
            cpu = usage.cpuPercent if usage is not None else None
            if usage is not None and cpu is None:
                cpu = self._cpu.percent(
                    (container.id, container.started), container.started, usage.cpuSeconds
                )
            result.append(ContainerStats.of(container, usage, cpu))
        if not names:
            self._cpu.keepOnly((c.id, c.started) for c in running)
        return result

    @defer.inlineCallbacks
    def _usage(self, container: Container) -> Any:
        """The engine's figures for one container; None if it just stopped."""
        try:
            _, data = yield self.engine.request(
                "GET", f"/containers/{container.id}/stats", {"stream": False}
            )
        except EngineError as e:
            if e.status in (404, 409):
                return None
            raise self._fail(e, container.name) from None
        return usageFromStats(data, container.memory)

    # -- logs -----------------------------------------------------------------

    @defer.inlineCallbacks
    def _readLogs(self, cid: str, tail: int | None, since: float | None = None) -> Any:
        """
        The last C{tail} lines (of those at or after C{since}) as
        C{(timestamp, LogLine)} pairs.
        """
        params: dict[str, Any] = {
            "stdout": True,
            "stderr": True,
            "timestamps": True,
            "tail": "all" if tail is None else max(tail, 0),
        }
        if since is not None:
            # The engine takes its tail before its since: ask for every line
            # since then, and keep the last C{tail} here.
            params["since"] = engineSince(since)
            params["tail"] = "all"
        _, body = yield self.engine.request(
            "GET", f"/containers/{cid}/logs", params, raw=True
        )
        lines: list[tuple[str | None, LogLine]] = []
        splitter = LogLineSplitter(
            lambda stream, ts, text: lines.append((ts, _logLine(stream, ts, text))), True
        )
        Demultiplexer(splitter.frameReceived).feed(body or b"")
        splitter.flush()
        if since is not None:
            lines = [pair for pair in lines if pair[1].time >= since]
            if tail is not None:
                lines = lines[-tail:] if tail > 0 else []
        return lines

    @defer.inlineCallbacks
    def logs(self, name: str, tail: int | None, since: float | None = None) -> Any:
        data = yield self._resolve(name)
        try:
            lines = yield self._readLogs(data["Id"], tail, since)
        except EngineError as e:
            raise self._fail(e, name) from None
        return [line for _, line in lines]

    @defer.inlineCallbacks
    def follow(
        self,
        name: str,
        tail: int | None,
        observer: Callable[[LogLine], None],
        since: float | None = None,
    ) -> Any:
        """
        The backlog from one C{logs} request, then a C{logs?follow=1}
        stream from the backlog's last timestamp, skipping the lines at
        that very timestamp that the backlog already had.
        """
        data = yield self._resolve(name)
        cid = data["Id"]
        try:
            backlog = yield self._readLogs(cid, tail, since)
        except EngineError as e:
            raise self._fail(e, name) from None
        params: dict[str, Any] = {
            "stdout": True,
            "stderr": True,
            "timestamps": True,
            "follow": True,
        }
        lastStamp = backlog[-1][0] if backlog else None
        skip = 0
        if lastStamp is not None:
            params["since"] = sinceParam(lastStamp)
            skip = sum(1 for ts, _ in backlog if ts == lastStamp)
        else:
            params["tail"] = 0 if tail == 0 else "all"
            if since is not None:
                params["since"] = engineSince(since)
        state = {"skip": skip}

        def lineReceived(stream: str, ts: str | None, text: str) -> None:
            if lastStamp is not None and ts is not None:
                if ts < lastStamp and len(ts) == len(lastStamp):
                    return
                if ts == lastStamp and state["skip"] > 0:
                    state["skip"] -= 1
                    return
            line = _logLine(stream, ts, text)
            if lastStamp is None and since is not None and line.time < since:
                return
            observer(line)

        splitter = LogLineSplitter(lineReceived, True)
        demux = Demultiplexer(splitter.frameReceived)
        ended: Deferred[None] = Deferred()

        def done(_: Any) -> None:
            splitter.flush()
            if not ended.called:
                ended.callback(None)

        path = f"/containers/{cid}/logs"
        if not self.engine.isPodman:
            try:
                stream = yield self.engine.stream("GET", path, params, demux.feed)
            except EngineError as e:
                raise self._fail(e, name) from None
            stream.ended.addCallback(done)
            return LogFollow([line for _, line in backlog], ended, stream.cancel)
        # Podman answers a log follow only with its first line: open it in
        # the background, with no limit on the wait for that answer.
        opening = self.engine.stream("GET", path, params, demux.feed, headerTimeout=0)
        opened: list[Stream] = []

        def streaming(stream: Stream) -> None:
            opened.append(stream)
            stream.ended.addCallback(done)

        def failed(failure: Any) -> None:
            if not failure.check(defer.CancelledError):
                self.log.info(
                    "following {name}'s logs failed: {why}",
                    name=name,
                    why=failure.getErrorMessage(),
                )
            done(None)

        opening.addCallbacks(streaming, failed)

        def cancel() -> None:
            if opened:
                opened[0].cancel()
            else:
                opening.cancel()

        return LogFollow([line for _, line in backlog], ended, cancel)

    # -- wait -----------------------------------------------------------------

    def wait(self, name: str, condition: str) -> Deferred[Container]:
        # From the call on: an exit before the engine has the wait counts.
        return defer.ensureDeferred(self._wait(name, condition, self._mark()))

    async def _wait(self, name: str, condition: str, mark: int) -> Container:
        if condition not in WaitCondition.ALL:
            raise BadRequest(f"unknown wait condition {condition!r}")
        data = await self._resolve(name)
        cid = data["Id"]
        before = self._container(data)
        alive = before.state in State.ALIVE
        if condition == WaitCondition.RUNNING:
            return await self._waitRunning(name, cid, before)
        if condition == WaitCondition.NOT_RUNNING and not alive:
            return before
        engineWait = self.engine.request(
            "POST", f"/containers/{cid}/wait", {"condition": condition}, timeout=0
        )
        if condition == WaitCondition.NEXT_EXIT:
            # The engine waits for the exit after it got the request: one
            # that came sooner (a kill sent meanwhile got there first)
            # would leave it waiting for ever.  Its die event ends the wait.
            engineWait = _untilEvent(engineWait, self._eventAfter(mark, name, Action.DIE))
        try:
            _, result = await engineWait
        except EngineError as e:
            raise self._fail(e, name) from None
        # The signals sent as of now: the destroy event forgets them.
        signals = set(self._signals.get(name))
        if condition == WaitCondition.REMOVED:
            await self._awaitEvent(mark, name, Action.DESTROY)
            return self._exitedAs(before, cid, result, signals)
        await self._awaitEvent(mark, name, Action.DIE)
        after = await self._inspectId(cid, name, quiet=True)
        if after is None:
            raise NotFound(name)
        container = self._container(after)
        if container.state in State.ALIVE or container.state == State.RESTARTING:
            # Restarted by its policy already: report it as it was at exit.
            container = self._exitedAs(container, cid, result, signals)
        return container

    def _exitedAs(
        self, container: Container, cid: str, result: Any, signals: set[int]
    ) -> Container:
        """
        C{container} as it was when the engine's wait saw it exit: with the
        exit code its die event reported (so C{wait} agrees with C{stop}
        and the events), else from the wait's own status and C{signals}.
        """
        exited = _exited(container, result, signals | self._signals.get(container.name))
        if cid in self._exits and self._exits[cid] is not None:
            exited = attrs.evolve(exited, exitCode=self._exits[cid])
        return exited

    async def _waitRunning(self, name: str, cid: str, before: Container) -> Container:
        if before.state in State.ALIVE:
            return before
        while True:
            waiter = self._awaitEvent(
                self._mark(), name, Action.START, Action.DESTROY, grace=self.pollInterval
            )
            await waiter
            data = await self._inspectId(cid, name, quiet=True)
            if data is None:
                raise NotFound(name)
            container = self._container(data)
            if container.state in State.ALIVE:
                return container


def _untilEvent(request: Deferred[Any], event: Deferred[None]) -> Deferred[Any]:
    """
    C{request}'s result or failure, or C{(200, None)} once C{event} fires
    first (C{request} is then cancelled); cancelling it cancels both.
    """

    def cancel(_: Deferred[Any]) -> None:
        request.cancel()
        event.cancel()

    outcome: Deferred[Any] = Deferred(cancel)

    def answered(result: Any) -> None:
        event.cancel()
        if not outcome.called:
            outcome.callback(result)

    def failed(failure: Any) -> None:
        event.cancel()
        if not outcome.called:
            outcome.errback(failure)

    def happened(_: None) -> None:
        if not outcome.called:
            outcome.callback((200, None))
        request.cancel()

    event.addCallbacks(happened, lambda _: None)
    request.addCallbacks(answered, failed)
    return outcome


def _logLine(stream: str, ts: str | None, text: str) -> LogLine:
    when = 0.0
    if ts is not None:
        try:
            when = parseTime(ts) or 0.0
        except ValueError:
            when = 0.0
    return LogLine(when, stream, text)


def _exited(container: Container, result: Any, signals: Any) -> Container:
    """C{container} as it was when the engine's wait saw it exit."""
    code = None
    if isinstance(result, dict):
        code = result.get("StatusCode")
    return attrs.evolve(
        container,
        state=State.EXITED,
        pid=None,
        exitCode=mapExitCode(code, signals, False),
    )


__all__ = ["CAPABILITIES", "OPTIONS", "DockerBackend", "makeBackend"]


def engineSince(since: float) -> str:
    """
    The engine's C{since} for lines at or after C{since}, a microsecond
    early: near today's epoch a float is exact to a quarter of one, so the
    nanosecond time of the very line C{since} came from could fall just
    before it and be left out.  The lines kept are then cut here, on the
    same floats.
    """
    return f"{max(since - 1e-6, 0.0):.9f}"
