"""
Health checks and execs of L{pycm.testing.dockerengine.FakeDockerEngine}'s
containers, as dockerd runs them (L{FakeHealthChecks}), and the tiny shell
both run their commands in (L{runShell}).
"""

from __future__ import annotations

import itertools
import shlex
from collections.abc import Callable
from typing import Any

from pycm.backends.docker.engine import EngineError
from pycm.backends.docker.health import healthcheckFrom
from pycm.health import Health, HealthCheck, HealthResult, HealthStatus
from pycm.testing.dockerstate import FakeContainer


def runShell(container: FakeContainer, line: str) -> tuple[int, str, float]:
    """
    Run C{line} in C{container} as the fake's shell does: C{(exit code,
    output, seconds it takes)}.  It knows C{true}, C{false}, C{exit N},
    C{sleep S} (takes S seconds), C{echo WORDS}, C{touch PATH} and C{rm
    [-f] PATH} (on C{container.files}), C{test -e|-f PATH} and C{[ -e PATH
    ]}; commands joined by C{&&} or C{;}.  Anything else is C{sh}'s 127,
    not found.
    """
    code, output, seconds = 0, "", 0.0
    for sequence in line.split(";"):
        code, out, took = _andList(container, sequence)
        output += out
        seconds += took
        if sequence.strip().startswith("exit"):
            break
    return code, output, seconds


def _andList(container: FakeContainer, line: str) -> tuple[int, str, float]:
    code, output, seconds = 0, "", 0.0
    for part in line.split("&&"):
        try:
            words = shlex.split(part)
        except ValueError:
            return 2, "sh: syntax error\n", seconds
        code, out, took = _command(container, words)
        output += out
        seconds += took
        if code != 0:
            break
    return code, output, seconds


def _command(container: FakeContainer, words: list[str]) -> tuple[int, str, float]:
    if words[:1] == ["["] and words[-1:] == ["]"]:
        words = ["test", *words[1:-1]]
    match words:
        case ["true"] | []:
            return 0, "", 0.0
        case ["false"]:
            return 1, "", 0.0
        case ["exit", code] if code.isdigit():
            return int(code) % 256, "", 0.0
        case ["sleep", seconds]:
            return 0, "", float(seconds)
        case ["echo", *rest]:
            return 0, " ".join(rest) + "\n", 0.0
        case ["touch", path]:
            container.files.add(path)
            return 0, "", 0.0
        case ["rm", path] | ["rm", "-f", path]:
            if path not in container.files and words[1] != "-f":
                return 1, f"rm: can't remove '{path}': No such file or directory\n", 0.0
            container.files.discard(path)
            return 0, "", 0.0
        case ["test", "-e" | "-f", path]:
            return (0 if path in container.files else 1), "", 0.0
    return 127, f"/bin/sh: {words[0]}: not found\n", 0.0


