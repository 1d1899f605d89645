"""
Tests for the daemon's C{--services FILE} (L{pycm.daemon.tap},
L{pycm.daemon.handlers.applying}): read and checked before start-up,
applied once the daemon is ready; a service that fails is logged and the
daemon keeps serving.  The last tests run the real C{twistd pycm}.
"""

from __future__ import annotations

import os
import textwrap
from typing import Any

from twisted.internet.testing import MemoryReactorClock
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from pycm.daemon.handlers.applying import applyAtStart
from pycm.daemon.tap import Options, makeService
from pycm.model import State
from pycm.services.definition import serviceSetFrom
from tests.e2e import RealDaemon


def writeServices(testCase: SynchronousTestCase, text: str, directory: str = "shop") -> str:
    """A services file in a directory of its own named C{directory}."""
    home = os.path.join(os.path.abspath(testCase.mktemp()), directory)
    os.makedirs(home)
    path = os.path.join(home, "services.toml")
    with open(path, "w", encoding="utf-8") as f:
        f.write(textwrap.dedent(text))
    return path


CHAIN = """
    [services.db]
    command = ["sleep", "infinity"]
    env = { PASSWORD = "hunter2" }

    [services.web]
    depends_on = ["db"]
"""


class ServicesOptionTests(SynchronousTestCase):
    """C{--services} and C{--services-project} as twistd parses them."""

    def parse(self, *args: str) -> Options:
        options = Options()
        options.parseOptions(["--backend", "memory", *args])
        return options

    def test_read(self) -> None:
        """The file is read and checked; the project is its directory's name."""
        options = self.parse("--services", writeServices(self, CHAIN))
        services = options["service-set"]
        self.assertEqual((services.project, services.order), ("shop", ("db", "web")))
        options = self.parse("--services", writeServices(self, CHAIN),
                             "--services-project", "other")  # fmt: skip
        self.assertEqual(options["service-set"].project, "other")
        self.assertIsNone(self.parse()["service-set"])

    def test_refused(self) -> None:
        """
        A file that cannot be read, a cycle, an unknown key: a usage error
        naming the file and what is wrong (twistd exits non-zero).
        """
        cycle = writeServices(self, """
            [services.ab]
            depends_on = ["cd"]
            [services.cd]
            depends_on = ["ab"]
        """)
        unknown = writeServices(self, """
            [services.web]
            ports = [80]
        """)
        missing = os.path.abspath(self.mktemp())
        for path, message in ((cycle, "dependency cycle: ab -> cd -> ab"),
                              (unknown, "ports"), (missing, missing)):  # fmt: skip
            error = self.assertRaises(usage.UsageError, self.parse, "--services", path)
            self.assertIn(f"--services {path}: ", str(error))
            self.assertIn(message, str(error))
        self.assertRaises(usage.UsageError, self.parse, "--services-project", "x")

    def test_missingBeforeProject(self) -> None:
        """
        A missing file in a directory that makes no project name (the
        root, C{a/}) is said to be missing; a file there that exists asks
        for C{--services-project}, the daemon's option, not the client's.
        """
        for path in ("/nonexistent-pycm-services.toml",
                     os.path.join(os.path.abspath(self.mktemp()), "a", "services.toml")):
            error = self.assertRaises(usage.UsageError, self.parse, "--services", path)
            self.assertIn(f"--services {path}: {path}: cannot read the services file",
                          str(error))
        path = writeServices(self, CHAIN, directory="a")
        error = self.assertRaises(usage.UsageError, self.parse, "--services", path)
        self.assertIn("give --services-project NAME", str(error))
        self.assertNotIn("give --project", str(error))


