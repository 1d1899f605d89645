"""
The memory backend: the shared L{Supervisor} with simulated runs on the
injected clock (nothing runs on the host), a log store and record stores in
memory.  docs/memory.md lists the simulated commands (C{sleep S}, C{exit N},
C{echo}, C{fail}, C{delay}, C{ignore-term}, C{unstartable}, C{burn}), their
signals and their simulated usage, and the simulated health checks
(L{SimulatedRuntime.probe}: C{true}, C{false}, C{exit N}, C{sleep S},
C{echo}, C{test -e PATH}, joined by C{;} or C{&&}).  C{--user} is
recorded and shown, nothing more.
"""

from __future__ import annotations

import collections
import json
import os
import signal as _signal
from collections.abc import Callable, Mapping
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.python.filepath import FilePath
from zope.interface import implementer

from pycm.backends import takesOptions
from pycm.backends.supervisor.backend import Supervisor, defaultIdFactory
from pycm.capabilities import ALL_OPTIONS, STATS_FIGURES, Capabilities
from pycm.errors import BackendError
from pycm.health import HealthResult
from pycm.interfaces import (
    ILogStore,
    IRecordStore,
    IRun,
    IRunObserver,
    IRuntime,
    IRuntimeHealth,
    IRuntimeStats,
)
from pycm.model import Container, LogLine, parseSignal
from pycm.stats import Usage
from pycm.store import nameProblem
from pycm.units import formatDuration

#: Signals a simulated run ignores.
IGNORED_SIGNALS = frozenset(
    {
        _signal.SIGCHLD,
        _signal.SIGCONT,
        _signal.SIGURG,
        _signal.SIGWINCH,
        _signal.SIGUSR1,
        _signal.SIGUSR2,
    }
)

DEFAULT_IMAGE = "memory"
IMAGES = frozenset({"memory", "host"})
DEFAULT_COMMAND = ("sleep", "infinity")
#: The memory a simulated run uses, in bytes.
SIMULATED_MEMORY = 4 * 2**20


@implementer(IRunObserver)
class _Discard:
    """An observer for runs nobody listens to any more."""

    def output(self, stream: str, lines: list[bytes]) -> None:
        pass

    def exited(self, exitCode: int | None) -> None:
        pass


@implementer(IRun)
class SimulatedRun:
    """One simulated run: see the module docstring for its behaviours."""

    def __init__(
        self,
        clock: IReactorTime,
        observer: IRunObserver,
        pid: int,
        onExit: Callable[[SimulatedRun], None],
    ) -> None:
        self.pid = pid
        self.startTime = None
        self.observer = observer
        self.ignoreTerm = False
        self.exitCode: int | None = None
        self.done = False
        self._clock = clock
        self._calls: list[IDelayedCall] = []
        self._dying = False
        self._onExit = onExit
        self.exitWaiters: list[Deferred[int | None]] = []
        #: When it started, the CPUs it keeps busy, the bytes it wrote.
        self.started = clock.seconds()
        self.load = 0.0
        self.written = 0

    def usage(self, memoryLimit: int | None) -> Usage:
        """Its simulated counters now."""
        return Usage(
            cpuSeconds=self.load * (self._clock.seconds() - self.started),
            memory=SIMULATED_MEMORY,
            memoryLimit=memoryLimit,
            pids=1,
            readBytes=0,
            writeBytes=self.written,
        )

    def later(self, delay: float, f: Callable[..., object], *args: object) -> None:
        """Run C{f} after C{delay} seconds unless the run ends first."""
        self._calls = [c for c in self._calls if c.active()]
        self._calls.append(self._clock.callLater(delay, f, *args))

    def _cancelAll(self) -> None:
        calls, self._calls = self._calls, []
        for call in calls:
            if call.active():
                call.cancel()

    def write(self, stream: str, text: str) -> None:
        if not self.done:
            data = text.encode("utf-8")
            self.written += len(data) + 1
            self.observer.output(stream, [data])

    def exit(self, code: int | None) -> None:
        if self.done:
            return
        self.done = True
        self.exitCode = code
        self._cancelAll()
        self._onExit(self)
        self.observer.exited(code)
        waiters, self.exitWaiters = self.exitWaiters, []
        for d in waiters:
            d.callback(code)

    def signal(self, signum: int) -> None:
        if self.done or self._dying or signum in IGNORED_SIGNALS:
            return
        if self.ignoreTerm and signum == _signal.SIGTERM:
            return
        self._dying = True
        self._cancelAll()
        self._calls.append(self._clock.callLater(0, self.exit, -signum))


