"""
The daemon-side test helpers, for the tests that import them from here:
they live in L{pycm.testing.server} now.
"""

from pycm.testing.server import FakeConnection, FakeServer

__all__ = ["FakeConnection", "FakeServer"]
