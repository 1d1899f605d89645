"""
Cleaning up after runs: the marker sweep at a run's end (L{MarkSweep}),
reclaiming what a dead daemon left (L{reclaimRun}, L{sweepLeftovers}), and
removing a run's cgroup once it is empty (L{CgroupReleaser}).
"""

from __future__ import annotations

import os
import signal as _signal
from collections.abc import Callable, Collection
from typing import Any, Protocol

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from pycm.backends.process import procfs
from pycm.backends.process.cgroups import Cgroups
from pycm.backends.process.markers import MARK_ROUNDS as MARK_ROUNDS
from pycm.backends.process.markers import (
    groupsOfMarked,
    killMarked,
    killStrays,
    killUnowned,
    strayMark,
)
from pycm.backends.process.markjournal import MarkJournal
from pycm.errors import BackendError, PycmError
from pycm.model import Container, parseSignal

#: How often L{reclaimRun} looks whether a process is gone.
RECLAIM_POLL = 0.05
#: How long reclaim waits after SIGKILL before giving up.
RECLAIM_KILL_WAIT = 5.0
#: The most of its time the daemon spends looking for processes carrying
#: the marker of runs that ended (see L{MarkSweep}), and the longest it
#: makes a run's end wait for a look.
MARK_DUTY = 0.5
MARK_MAX_DELAY = 1.0
#: A look no run's exit waits for (the run's cgroup is empty and its id is
#: in the L{MarkJournal}) comes this long after the first run it is for
#: ended, gathering the runs that end meanwhile; and after a look that took
#: T seconds, not before T/MARK_LATER_DUTY seconds from its start.
MARK_LATER_DELAY = 1.0
MARK_LATER_DUTY = 0.1
#: After a look that failed (e.g. EMFILE), its run ids are looked for
#: again: MARK_LATER_DELAY later, twice as long after each failure in a
#: row, at most MARK_RETRY_MAX.
MARK_RETRY_MAX = 60.0

#: (run ids, earliest start time in ticks or None) -> the pids killed, by run id.
KillMarked = Callable[[Collection[str], "int | None"], dict[str, list[int]]]

log = Logger()


