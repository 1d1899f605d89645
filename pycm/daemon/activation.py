"""
Sockets passed by systemd (socket activation): C{--listen
systemd:domain=UNIX:index=0} (or C{name=NAME}, C{domain=INET}, C{INET6}).
L{PassedSockets} finds the descriptor an endpoint string names, as
Twisted's own C{systemd:} endpoint would; L{inspectSocket} tells what it
is (its family and the address it is bound to, from C{getsockname}), so
that the listener rules apply to it as to a socket pycm binds itself.
"""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
from twisted.internet.endpoints import serverFromString
from twisted.python import usage

#: The C{domain=} values pycm accepts, and their address families.
DOMAINS = {"UNIX": socket.AF_UNIX, "INET": socket.AF_INET, "INET6": socket.AF_INET6}

#: Where to start a daemon that wants a passed socket.
HOW_TO_PASS = (
    "start pycm from its socket unit (contrib/systemd/pycm.socket), or under "
    "systemd-socket-activate"
)


@attrs.frozen
class PassedSocket:
    """
    One listening socket systemd passed.

    @ivar address: what C{getsockname} says: a path (C{""} unnamed,
        starting with a NUL byte in the abstract namespace) for a UNIX
        socket, C{(host, port, ...)} for an INET one.
    @ivar mode: for a UNIX socket with a path, the permission bits of its
        file; else None.
    """

    fileno: int
    family: int
    address: Any
    mode: int | None = None

    @property
    def host(self) -> str:
        """The address of an INET socket."""
        return str(self.address[0])

    @property
    def path(self) -> str:
        """A UNIX socket's path, C{@name} for the abstract namespace."""
        name = self.address
        if isinstance(name, bytes):
            name = name.decode("utf-8", "replace")
        return "@" + name[1:] if name.startswith("\0") else str(name)


class PassedSockets:
    """
    The listening descriptors systemd passed this process, in order, and
    their names (C{FileDescriptorName=}, C{LISTEN_FDNAMES}).
    """

    def __init__(self, descriptors: Sequence[int], names: Sequence[str] = ()) -> None:
        self.descriptors = list(descriptors)
        self.names = list(names)

    @classmethod
    def fromTwisted(cls, environ: Mapping[str, str] | None = None) -> PassedSockets:
        """
        The descriptors as Twisted's C{systemd:} endpoint sees them.  Twisted
        reads C{LISTEN_FDS} and C{LISTEN_PID} when it is imported, and
        removes them from the environment then (so that no child inherits
        them): asking its endpoint parser for index 0, 1, ... finds them.
        The names are still in C{LISTEN_FDNAMES}.
        """
        environ = os.environ if environ is None else environ
        descriptors: list[int] = []
        while True:
            try:
                endpoint = serverFromString(None, f"systemd:domain=UNIX:index={len(descriptors)}")
            except IndexError:
                break
            descriptors.append(endpoint.fileno)
        names = environ.get("LISTEN_FDNAMES", "")
        return cls(descriptors, names.split(":") if names and descriptors else ())

    def find(self, description: str, kwargs: Mapping[str, str]) -> int:
        """
        The descriptor a C{systemd:} endpoint string names.

        @raise usage.UsageError: naming what is wrong: no socket passed at
            all, an index or name not passed, or neither or both given.
        """
        index, name = kwargs.get("index"), kwargs.get("name")
        if (index is None) == (name is None):
            raise usage.UsageError(
                f"--listen {description}: give the socket's index=N or name=NAME (one of them)"
            )
        if not self.descriptors:
            raise usage.UsageError(
                f"--listen {description}: systemd passed this process no socket "
                "(LISTEN_FDS is unset, LISTEN_PID names another process, or LISTEN_FDNAMES "
                "is missing: systemd sets it, systemd-socket-activate with --fdname=NAME): "
                f"{HOW_TO_PASS}"
            )
        count = len(self.descriptors)
        passed = f"systemd passed {count} socket{'s' if count != 1 else ''}"
        if index is not None:
            if not index.isdigit():
                raise usage.UsageError(f"--listen {description}: bad index {index!r}")
            if int(index) >= count:
                raise usage.UsageError(
                    f"--listen {description}: no socket at index {index}: {passed} "
                    f"(index 0 to {count - 1})"
                )
            return self.descriptors[int(index)]
        if name not in self.names:
            named = ", ".join(self.names) or "none named"
            raise usage.UsageError(
                f"--listen {description}: no socket named {name!r}: {passed} ({named})"
            )
        return self.descriptors[self.names.index(name)]


def inspectSocket(description: str, fileno: int, domain: str) -> PassedSocket:
    """
    What the passed descriptor C{fileno} is, checked against the
    endpoint string's C{domain=}.

    @raise usage.UsageError: for a domain pycm does not know, a descriptor
        that is not a listening stream socket, or of another family.
    """
    family = DOMAINS.get(domain.upper())
    if family is None:
        raise usage.UsageError(
            f"--listen {description}: bad domain {domain!r}: expected UNIX, INET or INET6"
        )
    try:
        sock = socket.socket(fileno=fileno)
    except OSError as e:
        raise usage.UsageError(
            f"--listen {description}: descriptor {fileno} is not a socket "
            f"({e.strerror or e}): {HOW_TO_PASS}"
        ) from None
    try:
        if sock.family != family:
            raise usage.UsageError(
                f"--listen {description}: the socket passed is {sock.family.name[3:]}, "
                f"not {domain.upper()}"
            )
        listening = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
        if sock.type != socket.SOCK_STREAM or not listening:
            raise usage.UsageError(
                f"--listen {description}: the socket passed is not a listening stream "
                "socket (ListenStream= in the socket unit; not Accept=yes)"
            )
        address = sock.getsockname()
    finally:
        sock.detach()
    mode = None
    if family == socket.AF_UNIX and isinstance(address, str) and address[:1] not in ("", "\0"):
        try:
            mode = stat.S_IMODE(os.stat(address).st_mode)
        except OSError as e:
            raise usage.UsageError(
                f"--listen {description}: cannot read the mode of {address}: {e.strerror}"
            ) from None
    return PassedSocket(fileno, family, address, mode)
