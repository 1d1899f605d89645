"""
The signals pycm sent each Docker container since its last start
(L{SignalsSent}): a container pycm killed with N exits -N, not the
engine's 128+N (docs/docker-backend.md, exit codes).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping

from twisted.logger import Logger

from pycm.files import replacePrivately
from pycm.statedir import UnsafeStateDir, openNoFollow


class SignalsSent:
    """
    Container name -> the signals pycm sent it, kept in C{path} (a JSON
    object) when given, written before the signal goes out: a daemon
    restart between a stop and an C{inspect} does not turn -15 into 143.
    A missing or unreadable file is an empty memory; a file that cannot be
    written is logged and the memory kept in this process only.
    """

    log = Logger()

    def __init__(self, path: str | None = None) -> None:
        self.path = path
        self._sent: dict[str, frozenset[int]] = {}
        self._writeFailed = False
        if path is not None:
            self._sent = self._readFile(path)
        #: Loaded from the file and not seen since: sent by an earlier daemon.
        self._unverified = set(self._sent)

    def get(self, name: str) -> frozenset[int]:
        """The signals sent to C{name}."""
        return self._sent.get(name, frozenset())

    def names(self) -> frozenset[str]:
        """The containers something is remembered of."""
        return frozenset(self._sent)

    def add(self, name: str, *signums: int) -> None:
        """Note that C{signums} are being sent to C{name}."""
        self._unverified.discard(name)
        before = self._sent.get(name, frozenset())
        after = before.union(signums)
        if after != before:
            self._sent[name] = after
            self._rewriteFile()

    def forget(self, name: str) -> None:
        """C{name} started again, was created anew or is gone."""
        self._unverified.discard(name)
        if self._sent.pop(name, None) is not None:
            self._rewriteFile()

    def settle(self, before: Iterable[str], running: Mapping[str, bool]) -> None:
        """
        Compare with the engine's containers (C{running}: name -> is it
        running?), listed when L{names} was C{before}: forget those of
        C{before} that are gone, and those an earlier daemon noted that run
        now (started again while no daemon saw it: what was sent no longer
        applies).  A name noted while the list was taken is left alone.
        """
        stale = [
            name
            for name in before
            if name in self._sent
            and (name not in running or (name in self._unverified and running[name]))
        ]
        self._unverified.clear()
        for name in stale:
            del self._sent[name]
        if stale:
            self._rewriteFile()

    def _readFile(self, path: str) -> dict[str, frozenset[int]]:
        """What C{path} remembers (nothing if missing or unreadable)."""
        try:
            fd = openNoFollow(path, os.O_RDONLY)
            with os.fdopen(fd, "rb") as f:
                data = json.loads(f.read())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, UnsafeStateDir) as e:
            self.log.warn("ignoring {path}: {error}", path=path, error=e)
            return {}
        if not isinstance(data, dict):
            self.log.warn("ignoring {path}: not a JSON object", path=path)
            return {}
        sent: dict[str, frozenset[int]] = {}
        for name, signums in data.items():
            if isinstance(signums, list) and all(type(s) is int for s in signums):
                sent[str(name)] = frozenset(signums)
        return sent

    def _rewriteFile(self) -> None:
        """
        Replace the file, if there is one, with what is remembered now; a
        failure is logged once and never raised (the memory stays).
        """
        if self.path is None:
            return
        data = {name: sorted(signums) for name, signums in sorted(self._sent.items())}
        try:
            replacePrivately(self.path, json.dumps(data).encode("ascii"), sync=True)
        except OSError as e:
            if not self._writeFailed:
                self._writeFailed = True
                self.log.warn(
                    "cannot write {path} ({error}): after a daemon restart, containers "
                    "pycm stopped may show exit code 128+N instead of -N",
                    path=self.path,
                    error=e,
                )