class MarkSweep:
    """
    Kills the processes still carrying the run marker (C{PYCM_RUN_ID}) of
    runs that ended: those that left both the run's process group and its
    cgroup.  The runs that end in one reactor turn share one look at
    C{/proc} (at the end of that turn), and a look that took T seconds is
    followed by at least T/L{MARK_DUTY} - T seconds without one: stopping
    many containers at once gathers them into fewer looks instead of
    reading every process once per container.

    A run whose id is in the C{journal} and whose cgroup the kernel says is
    empty (L{settle}) need not wait: its exit is told at once and the look
    comes later (L{MARK_LATER_DELAY}, L{MARK_LATER_DUTY}), for every run
    that ended meanwhile.  The journal is emptied once every id written in
    it (and every id the previous daemon left there) had a look that
    worked; the run ids of a look that failed are looked for again later
    (L{MARK_RETRY_MAX}), their exits told all the same.

    @param look: kills what carries the given markers (L{KillMarked}).
    @param journal: where run ids are written before their exits are told
        ahead of their look; None: every exit waits for its look.
    @param laterDelay: the least time a look no exit waits for comes after
        the first run it is for ended (L{MARK_LATER_DELAY}).
    """

    log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        look: KillMarked,
        journal: MarkJournal | None = None,
        laterDelay: float = MARK_LATER_DELAY,
    ) -> None:
        self._clock = clock
        self._look = look
        self.journal = journal
        self.laterDelay = laterDelay
        #: run id -> (earliest start time, container name, waiters)
        self._pending: dict[str, tuple[int | None, str, list[Deferred[None]]]] = {}
        #: The run ids written in the journal with no look that worked yet.
        self._journaled: set[str] = set()
        #: Looks that failed in a row.
        self._failures = 0
        #: Closed: no look is scheduled any more.
        self._closed = False
        self._call: IDelayedCall | None = None
        #: When L{_call} is due (reactor seconds).
        self._callAt = 0.0
        #: No look before these times (reactor seconds), for runs that
        #: wait and for those that do not.
        self._notUntil = 0.0
        self._notUntilLater = 0.0

    def kill(self, runId: str, notBefore: int | None, name: str) -> Deferred[None]:
        """
        Kill what carries C{runId}: at the end of this reactor turn (paced,
        see L{MARK_DUTY}), or later if its id could be written in the
        journal (see L{settle}).

        @param notBefore: the run's start time in clock ticks (older
            processes cannot carry its marker and are not read), or None.
        @return: a Deferred that fires once that is done.
        """
        done: Deferred[None] = Deferred()
        fresh = runId not in self._pending
        _, _, waiters = self._pending.setdefault(runId, (notBefore, name, []))
        waiters.append(done)
        later = runId in self._journaled
        if fresh and not later and self.journal is not None and self.journal.add(runId):
            self._journaled.add(runId)
            later = True
        self._schedule(urgent=not later)
        return done

    def settle(self, runId: str, contained: bool) -> bool:
        """
        The run's main process and pipes are gone: may its exit be told
        before the look for its marker?  Yes if C{contained} (its cgroup is
        empty and removed: the kernel's word that nothing is left of it but
        what left the cgroup) and its id is in the journal; otherwise the
        look is brought forward to the end of this turn (paced), and no.
        """
        if contained and runId in self._journaled and runId in self._pending:
            return True
        if runId in self._pending:
            self._schedule(urgent=True)
        return False

    def leftLookedFor(self) -> None:
        """
        What the journal held at open (L{MarkJournal.left}, the previous
        daemon's) was looked for: empty it unless it names runs of ours.
        """
        if self.journal is None:
            return
        if self._journaled:
            self.journal.left = []
        else:
            self.journal.clear()

    def lookAgain(self, runIds: Collection[str]) -> None:
        """
        The look for C{runIds}, in the journal already (what the previous
        daemon left), failed: look for them later, as after a look of ours
        that failed.
        """
        for runId in runIds:
            self._pending.setdefault(runId, (None, runId, []))
            self._journaled.add(runId)
        if self._pending:
            self._schedule(urgent=False)

    def _schedule(self, urgent: bool) -> None:
        if self._closed:
            return
        clock = self._clock
        now = clock.seconds()
        if urgent:
            delay = min(max(self._notUntil - now, 0.0), MARK_MAX_DELAY)
        else:
            delay = max(self._notUntilLater - now, self.laterDelay)
        if self._call is not None:
            if self._callAt <= now + delay:
                return
            self._call.cancel()
        self._callAt = now + delay
        self._call = clock.callLater(delay, self.sweep)

    def sweep(self) -> None:
        """Do the pending work now (also what L{ProcessRuntime.close} calls)."""
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        pending, self._pending = self._pending, {}
        if not pending:
            return
        starts = [notBefore for notBefore, _, _ in pending.values()]
        notBefore = None if None in starts else min(s for s in starts if s is not None)
        clock = self._clock
        began = clock.seconds()
        looked = True
        try:
            killed = self._look(set(pending), notBefore)
        except Exception:
            self.log.failure("looking for processes of ended runs")
            killed, looked = {}, False
        ended = clock.seconds()
        took = max(ended - began, 0.0)
        self._notUntil = ended + took * (1 / MARK_DUTY - 1)
        self._notUntilLater = ended + took * (1 / MARK_LATER_DUTY - 1)
        if looked:
            self._failures = 0
            self._journaled.difference_update(pending)
            journal = self.journal
            if journal is not None and not self._journaled and not journal.left:
                journal.clear()
        else:
            # Its run ids stay in the journal and are looked for again
            # (with every run that ends meanwhile), later each time.
            first = max(self.laterDelay, MARK_LATER_DELAY)
            retry = min(first * 2 ** min(self._failures, 16), MARK_RETRY_MAX)
            self._failures += 1
            self._notUntilLater = max(self._notUntilLater, ended + retry)
            for runId, (start, name, _) in pending.items():
                self._pending.setdefault(runId, (start, name, []))
        for runId, pids in killed.items():
            self.log.info(
                "{name}: killed {pids}, which outlived the container"
                " (out of its process group and cgroup, found by its run marker)",
                name=pending[runId][1],
                pids=pids,
            )
        if not looked:
            self._schedule(urgent=False)
        for _, _, waiters in pending.values():
            for waiter in waiters:
                waiter.callback(None)

    def close(self) -> None:
        """
        The daemon's close: the pending look now, and none after (the run
        ids of one that failed stay in the journal for the next daemon).
        """
        self.sweep()
        self._closed = True
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None


