"""
Writes container records to an L{IRecordStore}, and keeps in memory what
cannot be written yet (a full disk), writing it as soon as it can.

Two kinds of write (see the State section of the README):
  - L{RecordWriter.saveNow} must reach the disk before anything is done:
    a new container, or the marker of a run about to be started.  It
    raises when it cannot, and nothing is kept.
  - L{RecordWriter.save} and L{RecordWriter.delete} record a change that
    is already done (a container stopped, killed or removed): if the
    store refuses it, the newest change of each container is kept in
    memory and written again every L{RETRY_INTERVAL} seconds, and before
    any later write, until it is written.  The daemon's log says so once
    when that starts and once, with the count, when it is all written.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from pycm.errors import BackendError, PycmError
from pycm.interfaces import IRecordStore
from pycm.retrying import RETRY_INTERVAL as RETRY_INTERVAL
from pycm.retrying import Retry

#: What waits for a container: its record, or None for its removal.
Change = dict[str, Any] | None


class RecordWriter:
    """
    See the module docstring.

    @param clock: schedules the retries.
    @param store: where records go.
    @param written: called with the names whose changes reached the store
        after waiting.
    @ivar error: why the last write failed, while changes wait (else None).
    """

    log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        store: IRecordStore,
        written: Callable[[list[str]], None] = lambda names: None,
    ) -> None:
        self._store = store
        self._written = written
        self._waiting: dict[str, Change] = {}
        self._retry = Retry(clock, self.flush)
        #: The containers whose changes waited, this episode.
        self._waited: set[str] = set()
        self.error: str | None = None

    def waiting(self, name: str) -> bool:
        """Whether a change of C{name} waits to be written."""
        return name in self._waiting

    @property
    def waitingCount(self) -> int:
        """How many containers have a change waiting."""
        return len(self._waiting)

    def _apply(self, name: str, change: Change) -> None:
        """
        @raise BackendError: if the store refused it.
        """
        try:
            if change is None:
                self._store.delete(name)
            else:
                self._store.save(name, change)
        except PycmError as e:
            raise BackendError(str(e)) from e
        except Exception as e:
            raise BackendError(f"could not save container {name}: {e}") from e

    def saveNow(self, name: str, record: dict[str, Any]) -> None:
        """
        Write C{record} now; on success it replaces whatever of C{name}
        waited.

        @raise BackendError: if it could not be written (nothing is kept).
        """
        self._apply(name, record)
        self._waiting.pop(name, None)
        self.flush()

    def save(self, name: str, record: dict[str, Any]) -> bool:
        """Write C{record}, or keep it to write later; True if written."""
        return self._change(name, record)

    def delete(self, name: str) -> bool:
        """Forget C{name}'s record, or keep that to do later; True if done."""
        return self._change(name, None)

    def _change(self, name: str, change: Change) -> bool:
        self._waiting.pop(name, None)
        try:
            self._apply(name, change)
        except BackendError as e:
            self._wait(name, change, e)
            return False
        self.flush()
        return True

    def _wait(self, name: str, change: Change, error: BackendError) -> None:
        if self.error is None:
            self.log.error(
                "cannot save container records: {error}; changes are kept in memory "
                "and written when the state directory can be written again",
                error=str(error),
            )
        self.error = str(error)
        self._waited.add(name)
        self._waiting[name] = change
        self._retry.schedule()

    def flush(self) -> bool:
        """Write what waits, in turn; True once nothing waits."""
        done: list[str] = []
        try:
            for name, change in list(self._waiting.items()):
                try:
                    self._apply(name, change)
                except BackendError as e:
                    self.error = str(e)
                    self._retry.schedule()
                    return False
                del self._waiting[name]
                done.append(name)
        finally:
            if done:
                self._written(done)
        if self.error is not None:
            self.log.warn(
                "container records are written again: changes of {count} containers had waited",
                count=len(self._waited),
            )
            self.error = None
            self._waited = set()
        return True

    def close(self) -> None:
        """Stop retrying, after a last try; say what is lost."""
        if not self._retry.lastTry():
            self.log.error(
                "{count} container changes could not be saved before the daemon "
                "stopped ({error}): {names}",
                count=len(self._waiting),
                error=self.error,
                names=sorted(self._waiting),
            )
