"""
Tests for L{pycm.slicedwork}: long jobs run a slice at a time, in turn,
within a budget per reactor turn, on a L{Clock} and a timer the tests move.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.trial.unittest import SynchronousTestCase

from pycm.errors import Unavailable
from pycm.slicedwork import SlicedWork, runAtOnce, runWaiting


class Turns:
    """
    The reactor's turns, as far as L{SlicedWork} uses them: what is
    scheduled during a turn (C{callLater(0, ...)}) runs in the next one,
    as with the real reactor (a L{Clock} would run it in the same advance).
    """

    def __init__(self) -> None:
        self.calls: list[_Call] = []

    def callLater(self, delay: float, f: Callable[..., object], *args: object) -> _Call:
        call = _Call(f, args, self)
        self.calls.append(call)
        return call

    def seconds(self) -> float:
        return 0.0

    def turn(self) -> None:
        """Run what was scheduled before this turn."""
        calls, self.calls = self.calls, []
        for call in calls:
            call.f(*call.args)


class _Call:
    def __init__(self, f: Callable[..., object], args: tuple[object, ...], turns: Turns) -> None:
        self.f, self.args, self._turns = f, args, turns

    def cancel(self) -> None:
        self._turns.calls.remove(self)


class StepTimer:
    """A timer that moves one second each time it is read: one step a budget."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def counting(steps: int, log: list[str], name: str) -> Generator[None, None, int]:
    """A job of C{steps} slices that notes each in C{log}; returns C{steps}."""
    for i in range(steps):
        if i:
            yield None
        log.append(f"{name}{i}")
    return steps


class SlicedWorkTests(SynchronousTestCase):
    """L{SlicedWork.run}."""

    def setUp(self) -> None:
        self.clock = Turns()
        clock: Any = self.clock
        self.work = SlicedWork(clock, budget=0.5, timer=StepTimer())

    def test_oneSliceAtOnce(self) -> None:
        """A job of one slice has its result at once, with no turn scheduled."""
        log: list[str] = []
        self.assertEqual(self.successResultOf(self.work.run(counting(1, log, "a"))), 1)
        self.assertEqual(self.clock.calls, [])

    def test_slicesInTurns(self) -> None:
        """
        The first slice runs now, the rest a turn at a time within the
        budget, two jobs taking turns; each fires with its result.
        """
        log: list[str] = []
        a = self.work.run(counting(3, log, "a"))
        b = self.work.run(counting(3, log, "b"))
        self.assertEqual(log, ["a0", "b0"])
        self.assertNoResult(a)
        self.clock.turn()
        # The budget (0.5 s of a timer moving 1 s a read) allows 1 step a turn.
        self.assertEqual(log, ["a0", "b0", "a1"])
        self.clock.turn()
        self.assertEqual(log, ["a0", "b0", "a1", "b1"])
        self.clock.turn()
        self.assertEqual(log, ["a0", "b0", "a1", "b1", "a2"])
        self.assertNoResult(b)
        self.clock.turn()
        self.assertEqual(log[5:], ["b2"])
        self.assertEqual((self.successResultOf(a), self.successResultOf(b)), (3, 3))
        self.assertEqual(self.clock.calls, [])

    def test_cancelStops(self) -> None:
        """Cancelling stops the job: no more slice runs, its finally runs."""
        log: list[str] = []

        def job() -> Generator[None, None, None]:
            try:
                for i in range(10):
                    log.append(str(i))
                    yield None
            finally:
                log.append("closed")

        d = self.work.run(job())
        d.cancel()
        self.failureResultOf(d, CancelledError)
        for _ in range(5):
            self.clock.turn()
        self.assertEqual(log, ["0", "closed"])

    def test_failure(self) -> None:
        """An exception in a later slice fails the Deferred with it."""

        def job() -> Generator[None, None, None]:
            yield None
            raise ValueError("bad")

        d = self.work.run(job())
        self.clock.turn()
        self.failureResultOf(d, ValueError)

    def test_failureAtOnce(self) -> None:
        """An exception in the first slice fails the Deferred at once."""

        def job() -> Generator[None, None, None]:
            raise ValueError("bad")
            yield None

        self.failureResultOf(self.work.run(job()), ValueError)

    def test_stop(self) -> None:
        """
        After L{SlicedWork.stop} no job runs on (however many there were),
        none fires, cancelling one is harmless, and a new one fails.
        """
        log: list[str] = []
        ds = [self.work.run(counting(3, log, name)) for name in "abcd"]
        self.work.stop()
        for _ in range(5):
            self.clock.turn()
        self.assertEqual(log, ["a0", "b0", "c0", "d0"])
        for d in ds:
            self.assertNoResult(d)
            d.cancel()
            self.failureResultOf(d, CancelledError)
        self.failureResultOf(self.work.run(counting(3, log, "e")), Unavailable)
        self.assertEqual(log[4:], [])

    def test_runAtOnce(self) -> None:
        """L{runAtOnce} runs every slice now and returns the result."""
        log: list[str] = []
        self.assertEqual(runAtOnce(counting(3, log, "a")), 3)
        self.assertEqual(log, ["a0", "a1", "a2"])

    def test_runAtOnceRefusesAWait(self) -> None:
        """
        L{runAtOnce} of a job that waits (yields a Deferred) fails at its
        first wait with a C{TypeError} saying so, the job closed: it spun
        for ever, resuming a job whose input nothing would ever bring.
        """
        log: list[str] = []
        with self.assertRaises(TypeError) as raised:
            runAtOnce(waiting(Deferred(), log, "w"))
        self.assertIn("cannot run a job that waits", str(raised.exception))
        self.assertEqual(log, ["w0", "w closed"])


