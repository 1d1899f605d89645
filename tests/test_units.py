"""
Tests for L{pycm.units}: the one size grammar of C{--memory} and the
backends' C{log-max-size}.
"""

from twisted.trial.unittest import SynchronousTestCase

from pycm.errors import BadRequest
from pycm.units import MIN_MEMORY, checkMemory, parseMemory, parseSize


class ParseSizeTests(SynchronousTestCase):
    """Sizes are bytes, or a number with k, m, g or t (with an optional B or iB)."""

    def test_plainBytes(self) -> None:
        """A bare number is bytes."""
        self.assertEqual(parseSize("1048576"), 1048576)

    def test_units(self) -> None:
        """Units are powers of 1024, in either case, with an optional B or iB."""
        self.assertEqual(parseSize("512k"), 512 * 1024)
        self.assertEqual(parseSize("10m"), 10 * 1024**2)
        self.assertEqual(parseSize("10MiB"), 10 * 1024**2)
        self.assertEqual(parseSize("64kb"), 64 * 1024)
        self.assertEqual(parseSize("1G"), 1024**3)
        self.assertEqual(parseSize("2t"), 2 * 1024**4)
        self.assertEqual(parseSize("100b"), 100)

    def test_fractions(self) -> None:
        """A decimal fraction of a unit is rounded down to whole bytes."""
        self.assertEqual(parseSize("1.5g"), 3 * 1024**3 // 2)
        self.assertEqual(parseSize("0.5k"), 512)

    def test_refused(self) -> None:
        """Anything else, and sizes under one byte, are a bad request saying which size."""
        for bad in ("", "x", "-1", "0", "0.1b", "10q", "1e3", "inf", "nan", "1.5.5g", "k", "lots"):
            error = self.assertRaises(BadRequest, parseSize, bad)
            self.assertIn(repr(bad), str(error))

    def test_tooLarge(self) -> None:
        """
        A size over 2**63 - 1 bytes is refused (a record holding it would be
        put aside as damaged at the next start); the largest is taken, and
        a saved record holds it.
        """
        from pycm.backends.supervisor.recordcheck import MAX_INTEGER

        for big in ("9999999999t", "999999999999999g", "8388608t"):
            error = self.assertRaises(BadRequest, parseSize, big)
            self.assertIn("at most", str(error))
        self.assertLessEqual(parseSize("8388607t"), MAX_INTEGER)
        self.assertRaises(BadRequest, checkMemory, MAX_INTEGER + 1, MAX_INTEGER + 1)
        self.assertEqual(checkMemory(MAX_INTEGER, MAX_INTEGER), MAX_INTEGER)


class ParseMemoryTests(SynchronousTestCase):
    """A memory limit is a size of at least Docker's floor, 6 MiB."""

    def test_floor(self) -> None:
        """6m and more are taken, in bytes."""
        self.assertEqual(MIN_MEMORY, 6 * 1024**2)
        self.assertEqual(parseMemory("6m"), MIN_MEMORY)
        self.assertEqual(parseMemory("20m"), 20 * 1024**2)
        self.assertEqual(checkMemory(MIN_MEMORY, MIN_MEMORY), MIN_MEMORY)

    def test_underFloor(self) -> None:
        """Less is refused, naming the option (or key) and the floor."""
        for small in ("1", "5k", "5.99m", str(MIN_MEMORY - 1)):
            error = self.assertRaises(BadRequest, parseMemory, small)
            self.assertEqual(
                str(error),
                f"bad --memory {small!r}: it must be at least 6m (6 MiB), the smallest"
                " memory limit (as Docker's)",
            )
        error = self.assertRaises(BadRequest, checkMemory, 1024, 1024, "size")
        self.assertTrue(str(error).startswith("bad size 1024: it must be at least 6m"))

    def test_badSizeFirst(self) -> None:
        """A value that is not a size says so, not the floor."""
        error = self.assertRaises(BadRequest, parseMemory, "lots")
        self.assertIn("expected bytes", str(error))
