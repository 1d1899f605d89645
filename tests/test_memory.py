"""
Tests for L{pycm.backends.memory}: the conformance suite on a fake clock,
and the simulated commands themselves.
"""

from __future__ import annotations

from tests.conformance import MemoryFixture, make_backend_tests


class MemoryConformanceTests(make_backend_tests(MemoryFixture())):  # type: ignore[misc]
    """The memory backend passes the backend conformance suite."""
