"""
The daemon's token file (L{pycm.daemon.auth.readToken}), as C{--auth-token-file}
or the state directory's C{token}: a weak, malformed or huge one is refused
with its reason, the token itself never in it.
"""

from __future__ import annotations

import os

from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from pycm.daemon.auth import (
    MAX_TOKEN_FILE_SIZE,
    MIN_TOKEN_LENGTH,
    loadOrCreateToken,
    readToken,
)
from pycm.errors import BadRequest


class TokenFileTests(SynchronousTestCase):
    """What a token file must hold."""

    def tokenFile(self, content: bytes) -> FilePath[str]:
        path = FilePath(self.mktemp())
        path.setContent(content)
        os.chmod(path.path, 0o600)
        return path

    def test_tooShort(self) -> None:
        """A token of fewer than 16 bytes (one character, say) is refused."""
        for content in (b"a\n", b"x" * (MIN_TOKEN_LENGTH - 1)):
            error = self.assertRaises(BadRequest, readToken, self.tokenFile(content))
            self.assertIn("too short", str(error))
        self.assertEqual(readToken(self.tokenFile(b"x" * MIN_TOKEN_LENGTH + b"\n")),
                         "x" * MIN_TOKEN_LENGTH)

    def test_spacesAndControls(self) -> None:
        """
        A space, a tab, a newline or another control character inside the
        token is refused, without the token in the message; surrounding
        whitespace is not part of the token.
        """
        for inside in (b" ", b"\t", b"\n", b"\x1b", b"\x7f"):
            content = b"secretsecret" + inside + b"secretsecret\n"
            error = self.assertRaises(BadRequest, readToken, self.tokenFile(content))
            self.assertIn("space or a control character", str(error))
            self.assertNotIn("secretsecret", str(error))
        self.assertEqual(readToken(self.tokenFile(b"  secretsecretsecret \r\n")),
                         "secretsecretsecret")

    def test_notText(self) -> None:
        """Bytes that are not UTF-8 are refused with a reason, not a traceback."""
        error = self.assertRaises(BadRequest, readToken, self.tokenFile(b"\xff" * 20))
        self.assertIn("not UTF-8", str(error))

    def test_huge(self) -> None:
        """
        A file larger than 4 KiB (here a 50 GB sparse one) is refused after
        reading at most 4 KiB + 1: no MemoryError.
        """
        path = self.tokenFile(b"")
        with open(path.path, "r+b") as f:
            f.truncate(50 * 1024**3)
        error = self.assertRaises(BadRequest, readToken, path)
        self.assertIn(f"larger than {MAX_TOKEN_FILE_SIZE} bytes", str(error))
        path = self.tokenFile(b"x" * MAX_TOKEN_FILE_SIZE)
        self.assertEqual(readToken(path), "x" * MAX_TOKEN_FILE_SIZE)

    def test_stateDirToken(self) -> None:
        """The state directory's token file is held to the same rules."""
        path = self.tokenFile(b"weak\n")
        self.assertRaises(BadRequest, loadOrCreateToken, path)
