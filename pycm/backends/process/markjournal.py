"""
The run ids whose marker sweep is still to come (L{MarkJournal}): a run
whose exit is told before the look at C{/proc} for its marker leaves its id
here first, so that a daemon killed before that look leaves it to the next
daemon's sweep even once the run's record is gone or names a newer run.
"""

from __future__ import annotations

import os
import re

from twisted.logger import Logger

from pycm.statedir import openNoFollow

#: Writes bytes to a descriptor (C{os.write}; a fake in tests, where a
#: short write on a full disk cannot be made for real).
_write = os.write

#: The journal's name in the state directory.
JOURNAL_NAME = "ended-runs"

#: What a run id looks like (C{uuid4().hex}); anything else in the file
#: is ignored.
_RUN_ID = re.compile(r"[0-9a-f]{32}\Z")

#: The most of the file read at open: 4 MiB, some 120,000 records (34 bytes
#: each), where a healthy journal holds the runs that ended since the last
#: look that worked.  What lies past it is taken as damaged (ignored, and
#: emptied with the rest), never read into memory.
MAX_READ = 4 * 1024 * 1024


class MarkJournal:
    """
    An append-only file of run ids, one a line: each is written (one
    C{write}, in the kernel's page cache: it outlives a kill -9 of the
    daemon, and a power loss kills every process it could name) before the
    run's exit is told; the file is emptied once the look for them is done.

    Each record is a newline, the id and a newline: what a short write on a
    full disk leaves (part of a record, no newline after it) is a line of
    its own, so the next id is still read; only whole lines that are run
    ids are read.

    @param path: the file (made 0600, never through a link, only a regular
        file of this user's with one name, as every state file).
    @raise pycm.statedir.UnsafeStateDir: for a link, a file of another user
        or with another name, or one that is not a regular file (also an
        C{OSError}: L{pycm.statedir.NotRegularFile}).
    @raise OSError: if it cannot be opened otherwise.
    """

    log = Logger()

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd = openNoFollow(path, os.O_RDWR | os.O_APPEND | os.O_CREAT)
        #: Whether the file may hold anything (read at open, any write
        #: since it was last emptied, even one that failed).
        self._held = False
        #: What the previous daemon left, read once at open.
        self.left: list[str] = self._read()

    def _read(self) -> list[str]:
        """
        The run ids of the whole lines of the file's first L{MAX_READ}
        bytes (a larger file is named in a warning: what is past them is
        damaged, ignored as any line that is not a run id).
        """
        size = os.fstat(self._fd).st_size
        if size > MAX_READ:
            self.log.warn(
                "{path} is {size} bytes, more than the {most} of a healthy journal:"
                " only its first {most} bytes are read, the rest is taken as damaged"
                " (emptied once the look for the ids read is done)",
                path=self.path,
                size=size,
                most=MAX_READ,
            )
        chunks = []
        left = MAX_READ
        while left > 0:
            chunk = os.read(self._fd, min(left, 65536))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
            self._held = True
        # The last piece has no newline after it: a record cut short.
        whole = b"".join(chunks).decode("ascii", "replace").split("\n")[:-1]
        return list(dict.fromkeys(line for line in whole if _RUN_ID.match(line)))

    def add(self, runId: str) -> bool:
        """Write C{runId}; False if it could not be (a full disk...)."""
        if self._fd < 0 or not _RUN_ID.match(runId):
            return False
        record = f"\n{runId}\n".encode("ascii")
        self._held = True
        try:
            written = _write(self._fd, record)
        except OSError as e:
            self.log.warn("cannot write {path}: {error}", path=self.path, error=e.strerror)
            return False
        if written != len(record):
            # What was written is a line of its own before the next record.
            self.log.warn("cannot write {path}: short write", path=self.path)
            return False
        return True

    def clear(self) -> None:
        """
        Every id written is looked for already: empty the file (truncated
        at once: a kill -9 leaves it either whole or empty).
        """
        if self._fd < 0 or not self._held:
            return
        try:
            os.ftruncate(self._fd, 0)
        except OSError as e:
            self.log.warn("cannot empty {path}: {error}", path=self.path, error=e.strerror)
            return
        self.left = []
        self._held = False

    def close(self) -> None:
        """Close the file (what it names stays for the next daemon)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
