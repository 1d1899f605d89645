"""
The backend conformance suite, for this package's tests.

It lives in L{pycm.testing} so other packages (third-party backends) can run
it too; this module only re-exports it.
"""

from pycm.testing import (
    BackendConformanceTests,
    BackendFixture,
    MemoryFixture,
    ReactorFixture,
    make_backend_tests,
)

__all__ = [
    "BackendConformanceTests",
    "BackendFixture",
    "MemoryFixture",
    "ReactorFixture",
    "make_backend_tests",
]
