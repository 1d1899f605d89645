"""
Health checks as values: what a client asked for (L{HealthCheck}, from the
C{--health-*} options or a services file's C{healthcheck} table), one
check's outcome (L{HealthResult}) and a container's health as the contract
shows it (L{Health}).  Every backend that checks health speaks these; how a
check runs is the backend's (a host process, the engine's own, a
simulation).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from pycm.errors import BadRequest
from pycm.timestamps import formatTime
from pycm.units import formatDuration, parseDuration


class HealthStatus:
    """The C{status} of a container's C{health}."""

    STARTING = "starting"
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"

    ALL = (STARTING, HEALTHY, UNHEALTHY)


class OnFailure:
    """What C{--health-on-failure} does when a container turns unhealthy."""

    NONE = "none"
    RESTART = "restart"
    STOP = "stop"
    KILL = "kill"

    ALL = (NONE, RESTART, STOP, KILL)

    @classmethod
    def parse(cls, text: str) -> str:
        if text not in cls.ALL:
            raise BadRequest(
                f"bad --health-on-failure {text!r}: expected one of " + ", ".join(cls.ALL)
            )
        return text


#: How many results a container's health keeps (Docker's figure).
KEPT_RESULTS = 5
#: The most output a result keeps, in bytes (Docker's figure).
MAX_OUTPUT = 4096


@attrs.frozen
class HealthCheck:
    """
    A container's health check.

    @ivar cmd: the check, one shell line (run as C{/bin/sh -c CMD}, or the
        image's shell); None for C{--no-healthcheck} (the image's own check,
        if any, is turned off).
    @ivar interval: seconds from the end of one check to the start of the
        next.
    @ivar timeout: seconds a check may take; a longer one is killed and
        counts as a failure.
    @ivar retries: consecutive failures that make it C{unhealthy}.
    @ivar startPeriod: seconds after a start during which failures do not
        count (a success still makes it C{healthy}).
    @ivar onFailure: an L{OnFailure} word: what happens on C{unhealthy}.
    """

    cmd: str | None
    interval: float = 30.0
    timeout: float = 30.0
    retries: int = 3
    startPeriod: float = 0.0
    onFailure: str = OnFailure.NONE

    @property
    def disabled(self) -> bool:
        """True for C{--no-healthcheck}."""
        return self.cmd is None

    def toJSON(self) -> dict[str, Any]:
        """C{inspect}'s C{healthcheck}: seconds as numbers."""
        return {
            "cmd": self.cmd,
            "interval": self.interval,
            "timeout": self.timeout,
            "retries": self.retries,
            "start_period": self.startPeriod,
            "on_failure": self.onFailure,
        }

    @classmethod
    def fromJSON(cls, data: Any) -> HealthCheck:
        """
        The inverse of L{toJSON} (a saved record's).

        @raise ValueError: for anything L{toJSON} does not make.
        """
        if not isinstance(data, dict):
            raise ValueError("a health check is an object")
        cmd = data.get("cmd")
        numbers = [data.get(key) for key in ("interval", "timeout", "start_period")]
        retries = data.get("retries")
        if (
            (cmd is not None and not isinstance(cmd, str))
            or not all(_isSeconds(number) for number in numbers)
            or min(numbers[0], numbers[1]) < 0.001  # type: ignore[type-var,operator]
            or not isinstance(retries, int) or isinstance(retries, bool) or retries < 1
            or data.get("on_failure") not in OnFailure.ALL
        ):
            raise ValueError(f"not a health check: {data!r}")
        interval, timeout, startPeriod = (float(number or 0) for number in numbers)
        return cls(cmd, interval, timeout, retries, startPeriod, data["on_failure"])

    def describe(self) -> str:
        """C{pg_isready -q every 2s (timeout 30s, 5 retries)}, for people."""
        if self.cmd is None:
            return "no health check"
        return (
            f"{self.cmd} every {formatDuration(self.interval)} "
            f"(timeout {formatDuration(self.timeout)}, {self.retries} retries)"
        )


