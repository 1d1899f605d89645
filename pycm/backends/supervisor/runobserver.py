"""
The L{IRunObserver} a supervisor hands a runtime for one run: it passes the
run's output and exit on to two callables, and holds an exit that came
before the run was attached to its record.
"""

from __future__ import annotations

from collections.abc import Callable

from zope.interface import implementer

from pycm.interfaces import IRunObserver


@implementer(IRunObserver)
class RunObserver:
    """
    Hears about one run.

    @param onOutput: called with this observer, the stream and the lines.
    @param onExit: called with this observer and the exit code.
    """

    def __init__(
        self,
        onOutput: Callable[[RunObserver, str, list[bytes]], None],
        onExit: Callable[[RunObserver, int | None], None],
    ) -> None:
        self._onOutput = onOutput
        self._onExit = onExit
        #: The run is registered in its record (spawn's Deferred fired).
        self.attached = False
        #: An exit reported before the run was attached.
        self.pendingExit: list[int | None] = []

    def output(self, stream: str, lines: list[bytes]) -> None:
        self._onOutput(self, stream, lines)

    def exited(self, exitCode: int | None) -> None:
        self._onExit(self, exitCode)
