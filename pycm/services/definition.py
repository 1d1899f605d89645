"""
A services document (the JSON C{apply} carries, a services file once read)
checked key by key and made into a L{ServiceSet}: one L{Service} a name,
each a L{ContainerSpec} and its dependencies.  The document is untrusted:
every value is read with the grammar of the C{run} option it stands for
(L{RestartPolicy.parse}, L{parseSignal}, L{parseMemory},
L{healthCheckFrom}, L{validateName}), and every refusal is a
L{BadRequest} naming the service and the key.  No text may hold a NUL
character (L{withoutNul}), as none can be in C{run}'s request line.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import attrs

from pycm.errors import BadRequest, InvalidName
from pycm.health import healthCheckFrom
from pycm.model import ContainerSpec, RestartPolicy, parseSignal, signalName, validateName
from pycm.services import order
from pycm.services.config import PROJECT_LABEL, SERVICE_LABEL, refuseReservedLabels
from pycm.units import MAX_STOP_TIMEOUT, checkMemory, parseMemory


class Condition:
    """What a dependent waits for of a dependency (C{depends_on}'s words)."""

    STARTED = "started"
    HEALTHY = "healthy"
    COMPLETED_SUCCESSFULLY = "completed_successfully"

    ALL = (STARTED, HEALTHY, COMPLETED_SUCCESSFULLY)


@attrs.frozen
class Service:
    """
    One service: the container it is (its name is the service's) and what
    it waits for before it starts.

    @ivar dependsOn: each dependency's name and its L{Condition}.
    """

    spec: ContainerSpec
    dependsOn: Mapping[str, str] = attrs.field(factory=dict)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def hasHealthCheck(self) -> bool:
        check = self.spec.healthcheck
        return check is not None and not check.disabled


@attrs.frozen
class ServiceSet:
    """
    A project's services, checked.

    @ivar services: by name, in the document's order.
    @ivar order: their names in start order (each after its dependencies).
    """

    project: str
    services: Mapping[str, Service]
    order: tuple[str, ...]
    _wanted: dict[str, set[str]] = attrs.field(init=False, eq=False, repr=False)

    @_wanted.default
    def _conditionsWanted(self) -> dict[str, set[str]]:
        wanted: dict[str, set[str]] = {name: set() for name in self.services}
        for service in self.services.values():
            for dependency, condition in service.dependsOn.items():
                wanted[dependency].add(condition)
        return wanted

    def conditionsWanted(self, name: str) -> frozenset[str]:
        """The conditions C{name}'s dependents wait for it to meet."""
        return frozenset(self._wanted[name])

    def ownCondition(self, name: str) -> str:
        """
        What C{name} must meet for an apply to be done with it (to be
        I{up}): C{completed_successfully} if a dependent wants that, else
        C{healthy} if it has a health check, else C{started}.
        """
        if Condition.COMPLETED_SUCCESSFULLY in self._wanted[name]:
            return Condition.COMPLETED_SUCCESSFULLY
        if self.services[name].hasHealthCheck:
            return Condition.HEALTHY
        return Condition.STARTED


#: The keys a service may have, as the document spells them.
SERVICE_KEYS = (
    "image", "command", "user", "env", "labels", "restart", "memory", "cpus", "workdir",
    "stop_signal", "stop_timeout", "healthcheck", "depends_on", "replicas",
)  # fmt: skip
#: A health check's keys, and the C{--health-*} option each stands for.
HEALTHCHECK_KEYS = {
    "cmd": "health-cmd",
    "interval": "health-interval",
    "timeout": "health-timeout",
    "retries": "health-retries",
    "start_period": "health-start-period",
    "on_failure": "health-on-failure",
    "disable": "no-healthcheck",
}
DOCUMENT_KEYS = ("project", "services")

#: A user or group as run's --user reads it (pycm.daemon.runoptions): names
#: or numbers, as useradd allows them; tests.test_services_definition holds
#: the two equal.
USER_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}\$?")
#: The fewest CPUs a service may ask for (Docker's: a hundredth of a CPU).
MIN_CPUS = 0.01
#: One more than the most replicas a service may ask for.
REPLICAS_LIMIT = 10**9


