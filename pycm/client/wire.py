"""
The client's reading of the daemon's lines, with no I/O and no Twisted:
shared by the reactor's L{pycm.client.protocol.ClientProtocol} and the
blocking one-shot client (L{pycm.client.oneshot}).
"""

from __future__ import annotations

import socket
import struct

from pycm import errors

#: Error classes by protocol error code.
ERROR_CLASSES: dict[str, type[errors.PycmError]] = {
    cls.code: cls
    for cls in (
        errors.BadRequest,
        errors.InvalidName,
        errors.NotFound,
        errors.Conflict,
        errors.NoImage,
        errors.Unauthorized,
        errors.TooLong,
        errors.Unavailable,
        errors.BackendError,
        errors.InternalError,
    )
}

#: The error codes of a request the daemon refuses as malformed (an unknown
#: command or option, a missing argument, a bad value, a name the naming
#: rule refuses): usage errors, as the client's own are (exit status 2).
USAGE_CODES = frozenset({errors.BadRequest.code, errors.InvalidName.code})


def isUsageError(error: errors.PycmError) -> bool:
    """Whether an C{ERR} reply says the request was malformed (L{USAGE_CODES})."""
    return error.code in USAGE_CODES


#: The longest reply line a client takes.  Replies are one line each, and
#: some are big: a C{list} of 1,000 containers is a few hundred KB, C{logs
#: --tail=N} can be more.  16 MiB refuses no legitimate reply, while a
#: broken or hostile server still cannot make a client buffer without end.
MAX_REPLY_LENGTH = 16 * 1024 * 1024


class ConnectionGone(Exception):
    """
    The connection to the daemon is gone: what a request still waiting for
    its reply fails with, on either of the client's paths (the reactor's
    L{pycm.client.protocol.Disconnected} is one).
    """

    def __str__(self) -> str:
        return "the connection to the pycm daemon was lost"


class ProtocolError(Exception):
    """The daemon sent a line that is not C{OK}, C{ERR} or C{EVENT}."""


def errorFromReply(code: str, message: str) -> errors.PycmError:
    """
    Build the L{pycm.errors} exception for C{ERR <code> <message>}.

    The message is kept exactly as the server sent it (the constructors of
    some classes format their own message, so they are bypassed).  An
    unknown code gives a plain L{errors.PycmError} whose C{code} is that
    code.
    """
    cls = ERROR_CLASSES.get(code, errors.PycmError)
    error = cls.__new__(cls)
    errors.PycmError.__init__(error, message)
    if cls is errors.PycmError:
        error.code = code
    return error


def isSilentLine(line: str) -> bool:
    """
    True for a blank or comment line: the server gives it no reply, so it
    must never be sent as a request.
    """
    stripped = line.strip()
    return not stripped or stripped.startswith("#")


def resetOnClose(sock: object) -> None:
    """
    Give a TCP socket a zero linger, so that closing it sends a reset, not
    a FIN (anything else: nothing).
    """
    if isinstance(sock, socket.socket) and sock.family in (socket.AF_INET, socket.AF_INET6):
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
