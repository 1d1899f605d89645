"""Tests for L{pycm.model}: the value types' names and their JSON."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from pycm.capabilities import Capabilities
from pycm.errors import BadRequest, InvalidName
from pycm.model import RestartPolicy, validateName


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


class RestartPolicyTests(SynchronousTestCase):
    """C{--restart}: Docker's policies, and what is wrong with a bad one."""

    def test_policies(self) -> None:
        """Each name, and on-failure with its most restarts."""
        for text, policy in [
            ("no", RestartPolicy()),
            ("always", RestartPolicy("always")),
            ("unless-stopped", RestartPolicy("unless-stopped")),
            ("on-failure", RestartPolicy("on-failure")),
            ("on-failure:999999999", RestartPolicy("on-failure", 999999999)),
        ]:
            self.assertEqual(RestartPolicy.parse(text), policy, text)
            self.assertEqual(str(RestartPolicy.parse(text)), text)
        # Docker's and Swarm's 0: no limit.
        self.assertEqual(RestartPolicy.parse("on-failure:0"), RestartPolicy("on-failure"))
        self.assertEqual(str(RestartPolicy.parse("on-failure:0")), "on-failure")

    def test_badMax(self) -> None:
        """
        on-failure with a MAX that is not a whole number is told what MAX
        must be, not that only on-failure takes one.
        """
        for count in ("abc", "-1", "1.5", "", "1000000000", "\u0663"):
            text = f"on-failure:{count}"
            error = self.assertRaises(BadRequest, RestartPolicy.parse, text)
            self.assertEqual(
                str(error), f"bad --restart {text!r}: MAX must be a whole number from 0 to "
                "999999999"
            )

    def test_maxOnAnotherPolicy(self) -> None:
        """A MAX on a policy other than on-failure says only on-failure takes one."""
        error = self.assertRaises(BadRequest, RestartPolicy.parse, "always:3")
        self.assertEqual(
            str(error), "bad --restart 'always:3': only on-failure takes :MAX, not always"
        )

    def test_unknownName(self) -> None:
        """An unknown policy lists the known ones."""
        error = self.assertRaises(BadRequest, RestartPolicy.parse, "sometimes")
        self.assertIn("expected one of no, on-failure[:MAX], always, unless-stopped", str(error))
