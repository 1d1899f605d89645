"""
Per-container log files that rotate by size (L{FileLogStore}, an
L{ILogStore} on disk): one JSON record a line, one C{os.write} a batch,
a full disk that drops lines instead of taking the daemon down, and no
file opened that pycm did not make (L{openLogFile}).
docs/process-backend.md describes the files.
"""

from __future__ import annotations

import errno
import os
from collections import OrderedDict
from collections.abc import Callable
from json.encoder import encode_basestring_ascii  # type: ignore[attr-defined]

from twisted.logger import Logger
from zope.interface import implementer

from pycm.backends.process.logopen import UnsafeLogFile, openLogFile
from pycm.backends.process.logreading import (
    LogFile,
    closeAll,
    newestLines,
    openSnapshot,
)
from pycm.backends.supervisor.logreads import ISlicedLogStore
from pycm.errors import BackendError
from pycm.model import LogLine
from pycm.slicedwork import Job, runAtOnce
from pycm.statedir import makePrivateDir

MiB = 1024 * 1024
DEFAULT_MAX_SIZE = 10 * MiB
DEFAULT_MAX_FILES = 3
DEFAULT_MAX_OPEN = 64
#: L{FileLogStore.tail} and L{FileLogStore.readNewest} stop once they have
#: read this many bytes of records (keeping the newest): a bound on what one
#: request costs, which the daemon also spreads over reactor turns.
DEFAULT_TAIL_BUDGET = 8 * MiB

#: The C{stream} of the lines the daemon itself adds to a container's log.
PYCM_STREAM = "pycm"

#: Errors that mean the filesystem has no room (for anyone, or for this user).
_NO_ROOM = (errno.ENOSPC, errno.EDQUOT)


def recordPrefix(time: float, stream: str) -> str:
    """A record up to its line: C{{"time":TIME,"stream":STREAM,"line":}}."""
    return f'{{"time":{float(time)!r},"stream":{encode_basestring_ascii(stream)},"line":'


def encodeRecord(logLine: LogLine) -> bytes:
    """One log line as one record (with its newline)."""
    line = encode_basestring_ascii(logLine.line)
    return f"{recordPrefix(logLine.time, logLine.stream)}{line}}}\n".encode("ascii")


def describeWriteError(error: OSError) -> str:
    """
    A short reason for a failed write: C{disk full}, what is wrong with an
    unsafe log file, or what the OS said.
    """
    if isinstance(error, UnsafeLogFile):
        return f"the log file {error.what}"
    if error.errno in _NO_ROOM:
        return "disk full"
    return error.strerror or str(error)


class _OpenLog:
    """
    The descriptor and size of one container's current log file; C{torn}
    when its last record is unfinished (the next write starts a new line).
    """

    __slots__ = ("fd", "size", "torn")

    def __init__(self, fd: int, size: int, torn: bool) -> None:
        self.fd = fd
        self.size = size
        self.torn = torn


class _Dropping:
    """Lines of one container that could not be written, since C{since}."""

    __slots__ = ("count", "since", "reason")

    def __init__(self, since: float, reason: str) -> None:
        self.count = 0
        self.since = since
        self.reason = reason

    def marker(self) -> LogLine:
        """The line that marks the gap in the log."""
        return LogLine(
            time=self.since,
            stream=PYCM_STREAM,
            line=f"[pycm: {self.count} lines dropped: {self.reason}]",
        )


