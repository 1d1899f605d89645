"""
Helpers (no tests) for the tests that need a real Docker Swarm.

They read what C{.ci/swarm-setup.sh} exports:
  - C{PYCM_SWARM_HOST}: the manager's API (C{unix:///...}); unset: those
    tests skip, saying why;
  - C{PYCM_REQUIRE_SWARM=1}: skipping is a failure instead;
  - C{PYCM_SWARM_WORKER_HOST}: the worker's own engine;
  - C{PYCM_SWARM_MANAGER_NODE}, C{PYCM_SWARM_WORKER_NODE}: the nodes'
    hostnames, as Swarm reports them;
  - C{PYCM_SWARM_WORKER_PIDFILE}: the worker dockerd's pidfile, and
    C{PYCM_SWARM_WORKER_RESTART}: a shell command starting it again the same
    way (L{killWorker}, L{restartWorker}, L{workerOutage});
  - C{PYCM_TEST_IMAGE}: a busybox image on both nodes.
"""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import attrs
from twisted.internet import defer, task, utils
from twisted.trial.unittest import SkipTest

from pycm.backends.docker.engine import EngineAddress, EngineClient
from tests.test_docker_support import ping


@attrs.frozen
class SwarmCluster:
    """The two-node swarm the tests run against, as the environment describes it."""

    host: str
    workerHost: str
    managerNode: str
    workerNode: str
    workerPidfile: str
    workerRestart: str
    image: str


def clusterFromEnviron(environ: Mapping[str, str]) -> SwarmCluster | None:
    """
    The cluster C{environ} describes.

    @return: None without C{PYCM_SWARM_HOST}.
    @raise ValueError: naming the variables missing beside it.
    """
    host = environ.get("PYCM_SWARM_HOST", "")
    if not host:
        return None
    names = {
        "workerHost": "PYCM_SWARM_WORKER_HOST",
        "managerNode": "PYCM_SWARM_MANAGER_NODE",
        "workerNode": "PYCM_SWARM_WORKER_NODE",
        "workerPidfile": "PYCM_SWARM_WORKER_PIDFILE",
        "workerRestart": "PYCM_SWARM_WORKER_RESTART",
    }
    missing = [variable for variable in names.values() if not environ.get(variable)]
    if missing:
        raise ValueError(f"PYCM_SWARM_HOST is set but not {', '.join(missing)}")
    values = {field: environ[variable] for field, variable in names.items()}
    image = environ.get("PYCM_TEST_IMAGE", "pycm-test/busybox:latest")
    return SwarmCluster(host=host, image=image, **values)


def requireSwarm(
    environ: Mapping[str, str] | None = None,
    pinger: Callable[[str], str | None] = ping,
) -> SwarmCluster:
    """
    The cluster swarm tests run against.

    @raise SkipTest: if there is none (C{PYCM_SWARM_HOST} unset, the
        variables beside it incomplete, or an engine unreachable), unless
        C{PYCM_REQUIRE_SWARM=1}.
    @raise AssertionError: if there is none and C{PYCM_REQUIRE_SWARM=1}.
    """
    env = os.environ if environ is None else environ
    cluster: SwarmCluster | None = None
    try:
        cluster = clusterFromEnviron(env)
    except ValueError as e:
        why = str(e)
    else:
        if cluster is None:
            why = (
                "PYCM_SWARM_HOST is not set: start a two-node swarm with "
                "`source .ci/swarm-setup.sh && pycm_swarm_setup`"
            )
        else:
            why = pinger(cluster.host) or pinger(cluster.workerHost) or ""
    if cluster is not None and not why:
        return cluster
    if env.get("PYCM_REQUIRE_SWARM") == "1":
        raise AssertionError(f"PYCM_REQUIRE_SWARM=1 but {why}")
    raise SkipTest(why)


def engineFor(reactor: Any, host: str, timeout: float = 10.0) -> EngineClient:
    """An engine client on C{host} (a node's engine or the manager's API)."""
    return EngineClient(reactor, EngineAddress.parse(host), timeout=timeout)


def uniqueServiceName(prefix: str = "t") -> str:
    """A service name no other test (nor another helper's test) uses."""
    return f"pycm-{prefix}-{uuid.uuid4().hex[:8]}"


