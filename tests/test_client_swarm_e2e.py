"""
End to end on a real two-node Docker Swarm: the real C{pycm} client against
the real C{twistd pycm --backend swarm}, as a person types it: C{run
--replicas}, the REPLICAS column, C{inspect}'s tasks on both nodes, C{logs}
prefixed with each line's task and node, C{scale} up and down, C{rm}.

Needs the cluster of C{.ci/swarm-setup.sh} (C{PYCM_SWARM_HOST} and the
rest): skipped without it, failed without it under C{PYCM_REQUIRE_SWARM=1}.
Real processes, sockets and time: each wait polls with a deadline.
"""

from __future__ import annotations

import re
import subprocess
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from tests.e2e import RealDaemon, waitFor
from tests.swarmsupport import requireSwarm, uniqueServiceName

#: How long a swarm operation may take here (two cores, shared).
SWARM_DEADLINE = 120.0


class SwarmClientE2ETests(SynchronousTestCase):
    """The client's swarm output, on the real cluster."""

    def setUp(self) -> None:
        self.cluster = requireSwarm()
        self.daemon = RealDaemon(
            self, backend="swarm", args=["--docker-host", self.cluster.host]
        ).start()
        self.name = uniqueServiceName("client")
        self.addCleanup(self.removeService)

    def pycm(self, *args: str, code: int = 0) -> str:
        """Run the real client; its output, once it exited with C{code}."""
        result = self.daemon.pycm(*args)
        stdout, stderr = result.stdout.decode(), result.stderr.decode()
        self.assertEqual(result.returncode, code, f"pycm {' '.join(args)}: {stderr}")
        return stdout

    def removeService(self) -> None:
        """Remove the test's service, through pycm, else with docker's CLI."""
        result = self.daemon.pycm("rm", "--force", self.name)
        if result.returncode != 0:
            subprocess.run(
                ["docker", "-H", self.cluster.host, "service", "rm", self.name],
                capture_output=True, timeout=60,
            )

    def test_replicasTasksLogsScale(self) -> None:
        """
        C{run --replicas=2} answers once both tasks run (one on each node,
        placed by Swarm's spread), C{ls} shows C{2/2} under REPLICAS,
        C{inspect} lists the two tasks with their nodes, C{logs} prefixes
        each line C{NAME.TASK@NODE | } (lines from both nodes), C{scale}
        to 3 then to 1 says the new counts, and C{rm} removes it.
        """
        nodes = {self.cluster.managerNode, self.cluster.workerNode}
        out = self.pycm(
            "run", "--replicas=2", "--stop-timeout=1", self.name, self.cluster.image,
            "sh", "-c", "echo hello from $(hostname); sleep 600",
        )
        self.assertEqual(out, f"{self.name}  running  replicas 2/2\n")

        table = self.pycm("ls", "--filter", f"name={self.name}").splitlines()
        self.assertEqual(table[0].split()[:3], ["NAME", "STATE", "REPLICAS"])
        self.assertEqual(table[1].split()[:3], [self.name, "running", "2/2"])

        detail = self.pycm("inspect", self.name).splitlines()
        self.assertIn("replicas:       2/2", detail)
        rows = detail[detail.index("tasks:") + 2:]
        running = [row.split() for row in rows if row.split()[2:3] == ["running"]]
        self.assertEqual({row[1] for row in running}, nodes)

        tag = re.compile(rf"^{re.escape(self.name)}\.(\w{{12}})@(\S+) +\| hello from ")

        def taggedLines() -> Any:
            lines = self.pycm("logs", self.name).splitlines()
            found = [tag.match(line) for line in lines]
            seen = {m.group(2) for m in found if m is not None}
            return lines if seen == nodes and all(found) else None

        lines = waitFor(taggedLines, "a tagged line from each node", SWARM_DEADLINE)
        self.assertEqual(len(lines), 2)

        self.assertEqual(self.pycm("scale", self.name, "3"),
                         f"{self.name}  running  replicas 3/3\n")
        self.assertEqual(self.pycm("scale", f"{self.name}=1"),
                         f"{self.name}  running  replicas 1/1\n")
        table = self.pycm("ls", "--format", "{{.Name}} {{.Replicas}}",
                          "--filter", f"name={self.name}")
        self.assertEqual(table, f"{self.name} 1/1\n")

        self.assertEqual(self.pycm("rm", "--force", self.name), f"{self.name}\n")
        self.assertNotIn(self.name, self.pycm("ls", "-q").split())
