"""
Requests refused before anything is saved or any code runs out of stack:
a relative C{run -w}, an C{apply} document nested too deeply.  On the fake
server (a memory backend, a fake clock).
"""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from pycm.capabilities import Capabilities, ISpecCheck
from pycm.daemon.runoptions import checkSupported, specFromRequest
from pycm.errors import BadRequest
from pycm.model import ContainerSpec
from pycm.services.definition import serviceSetFrom
from pycm.testing.server import FakeServer


class WorkdirTests(SynchronousTestCase):
    """C{-w}/C{--workdir} and a service's C{workdir} must be absolute paths."""

    def test_relativeRefused(self) -> None:
        """A relative workdir is a bad request naming the option and the value."""
        error = self.assertRaises(
            BadRequest, specFromRequest, {"workdir": "relative"}, ("w8", "host", "true")
        )
        self.assertEqual(str(error), "bad --workdir 'relative': expected an absolute path")
        self.assertEqual(specFromRequest({"workdir": "/tmp"}, ("w8",)).workdir, "/tmp")

    def test_nothingSaved(self) -> None:
        """
        C{run -w relative} answers C{bad_request} and leaves no container
        behind (no C{dead} one, as the backend's refusal at start left).
        """
        conn = FakeServer().connect(requireAuth=False)
        kind, (code, message) = conn.request("run -w relative w8 host true")
        self.assertEqual((kind, code), ("ERR", "bad_request"))
        self.assertIn("absolute path", message)
        self.assertEqual(conn.ok("ps -a"), [])

    def test_serviceWorkdir(self) -> None:
        """An C{apply} document's relative C{workdir} is refused the same way."""
        document = {"project": "proj", "services": {"web": {"workdir": "srv"}}}
        error = self.assertRaises(BadRequest, serviceSetFrom, document)
        self.assertIn("absolute path", str(error))


class MemoryFloorTests(SynchronousTestCase):
    """
    C{--memory} (and a service's C{memory}) under Docker's floor, 6 MiB,
    is refused: the kernel's OOM killer would end the container at once.
    """

    def test_runRefused(self) -> None:
        """
        C{run --memory=5k} and C{--memory=1} answer C{bad_request} naming the
        option and the floor, and leave no container behind; 6m is taken.
        """
        conn = FakeServer().connect(requireAuth=False)
        for size in ("1", "5k", "6291455"):
            kind, (code, message) = conn.request(f"run --memory={size} m1 host true")
            self.assertEqual((kind, code), ("ERR", "bad_request"))
            self.assertEqual(
                message,
                f"bad --memory '{size}': it must be at least 6m (6 MiB), the smallest"
                " memory limit (as Docker's)",
            )
        self.assertEqual(conn.ok("ps -a"), [])
        self.assertEqual(conn.ok("create --memory=6m m1 host true")["name"], "m1")
        self.assertEqual(conn.ok("inspect m1")["memory"], 6 * 1024**2)

    def test_serviceRefused(self) -> None:
        """An C{apply} document's C{memory} under the floor, as text or bytes, too."""
        for memory in ("5m", 1024):
            document = {"project": "proj", "services": {"web": {"memory": memory}}}
            error = self.assertRaises(BadRequest, serviceSetFrom, document)
            self.assertIn("key memory: bad size", str(error))
            self.assertIn("at least 6m", str(error))


class NestingTests(SynchronousTestCase):
    """An C{apply} document nested deeper than the decoder's stack."""

    def test_tooDeep(self) -> None:
        """
        5,000 opening brackets are C{ERR bad_request the document is nested
        too deeply}, not an internal error; the connection goes on.
        """
        conn = FakeServer().connect(requireAuth=False)
        kind, value = conn.request('apply "' + "[" * 5000 + '"')
        self.assertEqual(
            (kind, value), ("ERR", ("bad_request", "the document is nested too deeply"))
        )
        self.assertEqual(conn.ok("ping"), "pong")
        self.assertEqual(self.flushLoggedErrors(), [])


class CannotHonourTests(SynchronousTestCase):
    """An option the backend does not honour here: the error says why."""

    def backend(self, reasons: dict[str, str], checks: bool = True) -> Any:
        """
        A backend that honours no limit, able to say why (L{ISpecCheck})
        or not; a stand-in, as this machine's cgroups can enforce limits.
        """
        @implementer(ISpecCheck)
        class Checking:
            name = "process"
            capabilities = Capabilities(options=frozenset({"env"}))

            def refusals(self, spec: ContainerSpec) -> dict[str, str]:
                return dict(reasons)

        class Silent:
            name = "process"
            capabilities = Capabilities(options=frozenset({"env"}))

        return Checking() if checks else Silent()

    def test_why(self) -> None:
        """
        C{--memory} on a daemon whose cgroups cannot enforce it: the error
        names the option and the machine's reason, not only the backend.
        """
        why = "--memory cannot be enforced by this daemon: no cgroup memory controller"
        spec = ContainerSpec(name="m1", image="host", memory=64 * 1024**2)
        error = self.assertRaises(BadRequest, checkSupported,
                                  self.backend({"memory": why, "user": "other"}), spec)
        self.assertEqual(str(error.message),
                         f"the process backend cannot honour --memory here: {why}")

    def test_noReasonKnown(self) -> None:
        """A backend that cannot say why: the option alone, as before."""
        spec = ContainerSpec(name="m1", image="host", memory=64 * 1024**2)
        error = self.assertRaises(BadRequest, checkSupported, self.backend({}, False), spec)
        self.assertEqual(error.message, "the process backend cannot honour --memory")
