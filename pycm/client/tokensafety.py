"""
Whether a token the client found by itself may go where it connected.

A token given with C{--token} or C{$PYCM_TOKEN} is the user's choice and
is sent as asked.  One found in a token file is offered only to an
endpoint the listeners file naming that token file lists
(L{pycm.client.config.daemonToken}); but that file outlives a daemon that
was killed, and another user may listen on the port since.  So once
connected, and before C{auth}, the client asks the kernel who owns the
socket at the other end (L{pycm.socketowner}: a socket C{accept} returns
belongs to the listener's owner) and sends the token only when that is the
token file's owner.  When the owner differs or cannot be told, the token
is not sent, the user is told why, and the client goes on without it.

The standard library only: the one-shot client uses it before it imports
anything else.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from pycm.socketowner import socketUID
from pycm.statepaths import LISTENERS_FILE

TYPE_CHECKING = False  # typing is for annotations only (see pycm.client.cli)
if TYPE_CHECKING:
    from typing import Any

    from pycm.client.arguments import CommandLine

Address = tuple[str, int]

#: The token sources the user chose (L{pycm.client.arguments.CommandLine}).
CHOSEN = frozenset({"--token", "$PYCM_TOKEN"})


def foundTokenFile(options: CommandLine) -> str | None:
    """The token file C{options.token} was read from, or None when the user gave it."""
    if not options.token or options.tokenSource is None or options.tokenSource in CHOSEN:
        return None
    return options.tokenSource


def _shown(address: Address | None) -> str:
    if address is None:
        return "the daemon's endpoint"
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def whyWithheld(
    options: CommandLine,
    local: Address | None,
    peer: Address | None,
    ownerOf: Callable[[Address, Address], int | None] = socketUID,
    fileOwner: Callable[[str], int] = lambda path: os.stat(path).st_uid,
) -> str | None:
    """
    Why the token must not be sent over the connection from C{local} to
    C{peer} (their C{(host, port)}, None when not TCP); None when it may:
    the user gave it, or the socket at C{peer} belongs to the token file's
    owner.

    @param ownerOf: the uid of this host's socket whose own address and
        peer are given (L{socketUID}).
    @param fileOwner: the uid owning a file.
    """
    path = foundTokenFile(options)
    if path is None:
        return None
    where = _shown(peer)
    anyway = "(to send it anyway, use --token or set PYCM_TOKEN)"
    try:
        owner = fileOwner(path)
    except OSError as e:
        return (f"cannot tell who owns {path} ({e.strerror or e}): the token was not "
                f"sent to {where} {anyway}")
    listener = None if local is None or peer is None else ownerOf(peer, local)
    if listener is None:
        return (f"cannot tell who listens at {where} (the kernel does not say): the "
                f"token in {path} was not sent {anyway}")
    if listener != owner:
        listeners = os.path.join(os.path.dirname(path), LISTENERS_FILE)
        return (f"{where} is not served by the daemon that wrote {listeners} (it "
                f"belongs to uid {listener}, the token file to uid {owner}): the token "
                f"was not sent {anyway}")
    return None


def _pair(address: Any) -> Address | None:
    if isinstance(address, tuple) and len(address) >= 2 and isinstance(address[0], str):
        return address[0], int(address[1])
    return None


def socketEnds(sock: Any) -> tuple[Address | None, Address | None]:
    """A socket's own and peer C{(host, port)}; None for each it cannot tell."""
    try:
        return _pair(sock.getsockname()), _pair(sock.getpeername())
    except (OSError, AttributeError):
        return None, None


def transportEnds(transport: Any) -> tuple[Address | None, Address | None]:
    """A Twisted transport's own and peer C{(host, port)}; None for each it cannot tell."""
    ends: list[Address | None] = []
    for get in ("getHost", "getPeer"):
        try:
            address = getattr(transport, get)()
            ends.append(_pair((address.host, address.port)))
        except Exception:
            ends.append(None)
    return ends[0], ends[1]
