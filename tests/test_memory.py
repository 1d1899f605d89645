"""
Tests for L{pycm.backends.memory}: the conformance suite on a fake clock,
and the simulated commands themselves.
"""

from __future__ import annotations

import signal

from twisted.internet.task import Clock
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from pycm.backends.memory import DEFAULT_COMMAND, MemoryBackend, MemoryLogStore, makeBackend
from pycm.capabilities import ALL_OPTIONS
from pycm.errors import BackendError
from pycm.interfaces import IContainerBackend
from pycm.model import (
    Container,
    ContainerSpec,
    LogLine,
    State,
)
from pycm.testing import BackendConformanceTests, MemoryFixture, advanceClock, memoryBackend


class MemoryConformanceTests(BackendConformanceTests, TestCase):
    """The memory backend passes the backend conformance suite."""

    fixture = MemoryFixture()


class SimulatedCommandTests(SynchronousTestCase):
    """The simulated commands of the memory backend do what its docstring says."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.backend = memoryBackend(self.clock)

    def runFor(self, seconds: float, *command: str) -> Container:
        name = "c" + str(len(self.successResultOf(self.backend.list())))
        self.successResultOf(self.backend.create(ContainerSpec(name, command=command or None)))
        self.successResultOf(self.backend.start(name))
        advanceClock(self.clock, seconds)
        return self.successResultOf(self.backend.inspect(name))

    def lines(self, name: str) -> list[tuple[str, str]]:
        return [(x.stream, x.line) for x in self.successResultOf(self.backend.logs(name, None))]

    def test_defaultCommand(self) -> None:
        """Without a command a container runs C{sleep infinity}, from C{memory}."""
        c = self.runFor(1e6)
        self.assertEqual((c.image, c.command, c.state), ("memory", DEFAULT_COMMAND, "running"))
        self.assertIsInstance(c.pid, int)

    def test_sleep(self) -> None:
        """C{sleep S} exits 0 after S seconds of the clock."""
        c = self.runFor(2.9, "sleep", "3")
        self.assertEqual(c.state, State.RUNNING)
        advanceClock(self.clock, 0.1)
        c = self.successResultOf(self.backend.inspect(c.name))
        self.assertEqual((c.state, c.exitCode, c.finished), (State.EXITED, 0, 3.0))

    def test_sleepBad(self) -> None:
        """C{sleep} with a bad interval complains on stderr and exits 1."""
        c = self.runFor(0, "sleep", "soon")
        self.assertEqual(c.exitCode, 1)
        self.assertEqual(self.lines(c.name)[0][0], "stderr")

    def test_exit(self) -> None:
        """C{exit N} exits with N modulo 256, right away."""
        self.assertEqual(self.runFor(0, "exit", "7").exitCode, 7)
        self.assertEqual(self.runFor(0, "exit", "257").exitCode, 1)

    def test_echo(self) -> None:
        """C{echo WORDS} writes the words on one stdout line and exits 0."""
        c = self.runFor(0, "echo", "hello", "world")
        self.assertEqual(c.exitCode, 0)
        self.assertEqual(self.lines(c.name), [("stdout", "hello world")])

    def test_fail(self) -> None:
        """C{fail TEXT} writes one stderr line and exits 1."""
        c = self.runFor(0, "fail", "bad", "thing")
        self.assertEqual(c.exitCode, 1)
        self.assertEqual(self.lines(c.name), [("stderr", "bad thing")])

    def test_delay(self) -> None:
        """C{delay S COMMAND} behaves as COMMAND after S seconds."""
        c = self.runFor(1.9, "delay", "2", "echo", "late")
        self.assertEqual(c.state, State.RUNNING)
        advanceClock(self.clock, 0.1)
        self.assertEqual(self.lines(c.name), [("stdout", "late")])

    def test_signals(self) -> None:
        """A run ignores SIGUSR1 and friends and ends with minus other signals."""
        c = self.runFor(0, "sleep", "infinity")
        for signum in (signal.SIGUSR1, signal.SIGCHLD, signal.SIGWINCH):
            self.successResultOf(self.backend.kill(c.name, signum))
            self.clock.advance(0)
        self.assertEqual(self.successResultOf(self.backend.inspect(c.name)).state, "running")
        self.successResultOf(self.backend.kill(c.name, signal.SIGHUP))
        self.clock.advance(0)
        c = self.successResultOf(self.backend.inspect(c.name))
        self.assertEqual(c.exitCode, -signal.SIGHUP)

    def test_ignoreTerm(self) -> None:
        """C{ignore-term} survives SIGTERM, not SIGKILL."""
        c = self.runFor(0, "ignore-term")
        self.successResultOf(self.backend.kill(c.name, signal.SIGTERM))
        self.clock.advance(1)
        self.assertEqual(self.successResultOf(self.backend.inspect(c.name)).state, "running")
        self.successResultOf(self.backend.kill(c.name, signal.SIGKILL))
        self.clock.advance(0)
        self.assertEqual(self.successResultOf(self.backend.inspect(c.name)).exitCode, -9)

    def test_unstartable(self) -> None:
        """C{unstartable} cannot be started: the container is C{dead}."""
        self.successResultOf(self.backend.create(ContainerSpec("x", command=("unstartable",))))
        self.failureResultOf(self.backend.start("x"), BackendError)
        c = self.successResultOf(self.backend.inspect("x"))
        self.assertEqual(c.state, State.DEAD)
        self.assertIn("unstartable", c.error)

    def test_hostImage(self) -> None:
        """The C{host} image exists, so the contract's example works."""
        spec = ContainerSpec("web", image="host", command=("sleep", "1000"))
        self.assertEqual(self.successResultOf(self.backend.create(spec)).image, "host")

    def test_capabilities(self) -> None:
        """Every option is accepted; no limit is enforced."""
        caps = self.backend.capabilities
        self.assertEqual((caps.options, caps.limits), (ALL_OPTIONS, frozenset()))
        spec = ContainerSpec("web", memory=1 << 20, cpus=0.5)
        c = self.successResultOf(self.backend.create(spec))
        self.assertEqual((c.memory, c.cpus), (1 << 20, 0.5))


