"""
L{EventRecorder}: an observer of a backend's lifecycle events that keeps
them all and can be waited on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.internet.defer import Deferred

from pycm.model import ContainerEvent

__all__ = ["EventRecorder"]


class EventRecorder:
    """An event observer that keeps every event and can be waited on."""

    def __init__(self) -> None:
        self.events: list[ContainerEvent] = []
        self._waiting: list[tuple[Callable[[list[ContainerEvent]], bool], Deferred[Any]]] = []

    def __call__(self, event: ContainerEvent) -> None:
        self.events.append(event)
        for entry in list(self._waiting):
            predicate, d = entry
            if entry in self._waiting and predicate(self.events):
                self._waiting.remove(entry)
                d.callback(list(self.events))

    def actions(self, name: str) -> list[str]:
        """The actions of container C{name}'s events, in order."""
        return [e.action for e in self.events if e.name == name]

    def when(self, predicate: Callable[[list[ContainerEvent]], bool]) -> Deferred[Any]:
        """A cancellable Deferred firing once C{predicate(events)} holds."""
        if predicate(self.events):
            return defer.succeed(list(self.events))

        def cancel(d: Deferred[Any]) -> None:
            if entry in self._waiting:
                self._waiting.remove(entry)

        entry: tuple[Callable[[list[ContainerEvent]], bool], Deferred[Any]] = (
            predicate,
            Deferred(cancel),
        )
        self._waiting.append(entry)
        return entry[1]
