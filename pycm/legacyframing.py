"""
Legacy framing (C{twistd pycm --legacy-framing}): a pause ends a request.

The teaching client pycm grew out of sends C{run NAME}, C{stop NAME},
C{list} and C{exit} with no line end, one request per keystroke of Enter,
and never reads a reply.  Under legacy framing a request line ends either
with LF, as always, or when no more bytes come for L{LEGACY_PAUSE} seconds
after an unfinished line.  Lines that end with LF are served at once, as
without the option; only a connection whose input stops in the middle of
a line waits for the pause.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime

#: Seconds without a byte after which an unfinished request line ends.  Far
#: shorter than a person takes between two requests, far longer than the
#: gap between two packets of one write on loopback.
LEGACY_PAUSE = 0.05


class PauseFraming:
    """
    Watches one connection's input for pauses: once L{LEGACY_PAUSE} seconds
    pass with no more bytes while the input ends in an unfinished line,
    C{endLine} is called (the protocol then ends that line as LF would).
    """

    def __init__(
        self,
        clock: IReactorTime,
        endLine: Callable[[], None],
        pause: float = LEGACY_PAUSE,
    ) -> None:
        self._clock = clock
        self._endLine = endLine
        self._pause = pause
        self._timer: IDelayedCall | None = None

    def received(self, unfinished: bool) -> None:
        """
        Bytes arrived; C{unfinished} says whether the input now ends in the
        middle of a line.  The pause is counted from the last bytes.
        """
        if not unfinished:
            self.stop()
            return
        timer = self._timer
        if timer is not None and timer.active():
            timer.reset(self._pause)
        else:
            self._timer = self._clock.callLater(self._pause, self._paused)

    def stop(self) -> None:
        """Forget the pause being counted (a line end came, or the input ended)."""
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def _paused(self) -> None:
        self._timer = None
        self._endLine()