class GroupRemover(Protocol):
    """What a L{CgroupReleaser} uses of L{Cgroups}."""

    def killAll(self, group: str) -> object:
        """Kill every process in C{group}."""

    def release(self, group: str) -> bool:
        """Remove C{group} if it is empty; is it gone?"""


class CgroupReleaser:
    """Removes runs' cgroups once their processes are gone, retrying."""

    def __init__(self, clock: IReactorTime, cgroups: GroupRemover) -> None:
        self._clock = clock
        self._cgroups = cgroups
        #: Retries of cgroup removals, by group: finished or dropped by close.
        self._calls: dict[str, IDelayedCall] = {}
        #: The groups among them whose processes are never killed.
        self._spared: set[str] = set()

    def release(self, group: str, attempts: int = 20, kill: bool = True) -> bool:
        """
        Remove C{group}; if processes are still in it, kill them (unless
        not C{kill}) and try again (C{attempts} times, every 0.1 s).

        @param kill: False for a group that may not be this daemon's: it
            is only ever removed (which the kernel refuses while processes
            are in it), never killed through, and left if they stay.
        @return: whether it is gone now (the kernel removes only an empty
            group).
        """
        call = self._calls.pop(group, None)
        if call is not None and call.active():
            call.cancel()
        self._spared.discard(group)
        if self._cgroups.release(group):
            return True
        if kill:
            self._cgroups.killAll(group)
            if self._cgroups.release(group):
                return True
        if attempts > 0:
            if not kill:
                self._spared.add(group)
            self._calls[group] = self._clock.callLater(
                0.1, self.release, group, attempts - 1, kill
            )
        return False

    def close(self) -> None:
        """Last try at the groups still waiting: no retry is left behind."""
        for group, call in list(self._calls.items()):
            call.cancel()
            if group not in self._spared:
                self._cgroups.killAll(group)
            self._cgroups.release(group)
        self._calls.clear()
        self._spared.clear()


def sweepLeftovers(
    runs: dict[str, Container],
    strays: Collection[str],
    *,
    proc: str,
    stateMarker: str | None,
    cgroups: Cgroups,
    releaser: CgroupReleaser,
    groupName: Callable[[Container], str],
    ended: Collection[str] = (),
) -> list[str]:
    """
    After a daemon restart, once every leftover run was reclaimed: kill
    whatever still carries the run id of one of C{runs} (run id ->
    container) or of C{ended}, and kill and remove the leftover cgroups of
    C{runs}; kill what runs of the containers named in C{strays} (see
    L{killStrays}) and remove the cgroups they were in (L{_strayGroups};
    only once empty, never killing through them);
    then kill every run of this state directory that no record owns
    (L{killUnowned}: records lost), with a warning per container name.

    @param ended: the ids of runs that ended without the look for their
        markers (the previous daemon's L{MarkJournal}), whose records may be
        gone or name newer runs.
    @return: the run ids of C{runs} something was found of, sorted.
    """
    strayGroups = _strayGroups(runs, strays, proc, stateMarker, cgroups, groupName)
    strayed = killStrays(stateMarker, strays, proc)
    for group in strayGroups:
        log.info(
            "removing cgroup {group}, left by a previous daemon for a record put aside",
            group=group,
        )
        # Its processes were killed by their markers just now: the group
        # itself is only removed once empty, never killed through.
        releaser.release(group, kill=False)
    if strayed:
        log.info(
            "killed {pids}, left running by a previous daemon for {names}"
            " (their records are quarantined)",
            pids=strayed,
            names=sorted(strays),
        )
    killed = killMarked({*runs, *ended}, None, proc)
    for runId, pids in killed.items():
        if runId not in runs:
            log.info(
                "killed {pids}, left over from run {runId} of a previous daemon, which"
                " ended before it looked for them",
                pids=pids,
                runId=runId,
            )
            continue
        log.info(
            "{name}: killed {pids}, left over from run {runId} of a previous daemon",
            name=runs[runId].name,
            pids=pids,
            runId=runId,
        )
    unowned = killUnowned(stateMarker, {*runs, *ended}, proc)
    named = {container.name for container in runs.values()}
    for name, pids in sorted(unowned.items()):
        log.warn(
            "killed {count} processes of container {name}, which has no record in"
            " {database} (lost records?)"
            if name not in named
            else "killed {count} processes of a run of container {name} that its record"
            " in {database} does not name (an older copy of it?)",
            count=len(pids),
            name=name,
            database=os.path.join(stateMarker or "STATE", "state.db"),
        )
    found = set(killed) & set(runs)
    present = cgroups.groups()
    for runId, container in runs.items():
        group = groupName(container)
        if group in present:
            if cgroups.killAll(group):
                found.add(runId)
            releaser.release(group)
    return sorted(found)


