"""Tests for L{pycm.client.history}: the shell's history file."""

from __future__ import annotations

import os

from twisted.trial.unittest import SynchronousTestCase

from pycm.client.history import HistoryFile, defaultHistoryPath, isPrivate, isPrivateName

#: A token as the daemon makes them (L{pycm.daemon.auth.newToken}).
TOKEN = "aHYWNXq3s0d9Vb2LkJ7cRtZ1mPxE4uGf8oWiYhNeS5A"


class DefaultPathTests(SynchronousTestCase):
    """Where the history is kept."""

    def test_explicit(self) -> None:
        """C{PYCM_HISTORY} names the file; set empty, there is none."""
        self.assertEqual(defaultHistoryPath({"PYCM_HISTORY": "/x/h"}), "/x/h")
        self.assertIsNone(defaultHistoryPath({"PYCM_HISTORY": "", "HOME": "/h"}))

    def test_xdg(self) -> None:
        """C{$XDG_STATE_HOME/pycm/history}, when that is absolute."""
        self.assertEqual(defaultHistoryPath({"XDG_STATE_HOME": "/s", "HOME": "/h"}),
                         "/s/pycm/history")
        self.assertEqual(defaultHistoryPath({"XDG_STATE_HOME": "rel", "HOME": "/h"}),
                         "/h/.local/state/pycm/history")


