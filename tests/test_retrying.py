"""
Tests for L{pycm.retrying}: the one retry loop of the writes that wait for
the disk (container records and events).
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from pycm.retrying import RETRY_INTERVAL, Retry


class RetryTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.calls = 0
        self.written = False
        self.retry = Retry(self.clock, self.flush)

    def flush(self) -> bool:
        self.calls += 1
        return self.written

    def test_schedule(self) -> None:
        """L{Retry.schedule} calls flush once, L{RETRY_INTERVAL} seconds on."""
        self.retry.schedule()
        self.clock.advance(RETRY_INTERVAL - 0.01)
        self.assertEqual(self.calls, 0)
        self.clock.advance(0.01)
        self.assertEqual(self.calls, 1)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_scheduleTwice(self) -> None:
        """Scheduling while a try is due does not add a second try."""
        self.retry.schedule()
        self.retry.schedule()
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.clock.advance(RETRY_INTERVAL)
        self.assertEqual(self.calls, 1)

    def test_scheduleAgain(self) -> None:
        """After a try, L{Retry.schedule} schedules the next one."""
        self.retry.schedule()
        self.clock.advance(RETRY_INTERVAL)
        self.retry.schedule()
        self.clock.advance(RETRY_INTERVAL)
        self.assertEqual(self.calls, 2)

    def test_cancel(self) -> None:
        """L{Retry.cancel} drops the try that was due."""
        self.retry.schedule()
        self.retry.cancel()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(RETRY_INTERVAL)
        self.assertEqual(self.calls, 0)

    def test_lastTry(self) -> None:
        """
        L{Retry.lastTry} flushes once at once, says whether that wrote
        everything, and leaves no try scheduled, even one that the failing
        flush scheduled.
        """

        def failing() -> bool:
            self.calls += 1
            retry.schedule()
            return False

        retry = Retry(self.clock, failing)
        retry.schedule()
        self.assertFalse(retry.lastTry())
        self.assertEqual(self.calls, 1)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.written = True
        self.assertTrue(self.retry.lastTry())

    def test_noClock(self) -> None:
        """Without a clock nothing is scheduled: only the owner tries again."""
        retry = Retry(None, self.flush)
        retry.schedule()
        retry.cancel()
        self.assertFalse(retry.lastTry())
        self.assertEqual(self.calls, 1)
