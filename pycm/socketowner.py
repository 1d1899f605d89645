"""
Which uid owns a TCP socket on this host, told by the kernel through
C{NETLINK_SOCK_DIAG} from the socket's four addresses, as C{ss -e} shows
it: the daemon asks it of a loopback peer (L{pycm.daemon.peers}), and the
client of the socket it connected to before it sends a token found in a
file (L{pycm.client.tokensafety}).  A socket C{accept} returns is owned by
the listening socket's owner.

The standard library only: the one-shot client uses it before it imports
anything else.
"""

from __future__ import annotations

import ipaddress
import socket
import struct

_NETLINK_SOCK_DIAG = 4
_SOCK_DIAG_BY_FAMILY = 20
_NLM_F_REQUEST = 1
_INET_DIAG_NOCOOKIE = 0xFFFFFFFF
_ALL_STATES = 0xFFFFFFFF

#: struct nlmsghdr: length, type, flags, sequence, port id.
_HEADER = struct.Struct("=IHHII")
#: struct inet_diag_req_v2 with its inet_diag_sockid: family, protocol,
#: extensions, pad, states; source and destination ports (network order),
#: addresses (16 bytes each), interface, cookie.
_REQUEST = struct.Struct("=BBBxI")
_SOCKID = struct.Struct("!HH16s16s")
_SOCKID_TAIL = struct.Struct("=III")
#: Where the uid sits in struct inet_diag_msg, after the header.
_UID = struct.Struct("=I")
_UID_OFFSET = 4 + 48 + 12


def _packed(host: str) -> tuple[int, bytes]:
    address = ipaddress.ip_address(host.partition("%")[0])
    family = socket.AF_INET if address.version == 4 else socket.AF_INET6
    return family, address.packed.ljust(16, b"\0")


def diagRequest(source: tuple[str, int], destination: tuple[str, int]) -> bytes:
    """
    The C{SOCK_DIAG_BY_FAMILY} request for the TCP socket whose own
    address is C{source} and whose peer is C{destination}, as C{(host,
    port)}.

    @raise ValueError: for an address that is not an IP address.
    """
    family, sourceAddress = _packed(source[0])
    _, destinationAddress = _packed(destination[0])
    request = _REQUEST.pack(family, socket.IPPROTO_TCP, 0, _ALL_STATES) + _SOCKID.pack(
        source[1], destination[1], sourceAddress, destinationAddress
    ) + _SOCKID_TAIL.pack(0, _INET_DIAG_NOCOOKIE, _INET_DIAG_NOCOOKIE)
    return _HEADER.pack(
        _HEADER.size + len(request), _SOCK_DIAG_BY_FAMILY, _NLM_F_REQUEST, 1, 0
    ) + request


def replyUID(reply: bytes) -> int | None:
    """
    The socket owner's uid in the kernel's C{reply} to L{diagRequest}, or
    None when it found no such socket (an C{NLMSG_ERROR}) or the reply is
    short.
    """
    if len(reply) < _HEADER.size + _UID_OFFSET + _UID.size:
        return None
    _, kind, _, _, _ = _HEADER.unpack_from(reply)
    if kind != _SOCK_DIAG_BY_FAMILY:
        return None
    (uid,) = _UID.unpack_from(reply, _HEADER.size + _UID_OFFSET)
    return int(uid)


def socketUID(source: tuple[str, int], destination: tuple[str, int]) -> int | None:
    """
    The uid owning this host's TCP socket whose own address is C{source}
    and whose peer is C{destination}, or None when the kernel cannot say
    (not Linux, no such socket here, gone already).
    """
    try:
        message = diagRequest(source, destination)
        with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, _NETLINK_SOCK_DIAG) as query:
            query.settimeout(1.0)
            query.sendto(message, (0, 0))
            reply = query.recv(8192)
    except (OSError, ValueError, AttributeError):
        return None
    return replyUID(reply)


def loopbackPeerUID(peer: tuple[str, int], local: tuple[str, int]) -> int | None:
    """
    The uid owning the peer socket of a loopback TCP connection (C{peer}
    and C{local} as C{(host, port)} from this end), or None when the
    kernel cannot say (not Linux, not loopback, gone already).
    """
    try:
        if not ipaddress.ip_address(peer[0]).is_loopback:
            return None
    except ValueError:
        return None
    return socketUID(peer, local)
