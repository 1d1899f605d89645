"""
Helpers (no tests) for the swarm backend's end-to-end tests: the real
C{twistd pycm --backend swarm} in front of the two-node cluster of
C{.ci/swarm-setup.sh}, the C{docker} CLI on the manager as the witness of
what Swarm really did, and an events subscriber read with deadlines.

Everything here waits by polling with a deadline, never by sleeping a fixed
time; every C{docker} call is bounded.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from tests.e2e import LineClient, RealDaemon
from tests.swarmsupport import killWorker, releaseOutageLock, requireSwarm, uniqueServiceName

#: How long Swarm may take to place, start, replace or remove tasks.
SWARM_DEADLINE = 60.0


def waitUntil(predicate: Callable[[], Any], what: str, deadline: float = SWARM_DEADLINE) -> Any:
    """Poll C{predicate} (every 0.2 s: each poll asks the cluster) until true, or fail."""
    end = time.monotonic() + deadline
    last: Any = None
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {deadline:.0f} s waiting for {what}")
        time.sleep(0.2)


class Cluster:
    """
    The two-node swarm the tests run on, as C{tests.swarmsupport} describes
    it, and the C{docker} CLI on its manager.
    """

    def __init__(self, testCase: SynchronousTestCase) -> None:
        self.testCase = testCase
        self.swarm = requireSwarm()
        self.host = self.swarm.host
        self.workerHost = self.swarm.workerHost
        self.managerNode = self.swarm.managerNode
        self.workerNode = self.swarm.workerNode
        self.image = self.swarm.image

    def docker(self, *args: str, host: str | None = None, timeout: float = 30) -> str:
        """Run C{docker} on the manager (or C{host}); its output; fail on an error."""
        result = subprocess.run(
            ["docker", "-H", host or self.host, *args],
            capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL,
        )
        if result.returncode != 0:
            raise AssertionError(
                f"docker {' '.join(args)} exited {result.returncode}: "
                f"{result.stderr.decode(errors='replace')}"
            )
        return result.stdout.decode()

    def serviceName(self, prefix: str = "sw") -> str:
        """A unique service name, its service removed after the test whatever happens."""
        name = uniqueServiceName(prefix)
        self.testCase.addCleanup(self.removeService, name)
        return name

    def removeService(self, name: str) -> None:
        """Remove the service C{name} straight through the engine, if it is there."""
        subprocess.run(
            ["docker", "-H", self.host, "service", "rm", name],
            capture_output=True, timeout=30, stdin=subprocess.DEVNULL,
        )

    def tasks(self, name: str) -> list[dict[str, str]]:
        """
        The service's tasks the manager wants running (C{docker service ps
        --filter desired-state=running}): each C{{"id", "node", "state"}},
        state the first word of Swarm's CURRENT STATE, lower case.
        """
        out = self.docker(
            "service", "ps", "--no-trunc", "--filter", "desired-state=running",
            "--format", "{{json .}}", name,
        )
        tasks = []
        for line in out.splitlines():
            row = json.loads(line)
            tasks.append({
                "id": row["ID"],
                "node": row["Node"],
                "state": row["CurrentState"].split(" ", 1)[0].lower(),
            })
        return tasks

    def allTasks(self, name: str) -> list[str]:
        """The ids of every task of the service the manager still has."""
        return self.docker("service", "ps", "--no-trunc", "--format", "{{.ID}}", name).split()

    def runningNodes(self, name: str) -> list[str]:
        """The nodes of the service's running tasks, sorted (one entry a task)."""
        return sorted(t["node"] for t in self.tasks(name) if t["state"] == "running")

    def nodesReady(self) -> bool:
        """Does the manager see both nodes Ready?"""
        out = self.docker("node", "ls", "--format", "{{.Hostname}} {{.Status}}")
        return sorted(out.split()) == sorted(
            [self.managerNode, "Ready", self.workerNode, "Ready"]
        )

    def workerState(self) -> str:
        """The worker node's status as the manager sees it (C{ready}, C{down}, ...)."""
        return self.docker(
            "node", "inspect", "--format", "{{.Status.State}}", self.workerNode
        ).strip()

    def killWorker(self) -> None:
        """
        SIGKILL the worker's dockerd (L{tests.swarmsupport.killWorker}); the
        worker is brought back after the test (L{restartWorker}) whatever
        happens.
        """
        self.testCase.addCleanup(self.restartWorker)
        killWorker(self.swarm)

    def restartWorker(self, deadline: float = 120.0) -> None:
        """
        Start the worker's dockerd again the same way, if it is not running
        (C{PYCM_SWARM_WORKER_RESTART}), and wait until the manager sees both
        nodes Ready: L{tests.swarmsupport.restartWorker}, blocking.
        """
        end = time.monotonic() + deadline

        def ready() -> bool:
            try:
                return self.nodesReady()
            except (AssertionError, subprocess.TimeoutExpired):
                return False

        try:
            subprocess.run(
                ["/bin/sh", "-c", self.swarm.workerRestart], check=True,
                timeout=deadline, stdin=subprocess.DEVNULL, capture_output=True,
            )
            waitUntil(ready, "both nodes Ready again", max(1.0, end - time.monotonic()))
        finally:
            # The next test's outage (maybe another process's) may go on.
            releaseOutageLock(self.swarm)


