"""
Counting the environment files read (L{pycm.services.envfile.readTextFile}),
for the tests that a file named again is not read again.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from pycm.services import envfile


def countReads(testCase: SynchronousTestCase) -> list[str]:
    """The paths read from now on, in order, for the rest of C{testCase}."""
    reads: list[str] = []
    readTextFile = envfile.readTextFile

    def counted(path: str, what: str, limit: int) -> str:
        reads.append(path)
        return readTextFile(path, what, limit)

    testCase.patch(envfile, "readTextFile", counted)
    return reads
