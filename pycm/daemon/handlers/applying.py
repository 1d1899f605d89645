"""
The C{apply} command: one JSON document of services made the running set
(L{pycm.services}); C{--dry-run} says what it would do, C{--prune} also
removes the project's containers the document no longer lists.  And the
daemon's C{--services FILE}: the same, from a services file, at start-up.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from weakref import WeakKeyDictionary

from twisted.internet.defer import Deferred, DeferredLock
from twisted.logger import Logger
from twisted.python.failure import Failure

from pycm.daemon.session import DaemonState, Session
from pycm.errors import BadRequest, Conflict, PycmError
from pycm.interfaces import IContainerBackend
from pycm.services.applier import Applier, ApplyFailed, ApplyResult, refuseUnsupported
from pycm.services.definition import ServiceSet, serviceSetFrom
from pycm.services.servicefile import loadServicesFile

log = Logger(namespace="pycm.apply")

#: A C{--progress-id}: a word its client chose, carried by the apply's
#: progress events (C{"apply": ID}) so that it shows only its own.
PROGRESS_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def apply(session: Session, options: Mapping[str, Any], args: Sequence[str]) -> Any:
    try:
        document = json.loads(args[0])
    except ValueError as e:
        # The position only: the document may hold secrets.
        raise BadRequest(
            f"bad DOCUMENT: not JSON (line {getattr(e, 'lineno', '?')}, "
            f"column {getattr(e, 'colno', '?')})"
        ) from None
    except RecursionError:
        raise BadRequest("the document is nested too deeply") from None
    services = serviceSetFrom(document, options.get("project"))
    progressId = options.get("progress-id", "")
    if "progress-id" in options and not PROGRESS_ID.fullmatch(progressId):
        raise BadRequest(
            f"bad --progress-id {progressId!r}: expected 1 to 64 letters, digits, '_', '.' or '-'"
        )
    state = session.state
    applier = Applier(state.backend, state.clock.seconds, state.events.record,
                      progressId=progressId)  # fmt: skip
    d = projectLock(state.backend, services.project).run(
        applier.apply,
        services, prune=bool(options.get("prune")), dryRun=bool(options.get("dry-run")),
    )
    # A client that goes away abandons its apply (and the project's lock):
    # what was made stays, nothing more is started.
    session.pending.add(d)

    def settled(result: Any) -> Any:
        session.pending.discard(d)
        return result

    return d.addBoth(settled).addCallback(ApplyResult.toJSON)


class _ProjectLock(DeferredLock):
    """
    A project's lock that leaves its backend's table once released with no
    one waiting: the table holds only the projects being applied, however
    many names clients send.
    """

    def __init__(self, table: dict[str, _ProjectLock], project: str) -> None:
        super().__init__()
        self._table = table
        self._project = project

    def release(self) -> None:
        super().release()
        if not self.locked and self._table.get(self._project) is self:
            del self._table[self._project]


#: Each backend's projects' locks, while held: one apply of a project at a time.
_locks: WeakKeyDictionary[IContainerBackend, dict[str, _ProjectLock]] = WeakKeyDictionary()


def projectLock(backend: IContainerBackend, project: str) -> DeferredLock:
    """
    The lock of C{project}'s applies on C{backend}: a second apply of a
    project waits for the first to settle, then plans from what it made
    (two at once would each create what the other is creating).  Acquire
    it at once: once free, it is dropped, and the next call makes another.
    """
    table = _locks.setdefault(backend, {})
    lock = table.get(project)
    if lock is None:
        lock = table[project] = _ProjectLock(table, project)
    return lock


# The daemon's --services FILE: read before start-up, applied once ready.


def loadServicesOption(path: str, project: str | None) -> ServiceSet:
    """
    The services of C{--services FILE} (C{--services-project}, else the
    file's directory's name), checked as an C{apply} checks its document.

    @raise BadRequest: saying what is wrong, with the file's line where
        the file says it.
    """
    return serviceSetFrom(loadServicesFile(path, project, projectOption="--services-project"))


def checkServicesOption(path: str, services: ServiceSet, backend: IContainerBackend) -> None:
    """
    @raise BadRequest: saying which of C{--services}' services C{backend}
        cannot honour (before start-up).
    """
    try:
        refuseUnsupported(backend, services)
    except BadRequest as e:
        raise BadRequest(f"--services {path}: {e}") from None


def applyOnceReady(
    whenReady: Callable[[], None], state: DaemonState, services: ServiceSet | None
) -> Callable[[], None]:
    """
    The daemon's C{whenReady}, then (with C{--services}) the services
    applied in the background (L{applyAtStart}): the daemon is ready, and
    tells systemd so, without waiting for slow health checks.
    """
    if services is None:
        return whenReady

    def readyThenApply() -> None:
        whenReady()
        applyAtStart(state, services)

    return readyThenApply


def applyAtStart(state: DaemonState, services: ServiceSet) -> Deferred[None]:
    """
    Apply C{--services}' services, once the daemon is ready: each outcome
    is logged; a service that fails is logged and the daemon keeps serving
    (what did start stays up, and a later C{apply} can try again).

    @return: a Deferred firing with None once the apply settled; it never
        fails.
    """
    log.info("applying the services of project {project} (--services)",
             project=services.project)  # fmt: skip
    applier = Applier(state.backend, state.clock.seconds, state.events.record)
    d = projectLock(state.backend, services.project).run(applier.apply, services)

    def applied(result: ApplyResult) -> None:
        actions = [f"{step['name']} {step['action']}" for step in result.toJSON()["services"]]
        log.info("services of project {project} applied: {actions}",
                 project=services.project, actions=", ".join(actions) or "none")  # fmt: skip

    def failed(failure: Failure) -> None:
        # Never the reasons: a backend's may quote a command or the env;
        # 'pycm apply FILE' or 'pycm inspect SERVICE' says them.
        error = failure.value
        if isinstance(error, ApplyFailed):
            log.error(
                "--services: apply of {project} failed: {failed} failed; not started: "
                "{notStarted}; pycm keeps serving",
                project=services.project, failed=", ".join(error.failed),
                notStarted=", ".join(error.notStarted) or "none",
            )
        elif isinstance(error, Conflict):
            log.error("--services: {why}; pycm keeps serving", why=error.message)
        elif isinstance(error, PycmError):
            log.error("--services: apply of {project} refused ({code}); pycm keeps serving",
                      project=services.project, code=error.code)  # fmt: skip
        else:
            log.failure("--services: the apply failed; pycm keeps serving", failure)

    return d.addCallbacks(applied, failed)
