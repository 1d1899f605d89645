"""
Tests for the info line of a request that changes a container
(L{pycm.daemon.dispatch.audited}): its text made once, its fields kept.
"""

from __future__ import annotations

from typing import Any

from twisted.logger import formatEvent, formatEventAsClassicLogText, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from pycm.testing.server import FakeServer


class RequestLogTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def requestEvents(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("log_namespace") == "pycm.requests"]

    def test_textAndFields(self) -> None:
        """
        The line reads C{PEER: COMMAND NAME: OUTCOME} as it always did, and
        the event still has each of them as a field.
        """
        conn = FakeServer().connect(peer="192.0.2.7")
        conn.ok("create -e SECRET=hunter2 web")
        conn.err("start nosuch")
        first, second = self.requestEvents()
        self.assertEqual(formatEvent(first), "192.0.2.7:40000: create web: ok")
        self.assertEqual(formatEvent(second), "192.0.2.7:40000: start nosuch: not_found")
        self.assertEqual(
            {key: first[key] for key in ("peer", "command", "name", "outcome")},
            {"peer": "192.0.2.7:40000", "command": "create", "name": "web", "outcome": "ok"},
        )
        line = formatEventAsClassicLogText(first)
        assert line is not None
        self.assertTrue(line.endswith(" [pycm.requests#info] 192.0.2.7:40000: create web: ok\n"))
        self.assertNotIn("hunter2", repr(self.events))

    def test_bracesInTheTextAreNotAFormat(self) -> None:
        """A name that is not valid (shown redacted) cannot inject a format field."""
        conn = FakeServer().connect()
        conn.err("start {log_format}")
        [event] = self.requestEvents()
        self.assertNotIn("{", formatEvent(event))