class ServicesAtStartTests(SynchronousTestCase):
    """The services applied once the daemon is ready, on a memory reactor."""

    def setUp(self) -> None:
        self.logged: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self.logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.logged.append)

    def start(self, text: str) -> Any:
        options = Options()
        options.parseOptions([
            "--backend", "memory", "--state-dir", self.mktemp(),
            "--listen", "unix:" + os.path.abspath(self.mktemp()),
            "--services", writeServices(self, text),
        ])  # fmt: skip
        service = makeService(options, MemoryReactorClock(), whenReady=lambda: None)
        self.addCleanup(service._runClosers, None)  # type: ignore[attr-defined]
        service.privilegedStartService()
        service.startService()
        self.successResultOf(service.ready)  # type: ignore[attr-defined]
        return service

    def messages(self, level: LogLevel) -> list[str]:
        return [formatEvent(e) for e in self.logged if e.get("log_level") == level]

    def test_appliedOnceReady(self) -> None:
        """The services run, labelled with the project; no env value is logged."""
        service = self.start(CHAIN)
        containers = self.successResultOf(service.backend.list())
        self.assertEqual(sorted((c.name, c.state, c.labels["io.pycm.project"])
                                for c in containers),  # fmt: skip
                         [("db", State.RUNNING, "shop"), ("web", State.RUNNING, "shop")])
        self.assertIn("services of project shop applied: db create, web create",
                      self.messages(LogLevel.info))  # fmt: skip
        self.assertNotIn("hunter2", repr(self.logged))

    def test_failureLoggedAndServing(self) -> None:
        """
        A service that fails at start-up is logged, its dependents are not
        started, and the daemon is ready and answers all the same.
        """
        service = self.start("""
            [services.db]
            command = ["unstartable"]
            [services.web]
            depends_on = ["db"]
            [services.cache]
        """)
        [error] = self.messages(LogLevel.error)
        self.assertEqual(error, "--services: apply of shop failed: db failed; not started: web; "
                                "pycm keeps serving")  # fmt: skip
        # The reason is not logged: a backend's may quote the command.
        self.assertNotIn("unstartable", repr(self.logged))
        containers = {c.name: c.state for c in self.successResultOf(service.backend.list())}
        self.assertEqual(containers, {"db": State.DEAD, "cache": State.RUNNING})
        self.assertTrue(service._state.ready)  # type: ignore[attr-defined]

    def test_conflictLogged(self) -> None:
        """A service whose name another project's container holds: logged, serving."""
        service = self.start("""
            [services.db]
        """)
        self.assertEqual(self.messages(LogLevel.error), [])
        state = service._state  # type: ignore[attr-defined]
        other = serviceSetFrom({"project": "other", "services": {"db": {}}})
        self.successResultOf(applyAtStart(state, other))
        self.assertEqual(self.messages(LogLevel.error), [
            "--services: container db exists and is not of project other (it is of project "
            "shop); pycm keeps serving"])

    def test_unsupportedRefusesStart(self) -> None:
        """
        A service the backend cannot honour (replicas on the memory
        backend) stops the start with the reason, before anything runs.
        """
        path = writeServices(self, """
            [services.web]
            replicas = 3
        """)
        options = Options()
        options.parseOptions(["--backend", "memory", "--state-dir", self.mktemp(),
                              "--services", path])  # fmt: skip
        error = self.assertRaises(SystemExit, makeService, options, MemoryReactorClock())
        self.assertEqual(
            str(error),
            f"twistd pycm: --services {path}: service web: the memory backend "
            "cannot honour replicas",
        )


class ServicesTwistdTests(SynchronousTestCase):
    """The real C{twistd pycm --services}."""

    def test_appliedAtStart(self) -> None:
        """The daemon starts the file's services; a client lists them."""
        path = writeServices(self, CHAIN)
        daemon = RealDaemon(self, args=["--services", path]).start()
        client = daemon.connect()
        names = {c["name"]: c["labels"].get("io.pycm.project") for c in client.ok("list")}
        self.assertEqual(names, {"db": "shop", "web": "shop"})

    def test_badFileExitsNonZero(self) -> None:
        """A services file with a cycle: twistd says why and exits non-zero."""
        path = writeServices(self, """
            [services.ab]
            depends_on = ["ab"]
        """)
        daemon = RealDaemon(self, args=["--services", path]).start(expectFailure=True)
        self.assertNotEqual(daemon.exitCode(), 0)
        assert daemon.process is not None and daemon.process.stdout is not None
        output = daemon.process.stdout.read().decode()
        self.assertIn("dependency cycle: ab -> ab", output)
