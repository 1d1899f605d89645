"""
Public test helpers, shipped with pycm as treq ships C{treq.testing}:
clocks (L{pycm.testing.clock}, with a fixture's L{ClockPerTest}), an event
recorder, the conformance fixtures and an opened memory backend
(L{pycm.testing.fixtures}), and the shared suites of every interface
(L{pycm.testing.conformance}).
"""

from pycm.testing.clock import ClockPerTest, advanceClock, settleClock
from pycm.testing.conformance import BackendConformanceTests, make_backend_tests
from pycm.testing.fixtures import BackendFixture, MemoryFixture, ReactorFixture, memoryBackend
from pycm.testing.recorder import EventRecorder

__all__ = [
    "BackendConformanceTests",
    "BackendFixture",
    "ClockPerTest",
    "EventRecorder",
    "MemoryFixture",
    "ReactorFixture",
    "advanceClock",
    "make_backend_tests",
    "memoryBackend",
    "settleClock",
]