class FakeHealthChecks:
    """
    dockerd's health monitor and execs, for the fake engine's containers.

    A container created with a C{Healthcheck} (not C{NONE}) has a health
    from its first start: C{starting}, its first check C{Interval} after
    the start and each next one C{Interval} after the last ended; each
    check runs C{Test}'s command in L{runShell} (what it decides on is what
    the tests set: the container's C{files}, which an exec's C{touch} and
    C{rm} change, or the command itself: C{exit 1}); one slower than
    C{Timeout} is exit -1.  The results go through L{Health.after}
    (C{StartPeriod}, C{Retries}, a log of 5); each change of status is a
    C{health_status: STATUS} event.  A run that ends leaves it
    C{unhealthy} with no event, as dockerd does; the next start makes it
    C{starting} again (the log kept).

    @param event: C{event(container, action, **attributes)} tells an event.
    """

    def __init__(
        self, clock: Any, now: Callable[[], int], event: Callable[..., None]
    ) -> None:
        self.clock = clock
        self.now = now
        self.event = event
        self.execs: dict[str, dict[str, Any]] = {}
        self._serial = itertools.count(1)

    @staticmethod
    def check(container: FakeContainer) -> HealthCheck | None:
        check = healthcheckFrom(container.config.get("Healthcheck"))
        return None if check is None or check.disabled else check

    # -- the monitor -------------------------------------------------------

    def started(self, container: FakeContainer) -> None:
        """Its run started: C{starting}, the first check an interval away."""
        self.stopped(container, quiet=True)
        check = self.check(container)
        if check is None:
            return
        log = container.health.log if container.health is not None else ()
        container.health = Health(HealthStatus.STARTING, 0, log)
        self._schedule(container, check)

    def stopped(self, container: FakeContainer, quiet: bool = False) -> None:
        """Its run ended: no more checks, and C{unhealthy} (dockerd's, untold)."""
        for call in container.healthTimers:
            if call.active():
                call.cancel()
        container.healthTimers = []
        if container.health is not None and not quiet:
            health = container.health
            container.health = Health(HealthStatus.UNHEALTHY, health.failingStreak, health.log)

    def _schedule(self, container: FakeContainer, check: HealthCheck) -> None:
        container.healthTimers = [self.clock.callLater(check.interval, self._probe, container)]

    def _probe(self, container: FakeContainer) -> None:
        check = self.check(container)
        if check is None or container.status != "running" or check.cmd is None:
            return
        start = self.clock.seconds()
        self._execEvents(container, f"/bin/sh -c {check.cmd}")
        code, output, seconds = runShell(container, check.cmd)
        if seconds > check.timeout:
            code, seconds = -1, check.timeout
            output = f"Health check exceeded timeout ({check.timeout:g}s)"
        result = HealthResult(start, start + seconds, code, HealthResult.capOutput(output.encode()))
        if seconds:
            container.healthTimers = [
                self.clock.callLater(seconds, self._result, container, check, result)
            ]
        else:
            self._result(container, check, result)

    def _result(self, container: FakeContainer, check: HealthCheck, result: HealthResult) -> None:
        before = container.health
        if before is None or container.status != "running":
            return
        self.event(container, "exec_die", exitCode=str(result.exitCode))
        startedAt = (container.startedAt or 0) / 1e9
        inStartPeriod = (
            before.status == HealthStatus.STARTING
            and result.start - startedAt < check.startPeriod
        )
        after = container.health = before.after(check, result, inStartPeriod)
        if after.status != before.status:
            self.event(container, f"health_status: {after.status}")
        self._schedule(container, check)

    def _execEvents(self, container: FakeContainer, line: str) -> str:
        execId = f"{next(self._serial):04x}" + "e" * 60
        self.event(container, f"exec_create: {line}", execID=execId)
        self.event(container, f"exec_start: {line}", execID=execId)
        return execId

    # -- execs -------------------------------------------------------------

    def create(self, container: FakeContainer, params: dict[str, Any], body: Any) -> Any:
        """C{POST /containers/ID/exec}: an exec of C{Cmd} (C{sh -c LINE} or words)."""
        if container.status != "running":
            raise EngineError(409, f"Container {container.id} is not running")
        command = [str(word) for word in (body or {}).get("Cmd") or ()]
        if not command:
            raise EngineError(400, "No exec command specified")
        execId = f"{next(self._serial):04x}" + "e" * 60
        self.execs[execId] = {
            "ID": execId,
            "Running": False,
            "ExitCode": None,
            "ContainerID": container.id,
            "ProcessConfig": {"entrypoint": command[0], "arguments": command[1:]},
            "container": container,
            "command": command,
        }
        self.event(container, "exec_create: " + " ".join(command), execID=execId)
        return (201, {"Id": execId})

    def start(self, execId: str, params: dict[str, Any], body: Any) -> Any:
        """C{POST /exec/ID/start}: runs it to its end at once (detached or not)."""
        found = self._find(execId)
        container: FakeContainer = found["container"]
        command: list[str] = found["command"]
        self.event(container, "exec_start: " + " ".join(command), execID=execId)
        line = command[2] if command[:2] == ["sh", "-c"] and len(command) > 2 else shlex.join(
            command
        )
        code, output, _ = runShell(container, line)
        found["ExitCode"] = code
        self.event(container, "exec_die", execID=execId, exitCode=str(code))
        return (200, b"" if (body or {}).get("Detach") else output.encode())

    def inspect(self, execId: str, params: dict[str, Any], body: Any) -> Any:
        """C{GET /exec/ID/json}."""
        found = self._find(execId)
        return (200, {k: v for k, v in found.items() if k not in ("container", "command")})

    def _find(self, execId: str) -> dict[str, Any]:
        if execId not in self.execs:
            raise EngineError(404, f"No such exec instance: {execId}")
        return self.execs[execId]


__all__ = ["FakeHealthChecks", "runShell"]
