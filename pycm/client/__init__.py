"""
The pycm client: a pipelining protocol client, the one-shot command line,
piped-stdin mode and the interactive shell.

The names below are imported when first used, so that importing the
one-shot command line (L{pycm.client.cli}) does not import Twisted.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "ClientProtocol": "pycm.client.protocol",
    "Disconnected": "pycm.client.protocol",
    "ProtocolError": "pycm.client.wire",
    "connect": "pycm.client.protocol",
    "defaultEndpoint": "pycm.client.config",
    "defaultStateDir": "pycm.statepaths",
    "errorFromReply": "pycm.client.wire",
    "findToken": "pycm.client.config",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    # __import__ rather than importlib, which would cost the one-shot
    # client another import.
    return getattr(__import__(module, fromlist=[name]), name)
