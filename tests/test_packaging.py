"""
Tests of what pycm declares about itself: the dependency floors that
C{constraints/floor.txt} pins for C{tox -e tests-floor}, and that the floor
run really runs at them.
"""

from __future__ import annotations

import os
import re
import tomllib
from importlib.metadata import version

from twisted.trial.unittest import SynchronousTestCase

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLOOR = os.path.join(ROOT, "constraints", "floor.txt")

_REQUIREMENT = re.compile(r"^([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?\s*(>=|==)\s*([^,;\s]+)")


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declaredFloors() -> dict[str, str]:
    """pyproject.toml's runtime dependencies: name -> its C{>=} version."""
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)["project"]
    floors = {}
    for requirement in project["dependencies"]:
        match = _REQUIREMENT.match(requirement)
        assert match is not None and match.group(2) == ">=", requirement
        floors[_normalize(match.group(1))] = match.group(3)
    return floors


def _pinned(path: str) -> dict[str, str]:
    """A constraints file's C{name==version} lines."""
    pins = {}
    with open(path) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if line:
                match = _REQUIREMENT.match(line)
                assert match is not None and match.group(2) == "==", line
                pins[_normalize(match.group(1))] = match.group(3)
    return pins


class FloorTests(SynchronousTestCase):
    def test_everyDependencyHasAFloor(self) -> None:
        """Every runtime dependency is declared with a lower bound, nothing more."""
        self.assertEqual(
            set(_declaredFloors()), {"twisted", "treq", "attrs", "zope-interface"}
        )

    def test_constraintsPinTheDeclaredFloors(self) -> None:
        """
        constraints/floor.txt pins each runtime dependency at exactly the
        version pyproject.toml declares as its floor (they cannot drift).
        """
        pins = _pinned(FLOOR)
        for name, floor in _declaredFloors().items():
            self.assertIn(name, pins)
            self.assertEqual(
                _release(pins[name]), _release(floor), f"{name}: {pins[name]} vs >={floor}"
            )

    def test_installedVersions(self) -> None:
        """
        The installed dependencies meet the declared floors; in
        C{tox -e tests-floor} they are exactly the pinned ones.
        """
        for name, floor in _declaredFloors().items():
            self.assertGreaterEqual(_release(version(name)), _release(floor), name)
        path = os.environ.get("PYCM_FLOOR_CONSTRAINTS")
        for name, pinned in (_pinned(path) if path else {}).items():
            self.assertEqual(_release(version(name)), _release(pinned), name)

    def test_pythonAndPlatform(self) -> None:
        """The metadata says Python 3.11 or later, on Linux only."""
        with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
            project = tomllib.load(f)["project"]
        self.assertEqual(project["requires-python"], ">=3.11")
        classifiers = project["classifiers"]
        self.assertIn("Operating System :: POSIX :: Linux", classifiers)
        self.assertIn("Programming Language :: Python :: 3.11", classifiers)
        self.assertFalse([c for c in classifiers if c.startswith("Operating System :: OS")])


def _release(text: str) -> tuple[int, ...]:
    """C{"6.0"} and C{"6.0.0"} alike: (6,)."""
    parts = [int(part) for part in re.findall(r"\d+", text.split("+")[0])]
    while parts and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


class PackageListTests(SynchronousTestCase):
    """pyproject.toml lists every package of the tree, and only those."""

    def test_everyPackageListed(self) -> None:
        """
        Each folder under C{pycm/} with an C{__init__.py} is in the explicit
        package list (a folder left out is missing from a non-editable
        install only, where no editable test run would see it).
        """
        with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
            listed = set(tomllib.load(f)["tool"]["setuptools"]["packages"])
        found = {"twisted.plugins"}
        for folder, _, files in os.walk(os.path.join(ROOT, "pycm")):
            if "__init__.py" in files:
                found.add(os.path.relpath(folder, ROOT).replace(os.sep, "."))
        self.assertEqual(sorted(found - listed), [], "packages not listed")
        self.assertEqual(sorted(listed - found), [], "listed packages that are not there")
