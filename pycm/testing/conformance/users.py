"""
The backend conformance suite's C{--user} cases: a backend that honours
C{user} runs the container as that user (seen from inside when the fixture
can say how: its optional C{idCommand}); one that does not refuses it with
L{BadRequest} naming C{--user}.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.trial.unittest import SkipTest

from pycm.errors import BadRequest
from pycm.model import WaitCondition
from pycm.testing.conformance.base import BackendTestsBase

#: The user the cases run as: nobody's usual ids, by number, so that no
#: passwd entry is needed inside an image.
OTHER_USER = "65534:65534"


class BackendUserTests(BackendTestsBase):
    """
    C{--user}.  A fixture may have C{idCommand}: a command that writes its
    uid and gid as one stdout line, C{UID:GID}, then exits 0 (as
    C{sh -c 'echo "$(id -u):$(id -g)"'}); without it, only what C{inspect}
    says is checked.
    """

    @inlineCallbacks
    def test_runAsAnotherUser(self) -> Generator[Deferred[Any], Any, None]:
        """
        A backend that honours C{user} runs the container as that user; one
        that does not refuses it, naming C{--user}, and creates nothing.
        """
        if "user" not in self.backend.capabilities.options:
            yield self._refused()
            return
        idCommand = getattr(self.fixture, "idCommand", None)
        command = self.fixture.longCommand if idCommand is None else tuple(idCommand)
        spec = self.spec("user", command, user=OTHER_USER)
        try:
            created = yield self.create(spec)
        except BadRequest as e:
            if "must run as root" in str(e):
                raise SkipTest(str(e)) from None
            raise
        self.assertEqual(created.user, OTHER_USER)
        started = yield self.settle(self.backend.start(spec.name))
        self.assertEqual(started.user, OTHER_USER)
        if idCommand is None:
            return
        ended = yield self.waitFor(spec.name, WaitCondition.NOT_RUNNING)
        self.assertEqual(ended.exitCode, 0)
        lines = yield self.settle(self.backend.logs(spec.name, None))
        self.assertEqual([(x.stream, x.line) for x in lines], [("stdout", OTHER_USER)])

    @inlineCallbacks
    def _refused(self) -> Generator[Deferred[Any], Any, None]:
        spec = self.spec("nouser", self.fixture.longCommand, user=OTHER_USER)
        error = yield self.assertFails(self.backend.create(spec), BadRequest)
        self.assertIn("--user", str(error))
        names = [c.name for c in (yield self.settle(self.backend.list()))]
        self.assertNotIn(spec.name, names)
