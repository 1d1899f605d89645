"""
The bases of the shared suites: plain mixins at run time (so that trial
does not collect a suite that has no fixture), the trial test case they
end up in for a type checker (so that their tests can use its asserts).
"""

from typing import TYPE_CHECKING

from twisted.trial.unittest import SynchronousTestCase, TestCase

if TYPE_CHECKING:
    SynchronousTestCaseMixin = SynchronousTestCase
    TestCaseMixin = TestCase
else:
    SynchronousTestCaseMixin = object
    TestCaseMixin = object

__all__ = ["SynchronousTestCaseMixin", "TestCaseMixin"]
