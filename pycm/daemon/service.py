"""
The daemon as a twistd service, L{PycmService}: it binds its listeners
before the backend opens, opens the backend, then listens and writes the
listeners file; on stop it stops listening and refuses new requests, closes
the backend (which stops its containers) while the connections see it
happen, then closes the connections, stores the waiting events and
releases the state directory's lock.  A backend that cannot open ends the
process with status 1.
"""

from __future__ import annotations

import atexit
import json
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.error import CannotListenError
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

import pycm
from pycm.daemon.gonewatch import watchGoneClients
from pycm.daemon.listeners import InsecureListener, boundListener, describeAddress
from pycm.daemon.notify import SystemdNotifier
from pycm.daemon.session import DaemonState
from pycm.daemon.startup import StartupReport
from pycm.daemon.stopping import (
    backendCloseBound,
    closeBackendWithin,
    closeConnections,
    refuseRequests,
)
from pycm.files import replacePrivately

if TYPE_CHECKING:
    from pycm.statelock import StateDirLock


class PycmService(MultiService):
    """
    The daemon: opens the backend, then starts listening; on stop, stops
    listening, closes the backend (which stops its containers), then the
    connections (L{stopService}).

    @param whenReady: called once the daemon is ready (twistd's path
        passes L{freezeStartupObjects}).
    @param notifier: tells systemd (L{pycm.daemon.notify}); none: nothing is
        told.
    """

    log = Logger()

    def __init__(
        self,
        reactor: Any,
        state: DaemonState,
        closers: list[Any],
        report: StartupReport | None = None,
        stateLock: StateDirLock | None = None,
        whenReady: Callable[[], None] = lambda: None,
        listenersFile: str | None = None,
        notifier: SystemdNotifier | None = None,
        tokenFile: str | None = None,
        listenersCopy: str | None = None,
    ) -> None:
        super().__init__()
        self._notifier = notifier or SystemdNotifier(reactor, None)
        self._whenReady = whenReady
        self._listenersFile = listenersFile
        #: Named in each listener's record (the path, never the token).
        self._tokenFile = tokenFile
        #: Where a daemon on another state directory than its user's default
        #: copies its listeners file (L{pycm.statepaths.otherDaemonEntry}).
        self._listenersCopy = listenersCopy
        self._reactor = reactor
        self._state = state
        self.backend = state.backend
        self._closers = closers
        self._report = report if report is not None else StartupReport()
        self._stateLock = stateLock
        self.ready: Deferred[None] = Deferred()
        #: The backend could not open; the process exits with status 1.
        self.failed = False
        #: Closes the connections whose client went while served (once ready).
        self._goneWatch: LoopingCall | None = None

    def startService(self) -> None:
        Service.startService(self)
        # A crashed daemon's file never outlives this start.
        self._removeListenersFile()
        self.log.info(
            "pycm {version} starting on the {backend} backend",
            version=pycm.__version__,
            backend=self.backend.name,
        )
        self._notifier.startWatchdog()
        self._report.takeStopSignals(self._reactor)
        d = maybeDeferred(self.backend.open)
        d.addCallback(self._listen)
        d.addErrback(self._failedToOpen)

    def _listen(self, _: object) -> None:
        for child in self:
            child.startService()
        self._goneWatch = watchGoneClients(self._reactor, self._state.open)
        self._writeListenersFile()
        self._state.setReady()
        self._whenReady()
        self.log.info("pycm is ready")
        self._report.ready()
        self._notifier.ready(self._readyStatus())
        self.ready.callback(None)

    def _readyStatus(self) -> str:
        """The status systemd shows once ready: where it listens, which backend."""
        addresses = [
            describeAddress(child.port)
            for child in self
            if getattr(child, "port", None) is not None
        ]
        where = ", ".join(addresses) or "no listener"
        return f"ready: listening on {where} ({self.backend.name} backend)"

    def _failedToOpen(self, failure: Any) -> None:
        """
        The backend could not open: stop listening, close the connections
        that were waiting for it, and end the process with status 1 (never
        a daemon that listens but cannot answer).
        """
        self.log.failure(
            "the {backend} backend could not start; pycm is stopping (exit status 1)",
            failure,
            backend=self.backend.name,
        )
        self._stopListening()
        self._state.setFailed()
        self.failed = True
        self._report.failed(
            f"the {self.backend.name} backend could not start: {failure.getErrorMessage()}"
        )
        self._notifier.status(f"failed: the {self.backend.name} backend could not start")
        self.ready.errback(failure)
        self.ready.addErrback(lambda _: None)
        # Before the reactor runs (the open failed at once, inside twistd's
        # start-up) reactor.stop() would raise and be lost, and the daemon
        # would run for ever: stop once it runs.
        self._reactor.addSystemEventTrigger("after", "shutdown", _exitAtExit, 1)
        self._reactor.callWhenRunning(self._reactor.stop)

    def _stopListening(self) -> None:
        self._removeListenersFile()
        for child in self:
            port = getattr(child, "port", None)
            if port is not None:
                child.port = None
                port.stopListening()

    def _writeListenersFile(self) -> None:
        """
        Write the listeners file (each TCP and TLS listener as bound, and
        whether it wants the token): the client sends the token it finds
        beside it only to those that do.
        """
        if self._listenersFile is None:
            return
        records = []
        for child in self:
            listener = getattr(child, "listener", None)
            if listener is not None:
                record = boundListener(listener, getattr(child, "port", None))
                if record is not None:
                    if self._tokenFile is not None and record["token"]:
                        record["token_file"] = self._tokenFile
                    records.append(record)
        data = json.dumps(records).encode() + b"\n"
        # A copy only serves a client looking for a token to send.
        copy = self._listenersCopy if any(r["token"] for r in records) else None
        for path in filter(None, (self._listenersFile, copy)):
            try:
                if path == copy:
                    os.makedirs(os.path.dirname(path), 0o700, exist_ok=True)
                    _dropStaleCopies(path, records)
                replacePrivately(path, data)
            except OSError as e:
                self.log.error(
                    "cannot write {path} ({error}): clients will not send the token they "
                    "find in the token file",
                    path=path,
                    error=e,
                )

    def _removeListenersFile(self) -> None:
        for path in filter(None, (self._listenersFile, self._listenersCopy)):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError as e:
                self.log.warn("cannot remove {path}: {error}", path=path, error=e)

    def privilegedStartService(self) -> None:
        """
        Runs in the daemon, after twistd's fork: take twistd's start-up
        report over and record the daemon's pid in the state directory's
        lock.  Then bind every listener, before the backend opens: a port in
        use or an insecure listener stops twistd with its reason on stderr
        and a non-zero status.  Connections made before the backend is open
        wait (the protocol does not read them until the daemon is ready).
        """
        self._report.daemonized()
        if self._stateLock is not None:
            self._stateLock.recordHolder()
        for child in self:
            try:
                child.privilegedStartService()
            except (CannotListenError, InsecureListener, OSError) as e:
                self._stopListening()
                self._refuse(_cannotListen(child, e))

    def _refuse(self, reason: str) -> None:
        """Stop before the reactor runs: tell why, exit 1."""
        self.log.error("pycm cannot start: {reason}", reason=reason)
        self._report.failed(reason)
        self._runClosers(None)
        raise SystemExit(1)

    def _closeEvents(self, result: object) -> object:
        """Store the events that wait (a full disk), while the store is open."""
        self._state.events.close()
        return result

    def _runClosers(self, result: object) -> object:
        # Last opened, first closed: the lock is released last.
        for closer in reversed(self._closers):
            closer()
        return result

    def stopService(self) -> Deferred[Any]:
        """
        Stop as a supervisor does (L{pycm.daemon.stopping}): stop listening
        and refuse every request not yet started; close the backend (its
        containers stopped, within L{backendCloseBound}) while subscribers
        get the shutdown's events and requests in flight their replies;
        then let go of every connection; then store the waiting events and
        run the closers (the lock last).
        """
        if self._report.outcome is None:
            # Stopped (a signal) while the backend was opening: twistd
            # exits by that signal.
            self._report.failed("pycm was stopped before it was ready")
        self._notifier.stopping()
        self._removeListenersFile()
        if self._goneWatch is not None and self._goneWatch.running:
            self._goneWatch.stop()
        stopping = super().stopService()
        # No new connection now, and no new request on those open (nor
        # left by a client that went).
        self._state.refusing = True
        refuseRequests(self._state.open)
        stopping.addBoth(self._closeBackend)
        # Only then: each connection gets its last line and closes, before
        # the reactor drops them.
        stopping.addBoth(lambda _: closeConnections(self._state.open, self._reactor))
        stopping.addBoth(self._closeEvents)
        stopping.addBoth(self._runClosers)
        stopping.addErrback(
            lambda failure: self.log.failure("error while stopping", failure)
        )
        stopping.addBoth(self._stopWatchdog)
        return stopping

    def _closeBackend(self, _: object) -> Deferred[None]:
        """
        Close the backend (it stops its containers); fires once it is
        closed, or after L{backendCloseBound} seconds whatever it does.
        """
        bound = backendCloseBound(self.backend)

        def late() -> None:
            self.log.warn(
                "the {backend} backend has not closed within {seconds:g} seconds: "
                "closing the connections and stopping without it",
                backend=self.backend.name,
                seconds=bound,
            )

        return closeBackendWithin(
            self.backend.close,
            self._reactor,
            bound,
            lambda failure: self.log.failure(
                "error while closing the {backend} backend", failure, backend=self.backend.name
            ),
            late,
        )

    def _stopWatchdog(self, result: object) -> object:
        self._notifier.stopWatchdog()
        return result


