"""
Tests for L{pycm.backends.process.output}: splitting a container's output into
lines, and pacing the daemon's time spent on it, on a fake clock.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from pycm.backends.process.output import LineSplitter, OutputPacer


def split(data: bytes, chunk: int, maxLine: int = 10) -> list[bytes]:
    """Every line of C{data} fed in chunks of C{chunk} bytes, the last one too."""
    splitter = LineSplitter(maxLine)
    lines: list[bytes] = []
    for i in range(0, len(data), chunk):
        lines += splitter.feed(data[i : i + chunk])
        assert len(splitter) <= maxLine
    return lines + splitter.flush()


class LineSplitterTests(SynchronousTestCase):
    """L{LineSplitter}: the same lines whatever the chunks."""

    def test_anyChunks(self) -> None:
        """
        Chunks of 1..N bytes give the same lines: empty lines kept, CR
        kept, a last line without a newline given by flush.
        """
        data = b"one\n\ntwo\r\nthree\nlast"
        for chunk in range(1, len(data) + 1):
            self.assertEqual(split(data, chunk), [b"one", b"", b"two\r", b"three", b"last"])

    def test_longLinesCut(self) -> None:
        """
        A line longer than maxLine is cut into pieces of at most maxLine
        bytes, as soon as it is that long, whatever the chunks; nothing is
        lost.
        """
        data = b"a" * 25 + b"\n" + b"b" * 10 + b"\n" + b"c" * 11
        for chunk in range(1, len(data) + 1):
            lines = split(data, chunk)
            self.assertEqual(
                lines, [b"a" * 10, b"a" * 10, b"a" * 5, b"b" * 10, b"c" * 10, b"c"], chunk
            )

    def test_numberedLinesWhole(self) -> None:
        """Many numbered lines in odd chunks: all there, in order, none torn."""
        data = b"".join(b"%d\n" % i for i in range(5000))
        for chunk in (1, 7, 4096, 8192, 65536):
            self.assertEqual(split(data, chunk, 64), [b"%d" % i for i in range(5000)])

    def test_flushEmpty(self) -> None:
        """Nothing pending: flush gives nothing."""
        splitter = LineSplitter()
        self.assertEqual(splitter.feed(b"x\n"), [b"x"])
        self.assertEqual(splitter.flush(), [])


class OutputPacerTests(SynchronousTestCase):
    """L{OutputPacer}: a budget of time, on the clock, shared by every reader."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1000)
        self.pacer = OutputPacer(self.clock, share=0.25, burst=0.04)
        self.resumed: list[str] = []

    def busy(self, seconds: float) -> bool:
        """Handle output for C{seconds} (the clock goes on meanwhile)."""
        self.clock.rightNow += seconds
        return self.pacer.spend(seconds)

    def test_burstThenPause(self) -> None:
        """
        Handling may go on until the burst is spent (the bucket filling
        meanwhile at the share); then the reader waits until it is half
        full again, and every waiting reader is resumed together.
        """
        self.assertTrue(self.busy(0.02))
        self.assertTrue(self.busy(0.02))
        self.assertFalse(self.busy(0.02))
        self.pacer.hold(lambda: self.resumed.append("a"))
        self.pacer.hold(lambda: self.resumed.append("b"))
        self.assertEqual(self.pacer.holding, 2)
        [wake] = self.clock.getDelayedCalls()
        # Spent 0.06 * 0.75 = 0.045 from 0.04: -0.005; half full is 0.02.
        self.assertAlmostEqual(wake.getTime() - self.clock.seconds(), 0.025 / 0.25)
        self.clock.advance(0.099)
        self.assertEqual(self.resumed, [])
        self.clock.advance(0.002)
        self.assertEqual(self.resumed, ["a", "b"])
        self.assertEqual(self.pacer.holding, 0)

    def test_shareOverALongFlood(self) -> None:
        """A reader that is always ready gets the share of the time, no more."""
        start = self.clock.seconds()
        spent = 0.0
        while self.clock.seconds() - start < 100:
            if self.busy(0.003):
                spent += 0.003
                continue
            spent += 0.003
            self.pacer.hold(lambda: None)
            self.clock.advance(self.clock.getDelayedCalls()[0].getTime() - self.clock.seconds())
        share = spent / (self.clock.seconds() - start)
        self.assertLess(abs(share - 0.25), 0.01)

    def test_quietRefills(self) -> None:
        """After a quiet spell the whole burst is available again, not more."""
        self.assertFalse(self.busy(0.1))
        self.clock.advance(60)
        # 0.04 in the bucket; 0.05 of handling costs 0.05 * 0.75.
        self.assertTrue(self.busy(0.05))
        self.assertFalse(self.busy(0.01))

    def test_releaseForgets(self) -> None:
        """A reader released while held is not resumed; no timer is left."""

        def resume() -> None:
            self.resumed.append("a")

        self.busy(1)
        self.pacer.hold(resume)
        self.pacer.release(resume)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.pacer.holding, 0)

    def test_clockBackwards(self) -> None:
        """A clock set back neither refills nor drains the bucket."""
        self.assertTrue(self.busy(0.02))
        self.clock.rightNow -= 3600
        self.assertTrue(self.pacer.spend(0.0))
        self.assertFalse(self.busy(0.05))

    def test_badSettings(self) -> None:
        """A share outside (0, 1] or a burst not positive is refused."""
        for share, burst in ((0, 1), (1.5, 1), (0.5, 0)):
            self.assertRaises(ValueError, OutputPacer, self.clock, share, burst)