def swarmDaemon(
    testCase: SynchronousTestCase, cluster: Cluster, *args: str, stateDir: str | None = None
) -> RealDaemon:
    """
    A running daemon on the swarm backend in front of C{cluster}'s manager,
    given the worker's engine (C{--swarm-node-host}) for C{kill}.
    """
    return RealDaemon(
        testCase,
        backend="swarm",
        stateDir=stateDir,
        args=[
            "--docker-host", cluster.host,
            "--default-image", cluster.image,
            "--swarm-node-host", f"{cluster.workerNode}={cluster.workerHost}",
            *args,
        ],
    ).start()


def running(container: dict[str, Any], replicas: int) -> bool:
    """Is C{container} (an C{inspect} reply) running with all C{replicas} tasks running?"""
    return (
        container["state"] == "running"
        and container["replicas"] == {"running": replicas, "desired": replicas}
        and sum(1 for t in container["tasks"] if t["state"] == "running") == replicas
    )


def errorOf(client: LineClient, line: str) -> tuple[str, str]:
    """The code and message of the C{ERR} reply C{line} gets (fails on an C{OK})."""
    kind, value = client.request(line)
    assert kind == "ERR", (line, value)
    return value[0], value[1]


def runningTasks(container: dict[str, Any]) -> list[dict[str, Any]]:
    """The running tasks of C{container} (an C{inspect} reply)."""
    return [t for t in container["tasks"] if t["state"] == "running"]


class Watcher:
    """
    A connection of its own subscribed to one container's events; L{events}
    reads what has come so far (a C{ping} pumps the EVENT lines before it).
    """

    def __init__(self, daemon: RealDaemon, name: str, since: int | None = None) -> None:
        self.name = name
        self.client: LineClient = daemon.connect()
        sinceOption = "" if since is None else f" --since={since}"
        reply = self.client.ok(f"events{sinceOption} --filter=name={name}")
        self.lastId: int = reply["last_id"]

    def events(self) -> list[dict[str, Any]]:
        """Every event of the container received so far, in order."""
        self.client.ok("ping")
        return [e for e in self.client.events if e.get("name") == self.name]

    def actions(self) -> list[str]:
        return [e["action"] for e in self.events()]

    def waitFor(
        self, predicate: Callable[[list[dict[str, Any]]], Any], what: str,
        deadline: float = SWARM_DEADLINE,
    ) -> Any:
        """Read events until C{predicate(events)} is true; its value."""
        try:
            return waitUntil(lambda: predicate(self.events()), what, deadline)
        except AssertionError as e:
            raise AssertionError(f"{e}; events: {self.client.events}") from None


__all__ = [
    "SWARM_DEADLINE", "Cluster", "Watcher", "errorOf", "running", "runningTasks", "swarmDaemon",
]
