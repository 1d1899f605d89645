"""
Tests for L{pycm.daemon.notify}: C{sd_notify} without libsystemd, and the
daemon telling systemd it is ready, stopping, and alive.
"""

from __future__ import annotations

import os
import socket
import tempfile

from twisted.internet.defer import Deferred, fail
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from pycm.backends.memory import MemoryBackend
from pycm.daemon.eventlog import EventLog
from pycm.daemon.notify import SystemdNotifier, socketAddress, watchdogInterval
from pycm.daemon.service import PycmService
from pycm.daemon.session import DaemonState
from pycm.errors import BackendError


def parse(message: bytes) -> dict[str, str]:
    """One notify datagram as a dict."""
    return dict(line.split("=", 1) for line in message.decode().splitlines())


class Recorder:
    """A stand-in for the datagram send: keeps what would be sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, str]]] = []

    def __call__(self, address: str, message: bytes) -> None:
        self.sent.append((address, parse(message)))


class EnvironmentTests(SynchronousTestCase):
    def test_noSocketNothingSent(self) -> None:
        """Without NOTIFY_SOCKET nothing is sent, and no error."""
        notifier = SystemdNotifier.fromEnvironment(Clock(), {}, pid=7)
        self.assertIsNone(notifier.address)
        notifier.ready("ready")
        notifier.stopping()
        notifier.startWatchdog()
        notifier.stopWatchdog()

    def test_variablesRemoved(self) -> None:
        """
        Once read, the notify variables leave the daemon's environment:
        nothing it starts talks to systemd as if it were pycm.
        """
        environ = {"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "2000000",
                   "WATCHDOG_PID": "7", "PATH": "/bin"}
        notifier = SystemdNotifier.fromEnvironment(Clock(), environ, pid=7)
        self.assertEqual(environ, {"PATH": "/bin"})
        self.assertEqual(notifier.address, "/run/x")
        self.assertEqual(notifier.interval, 1.0)

    def test_abstractAddress(self) -> None:
        """C{@name} is C{name} in the abstract namespace; a path is itself."""
        self.assertEqual(socketAddress("@pycm/notify"), "\0pycm/notify")
        self.assertEqual(socketAddress("/run/systemd/notify"), "/run/systemd/notify")

    def test_watchdogInterval(self) -> None:
        """
        Half WATCHDOG_USEC, in seconds; none when unset, zero, malformed, or
        meant for another process (WATCHDOG_PID).
        """
        self.assertEqual(watchdogInterval({"WATCHDOG_USEC": "30000000"}, 5), 15.0)
        self.assertEqual(
            watchdogInterval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "5"}, 5), 15.0)
        self.assertIsNone(watchdogInterval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "6"}, 5))
        for usec in ("", "0", "-1", "soon"):
            self.assertIsNone(watchdogInterval({"WATCHDOG_USEC": usec}, 5), usec)

    def test_watchdogWithoutSocket(self) -> None:
        """WATCHDOG_USEC alone (no socket to send to) starts nothing."""
        clock = Clock()
        notifier = SystemdNotifier.fromEnvironment(clock, {"WATCHDOG_USEC": "1000000"}, pid=1)
        notifier.startWatchdog()
        self.assertEqual(clock.getDelayedCalls(), [])


class MessageTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.sent = Recorder()
        self.notifier = SystemdNotifier(self.clock, "/run/n", 5.0, pid=42, send=self.sent)

    def test_ready(self) -> None:
        """READY=1 carries the main pid and the status line."""
        self.notifier.ready("ready: listening on unix:/run/pycm/pycm.sock")
        self.assertEqual(self.sent.sent, [("/run/n", {
            "READY": "1", "MAINPID": "42",
            "STATUS": "ready: listening on unix:/run/pycm/pycm.sock"})])

    def test_stopping(self) -> None:
        """STOPPING=1 says shutdown started."""
        self.notifier.stopping()
        [(_, fields)] = self.sent.sent
        self.assertEqual(fields["STOPPING"], "1")

    def test_watchdog(self) -> None:
        """
        WATCHDOG=1 at once, then every interval while the reactor runs, and
        none once stopped.
        """
        self.notifier.startWatchdog()
        self.notifier.startWatchdog()  # twice: still one timer
        self.clock.advance(5)
        self.clock.advance(5)
        self.assertEqual([f for _, f in self.sent.sent], [{"WATCHDOG": "1"}] * 3)
        self.notifier.stopWatchdog()
        self.clock.advance(50)
        self.assertEqual(len(self.sent.sent), 3)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_brokenSocketLoggedOnce(self) -> None:
        """A socket that refuses is logged once, never raised, and tried again."""
        calls: list[bytes] = []

        def refuse(address: str, message: bytes) -> None:
            calls.append(message)
            raise ConnectionRefusedError(111, "Connection refused")

        events: list[dict[str, object]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        notifier = SystemdNotifier(self.clock, "\0gone", 1.0, send=refuse)
        notifier.ready("ready")
        notifier.startWatchdog()
        self.clock.advance(1)
        notifier.stopping()
        notifier.stopWatchdog()
        self.assertEqual(len(calls), 4)
        warnings = [e for e in events if "cannot notify systemd" in str(e.get("log_format"))]
        self.assertEqual(len(warnings), 1)
        self.assertEqual(warnings[0]["address"], "@gone")


class RealSocketTests(SynchronousTestCase):
    def setUp(self) -> None:
        directory = tempfile.mkdtemp()
        self.addCleanup(os.rmdir, directory)
        self.path = os.path.join(directory, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.addCleanup(os.unlink, self.path)
        self.addCleanup(self.sock.close)
        self.sock.settimeout(5)

    def test_datagramsArrive(self) -> None:
        """Each message is one datagram on the real socket, in order."""
        notifier = SystemdNotifier.fromEnvironment(Clock(), {"NOTIFY_SOCKET": self.path})
        notifier.ready("ready")
        notifier.stopping()
        self.assertEqual(parse(self.sock.recv(4096))["READY"], "1")
        self.assertEqual(parse(self.sock.recv(4096))["STOPPING"], "1")

    def test_abstractSocket(self) -> None:
        """An C{@name} NOTIFY_SOCKET reaches a socket in the abstract namespace."""
        name = f"pycm-test-{os.getpid()}-{id(self)}"
        abstract = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(abstract.close)
        abstract.bind("\0" + name)
        abstract.settimeout(5)
        notifier = SystemdNotifier.fromEnvironment(Clock(), {"NOTIFY_SOCKET": "@" + name})
        notifier.status("hello")
        self.assertEqual(parse(abstract.recv(4096)), {"STATUS": "hello"})

    def test_nobodyListening(self) -> None:
        """A path nobody binds: logged, not raised."""
        notifier = SystemdNotifier(Clock(), self.path + "-missing", None)
        notifier.ready("ready")
        self.assertTrue(notifier._broken)


class ServiceTests(SynchronousTestCase):
    """The daemon's service tells the notifier what happens, in order."""

    def service(self, backend: MemoryBackend | None = None) -> tuple[PycmService, Recorder]:
        reactor = MemoryReactorClock()
        self.reactor = reactor
        backend = backend or MemoryBackend(reactor)
        state = DaemonState(clock=reactor, backend=backend, events=EventLog(), ready=False)
        sent = Recorder()
        notifier = SystemdNotifier(reactor, "/n", 10.0, pid=3, send=sent)
        return PycmService(reactor, state, [], notifier=notifier), sent

    def test_readyOnceOpen(self) -> None:
        """
        No READY while the backend opens; READY (with the backend in its
        status) once open; the watchdog runs from the start.
        """
        backend = MemoryBackend(MemoryReactorClock())
        opening: Deferred[None] = Deferred()
        backend.open = lambda: opening  # type: ignore[method-assign]
        service, sent = self.service(backend)
        service.startService()
        self.assertEqual([f for _, f in sent.sent], [{"WATCHDOG": "1"}])
        opening.callback(None)
        ready = sent.sent[-1][1]
        self.assertEqual(ready["READY"], "1")
        self.assertIn("memory backend", ready["STATUS"])

    def test_stoppingThenWatchdogStops(self) -> None:
        """
        STOPPING when the stop begins; the watchdog ends with the stop (two
        reactor turns after the backend closed: what it settled replies).
        """
        service, sent = self.service()
        service.startService()
        stopped: list[object] = []
        service.stopService().addCallback(stopped.append)
        self.assertIn({"STOPPING": "1", "STATUS": "stopping: stopping the containers"},
                      [f for _, f in sent.sent])
        self.reactor.advance(0)
        self.assertEqual(stopped, [None])
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_failedOpen(self) -> None:
        """A backend that cannot open: no READY, a status saying why."""
        backend = MemoryBackend(MemoryReactorClock())
        backend.open = lambda: fail(BackendError("no engine"))  # type: ignore[method-assign]
        service, sent = self.service(backend)
        service.startService()
        self.flushLoggedErrors(BackendError)
        fields = [f for _, f in sent.sent]
        self.assertNotIn("READY", {k for f in fields for k in f})
        self.assertIn({"STATUS": "failed: the memory backend could not start"}, fields)
