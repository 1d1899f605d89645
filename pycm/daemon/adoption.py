"""
A socket systemd passed, listened on as its owner made it
(L{PassedSocketEndpoint}).

Twisted's own adoption (C{AdoptedStreamServerEndpoint}) treats a passed
UNIX socket as one it bound itself: it sets its path's mode to 0666 once
listening, and when the daemon stops it shuts the socket down (which
systemd shares) and removes its path.  On pycm's socket, which needs no
token because its mode is the guard, the first let every local user drive
a root daemon; the others left systemd's socket unusable, so that no later
start of the daemon could be activated by it.  Here a passed UNIX socket
is listened on as Twisted listens on a passed TCP one: nothing is done to
its path, and it is only closed at the end.
"""

from __future__ import annotations

import os
import socket
from typing import Any

import attrs
from twisted.internet import fdesc, tcp, unix
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IListeningPort, IProtocolFactory, IStreamServerEndpoint
from twisted.python.failure import Failure
from zope.interface import implementer


class PassedUnixPort(unix.Port):
    """
    A listening UNIX socket systemd passed: its path, its mode and its
    listen backlog stay systemd's, and at the end it is closed, not shut
    down.
    """

    def startListening(self) -> None:
        # unix.Port would chmod the path; this is tcp.Port's way with a
        # passed socket, which is listening already.
        skt, self._preexistingSocket = self._preexistingSocket, None
        assert skt is not None, "only a passed socket is listened on so"
        self._shouldShutdown = False
        tcp._reservedFD.reserve()
        self.factory.doStart()  # type: ignore[union-attr]
        self.connected = True
        self.socket = skt
        self.fileno = skt.fileno  # type: ignore[method-assign]
        self.numberAccepts = 100
        self.startReading()

    def connectionLost(self, reason: Failure) -> None:
        # unix.Port would remove the path, which is systemd's.
        tcp.Port.connectionLost(self, reason)


@implementer(IStreamServerEndpoint)
@attrs.define
class PassedSocketEndpoint:
    """
    Listen on the passed listening socket C{fileno} (of C{family}), then
    close that descriptor (the port has its own), as Twisted's adopted
    endpoint does; a UNIX one through L{PassedUnixPort}.
    """

    reactor: Any
    fileno: int
    family: int
    _used: bool = False

    def listen(self, factory: IProtocolFactory) -> Deferred[IListeningPort]:
        if self._used:
            return fail(RuntimeError("a passed socket is listened on once"))
        self._used = True
        try:
            fdesc.setNonBlocking(self.fileno)
            if self.family == socket.AF_UNIX:
                port: Any = PassedUnixPort._fromListeningDescriptor(
                    self.reactor, self.fileno, factory
                )
            else:
                port = tcp.Port._fromListeningDescriptor(
                    self.reactor, self.fileno, self.family, factory
                )
            port.startListening()
            os.close(self.fileno)
        except Exception:
            return fail()
        return succeed(port)
