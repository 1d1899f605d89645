"""
What an C{apply} will do (L{makePlan}): the containers there are and the
services wanted, made into one L{Step} a service, in start order, then the
removals of C{--prune}.  Whose a container is, and whether it changed, is
read from its labels (L{pycm.services.config}) alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import attrs

from pycm.errors import Conflict
from pycm.model import Container, ContainerSpec, State
from pycm.services.config import (
    CONFIG_LABEL,
    PROJECT_LABEL,
    SERVICE_LABEL,
    changedFields,
    configLabel,
)
from pycm.services.definition import Condition, Service, ServiceSet


class StepAction:
    """What a step does to its service (the reply's C{action})."""

    CREATE = "create"
    RECREATE = "recreate"
    KEEP = "keep"
    START = "start"
    REMOVE = "remove"


#: The states in which a kept container needs nothing done.
_UP_STATES = frozenset({State.RUNNING, State.RESTARTING})


@attrs.frozen
class Step:
    """
    One service's step.

    @ivar changes: for a recreate, the fields that changed (document keys).
    @ivar current: the container there is (None for a create).
    @ivar service: the service wanted (None for a remove).
    @ivar spec: for a create or recreate, the spec to create, labelled.
    """

    name: str
    action: str
    changes: tuple[str, ...] = ()
    current: Container | None = None
    service: Service | None = None
    spec: ContainerSpec | None = None

    def toJSON(self, container: Container | None = None, done: bool = True) -> dict[str, Any]:
        """
        The reply's entry, the container as C{container} (else as it was);
        once C{done}, a removed container is shown as none (a dry run shows
        it as it is).
        """
        shown = container if container is not None else self.current
        if self.action == StepAction.REMOVE and container is None and done:
            shown = None
        return {
            "name": self.name,
            "action": self.action,
            "changes": list(self.changes),
            "state": None if shown is None else shown.state,
            "health": None if shown is None or shown.health is None else shown.health.status,
        }


@attrs.frozen
class Plan:
    """The steps of one C{apply}: the services' in start order, removals last."""

    project: str
    steps: tuple[Step, ...]

    def byName(self) -> dict[str, Step]:
        return {step.name: step for step in self.steps}


def makePlan(
    services: ServiceSet,
    containers: Iterable[Container],
    prune: bool = False,
    salt: Callable[[], str] | None = None,
) -> Plan:
    """
    The plan that makes C{containers} (all the backend has) match
    C{services}: linear in the containers and services.

    @param prune: also remove the containers of this project that are no
        service of C{services}.
    @raise Conflict: naming every service whose name a container that is
        not of this project holds.
    """
    byName = {container.name: container for container in containers}
    project = services.project
    foreign = [
        (name, byName[name].labels.get(PROJECT_LABEL))
        for name in services.order
        if name in byName and byName[name].labels.get(PROJECT_LABEL) != project
    ]
    if foreign:
        raise Conflict(
            "; ".join(
                f"container {name} exists and is not of project {project}"
                + (f" (it is of project {other})" if other else "")
                for name, other in foreign
            )
        )
    steps = [_step(services, name, byName.get(name), salt) for name in services.order]
    if prune:
        steps += [
            Step(container.name, StepAction.REMOVE, current=container)
            for container in sorted(byName.values(), key=lambda c: c.name)
            if container.labels.get(PROJECT_LABEL) == project
            and container.name not in services.services
            and SERVICE_LABEL in container.labels
        ]
    return Plan(project, tuple(steps))


def _step(services: ServiceSet, name: str, current: Container | None,
          salt: Callable[[], str] | None) -> Step:  # fmt: skip
    service = services.services[name]
    if current is None:
        return Step(service.name, StepAction.CREATE, service=service,
                    spec=_withConfig(service.spec, salt))  # fmt: skip
    changes = changedFields(current.labels, service.spec)
    if changes:
        return Step(service.name, StepAction.RECREATE, tuple(changes), current, service,
                    _withConfig(service.spec, salt))  # fmt: skip
    up = current.state in _UP_STATES or (
        # A one-shot job that did its work is left alone too.
        current.state == State.EXITED and current.exitCode == 0
        and services.ownCondition(name) == Condition.COMPLETED_SUCCESSFULLY
    )
    action = StepAction.KEEP if up else StepAction.START
    return Step(service.name, action, current=current, service=service)


def _withConfig(spec: ContainerSpec, salt: Callable[[], str] | None) -> ContainerSpec:
    label = configLabel(spec) if salt is None else configLabel(spec, salt)
    return attrs.evolve(spec, labels={**spec.labels, CONFIG_LABEL: label})
