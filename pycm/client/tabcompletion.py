"""
Tab completion in the shell (L{TabCompletion}, a mixin of
L{pycm.client.shell.ShellProtocol}): the command word, an option of the
command, or a container name the daemon lists, as bash completes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pycm.client.commandtable import CLIENT_OPTIONS, clientSyntax
from pycm.client.protocol import ClientProtocol
from pycm.grammar import CommandSyntax, takesNextWord

#: Commands whose arguments are container names Tab completes.
NAME_COMMANDS = frozenset({
    "start", "stop", "restart", "kill", "rm", "inspect", "logs", "wait", "unfollow", "stats",
    "scale",
})


class TabCompletion:
    """
    Tab on a line editor: a mixin for a conch C{RecvLine} that provides
    C{asking} (the command waiting for a name), C{commands} (each command
    word's row), C{client} and C{printAbove}.
    """

    lineBuffer: list[bytes]
    lineBufferIndex: int
    asking: list[str] | None
    commands: Mapping[str, CommandSyntax]
    commandWords: list[str]
    client: ClientProtocol
    leaving: bool
    #: The line as the last Tab left it, until another key is pressed.
    _tabbedLine: list[bytes] | None = None

    if TYPE_CHECKING:
        def characterReceived(self, ch: bytes, moreCharactersComing: bool) -> None: ...
        def printAbove(self, lines: Sequence[str]) -> None: ...

    def keystrokeReceived(self, keyID: bytes | str, modifier: object) -> None:
        """A key other than Tab makes the next Tab a first one again."""
        if keyID != b"\t":
            self._tabbedLine = None
        super().keystrokeReceived(keyID, modifier)  # type: ignore[misc]

    def handle_TAB(self) -> None:
        """
        Tab completes the word before the cursor: the command word, an
        option of the command (from the daemon's table, and those the
        client reads itself), or a container name (asked of the daemon:
        completed when its reply comes, if the line has not changed
        meanwhile).  A unique match is completed; of several, the first
        Tab types their common start and a second Tab lists them, as bash
        does.
        """
        if self.lineBufferIndex != len(self.lineBuffer):
            return
        typed = b"".join(self.lineBuffer).decode("utf-8", "replace")
        if self.asking is not None:
            if self.asking[0].lower() != "run" and " " not in typed:
                self._completeNames(typed)
            return
        if " " not in typed:
            prefix = typed.lower()
            self._complete(prefix, [c for c in self.commandWords if c.startswith(prefix)])
            return
        words = typed.split(" ")
        current, before = words[-1], [w for w in words[:-1] if w]
        row = self.commands.get(before[0].lower())
        if row is None:
            return
        if current.startswith("-"):
            spellings = sorted({*row.optionSpellings(), *CLIENT_OPTIONS.get(row.name, ())})
            self._complete(current, [o for o in spellings if o.startswith(current)])
            return
        if row.name not in NAME_COMMANDS or (
            len(before) > 1 and takesNextWord(before[-1], clientSyntax(row))
        ):
            return
        self._completeNames(current)

    def _completeNames(self, prefix: str) -> None:
        """Complete a container name, once the daemon has said which exist."""
        before = list(self.lineBuffer)

        def listed(containers: Any) -> None:
            if self.leaving or self.lineBuffer != before:
                return
            names = sorted(str(c.get("name")) for c in containers if isinstance(c, dict))
            self._complete(prefix, [n for n in names if n.startswith(prefix)])

        self.client.request("list").addCallbacks(listed, lambda failure: None)

    def _complete(self, prefix: str, matches: list[str]) -> None:
        """
        Type the rest of a unique match (and a space), or the common start
        of several; list several when this Tab follows one that left the
        line as it is.
        """
        if len(matches) == 1:
            rest = matches[0][len(prefix):] + " "
        else:
            rest = os.path.commonprefix(matches)[len(prefix):]
        for ch in rest.encode("utf-8"):
            self.characterReceived(bytes([ch]), False)
        if len(matches) > 1 and (prefix or self.lineBuffer):
            if not rest and self._tabbedLine == self.lineBuffer:
                self.printAbove(["  ".join(matches)])
            self._tabbedLine = list(self.lineBuffer)
