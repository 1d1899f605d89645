"""
The shared test suites, one per interface, shipped so that every
implementation (pycm's own, a fake, a third party's) runs the same tests:
L{BackendConformanceTests} for L{pycm.interfaces.IContainerBackend}.
"""

from pycm.testing.conformance.backend import BackendConformanceTests, make_backend_tests

__all__ = ["BackendConformanceTests", "make_backend_tests"]
