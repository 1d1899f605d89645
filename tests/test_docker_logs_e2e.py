"""
End-to-end: C{logs} of a container whose engine log is far bigger than a
reply may carry, on the real C{twistd pycm --backend docker} in front of
the test engine: the daemon holds only the newest
L{pycm.backends.docker.follow.REPLY_BUDGET} bytes of it, and says what
C{--tail} fits.

Needs C{PYCM_DOCKER_HOST} (see L{tests.test_docker_support}); skips
without it, fails without it under C{PYCM_REQUIRE_DOCKER=1}.
"""

from __future__ import annotations

import shlex

from twisted.trial.unittest import SynchronousTestCase

from tests.e2e import memoryOf, waitFor
from tests.test_docker_e2e import dockerDaemon
from tests.test_docker_support import requireEngine, testImage, uniqueName

#: The container's log: this many lines of 100 bytes (40 MB).
LINES = 400_000


class BigLogTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.host = requireEngine()

    def test_bigLogHoldsTheNewestOnly(self) -> None:
        """
        C{logs --tail=all} of a 40 MB log: the daemon's peak memory grows by far less
        than the log (it grew by 176 MB when it kept every line), the
        reply says how many of the newest lines fit, and C{--tail} of them
        gives the last line written.
        """
        daemon = dockerDaemon(self, self.host)
        client = daemon.connect()
        name = uniqueName("biglog")
        self.addCleanup(lambda: client.request(f"rm --force {name}"))
        script = f"yes {'x' * 99} | head -n {LINES}; echo last-line"
        client.ok(f"run {name} {testImage()} sh -c {shlex.quote(script)}")
        waitFor(lambda: client.ok(f"inspect {name}")["state"] == "exited", "the log written",
                deadline=120)
        before = memoryOf(daemon.pid, "VmHWM")
        kind, value = client.request(f"logs --tail=all {name}")
        grown = memoryOf(daemon.pid, "VmHWM") - before
        self.assertEqual(kind, "ERR", f"{len(value)} lines")
        self.assertIn("a reply may carry; the last", value[1])
        self.assertLess(grown, 80 * 2**20)
        fits = int(value[1].rsplit("--tail=", 1)[1])
        lines = client.ok(f"logs --tail={fits} {name}")
        self.assertEqual(lines[-1]["line"], "last-line")
        self.assertEqual(client.ok(f"logs --tail=2 {name}")[0]["line"], "x" * 99)
        self.assertEqual(client.ok("ping"), "pong")