class LogStoreTests(SynchronousTestCase):
    """L{MemoryLogStore} keeps a bounded tail per container."""

    def test_bounded(self) -> None:
        """Only the last C{maxLines} lines are kept; tail counts from the end."""
        store = MemoryLogStore(maxLines=3)
        for i in range(5):
            store.append("a", LogLine(float(i), "stdout", str(i)))
        self.assertEqual([x.line for x in store.tail("a", None)], ["2", "3", "4"])
        self.assertEqual([x.line for x in store.tail("a", 2)], ["3", "4"])
        self.assertEqual(store.tail("a", 0), [])
        store.remove("a")
        self.assertEqual(store.tail("a", None), [])


class MakeBackendTests(SynchronousTestCase):
    """The C{pycm.backends} entry point."""

    def test_makeBackend(self) -> None:
        """C{makeBackend} gives a memory backend on the given clock."""
        clock = Clock()
        backend = makeBackend(clock, None, {})
        self.assertIsInstance(backend, MemoryBackend)
        self.assertTrue(verifyObject(IContainerBackend, backend))
        self.assertEqual((backend.name, backend.defaultImage), ("memory", "memory"))

    def test_defaultImage(self) -> None:
        """The C{default-image} option names the default image."""
        backend = makeBackend(Clock(), FilePath("/nonexistent"), {"default-image": "alpine"})
        self.assertEqual(backend.defaultImage, "alpine")
        self.successResultOf(backend.open())
        c = self.successResultOf(backend.create(ContainerSpec("web")))
        self.assertEqual(c.image, "alpine")

    def test_entryPoint(self) -> None:
        """The entry point named C{memory} is this factory."""
        from pycm.backends import loadBackendFactory

        self.assertIs(loadBackendFactory("memory"), makeBackend)
