"""
Where Podman's Docker-compatible API (4.3 tested) differs from Docker's,
made Docker's: its events of a stop and a restart (L{PodmanEvents}), a
stop between two runs of its restart policy (L{stopBetweenRuns}), its
C{remove --force} (L{killFirst}); and whether it runs health checks at all
(L{PodmanHealthChecks}).
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer, task

from pycm.backends.docker.containers import EngineView, RequestsInFlight
from pycm.backends.docker.engine import EngineError
from pycm.backends.docker.interfaces import IDockerEngine
from pycm.backends.docker.journal import EventJournal
from pycm.backends.docker.lookup import isExitRace
from pycm.backends.docker.translate import isStateConflict
from pycm.capabilities import HEALTH_OPTIONS, Capabilities
from pycm.model import Action, ContainerEvent
from pycm.timestamps import parseTime

#: The exit codes of an init that could not exec the command: docker-init
#: exits 127 (126), Podman's catatonit 1.
EXEC_FAILURE_CODES = (126, 127)
PODMAN_EXEC_FAILURE_CODES = (1, 126, 127)
#: Seconds a die event's time may seem to precede its run's C{FinishedAt}
#: (both read to the microsecond, one through a float): far less than
#: the time between two runs.
FINISHED_SLACK = 0.001


class PodmanEvents:
    """
    Podman tells a restart (pycm's or its policy's) before the container
    stops, and a stop only now and then: its own are dropped, and these
    tell them where Docker does, with the C{kill} of a stop that escalated.
    """

    def __init__(self, view: EngineView, journal: EventJournal) -> None:
        self.view = view
        self.journal = journal

    def dropped(self, action: str) -> bool:
        """Is Podman's C{action} event left out (told here instead)?"""
        return action in (Action.RESTART, Action.STOP)

    def beforeDie(self, name: str, code: int | None, when: float) -> None:
        """
        Podman tells no kill when a pycm stop escalates: tell it before
        the die (exit code C{code}), as Docker does.
        """
        if code == 128 + 9 and self.view.inFlight.stoppedBy(name, when):
            self.journal.tell(ContainerEvent(Action.KILL, name, when))

    def after(self, name: str, action: str, when: float) -> None:
        """
        Tell what Podman's event stream leaves out after C{action}: the
        C{stop} after the die of a pycm stop or restart, and the
        C{restart} after the start of a pycm restart.
        """
        inFlight = self.view.inFlight
        if action == Action.DIE and inFlight.stoppedBy(name, when):
            self.view.lastAction[name] = Action.STOP
            self.journal.tell(ContainerEvent(Action.STOP, name, when))
        elif action == Action.START and inFlight.restartedBy(name, when):
            self.view.lastAction[name] = Action.RESTART
            self.journal.tell(ContainerEvent(Action.RESTART, name, when))


@defer.inlineCallbacks
def stopBetweenRuns(
    clock: Any,
    engine: IDockerEngine,
    journal: EventJournal,
    inFlight: RequestsInFlight,
    name: str,
    cid: str,
    params: dict[str, Any],
    settleTime: float,
) -> Any:
    """
    Stop the container on Podman (L{stopRacingExits}).  Podman answers
    304 to a stop that finds the container between two
    runs of its restart policy (C{stopped}, not yet C{exited}), and
    starts it again; and a stop it answered 204 can still race the
    policy, which then starts the container again.  So: look until it is
    C{exited} for good, stopping it again whenever it runs (a stop of a
    running container ends the policy), for at most C{settleTime}
    seconds.  Then wait for the die event of its last run (no earlier
    than the C{FinishedAt} the inspect gave) if that run ended within the
    journal's grace time: Podman tells events late, and the reply must
    not overtake that run's start and die, whichever stop (if any) ended
    it.

    @return: Deferred firing with the status of the last stop.
    """
    firstStop = yield stopRacingExits(engine, cid, params)
    if firstStop == 304:
        # No stop is in effect: the die of a run the policy starts now is
        # not this stop's.
        inFlight.stopSent.pop(name, None)
    last = firstStop
    deadline = clock.seconds() + settleTime
    while clock.seconds() < deadline:
        try:
            _, data = yield engine.request("GET", f"/containers/{cid}/json")
        except EngineError as e:
            if not isExitRace(e):
                raise
            # It raced the exit of a run: look again.
            yield task.deferLater(clock, 0.05, lambda: None)
            continue
        status = str(((data or {}).get("State") or {}).get("Status", ""))
        if status in ("exited", "created", "dead", "removing", ""):
            ended = finishedAt(data) if status == "exited" else None
            # A die older than the grace time was told, or is lost (as
            # any event that late): no wait for it (an old exit, after a
            # restart of the daemon).
            if ended is not None and ended > clock.seconds() - journal.grace:
                yield journal.awaitEventAt(name, Action.DIE, ended - FINISHED_SLACK)
            return last
        if status == "running":
            inFlight.stopSent[name] = clock.seconds()
            stopped = yield stopRacingExits(engine, cid, params)
            if stopped == 304:
                inFlight.stopSent.pop(name, None)
            else:
                last = stopped
        yield task.deferLater(clock, 0.05, lambda: None)
    return last


