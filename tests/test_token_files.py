"""
Token files, read by the same rules (L{pycm.tokenfile}) on both sides: the
daemon's (L{pycm.daemon.auth.readToken}), as C{--auth-token-file} or the
state directory's C{token}, and the one the client finds for the daemon it
connects to (L{pycm.client.config.daemonToken}).  A weak, malformed or huge
one is refused with its reason, the token itself never in it: by the
daemon at start, by the client with exit status 2, before it connects.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess

from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from pycm import tokenfile
from pycm.client.arguments import parseArguments
from pycm.client.exits import UsageError
from pycm.daemon import auth
from pycm.daemon.auth import (
    MAX_TOKEN_FILE_SIZE,
    MIN_TOKEN_LENGTH,
    loadOrCreateToken,
    readToken,
)
from pycm.errors import BadRequest
from tests.e2e import DEADLINE
from tests.test_client_e2e import clientCommand

#: The client's user in the unit tests: not root, whose state directory
#: would be /var/lib/pycm whatever the environment says.
USER = 1000

#: A good token, and files breaking each rule: (content, what is said).
GOOD = b"a-token-of-sixteen-bytes-or-more\n"
BAD = [
    (b"short-token\n", "is too short to be safe: it has 11 bytes, at least 16"),
    (b"secretsecret secretsecret\n", "has a space or a control character in it"),
    (b"secretsecret\tsecretsecret\n", "has a space or a control character in it"),
    (b"\xff" * 20, "is not UTF-8 text"),
    (b"\xef\xbb\xbfsecretsecretsecret\n",
     "starts with a byte-order mark (an editor's invisible character): remove it"),
    (b"x" * (MAX_TOKEN_FILE_SIZE + 1), f"is larger than {MAX_TOKEN_FILE_SIZE} bytes"),
]


def offsetAfterReading(test: SynchronousTestCase, content: bytes) -> int:
    """
    How far L{tokenfile.readTokenFrom} read into a file holding C{content}
    (read through a second descriptor sharing the file offset).
    """
    path = test.mktemp()
    with open(path, "wb") as f:
        f.write(content)
    fd = os.open(path, os.O_RDONLY)
    shared = os.dup(fd)
    test.addCleanup(os.close, shared)
    try:
        tokenfile.readTokenFrom(path, fd)
    except tokenfile.BadTokenFile:
        pass
    return os.lseek(shared, 0, os.SEEK_CUR)


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

    def test_sharedRules(self) -> None:
        """The daemon's rules are L{pycm.tokenfile}'s, which the client reads by too."""
        self.assertEqual((auth.MIN_TOKEN_LENGTH, auth.MAX_TOKEN_FILE_SIZE),
                         (tokenfile.MIN_TOKEN_LENGTH, tokenfile.MAX_TOKEN_FILE_SIZE))
        for content, said in BAD:
            error = self.assertRaises(BadRequest, readToken, self.tokenFile(content))
            self.assertIn(said, str(error))


class ReadingTests(SynchronousTestCase):
    """L{tokenfile.readTokenFrom} and L{tokenfile.readTokenFile}, which both sides use."""

    def test_readsAtMostOneByteBeyond(self) -> None:
        """
        No more than C{MAX_TOKEN_FILE_SIZE + 1} bytes of a file are read,
        however large it is (a buffered reader would read 8 KiB).
        """
        self.assertEqual(offsetAfterReading(self, b"x" * 100_000), MAX_TOKEN_FILE_SIZE + 1)
        self.assertEqual(offsetAfterReading(self, GOOD), len(GOOD))

    def test_notRegular(self) -> None:
        """A FIFO in a token file's place is refused at once, not waited on."""
        path = self.mktemp()
        os.mkfifo(path)
        error = self.assertRaises(tokenfile.BadTokenFile, tokenfile.readTokenFile, path)
        self.assertEqual(str(error), f"the token file {path} is not a regular file")
        self.assertEqual(error.path, path)

    def test_regularFileBounded(self) -> None:
        """
        L{tokenfile.readRegularFile}, which the client's C{tls:} files use
        too, reads at most one byte beyond its limit and refuses a device
        or a FIFO at once rather than reading or waiting forever.
        """
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(b"x" * 100)
        self.assertEqual(tokenfile.readRegularFile(path, 10), b"x" * 11)
        self.assertEqual(tokenfile.readRegularFile(path, 100), b"x" * 100)
        self.assertRaises(tokenfile.NotRegularFile, tokenfile.readRegularFile,
                          "/dev/zero", 10)
        fifo = self.mktemp()
        os.mkfifo(fifo)
        self.assertRaises(tokenfile.NotRegularFile, tokenfile.readRegularFile, fifo, 10)

    def test_rules(self) -> None:
        """Each rule broken is said, naming the file, never the token."""
        path = self.mktemp()
        for content, said in BAD:
            with open(path, "wb") as f:
                f.write(content)
            error = self.assertRaises(tokenfile.BadTokenFile, tokenfile.readTokenFile, path)
            self.assertIn(path, str(error))
            self.assertIn(said, str(error))
            for word in content.split():
                self.assertNotIn(word.decode("utf-8", "replace"), str(error))
        with open(path, "wb") as f:
            f.write(b" \n")
        self.assertRaises(tokenfile.EmptyTokenFile, tokenfile.readTokenFile, path)


