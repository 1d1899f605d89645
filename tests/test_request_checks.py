"""
Requests refused before anything is saved or any code runs out of stack:
a relative C{run -w}, a C{run -l} label that is pycm's own, an C{apply}
document nested too deeply.  On the fake server (a memory backend, a fake
clock).
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


class ReservedLabelTests(SynchronousTestCase):
    """
    Labels under C{io.pycm.} are pycm's own: C{run} and C{create} refuse
    them as C{apply} does, by one rule.
    """

    def test_runRefused(self) -> None:
        """
        C{run} and C{create} with a label under C{io.pycm.} (here, one
        posing as a project's service, which that project's C{apply
        --prune} would remove) answer C{bad_request} naming it, and leave no
        container behind; other labels are taken.
        """
        conn = FakeServer().connect(requireAuth=False)
        for line in ("run -l io.pycm.project=proj1 -l io.pycm.service=zzz "
                     "-l io.pycm.config=x lbl1",
                     "create -l tier=web --label=io.pycm.service=zzz lbl1",
                     "run -ltier=web -lio.pycm.managed=true lbl1"):  # fmt: skip
            kind, value = conn.request(line)
            self.assertEqual(kind, "ERR", line)
            self.assertEqual(value[0], "bad_request", line)
            self.assertRegex(value[1], r"^--label 'io\.pycm\.[a-z]+': io\.pycm\.\* labels "
                                       "are pycm's own$")  # fmt: skip
        self.assertEqual(conn.ok("ps -a"), [])
        self.assertEqual(conn.ok("run -l tier=web -l io.pycmx=1 lbl1")["labels"],
                         {"tier": "web", "io.pycmx": "1"})  # fmt: skip

    def test_oneRuleWithApply(self) -> None:
        """A service's labels are refused by the same rule, in the same words."""
        document = {"project": "proj1", "services": {"web": {
            "labels": {"io.pycm.project": "proj1"}}}}
        error = self.assertRaises(BadRequest, serviceSetFrom, document)
        self.assertEqual(str(error), "service web, key labels: label 'io.pycm.project': "
                                     "io.pycm.* labels are pycm's own")  # fmt: skip
        error = self.assertRaises(
            BadRequest, specFromRequest, {"label": ["io.pycm.project=proj1"]}, ("web",)
        )
        self.assertEqual(str(error), "--label 'io.pycm.project': io.pycm.* labels are pycm's own")


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
