"""
A socket systemd passed, listened on as its owner made it
(L{PassedSocketEndpoint}).

Twisted's own adoption (C{AdoptedStreamServerEndpoint}) treats a passed
UNIX socket as one it bound itself: it makes its path mode 0666 once
listening, and removes the path when the daemon stops.  On pycm's socket,
which needs no token because its mode is the guard, the first made every
local user able to drive a root daemon; the second left systemd's socket
unreachable by its path, so no later start of the daemon could listen.
Here the path's mode and the path itself are left to systemd; the listen
backlog is pycm's usual one.
"""

from __future__ import annotations

import os
import socket
import stat
from typing import Any

import attrs
from twisted.internet import fdesc, tcp, unix
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IListeningPort, IProtocolFactory, IStreamServerEndpoint
from twisted.python.failure import Failure
from zope.interface import implementer


class PassedUnixPort(unix.Port):
    """A listening UNIX socket systemd passed: its path's mode and the path stay as they are."""

    def startListening(self) -> None:
        path = self._bindPath
        if unix._inFilesystemNamespace(path):
            # Twisted sets the path's mode to self.mode: let it set the one it has.
            self.mode = stat.S_IMODE(os.stat(path).st_mode)
        super().startListening()

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
    backlog: int
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
            port.backlog = self.backlog
            port.startListening()
            os.close(self.fileno)
        except BaseException:
            return fail()
        return succeed(port)
