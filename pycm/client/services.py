"""
Human output for containers that run as several tasks (the swarm
backend's services): the replica counts (C{2/3}, as C{docker service ls}
shows them), the tasks of C{inspect} (as C{docker service ps}), the task
and node a log line or an event comes from (C{web.TASK@NODE}, as
C{docker service logs} prefixes lines).  Containers of other backends
carry none of these fields, and their output does not change.

Every function returns text; none prints.  (Imported by the one-shot
client, which must stay quick to start: no Twisted, no attrs.)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

#: How much of a task id is shown in prefixes and events (Docker's CLI
#: cuts ids to 12 characters too); C{inspect} and C{--json} show it whole.
TASK_ID_WIDTH = 12

TASK_COLUMNS = ("ID", "NODE", "STATE", "EXIT", "ERROR")


def replicasText(container: Mapping[str, Any]) -> str | None:
    """C{"2/3"}: running and desired tasks; None for a container without."""
    replicas = container.get("replicas")
    if not isinstance(replicas, Mapping):
        return None
    return f"{_count(replicas.get('running'))}/{_count(replicas.get('desired'))}"


def _count(value: Any) -> str:
    return "?" if value is None else str(value)


def anyReplicas(containers: Iterable[Any]) -> bool:
    """Whether any of C{containers} has replica counts."""
    return any(isinstance(c, Mapping) and replicasText(c) is not None for c in containers)


def shortTask(task: Any) -> str:
    """A task id as prefixes and events show it."""
    return str(task)[:TASK_ID_WIDTH]


def taskTag(name: str, entry: Any) -> str | None:
    """
    Where a log line or an event comes from, as C{docker service logs}
    says it: C{NAME.TASK@NODE} (the task id cut short), or what of it the
    entry carries (C{NAME.TASK}, C{NAME@NODE}); None for an entry tagged
    with neither task nor node.
    """
    if not isinstance(entry, Mapping):
        return None
    task, node = entry.get("task"), entry.get("node")
    if not task and not node:
        return None
    text = name
    if task:
        text = f"{text}.{shortTask(task)}" if text else shortTask(task)
    if node:
        text = f"{text}@{node}"
    return text


def eventDetail(event: Mapping[str, Any]) -> str:
    """
    What a container event adds beside its action: C{" (5 replicas)"} for
    a C{scale}, C{"  task TASK on NODE"} for an event of one task; C{""}
    for an event with neither.
    """
    text = ""
    replicas = event.get("replicas")
    if replicas is not None:
        text += f" ({replicas} replica{'' if replicas == 1 else 's'})"
    task, node = event.get("task"), event.get("node")
    if task:
        text += f"  task {shortTask(task)}"
    if node:
        text += f" on {node}" if task else f"  on {node}"
    return text


def taskTable(tasks: Sequence[Any]) -> list[str]:
    """
    The tasks of C{inspect}, as C{docker service ps} lists them: a header,
    then a line per task (its whole id, node, state, exit code, error).
    """
    rows = [list(TASK_COLUMNS)]
    for task in tasks:
        if not isinstance(task, Mapping):
            continue
        rows.append([
            _cell(task.get("id")), _cell(task.get("node")), _cell(task.get("state")),
            _cell(task.get("exit_code")), _cell(task.get("error")),
        ])
    widths = [max(len(row[i]) for row in rows) for i in range(len(TASK_COLUMNS))]
    return [
        "   ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
        for row in rows
    ]


def _cell(value: Any) -> str:
    return "-" if value is None or value == "" else str(value)