def simulateCheck(command: str) -> tuple[float, int, str]:
    """
    What the simulated health check C{command} does: how long it takes,
    its exit code and its output.  Steps are joined by C{;} or C{&&} (the
    rest of an C{&&} chain is skipped after a failure); each is C{true}
    (0), C{false} (1), C{exit N} (N, and the check ends), C{sleep S} (S
    seconds pass; C{sleep infinity}: for ever), C{echo WORDS} (output, 0)
    or C{test -e PATH} (0 if PATH exists on the host, else 1: the one
    thing read from the host, so that a test can switch a check); anything
    else exits 127 saying it is not simulated.  The exit code is the last
    step's, as a shell's.
    """
    duration, code, output = 0.0, 0, list[str]()
    for chain in command.split(";"):
        for step in chain.split("&&"):
            words = step.split()
            if not words:
                continue
            word, args = words[0], words[1:]
            if word == "exit" and len(args) <= 1 and all(a.isdigit() for a in args):
                return duration, int(args[0]) % 256 if args else code, "\n".join(output)
            if word == "sleep" and len(args) == 1 and _isSeconds(args[0]):
                duration += float(args[0])
            code = _simulatedStep(word, args, output)
            if code != 0:
                break
    return duration, code, "\n".join(output)


def _simulatedStep(word: str, args: list[str], output: list[str]) -> int:
    """One step of L{simulateCheck} (not C{exit}): its exit code."""
    if word in ("true", "false"):
        return 0 if word == "true" else 1
    if word == "sleep" and len(args) == 1 and _isSeconds(args[0]):
        return 0
    if word == "echo":
        output.append(" ".join(args))
        return 0
    if word == "test" and len(args) == 2 and args[0] == "-e":
        return 0 if os.path.lexists(args[1]) else 1
    output.append(f"{word}: not a simulated health check command")
    return 127


def _isSeconds(text: str) -> bool:
    try:
        return float(text) >= 0
    except ValueError:
        return False