def _dropStaleCopies(copy: str, records: list[dict[str, Any]]) -> None:
    """
    Remove the other copies beside C{copy} that list a host and port this
    daemon now listens on: left by a daemon that was killed.
    """
    ours = {(record["host"], record["port"]) for record in records}
    directory = os.path.dirname(copy)
    for name in os.listdir(directory):
        path = os.path.join(directory, name)
        if path == copy or not name.endswith(".json"):
            continue
        try:
            with open(path, "rb") as f:
                theirs = json.loads(f.read())
            if any((r.get("host"), r.get("port")) in ours for r in theirs):
                os.unlink(path)
        except (OSError, ValueError, TypeError, AttributeError):
            continue


#: The longest path a UNIX socket can have on Linux (sun_path, less its NUL).
UNIX_PATH_MAX = 107


def _cannotListen(service: Any, error: Exception) -> str:
    """Why a listener could not listen, for a person."""
    listener = getattr(service, "listener", None)
    where = listener.description if listener is not None else "an endpoint"
    why = str(error)
    if isinstance(error, CannotListenError) and error.socketError is not None:
        why = str(error.socketError)
        if listener is not None and listener.kind == "unix":
            path = str(error.port.decode() if isinstance(error.port, bytes) else error.port)
            size = len(os.fsencode(path))
            if size > UNIX_PATH_MAX:
                why = f"the path is {size} bytes, a UNIX socket's may have {UNIX_PATH_MAX} at most"
    return f"cannot listen on {where}: {why}"


def _exitAtExit(status: int) -> None:
    """
    Make the process exit with C{status} once twistd is done (its pidfile
    removed, its log closed): twistd itself always exits 0 after the
    reactor stops.
    """

    def exit() -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)

    atexit.register(exit)
