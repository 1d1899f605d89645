"""
The commands that change a container's life: C{run}, C{create}, C{start},
C{stop}, C{restart}, C{kill}, C{rm}, C{scale}, and those that read it (C{list},
C{inspect}).  Each returns a Deferred of the reply's JSON.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from operator import attrgetter
from typing import Any

from pycm.daemon.filters import LIST_FILTERS, containerMatches, parseFilters
from pycm.daemon.replies import encodeListing, encodeSummaries
from pycm.daemon.runoptions import checkSupported, readStopTimeout, specFromRequest
from pycm.daemon.session import Session
from pycm.errors import BadRequest
from pycm.interfaces import ICreateAndStart, IScalable
from pycm.model import Container, parseSignal, validateName


def create(session: Session, options: Mapping[str, Any], args: Sequence[str]) -> Any:
    backend = session.state.backend
    spec = specFromRequest(options, args)
    checkSupported(backend, spec)
    return backend.create(spec).addCallback(Container.summary)


def run(session: Session, options: Mapping[str, Any], args: Sequence[str]) -> Any:
    backend = session.state.backend
    spec = specFromRequest(options, args)
    checkSupported(backend, spec)
    oneOperation = ICreateAndStart(backend, None)
    if oneOperation is not None:
        return oneOperation.createAndStart(spec).addCallback(Container.summary)
    created = backend.create(spec)
    created.addCallback(lambda container: backend.start(container.name))
    return created.addCallback(Container.summary)


def start(session: Session, options: Mapping[str, Any], args: Sequence[str]) -> Any:
    name = validateName(args[0])
    return session.state.backend.start(name).addCallback(Container.summary)


def _timeout(options: Mapping[str, Any]) -> float | None:
    if "time" in options:
        return readStopTimeout(options["time"], "time")
    return None


def stop(session: Session, options: Mapping[str, Any], args: Sequence[str]) -> Any:
    name = validateName(args[0])
    d = session.state.backend.stop(name, _timeout(options))
    return d.addCallback(Container.summary)


def restart(session: Session, options: Mapping[str, Any], args: Sequence[str]) -> Any:
    name = validateName(args[0])
    d = session.state.backend.restart(name, _timeout(options))
    return d.addCallback(Container.summary)


def kill(session: Session, options: Mapping[str, Any], args: Sequence[str]) -> Any:
    name = validateName(args[0])
    signal = parseSignal(options.get("signal", "KILL"))
    return session.state.backend.kill(name, signal).addCallback(Container.summary)


def rm(session: Session, options: Mapping[str, Any], args: Sequence[str]) -> Any:
    name = validateName(args[0])
    d = session.state.backend.remove(name, bool(options.get("force")))

    def removed(result: Container | None) -> dict[str, Any]:
        reply: dict[str, Any] = {"name": name, "removed": True}
        if isinstance(result, Container) and not result.saved:
            reply["saved"] = False
        return reply

    return d.addCallback(removed)


def scale(session: Session, options: Mapping[str, Any], args: Sequence[str]) -> Any:
    backend = session.state.backend
    if not IScalable.providedBy(backend):
        raise BadRequest(
            f"the {backend.name} backend cannot scale (scale needs a backend such as swarm)"
        )
    name = validateName(args[0])
    count = args[1]
    if not (count.isascii() and count.isdigit() and len(count) < 10):
        raise BadRequest(f"bad replica count {count!r}: expected a whole number, 0 or more")
    return backend.scale(name, int(count)).addCallback(Container.summary)


def list_(session: Session, options: Mapping[str, Any], args: Sequence[str]) -> Any:
    filters = parseFilters(options.get("filter", []), LIST_FILTERS)

    def render(containers: list[Container]) -> Any:
        if not filters:
            return encodeListing(session.state.clock, containers)
        chosen = [c for c in containers if containerMatches(c, filters)]
        chosen.sort(key=attrgetter("name"))
        return encodeSummaries(session.state.clock, chosen)

    return session.state.backend.list().addCallback(render)


def inspect(session: Session, options: Mapping[str, Any], args: Sequence[str]) -> Any:
    name = validateName(args[0])
    return session.state.backend.inspect(name).addCallback(Container.detail)
