"""
The pycm client: a pipelining protocol client, the one-shot command line,
piped-stdin mode and the interactive shell.
"""

from pycm.client.config import defaultEndpoint, defaultStateDir, findToken
from pycm.client.protocol import (
    ClientProtocol,
    Disconnected,
    ProtocolError,
    connect,
    errorFromReply,
)

__all__ = [
    "ClientProtocol",
    "Disconnected",
    "ProtocolError",
    "connect",
    "defaultEndpoint",
    "defaultStateDir",
    "errorFromReply",
    "findToken",
]
