"""
The token of an C{auth TOKEN} line hidden as it is typed, as password
prompts hide theirs: the shell's line editor (L{MaskingLineEditor}, mixed
into L{pycm.client.shell.ShellProtocol}) shows C{auth } then one C{*} a
character, whatever edits the line (typing, deleting, history, Tab).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

_BLANKS = (b" ", b"\t")
_QUOTES = (b"'", b'"')
MASK = b"*"


def maskedFrom(buffer: Sequence[bytes]) -> int | None:
    """
    Where the hidden part of the line C{buffer} (its characters) starts:
    after C{auth} (any case, after blanks or a quote) and the blanks after
    it; None for a line that is no C{auth} line.  Any character after the
    word is hidden, even one typed before the blank, so that deleting the
    blank never shows the token.
    """
    start = 0
    while start < len(buffer) and buffer[start] in (*_BLANKS, *_QUOTES):
        start += 1
    if b"".join(buffer[start:start + 4]).lower() != b"auth":
        return None
    end = start + 4
    if end < len(buffer) and buffer[end] in _QUOTES:
        end += 1
    while end < len(buffer) and buffer[end] in _BLANKS:
        end += 1
    return end


def shown(buffer: Sequence[bytes]) -> bytes:
    """The line C{buffer} as the terminal shows it (its token hidden)."""
    start = maskedFrom(buffer)
    if start is None:
        return b"".join(buffer)
    return b"".join(buffer[:start]) + MASK * (len(buffer) - start)


class MaskingLineEditor:
    """
    A mixin for a conch C{RecvLine} whose C{drawInputLine} writes
    L{shown}: a line that is or was an C{auth} line is drawn again after
    each edit rather than echoed, so its token never reaches the screen.

    The class it is mixed into provides C{drawInputLine} and
    C{_rowsAboveCursor} (how many rows of the input line are above the
    cursor).
    """

    lineBuffer: list[bytes]
    lineBufferIndex: int
    mode: str
    terminal: Any
    if TYPE_CHECKING:
        def drawInputLine(self) -> None: ...
        def _rowsAboveCursor(self) -> int: ...

    def redrawInputLine(self, rowsAbove: int) -> None:
        """Erase the input line, the cursor C{rowsAbove} rows below its start; draw it again."""
        if rowsAbove:
            self.terminal.cursorUp(rowsAbove)
        self.terminal.write(b"\r")
        self.terminal.eraseToDisplayEnd()
        self.drawInputLine()

    def _edit(self, edit: Any, native: Any) -> None:
        """Apply C{edit}; echo it with C{native} unless the line is masked."""
        before = maskedFrom(self.lineBuffer)
        if before is None:
            native()
            if maskedFrom(self.lineBuffer) is None:
                return
            # Became an auth line: what native echoed is drawn again.
            self.redrawInputLine(self._rowsAboveCursor())
            return
        rows = self._rowsAboveCursor()
        edit()
        self.redrawInputLine(rows)

    def characterReceived(self, ch: bytes, moreCharactersComing: bool) -> None:
        def edit() -> None:
            if self.mode == "insert":
                self.lineBuffer.insert(self.lineBufferIndex, ch)
            else:
                self.lineBuffer[self.lineBufferIndex:self.lineBufferIndex + 1] = [ch]
            self.lineBufferIndex += 1

        self._edit(edit, lambda: super(MaskingLineEditor, self)  # type: ignore[misc]
                   .characterReceived(ch, moreCharactersComing))

    def handle_BACKSPACE(self) -> None:
        def edit() -> None:
            if self.lineBufferIndex > 0:
                self.lineBufferIndex -= 1
                del self.lineBuffer[self.lineBufferIndex]

        self._edit(edit, super().handle_BACKSPACE)  # type: ignore[misc]

    def handle_DELETE(self) -> None:
        def edit() -> None:
            if self.lineBufferIndex < len(self.lineBuffer):
                del self.lineBuffer[self.lineBufferIndex]

        self._edit(edit, super().handle_DELETE)  # type: ignore[misc]
