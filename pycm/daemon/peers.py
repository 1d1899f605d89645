"""
Who is at the other end of a connection: as the log shows it
(L{describePeer}), and as the connection cap groups it (L{peerGroup}).

A UNIX socket has C{SO_PEERCRED}; TCP has nothing like it, but a loopback
peer is a socket on this host, whose owner (its uid) the kernel tells by
its four addresses through C{NETLINK_SOCK_DIAG} (L{pycm.socketowner}).
"""

from __future__ import annotations

import socket
import struct
from typing import Any

from twisted.internet.address import UNIXAddress
from twisted.internet.stdio import PipeAddress

from pycm.socketowner import loopbackPeerUID

__all__ = ["describePeer", "loopbackPeerUID", "peerGroup"]


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
