"""
The C{--filter} grammar of C{list} and C{events}, and what matches it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from pycm.errors import BadRequest
from pycm.model import Container, ContainerEvent, ProgressEvent, State

LIST_FILTERS = ("state", "label", "name")
EVENT_FILTERS = ("name", "action")

#: Other names of filter keys: Docker's (C{docker ps --filter status=running}).
KEY_ALIASES = {"status": "state"}

#: A filter as a hashable value: subscribers with equal filters share one.
FilterKey = frozenset[tuple[str, frozenset[str]]]


def parseFilters(values: Iterable[str], allowed: Sequence[str]) -> dict[str, set[str]]:
    """
    Turn C{["state=running", "state=exited", "name=web"]} into
    C{{"state": {"running", "exited"}, "name": {"web"}}}: values of one key
    are alternatives, different keys must all match (Docker's rule).  A
    key may be given by another name (L{KEY_ALIASES}: C{status=running}).
    """
    filters: dict[str, set[str]] = {}
    for item in values:
        key, sep, value = item.partition("=")
        key = key.lower()
        key = KEY_ALIASES.get(key, key)
        if not sep or key not in allowed:
            keys = [
                name + "".join(f" (or {alias})" for alias, to in KEY_ALIASES.items() if to == name)
                for name in allowed
            ]
            raise BadRequest(
                f"bad --filter {item!r}: expected KEY=VALUE with KEY one of " + ", ".join(keys)
            )
        if key == "state" and value not in State.ALL:
            raise BadRequest(
                f"bad --filter {item!r}: no such state; expected one of " + ", ".join(State.ALL)
            )
        filters.setdefault(key, set()).add(value)
    return filters


def _labelMatches(labels: Mapping[str, str], wanted: str) -> bool:
    key, sep, value = wanted.partition("=")
    if not sep:
        return key in labels
    return labels.get(key) == value


def containerMatches(container: Container, filters: dict[str, set[str]]) -> bool:
    """Does C{container} pass every filter of C{list --filter}?"""
    for key, values in filters.items():
        if key == "state":
            ok = container.state in values
        elif key == "label":
            ok = any(_labelMatches(container.labels, value) for value in values)
        else:
            ok = any(value in container.name for value in values)
        if not ok:
            return False
    return True


def eventMatches(event: ContainerEvent | ProgressEvent, filters: dict[str, set[str]]) -> bool:
    """Does C{event} pass every filter of C{events --filter}?"""
    for key, values in filters.items():
        if getattr(event, key) not in values:
            return False
    return True


def filterKey(filters: Mapping[str, Iterable[str]]) -> FilterKey:
    """C{filters} as a hashable value, equal for equal filters."""
    return frozenset((key, frozenset(values)) for key, values in filters.items())
