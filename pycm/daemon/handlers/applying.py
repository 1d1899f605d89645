"""
The C{apply} command: one JSON document of services made the running set
(L{pycm.services}); C{--dry-run} says what it would do, C{--prune} also
removes the project's containers the document no longer lists.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from pycm.daemon.session import Session
from pycm.errors import BadRequest
from pycm.services.applier import Applier, ApplyResult
from pycm.services.definition import serviceSetFrom


def apply(session: Session, options: Mapping[str, Any], args: Sequence[str]) -> Any:
    try:
        document = json.loads(args[0])
    except ValueError as e:
        # The position only: the document may hold secrets.
        raise BadRequest(
            f"bad DOCUMENT: not JSON (line {getattr(e, 'lineno', '?')}, "
            f"column {getattr(e, 'colno', '?')})"
        ) from None
    services = serviceSetFrom(document, options.get("project"))
    state = session.state
    applier = Applier(state.backend, state.clock.seconds, state.events.record)
    d = applier.apply(
        services, prune=bool(options.get("prune")), dryRun=bool(options.get("dry-run"))
    )
    return d.addCallback(ApplyResult.toJSON)
