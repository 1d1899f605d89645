"""
Whether a container's command can be executed: under an init (docker-init,
Podman's catatonit) the engine starts a container whose command does not
exist, so the backend looks first, and reads the init's last words after.
"""

from __future__ import annotations

import posixpath
import re
from typing import Any

from twisted.internet import defer
from twisted.internet.defer import Deferred

from pycm.backends.docker.engine import EngineError
from pycm.backends.docker.follow import LogReader
from pycm.backends.docker.interfaces import IDockerEngine
from pycm.backends.docker.translate import commandOf
from pycm.errors import PycmError
from pycm.model import DEFAULT_PATH

_TINI_EXEC_FAILED = re.compile(r"\[FATAL tini \(\d+\)\] exec (.*) failed: (.*)")
#: Podman's init (catatonit) says this, and exits 1, when it cannot exec.
_CATATONIT_EXEC_FAILED = re.compile(r"ERROR \(catatonit:\d+\): failed to exec pid1: (.*)")


class ExecutableCheck:
    """Looks for containers' commands on one engine."""

    def __init__(self, engine: IDockerEngine, logs: LogReader) -> None:
        self.engine = engine
        self.logs = logs

    @defer.inlineCallbacks
    def missing(self, cid: str, data: dict[str, Any]) -> Any:
        """
        Why the container's command cannot be executed, or None if it can
        (as far as a look at its filesystem tells): C{HEAD
        /containers/ID/archive} of the command, along the container's
        C{PATH}.  C{data} is its inspect.
        """
        command = commandOf(data)
        path = command[0] if command else None
        if not path:
            return None
        config = data.get("Config") or {}
        searchPath = DEFAULT_PATH
        for item in config.get("Env") or ():
            if item.startswith("PATH="):
                searchPath = item[len("PATH=") :]
        if "/" in path:
            workdir = config.get("WorkingDir") or "/"
            candidates = [path if path.startswith("/") else posixpath.join(workdir, path)]
        else:
            candidates = [posixpath.join(d, path) for d in searchPath.split(":") if d]

        def exists(candidate: str) -> Deferred[bool]:
            d = self.engine.request("HEAD", f"/containers/{cid}/archive", {"path": candidate})

            def failed(f: Any) -> bool:
                return not (f.check(EngineError) and f.value.status == 404)

            return d.addCallbacks(lambda _: True, failed)

        if not candidates:
            return None
        found = yield defer.gatherResults([exists(c) for c in candidates])
        if any(found):
            return None
        if "/" in path:
            return f'exec: "{path}": no such file or directory'
        return f'exec: "{path}": executable file not found in $PATH'

    @defer.inlineCallbacks
    def failure(self, cid: str) -> Any:
        """
        Why the init could not run the command, from its last words, or
        None: with an init, a command that cannot be executed is not an
        engine start error but a quick exit 127 (126; catatonit 1) with
        this message.
        """
        try:
            lines = yield self.logs.read(cid, 5)
        except (EngineError, PycmError):
            return None
        for _, line in reversed(lines):
            match = _TINI_EXEC_FAILED.match(line.line)
            if line.stream == "stderr" and match:
                return f"exec {match.group(1)}: {match.group(2)}"
            match = _CATATONIT_EXEC_FAILED.match(line.line)
            if line.stream == "stderr" and match:
                return f"exec: {match.group(1)}"
        return None
