"""
Container backends, discovered by name through the C{pycm.backends} entry
point group.

A backend package registers a factory::

    [project.entry-points."pycm.backends"]
    mine = "mypackage.backend:makeBackend"

and the factory is called as C{makeBackend(reactor, stateDir, options)}:
C{stateDir} is the daemon's state directory (a L{FilePath}), C{options} a
C{dict} of the backend options given on the command line (C{--docker-host}
becomes C{"docker-host"}, C{--backend-option K=V} becomes C{"K"}).  It
returns an L{pycm.interfaces.IContainerBackend}.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points
from typing import Any

from pycm.errors import BadRequest

ENTRY_POINT_GROUP = "pycm.backends"


def availableBackends() -> dict[str, EntryPoint]:
    """The installed backends, by name."""
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def loadBackendFactory(name: str) -> Any:
    """
    Return the factory of backend C{name}.

    @raise BadRequest: naming the available backends, if there is none of
        that name.
    """
    found = availableBackends()
    if name not in found:
        names = ", ".join(sorted(found)) or "none (is pycm installed?)"
        raise BadRequest(f"unknown backend {name!r}; available backends: {names}")
    return found[name].load()
