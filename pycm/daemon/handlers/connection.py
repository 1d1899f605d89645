"""
The commands about the connection itself rather than containers: C{ping},
C{version}, C{auth} and C{exit} (C{help} reads the command table, and lives
with it in L{pycm.daemon.commands}).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pycm
from pycm.daemon.auth import MAX_FAILED_AUTH, tokensMatch
from pycm.daemon.session import Session
from pycm.errors import Unauthorized


def ping(session: Session, options: Mapping[str, Any], args: Sequence[str]) -> Any:
    return "pong"


def version(session: Session, options: Mapping[str, Any], args: Sequence[str]) -> Any:
    return {
        "server": "pycm",
        "version": pycm.__version__,
        "protocol": pycm.PROTOCOL_VERSION,
        "backend": session.state.backend.name,
    }


def auth(session: Session, options: Mapping[str, Any], args: Sequence[str]) -> Any:
    """
    Check the token.  A wrong one is refused and counted even on a
    connection that needs none or has authenticated already (it stays
    so); the third closes the connection.
    """
    token = session.state.token
    if token is None:
        session.authenticated = True
        return "authenticated"
    if tokensMatch(token, args[0]):
        session.authenticated = True
        return "authenticated"
    session.failedAuth += 1
    # Never the token tried: it may be a real one, one character off.
    if session.mayLog("wrong token"):
        session.log.info(
            "{peer}: wrong token (failed auth attempt {count} of {limit})",
            peer=session.peer or "-",
            count=session.failedAuth,
            limit=MAX_FAILED_AUTH,
        )
    if session.failedAuth >= MAX_FAILED_AUTH:
        session.close(f"{MAX_FAILED_AUTH} failed auth attempts")
        raise Unauthorized("wrong token; too many tries, closing the connection")
    raise Unauthorized("wrong token")


def exit_(session: Session, options: Mapping[str, Any], args: Sequence[str]) -> Any:
    session.close()
    return "bye"