@implementer(IRuntime, IRuntimeStats, IRuntimeHealth)
class SimulatedRuntime:
    """
    An L{IRuntime} whose runs are simulated on C{clock}.

    It remembers its live runs by pid, so one runtime shared by two
    supervisors simulates processes that survive a daemon restart.
    """

    defaultCommand = DEFAULT_COMMAND

    def __init__(self, clock: IReactorTime, defaultImage: str = DEFAULT_IMAGE) -> None:
        self._clock = clock
        self.defaultImage = defaultImage
        self.images = IMAGES | {defaultImage}
        self.capabilities = Capabilities(
            options=ALL_OPTIONS,
            limits=frozenset(),
            images="simulated: " + ", ".join(sorted(self.images)),
            stats=STATS_FIGURES,
        )
        self._nextPid = 1000
        #: Live runs by pid.
        self.runs: dict[int, SimulatedRun] = {}

    def spawn(
        self, container: Container, observer: IRunObserver, runId: str | None = None
    ) -> Deferred[IRun]:
        argv = list(container.command) or list(self.defaultCommand)
        if argv[0] == "unstartable":
            return fail(BackendError(f'cannot start "{argv[0]}": simulated failure'))
        self._nextPid += 1
        run = SimulatedRun(self._clock, observer, self._nextPid, self._forget)
        self.runs[run.pid] = run
        self._behave(run, argv)
        return succeed(run)

    def probe(self, container: Container, run: IRun, timeout: float) -> Deferred[HealthResult]:
        """
        Simulate C{container}'s health check (L{simulateCheck}) on the
        clock: its result after its duration, or exit code -1 at
        C{timeout} if it takes longer.  Cancelling it drops it.
        """
        start = self._clock.seconds()
        check = container.healthcheck
        if check is None or check.cmd is None:
            return succeed(HealthResult(start, start, -1, "no health check"))
        if not isinstance(run, SimulatedRun) or run.done:
            return succeed(HealthResult(start, start, -1, "the container is not running"))
        duration, code, text = simulateCheck(check.cmd)
        output = HealthResult.capOutput(text.encode("utf-8"))
        if duration > timeout:
            duration, code = timeout, -1
            output = f"health check timed out after {formatDuration(timeout)}"
        if duration == 0:
            return succeed(HealthResult(start, start, code, output))
        result = HealthResult(start, start + duration, code, output)
        call = self._clock.callLater(duration, lambda: d.callback(result))
        d: Deferred[HealthResult] = Deferred(lambda _: call.cancel())
        return d

    def _forget(self, run: SimulatedRun) -> None:
        """Drop an exited run from the live runs."""
        self.runs.pop(run.pid, None)

    def _behave(self, run: SimulatedRun, argv: list[str]) -> None:
        command, args = argv[0], argv[1:]
        if command == "sleep":
            if args == ["infinity"]:
                return
            try:
                seconds = float(args[0]) if len(args) == 1 else -1.0
            except ValueError:
                seconds = -1.0
            if seconds < 0:
                self._failWith(run, f"sleep: invalid time interval {' '.join(args)!r}")
            else:
                run.later(seconds, run.exit, 0)
        elif command == "exit":
            try:
                code = int(args[0]) % 256 if args else 0
            except ValueError:
                self._failWith(run, f"exit: {args[0]}: numeric argument required")
            else:
                run.later(0, run.exit, code)
        elif command == "echo":
            run.later(0, self._echo, run, "stdout", " ".join(args), 0)
        elif command == "fail":
            run.later(0, self._echo, run, "stderr", " ".join(args), 1)
        elif command == "delay" and args:
            try:
                seconds = float(args[0])
            except ValueError:
                self._failWith(run, f"delay: invalid time interval {args[0]!r}")
            else:
                run.later(seconds, self._behave, run, args[1:] or ["exit", "0"])
        elif command == "ignore-term":
            run.ignoreTerm = True
        elif command == "burn":
            try:
                run.load = float(args[0]) if args else 1.0
            except ValueError:
                run.load = -1.0
            if not 0 <= run.load < float("inf"):
                run.load = 0.0
                self._failWith(run, f"burn: invalid CPU fraction {' '.join(args)!r}")

    def _echo(self, run: SimulatedRun, stream: str, text: str, code: int) -> None:
        run.write(stream, text)
        run.exit(code)

    def _failWith(self, run: SimulatedRun, message: str) -> None:
        """The run writes C{message} on stderr and exits 1."""
        run.later(0, self._echo, run, "stderr", message, 1)

    def usage(self, runs: list[tuple[Container, IRun]]) -> list[Usage | None]:
        """Each run's simulated usage (see the module docstring)."""
        return [
            run.usage(container.memory) if isinstance(run, SimulatedRun) else None
            for container, run in runs
        ]

    def sweep(self, runs: dict[str, Container], strays: object = ()) -> Deferred[list[str]]:
        """Simulated runs never escape their container: nothing to stop."""
        return succeed([])

    def reclaim(self, container: Container, pid: int | None, startTime: object) -> Deferred[bool]:
        run = self.runs.get(pid) if pid is not None else None
        if run is None:
            return succeed(False)
        run.observer = _Discard()
        d: Deferred[int | None] = Deferred()
        run.exitWaiters.append(d)
        run.signal(parseSignal(container.stopSignal))
        timer = self._clock.callLater(container.stopTimeout, run.signal, _signal.SIGKILL)

        def gone(_: object) -> bool:
            if timer.active():
                timer.cancel()
            return True

        return d.addCallback(gone)


