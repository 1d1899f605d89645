"""
Backend options a backend does not know (L{pycm.backends.checkOptions}):
a misspelled C{--backend-option} key, or a flag of another backend's, stops
C{twistd pycm} at option parsing, naming it and the known keys.
"""

from __future__ import annotations

from typing import Any

from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from pycm.backends import checkOptions, declaredOptions, loadBackendFactory, takesOptions
from pycm.daemon.tap import Options
from pycm.errors import BadRequest


def parse(*args: str) -> Options:
    options = Options()
    options.parseOptions(list(args))
    return options


class BackendOptionTests(SynchronousTestCase):
    """The daemon's options, checked against the chosen backend's."""

    def test_misspelledKeys(self) -> None:
        """
        C{cgroup=off} (for C{cgroups}) and C{defaultworkdir} are refused for
        the process backend, naming the key and the keys it knows.
        """
        for key in ("cgroup", "defaultworkdir", "statesync"):
            error = self.assertRaises(
                usage.UsageError, parse, "--backend", "process", "--backend-option", f"{key}=x"
            )
            self.assertEqual(
                str(error),
                f"unknown backend option {key!r} for the process backend (known: "
                "default-workdir, cgroup-parent, cgroups, state-sync, mark-sweep-delay,"
                " shutdown-timeout)",
            )

    def test_everyBackend(self) -> None:
        """
        Each of pycm's backends declares its keys: a made-up one is refused
        by all four; their own keys pass.
        """
        own = {
            "memory": "default-image=busybox",
            "process": "state-sync=full",
            "docker": "stop-on-close=yes",
            "swarm": "idle-poll-interval=3",
        }
        for backend, item in own.items():
            self.assertIsNotNone(declaredOptions(loadBackendFactory(backend)), backend)
            error = self.assertRaises(
                usage.UsageError, parse, "--backend", backend, "--backend-option", "nope=1"
            )
            self.assertIn(f"unknown backend option 'nope' for the {backend} backend", str(error))
            options = parse("--backend", backend, "--backend-option", item)
            key, _, value = item.partition("=")
            self.assertEqual(options["backend-options"][key], value)

    def test_knownListsNoFlags(self) -> None:
        """
        The known keys listed are those with no flag of their own; the
        memory backend, which has none, says so.
        """
        error = self.assertRaises(
            usage.UsageError, parse, "--backend", "docker", "--backend-option", "netwrok=none"
        )
        self.assertEqual(
            str(error),
            "unknown backend option 'netwrok' for the docker backend (known: "
            "request-timeout, pull-timeout, network, init, stop-on-close)",
        )
        error = self.assertRaises(
            usage.UsageError, parse, "--backend", "memory", "--backend-option", "x=1"
        )
        self.assertIn("(known: none)", str(error))

    def test_anotherBackendsFlag(self) -> None:
        """
        A flag of another backend's (C{--pull} on the process backend) is
        refused too, rather than ignored.
        """
        error = self.assertRaises(
            usage.UsageError, parse, "--backend", "process", "--pull", "missing"
        )
        self.assertEqual(str(error), "--pull is not an option of the process backend")
        self.assertEqual(parse("--backend", "docker", "--pull", "missing")
                         ["backend-options"]["pull"], "missing")

    def test_undeclaredFactory(self) -> None:
        """A third-party factory that declares nothing gets every key, unchecked."""

        def factory(*args: Any) -> None:
            pass

        checkOptions("theirs", factory, ["anything"], ["pull"])
        declared = takesOptions("a")(factory)
        self.assertIs(declared, factory)
        self.assertRaises(BadRequest, checkOptions, "theirs", factory, ["b"])
