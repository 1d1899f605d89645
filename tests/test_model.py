"""Tests for L{pycm.model}: the value types' names and their JSON."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from pycm.capabilities import Capabilities
from pycm.errors import InvalidName
from pycm.model import validateName


class CapabilitiesTests(SynchronousTestCase):
    def test_imageDescription(self) -> None:
        """
        What an image is, a sentence, is C{imageDescription} (built with
        C{images=}, the name the backends give it, and read as C{images}
        too); C{info}'s wire key is still C{images}.
        """
        capabilities = Capabilities(frozenset({"env"}), images="host: commands")
        self.assertEqual(capabilities.imageDescription, "host: commands")
        self.assertEqual(capabilities.images, "host: commands")
        self.assertEqual(
            capabilities.toJSON(),
            {"options": ["env"], "limits": [], "images": "host: commands", "stats": []},
        )


class ValidateNameTests(SynchronousTestCase):
    """L{validateName} and what its refusal says."""

    def test_oneLetterNameSaysTheLength(self) -> None:
        """
        A one-letter name is refused (code C{invalid_name}) with, in words,
        that a name has at least 2 characters, and the pattern it must match.
        """
        error = self.assertRaises(InvalidName, validateName, "x")
        self.assertEqual(error.code, "invalid_name")
        self.assertIn("2 to 128 characters", str(error))
        self.assertIn("[a-zA-Z0-9][a-zA-Z0-9_.-]+", str(error))

    def test_bounds(self) -> None:
        """Two characters and 128 are names; 129 and a leading dash are not."""
        self.assertEqual(validateName("ab"), "ab")
        self.assertEqual(validateName("a" * 128), "a" * 128)
        self.assertRaises(InvalidName, validateName, "a" * 129)
        self.assertRaises(InvalidName, validateName, "-ab")