def _strayGroups(
    runs: dict[str, Container],
    strays: Collection[str],
    proc: str,
    stateMarker: str | None,
    cgroups: Cgroups,
    groupName: Callable[[Container], str],
) -> list[str]:
    """
    The cgroups of the runs of C{strays} (records put aside with no id
    left to read, whose groups cannot be named), found by the processes
    in them before they are killed; never a group of C{runs}.
    """
    if stateMarker is None or not strays:
        return []
    others = cgroups.groups() - {groupName(container) for container in runs.values()}
    return groupsOfMarked(
        others, cgroups.pids, cgroups.dirsOf, strayMark(stateMarker, strays), proc
    )


def reclaimRun(
    container: Container,
    pid: int | None,
    startTime: Any,
    *,
    clock: IReactorTime,
    proc: str,
    bootId: str | None,
    group: str,
    cgroups: Cgroups,
    releaser: CgroupReleaser,
) -> Deferred[bool | int]:
    """
    Stop a run a dead daemon left (see L{IRuntime.reclaim}): its stop signal
    to its group, SIGKILL after its stop timeout.  A pid whose start time
    or boot id differs (or is unknown) is not touched.

    @return: a Deferred firing with False if the process was gone already;
        with C{signal.SIGKILL} if it was gone only after SIGKILL, sent a
        poll or more after its stop signal (SIGKILL cannot be caught: it
        ended by it); with True if it was gone after its stop signal, or
        both were sent at once (a stop timeout of 0) (which it may have caught: how it ended
        cannot be known, it is not this daemon's child, and no wait status
        reaches it).
    """
    ticks: int | None = None
    if isinstance(startTime, list) and len(startTime) == 2:
        boot, ticks = startTime
        if boot is None or boot != bootId:
            ticks = None  # another boot: whatever has this pid is not ours
    elif isinstance(startTime, int):
        ticks = startTime
    if pid is None or not procfs.isSameProcess(pid, ticks, proc):
        releaser.release(group, attempts=0)
        return succeed(False)
    try:
        stopSignal = parseSignal(container.stopSignal)
    except PycmError:
        stopSignal = _signal.SIGTERM
    log.info(
        "stopping {name} (pid {pid}), left running by a previous daemon",
        name=container.name,
        pid=pid,
    )
    procfs.signalGroup(pid, stopSignal)
    stopped: Deferred[bool | int] = Deferred()
    now = clock.seconds()
    killAt = now + max(container.stopTimeout, 0)
    giveUpAt = killAt + RECLAIM_KILL_WAIT

    killedAlone = False
    polls = 0

    def poll(killed: bool) -> None:
        nonlocal killedAlone, polls
        polls += 1
        alive = procfs.isSameProcess(pid, ticks, proc)
        if not alive:
            # The leader is gone: its pid may be reused, so no killpg; what
            # is left of the run is in its cgroup or carries its run id
            # (L{sweepLeftovers}).
            releaser.release(group)
            stopped.callback(int(_signal.SIGKILL) if killedAlone else True)
            return
        current = clock.seconds()
        if not killed and current >= killAt:
            log.info("{name}: SIGKILL after the stop timeout", name=container.name)
            procfs.signalGroup(pid, _signal.SIGKILL)
            cgroups.killAll(group)
            killed = True
            # Seen alive a poll or more after its stop signal: SIGKILL ended
            # it (with both sent at once, either may have).
            killedAlone = polls > 1
        if killed and current >= giveUpAt:
            stopped.errback(BackendError(f"pid {pid} of {container.name} survived SIGKILL"))
            return
        clock.callLater(RECLAIM_POLL, poll, killed)

    poll(False)
    return stopped
