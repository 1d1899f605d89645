"""
L{hostFileSwitch}: a health check the test switches between passing and
failing by creating and removing a file of the host, for backends whose
checks see the host's files (the process backend's shell, the memory
backend's simulated C{test -e}): the conformance suite's default switch.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred

__all__ = ["Switch", "hostFileSwitch"]

#: Turns the switched check of a container (its name) on (True: it
#: passes) or off; may return a Deferred.
Switch = Callable[[str, bool], "Deferred[Any] | None"]


def hostFileSwitch(testCase: Any, backend: Any) -> tuple[str, Switch]:
    """
    A check (C{test -e PATH}) that passes while a file of the host exists,
    and the function that turns it on or off.  It starts off.

    @param testCase: gives the file's path (C{mktemp}).
    @param backend: not used (the file is the same for every container).
    """
    path = os.path.abspath(testCase.mktemp())

    def turn(name: str, passing: bool) -> None:
        if passing:
            with open(path, "w"):
                pass
        elif os.path.exists(path):
            os.remove(path)

    return f"test -e {path}", turn
