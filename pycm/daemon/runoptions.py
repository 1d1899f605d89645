"""
The options of C{run} and C{create}: each one's value grammar and the
L{ContainerSpec} field it fills, in one table (L{RUN_OPTIONS}) that parsing,
C{help}, L{specFromRequest} and the backend check (L{checkSupported}) read.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from pycm.capabilities import ISpecCheck
from pycm.daemon.requestline import parseKeyValues, parseSeconds
from pycm.errors import BadRequest
from pycm.grammar import Option
from pycm.health import healthCheckFrom
from pycm.interfaces import IContainerBackend
from pycm.model import (
    ContainerSpec,
    RestartPolicy,
    parseSignal,
    signalName,
    validateName,
)
from pycm.services.config import refuseReservedLabels
from pycm.units import MAX_STOP_TIMEOUT, parseMemory


def _asGiven(value: str, name: str) -> str:
    return value


def _readWorkdir(value: str, name: str) -> str:
    """An absolute path: every backend refuses another, once it is saved."""
    if not value.startswith("/"):
        raise BadRequest(f"bad --{name} {value!r}: expected an absolute path")
    return value


def _readLabels(values: Sequence[str], name: str) -> dict[str, str]:
    """C{K=V}s, none of them pycm's own (as a services document's labels)."""
    labels = parseKeyValues(values, name)
    refuseReservedLabels(labels, f"--{name}")
    return labels


def _readRestart(value: str, name: str) -> RestartPolicy:
    return RestartPolicy.parse(value)


def _readSignal(value: str, name: str) -> str:
    return signalName(parseSignal(value))


def _readMemory(value: str, name: str) -> int:
    """A size of at least L{pycm.units.MIN_MEMORY} (Docker's floor)."""
    return parseMemory(value, f"--{name}")


def _readCount(value: str, name: str) -> int:
    """A whole number, 0 or more."""
    if not (value.isascii() and value.isdigit() and len(value) < 10):
        raise BadRequest(f"bad --{name} {value!r}: expected a whole number, 0 or more")
    return int(value)


def _readConstraints(values: Sequence[str], name: str) -> tuple[str, ...]:
    """Placement expressions (C{KEY==VALUE} or C{KEY!=VALUE}), checked by shape."""
    for value in values:
        key, operator, wanted = _splitConstraint(value)
        if not key or not wanted:
            raise BadRequest(
                f"bad --{name} {value!r}: expected KEY==VALUE or KEY!=VALUE "
                "(such as node.role==worker)"
            )
    return tuple(value.strip() for value in values)


def _splitConstraint(value: str) -> tuple[str, str, str]:
    for operator in ("==", "!="):
        key, sep, wanted = value.partition(operator)
        if sep:
            return key.strip(), operator, wanted.strip()
    return "", "", ""


_USER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}\$?")


def _readUser(value: str, name: str) -> str:
    """C{USER[:GROUP]}: names or numbers, as C{useradd} allows them."""
    user, sep, group = value.partition(":")
    if not _USER.fullmatch(user) or (sep and not _USER.fullmatch(group)):
        raise BadRequest(
            f"bad --{name} {value!r}: expected USER or USER:GROUP (names or numbers)"
        )
    return value


def readStopTimeout(value: str, name: str) -> float:
    """Seconds, from 0 to L{MAX_STOP_TIMEOUT} (C{--stop-timeout}, C{stop -t})."""
    seconds = parseSeconds(value, name)
    if seconds > MAX_STOP_TIMEOUT:
        raise BadRequest(
            f"bad --{name} {value!r}: at most {MAX_STOP_TIMEOUT:g} seconds (an hour)"
        )
    return seconds


def _readCpus(value: str, name: str) -> float:
    """A positive, finite number of CPUs (a fraction is fine)."""
    try:
        cpus = float(value)
    except ValueError:
        cpus = -1.0
    if not 0 < cpus < float("inf"):
        raise BadRequest(f"bad --{name} {value!r}: expected a positive number")
    return cpus


#: The options of C{run} and C{create}, in C{help}'s order.
RUN_OPTIONS = (
    Option("env", "e", repeat=True, metavar="K=V", field="env", read=parseKeyValues),
    Option("label", "l", repeat=True, metavar="K=V", field="labels", read=_readLabels),
    Option("restart", metavar="no|on-failure[:MAX]|always|unless-stopped",
           field="restartPolicy", read=_readRestart),
    Option("stop-timeout", metavar="SECONDS", field="stopTimeout", read=readStopTimeout),
    Option("stop-signal", metavar="SIG", field="stopSignal", read=_readSignal),
    Option("memory", metavar="SIZE", field="memory", read=_readMemory),
    Option("cpus", metavar="N", field="cpus", read=_readCpus),
    Option("workdir", "w", metavar="DIR", field="workdir", read=_readWorkdir),
    Option("replicas", metavar="N", field="replicas", read=_readCount),
    Option("constraint", repeat=True, metavar="EXPR", field="constraints",
           read=_readConstraints),
    Option("user", "u", metavar="USER[:GROUP]", field="user", read=_readUser),
    # The health check's options fill one field together (healthCheckFrom).
    Option("health-cmd", metavar="CMD", field="healthcheck", read=_asGiven),
    Option("health-interval", metavar="DURATION", field="healthcheck", read=_asGiven),
    Option("health-timeout", metavar="DURATION", field="healthcheck", read=_asGiven),
    Option("health-retries", metavar="N", field="healthcheck", read=_asGiven),
    Option("health-start-period", metavar="DURATION", field="healthcheck", read=_asGiven),
    Option("health-on-failure", metavar="none|restart|stop|kill", field="healthcheck",
           read=_asGiven),
    Option("no-healthcheck", takesValue=False, field="healthcheck", read=_asGiven),
)

#: The spec's fields by option, as the table declares them.
SPEC_FIELDS = {option.name: option.field for option in RUN_OPTIONS}


def specFromRequest(options: Mapping[str, Any], args: Sequence[str]) -> ContainerSpec:
    """Build a L{ContainerSpec} from C{run}/C{create}'s options and words."""
    name = validateName(args[0])
    image = args[1] if len(args) > 1 else None
    if image is not None and image.startswith("-"):
        raise BadRequest(
            f"options must come before the name: {image!r} came after {name!r}"
        )
    fields: dict[str, Any] = {}
    for option in RUN_OPTIONS:
        if option.name in options and option.field != "healthcheck":
            assert option.read is not None and option.field is not None
            fields[option.field] = option.read(options[option.name], option.name)
    check = healthCheckFrom(options)
    if check is not None:
        fields["healthcheck"] = check
    return ContainerSpec(name=name, image=image, command=tuple(args[2:]) or None, **fields)


def checkSupported(backend: IContainerBackend, spec: ContainerSpec) -> None:
    """
    The daemon's one check that C{backend} honours every option C{spec}
    sets (what the machine can enforce is the backend's own check).

    @raise BadRequest: naming the options it cannot honour, and why when
        the backend can say (L{ISpecCheck}: a limit this machine's cgroups
        cannot enforce).
    """
    refused = backend.capabilities.unsupported(spec)
    if refused:
        names = ", ".join(f"--{option}" for option in sorted(refused))
        checker = ISpecCheck(backend, None)
        reasons = checker.refusals(spec) if checker is not None else {}
        why = "; ".join(reasons[option] for option in sorted(refused) if option in reasons)
        raise BadRequest(f"the {backend.name} backend cannot honour {names}"
                         + (f" here: {why}" if why else ""))
