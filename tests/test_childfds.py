"""
Tests for L{pycm.backends.process.childfds}: a child is given its own
descriptors and no other, and no spawn lists the daemon's descriptors.
These start real processes on the real reactor.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from twisted.internet import process as _process
from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from pycm.backends.process import childfds
from pycm.backends.process.childfds import HandedOnProcess, fileActions
from pycm.backends.process.spawn import Spawner

reactor: Any = _reactor

#: Prints the descriptors the child holds (its own, for the listing, too).
LIST_FDS = "import os; print(' '.join(sorted(os.listdir('/proc/self/fd'), key=int)))"


class Output(ProcessProtocol):
    """Collects stdout; C{ended} fires with it."""

    def __init__(self) -> None:
        self.ended: Deferred[bytes] = Deferred()
        self.output = b""

    def outReceived(self, data: bytes) -> None:
        self.output += data

    def processEnded(self, reason: Failure) -> None:
        self.ended.callback(self.output)


class HandedOnTests(TestCase):
    """The launcher and the exec helper, with many descriptors open in the daemon."""

    def setUp(self) -> None:
        self.spawner = Spawner(reactor)
        self.addCleanup(self.spawner.close)
        for _ in range(50):
            for fd in os.pipe():
                self.addCleanup(os.close, fd)
        self.listed: list[bool] = []
        listOpenFDs = _process._listOpenFDs

        def listing() -> Any:
            self.listed.append(True)
            return listOpenFDs()

        self.patch(_process, "_listOpenFDs", listing)

    def fdsOf(self, protocol: Output, expected: set[str]) -> Deferred[None]:
        self.assertIsInstance(protocol.transport, HandedOnProcess)
        self.assertEqual(self.listed, [])

        def check(output: bytes) -> None:
            fds = set(output.decode().split())
            # The one the child opens to list its own is there too.
            self.assertEqual(len(fds - expected), 1, output)
            self.assertLessEqual(expected, fds)

        return protocol.ended.addCallback(check)

    def test_launcher(self) -> None:
        """C{env -C DIR setsid -- COMMAND} holds stdin, stdout and stderr only."""
        protocol = Output()
        env = "/usr/bin/env" if os.path.exists("/usr/bin/env") else "/bin/env"
        command = [sys.executable, "-c", LIST_FDS]
        path = {"PATH": "/usr/bin:/bin"}
        self.spawner.spawnLauncher(protocol, (env, "setsid"), command, path, "/")
        return self.fdsOf(protocol, {"0", "1", "2"})

    def test_helper(self) -> None:
        """
        The exec helper holds stdout, stderr and its status pipe, which it
        closes on exec: the command holds stdin (which the helper opens),
        stdout and stderr only.
        """
        protocol = Output()
        command = [sys.executable, "-c", LIST_FDS]
        self.spawner.spawnHelper(protocol, sys.executable, sys.executable, command, {}, "/", [])
        return self.fdsOf(protocol, {"0", "1", "2"})


class StandardDescriptorsTests(TestCase):
    """The daemon's stdin, stdout and stderr reach a child only if it is given them."""

    def test_notGiven(self) -> None:
        """A child given stdout only holds no 0 and no 2."""
        protocol = Output()
        HandedOnProcess(
            reactor, sys.executable, [sys.executable, "-c", LIST_FDS], {}, None, protocol,
            childFDs={1: "r"},
        )  # fmt: skip

        def check(output: bytes) -> None:
            fds = set(output.decode().split())
            # Besides 1, only the one it opens to list them (0, the lowest free).
            self.assertEqual(fds, {"0", "1"})

        return protocol.ended.addCallback(check)


class FileActionsTests(SynchronousTestCase):
    """L{fileActions} and L{closeOnExecOnce}."""

    def test_onlyTheGivenDescriptors(self) -> None:
        """The actions name the descriptors given, and no other."""
        read, write = os.pipe()
        self.addCleanup(os.close, read)
        self.addCleanup(os.close, write)
        named = set()
        for action in fileActions({1: write, 2: write}):
            named.update(action[1:])
        self.assertLessEqual({1, 2, write}, named)
        self.assertNotIn(read, named)

    def test_closeOnExecOnce(self) -> None:
        """The first call makes every descriptor close-on-exec; later ones do nothing."""
        self.patch(childfds, "_closedOnExec", [])
        read, write = os.pipe()
        self.addCleanup(os.close, read)
        self.addCleanup(os.close, write)
        os.set_inheritable(read, True)
        childfds.closeOnExecOnce()
        self.assertFalse(os.get_inheritable(read))
        os.set_inheritable(write, True)
        childfds.closeOnExecOnce()
        self.assertTrue(os.get_inheritable(write))
