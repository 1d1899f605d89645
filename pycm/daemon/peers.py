"""
Who is at the other end of a connection: as the log shows it
(L{describePeer}), and as the connection cap groups it (L{peerGroup}).

A UNIX socket has C{SO_PEERCRED}; TCP has nothing like it, but a loopback
peer is a socket on this host, whose owner (its uid) the kernel tells by
its four addresses through C{NETLINK_SOCK_DIAG}, as C{ss -e} shows it.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from typing import Any

from twisted.internet.address import UNIXAddress
from twisted.internet.stdio import PipeAddress

_NETLINK_SOCK_DIAG = 4
_SOCK_DIAG_BY_FAMILY = 20
_NLM_F_REQUEST = 1
_NLMSG_ERROR = 2
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
    address = ipaddress.ip_address(host)
    family = socket.AF_INET if address.version == 4 else socket.AF_INET6
    return family, address.packed.ljust(16, b"\0")


def loopbackPeerUID(peer: tuple[str, int], local: tuple[str, int]) -> int | None:
    """
    The uid owning the peer socket of a loopback TCP connection (C{peer}
    and C{local} as C{(host, port)} from this end), or None when the
    kernel cannot say (not Linux, not loopback, gone already).
    """
    try:
        family, peerAddress = _packed(peer[0])
        _, localAddress = _packed(local[0])
        if not ipaddress.ip_address(peer[0]).is_loopback:
            return None
        request = _REQUEST.pack(family, socket.IPPROTO_TCP, 0, _ALL_STATES) + _SOCKID.pack(
            peer[1], local[1], peerAddress, localAddress
        ) + _SOCKID_TAIL.pack(0, _INET_DIAG_NOCOOKIE, _INET_DIAG_NOCOOKIE)
        message = _HEADER.pack(
            _HEADER.size + len(request), _SOCK_DIAG_BY_FAMILY, _NLM_F_REQUEST, 1, 0
        ) + request
        with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, _NETLINK_SOCK_DIAG) as query:
            query.settimeout(1.0)
            query.sendto(message, (0, 0))
            reply = query.recv(8192)
    except (OSError, ValueError, AttributeError):
        return None
    if len(reply) < _HEADER.size + _UID_OFFSET + _UID.size:
        return None
    _, kind, _, _, _ = _HEADER.unpack_from(reply)
    if kind != _SOCK_DIAG_BY_FAMILY:
        return None
    (uid,) = _UID.unpack_from(reply, _HEADER.size + _UID_OFFSET)
    return int(uid)


def peerGroup(transport: object) -> str:
    """
    Which peer a TCP connection comes from, for sharing out the places of
    connections that have not authenticated: C{uid:N} for a loopback peer
    whose owner the kernel tells, else C{host:ADDRESS}.
    """
    try:
        peer = transport.getPeer()  # type: ignore[attr-defined]
        local = transport.getHost()  # type: ignore[attr-defined]
        host, port = peer.host, peer.port
    except Exception:
        return "?"
    uid = loopbackPeerUID((host, port), (local.host, local.port))
    return f"host:{host}" if uid is None else f"uid:{uid}"


def describePeer(transport: Any) -> str:
    """
    The peer of a connection as the log shows it: C{HOST:PORT} for TCP and
    TLS (C{[HOST]:PORT} for IPv6); for a UNIX socket, the socket's path, the
    connection's descriptor (which tells apart connections from one
    process) and the connecting process's pid and uid from C{SO_PEERCRED},
    as in C{unix:/run/pycm.sock#12 pid=4242 uid=1000}; C{stdio} for the
    standard input and output.
    """
    try:
        peer = transport.getPeer()
    except Exception:
        return "?"
    host = getattr(peer, "host", None)
    if host is not None:
        port = getattr(peer, "port", "")
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if isinstance(peer, UNIXAddress):
        return _describeUNIXPeer(transport)
    if isinstance(peer, PipeAddress):
        return "stdio"
    return type(peer).__name__


def _describeUNIXPeer(transport: Any) -> str:
    # The peer's own address is almost always unnamed: the listener's path
    # says where it came in.
    try:
        path = transport.getHost().name
    except Exception:
        path = None
    if isinstance(path, bytes):
        path = path.decode("utf-8", "replace")
    described = f"unix:{path or '?'}"
    sock = getattr(transport, "socket", None)
    if sock is None:
        return described
    try:
        described += f"#{sock.fileno()}"
        credentials = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
    except OSError:
        return described
    pid, uid, _ = _PEERCRED.unpack(credentials)
    return f"{described} pid={pid} uid={uid}"


#: C{struct ucred}: pid, uid, gid.
_PEERCRED = struct.Struct("3i")
