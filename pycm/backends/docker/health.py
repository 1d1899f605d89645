"""
Health checks between pycm's values (L{pycm.health}) and the Engine API's
JSON: a create body's C{Healthcheck} (L{healthcheckBody}), and back from an
inspect, the check (L{healthcheckFrom}, C{Config.Healthcheck}) and the
health (L{healthFrom}, C{State.Health}).  The engine runs the checks
itself; docs/docker-backend.md says what the backend makes of them.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from typing import Any

from pycm.health import Health, HealthCheck, HealthResult, HealthStatus
from pycm.timestamps import parseTime

_NANO = 10**9
#: dockerd's defaults for a C{Healthcheck} field given as 0 (or not at all).
DEFAULT_INTERVAL = 30.0
DEFAULT_TIMEOUT = 30.0
DEFAULT_RETRIES = 3
#: How the engine marks a container's C{Healthcheck} as turned off.
DISABLED = ["NONE"]


def healthcheckBody(check: HealthCheck) -> dict[str, Any]:
    """
    The C{Healthcheck} of C{POST /containers/create} for C{check}: the
    command through the image's shell (C{CMD-SHELL}), times in
    nanoseconds; C{{"Test": ["NONE"]}} for C{--no-healthcheck}.
    (C{onFailure} has no engine field: the backend refuses it.)
    """
    if check.cmd is None:
        return {"Test": list(DISABLED)}
    return {
        "Test": ["CMD-SHELL", check.cmd],
        "Interval": round(check.interval * _NANO),
        "Timeout": round(check.timeout * _NANO),
        "Retries": check.retries,
        "StartPeriod": round(check.startPeriod * _NANO),
    }


def healthcheckFrom(config: Any) -> HealthCheck | None:
    """
    The L{HealthCheck} of an inspect's C{Config.Healthcheck} (the
    container's own, or its image's when it set none): None if it has
    none; C{cmd} None if it is turned off.  A C{CMD} test is shown as one
    shell-quoted line; zero times and retries are the engine's defaults.
    """
    if not isinstance(config, Mapping):
        return None
    test = [str(word) for word in config.get("Test") or ()]
    if not test:
        return None
    if test == DISABLED:
        return HealthCheck(None)
    kind, words = test[0], test[1:]
    if kind == "CMD-SHELL" and words:
        cmd = " ".join(words)
    elif kind == "CMD" and words:
        cmd = shlex.join(words)
    else:
        return None

    def seconds(key: str, default: float) -> float:
        value = config.get(key)
        return value / _NANO if isinstance(value, int) and value > 0 else default

    retries = config.get("Retries")
    return HealthCheck(
        cmd,
        interval=seconds("Interval", DEFAULT_INTERVAL),
        timeout=seconds("Timeout", DEFAULT_TIMEOUT),
        retries=retries if isinstance(retries, int) and retries > 0 else DEFAULT_RETRIES,
        startPeriod=seconds("StartPeriod", 0.0),
    )


def healthFrom(state: Mapping[str, Any], check: HealthCheck | None) -> Health | None:
    """
    The L{Health} of an inspect's C{State.Health}: None when the container
    has no check (C{check}, from L{healthcheckFrom}, is None or turned
    off); C{starting} with no results for one never started (the engine
    keeps no health until the first start).  A container that is not
    running keeps its last health, as the contract has it: dockerd turns
    it C{unhealthy} when its checks stop (the streak and log kept), so
    one not unhealthy by its streak reads as its run's results made it
    (L{_lastOfRun}).
    """
    if check is None or check.disabled:
        return None
    data = state.get("Health")
    if not isinstance(data, Mapping):
        return Health()
    status = str(data.get("Status") or "")
    if status not in HealthStatus.ALL:
        return Health()
    streak = data.get("FailingStreak")
    streak = streak if isinstance(streak, int) else 0
    log = tuple(
        result for result in (_result(item) for item in data.get("Log") or ()) if result
    )[-5:]
    if status == HealthStatus.UNHEALTHY and streak < check.retries and not state.get("Running"):
        status = _lastOfRun(log, parseTime(state.get("StartedAt")) or 0.0)
    return Health(status, streak, log)


def _lastOfRun(log: tuple[HealthResult, ...], startedAt: float) -> str:
    """
    The status the last run's results (those of C{log} since
    C{startedAt}) left, fewer than C{retries} failures at its end:
    C{healthy} if one passed, else C{starting}.
    """
    run = [result for result in log if result.start >= startedAt]
    return HealthStatus.HEALTHY if any(r.passed for r in run) else HealthStatus.STARTING


def _result(item: Any) -> HealthResult | None:
    if not isinstance(item, Mapping):
        return None
    start = parseTime(item.get("Start")) or 0.0
    code = item.get("ExitCode")
    output = item.get("Output")
    return HealthResult(
        start,
        parseTime(item.get("End")) or start,
        code if isinstance(code, int) else -1,
        HealthResult.capOutput(output.encode()) if isinstance(output, str) else "",
    )


def healthAction(raw: Mapping[str, Any]) -> str | None:
    """
    The new status a health event of the engine tells (C{healthy} or
    C{unhealthy}), or None if it is not one: dockerd's action is
    C{health_status: healthy}; Podman's compatible stream (4.3) says
    C{health_status} with the status in C{HealthStatus} (or the attribute
    C{health_status}), one event a check, and C{starting} for the first
    check whatever its outcome (dockerd never tells C{starting}: it is
    not told).
    """
    action = str(raw.get("Action") or raw.get("status") or "")
    head, _, status = action.partition(":")
    if head.strip() != "health_status":
        return None
    status = status.strip()
    if not status:
        attributes = (raw.get("Actor") or {}).get("Attributes") or {}
        status = str(raw.get("HealthStatus") or attributes.get("health_status") or "")
    return status if status in (HealthStatus.HEALTHY, HealthStatus.UNHEALTHY) else None


__all__ = ["healthAction", "healthFrom", "healthcheckBody", "healthcheckFrom"]
