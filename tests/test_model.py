"""Tests for L{pycm.model}: the value types' names and their JSON."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from pycm.model import Capabilities


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
