"""
Tests for L{pycm.backends.supervisor.remains}: what is read of a damaged record to
stop the run it left.
"""

from __future__ import annotations

import json

from twisted.trial.unittest import SynchronousTestCase

from pycm.backends.supervisor.remains import Remains, salvage

RUN_ID = "0123456789abcdef0123456789abcdef"
ID = "fedcba9876543210fedcba9876543210"


def _record(**changes: object) -> dict[str, object]:
    record: dict[str, object] = {
        "name": "web",
        "id": ID,
        "runId": RUN_ID,
        "pid": 4242,
        "startTime": ["b0a7-1d", 987654],
        "stopSignal": "SIGINT",
        "stopTimeout": 2.5,
        "labels": {"pid": "7", "runId": "x"},
        "env": {"A": '"pid": 9,'},
        "state": "running",
    }
    record.update(changes)
    return record


class SalvageTests(SynchronousTestCase):
    """L{salvage} reads what identifies a run, and nothing it is unsure of."""

    def test_parsedRecord(self) -> None:
        """A record that parses (but is not loadable) gives its typed fields."""
        text = json.dumps(_record(), sort_keys=True, separators=(",", ":"))
        self.assertEqual(
            salvage("web", text.encode()),
            Remains("web", ID, RUN_ID, 4242, ["b0a7-1d", 987654], "SIGINT", 2.5),
        )

    def test_truncatedText(self) -> None:
        """
        A record cut short (a torn write) still gives the fields written
        before the cut (the stop signal and timeout come after it, so they
        are the defaults), and not the ones in labels and env values.
        """
        text = json.dumps(_record(), sort_keys=True, separators=(",", ":"))
        cut = text[: text.index('"state"')]
        self.assertEqual(
            salvage("web", cut.encode()),
            Remains("web", ID, RUN_ID, 4242, ["b0a7-1d", 987654]),
        )
        self.assertEqual(salvage("web", text[: text.index('"pid"')]).pid, None)

    def test_fieldWrittenTwice(self) -> None:
        """A field found twice in unparsable text is unsure: left out."""
        text = '{"pid": 12, "runId": "' + RUN_ID + '", "pid": 13,'
        remains = salvage("web", text)
        self.assertEqual((remains.pid, remains.runId), (None, RUN_ID))

    def test_wrongTypes(self) -> None:
        """Fields of the wrong type or shape are left out."""
        remains = salvage(
            "web",
            _record(pid=True, runId="../x", id=5, startTime="now", stopTimeout="9"),
        )
        self.assertEqual(remains, Remains("web", stopSignal="SIGINT"))
        self.assertFalse(remains.traceable)

    def test_nothingReadable(self) -> None:
        """Garbage, or JSON that is not an object, gives only the name."""
        self.assertEqual(salvage("web", b'{"name":"web","broken":'), Remains("web"))
        self.assertEqual(salvage("web", b"[1, 2]"), Remains("web"))
        self.assertEqual(salvage("web", b"\xff\xfe"), Remains("web"))