def clientState(test: SynchronousTestCase, content: bytes, port: int = 8080) -> dict[str, str]:
    """
    The environment of a user whose daemon listens on C{tcp:127.0.0.1:PORT}
    with a token required, its token file holding C{content}.
    """
    home = os.path.abspath(test.mktemp())
    state = os.path.join(home, "pycm")
    os.makedirs(state)
    with open(os.path.join(state, "token"), "wb") as f:
        f.write(content)
    with open(os.path.join(state, "listeners"), "w") as f:
        json.dump([{"kind": "tcp", "host": "127.0.0.1", "port": port, "token": True}], f)
    os.chmod(os.path.join(state, "listeners"), 0o600)
    return {"XDG_STATE_HOME": home, "HOME": home}


class ClientTests(SynchronousTestCase):
    """The token file the client finds for the daemon it connects to."""

    def test_good(self) -> None:
        """A token file by the rules gives its token."""
        options = parseArguments(["ping"], clientState(self, GOOD), USER)
        self.assertEqual(options.token, GOOD.strip().decode())

    def test_bad(self) -> None:
        """
        A token file that breaks a rule is a usage error saying which file
        and what is wrong (and that the token was not sent), not a token
        sent as it is; the token is never in it.
        """
        for content, said in BAD:
            environ = clientState(self, content)
            path = os.path.join(environ["XDG_STATE_HOME"], "pycm", "token")
            error = self.assertRaises(UsageError, parseArguments, ["ping"], environ,
                                      USER)
            self.assertIn(f"{path} {said}" if "token file" in str(error) else said,
                          str(error))
            self.assertIn(path, str(error))
            self.assertTrue(str(error).endswith("(the token was not sent)"), str(error))
            self.assertFalse(error.hint)
            self.assertNotIn("secretsecret", str(error))

    def test_hugeNotReadWhole(self) -> None:
        """A 50 GB (sparse) token file is refused, not read into memory."""
        environ = clientState(self, b"")
        path = os.path.join(environ["XDG_STATE_HOME"], "pycm", "token")
        with open(path, "r+b") as f:
            f.truncate(50 * 1024**3)
        error = self.assertRaises(UsageError, parseArguments, ["ping"], environ,
                                  USER)
        self.assertIn(f"the token file {path} is larger than {MAX_TOKEN_FILE_SIZE} bytes",
                      str(error))

    def test_badButNotForThisEndpoint(self) -> None:
        """
        A bad token file is no concern of a connection it would not be
        sent over (another endpoint, C{--token}, C{$PYCM_TOKEN}): no error.
        """
        environ = clientState(self, b"short\n")
        for argv, env in [
            (["-H", "tcp:127.0.0.1:9999", "ping"], environ),
            (["-H", "unix:/run/pycm.sock", "ping"], environ),
            (["--token", "chosen-token", "ping"], environ),
            (["ping"], dict(environ, PYCM_TOKEN="chosen-token")),
        ]:
            options = parseArguments(argv, env, USER)
            self.assertNotEqual(options.token, "short", argv)

    def test_realClient(self) -> None:
        """
        The real client given a token file too short for its daemon's
        endpoint says so in one line and exits 2, without connecting, on
        both of its paths (as root in a mount namespace of its own: see
        L{clientCommand}).
        """
        listener = socket.socket()
        self.addCleanup(listener.close)
        listener.bind(("127.0.0.1", 0))
        listener.listen(5)
        port = listener.getsockname()[1]
        environ = clientState(self, b"short-token\n", port)
        path = ("/var/lib/pycm/token" if os.getuid() == 0
                else os.path.join(environ["XDG_STATE_HOME"], "pycm", "token"))
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYCM_")}
        env.update(environ, PYCM_HOST=f"tcp:127.0.0.1:{port}")
        for client in ("", "twisted"):
            result = subprocess.run(clientCommand(environ["HOME"], "ping"),
                                    capture_output=True, env=dict(env, PYCM_CLIENT=client),
                                    timeout=DEADLINE)
            self.assertEqual((result.returncode, result.stdout), (2, b""))
            self.assertEqual(result.stderr.decode().splitlines(), [
                f"pycm: the token in {path} is too short to be safe: it has 11 bytes, at "
                "least 16 are needed (a fresh one: python3 -c 'import secrets; "
                "print(secrets.token_urlsafe(32))') (the token was not sent)"])
        listener.setblocking(False)
        self.assertRaises(BlockingIOError, listener.accept)