def waiting(
    gate: Deferred[None], log: list[str], name: str
) -> Generator[Deferred[None] | None, None, str]:
    """A job that notes a slice, waits for C{gate}, notes another."""
    try:
        log.append(f"{name}0")
        yield gate
        log.append(f"{name}1")
    finally:
        log.append(f"{name} closed")
    return name


def wokenByClosing(
    gate: Deferred[None], log: list[str]
) -> Generator[Deferred[None] | None, None, None]:
    """
    A job that waits for C{gate} and fires it when it is closed (as a
    stream that ends at once when it is cancelled wakes its reader).
    """
    try:
        log.append("woken")
        yield gate
        log.append("woken again")
    finally:
        if not gate.called:
            gate.callback(None)
        log.append("woken closed")


def slicesThenClosed(log: list[str]) -> Generator[None, None, None]:
    """A job of many slices that notes each, and its close."""
    try:
        for i in range(10):
            log.append(f"s{i}")
            yield None
    finally:
        log.append("s closed")


class WaitingJobTests(SynchronousTestCase):
    """A job that yields a Deferred waits for it (its input is not there yet)."""

    def setUp(self) -> None:
        self.clock = Turns()
        clock: Any = self.clock
        self.work = SlicedWork(clock, budget=0.5, timer=StepTimer())

    def test_othersGoOnWhileOneWaits(self) -> None:
        """
        While a job waits, the others take their turns; it goes on once
        what it waits for has fired.
        """
        log: list[str] = []
        gate: Deferred[None] = Deferred()
        w = self.work.run(waiting(gate, log, "w"))
        c = self.work.run(counting(3, log, "c"))
        for _ in range(4):
            self.clock.turn()
        self.assertEqual(log, ["w0", "c0", "c1", "c2"])
        self.assertEqual(self.successResultOf(c), 3)
        self.assertNoResult(w)
        gate.callback(None)
        for _ in range(2):
            self.clock.turn()
        self.assertEqual(log[4:], ["w1", "w closed"])
        self.assertEqual(self.successResultOf(w), "w")

    def test_cancelWhileWaiting(self) -> None:
        """Cancelling a waiting job closes it; what it waited for firing later is harmless."""
        log: list[str] = []
        gate: Deferred[None] = Deferred()
        d = self.work.run(waiting(gate, log, "w"))
        self.clock.turn()
        d.cancel()
        self.failureResultOf(d, CancelledError)
        gate.callback(None)
        for _ in range(2):
            self.clock.turn()
        self.assertEqual(log, ["w0", "w closed"])

    def test_stopWhileWaiting(self) -> None:
        """
        L{SlicedWork.stop} stops a waiting job too, and closes it (its
        C{finally} runs: an engine's connection is closed): it never goes
        on, nor fires.
        """
        log: list[str] = []
        gate: Deferred[None] = Deferred()
        d = self.work.run(waiting(gate, log, "w"))
        self.work.stop()
        self.assertEqual(log, ["w0", "w closed"])
        gate.callback(None)
        for _ in range(2):
            self.clock.turn()
        self.assertEqual(log, ["w0", "w closed"])
        self.assertNoResult(d)

    def test_stopClosesEveryJob(self) -> None:
        """
        L{SlicedWork.stop} closes every job under way, waiting or not, even
        one whose closing wakes it (its C{finally} fires what it waits
        for, as a stream ended by its cancel does).
        """
        log: list[str] = []
        ds = [
            self.work.run(waiting(Deferred(), log, "w")),
            self.work.run(wokenByClosing(Deferred(), log)),
            self.work.run(slicesThenClosed(log)),
        ]
        self.work.stop()
        self.assertEqual(
            sorted(log), sorted(["w0", "w closed", "woken", "woken closed", "s0", "s closed"])
        )
        for _ in range(3):
            self.clock.turn()
        self.assertEqual(len(log), 6)
        for d in ds:
            self.assertNoResult(d)

    def test_cancelWokenByClosing(self) -> None:
        """
        Cancelling a job whose closing wakes it fails it with
        C{CancelledError}: the job is not resumed while it is being closed.
        """
        log: list[str] = []
        d = self.work.run(wokenByClosing(Deferred(), log))
        d.cancel()
        self.failureResultOf(d, CancelledError)
        for _ in range(2):
            self.clock.turn()
        self.assertEqual(log, ["woken", "woken closed"])

    def test_runWaitingCancelWokenByClosing(self) -> None:
        """
        Cancelling L{runWaiting}'s Deferred while its job waits fails it
        with C{CancelledError}, even when the job's closing fires what it
        waits for (a stream that ends as it is closed): the job was
        resumed inside its own close, and the Deferred failed with
        C{ValueError: generator already executing}.
        """
        log: list[str] = []
        d = runWaiting(wokenByClosing(Deferred(), log))
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertEqual(log, ["woken", "woken closed"])

    def test_runWaiting(self) -> None:
        """L{runWaiting} runs the slices at once, waiting where the job waits."""
        log: list[str] = []
        gate: Deferred[None] = Deferred()
        d = runWaiting(waiting(gate, log, "w"))
        self.assertEqual(log, ["w0"])
        gate.callback(None)
        self.assertEqual(self.successResultOf(d), "w")
        self.assertEqual(log, ["w0", "w1", "w closed"])
        other: Deferred[None] = Deferred()
        d = runWaiting(waiting(other, log, "x"))
        d.cancel()
        self.failureResultOf(d, CancelledError)
        other.callback(None)
        self.assertEqual(log[3:], ["x0", "x closed"])
