"""
Tests for Ctrl-C in the interactive shell with a request in flight
(L{pycm.client.shell.ShellProtocol} with a L{pycm.client.inflight.Reconnection}):
the request is given up, the connection reset and made anew with what the
shell had asked of the old one, and the prompt is back.  Driven through
conch's L{insults.ServerProtocol} on a L{StringTransport}, against
L{FakeDaemon}s over in-memory connections, on a L{Clock}.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.conch.insults import insults
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from pycm.client.exits import CannotConnect
from pycm.client.inflight import Reconnection, Subscriptions, abandonedLines
from pycm.client.protocol import ClientProtocol
from pycm.client.shell import ShellProtocol
from pycm.client.testing import FakeDaemon, LoopbackPump, connectToFake, ok
from tests.test_client_apply import SERVICES
from tests.test_client_shell import GREETING, TerminalTransport

CTRL_C = b"\x03"


def held(words: list[str]) -> Deferred[Any]:
    """A reply that never comes (a C{wait} on a container that keeps running)."""
    return Deferred()


def eventsOn(lastId: int) -> Any:
    """A handler for C{events}: on, the newest id being C{lastId}."""
    return lambda words: ok({"events": True, "last_id": lastId})


class InterruptHarness:
    """
    A shell on an in-memory terminal, connected to a L{FakeDaemon}, whose
    reconnection connects to the next of C{daemons} (or waits on
    C{self.connecting} when that is set).
    """

    def __init__(self, daemons: list[FakeDaemon],
                 subscriptions: Subscriptions | None = None) -> None:
        self.daemons = list(daemons)
        self.pumps: list[LoopbackPump] = []
        self.clients: list[ClientProtocol] = []
        self.connecting: Deferred[ClientProtocol] | None = None
        self.connects = 0
        self.client = self._connect()
        self.clock = Clock()
        self.done: Deferred[int] = Deferred()
        self.subscriptions = subscriptions if subscriptions is not None else Subscriptions()
        self.terminal = insults.ServerProtocol(
            ShellProtocol, self.client, self.clock, GREETING, self.done, [],
            lambda: 80, None, None, Reconnection(self.reconnect, self.subscriptions),
        )
        self.transport = TerminalTransport()
        self.transport.protocol = self.terminal
        self.terminal.makeConnection(self.transport)
        self.shell: ShellProtocol = self.terminal.terminalProtocol  # type: ignore[assignment]
        self.flush()

    def _connect(self) -> ClientProtocol:
        client, _daemon, pump = connectToFake(self.daemons[len(self.clients)])
        self.clients.append(client)
        self.pumps.append(pump)
        return client

    def reconnect(self) -> Deferred[ClientProtocol]:
        self.connects += 1
        if self.connecting is not None:
            return self.connecting
        return succeed(self._connect())

    def flush(self) -> None:
        """Let every connection carry what waits."""
        while any([pump.flush() for pump in self.pumps]):
            pass

    def type(self, keys: bytes) -> None:
        """Press C{keys}, then let the daemons answer."""
        self.terminal.dataReceived(keys)
        self.flush()

    def screen(self) -> bytes:
        """Everything written to the terminal, then forget it."""
        value = self.transport.value()
        self.transport.clear()
        return value


class ShellInterruptTests(SynchronousTestCase):
    """Ctrl-C while the shell awaits a reply."""

    def test_abandonsAndReconnects(self) -> None:
        """
        Ctrl-C during a C{wait} says what was given up, drops the lines
        typed while waiting (never sent), closes the old connection
        (aborted, so that it is reset), connects anew and gives the prompt
        back: the next line goes over the new connection.
        """
        first, second = FakeDaemon({"wait": held}), FakeDaemon()
        h = InterruptHarness([first, second])
        h.type(b"wait web\r")
        h.type(b"ping\rstop --time=2 web\r")
        h.screen()
        h.type(CTRL_C)
        screen = h.screen()
        self.assertIn(b"Interrupted before the reply (a wait changes nothing): "
                      b"wait web\r\n", screen)
        self.assertTrue(screen.startswith(b"^C\r\n"), screen)
        self.assertIn(b"Not sent: the 2 lines typed while waiting (Up recalls them).",
                      screen)
        self.assertTrue(screen.endswith(b"pycm> "), screen)
        self.assertNotIn(b"lost", screen)
        self.assertNotIn(b"Error", screen)
        self.assertEqual(first.received, ["wait web"])
        self.assertFalse(h.clients[0].connected)
        self.assertIs(h.shell.client, h.clients[1])
        h.type(b"ping\r")
        self.assertEqual(second.received, ["ping"])
        self.assertIn(b"pong\r\n", h.screen())
        self.assertEqual(h.clock.getDelayedCalls(), [])
        self.assertNoResult(h.done)

    def test_abandonResets(self) -> None:
        """
        The old connection is given up with C{ClientProtocol.abandon} (a
        zero linger, then an abort: a reset where the transport is TCP),
        not with a close, which the daemon would take for a half-close.
        """
        h = InterruptHarness([FakeDaemon({"wait": held}), FakeDaemon()])
        abandoned: list[int] = []
        original = h.clients[0].abandon

        def abandon() -> None:
            abandoned.append(h.clients[0].pending)
            original()

        h.clients[0].abandon = abandon  # type: ignore[method-assign]
        h.type(b"wait web\r")
        h.type(CTRL_C)
        self.assertEqual(abandoned, [1])

    def test_applyAbandoned(self) -> None:
        """
        Ctrl-C while an C{apply} waits (a service never healthy) names the
        line as typed, never the document read from the file (it may hold
        secrets), and the prompt is back.
        """
        directory = os.path.join(self.mktemp(), "shop")
        os.makedirs(directory)
        path = os.path.join(directory, "services.toml")
        with open(path, "w", encoding="utf-8") as f:
            f.write(SERVICES)
        first = FakeDaemon({"apply": held})
        h = InterruptHarness([first, FakeDaemon()])
        h.type(f"apply {path}\r".encode())
        self.assertTrue(first.received[0].startswith("apply "), first.received)
        self.assertIn(" '{", first.received[0])
        h.screen()
        h.type(CTRL_C)
        screen = h.screen()
        self.assertIn(f"): apply {path}\r\n".encode(), screen)
        self.assertNotIn(b"project", screen)
        self.assertTrue(screen.endswith(b"pycm> "), screen)

    def test_ctrlCWithNothingInFlight(self) -> None:
        """With no request awaited, Ctrl-C only clears the line: no new connection."""
        h = InterruptHarness([FakeDaemon()])
        h.type(b"pin")
        h.screen()
        h.type(CTRL_C)
        self.assertTrue(h.screen().endswith(b"^C\r\npycm> "))
        self.assertEqual((h.connects, h.shell.lineBuffer), (0, []))
        self.assertTrue(h.clients[0].connected)

    def test_subscriptionsAskedAgain(self) -> None:
        """
        The new connection is asked for what the old one had: the token of
        an C{auth} typed in the shell, the events with their filter from
        the newest id seen (so those of the gap are replayed and printed),
        and the logs followed; the old connection's events are no longer
        printed.
        """
        first = FakeDaemon({"wait": held, "events": eventsOn(7),
                            "logs": ok(["hello"])})
        replayed = {"type": "container", "id": 9, "name": "web", "action": "die",
                    "time": "T"}
        second = FakeDaemon({"events": lambda w: [
            "OK " + '{"events": true, "last_id": 9}', f"EVENT {_json(replayed)}"],
            "logs": ok([])})
        h = InterruptHarness([first, second])
        h.type(b"auth s3cret\r")
        h.type(b"events --since=2 --filter=name=web\r")
        first.sendEvent({"type": "container", "id": 8, "name": "web", "action": "stop",
                         "time": "T"})
        h.type(b"logs -f web\r")
        h.type(b"wait web\r")
        h.screen()
        h.type(CTRL_C)
        self.assertEqual(second.received, [
            "auth s3cret", "events --since=8 --filter=name=web",
            "logs --follow --tail=0 web"])
        screen = h.screen()
        self.assertIn(b"T  #9  web  die", screen)
        self.assertTrue(screen.endswith(b"pycm> "), screen)
        self.assertEqual(h.subscriptions.lastEventId, 9)

    def test_subscriptionRefused(self) -> None:
        """A subscription the new connection refuses is said; the prompt is back."""
        first = FakeDaemon({"wait": held})
        second = FakeDaemon({"events": "ERR unavailable events are off"})
        h = InterruptHarness([first, second], Subscriptions(["events"], 3))
        h.type(b"wait web\r")
        h.type(CTRL_C)
        screen = h.screen()
        self.assertIn(b"Could not ask the new connection for events again: "
                      b"unavailable: events are off", screen)
        self.assertTrue(screen.endswith(b"pycm> "), screen)
        self.assertIsNone(h.subscriptions.events)

    def test_secondCtrlCWhileReconnecting(self) -> None:
        """
        A second Ctrl-C while the new connection is being made clears the
        line and nothing else (no second reconnection); a line typed then
        is sent once connected; a slow reconnection says so after a second.
        """
        h = InterruptHarness([FakeDaemon({"wait": held}), FakeDaemon()])
        h.connecting = Deferred()
        h.type(b"wait web\r")
        h.type(CTRL_C)
        h.type(CTRL_C + CTRL_C)
        self.assertEqual(h.connects, 1)
        h.clock.advance(1.5)
        self.assertIn("Reconnecting to the pycm daemon\N{HORIZONTAL ELLIPSIS}".encode(),
                      h.screen())
        h.type(b"ping\r")
        h.connecting.callback(h._connect())
        h.flush()
        self.assertEqual(h.daemons[1].received, ["ping"])
        self.assertIn(b"pong", h.screen())
        self.assertNoResult(h.done)

    def test_reconnectFails(self) -> None:
        """No new connection: it says why, and the shell ends with status 3."""
        h = InterruptHarness([FakeDaemon({"wait": held})])
        h.connecting = fail(CannotConnect("tcp:127.0.0.1:8080", ConnectionRefusedError()))
        h.type(b"wait web\r")
        h.type(CTRL_C)
        self.assertIn(b"Could not reconnect: cannot reach the pycm daemon at "
                      b"tcp:127.0.0.1:8080: connection refused", h.screen())
        self.assertEqual(self.successResultOf(h.done), 3)

    def test_ctrlDWhileReconnecting(self) -> None:
        """Ctrl-D while reconnecting cancels the attempt and leaves (status 0)."""
        h = InterruptHarness([FakeDaemon({"wait": held})])
        cancelled: list[bool] = []
        h.connecting = Deferred(lambda d: cancelled.append(True))
        h.type(b"wait web\r")
        h.type(CTRL_C)
        h.type(b"\x04")
        self.assertEqual(self.successResultOf(h.done), 0)
        self.assertEqual(cancelled, [True])


class SubscriptionsTests(SynchronousTestCase):
    """L{Subscriptions}: what a new connection is asked for again."""

    def test_nothing(self) -> None:
        """A shell that asked for nothing asks a new connection for nothing."""
        self.assertEqual(Subscriptions().requests(), [])

    def test_eventsOff(self) -> None:
        """C{events --off} turns them off; an C{auth} refused is not kept."""
        s = Subscriptions(["events"], 4)
        s.replied(["events", "--off"], {"events": False, "last_id": 5})
        self.assertEqual(s.requests(), [])

    def test_sinceReplaced(self) -> None:
        """
        The C{--since} of the request (either spelling) gives way to the
        newest id seen, from the reply or an event.
        """
        s = Subscriptions()
        s.replied(["events", "--since", "0", "-f", "action=die"],
                  {"events": True, "last_id": 5})
        self.assertEqual(s.requests(), [["events", "--since=5", "-f", "action=die"]])
        s.eventSeen({"type": "container", "id": 12})
        s.eventSeen({"type": "progress", "id": "x"})
        s.eventSeen({"type": "container", "id": 11})
        self.assertEqual(s.requests(), [["events", "--since=12", "-f", "action=die"]])

    def test_follows(self) -> None:
        """A follow ends with C{unfollow} or the log's end; a plain C{logs} is none."""
        s = Subscriptions()
        s.replied(["logs", "--tail", "5", "--follow", "a"], [])
        s.replied(["logs", "-f", "b"], [])
        s.replied(["logs", "c"], [])
        self.assertEqual(s.requests(), [["logs", "--follow", "--tail=0", "a"],
                                        ["logs", "--follow", "--tail=0", "b"]])
        s.replied(["unfollow", "a"], {"name": "a", "following": False})
        s.eventSeen({"type": "log_end", "name": "b"})
        self.assertEqual(s.requests(), [])

    def test_abandonedLinesHideAToken(self) -> None:
        """What Ctrl-C says never shows an C{auth} line's token."""
        self.assertEqual(abandonedLines("auth s3cret", 1), [
            "Interrupted before the reply (the daemon may still carry it out): auth ******",
            "Not sent: the 1 line typed while waiting (Up recalls them)."])


def _json(value: Any) -> str:
    import json

    return json.dumps(value)