@implementer(ISlicedLogStore)
class FileLogStore:
    """
    Rotating per-container log files in C{directory}.

    @ivar maxSize: a file is rotated before it would grow over this many
        bytes (a single record bigger than that gets a file of its own).
    @ivar maxFiles: how many files are kept per container, current included.
    @ivar tailBudget: the most bytes of records one L{tail} or L{readNewest} reads.
    @param write: writes to a descriptor and returns how much it wrote
        (C{os.write}; tests give one that fails as a full disk does).
    """

    log = Logger()

    def __init__(
        self,
        directory: str,
        maxSize: int = DEFAULT_MAX_SIZE,
        maxFiles: int = DEFAULT_MAX_FILES,
        maxOpen: int = DEFAULT_MAX_OPEN,
        tailBudget: int = DEFAULT_TAIL_BUDGET,
        write: Callable[[int, bytes], int] = os.write,
    ) -> None:
        if maxSize < 1 or maxFiles < 1 or maxOpen < 1:
            raise ValueError("maxSize, maxFiles and maxOpen must be positive")
        self.directory = directory
        self.maxSize = maxSize
        self.maxFiles = maxFiles
        self.maxOpen = maxOpen
        self.tailBudget = tailBudget
        self._write = write
        self._open: OrderedDict[str, _OpenLog] = OrderedDict()
        self._dropping: dict[str, _Dropping] = {}
        try:
            makePrivateDir(directory)
        except OSError as e:
            raise BackendError(f"cannot use log directory {directory}: {e}") from e

    def paths(self, name: str) -> list[str]:
        """C{name}'s log files, newest (the current one) first."""
        current = os.path.join(self.directory, f"{name}.log")
        return [current] + [f"{current}.{i}" for i in range(1, self.maxFiles)]

    def names(self) -> set[str]:
        """The names that have a current log file (C{NAME.log}) here."""
        try:
            entries = os.listdir(self.directory)
        except OSError:
            return set()
        return {entry[: -len(".log")] for entry in entries if entry.endswith(".log")}

    def _get(self, name: str) -> _OpenLog:
        entry = self._open.get(name)
        if entry is not None:
            self._open.move_to_end(name)
            return entry
        # Never a file planted in the state directory; any failure an
        # OSError, which the writers count as dropped lines.
        fd = openLogFile(self.paths(name)[0], os.O_RDWR | os.O_APPEND | os.O_CREAT)
        try:
            size = os.fstat(fd).st_size
            # A crash may have torn the last record: start on a fresh line.
            torn = size > 0 and os.pread(fd, 1, size - 1) != b"\n"
        except OSError:
            os.close(fd)
            raise
        entry = self._open[name] = _OpenLog(fd, size, torn)
        while len(self._open) > self.maxOpen:
            _, old = self._open.popitem(last=False)
            os.close(old.fd)
        return entry

    def prepare(self, name: str) -> None:
        """
        Check C{name}'s current log file, if there is one, before a run
        starts, so that one pycm will not write is refused then rather
        than found as dropped lines later.  Any other failure is left to
        the writers, which drop and count the lines (as on a full disk).
        A file kept open that is no longer the one of that name (deleted,
        or replaced) is closed: the run's lines go to the file named.

        @raise UnsafeLogFile: for a file pycm did not make (L{openLogFile}).
        """
        path = self.paths(name)[0]
        entry = self._open.get(name)
        if entry is not None:
            try:
                named, kept = os.lstat(path), os.fstat(entry.fd)
                if (named.st_dev, named.st_ino) == (kept.st_dev, kept.st_ino):
                    return
            except OSError:
                pass
            self._close(name)
        try:
            os.close(openLogFile(path, os.O_RDONLY))
        except UnsafeLogFile:
            raise
        except OSError:
            pass

    def _close(self, name: str) -> None:
        entry = self._open.pop(name, None)
        if entry is not None:
            os.close(entry.fd)

    def _rotate(self, name: str) -> None:
        self._close(name)
        paths = self.paths(name)
        try:
            os.unlink(paths[-1])
        except FileNotFoundError:
            pass
        for older, newer in zip(reversed(paths[1:]), reversed(paths[:-1])):
            try:
                os.rename(newer, older)
            except FileNotFoundError:
                pass

    def _writeRecord(self, name: str, record: bytes) -> None:
        """
        Write one record to C{name}'s current file, rotating first if it
        would not fit.

        @raise OSError: if it was not wholly written (a part written is
            left torn, and the next record starts on a new line).
        """
        entry = self._get(name)
        if entry.size and entry.size + len(record) > self.maxSize:
            self._rotate(name)
            entry = self._get(name)
        if entry.torn:
            record = b"\n" + record
        written = self._write(entry.fd, record)
        entry.size += written
        entry.torn = written < len(record)
        if entry.torn:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def append(self, name: str, logLine: LogLine) -> None:
        """
        Write one line for C{name}, rotating first if it would not fit; a
        line that cannot be written is dropped and counted (see the module
        docstring), never raised.
        """
        try:
            self._endGap(name)
            self._writeRecord(name, encodeRecord(logLine))
        except OSError as e:
            self._dropped(name, logLine, e)

    def _endGap(self, name: str) -> None:
        """
        If C{name}'s lines were being dropped, write the line that marks
        the gap, and say so.

        @raise OSError: if it cannot be written (the gap goes on).
        """
        dropping = self._dropping.get(name)
        if dropping is None:
            return
        self._writeRecord(name, encodeRecord(dropping.marker()))
        del self._dropping[name]
        self.log.warn(
            "the log of {name} is written again: {count} lines were dropped ({reason})",
            name=name,
            count=dropping.count,
            reason=dropping.reason,
        )

    def appendLines(self, name: str, time: float, stream: str, lines: list[str]) -> None:
        """
        Write C{lines} for C{name}, one record each, all with C{time} and
        C{stream}: what one L{append} per line would write, in one write
        when they fit in the current file (else record by record, rotating
        where one would not fit).  Lines that cannot be written are dropped
        and counted as L{append} does.
        """
        if not lines:
            return
        prefix = recordPrefix(time, stream)
        body = ("}\n" + prefix).join(map(encode_basestring_ascii, lines))
        data = (prefix + body + "}\n").encode("ascii")
        try:
            self._endGap(name)
            entry = self._get(name)
        except OSError as e:
            self._dropped(name, LogLine(time, stream, lines[0]), e, len(lines))
            return
        if entry.size and entry.size + len(data) > self.maxSize:
            for line in lines:
                self.append(name, LogLine(time, stream, line))
            return
        start = 0
        if entry.torn:
            data = b"\n" + data
            start = 1
        error: OSError | None = None
        try:
            written = self._write(entry.fd, data)
        except OSError as e:
            written, error = 0, e
        entry.size += written
        if written < len(data):
            if written:
                entry.torn = data[written - 1] != 0x0A
            done = data.count(b"\n", start, max(written, start))
            if error is None:
                error = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            self._dropped(name, LogLine(time, stream, lines[done]), error, len(lines) - done)
        else:
            entry.torn = False

    def _dropped(self, name: str, logLine: LogLine, error: OSError, count: int = 1) -> None:
        """
        Count a line (or C{count} lines from C{logLine} on) that could not
        be written; say so once per episode.
        """
        dropping = self._dropping.get(name)
        if dropping is None:
            dropping = self._dropping[name] = _Dropping(logLine.time, describeWriteError(error))
            if isinstance(error, UnsafeLogFile):
                # The message names the file and the fix; said once.
                self.log.error(
                    "cannot write the log of {name}: {error}; its lines are dropped "
                    "and counted until then",
                    name=name,
                    error=str(error),
                )
            else:
                said = error.strerror or str(error)
                self.log.error(
                    "cannot write the log of {name}: {reason}; its lines are dropped "
                    "and counted until they can be written again",
                    name=name,
                    reason=dropping.reason
                    if said == dropping.reason
                    else f"{dropping.reason} ({said})",
                )
        dropping.count += count

    def dropped(self, name: str) -> int:
        """How many lines of C{name} are being dropped now (0: none)."""
        dropping = self._dropping.get(name)
        return 0 if dropping is None else dropping.count

    def tail(self, name: str, count: int | None, budget: int | None = None) -> list[LogLine]:
        """
        The last C{count} (None: all kept) lines of C{name}, oldest first:
        L{readNewest} run at once.
        """
        return runAtOnce(self.readNewest(name, count, None, budget))

    def readNewest(
        self, name: str, count: int | None, since: float | None = None, budget: int | None = None
    ) -> Job[list[LogLine]]:
        """
        The last C{count} (None: all kept) lines of C{name} written at or
        after C{since} (None: any), oldest first, as a
        L{pycm.slicedwork.Job}: read from the end of the newest file
        backwards, a block a slice (L{pycm.backends.process.logreading}),
        at most C{budget} bytes of records (default L{tailBudget}), the
        newest kept, so that even C{--tail=all} or a C{--since} that
        matches nothing costs a bounded time.  The files are opened now:
        the lines are those written so far.  While lines are being dropped
        (a full disk), the newest line says so.
        """
        if count is not None and count <= 0:
            return runNothing()
        if budget is None:
            budget = self.tailBudget
        marker = None
        dropping = self._dropping.get(name)
        if dropping is not None and (since is None or dropping.since >= since):
            marker = dropping.marker()
            if count is not None:
                count -= 1
        files = openSnapshot(self.paths(name))
        job = _readFiles(files, count, since, budget, marker)
        # Into its try: closing the job from now on closes the files.
        next(job)
        return job

    def remove(self, name: str) -> None:
        """Delete every log file of C{name}."""
        self._close(name)
        dropping = self._dropping.pop(name, None)
        if dropping is not None:
            self.log.warn(
                "{name} removed: {count} lines of its log had been dropped ({reason})",
                name=name,
                count=dropping.count,
                reason=dropping.reason,
            )
        current = self.paths(name)[0]
        for path in self.paths(name):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        # Files kept under a larger maxFiles of an earlier configuration.
        index = self.maxFiles
        while os.path.exists(f"{current}.{index}"):
            os.unlink(f"{current}.{index}")
            index += 1

    def close(self) -> None:
        """
        Close every open file (the store can still be used after); mark the
        gaps of lines being dropped, where that can be written.
        """
        for name, dropping in list(self._dropping.items()):
            try:
                self._writeRecord(name, encodeRecord(dropping.marker()))
            except OSError:
                pass
            del self._dropping[name]
            self.log.warn(
                "closing the log of {name}: {count} lines were dropped ({reason})",
                name=name,
                count=dropping.count,
                reason=dropping.reason,
            )
        for name in list(self._open):
            self._close(name)


def runNothing() -> Job[list[LogLine]]:
    """A job with no lines."""
    return []
    yield None


def _readFiles(
    files: list[LogFile],
    count: int | None,
    since: float | None,
    budget: int,
    marker: LogLine | None,
) -> Job[list[LogLine]]:
    """L{newestLines} of C{files}, then C{marker} if any; the files closed after."""
    try:
        yield None
        kept = (yield from newestLines(files, count, since, budget)) if count != 0 else []
    finally:
        closeAll(files)
    return kept if marker is None else [*kept, marker]
