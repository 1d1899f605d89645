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

#: The journal's name in the state directory.
JOURNAL_NAME = "ended-runs"

#: What a run id looks like (C{uuid4().hex}); anything else in the file
#: is ignored.
_RUN_ID = re.compile(r"[0-9a-f]{32}\Z")


class MarkJournal:
    """
    An append-only file of run ids, one a line: each is written (one
    C{write}, in the kernel's page cache: it outlives a kill -9 of the
    daemon, and a power loss kills every process it could name) before the
    run's exit is told; the file is emptied once the look for them is done.

    @param path: the file (made 0600, never through a symbolic link, only
        a regular file).
    """

    log = Logger()

    def __init__(self, path: str) -> None:
        self.path = path
        # A link, a FIFO or a device where it goes: an OSError.
        self._fd = openNoFollow(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, checkOwner=False)
        #: What the previous daemon left, read once at open.
        self.left: list[str] = self._read()
        #: Lines written since the file was last emptied.
        self._written = 0

    def _read(self) -> list[str]:
        chunks = []
        while True:
            chunk = os.read(self._fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
        ids = []
        for line in b"".join(chunks).decode("ascii", "replace").splitlines():
            if _RUN_ID.match(line) and line not in ids:
                ids.append(line)
        return ids

    def add(self, runId: str) -> bool:
        """Write C{runId}; False if it could not be (a full disk...)."""
        if self._fd < 0 or not _RUN_ID.match(runId):
            return False
        try:
            written = os.write(self._fd, f"{runId}\n".encode("ascii"))
        except OSError as e:
            self.log.warn("cannot write {path}: {error}", path=self.path, error=e.strerror)
            return False
        if written != len(runId) + 1:
            return False
        self._written += 1
        return True

    def clear(self) -> None:
        """
        Every id written is looked for already: empty the file (truncated
        at once: a kill -9 leaves it either whole or empty).
        """
        if self._fd < 0 or (not self._written and not self.left):
            return
        try:
            os.ftruncate(self._fd, 0)
        except OSError as e:
            self.log.warn("cannot empty {path}: {error}", path=self.path, error=e.strerror)
            return
        self.left = []
        self._written = 0

    def close(self) -> None:
        """Close the file (what it names stays for the next daemon)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
