"""
Writes container records to an L{IRecordStore}, and keeps in memory what
cannot be written yet (a full disk), writing it as soon as it can.

Writes are group commits (L{pycm.groupcommit}): a write is queued, and the
writes of one reactor turn reach the store together, in one transaction
when the store has C{saveMany} (L{pycm.store.SQLiteStore}), at the end of
the turn (or at once, with an immediate group).

Two kinds of write (see the State section of the README):
  - L{RecordWriter.saveNow} must reach the disk before anything is done:
    a new container, or the marker of a run about to be started.  Its
    Deferred fires once the record is written, or fails (and nothing is
    kept) when it cannot be.
  - L{RecordWriter.save} and L{RecordWriter.delete} record a change that
    is already done (a container stopped, killed or removed): if the
    store refuses it, the newest change of each container is kept in
    memory and written again every L{RETRY_INTERVAL} seconds, and with
    any later write, until it is written.  The daemon's log says so once
    when that starts and once, with the count, when it is all written.
    Whether each was written is told to C{outcome}, before the callbacks
    of the group run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from pycm.errors import BackendError, PycmError
from pycm.groupcommit import GroupCommit
from pycm.interfaces import IRecordStore
from pycm.retrying import RETRY_INTERVAL as RETRY_INTERVAL
from pycm.retrying import Retry

#: What waits for a container: its record (or a function giving its newest
#: form when it is written), or None for its removal.
Change = dict[str, Any] | Callable[[], dict[str, Any]] | None


class _NowWrite:
    """The outcome of one L{RecordWriter.saveNow}: None until written."""

    __slots__ = ("error", "done")

    def __init__(self) -> None:
        self.error: BackendError | None = None
        self.done = False


def _resolve(change: Change) -> dict[str, Any] | None:
    return change() if callable(change) else change


class RecordWriter:
    """
    See the module docstring.

    @param clock: schedules the retries.
    @param store: where records go.
    @param outcome: called with a name and whether its change reached the
        store (False: it waits, on a full disk).
    @param commits: the group of writes this one joins (default: an
        immediate one of its own, every write done when the call returns).
    @ivar error: why the last write failed, while changes wait (else None).
    """

    log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        store: IRecordStore,
        outcome: Callable[[str, bool], None] = lambda name, ok: None,
        commits: GroupCommit | None = None,
    ) -> None:
        self._store = store
        self._outcome = outcome
        self.commits = commits if commits is not None else GroupCommit(clock, immediate=True)
        self.commits.addJournal(self._commit)
        #: Changes that failed, kept to be written again.
        self._waiting: dict[str, Change] = {}
        #: Changes queued this turn.
        self._queued: dict[str, Change] = {}
        #: saveNow writes queued this turn, and who waits for each.
        self._now: dict[str, tuple[Change, list[_NowWrite]]] = {}
        self._retry = Retry(clock, self.flush)
        #: The containers whose changes waited, this episode.
        self._waited: set[str] = set()
        self.error: str | None = None

    def waiting(self, name: str) -> bool:
        """Whether a change of C{name} waits to be written (a full disk)."""
        return name in self._waiting

    @property
    def waitingCount(self) -> int:
        """How many containers have a change waiting."""
        return len(self._waiting)

    def _applyMany(self, changes: list[tuple[str, dict[str, Any] | None]]) -> None:
        """
        Write C{changes}: in one transaction if the store can.

        @raise BackendError: if the store refused them.
        """
        saveMany = getattr(self._store, "saveMany", None)
        try:
            if saveMany is not None:
                saveMany(changes)
                return
            for name, change in changes:
                if change is None:
                    self._store.delete(name)
                else:
                    self._store.save(name, change)
        except PycmError as e:
            raise BackendError(str(e)) from e
        except Exception as e:
            names = ", ".join(name for name, _ in changes)
            raise BackendError(f"could not save container {names}: {e}") from e

    def saveNow(self, name: str, record: Change) -> Deferred[None]:
        """
        Write C{record} before anything is done that needs it; on success
        it replaces whatever of C{name} waited.

        @return: fires once it is written; fails with L{BackendError} if it
            could not be (nothing is kept).
        """
        write = _NowWrite()
        writes = self._now.setdefault(name, (record, []))[1]
        self._now[name] = (record, writes)
        writes.append(write)
        self.commits.changed()
        d: Deferred[None] = Deferred()
        self.commits.later(self._settle, d, write)
        return d

    @staticmethod
    def _settle(d: Deferred[None], write: _NowWrite) -> None:
        if write.error is not None:
            d.errback(write.error)
        elif write.done:
            d.callback(None)
        else:
            d.errback(BackendError("the record was not written (the daemon is stopping)"))

    def save(self, name: str, record: Change) -> None:
        """Write C{record}, or keep it to write later (see C{outcome})."""
        self._queued[name] = record
        self.commits.changed()

    def delete(self, name: str) -> None:
        """Forget C{name}'s record, or keep that to do later."""
        self._queued[name] = None
        self.commits.changed()

    def _commit(self) -> None:
        """The group's journal: write what is queued and what waits, at once."""
        if not (self._queued or self._now or self._waiting):
            return
        changes = {**self._waiting, **self._queued}
        now, self._queued, self._now = self._now, {}, {}
        everything = dict(changes)
        everything.update((name, change) for name, (change, _) in now.items())
        try:
            self._applyMany([(name, _resolve(c)) for name, c in everything.items()])
        except BackendError as e:
            for _, writes in now.values():
                for write in writes:
                    write.error = e
            # Nothing of a saveNow is kept: what waited before it still waits.
            self._waiting = changes
            for name in changes:
                self._outcome(name, False)
            if changes:
                self._wait(e, changes)
            return
        for _, writes in now.values():
            for write in writes:
                write.done = True
        self._waiting = {}
        for name in everything:
            self._outcome(name, True)
        if self.error is not None:
            self.log.warn(
                "container records are written again: changes of {count} containers had waited",
                count=len(self._waited),
            )
            self.error = None
            self._waited = set()

    def _wait(self, error: BackendError, changes: dict[str, Change]) -> None:
        if self.error is None:
            self.log.error(
                "cannot save container records: {error}; changes are kept in memory "
                "and written when the state directory can be written again",
                error=str(error),
            )
        self.error = str(error)
        self._waited.update(changes)
        self._retry.schedule()

    def flush(self) -> bool:
        """Write what is queued or waits, now; True once nothing waits."""
        self.commits.flush()
        return not self._waiting

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
