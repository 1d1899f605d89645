"""
The shared test suites, one per interface, shipped so that every
implementation (pycm's own, a fake, a third party's) runs the same tests.
Each is a mixin: subclass it with a trial test case and set its C{fixture}.

  - L{BackendConformanceTests}: L{pycm.interfaces.IContainerBackend} (its
    parts: lifecycle, logs, policies, L{BackendApplyTests}, C{apply} of
    services on the backend, L{BackendUserTests}, C{--user}, and
    L{BackendHealthTests}, its health checks).
  - L{RecordStoreTests}, L{LogStoreTests}, L{EventStoreTests} (and
    L{DurableEventStoreTests}): the stores.
  - L{RuntimeTests}: L{pycm.interfaces.IRuntime} (L{RuntimeSweepTests} with
    L{pycm.interfaces.IRuntimeSweep}).
"""

from pycm.testing.conformance.apply import BackendApplyTests
from pycm.testing.conformance.backend import BackendConformanceTests, make_backend_tests
from pycm.testing.conformance.eventstore import (
    DurableEventStoreTests,
    EventStoreFixture,
    EventStoreTests,
)
from pycm.testing.conformance.health import BackendHealthTests, hostFileSwitch
from pycm.testing.conformance.logstore import LogStoreFixture, LogStoreTests
from pycm.testing.conformance.recordstore import (
    RecordStoreFixture,
    RecordStoreTests,
)
from pycm.testing.conformance.runtime import (
    RunRecorder,
    RuntimeFixture,
    RuntimeSweepTests,
    RuntimeTests,
)
from pycm.testing.conformance.users import BackendUserTests

__all__ = [
    "BackendApplyTests",
    "BackendConformanceTests",
    "BackendHealthTests",
    "BackendUserTests",
    "DurableEventStoreTests",
    "EventStoreFixture",
    "EventStoreTests",
    "LogStoreFixture",
    "LogStoreTests",
    "RecordStoreFixture",
    "RecordStoreTests",
    "RunRecorder",
    "RuntimeFixture",
    "RuntimeSweepTests",
    "RuntimeTests",
    "hostFileSwitch",
    "make_backend_tests",
]
