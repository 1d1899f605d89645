"""
End-to-end: C{stats} of many running containers on the real C{twistd pycm}
(process backend) is read a slice at a time, so another client's C{ping}
is answered before it.  It compares the order of the replies, not times.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from tests.e2e import LineClient, RealDaemon
from tests.test_costlyrequests_e2e import countReplies

#: Running containers: their usage takes the daemon about 100 ms to read,
#: in 20 slices.
RUNNING = 1000


class StatsOfManyTests(SynchronousTestCase):
    """A process-backend daemon with L{RUNNING} containers."""

    def setUp(self) -> None:
        self.daemon = RealDaemon(
            self, backend="process", args=["--backend-option", "cgroup-parent=/pycm-e2e"]
        ).start()
        client = self.daemon.connect()
        for start in range(0, RUNNING, 50):
            batch = range(start, start + 50)
            client.send("".join(f"run c{i:04d} host sleep 1000\n" for i in batch))
            for _ in range(50):
                self.assertTrue(client.readLine().startswith(b"OK "))
        self.client = client

    def test_pingBeforeStats(self) -> None:
        """
        A C{ping} sent just after a C{stats} of every running container is
        answered while the C{stats} reply is not yet whole: without slices,
        the whole reply was made (and written) in the turn that read the
        request, before the C{ping} was read.
        """
        other: LineClient = self.daemon.connect()
        whole = []
        # The test may be descheduled between the pong and its look at the
        # other reply: tried thrice, which a daemon without slices fails.
        for _ in range(3):
            self.client.send("stats\n")
            self.assertEqual(other.ok("ping"), "pong")
            whole.append(countReplies(self.client))
            line = self.client.readLine()
            self.assertTrue(line.startswith(b"OK ["))
            self.assertEqual(line.count(b'"name"'), RUNNING)
            if whole[-1] == 0:
                break
        self.assertIn(0, whole)
