"""
What the swarm backend knows of the manager at one moment: its pycm
services and their tasks (L{Snapshot}).  The watcher makes them; the
events, waits and containers are read off them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

#: Task states after which a task never runs again (Swarm's own words).
ENDED_STATES = frozenset({"complete", "failed", "shutdown", "rejected", "orphaned", "remove"})


@attrs.frozen
class TaskView:
    """
    One task of a service, as the manager last reported it.

    @ivar node: the hostname of the node it was placed on (None: unplaced).
    @ivar state: C{Status.State} (C{pending}, C{running}, C{failed}, ...).
    @ivar desiredState: C{DesiredState} (C{running}, C{shutdown}, ...).
    @ivar updated: C{Status.Timestamp}, POSIX seconds.
    @ivar created: C{CreatedAt}, POSIX seconds (orders a slot's tasks).
    @ivar generation: the C{ForceUpdate} of the task template it was made
        from: a C{start} or C{restart} raises the service's, so the tasks
        of one start share it (a restart by the policy keeps it).
    """

    id: str
    slot: int | None
    node: str | None
    state: str
    desiredState: str
    exitCode: int | None = None
    error: str | None = None
    containerId: str | None = None
    updated: float = 0.0
    created: float = 0.0
    generation: int = 0

    @property
    def running(self) -> bool:
        return self.state == "running"

    @property
    def ended(self) -> bool:
        return self.state in ENDED_STATES


@attrs.frozen
class ServiceView:
    """
    One pycm service and its tasks (the manager keeps a few ended tasks a
    slot as history: they are here too).

    @ivar name: the pycm container name (the service's name).
    @ivar version: C{Version.Index}, which every update raises.
    @ivar desired: C{Mode.Replicated.Replicas}.
    @ivar spec: the engine's C{Spec}, as it gave it.
    @ivar specDigest: the digest of a spec not kept (a service read back
        from the journal, whose C{spec} is empty); None: read C{spec}.
    """

    name: str
    id: str
    version: int
    desired: int
    created: float
    updated: float
    spec: Mapping[str, Any]
    tasks: tuple[TaskView, ...] = ()
    specDigest: str | None = None

    @property
    def running(self) -> int:
        """How many of its tasks run now."""
        return sum(1 for task in self.tasks if task.running)


@attrs.frozen
class Snapshot:
    """
    The manager's pycm services at C{time} (POSIX seconds, the backend's
    clock), by name.

    @ivar downNodes: the hostnames of the nodes the manager sees C{down}:
        their tasks still say C{running} (the manager cannot hear from
        them) but are lost to the swarm.
    """

    time: float
    services: Mapping[str, ServiceView] = attrs.field(factory=dict)
    downNodes: frozenset[str] = frozenset()