@defer.inlineCallbacks
def stopRacingExits(engine: IDockerEngine, cid: str, params: dict[str, Any]) -> Any:
    """
    C{POST /containers/CID/stop}: its status, and 304 (no stop in effect)
    when Podman failed it for the exit of a run under way (L{isExitRace}):
    the caller looks again, and stops the next run if the policy starts one.
    """
    try:
        status, _ = yield engine.request(
            "POST", f"/containers/{cid}/stop", params, timeout=params["t"] + engine.timeout
        )
    except EngineError as e:
        if not isExitRace(e):
            raise
        return 304
    return status


def finishedAt(data: dict[str, Any] | None) -> float | None:
    """
    When the last run in C{data} (an inspect) ended, if it has ended: its
    die event (Podman's time of reading the exit file) is no earlier.
    """
    text = ((data or {}).get("State") or {}).get("FinishedAt")
    if not isinstance(text, str) or not text or text.startswith("0001-01-01"):
        return None
    try:
        return parseTime(text)
    except ValueError:
        return None


@defer.inlineCallbacks
def killFirst(engine: IDockerEngine, cid: str) -> Any:
    """
    SIGKILL the container C{cid}, unless it is no longer running: Podman's
    remove --force is a stop (the stop signal, then SIGKILL after the stop
    timeout); Docker's, as pycm's, a SIGKILL at once.
    """
    try:
        yield engine.request("POST", f"/containers/{cid}/kill", {"signal": "9"})
    except EngineError as e:
        if not isStateConflict(e.status, e.message):
            raise


class PodmanHealthChecks:
    """
    Does the engine run health checks?  dockerd does; Podman runs them
    from systemd timers, so a Podman service with no systemd (its cgroup
    manager C{cgroupfs}, as in a container) never runs one: the check's
    health would stay C{starting} for ever.  Asked with C{GET /info} until
    the engine answers, then remembered.
    """

    def __init__(self, engine: IDockerEngine) -> None:
        self.engine = engine
        #: The answer, once the engine gave it (None: not known yet).
        self.known: bool | None = None
        self._asking: list[defer.Deferred[bool]] = []

    def run(self) -> defer.Deferred[bool]:
        """
        Fire with whether the engine runs health checks: yes, unless it
        is Podman with the cgroup manager C{cgroupfs}; yes for now (not
        remembered) if the engine cannot be asked.  (The request is also
        the one that tells Podman from dockerd.)  One request at a time.
        """
        if self.known is not None:
            return defer.succeed(self.known)
        d: defer.Deferred[bool] = defer.Deferred()
        self._asking.append(d)
        if len(self._asking) == 1:
            self.engine.request("GET", "/info").addCallbacks(self._answered, self._failed)
        return d

    def _answered(self, answer: Any) -> None:
        info = answer[1] if isinstance(answer, tuple) and len(answer) == 2 else None
        driver = str(info.get("CgroupDriver") or "") if isinstance(info, dict) else ""
        self.known = not (self.engine.isPodman and driver.lower() == "cgroupfs")
        self._tell(self.known)

    def _failed(self, failure: Any) -> None:
        # Unreachable, or closing: asked again next time.
        self._tell(True)

    def _tell(self, runs: bool) -> None:
        asking, self._asking = self._asking, []
        for d in asking:
            d.callback(runs)

    @staticmethod
    def without(capabilities: Capabilities) -> Capabilities:
        """C{capabilities} with no health options (for an engine that runs none)."""
        return Capabilities(
            options=capabilities.options - HEALTH_OPTIONS,
            limits=capabilities.limits,
            images=capabilities.imageDescription,
            stats=capabilities.stats,
        )
