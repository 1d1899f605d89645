"""
Legacy framing (C{twistd pycm --legacy-framing}), for the teaching client
that sends no line end: a request line ends with LF, as always, or when no
more bytes come for L{LEGACY_PAUSE} seconds after an unfinished line
(L{PauseFraming}).
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime

#: Seconds without a byte after which an unfinished request line ends.  Far
#: shorter than a person takes between two requests, far longer than the
#: gap between two packets of one write on loopback.
LEGACY_PAUSE = 0.05

#: Bytes of input a connection under legacy framing may hold while its
#: requests wait (one in flight, replies unread), read so that pauses are
#: still seen: dozens of the teaching client's requests.
LEGACY_READ_AHEAD = 4096


class PauseFraming:
    """
    Watches one connection's input for pauses: once L{LEGACY_PAUSE} seconds
    pass with no more bytes while the input ends in an unfinished line,
    C{endLine} is called (the protocol then ends that line as LF would).
    Lines that end with LF are served at once, as without the option.

    A pause is only counted while the daemon reads the connection: bytes
    that wait in the kernel while it does not read have no timing the daemon
    can see.  So that the teaching client's pauses are still seen while a
    request is in flight (a slow C{stop}, a pull) or its unread replies fill
    the socket, a connection under legacy framing is read ahead while it is
    paused, up to L{LEGACY_READ_AHEAD} bytes, and only then stops being read.
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

    def watch(self, unfinished: bool) -> None:
        """
        Bytes arrived, or reading resumed; C{unfinished} says whether the
        input now ends in the middle of a line.  The pause is counted from
        now.
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
        """
        Forget the pause being counted: a line end came, the input ended,
        or the daemon stopped reading (silence it causes is no pause).
        """
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def mayReadAhead(self, buffered: int) -> bool:
        """May a connection holding C{buffered} bytes of input go on reading?"""
        return buffered < LEGACY_READ_AHEAD

    def _paused(self) -> None:
        self._timer = None
        self._endLine()
