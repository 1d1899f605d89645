"""
Human output of containers' health (their C{health} field: C{null}, or
C{{"status", "failing_streak", "log"}}), as the Docker CLI shows it: a
running container's state with C{(healthy)}, C{(unhealthy)} or C{(health:
starting)} after it in C{pycm ls}, the status, streak and last results in
C{inspect}, the status of a C{health_status} event.

Every function returns text; none prints.  (Imported by the one-shot
client, which must stay quick to start: no Twisted, no attrs.)
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

#: How much of a check's output C{inspect} shows on its line.
OUTPUT_WIDTH = 60


def healthStatus(container: Mapping[str, Any]) -> str | None:
    """
    The health status of C{container} (C{starting}, C{healthy},
    C{unhealthy}), from its C{health} object or a reply's C{health}
    string; None without a health check.
    """
    health = container.get("health")
    if isinstance(health, Mapping):
        health = health.get("status")
    return health if isinstance(health, str) and health else None


def healthSuffix(status: str | None) -> str:
    """C{" (healthy)"}, C{" (health: starting)"}: what C{docker ps} adds; C{""} for None."""
    if status is None:
        return ""
    if status == "starting":
        return " (health: starting)"
    return f" ({status})"


def stateText(container: Mapping[str, Any]) -> str:
    """
    A container's state as C{pycm ls} shows it: C{running (healthy)} for
    a running container with a health check, C{exited (OOM killed)} when
    the kernel's OOM killer killed in its last run, the bare state
    otherwise (a stopped container's last health is stale: C{docker ps}
    hides it too).
    """
    state = container.get("state")
    if state is None or state == "":
        return ""
    if state != "running":
        return f"{state} (OOM killed)" if container.get("oom_killed") is True else str(state)
    return f"{state}{healthSuffix(healthStatus(container))}"


def healthLines(health: Mapping[str, Any]) -> list[str]:
    """
    C{inspect}'s lines for a C{health} object: its status and failing
    streak, then its last results, oldest first, one a line (when it
    ended, its exit code, the start of its output).
    """
    lines = [
        "health:",
        f"  status:         {health.get('status', '-')}",
        f"  failing_streak: {health.get('failing_streak', 0)}",
    ]
    log = health.get("log")
    if isinstance(log, list) and log:
        lines.append("  log:")
        for result in log:
            if isinstance(result, Mapping):
                lines.append("    " + resultLine(result))
    return lines


def resultLine(result: Mapping[str, Any]) -> str:
    """C{2026-12-01T00:00:01.000Z  exit 0  accepting connections}."""
    output = " ".join(str(result.get("output", "")).split())
    if len(output) > OUTPUT_WIDTH:
        output = output[: OUTPUT_WIDTH - 1] + "\N{HORIZONTAL ELLIPSIS}"
    code = result.get("exit_code")
    outcome = "timed out" if code == -1 else f"exit {code}"
    return f"{result.get('end') or result.get('start') or '-'}  {outcome}  " \
        f"{json.dumps(output, ensure_ascii=False) if output else ''}".rstrip()


def oomText(event: Mapping[str, Any]) -> str:
    """What a C{die} event whose run the OOM killer hit adds to its exit code."""
    return ", OOM killed" if event.get("oom_killed") is True else ""


def eventStatus(event: Mapping[str, Any]) -> str:
    """What a C{health_status} event adds: C{": healthy"}; C{""} for other events."""
    status = event.get("status")
    if event.get("action") == "health_status" and isinstance(status, str):
        return f": {status}"
    return ""
