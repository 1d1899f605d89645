"""
The engine seam: L{IDockerEngine} and the engine client that provides it.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from pycm.backends.docker.backend import makeBackend
from pycm.backends.docker.engine import EngineAddress, EngineClient
from pycm.backends.docker.interfaces import IDockerEngine


class EngineClientInterfaceTests(SynchronousTestCase):
    """L{EngineClient} is an L{IDockerEngine}, and the backend takes any."""

    def test_provides(self) -> None:
        """L{EngineClient} provides L{IDockerEngine}."""
        client = EngineClient(Clock(), EngineAddress.parse("unix:///x.sock"))
        self.assertTrue(verifyObject(IDockerEngine, client))

    def test_makeBackendTakesAnEngine(self) -> None:
        """C{makeBackend} uses the engine it is given, not one of its own."""
        engine = EngineClient(Clock(), EngineAddress.parse("unix:///given.sock"))
        backend = makeBackend(Clock(), None, {"docker-host": "unix:///other.sock"}, engine)
        self.assertIs(backend.engine, engine)

    def test_makeBackendBuildsAClient(self) -> None:
        """Without an engine, C{makeBackend} builds a client at C{docker-host}."""
        backend = makeBackend(Clock(), None, {"docker-host": "unix:///other.sock"})
        self.assertIsInstance(backend.engine, EngineClient)
        self.assertEqual(str(backend.engine.address), "unix:///other.sock")
