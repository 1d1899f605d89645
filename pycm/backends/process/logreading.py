"""
Reading a container's log files for C{logs}: the newest lines first,
backwards from the end of the newest file, a block at a time
(L{newestLines}), so that C{--tail=N} reads about N lines whatever the
size of the files, and a scan (C{--since}, C{--tail=all}) stops at a byte
budget.  The work is a L{pycm.slicedwork.Job}: the daemon runs it a slice
at a time between other connections' requests.  Pure functions of open
files: the store opens them (L{openSnapshot}).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from typing import BinaryIO

from pycm.backends.process.logopen import openLogFile
from pycm.model import LogLine
from pycm.slicedwork import Job

#: Bytes read at once, and between two slices of the work.
BLOCK = 64 * 1024

_TIME_PREFIX = b'{"time":'


class LogFile:
    """
    One log file open for reading, and how much of it there was when it
    was opened: lines written after that are not read (a follower gets
    them), so the files seen are those of one moment.
    """

    __slots__ = ("file", "size")

    def __init__(self, file: BinaryIO, size: int) -> None:
        self.file = file
        self.size = size

    def close(self) -> None:
        self.file.close()


def openSnapshot(paths: Sequence[str]) -> list[LogFile]:
    """
    The files at C{paths} that exist, open and measured now, in the same
    order: opened together (one reactor turn), so that a rotation after
    this neither hides lines nor shows them twice.  Never a file pycm did
    not make (L{openLogFile}): a link planted in the state directory would
    hand another file's content to the client.
    """
    files: list[LogFile] = []
    try:
        for path in paths:
            try:
                fd = openLogFile(path, os.O_RDONLY)
            except FileNotFoundError:
                continue
            f = os.fdopen(fd, "rb")
            files.append(LogFile(f, os.fstat(fd).st_size))
    except BaseException:
        closeAll(files)
        raise
    return files


def closeAll(files: Sequence[LogFile]) -> None:
    for f in files:
        f.close()


def decodeRecord(record: bytes) -> LogLine | None:
    """The log line of a record (without its newline), None if damaged."""
    try:
        value = json.loads(record)
        return LogLine(time=float(value["time"]), stream=str(value["stream"]), line=value["line"])
    except (ValueError, KeyError, TypeError):
        return None


def recordTime(record: bytes) -> float | None:
    """
    The time of a record as the store writes it (C{{"time":T,...}}),
    without decoding the rest; None if it does not start so.
    """
    if not record.startswith(_TIME_PREFIX):
        return None
    end = record.find(b",", len(_TIME_PREFIX))
    try:
        return float(record[len(_TIME_PREFIX) : end])
    except ValueError:
        return None


def reversedBlocks(log: LogFile, blockSize: int = BLOCK) -> Iterator[list[bytes]]:
    """
    The non-empty lines of C{log} up to its size when opened, last first,
    a block's worth at a time (each list last first): the cost is what is
    read, not the size of the file.
    """
    f = log.file
    position = log.size
    rest = b""
    while position > 0:
        step = min(blockSize, position)
        position -= step
        f.seek(position)
        pieces = (f.read(step) + rest).split(b"\n")
        rest = pieces[0]
        yield [piece for piece in reversed(pieces[1:]) if piece]
    if rest:
        yield [rest]


def newestLines(
    files: Sequence[LogFile],
    count: int | None,
    since: float | None,
    budget: int,
    blockSize: int = BLOCK,
) -> Job[list[LogLine]]:
    """
    The last C{count} (None: all) lines of C{files} (newest file first)
    written at or after C{since} (None: any), oldest first; reading stops
    once C{budget} bytes of records are read (the newest are kept).  A
    damaged record is skipped.  Yields before each block but the first.

    With C{since}, a record's time is read from its start, and only those
    at or after C{since} are decoded.
    """
    lines: list[LogLine] = []
    if count is not None and count <= 0:
        return lines
    used = 0
    first = True
    for log in files:
        for block in reversedBlocks(log, blockSize):
            if not first:
                yield None
            first = False
            for record in block:
                used += len(record) + 1
                if used > budget:
                    lines.reverse()
                    return lines
                if since is not None:
                    time = recordTime(record)
                    if time is not None and time < since:
                        continue
                line = decodeRecord(record)
                if line is None or (since is not None and line.time < since):
                    continue
                lines.append(line)
                if count is not None and len(lines) >= count:
                    lines.reverse()
                    return lines
    lines.reverse()
    return lines
