"""
The docker section: pycm in front of a Docker engine, against the engine
reached directly, in the same run (issue 4's targets).

    python benchmarks/bench_docker.py [--quick]

or as a section of run.py: C{run(report, quick, children)}.

  - C{run} latency: pycm's C{run NAME IMAGE sleep 1000} over one TCP
    connection, against the docker SDK's C{containers.run(detach=True)}
    straight at the engine, with the same options (C{--network none},
    docker-init, a label), alternating the two so drift hits both alike.
    Target: pycm at most 1.10x the SDK.
  - C{list} latency with those containers: pycm's C{list} against the
    engine's own C{GET /containers/json?all=1} (same label filter) over a
    kept-alive raw HTTP connection on its socket.  Target: pycm at most
    1.5x the engine's plus 2 ms.

Needs C{PYCM_DOCKER_HOST} (a unix:// engine; C{.ci/docker-setup.sh} starts
one), C{PYCM_TEST_IMAGE} and the C{docker} package.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import sys
import time
import uuid
from urllib.parse import quote

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from benchmarks.common import (  # noqa: E402
    Children,
    LineClient,
    Missing,
    expectOK,
    median,
)
from benchmarks.report import Report, runAlone  # noqa: E402

SECTION = "docker"
LABEL = "io.pycm.managed"


class _UnixHTTP(http.client.HTTPConnection):
    """A kept-alive HTTP connection to the engine's UNIX socket."""

    def __init__(self, path: str) -> None:
        super().__init__("docker", timeout=60)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(60)
        self.sock.connect(self.path)


def _engineList(conn: _UnixHTTP) -> float:
    filters = quote(json.dumps({"label": [f"{LABEL}=true"]}))
    started = time.perf_counter()
    conn.request("GET", f"/containers/json?all=1&filters={filters}")
    response = conn.getresponse()
    body = response.read()
    elapsed = time.perf_counter() - started
    assert response.status == 200, body[:200]
    return elapsed


def run(report: Report, quick: bool, children: Children) -> None:
    host = os.environ.get("PYCM_DOCKER_HOST", "")
    image = os.environ.get("PYCM_TEST_IMAGE", "pycm-test/busybox:latest")
    if not host.startswith("unix://"):
        raise Missing(
            "PYCM_DOCKER_HOST (unix://...) is not set: "
            "`source .ci/docker-setup.sh && pycm_docker_setup`"
        )
    try:
        import docker
    except ImportError:
        raise Missing("the docker SDK is the reference: `pip install docker`") from None
    from benchmarks.daemon import startDaemon

    rounds = 4 if quick else 20
    lists = 20 if quick else 100
    sdk = docker.DockerClient(base_url=host)
    daemon = startDaemon(
        children,
        "docker",
        ["--docker-host", host, "--default-image", image, "--backend-option", "network=none"],
    )
    client = LineClient(daemon.port)
    tag = uuid.uuid4().hex[:6]
    pycmNames: list[str] = []
    sdkContainers = []
    pycmTimes: list[float] = []
    sdkTimes: list[float] = []

    def sdkStart(name: str) -> None:
        """What the SDK user does: containers.run(detach=True)."""
        sdkContainers.append(
            sdk.containers.run(
                image,
                ["sleep", "1000"],
                detach=True,
                network_mode="none",
                init=True,
                labels={"bench": tag},
                name=name,
            )
        )

    try:
        expectOK(client.request("ping"), "ping")
        # One of each first, unmeasured: image and layer caches warm.
        for warm in range(2):
            name = f"bench-{tag}-w{warm}"
            pycmNames.append(name)
            expectOK(client.request(f"run {name} {image} sleep 1000"), "run")
            sdkStart(f"bench-{tag}-sw{warm}")

        def pycmRun(i: int) -> None:
            name = f"bench-{tag}-p{i}"
            pycmNames.append(name)
            elapsed, reply = client.timed(f"run {name} {image} sleep 1000")
            expectOK(reply, "run")
            pycmTimes.append(elapsed)

        def sdkRun(i: int) -> None:
            started = time.perf_counter()
            sdkStart(f"bench-{tag}-s{i}")
            sdkTimes.append(time.perf_counter() - started)

        for i in range(rounds):
            # Alternate who goes first: the engine slows as it holds more.
            first, second = (pycmRun, sdkRun) if i % 2 == 0 else (sdkRun, pycmRun)
            first(i)
            second(i)
        pycmMs = median(pycmTimes) * 1000
        sdkMs = median(sdkTimes) * 1000
        report.add(
            SECTION,
            f"docker SDK containers.run(detach=True) x {rounds} (median ms)",
            f"{sdkMs:.1f}",
        )
        # Each round's two runs meet the engine in the same state (it slows
        # as it holds more): the median of the rounds' ratios.
        ratio = median([p / s for p, s in zip(pycmTimes, sdkTimes, strict=True)])
        report.add(SECTION, f"pycm run x {rounds}, docker backend (median ms)", f"{pycmMs:.1f}")
        report.add(
            SECTION,
            "run latency ratio pycm/SDK",
            f"{ratio:.2f}x",
            "<= 1.10x",
            ratio <= 1.10,
            note=f"median of the {rounds} rounds' ratios; ratio of the medians "
            f"{pycmMs / sdkMs:.2f}x",
        )

        count = len(pycmNames)
        conn = _UnixHTTP(host[len("unix://") :])
        engineTimes = []
        listTimes = []
        for _ in range(5):
            _engineList(conn)
            expectOK(client.request("list"), "list")
        for _ in range(lists):
            engineTimes.append(_engineList(conn))
            elapsed, reply = client.timed("list")
            expectOK(reply, "list")
            listTimes.append(elapsed)
        conn.close()
        engineList = median(engineTimes) * 1000
        pycmList = median(listTimes) * 1000
        report.add(
            SECTION,
            f"engine GET /containers/json, {count} pycm containers (median ms)",
            f"{engineList:.2f}",
        )
        limit = 1.5 * engineList + 2
        report.add(
            SECTION,
            f"pycm list, {count} containers (median ms)",
            f"{pycmList:.2f}",
            f"<= 1.5x engine + 2 ms = {limit:.2f}",
            pycmList <= limit,
        )
        report.notes.append(
            f"docker: engine {sdk.version().get('Version', '?')} at {host}, image {image}, "
            "--network none, docker-init; SDK calls straight at the same engine"
        )
    finally:
        for name in pycmNames:
            try:
                client.request(f"rm --force {name}")
            except Exception:
                pass
        client.close()
        for container in sdkContainers:
            try:
                container.remove(force=True)
            except Exception:
                pass
        sdk.close()
        children.stop(daemon.proc)


def main() -> int:
    quick = "--quick" in sys.argv[1:]
    return runAlone(run, quick)


if __name__ == "__main__":
    sys.exit(main())