@implementer(ILogStore)
class MemoryLogStore:
    """Keeps the last C{maxLines} lines of each container in memory."""

    def __init__(self, maxLines: int = 10_000) -> None:
        self._maxLines = maxLines
        self._lines: dict[str, collections.deque[LogLine]] = {}

    def append(self, name: str, logLine: LogLine) -> None:
        lines = self._lines.get(name)
        if lines is None:
            lines = self._lines[name] = collections.deque(maxlen=self._maxLines)
        lines.append(logLine)

    def appendLines(self, name: str, time: float, stream: str, lines: list[str]) -> None:
        for line in lines:
            self.append(name, LogLine(time, stream, line))

    def prepare(self, name: str) -> None:
        pass

    def tail(self, name: str, count: int | None) -> list[LogLine]:
        lines = list(self._lines.get(name, ()))
        if count is None:
            return lines
        if count <= 0:
            return []
        return lines[-count:]

    def remove(self, name: str) -> None:
        self._lines.pop(name, None)


@implementer(IRecordStore)
class NullRecordStore:
    """Keeps nothing: the memory backend forgets everything on restart."""

    def load(self) -> list[dict[str, Any]]:
        return []

    def save(self, name: str, record: dict[str, Any]) -> None:
        pass

    def delete(self, name: str) -> None:
        pass

    def quarantine(self, name: str, reason: str) -> None:
        pass

    def quarantined(self) -> list[dict[str, str]]:
        return []

    def remains(self) -> list[tuple[str, bytes]]:
        return []


@implementer(IRecordStore)
class MemoryRecordStore:
    """
    Keeps records in memory, as JSON text (so a record that is not JSON-able
    fails at once).  Share one between two supervisors to simulate a daemon
    restart.
    """

    def __init__(self) -> None:
        self.records: dict[str, str] = {}
        self.damaged: dict[str, tuple[str, str]] = {}

    def load(self) -> list[dict[str, Any]]:
        """Every record; one without a string name is put aside, by its key."""
        records = []
        for key, text in list(self.records.items()):
            record = json.loads(text)
            problem = nameProblem(record) if isinstance(record, dict) else None
            if problem is not None:
                self.quarantine(key, problem)
            else:
                records.append(record)
        return records

    def save(self, name: str, record: dict[str, Any]) -> None:
        self.records[name] = json.dumps(record)

    def delete(self, name: str) -> None:
        self.records.pop(name, None)

    def quarantine(self, name: str, reason: str) -> None:
        """Move C{name}'s record (its text) to L{damaged}."""
        self.damaged[name] = (self.records.pop(name, ""), reason)

    def quarantined(self) -> list[dict[str, str]]:
        return [{"name": n, "reason": self.damaged[n][1]} for n in sorted(self.damaged)]

    def remains(self) -> list[tuple[str, bytes]]:
        # A name put aside with no record has no text to give.
        return [(n, text.encode()) for n, (text, _) in sorted(self.damaged.items()) if text]


class MemoryBackend(Supervisor):
    """
    The memory backend.

    @param clock: the time source of the simulated runs (kept as C{clock},
        so tests can drive it).
    @param runtime: a L{SimulatedRuntime} (default: a fresh one on C{clock}).
    @param recordStore: where records are kept (default: nowhere).
    """

    def __init__(
        self,
        clock: IReactorTime,
        runtime: SimulatedRuntime | None = None,
        recordStore: IRecordStore | None = None,
        logStore: ILogStore | None = None,
        idFactory: Callable[[], str] = defaultIdFactory,
    ) -> None:
        self.clock = clock
        self.runtime = runtime if runtime is not None else SimulatedRuntime(clock)
        super().__init__(
            clock=clock,
            backendName="memory",
            runtime=self.runtime,
            logStore=logStore if logStore is not None else MemoryLogStore(),
            recordStore=recordStore if recordStore is not None else NullRecordStore(),
            idFactory=idFactory,
        )


@takesOptions("default-image")
def makeBackend(
    reactor: IReactorTime,
    stateDir: FilePath[Any] | None,
    options: Mapping[str, str | None],
) -> MemoryBackend:
    """
    The C{pycm.backends} entry point: a L{MemoryBackend} on C{reactor}.

    C{stateDir} is not used (nothing is kept).  Of C{options}, only
    C{default-image} means something here (the daemon refuses others).
    """
    defaultImage = options.get("default-image") or DEFAULT_IMAGE
    return MemoryBackend(reactor, runtime=SimulatedRuntime(reactor, defaultImage))
