"""
Tests for L{pycm.statedir.checkStateDir} on the modes of the files in the
state directory: one that group or others may write may have been changed
by someone else, and is refused with the command that fixes it; one they
may only read (an older pycm under umask 022 made 0644) is fine.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile

from twisted.trial.unittest import SynchronousTestCase

from pycm.statedir import UnsafeStateDir, checkStateDir, openNoFollow


class FileModeTests(SynchronousTestCase):
    """The files of the state directory may be written by this user alone."""

    def setUp(self) -> None:
        self.state = os.path.abspath(self.mktemp())
        os.mkdir(self.state, 0o700)
        os.mkdir(os.path.join(self.state, "logs"), 0o700)

    def make(self, name: str, mode: int) -> str:
        path = os.path.join(self.state, name)
        with open(path, "wb") as f:
            f.write(b"x")
        os.chmod(path, mode)
        return path

    def test_writableRefused(self) -> None:
        """
        C{state.db}, C{events.mark} or a container log that group or others
        may write is refused, naming it and the C{chmod} to run; its mode
        is left as it was.
        """
        for name in ("state.db", "events.mark", "logs/lg.log"):
            for mode in (0o666, 0o620, 0o602):
                with self.subTest(name=name, mode=mode):
                    path = self.make(name, mode)
                    error = self.assertRaises(UnsafeStateDir, checkStateDir, self.state)
                    self.assertIn(path, str(error))
                    self.assertIn(f"mode {mode:o}", str(error))
                    self.assertIn(f"chmod go-w {path}", str(error))
                    self.assertEqual(os.stat(path).st_mode & 0o777, mode)
                    os.unlink(path)

    def test_readableAccepted(self) -> None:
        """Files an older pycm made 0644 (umask 022) are fine, and left so."""
        paths = [self.make(name, 0o644) for name in ("state.db", "events.mark", "logs/lg.log")]
        self.assertEqual(checkStateDir(self.state), [])
        for path in paths:
            self.assertEqual(os.stat(path).st_mode & 0o777, 0o644)

    def test_socketAccepted(self) -> None:
        """
        A UNIX socket a listener left there (its mode, 0660 or 0666, is its
        guard) is not a file pycm reads: it is not refused.
        """
        state = tempfile.mkdtemp(dir="/tmp")  # a socket's path is short
        self.addCleanup(shutil.rmtree, state)
        path = os.path.join(state, "pycm.sock")
        listening = socket.socket(socket.AF_UNIX)
        self.addCleanup(listening.close)
        listening.bind(path)
        os.chmod(path, 0o666)
        self.assertEqual(checkStateDir(state), [])

    def test_openRefusesWritable(self) -> None:
        """A state file opened later is refused the same way."""
        path = self.make("events.mark", 0o646)
        error = self.assertRaises(UnsafeStateDir, openNoFollow, path, os.O_RDWR)
        self.assertIn(f"chmod go-w {path}", str(error))
