"""
Telling systemd how the daemon is doing (C{sd_notify}, without libsystemd):
C{READY=1} once every listener listens and the backend is open,
C{STOPPING=1} when shutdown starts, C{WATCHDOG=1} every half
C{WATCHDOG_USEC} while the reactor runs.  Each is one datagram to the
UNIX socket named by C{NOTIFY_SOCKET} (a path, or C{@name} in the
abstract namespace).  Without C{NOTIFY_SOCKET} nothing is sent; a socket
that refuses is logged once and never stops the daemon.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, MutableMapping
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

#: The variables systemd sets for the notify protocol; the daemon removes
#: them from its own environment once read, so that nothing it starts (a
#: container, a health check) talks to systemd as if it were pycm.
NOTIFY_VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


def socketAddress(notifySocket: str) -> str:
    """
    The address to send to for a C{NOTIFY_SOCKET} value: C{@name} is
    C{name} in the abstract namespace (a leading NUL byte).
    """
    if notifySocket.startswith("@"):
        return "\0" + notifySocket[1:]
    return notifySocket


def watchdogInterval(environ: MutableMapping[str, str], pid: int) -> float | None:
    """
    How often to send C{WATCHDOG=1}, in seconds: half of C{WATCHDOG_USEC};
    None when it is unset, not a positive number, or C{WATCHDOG_PID} names
    another process.
    """
    usec = environ.get("WATCHDOG_USEC", "")
    watchdogPid = environ.get("WATCHDOG_PID", "")
    if watchdogPid and watchdogPid != str(pid):
        return None
    if not usec.isdigit() or int(usec) == 0:
        return None
    return int(usec) / 2 / 1_000_000


def _send(address: str, message: bytes) -> None:
    """Send one datagram to a UNIX datagram socket, never blocking."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        sock.setblocking(False)
        sock.sendto(message, address)


class SystemdNotifier:
    """
    Sends the daemon's state to systemd's notify socket.

    @ivar address: where to send (L{socketAddress}), or None: send nothing.
    @ivar interval: seconds between two C{WATCHDOG=1}, or None.
    """

    log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        address: str | None,
        interval: float | None = None,
        pid: int | None = None,
        send: Callable[[str, bytes], None] = _send,
    ) -> None:
        self._clock = clock
        self.address = address
        self.interval = interval if address is not None else None
        self._pid = os.getpid() if pid is None else pid
        self._send = send
        self._broken = False
        self._watchdog: LoopingCall | None = None

    @classmethod
    def fromEnvironment(
        cls, clock: IReactorTime, environ: MutableMapping[str, str], pid: int | None = None
    ) -> SystemdNotifier:
        """
        A notifier for what C{environ} says (C{os.environ} in the daemon),
        and those variables removed from it.
        """
        pid = os.getpid() if pid is None else pid
        notifySocket = environ.get("NOTIFY_SOCKET", "")
        interval = watchdogInterval(environ, pid)
        for name in NOTIFY_VARIABLES:
            environ.pop(name, None)
        address = socketAddress(notifySocket) if notifySocket else None
        return cls(clock, address, interval, pid)

    def notify(self, **fields: Any) -> None:
        """
        Send C{fields} (C{READY=1}, C{STATUS=...}) as one message; a failure
        is logged the first time only.
        """
        if self.address is None:
            return
        message = "".join(f"{key}={value}\n" for key, value in fields.items())
        try:
            self._send(self.address, message.encode("utf-8", "replace"))
        except OSError as e:
            if not self._broken:
                self._broken = True
                self.log.warn(
                    "cannot notify systemd at {address} ({error}); the daemon goes on, "
                    "and says no more of it",
                    address=self.address.replace("\0", "@"),
                    error=e.strerror or e,
                )

    def ready(self, status: str) -> None:
        """Every listener listens and the backend is open."""
        self.notify(READY=1, MAINPID=self._pid, STATUS=status)

    def stopping(self, status: str = "stopping: stopping the containers") -> None:
        """Shutdown has started."""
        self.notify(STOPPING=1, STATUS=status)

    def status(self, status: str) -> None:
        """Only the status line C{systemctl status} shows."""
        self.notify(STATUS=status)

    def startWatchdog(self) -> None:
        """Send C{WATCHDOG=1} every L{interval} seconds, from now on."""
        if self.interval is None or self._watchdog is not None:
            return
        self._watchdog = LoopingCall(self.notify, WATCHDOG=1)
        self._watchdog.clock = self._clock
        self._watchdog.start(self.interval, now=True)

    def stopWatchdog(self) -> None:
        """Send no more C{WATCHDOG=1}."""
        if self._watchdog is not None and self._watchdog.running:
            self._watchdog.stop()
        self._watchdog = None
