"""
C{rm} for the supervisor (L{Removal}): a container forgotten once stopped
(C{--force}: killed first), its logs removed, the removal durable before
it is answered.
"""

from __future__ import annotations

import signal as _signal

from twisted.internet.defer import Deferred, fail
from twisted.logger import Logger

from pycm.backends.supervisor.healthmonitor import HealthChecks
from pycm.backends.supervisor.lifecycle import Event, Lifecycle
from pycm.backends.supervisor.records import Record, RecordBook
from pycm.backends.supervisor.runs import Runs
from pycm.backends.supervisor.watching import waitForExit
from pycm.errors import Conflict, NotFound
from pycm.interfaces import ILogStore
from pycm.model import Container, State


class Removal:
    """Removes containers from C{book}: see L{remove}."""

    _log = Logger()

    def __init__(
        self,
        book: RecordBook,
        runs: Runs,
        lifecycle: Lifecycle,
        health: HealthChecks,
        logStore: ILogStore,
    ) -> None:
        self._book = book
        self._runs = runs
        self._lifecycle = lifecycle
        self._health = health
        self._logStore = logStore

    def remove(self, name: str, force: bool) -> Deferred[Container | None]:
        """
        Forget C{name}'s container, refused while it runs or restarts
        unless C{force} (then it is killed, and forgotten once it exited).
        """
        try:
            record = self._book.lookup(name)
        except NotFound as e:
            return fail(e)
        if force:
            self._forceKill(record)
        return record.lock.run(self._removeLocked, record, force)

    def _forceKill(self, record: Record) -> None:
        """The immediate half of C{remove --force}."""
        if record.state == State.RESTARTING:
            self._runs.cancelRestart(record)
            self._lifecycle.dropRestart(record, byClient=True)
        elif record.state in State.ALIVE and record.run is not None:
            self._health.end(record)
            self._lifecycle.removeAsked(record)
            self._runs.signal(record, _signal.SIGKILL)

    def _removeLocked(self, record: Record, force: bool) -> Deferred[Container | None]:
        self._book.checkCurrent(record)
        if record.state in State.ALIVE or record.state == State.RESTARTING:
            if not force:
                raise Conflict(
                    f"cannot remove container {record.name}: it is {record.state};"
                    " stop it first or use --force"
                )
            self._forceKill(record)
            if record.state in State.ALIVE:
                d = waitForExit(record)

                def exited(_: Container) -> Deferred[Container | None]:
                    return self._destroy(record)

                return d.addCallback(exited)
        return self._destroy(record)

    def _destroy(self, record: Record) -> Deferred[Container | None]:
        """
        Forget C{record}.

        @return: fires, once the removal is durable, with None, or with the
            container as it was if its removal is not saved yet (C{saved}
            False).
        """
        self._book.checkCurrent(record)
        self._book.forget(record)
        try:
            self._logStore.remove(record.name)
        except Exception:
            # The container is gone; its stray log files must not make the
            # removal half-fail.
            self._log.failure("removing the logs of {name}", name=record.name)
        self._lifecycle.move(record, Event.REMOVED)
        d = self._book.commits.whenDurable(record)
        return d.addCallback(lambda r: r.toContainer() if r.unsaved else None)
