"""
The fields of an event kept apart from its common ones (a swarm task's
node, task, replicas and status): as compact JSON in the event store's
C{detail} column, most events having none of them (the column stays NULL).
"""

from __future__ import annotations

import json
from typing import Any

from pycm.model import ContainerEvent

#: The fields kept in the C{detail} column, and the type each must have.
DETAIL_TYPES = {"node": str, "task": str, "replicas": int, "status": str, "oomKilled": bool}


def encodeDetail(event: ContainerEvent) -> str | None:
    """The C{detail} column of C{event}: its detail fields that are set, or None."""
    detail = {
        key: value for key in DETAIL_TYPES if (value := getattr(event, key)) is not None
    }
    return json.dumps(detail, separators=(",", ":")) if detail else None


def decodeDetail(text: str | None) -> dict[str, Any]:
    """The detail fields of a stored event (none from a damaged column)."""
    if not text:
        return {}
    try:
        detail = json.loads(text)
    except ValueError:
        return {}
    if not isinstance(detail, dict):
        return {}
    return {
        key: value
        for key, kind in DETAIL_TYPES.items()
        if isinstance(value := detail.get(key), kind) and (kind is bool) == isinstance(value, bool)
    }