def serviceSetFrom(document: Any, project: str | None = None) -> ServiceSet:
    """
    Check C{document} and make it a L{ServiceSet}.

    @param project: C{--project}; it wins over the document's C{project}.
    @raise BadRequest: naming the service and key of the first fault, or
        the services of a dependency cycle or an unknown dependency.
    """
    if not isinstance(document, dict):
        raise BadRequest("a services document is a JSON object")
    unknown = sorted(set(document) - set(DOCUMENT_KEYS))
    if unknown:
        raise BadRequest(f"unknown key {unknown[0]!r} in the services document")
    name = project if project is not None else document.get("project")
    if name is None:
        raise BadRequest("apply needs a project: --project=NAME or the document's project")
    projectName = _projectName(name)
    services = document.get("services", {})
    if not isinstance(services, dict):
        raise BadRequest("the document's services is an object of services by name")
    built = {serviceName: _service(serviceName, value) for serviceName, value in services.items()}
    started = order.startOrder({n: s.dependsOn for n, s in built.items()})
    for service in built.values():
        for dependency, condition in service.dependsOn.items():
            if condition == Condition.HEALTHY and not built[dependency].hasHealthCheck:
                raise BadRequest(
                    f"service {service.name} waits for {dependency} to be healthy, "
                    f"but {dependency} has no healthcheck"
                )
    labelled = {
        n: attrs.evolve(s, spec=_labelled(s.spec, projectName)) for n, s in built.items()
    }
    return ServiceSet(projectName, labelled, tuple(started))


def _projectName(name: object) -> str:
    """C{name} if it is a project's name: the container naming rule, as the client's."""
    try:
        if isinstance(name, str):
            return validateName(name)
    except InvalidName:
        pass
    raise BadRequest(
        f"bad project {name!r}: expected 2 to 128 letters, digits, '_', '.' or '-', "
        "starting with a letter or digit"
    )


def _labelled(spec: ContainerSpec, project: str) -> ContainerSpec:
    labels = {**spec.labels, PROJECT_LABEL: project, SERVICE_LABEL: spec.name}
    return attrs.evolve(spec, labels=labels)


def _service(name: object, value: object) -> Service:
    if not isinstance(name, str):
        raise BadRequest(f"bad service name {name!r}")
    try:
        validateName(name)
    except InvalidName as e:
        raise BadRequest(f"bad service name {name!r}: {e.message}") from None
    if not isinstance(value, dict):
        raise BadRequest(f"service {name}: expected an object of keys")
    unknown = [key for key in value if key not in SERVICE_KEYS]
    if unknown:
        raise BadRequest(
            f"service {name}: unknown key {unknown[0]!r} (known: {', '.join(SERVICE_KEYS)})"
        )
    reader = _Reader(name)
    fields: dict[str, Any] = {}
    for key, given in value.items():
        if key == "depends_on":
            continue
        try:
            field, read = _READERS[key](reader, given)
        except BadRequest as e:
            raise BadRequest(f"service {name}, key {key}: {e.message}") from None
        fields[field] = read
    spec = ContainerSpec(name=name, **fields)
    return Service(spec, reader.dependsOn(value.get("depends_on", {})))