@defer.inlineCallbacks
def nodeStates(manager: EngineClient) -> Any:
    """
    The nodes, as the manager sees them.

    @return: Deferred firing with C{{hostname: (role, state)}}, e.g.
        C{("worker", "down")}.
    """
    _, nodes = yield manager.request("GET", "/nodes")
    return {
        node["Description"]["Hostname"]: (node["Spec"]["Role"], node["Status"]["State"])
        for node in nodes
    }


@defer.inlineCallbacks
def waitForNodeState(
    reactor: Any,
    manager: EngineClient,
    node: str,
    state: str,
    timeout: float = 60.0,
    interval: float = 0.5,
) -> Any:
    """
    Poll the manager until C{node}'s state is C{state} (C{"ready"},
    C{"down"}); a request that fails (the manager busy) is tried again.

    @return: Deferred firing with the seconds it took.
    @raise AssertionError: after C{timeout} seconds.
    """
    start = reactor.seconds()
    seen: Any = None
    while reactor.seconds() - start < timeout:
        try:
            states = yield nodeStates(manager)
        except Exception as e:
            seen = e
        else:
            seen = states.get(node)
            if seen is not None and seen[1] == state:
                return reactor.seconds() - start
        yield task.deferLater(reactor, interval, lambda: None)
    raise AssertionError(f"node {node} is not {state} after {timeout} s (last seen: {seen!r})")


def killWorker(cluster: SwarmCluster) -> int:
    """
    SIGKILL the worker's dockerd, as a crash would (its containerd, and the
    containers, go on running).

    @return: the pid killed.
    """
    with open(cluster.workerPidfile) as f:
        pid = int(f.read().strip())
    os.kill(pid, signal.SIGKILL)
    return pid


@defer.inlineCallbacks
def restartWorker(
    reactor: Any, cluster: SwarmCluster, manager: EngineClient, timeout: float = 120.0
) -> Any:
    """
    Start the worker's dockerd again the same way (it is left alone if it
    runs) and wait until the manager sees the node Ready again.

    @return: Deferred firing with the seconds until Ready.
    @raise AssertionError: if the engine does not start, or the node is not
        Ready within C{timeout} seconds.
    """
    start = reactor.seconds()
    code = yield utils.getProcessValue(
        "/usr/bin/timeout",
        ["-k", "5", str(int(timeout)), "/bin/sh", "-c", cluster.workerRestart],
        env=dict(os.environ),
        reactor=reactor,
    )
    if code != 0:
        raise AssertionError(f"the worker's dockerd did not start again (exit {code})")
    left = max(1.0, timeout - (reactor.seconds() - start))
    yield waitForNodeState(reactor, manager, cluster.workerNode, "ready", left)
    return reactor.seconds() - start


@defer.inlineCallbacks
def workerOutage(
    reactor: Any,
    cluster: SwarmCluster,
    manager: EngineClient,
    during: Callable[[], Any] | None = None,
    timeout: float = 120.0,
) -> Any:
    """
    Kill the worker's dockerd, wait until the manager sees the node Down,
    call C{during} (it may return a Deferred), then bring the worker back
    and wait until it is Ready, whatever C{during} did.

    @return: Deferred firing with C{during}'s result.
    """
    killWorker(cluster)
    result = None
    try:
        yield waitForNodeState(reactor, manager, cluster.workerNode, "down", timeout)
        if during is not None:
            result = yield defer.maybeDeferred(during)
    finally:
        yield restartWorker(reactor, cluster, manager, timeout)
    return result


@defer.inlineCallbacks
def removeServices(manager: EngineClient, names: list[str]) -> Any:
    """Remove every service in C{names} that still exists."""
    for name in names:
        try:
            yield manager.request("DELETE", f"/services/{name}")
        except Exception:
            pass


__all__ = [
    "SwarmCluster",
    "clusterFromEnviron",
    "engineFor",
    "killWorker",
    "nodeStates",
    "removeServices",
    "requireSwarm",
    "restartWorker",
    "uniqueServiceName",
    "waitForNodeState",
    "workerOutage",
]
