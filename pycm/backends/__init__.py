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

A factory declares the options it reads with L{takesOptions}; the daemon
then refuses any other at start-up (a misspelled C{--backend-option} key
would otherwise be lost without a word).  An undeclared factory gets
every option, unchecked.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from importlib.metadata import EntryPoint, entry_points
from typing import Any, TypeVar

from pycm.errors import BadRequest

ENTRY_POINT_GROUP = "pycm.backends"

#: Where L{takesOptions} keeps a factory's option names.
_OPTION_NAMES = "pycmBackendOptions"

_Factory = TypeVar("_Factory", bound=Callable[..., Any])


def takesOptions(*names: str) -> Callable[[_Factory], _Factory]:
    """
    Declare the backend options a factory reads (in the order C{--help}
    and errors list them), so that the daemon refuses any other.
    """

    def declare(factory: _Factory) -> _Factory:
        setattr(factory, _OPTION_NAMES, tuple(names))
        return factory

    return declare


def declaredOptions(factory: object) -> tuple[str, ...] | None:
    """The options C{factory} declared with L{takesOptions}; None if it did not."""
    names = getattr(factory, _OPTION_NAMES, None)
    return None if names is None else tuple(names)


def checkOptions(
    backend: str,
    factory: object,
    given: Iterable[str],
    flagsGiven: Iterable[str] = (),
    withFlags: Collection[str] = (),
) -> None:
    """
    Refuse options C{factory} (backend C{backend}) did not declare.

    @param given: the keys of C{--backend-option}.
    @param flagsGiven: the options given with a flag of their own
        (C{--pull}), checked first.
    @param withFlags: every option that has a flag of its own: errors
        list the known options but these.
    @raise BadRequest: naming the first unknown option (and, for a
        C{--backend-option} key, the known ones).
    """
    known = declaredOptions(factory)
    if known is None:
        return
    for name in flagsGiven:
        if name not in known:
            raise BadRequest(f"--{name} is not an option of the {backend} backend")
    for name in given:
        if name not in known:
            others = ", ".join(n for n in known if n not in withFlags) or "none"
            raise BadRequest(
                f"unknown backend option {name!r} for the {backend} backend (known: {others})"
            )


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
