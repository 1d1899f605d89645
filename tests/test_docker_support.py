"""
Helpers (no tests) for the tests that need a real Docker engine.

They read what C{.ci/docker-setup.sh} exports:
  - C{PYCM_DOCKER_HOST}: the engine (C{unix:///...}); unset: those tests
    skip, saying why;
  - C{PYCM_REQUIRE_DOCKER=1}: skipping is a failure instead;
  - C{PYCM_TEST_IMAGE}: a busybox image on that engine;
  - C{PYCM_TEST_REGISTRY}: C{127.0.0.1:PORT}, a registry holding
    C{PYCM_TEST_IMAGE} (for pull tests).
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from typing import Any

from twisted.internet import defer
from twisted.trial.unittest import SkipTest

from pycm.backends.docker.backend import DockerBackend, makeBackend

_reachable: dict[str, str | None] = {}


def ping(host: str, timeout: float = 3.0) -> str | None:
    """
    Ask the engine at C{host} for C{/_ping} with a plain blocking socket
    (test set-up only).

    @return: None if it answered OK, else why not.
    """
    if not host.startswith("unix://"):
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(host[len("unix://") :])
        sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
        answer = sock.recv(4096)
    except OSError as e:
        return f"cannot reach the docker engine at {host}: {e}"
    finally:
        sock.close()
    if b" 200 " not in answer.split(b"\r\n", 1)[0]:
        return f"the docker engine at {host} answered {answer[:60]!r}"
    return None


def requireEngine() -> str:
    """
    The engine tests run against.

    @raise SkipTest: if there is none (C{PYCM_DOCKER_HOST} unset or the
        engine unreachable), unless C{PYCM_REQUIRE_DOCKER=1}.
    @raise AssertionError: if there is none and C{PYCM_REQUIRE_DOCKER=1}.
    """
    host = os.environ.get("PYCM_DOCKER_HOST", "")
    if not host:
        why = (
            "PYCM_DOCKER_HOST is not set: start an engine with "
            "`source .ci/docker-setup.sh && pycm_docker_setup`"
        )
    else:
        if host not in _reachable:
            _reachable[host] = ping(host)
        why = _reachable[host] or ""
    if why:
        if os.environ.get("PYCM_REQUIRE_DOCKER") == "1":
            raise AssertionError(f"PYCM_REQUIRE_DOCKER=1 but {why}")
        raise SkipTest(why)
    return host


def testImage() -> str:
    """The busybox image on the test engine."""
    return os.environ.get("PYCM_TEST_IMAGE", "pycm-test/busybox:latest")


def uniqueName(prefix: str = "t") -> str:
    """A container name no other test uses."""
    return f"pycm-{prefix}-{uuid.uuid4().hex[:8]}"


def engineBackend(
    reactor: Any, host: str | None = None, stateDir: str | None = None, **options: str
) -> DockerBackend:
    """A docker backend on the test engine, as the daemon would build it."""
    settings = {
        "docker-host": host or requireEngine(),
        "default-image": testImage(),
        "network": "none",
    }
    settings.update(options)
    return makeBackend(reactor, stateDir, settings)


@defer.inlineCallbacks
def removeContainers(backend: DockerBackend, names: list[str]) -> Any:
    """Remove every container in C{names} straight through the engine."""
    for name in names:
        try:
            yield backend.engine.request("DELETE", f"/containers/{name}", {"force": True})
        except Exception:
            pass


def dockerCLIEnv(host: str) -> dict[str, str]:
    """An environment for running the C{docker} CLI at C{host}."""
    return dict(os.environ, DOCKER_HOST=host)


__all__ = [
    "engineBackend",
    "json",
    "ping",
    "removeContainers",
    "requireEngine",
    "testImage",
    "uniqueName",
]
