"""
C{logs} and the backlog of C{logs --follow} for the supervisor
(L{LogReads}): a store that can (L{ISlicedLogStore}, the process
backend's files) is read a slice at a time between the daemon's other
work, so that a client asking for megabytes of log (or for a C{--since}
that scans them) holds up no one else.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, fail, maybeDeferred
from twisted.internet.interfaces import IReactorTime

from pycm.backends.supervisor.watching import follow, tailLog
from pycm.interfaces import ILogStore
from pycm.model import LogFollow, LogLine
from pycm.slicedwork import Job, SlicedWork, runAtOnce

if TYPE_CHECKING:
    from pycm.backends.supervisor.records import Record


class ISlicedLogStore(ILogStore):
    """A log store whose reads can be done a slice at a time."""

    def readNewest(name, count, since=None):
        """
        What C{tail(name, count)} gives, only the lines written at or after
        C{since} (a POSIX time, None: any), C{count} counting among those.

        @return: a L{pycm.slicedwork.Job} of that list (oldest first), of
            the lines written when it was called.
        """


def _readNow(lines: list[LogLine]) -> Job[list[LogLine]]:
    """A job whose result is C{lines}, read already."""
    return lines
    yield None


def readLog(
    logStore: ILogStore, name: str, tail: int | None, since: float | None
) -> Job[list[LogLine]]:
    """
    A job reading the last C{tail} lines (None: all) of C{name}'s log
    since C{since}: as the store reads them, a slice at a time
    (L{ISlicedLogStore}), or else at once (they are in memory).  What is
    read is what was written when this was called.
    """
    if tail is not None and tail <= 0:
        return _readNow([])
    if ISlicedLogStore.providedBy(logStore):
        return logStore.readNewest(name, tail, since)  # type: ignore[attr-defined, no-any-return]
    return _readNow(tailLog(logStore, name, tail, since))


class LogReads:
    """
    Reads the supervisor's logs for C{logs} and C{logs --follow}: a slice
    at a time (L{SlicedWork}) on C{clock} from an L{ISlicedLogStore}, at
    once (the Deferreds have fired) from another store.
    """

    def __init__(self, clock: IReactorTime, logStore: ILogStore) -> None:
        self._logStore = logStore
        self._slices = SlicedWork(clock)
        self._sliced = ISlicedLogStore.providedBy(logStore)

    def _run(self, job: Job[list[LogLine]]) -> Deferred[list[LogLine]]:
        if self._sliced:
            return self._slices.run(job)
        return maybeDeferred(runAtOnce, job)

    def logs(self, name: str, tail: int | None, since: float | None) -> Deferred[list[LogLine]]:
        """
        The lines, as L{pycm.interfaces.IContainerBackend.logs} says;
        cancelling the Deferred stops the reading.
        """
        try:
            job = readLog(self._logStore, name, tail, since)
        except Exception:
            # A file the store refuses to open, say: the request fails.
            return fail()
        return self._run(job)

    def follow(
        self,
        record: Record,
        tail: int | None,
        observer: Callable[[LogLine], None],
        since: float | None,
        ends: bool,
    ) -> Deferred[LogFollow]:
        """
        Follow C{record}'s log (as L{pycm.interfaces.IContainerBackend.follow}
        says): its backlog read a slice at a time from what was written
        now, the lines written while it is read added to its end, then
        C{observer} called with each new line.  Cancelling the Deferred
        (or a failed read) stops the reading and the following.
        """
        job = readLog(self._logStore, name=record.name, tail=tail, since=since)
        during: list[LogLine] | None = []

        def observe(line: LogLine) -> None:
            if during is None:
                observer(line)
            else:
                during.append(line)

        ended, cancel = follow(record, observe, ends)

        def read(backlog: list[LogLine]) -> LogFollow:
            nonlocal during
            newer, during = during or [], None
            return LogFollow([*backlog, *newer], ended, cancel)

        def failed(failure: Any) -> Any:
            cancel()
            return failure

        return self._run(job).addCallbacks(read, failed)

    def stop(self) -> None:
        """The backend is closed: no read goes on."""
        self._slices.stop()
