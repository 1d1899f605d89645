"""
The services' dependency graph: the order they start in (each after its
dependencies, independent ones in the document's order), and the graphs
refused: a dependency on a service that is not there, and a cycle, each
named (C{dependency cycle: web -> app -> web}).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from pycm.errors import BadRequest


def startOrder(graph: Mapping[str, Iterable[str]]) -> list[str]:
    """
    The names of C{graph} (each service's name and the names it depends
    on), every one after its dependencies; among those free to start, the
    order of C{graph}.  Linear in the services and dependencies.

    @raise BadRequest: naming the service and the unknown dependency, or
        the services of a cycle, in order.
    """
    unknown = sorted(
        (name, dependency)
        for name, dependencies in graph.items()
        for dependency in dependencies
        if dependency not in graph
    )
    if unknown:
        name, dependency = unknown[0]
        raise BadRequest(f"service {name} depends on {dependency}, which is not a service")
    waiting = {name: len(set(dependencies)) for name, dependencies in graph.items()}
    dependents: dict[str, list[str]] = {name: [] for name in graph}
    for name, dependencies in graph.items():
        for dependency in set(dependencies):
            dependents[dependency].append(name)
    position = {name: index for index, name in enumerate(graph)}
    ready = [name for name in graph if not waiting[name]]
    result: list[str] = []
    while ready:
        # Ready lists stay short; sorting each batch keeps document order.
        ready.sort(key=position.__getitem__)
        batch, ready = ready, []
        for name in batch:
            result.append(name)
            for dependent in dependents[name]:
                waiting[dependent] -= 1
                if not waiting[dependent]:
                    ready.append(dependent)
    if len(result) < len(graph):
        raise BadRequest("dependency cycle: " + " -> ".join(findCycle(graph, set(result))))
    return result


def findCycle(graph: Mapping[str, Iterable[str]], outside: set[str]) -> list[str]:
    """
    One cycle among the names not in C{outside} (each of which is on a
    cycle or depends on one), as C{[a, b, ..., a]}, starting from the first
    such name in C{graph}'s order.
    """
    remaining = [name for name in graph if name not in outside]
    path: list[str] = []
    onPath: dict[str, int] = {}
    name = remaining[0]
    while name not in onPath:
        onPath[name] = len(path)
        path.append(name)
        # A remaining name always has a remaining dependency.
        name = next(d for d in graph[name] if d not in outside)
    return [*path[onPath[name]:], name]
