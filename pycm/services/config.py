"""
The labels a container made by C{apply} carries: L{PROJECT_LABEL} and
L{SERVICE_LABEL} say whose it is; L{CONFIG_LABEL} holds, for each field of
the service that is set, a salted hash of its value, so that a later
C{apply} can say which fields changed without any value in clear text (a
label shows in C{list}; env values may be secrets).

The label reads C{v1 SALT field=HASH field=HASH ...}: C{SALT} is random a
container, each C{HASH} the first 16 hex digits of SHA-256 over the salt,
the field's name and its value as canonical JSON.  A hash still lets
someone who can read the label test guesses of a value; it is not a vault,
and C{inspect} shows a container's env to whoever may use the daemon.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pycm.errors import BadRequest
from pycm.model import ContainerSpec

PROJECT_LABEL = "io.pycm.project"
SERVICE_LABEL = "io.pycm.service"
CONFIG_LABEL = "io.pycm.config"
#: Labels only pycm sets: neither a services document nor run may.
RESERVED_LABEL_PREFIX = "io.pycm."
_VERSION = "v1"


def refuseReservedLabels(names: Iterable[str], what: str = "label") -> None:
    """
    The one rule for labels a request sets (C{run} and C{create}'s
    C{--label}, a service's C{labels}): none under L{RESERVED_LABEL_PREFIX}.
    pycm sets those itself, and reads them back: a container given
    L{PROJECT_LABEL} and L{SERVICE_LABEL} by hand would pose as a
    project's service (the project's C{apply --prune} would remove it, an
    apply of a service of its name take it for its own).

    @param what: how the request names a label, for the refusal.
    @raise BadRequest: naming the first of C{names} that is pycm's.
    """
    for name in names:
        if name.startswith(RESERVED_LABEL_PREFIX):
            raise BadRequest(f"{what} {name!r}: {RESERVED_LABEL_PREFIX}* labels are pycm's own")


def fieldValues(spec: ContainerSpec) -> dict[str, Any]:
    """
    The fields of C{spec} a service sets, by the document's key, as
    JSON-able values; a field left to its default is left out.
    """
    labels = {k: v for k, v in spec.labels.items() if not k.startswith(RESERVED_LABEL_PREFIX)}
    values: dict[str, Any] = {
        "image": spec.image,
        "command": None if spec.command is None else list(spec.command),
        "user": spec.user,
        "env": dict(spec.env) or None,
        "labels": labels or None,
        "restart": None if spec.restartPolicy.name == "no" else str(spec.restartPolicy),
        "memory": spec.memory,
        "cpus": spec.cpus,
        "workdir": spec.workdir,
        "stop_signal": spec.stopSignal,
        "stop_timeout": spec.stopTimeout,
        "healthcheck": None if spec.healthcheck is None else spec.healthcheck.toJSON(),
        "replicas": spec.replicas,
    }
    return {key: value for key, value in values.items() if value is not None}


#: What an older pycm hashed for a field's value that now reads as
#: another (C{on-failure:0} is C{on-failure}, no limit, as in Docker): a
#: container labelled with the old is not recreated for it.
_FORMERLY: dict[tuple[str, str], tuple[str, ...]] = {("restart", "on-failure"): ("on-failure:0",)}


def _hash(salt: str, field: str, value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(f"{salt}\0{field}\0{text}".encode()).hexdigest()[:16]


def hashes(spec: ContainerSpec, salt: str) -> dict[str, str]:
    """Each set field of C{spec} and its hash with C{salt}."""
    return {field: _hash(salt, field, value) for field, value in fieldValues(spec).items()}


def configLabel(spec: ContainerSpec, salt: Callable[[], str] = lambda: secrets.token_hex(4)) -> str:
    """The L{CONFIG_LABEL} of a container made from C{spec}."""
    chosen = salt()
    parts = [f"{field}={digest}" for field, digest in sorted(hashes(spec, chosen).items())]
    return " ".join([_VERSION, chosen, *parts])


def readConfigLabel(label: str) -> tuple[str, dict[str, str]] | None:
    """The salt and hashes of a L{CONFIG_LABEL}, or None if it is not one."""
    words = label.split(" ")
    if len(words) < 2 or words[0] != _VERSION or not words[1]:
        return None
    found = {}
    for word in words[2:]:
        field, sep, digest = word.partition("=")
        if not sep:
            return None
        found[field] = digest
    return words[1], found


def changedFields(labels: Mapping[str, str], spec: ContainerSpec) -> list[str]:
    """
    The fields of C{spec} that differ from those of the container whose
    labels are C{labels}, sorted; C{["config"]} if it has no readable
    L{CONFIG_LABEL} (it was not made by C{apply}, or by another version).
    """
    read = readConfigLabel(labels.get(CONFIG_LABEL, ""))
    if read is None:
        return ["config"]
    salt, had = read
    values = fieldValues(spec)
    return sorted(
        field for field in set(had) | set(values)
        if field not in had or field not in values
        or not _same(salt, field, had[field], values[field])
    )


def _same(salt: str, field: str, digest: str, value: Any) -> bool:
    """Whether C{digest} is the hash of C{value}, or of what it was formerly written as."""
    formerly = _FORMERLY.get((field, value), ()) if isinstance(value, str) else ()
    return any(digest == _hash(salt, field, v) for v in (value, *formerly))
