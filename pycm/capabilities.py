"""
What a backend supports (L{Capabilities}, as C{info} reports it; what its
host refuses of a spec, L{ISpecCheck}), and the C{run}/C{create} options
there are: those any backend may honour (L{ALL_OPTIONS}) and a scaling
backend's (L{SCALING_OPTIONS}).
"""

from __future__ import annotations

from typing import Any

import attrs
from zope.interface import Interface

from pycm.errors import BadRequest
from pycm.model import ContainerSpec


@attrs.frozen
class Capabilities:
    """
    What a backend supports, as C{info} reports it.

    @ivar options: the C{run}/C{create} options it honours (wire names:
        C{env}, C{label}, C{restart}, C{stop-timeout}, C{stop-signal},
        C{memory}, C{cpus}, C{workdir}, C{user}, the C{health-*} ones of
        L{HEALTH_OPTIONS}; a scaling backend's C{replicas}, C{constraint}).
        The command table refuses the others with C{bad_request} before the backend is called.
    @ivar limits: which resource limits it enforces (C{memory}, C{cpus}).
    @ivar imageDescription: a sentence saying what an image is for it
        (C{info}'s C{images}; the images themselves are
        L{pycm.interfaces.IRuntime.images}).  Built with C{images=} and
        read as C{images} too, the name the backends still give it.
    @ivar stats: the figures its C{stats} can report (L{STATS_FIGURES});
        the others are always null.
    """

    options: frozenset[str]
    limits: frozenset[str] = frozenset()
    imageDescription: str = attrs.field(default="", alias="images")
    stats: frozenset[str] = frozenset()

    @property
    def images(self) -> str:
        """The old name of L{imageDescription}, for the backends' callers."""
        return self.imageDescription

    def unsupported(self, spec: ContainerSpec) -> frozenset[str]:
        """The options C{spec} sets that are not honoured (wire names)."""
        return spec.optionsUsed() - self.options

    def refuseUnsupported(self, backend: str, spec: ContainerSpec) -> None:
        """
        @raise BadRequest: naming the options C{spec} sets that C{backend}
            (its name) does not honour.
        """
        unsupported = sorted(self.unsupported(spec))
        if unsupported:
            raise BadRequest(
                f"the {backend} backend does not support "
                + ", ".join(f"--{option}" for option in unsupported)
            )

    def toJSON(self) -> dict[str, Any]:
        """The C{capabilities} object of C{info}."""
        return {
            "options": sorted(self.options),
            "limits": sorted(self.limits),
            "images": self.imageDescription,
            "stats": sorted(self.stats),
        }


class ISpecCheck(Interface):
    """
    Optional for an L{pycm.interfaces.IContainerBackend}: one that can tell,
    before creating anything, what of a spec its host refuses (a user it
    does not have, more CPUs than it has).  C{apply} asks it of every
    service it will create before it changes anything.
    """

    def refusals(spec):
        """
        What C{create(spec)} would refuse of C{spec} here, found without
        creating anything or changing any state (a name already taken is
        not looked at).

        @return: a dict of each refused option (its C{run} wire name:
            C{cpus}, C{memory}, C{user}, C{stop-timeout}; C{image} for the
            image) to why, as C{create}'s error says it; empty if none.
        """


#: The figures of a C{stats} row.
STATS_FIGURES = frozenset(
    {"cpu_percent", "memory", "memory_limit", "pids", "read_bytes", "write_bytes"}
)


#: The run/create options only a scaling backend (swarm) honours.
SCALING_OPTIONS = frozenset({"replicas", "constraint"})
#: The run/create options of a health check (L{pycm.health.HealthCheck}).
HEALTH_OPTIONS = frozenset(
    option for option, field in ContainerSpec.OPTION_FIELDS.items() if field == "healthcheck"
)
#: The run/create options any backend may honour (the supervising ones
#: honour all of them, where the machine allows).
ALL_OPTIONS = frozenset(ContainerSpec.OPTION_FIELDS) - SCALING_OPTIONS