class _Reader:
    """The readers of one service's keys (C{name} is the service's)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def image(self, value: object) -> tuple[str, Any]:
        return "image", _text(value, "an image name")

    def command(self, value: object) -> tuple[str, Any]:
        if not (isinstance(value, list) and value and all(isinstance(v, str) for v in value)):
            raise BadRequest("expected a list of strings, the program first")
        for number, word in enumerate(value, 1):
            withoutNul(word, f"word {number}")
        return "command", tuple(value)

    def user(self, value: object) -> tuple[str, Any]:
        text = _text(value, "USER or USER:GROUP")
        user, sep, group = text.partition(":")
        if not USER_PATTERN.fullmatch(user) or (sep and not USER_PATTERN.fullmatch(group)):
            raise BadRequest(f"bad user {text!r}: expected USER or USER:GROUP (names or numbers)")
        return "user", text

    def env(self, value: object) -> tuple[str, Any]:
        return "env", _strings(value, "variable")

    def labels(self, value: object) -> tuple[str, Any]:
        labels = _strings(value, "label")
        refuseReservedLabels(labels)
        return "labels", labels

    def restart(self, value: object) -> tuple[str, Any]:
        return "restartPolicy", RestartPolicy.parse(_text(value, "a restart policy"))

    def memory(self, value: object) -> tuple[str, Any]:
        if isinstance(value, int) and not isinstance(value, bool):
            return "memory", checkMemory(value, value, "size")
        return "memory", parseMemory(_text(value, "a size such as 512m"), "size")

    def cpus(self, value: object) -> tuple[str, Any]:
        number = _number(value, "a positive number")
        if not 0 < number < math.inf:
            raise BadRequest(f"bad cpus {value!r}: expected a positive number")
        if number < MIN_CPUS:
            raise BadRequest(f"bad cpus {value!r}: at least {MIN_CPUS} (a hundredth of a CPU)")
        return "cpus", number

    def workdir(self, value: object) -> tuple[str, Any]:
        workdir = _text(value, "an absolute path")
        if not workdir.startswith("/"):
            raise BadRequest(f"bad workdir {workdir!r}: expected an absolute path")
        return "workdir", workdir

    def stop_signal(self, value: object) -> tuple[str, Any]:
        return "stopSignal", signalName(parseSignal(_text(value, "a signal")))

    def stop_timeout(self, value: object) -> tuple[str, Any]:
        number = _number(value, "seconds")
        if not 0 <= number < math.inf:
            raise BadRequest(f"bad stop_timeout {value!r}: expected seconds")
        if number > MAX_STOP_TIMEOUT:
            raise BadRequest(
                f"bad stop_timeout {value!r}: at most {MAX_STOP_TIMEOUT:g} seconds (an hour)"
            )
        return "stopTimeout", number

    def healthcheck(self, value: object) -> tuple[str, Any]:
        if not isinstance(value, dict):
            raise BadRequest("expected an object (cmd, interval, timeout, retries, ...)")
        unknown = [key for key in value if key not in HEALTHCHECK_KEYS]
        if unknown:
            raise BadRequest(
                f"unknown key {unknown[0]!r} (known: {', '.join(HEALTHCHECK_KEYS)})"
            )
        for key, given in value.items():
            if isinstance(given, str):
                withoutNul(given, key)
        disable = value.get("disable", False)
        if not isinstance(disable, bool):
            raise BadRequest(f"bad disable {disable!r}: expected true or false")
        options = {HEALTHCHECK_KEYS[key]: given for key, given in value.items()
                   if key != "disable"}  # fmt: skip
        if disable:
            options["no-healthcheck"] = True
        check = healthCheckFrom(options)
        if check is None:
            raise BadRequest("expected cmd, or disable = true")
        return "healthcheck", check

    def replicas(self, value: object) -> tuple[str, Any]:
        if not isinstance(value, int) or isinstance(value, bool) \
                or not 0 <= value < REPLICAS_LIMIT:
            raise BadRequest(f"bad replicas {value!r}: expected a whole number, 0 or more")
        return "replicas", value

    def dependsOn(self, value: object) -> dict[str, str]:
        """C{depends_on}: names (each C{started}), or names and conditions."""
        where = f"service {self.name}, key depends_on"
        if isinstance(value, list):
            value = dict.fromkeys(value, Condition.STARTED) if all(
                isinstance(v, str) for v in value) else None  # fmt: skip
        if not isinstance(value, dict):
            raise BadRequest(f"{where}: expected a list of services or an object of conditions")
        for dependency, condition in value.items():
            if condition not in Condition.ALL:
                raise BadRequest(
                    f"{where}: bad condition {condition!r} for {dependency}: "
                    f"expected {', '.join(Condition.ALL)}"
                )
        return dict(value)


_READERS = {
    key: getattr(_Reader, key) for key in SERVICE_KEYS if key != "depends_on"
}


def withoutNul(text: str, what: str) -> str:
    """
    C{text}, if it holds no NUL character: C{run}'s request line cannot
    carry one (L{pycm.daemon.requestline.decodeLine}), and no process can
    be given one (arguments, the environment and paths are C strings).
    The document's JSON can (C{\\u0000}), so each of its texts is checked.

    @param what: what C{text} is, for the refusal, which never shows a
        value (it may be a secret).
    @raise BadRequest: if it does.
    """
    if "\0" in text:
        raise BadRequest(f"{what} must not hold a NUL character")
    return text


def _text(value: object, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise BadRequest(f"bad value {value!r}: expected {what}")
    return withoutNul(value, "the value")


def _number(value: object, what: str) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise BadRequest(f"bad value {value!r}: expected {what}")
    return float(value)


def _strings(value: object, what: str) -> dict[str, str]:
    if not isinstance(value, dict):
        raise BadRequest(f"expected an object of {what}s: names to strings")
    for key, given in value.items():
        if not key or "=" in key:
            raise BadRequest(f"bad {what} name {key!r}")
        withoutNul(key, f"{what} name {key!r}")
        if not isinstance(given, str):
            # The value may be a secret: say whose it is, not what it is.
            raise BadRequest(f"{what} {key}: expected a string value")
        withoutNul(given, f"{what} {key}")
    return dict(value)
