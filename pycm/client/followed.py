"""
The followed logs whose lines are shown with their time (C{logs -t -f}),
where events share the output (the shell, piped lines): a later line
comes as an event, and is shown as the backlog was.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pycm.client.format import LogPrefixes, formatLogEntry
from pycm.client.plan import Plan, isFollow


class StampedFollows:
    """The containers whose followed lines are shown with their time."""

    def __init__(self) -> None:
        self.names: set[str] = set()

    def replied(self, plan: Plan, request: Sequence[str]) -> None:
        """
        The daemon took C{request}, one of C{plan}'s: note a C{logs -t -f
        NAME}; a follow of C{NAME} without C{-t} forgets it (a name noted
        before stays noted only while it is followed: a follow a new
        connection refused shows no line until it is asked again).
        """
        if plan.command == "logs" and len(request) > 1 and isFollow(request):
            if plan.timestamps:
                self.names.add(request[-1])
            else:
                self.names.discard(request[-1])

    def line(self, event: Any) -> str | None:
        """
        A followed line of a noted container, with its time; None for any
        other event (shown as events are).  A log's end forgets it.
        """
        if not isinstance(event, dict):
            return None
        name = str(event.get("name"))
        if event.get("type") == "log_end":
            self.names.discard(name)
        elif event.get("type") == "log" and name in self.names:
            return formatLogEntry(event, name, LogPrefixes((name,)), timestamps=True)
        return None
