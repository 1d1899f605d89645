"""
Long work done a slice at a time on the reactor (L{SlicedWork}): reading
megabytes of a container's log, or encoding them, must not hold up the
other connections (a C{ping} stays fast) nor the daemon's stop.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from typing import Any, TypeVar

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import (
    CooperativeTask,
    Cooperator,
    SchedulerError,
    SchedulerStopped,
    TaskStopped,
)
from twisted.python.failure import Failure

from pycm.errors import Unavailable

T = TypeVar("T")

#: A job: a generator that yields (None) between slices of a few
#: milliseconds at most, and returns its result (a job yields only when
#: more work follows: one of a single slice never yields).  A job that has
#: to wait for its input (a body still coming from the engine) yields a
#: Deferred instead: it is resumed once that fires (with anything; it must
#: not fail), the other jobs going on meanwhile.
Job = Generator["Deferred[Any] | None", None, T]

#: The most seconds of one L{SlicedWork}'s work in a reactor turn, all its
#: jobs together (the daemon's and its backend's have one each).
TURN_BUDGET = 0.01

#: Why a job run after L{SlicedWork.stop} fails.
STOPPED = "the daemon is shutting down"


class _Budget:
    """True once C{seconds} of C{timer} have passed since it was made."""

    def __init__(self, timer: Callable[[], float], seconds: float) -> None:
        self._timer = timer
        self._end = timer() + seconds

    def __call__(self) -> bool:
        return self._timer() >= self._end


class SlicedWork:
    """
    Runs jobs (L{Job}) a slice at a time, in turn (round-robin), for at
    most L{TURN_BUDGET} seconds of one reactor turn in all, however many
    jobs there are: the reactor serves other connections between turns.

    @param clock: schedules the next turn (C{callLater(0, ...)}).
    @param timer: measures the budget (C{time.monotonic}; tests give one
        that advances as they say).
    """

    def __init__(
        self,
        clock: IReactorTime,
        budget: float = TURN_BUDGET,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self._cooperator = Cooperator(
            terminationPredicateFactory=lambda: _Budget(timer, budget),
            scheduler=lambda step: clock.callLater(0, step),
        )
        #: The jobs under way, by their tasks: each stopped and closed on
        #: its own by L{stop} (C{Cooperator.stop} skips some of several).
        self._jobs: dict[CooperativeTask[Any], Job[Any]] = {}
        self._stopped = False

    def run(self, job: Job[T]) -> Deferred[T]:
        """
        Run C{job}'s first slice now and, unless that was all, the rest
        from the next reactor turn on.

        @return: a Deferred that fires with the job's result (at once for
            a job of one slice), or fails with its exception
            (L{Unavailable} once L{stop}ped).  Cancelling it stops the job
            where it is (its generator is closed, so its C{finally} blocks
            run).
        """
        if self._stopped:
            job.close()
            return fail(Unavailable(STOPPED))
        try:
            first = next(job)
        except StopIteration as stop:
            return succeed(stop.value)
        except Exception:
            return fail()
        result: list[Any] = []

        def steps() -> Generator[Deferred[Any] | None, None, None]:
            if first is not None:
                # It waits already: the task starts by waiting too.
                yield first
            result.append((yield from job))

        task = self._cooperator.cooperate(steps())
        self._jobs[task] = job

        def cancel(_: Deferred[T]) -> None:
            self._stopTask(task)
            job.close()

        done: Deferred[T] = Deferred(cancel)

        def finished(_: object) -> None:
            self._jobs.pop(task, None)
            if not done.called:
                done.callback(result[0])

        def failed(failure: Failure) -> None:
            self._jobs.pop(task, None)
            if failure.check(TaskStopped, SchedulerStopped):
                return
            if not done.called:
                done.errback(failure)

        task.whenDone().addCallbacks(finished, failed)
        return done

    def _stopTask(self, task: CooperativeTask[Any]) -> None:
        self._jobs.pop(task, None)
        try:
            task.stop()
        except SchedulerError:
            # Done, failed or stopped already.
            pass

    def stop(self) -> None:
        """
        Stop every job (the backend is closed): each is closed (its
        C{finally} blocks run: an engine's connection is closed, a timer
        cancelled), none of them fires any more, and a job run after this
        fails.
        """
        self._stopped = True
        for task, job in list(self._jobs.items()):
            self._stopTask(task)
            job.close()
        self._cooperator.stop()


def runAtOnce(job: Job[T]) -> T:
    """
    Run C{job}, one that never waits, to its end now (in tests, and for
    small work).

    @raise TypeError: the job waits (yields a Deferred), which nothing
        here would ever fire: it is closed (L{runWaiting} runs such a job).
    """
    while True:
        try:
            waited = next(job)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        if waited is not None:
            job.close()
            raise TypeError(
                f"runAtOnce cannot run a job that waits (it yielded {waited!r}): "
                "use runWaiting or SlicedWork.run"
            )


def runWaiting(job: Job[T]) -> Deferred[T]:
    """
    Run C{job} without slices (for small work off the daemon's requests),
    waiting where it waits: a Deferred of its result; cancelling it closes
    the job (and fails it with C{CancelledError}).
    """
    closing = False

    def cancel(_: Deferred[T]) -> None:
        nonlocal closing
        # What the job waits for may fire while it is being closed (its
        # finally ends a stream whose end wakes it): it is not resumed.
        closing = True
        job.close()

    done: Deferred[T] = Deferred(cancel)

    def step(_: object = None) -> None:
        while not done.called and not closing:
            try:
                waited = next(job)
            except StopIteration as stop:
                done.callback(stop.value)
            except Exception:
                done.errback()
            else:
                if waited is not None:
                    waited.addCallback(step)
                    return

    step()
    return done
