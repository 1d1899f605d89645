"""
Tests for the shape of the tree: which room may import which, no import
circle, and no module over L{MAX_LINES} lines.

The rooms are the core (C{pycm/*.py}), C{pycm.daemon}, C{pycm.backends},
C{pycm.client} and C{pycm.testing}.  The daemon never imports the client,
the client imports neither the daemon nor a backend, and a backend imports
neither the daemon nor the client; any of them may import the core.

Every module under C{pycm/} is read with L{ast}, and every import in it
counts, at module level or inside a function, except those under C{if
TYPE_CHECKING:}, which never run.  Each test reports every offender at
once.
"""

from __future__ import annotations

import ast
import os
from collections.abc import Iterator

from twisted.trial.unittest import SynchronousTestCase

import pycm

#: The longest a module may be, in lines.
MAX_LINES = 500

#: Modules still over L{MAX_LINES}, until their rooms are split: a module
#: not in this set must be within the limit, and one in it that is within
#: the limit must leave the set.
KNOWN_LONG: set[str] = set()

#: Which rooms each room may not import.
FORBIDDEN = {
    "pycm.daemon": ("pycm.client",),
    "pycm.client": ("pycm.daemon", "pycm.backends"),
    "pycm.backends": ("pycm.daemon", "pycm.client"),
}


def moduleFiles(root: str | None = None) -> dict[str, str]:
    """Every module under C{pycm/}: its dotted name, and its file's path."""
    if root is None:
        root = os.path.dirname(pycm.__file__)
    base = os.path.dirname(root)
    modules = {}
    for directory, subdirectories, files in os.walk(root):
        subdirectories[:] = sorted(d for d in subdirectories if d != "__pycache__")
        for name in sorted(files):
            if not name.endswith(".py"):
                continue
            path = os.path.join(directory, name)
            parts = os.path.relpath(path, base)[: -len(".py")].split(os.sep)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def _isTypeChecking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement under C{node}, but not under C{if TYPE_CHECKING:}."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child
        elif isinstance(child, ast.If) and _isTypeChecking(child):
            for other in child.orelse:
                yield from _imports(ast.Module(body=[other], type_ignores=[]))
        else:
            yield from _imports(child)


def importedModules(name: str, source: str, known: set[str],
                    isPackage: bool = False) -> set[str]:
    """
    The pycm modules the module C{name} (whose text is C{source}; an
    C{__init__.py} if C{isPackage}) imports; C{from package import module}
    counts as importing that module.
    """
    package = name if isPackage else name.rpartition(".")[0]
    found = set()
    for node in _imports(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join(parts + ([base] if base else []))
            targets = [base]
            targets += [f"{base}.{alias.name}" for alias in node.names]
        for target in targets:
            if target in known and target != name:
                found.add(target)
    return found


def importGraph() -> dict[str, set[str]]:
    """Each pycm module, and the pycm modules it imports."""
    files = moduleFiles()
    known = set(files)
    graph = {}
    for name, path in files.items():
        with open(path, encoding="utf-8") as f:
            graph[name] = importedModules(name, f.read(), known,
                                          path.endswith("__init__.py"))
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """
    The import circles of C{graph}: its strongly connected components of
    more than one module (Tarjan's algorithm), each sorted.
    """
    index: dict[str, int] = {}
    lowlink: dict[str, int] = {}
    stack: list[str] = []
    onStack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = lowlink[node] = len(index)
        stack.append(node)
        onStack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                lowlink[node] = min(lowlink[node], lowlink[target])
            elif target in onStack:
                lowlink[node] = min(lowlink[node], index[target])
        if lowlink[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                onStack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def crossings(graph: dict[str, set[str]]) -> set[tuple[str, str]]:
    """The imports (importer, imported) that cross a wall of L{FORBIDDEN}."""
    found = set()
    for importer, targets in graph.items():
        for room, walls in FORBIDDEN.items():
            if importer != room and not importer.startswith(room + "."):
                continue
            for target in targets:
                if any(target == wall or target.startswith(wall + ".") for wall in walls):
                    found.add((importer, target))
    return found


class ImportGraphTests(SynchronousTestCase):
    """How the import graph is read."""

    def test_importsFound(self) -> None:
        """
        Module-level and function-level imports count, absolute and
        relative, and C{from package import module} names the module;
        imports under C{if TYPE_CHECKING:} do not.
        """
        known = {"pycm", "pycm.a", "pycm.b", "pycm.c", "pycm.d", "pycm.e", "pycm.pkg",
                 "pycm.pkg.f"}
        source = (
            "import pycm.a\n"
            "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n"
            "    import pycm.e\n"
            "else:\n"
            "    import pycm.d\n"
            "def f():\n"
            "    from pycm.b import thing\n"
            "from .c import other\n"
            "from pycm.pkg import f\n"
            "import os\n"
        )
        self.assertEqual(importedModules("pycm.x", source, known),
                         {"pycm.a", "pycm.b", "pycm.c", "pycm.d", "pycm.pkg", "pycm.pkg.f"})

    def test_cycles(self) -> None:
        """Every circle is found, and a chain is not one."""
        graph = {"a": {"b"}, "b": {"a"}, "c": {"d"}, "d": {"e"}, "e": {"c"}, "f": {"a"}}
        self.assertEqual(cycles(graph), [["a", "b"], ["c", "d", "e"]])
        self.assertEqual(cycles({"a": {"b"}, "b": {"c"}, "c": set()}), [])

    def test_crossings(self) -> None:
        """An import across a room's wall is found; the core is open to all."""
        graph = {
            "pycm.daemon.tap": {"pycm.client.config", "pycm.statedir"},
            "pycm.client.cli": {"pycm.daemon.listeners", "pycm.backends.memory"},
            "pycm.backends.memory": {"pycm.model"},
            "pycm.testing": {"pycm.backends.memory", "pycm.daemon.protocol"},
        }
        self.assertEqual(crossings(graph), {
            ("pycm.daemon.tap", "pycm.client.config"),
            ("pycm.client.cli", "pycm.daemon.listeners"),
            ("pycm.client.cli", "pycm.backends.memory"),
        })


class LayoutTests(SynchronousTestCase):
    """The tree as it is."""

    def test_noCycle(self) -> None:
        """No pycm module imports itself through others."""
        found = cycles(importGraph())
        if found:
            self.fail("import circles:\n" + "\n".join(" <-> ".join(c) for c in found))

    def test_roomsKeepTheirWalls(self) -> None:
        """
        The daemon never imports the client; the client imports neither the
        daemon nor a backend; a backend imports neither the daemon nor the
        client.
        """
        found = sorted(crossings(importGraph()))
        if found:
            self.fail("\n".join(f"{a} imports {b}" for a, b in found))

    def test_shortModules(self) -> None:
        """
        No module is over L{MAX_LINES} lines but those of L{KNOWN_LONG}, and
        each of those still is.
        """
        offenders = []
        for name, path in sorted(moduleFiles().items()):
            with open(path, encoding="utf-8") as f:
                lines = sum(1 for _ in f)
            if lines > MAX_LINES and name not in KNOWN_LONG:
                offenders.append(f"{name} has {lines} lines (at most {MAX_LINES})")
            elif lines <= MAX_LINES and name in KNOWN_LONG:
                offenders.append(f"{name} has {lines} lines: remove it from KNOWN_LONG")
        for name in sorted(KNOWN_LONG - set(moduleFiles())):
            offenders.append(f"{name} is gone: remove it from KNOWN_LONG")
        if offenders:
            self.fail("\n".join(offenders))