class HistoryFileTests(SynchronousTestCase):
    """Reading and writing the history."""

    def setUp(self) -> None:
        self.dir = os.path.abspath(self.mktemp())
        self.path = os.path.join(self.dir, "pycm", "history")

    def content(self) -> bytes:
        with open(self.path, "rb") as f:
            return f.read()

    def test_missing(self) -> None:
        """No file yet: no lines and no problem."""
        history = HistoryFile(self.path)
        self.assertEqual(history.load(), [])
        self.assertIsNone(history.problem)

    def test_roundTrip(self) -> None:
        """
        Appended lines are loaded by the next session, oldest first, in a
        private file in a private directory.
        """
        history = HistoryFile(self.path)
        for line in ["ping", "run web host sleep 9", "list"]:
            history.append(line)
        self.assertEqual(HistoryFile(self.path).load(),
                         ["ping", "run web host sleep 9", "list"])
        self.assertEqual(os.stat(self.path).st_mode & 0o777, 0o600)
        self.assertEqual(os.stat(os.path.dirname(self.path)).st_mode & 0o777, 0o700)

    def test_notKept(self) -> None:
        """Blank lines, a repeat of the last line and C{auth} lines are not kept."""
        history = HistoryFile(self.path)
        for line in ["ping", "ping", "  ", "", "AUTH s3cret", "auth s3cret", "list", "ping"]:
            history.append(line)
        self.assertEqual(self.content(), b"ping\nlist\nping\n")
        self.assertTrue(isPrivate("  auth x"))
        self.assertFalse(isPrivate("author"))

    def test_quotedAuthNotKept(self) -> None:
        """An C{auth} line is known however it is quoted (as the shell splits it)."""
        history = HistoryFile(self.path)
        for line in ['"auth" s3cret', "'AUTH' s3cret", 'au""th s3cret', "\\auth s3cret",
                     "auth 'unbalanced", "ping"]:
            history.append(line)
        self.assertEqual(self.content(), b"ping\n")

    def test_quotedAuthWithItsToken(self) -> None:
        """C{"auth TOKEN"} quoted as one word is an C{auth} line too."""
        for line in ['"auth s3cret"', "'AUTH\ts3cret' ping"]:
            self.assertTrue(isPrivate(line), line)

    def test_pastedTokenNotKept(self) -> None:
        """
        A token pasted on a line of its own (one word that could be a token,
        and no command) is not kept; a short unknown word (a typo), a
        command, and an C{-e KEY=VALUE} line are kept as typed.
        """
        history = HistoryFile(self.path)
        for line in [TOKEN, f"  '{TOKEN}' ", "lisst", "unfollow", "ping",
                     "run -e PASSWORD=hunter2hunter2hunter2 web", "inspect a-web-frontend-name"]:
            history.append(line)
        self.assertEqual(self.content(), b"lisst\nunfollow\nping\n"
                         b"run -e PASSWORD=hunter2hunter2hunter2 web\n"
                         b"inspect a-web-frontend-name\n")
        self.assertNotIn(TOKEN.encode(), self.content())

    def test_privateNames(self) -> None:
        """
        An answer to "Enter container name:" that is an C{auth} line, or
        that is hidden as it is typed and could be no name, is private; a
        name that starts with C{auth} is a name.
        """
        for answer in [f"auth {TOKEN}", f"AUTH\t{TOKEN}", f"'auth' {TOKEN}",
                       f'"auth {TOKEN}"', f"auth:{TOKEN}"]:
            self.assertTrue(isPrivateName(answer), answer)
        for answer in ["web", "auth", "authdb", "auth-service.1", TOKEN]:
            self.assertFalse(isPrivateName(answer), answer)

    def test_authLinesDroppedOnLoad(self) -> None:
        """A token written by something else is not offered back."""
        os.makedirs(os.path.dirname(self.path))
        with open(self.path, "wb") as f:
            f.write(b"ping\nauth s3cret\n\n\xff\xfe bad\n" + TOKEN.encode() + b"\n")
        self.assertEqual(HistoryFile(self.path).load(), ["ping", "\ufffd\ufffd bad"])

    def test_oldLeaksScrubbed(self) -> None:
        """
        What an older pycm kept for an answer to "Enter container name:"
        (C{stop 'auth TOKEN'}), and any line holding the client's own
        token (C{run TOKEN}), is not loaded, and is gone from the file; a
        container named C{auth} is kept.
        """
        os.makedirs(os.path.dirname(self.path))
        with open(self.path, "wb") as f:
            f.write(f"ping\nstop 'auth {TOKEN}'\nrun short web\nrun auth\n".encode())
        self.assertEqual(HistoryFile(self.path, ("short",)).load(), ["ping", "run auth"])
        self.assertEqual(self.content(), b"ping\nrun auth\n")

    def test_knownTokenNotKept(self) -> None:
        """A line holding one of the client's tokens is not written down."""
        history = HistoryFile(self.path, ("short",))
        history.append("run -e KEY=short web")
        history.append("ping")
        self.assertEqual(self.content(), b"ping\n")

    def test_cutBack(self) -> None:
        """Loading cuts the file back to its last C{maxLines} lines."""
        history = HistoryFile(self.path)
        history.maxLines = 3
        for i in range(7):
            history.append(f"ping {i}")
        again = HistoryFile(self.path)
        again.maxLines = 3
        self.assertEqual(again.load(), ["ping 4", "ping 5", "ping 6"])
        self.assertEqual(self.content(), b"ping 4\nping 5\nping 6\n")
        self.assertEqual(os.stat(self.path).st_mode & 0o777, 0o600)
        self.assertEqual(os.listdir(os.path.dirname(self.path)), ["history"])

    def test_repeatOfLoadedLast(self) -> None:
        """The last line of an earlier session counts as the last line."""
        HistoryFile(self.path).append("ping")
        history = HistoryFile(self.path)
        history.load()
        history.append("ping")
        self.assertEqual(self.content(), b"ping\n")

    def test_symlinkRefused(self) -> None:
        """
        A symlink in the file's place is neither read nor written through:
        the history is then for the session only, and says why.
        """
        os.makedirs(os.path.dirname(self.path))
        target = os.path.join(self.dir, "elsewhere")
        with open(target, "wb") as f:
            f.write(b"secret\n")
        os.symlink(target, self.path)
        history = HistoryFile(self.path)
        self.assertEqual(history.load(), [])
        self.assertIn("cannot read the history file", history.problem or "")
        writer = HistoryFile(self.path)
        writer.append("ping")
        self.assertIn("cannot write the history file", writer.problem or "")
        with open(target, "rb") as f:
            self.assertEqual(f.read(), b"secret\n")

    def test_notARegularFile(self) -> None:
        """A directory (or any non-file) in its place: a problem, no crash, no hang."""
        os.makedirs(self.path)
        history = HistoryFile(self.path)
        self.assertEqual(history.load(), [])
        self.assertIn("not a regular file", history.problem or "")
        fifo = os.path.join(self.dir, "fifo")
        os.mkfifo(fifo)
        history = HistoryFile(fifo)
        self.assertEqual(history.load(), [])
        self.assertIn("not a regular file", history.problem or "")

    def test_madePrivate(self) -> None:
        """A file others can read is made private before it is used."""
        os.makedirs(os.path.dirname(self.path))
        with open(self.path, "w") as f:
            f.write("ping\n")
        os.chmod(self.path, 0o644)
        self.assertEqual(HistoryFile(self.path).load(), ["ping"])
        self.assertEqual(os.stat(self.path).st_mode & 0o777, 0o600)

    def test_unwritable(self) -> None:
        """A path that cannot be created: no exception, a problem said once."""
        os.makedirs(self.dir)
        blocker = os.path.join(self.dir, "pycm")
        with open(blocker, "wb"):
            pass
        history = HistoryFile(self.path)
        history.append("ping")
        problem = history.problem
        self.assertIn("cannot write the history file", problem or "")
        history.append("list")
        self.assertEqual(history.problem, problem)
