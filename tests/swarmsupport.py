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
  - C{PYCM_SWARM_DIR}: the cluster's directory, where the outage lock is
    (L{OUTAGE_LOCK});
  - C{PYCM_TEST_IMAGE}: a busybox image on both nodes.
"""

from __future__ import annotations

import fcntl
import os
import signal
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import attrs
from twisted.internet import defer, task, utils
from twisted.trial.unittest import SkipTest

from pycm.backends.docker.engine import EngineAddress, EngineClient
from pycm.testing.swarmsuitebase import removeServices
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
    #: C{PYCM_SWARM_DIR} ("": the worker pidfile's directory's parent).
    directory: str = ""


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
    return SwarmCluster(
        host=host, image=image, directory=environ.get("PYCM_SWARM_DIR", ""), **values
    )


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


def realManager(testCase: Any) -> tuple[SwarmCluster, Any, EngineClient]:
    """
    The set-up of a test on the real swarm: the cluster (C{testCase} skips
    without one, L{requireSwarm}), the reactor, and an engine on the
    manager, closed after the test.
    """
    from twisted.internet import reactor

    cluster = requireSwarm()
    engine = engineFor(reactor, cluster.host)
    testCase.addCleanup(engine.close)
    return cluster, reactor, engine


@defer.inlineCallbacks
def pollUntil(
    reactor: Any,
    check: Callable[[], Any],
    what: str,
    timeout: float = 60.0,
    interval: float = 0.2,
) -> Any:
    """
    Call C{check()} (it may return a Deferred) every C{interval} seconds
    until it is true; fire with it.

    @raise AssertionError: naming C{what} (and the last answer) after
        C{timeout} seconds.
    """
    start = reactor.seconds()
    result = None
    while True:
        result = yield defer.maybeDeferred(check)
        if result:
            return result
        if reactor.seconds() - start > timeout:
            raise AssertionError(f"no {what} after {timeout} s (last: {result!r})")
        yield task.deferLater(reactor, interval, lambda: None)


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


#: Held (C{flock}) from a worker's dockerd killed until it is Ready again,
#: so that two tests' outages (the cluster tests', the end-to-end tests',
#: perhaps in other processes) never overlap; beside the cluster's files.
OUTAGE_LOCK = "outage.lock"

#: The outage locks this process holds: path -> open descriptor.
_heldLocks: dict[str, int] = {}


def outageLockPath(cluster: SwarmCluster) -> str:
    """The outage lock of C{cluster}: in C{PYCM_SWARM_DIR}, else beside the worker's directory."""
    base = cluster.directory or os.path.dirname(
        os.path.dirname(os.path.abspath(cluster.workerPidfile))
    )
    return os.path.join(base, OUTAGE_LOCK)


def tryOutageLock(cluster: SwarmCluster) -> bool:
    """Take C{cluster}'s outage lock if no one holds it (this process may hold it already)."""
    path = outageLockPath(cluster)
    if path in _heldLocks:
        return True
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return False
    _heldLocks[path] = fd
    return True


def takeOutageLock(cluster: SwarmCluster, timeout: float = 600.0) -> None:
    """Take C{cluster}'s outage lock, waiting (blocking) while another outage goes on."""
    end = time.monotonic() + timeout
    while not tryOutageLock(cluster):
        if time.monotonic() > end:
            raise AssertionError(f"another test's worker outage held {outageLockPath(cluster)}")
        time.sleep(0.5)


@defer.inlineCallbacks
def takeOutageLockLater(reactor: Any, cluster: SwarmCluster, timeout: float = 600.0) -> Any:
    """L{takeOutageLock}, waiting on C{reactor}."""
    start = reactor.seconds()
    while not tryOutageLock(cluster):
        if reactor.seconds() - start > timeout:
            raise AssertionError(f"another test's worker outage held {outageLockPath(cluster)}")
        yield task.deferLater(reactor, 0.5, lambda: None)


def releaseOutageLock(cluster: SwarmCluster) -> None:
    """Let the next outage go on (the worker is back, or given up on)."""
    fd = _heldLocks.pop(outageLockPath(cluster), None)
    if fd is not None:
        os.close(fd)


def isWorkerDockerd(pid: int, pidfile: str, proc: str = "/proc") -> bool:
    """Is process C{pid} a dockerd started with C{--pidfile} C{pidfile} (not a stale pid's heir)?"""
    try:
        with open(os.path.join(proc, str(pid), "cmdline"), "rb") as f:
            argv = [arg.decode("utf-8", "replace") for arg in f.read().split(b"\0") if arg]
    except OSError:
        return False
    if not argv or os.path.basename(argv[0]) != "dockerd":
        return False
    for n, arg in enumerate(argv):
        if arg == f"--pidfile={pidfile}" or (
            arg in ("--pidfile", "-p") and argv[n + 1 : n + 2] == [pidfile]
        ):
            return True
    return False


def killWorker(cluster: SwarmCluster, proc: str = "/proc") -> int:
    """
    SIGKILL the worker's dockerd, as a crash would (its containerd, and the
    containers, go on running), once no other outage goes on: the outage
    lock is taken (L{takeOutageLock}) and held until L{restartWorker} (or
    L{releaseOutageLock}).  The pid is the pidfile's only if that process
    is this worker's dockerd (L{isWorkerDockerd}).

    @return: the pid killed.
    @raise AssertionError: if the pidfile names no such process.
    """
    takeOutageLock(cluster)
    with open(cluster.workerPidfile) as f:
        pid = int(f.read().strip())
    if not isWorkerDockerd(pid, cluster.workerPidfile, proc):
        releaseOutageLock(cluster)
        raise AssertionError(
            f"{cluster.workerPidfile} names pid {pid}, which is not the worker's dockerd"
        )
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
    try:
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
    finally:
        releaseOutageLock(cluster)
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
    yield takeOutageLockLater(reactor, cluster, timeout * 5)
    try:
        killWorker(cluster)
    except BaseException:
        releaseOutageLock(cluster)
        raise
    result = None
    try:
        yield waitForNodeState(reactor, manager, cluster.workerNode, "down", timeout)
        if during is not None:
            result = yield defer.maybeDeferred(during)
    finally:
        yield restartWorker(reactor, cluster, manager, timeout)
    return result


__all__ = [
    "SwarmCluster",
    "clusterFromEnviron",
    "engineFor",
    "isWorkerDockerd",
    "killWorker",
    "nodeStates",
    "pollUntil",
    "realManager",
    "releaseOutageLock",
    "removeServices",
    "requireSwarm",
    "restartWorker",
    "takeOutageLock",
    "takeOutageLockLater",
    "tryOutageLock",
    "uniqueServiceName",
    "waitForNodeState",
    "workerOutage",
]
