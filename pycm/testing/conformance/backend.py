"""
The conformance suite of L{IContainerBackend}, whole: run it on a backend
by mixing L{BackendConformanceTests} into a trial C{TestCase} with the
backend's fixture (see L{pycm.testing.fixtures.BackendFixture}).
"""

from __future__ import annotations

from twisted.trial.unittest import TestCase

from pycm.testing.conformance.apply import BackendApplyTests
from pycm.testing.conformance.health import BackendHealthTests
from pycm.testing.conformance.lifecycle import BackendLifecycleTests
from pycm.testing.conformance.logs import BackendLogsTests
from pycm.testing.conformance.policies import BackendPolicyTests
from pycm.testing.conformance.users import BackendUserTests
from pycm.testing.fixtures import BackendFixture

__all__ = ["BackendConformanceTests", "make_backend_tests"]


class BackendConformanceTests(
    BackendLifecycleTests,
    BackendLogsTests,
    BackendPolicyTests,
    BackendApplyTests,
    BackendUserTests,
    BackendHealthTests,
):
    """
    The behaviour every L{IContainerBackend} must have, as a mixin.  Use
    it as::

        class MemoryConformanceTests(BackendConformanceTests, TestCase):
            fixture = MemoryFixture()
    """


def make_backend_tests(fixture: BackendFixture) -> type[TestCase]:
    """
    L{BackendConformanceTests} as a C{TestCase} for the backend C{fixture}
    makes (the older spelling: a type checker cannot take a call's result
    as a base class, so prefer the mixin).
    """
    return type(
        "BackendConformanceTests", (BackendConformanceTests, TestCase), {"fixture": fixture}
    )
