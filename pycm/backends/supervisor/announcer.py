"""
The supervisor's events: who hears them, and when (see docs/supervisor.md:
an event is announced once the change it tells of is durable, in order).
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from pycm.groupcommit import GroupCommit
from pycm.model import ContainerEvent

Observer = Callable[[ContainerEvent], None]


class Announcer:
    """
    Emits the supervisor's events to its observers.

    @param clock: gives the events' time.
    @param commits: the group commit of the changes the events tell of.
    """

    _log = Logger()

    def __init__(self, clock: IReactorTime, commits: GroupCommit) -> None:
        self._clock = clock
        self._commits = commits
        self._observers: list[Observer] = []
        self._journalObservers: list[Observer] = []

    def addObserver(self, observer: Observer) -> None:
        """Tell C{observer} of each event once what it tells of is durable."""
        self._observers.append(observer)

    def addJournalObserver(self, observer: Observer) -> None:
        """
        Tell C{observer} of each event as it is emitted: for an observer
        that stores it in the same group commit itself (the change and its
        event then reach the disk together) and publishes it only after
        (the daemon's event log).
        """
        self._journalObservers.append(observer)

    def removeObserver(self, observer: Observer) -> None:
        for observers in (self._observers, self._journalObservers):
            if observer in observers:
                observers.remove(observer)

    def emit(
        self,
        action: str,
        name: str,
        exitCode: int | None = None,
        status: str | None = None,
        oomKilled: bool | None = None,
    ) -> None:
        """Emit one event of container C{name}."""
        event = ContainerEvent(
            action, name, self._clock.seconds(), exitCode, status=status, oomKilled=oomKilled
        )
        for observer in self._journalObservers:
            self._call(observer, event)
        if self._observers:
            self._commits.later(self._deliver, event)

    def _deliver(self, event: ContainerEvent) -> None:
        for observer in list(self._observers):
            self._call(observer, event)

    def _call(self, observer: Observer, event: ContainerEvent) -> None:
        try:
            observer(event)
        except Exception:
            self._log.failure("event observer {observer!r} failed", observer=observer)
