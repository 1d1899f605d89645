"""
L{hostFileSwitch}: a health check the test switches between passing and
failing by creating and removing a file of the host, for the fixtures of
backends whose checks see the host's files (the process backend's shell,
the memory backend's simulated C{test -e}).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

__all__ = ["Switch", "hostFileSwitch"]

#: Turns a switched check on (True: it passes) or off.
Switch = Callable[[bool], None]


def hostFileSwitch(testCase: Any) -> tuple[str, Switch]:
    """
    A check (C{test -e PATH}) that passes while a file of the host exists,
    and the function that turns it on or off.  It starts off.

    @param testCase: gives the file's path (C{mktemp}).
    """
    path = os.path.abspath(testCase.mktemp())

    def turn(passing: bool) -> None:
        if passing:
            with open(path, "w"):
                pass
        elif os.path.exists(path):
            os.remove(path)

    return f"test -e {path}", turn