def _isSeconds(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value < 1e9


@attrs.frozen
class HealthResult:
    """
    One check's outcome.

    @ivar exitCode: 0 is healthy; a check killed at its timeout is -1
        (Docker's figure), with C{output} saying so.
    @ivar output: what it wrote (stdout then stderr), at most L{MAX_OUTPUT}
        bytes of it, decoded as UTF-8 with replacement.
    """

    start: float
    end: float
    exitCode: int
    output: str

    @property
    def passed(self) -> bool:
        return self.exitCode == 0

    @staticmethod
    def capOutput(output: bytes) -> str:
        """The first L{MAX_OUTPUT} bytes of C{output}, as text."""
        return output[:MAX_OUTPUT].decode("utf-8", "replace")

    def toJSON(self) -> dict[str, Any]:
        return {
            "start": formatTime(self.start),
            "end": formatTime(self.end),
            "exit_code": self.exitCode,
            "output": self.output,
        }


@attrs.frozen
class Health:
    """
    A checked container's health: the contract's C{health} object.

    @ivar failingStreak: consecutive failed checks (counted after the start
        period).
    @ivar log: the last L{KEPT_RESULTS} results, oldest first.
    """

    status: str = HealthStatus.STARTING
    failingStreak: int = 0
    log: tuple[HealthResult, ...] = ()

    def after(self, check: HealthCheck, result: HealthResult, inStartPeriod: bool) -> Health:
        """
        The health once C{result} is in, by Docker's rules: a pass makes it
        C{healthy} with no streak; a failure in the start period changes
        nothing but the log; otherwise the streak grows, and reaching
        C{check.retries} makes it C{unhealthy}.
        """
        log = (*self.log, result)[-KEPT_RESULTS:]
        if result.passed:
            return Health(HealthStatus.HEALTHY, 0, log)
        if inStartPeriod:
            return Health(self.status, self.failingStreak, log)
        streak = self.failingStreak + 1
        status = HealthStatus.UNHEALTHY if streak >= check.retries else self.status
        return Health(status, streak, log)

    def toJSON(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "failing_streak": self.failingStreak,
            "log": [result.toJSON() for result in self.log],
        }


#: The C{--health-*} options that tune a check (each needs C{--health-cmd}).
_TUNING = ("health-interval", "health-timeout", "health-retries",
           "health-start-period", "health-on-failure")  # fmt: skip


def healthCheckFrom(values: Mapping[str, Any]) -> HealthCheck | None:
    """
    The L{HealthCheck} the C{--health-*} options give, or None if none is
    given.  C{values} holds them by wire name (C{health-cmd}, ...,
    C{no-healthcheck}), as text from a request line or as numbers from a
    services file; durations are L{pycm.units.parseDuration}'s, or seconds.

    @raise BadRequest: naming the option, for a bad value, a tuning option
        without C{health-cmd}, or C{no-healthcheck} with any other.
    """
    given = {key: value for key, value in values.items() if key.startswith("health-")}
    if values.get("no-healthcheck"):
        if given:
            raise BadRequest(
                "--no-healthcheck cannot be given with "
                + ", ".join(f"--{key}" for key in sorted(given))
            )
        return HealthCheck(None)
    if not given:
        return None
    cmd = given.get("health-cmd")
    if cmd is None:
        raise BadRequest(
            ", ".join(f"--{key}" for key in sorted(given)) + " needs --health-cmd"
        )
    if not isinstance(cmd, str) or not cmd.strip():
        raise BadRequest("bad --health-cmd: expected a command line")
    check = HealthCheck(cmd)
    changes: dict[str, Any] = {}
    for key, field in (("health-interval", "interval"), ("health-timeout", "timeout"),
                       ("health-start-period", "startPeriod")):  # fmt: skip
        if key in given:
            changes[field] = _seconds(given[key], key, allowZero=key == "health-start-period")
    if "health-retries" in given:
        changes["retries"] = _retries(given["health-retries"])
    if "health-on-failure" in given:
        changes["onFailure"] = OnFailure.parse(str(given["health-on-failure"]))
    return attrs.evolve(check, **changes)


def _seconds(value: object, key: str, allowZero: bool) -> float:
    if isinstance(value, str):
        seconds = parseDuration(value, key)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise BadRequest(f"bad --{key} {value!r}: expected a duration such as 10s")
    if seconds >= 1e9:
        raise BadRequest(f"bad --{key} {value!r}: expected a duration under 1e9 seconds "
                         "(31 years)")
    if not 0 <= seconds < 1e9 or (seconds < 0.001 and not allowZero):
        raise BadRequest(f"bad --{key} {value!r}: expected a duration of at least 1ms")
    return seconds


def _retries(value: object) -> int:
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 10:
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise BadRequest(f"bad --health-retries {value!r}: expected a whole number, 1 or more")
    return value
