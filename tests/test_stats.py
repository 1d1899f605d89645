"""
The C{stats} request: the CPU sampler's "last interval", the command over
the memory backend (deterministic on its clock), the process backend's
readers of cgroup and /proc files (on fake trees), and the Docker backend's
reading of the engine's stats (on a fake engine: a real engine's run is in
the Docker conformance suite).
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from pycm.backends.docker.backend import DockerBackend
from pycm.backends.docker.engine import EngineError
from pycm.backends.docker.translate import usageFromStats
from pycm.backends.process.cgroups import Cgroups
from pycm.backends.process.usage import (
    CgroupFiles,
    UsageReader,
    cgroupUsage,
    parseIOStat,
    processUsage,
)
from pycm.errors import NotFound
from pycm.stats import CpuSampler, Usage
from pycm.testing.server import FakeServer
from tests.stubengine import StubEngine
from tests.test_docker_units import inspectData

MiB = 2**20


class CpuSamplerTests(SynchronousTestCase):
    """L{CpuSampler}: CPU percent over the last interval, as documented."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1000)
        self.sampler = CpuSampler(self.clock)

    def test_firstSampleIsLifetimeAverage(self) -> None:
        """A run's first sample is the average since it started."""
        self.assertEqual(self.sampler.percent("run", 990.0, 5.0), 50.0)

    def test_sinceLastSample(self) -> None:
        """Polled every second, the figure is that of the last second."""
        self.sampler.percent("run", 900.0, 0.0)
        self.clock.advance(1)
        self.assertEqual(self.sampler.percent("run", 900.0, 0.25), 25.0)
        self.clock.advance(1)
        self.assertEqual(self.sampler.percent("run", 900.0, 1.25), 100.0)

    def test_quickPollsKeepTheInterval(self) -> None:
        """
        A second client polling right after the first does not shorten the
        interval to milliseconds: it is measured from a sample at least
        one second old.
        """
        self.sampler.percent("run", 900.0, 0.0)
        self.clock.advance(1.0)
        self.sampler.percent("run", 900.0, 0.5)
        self.clock.advance(0.05)
        # From the sample 1.05 s old, not the one 0.05 s old.
        self.assertEqual(self.sampler.percent("run", 900.0, 0.525), 50.0)

    def test_unknownCpu(self) -> None:
        """No CPU figure gives None, and no sample is kept."""
        self.assertIsNone(self.sampler.percent("run", 900.0, None))

    def test_decreaseIsZero(self) -> None:
        """A sum of processes that drops (one exited) gives 0, not a negative."""
        self.sampler.percent("run", 900.0, 10.0)
        self.clock.advance(1)
        self.assertEqual(self.sampler.percent("run", 900.0, 4.0), 0.0)

    def test_forgetEnded(self) -> None:
        """
        Once it holds L{CpuSampler.FORGET_FROM} runs, ended ones are
        forgotten: a forgotten run starts over with its lifetime average.
        """
        for i in range(CpuSampler.FORGET_FROM):
            self.sampler.percent(i, 990.0, 0.0)
        self.sampler.forgetEnded(lambda: [1])
        self.clock.advance(10)
        self.assertEqual(self.sampler.percent(0, 990.0, 10.0), 50.0)
        self.assertEqual(self.sampler.percent(1, 990.0, 10.0), 100.0)

    def test_fewRunsAreNotListed(self) -> None:
        """
        Holding fewer runs than L{CpuSampler.FORGET_FROM}, the sampler does
        not ask which are alive: a C{stats} of one container does not list
        the thousands running.
        """
        for i in range(CpuSampler.FORGET_FROM - 1):
            self.sampler.percent(i, 990.0, 0.0)
        self.sampler.forgetEnded(lambda: self.fail("the runs were listed"))

    def test_forgettingIsAmortized(self) -> None:
        """
        Runs that come and go, read one at a time with thousands alive:
        the sampler holds at most twice the runs it kept at the last
        forgetting, and lists the alive ones once per L{FORGET_FROM} new
        runs at most, not on every read.
        """
        listings = []
        alive = set(range(5000))

        def aliveRuns() -> set[int]:
            listings.append(len(alive))
            return alive

        for run in range(5000, 15000):
            alive.add(run)
            self.sampler.percent(run, 990.0, 0.0)
            alive.discard(run)
            self.sampler.forgetEnded(aliveRuns)
            self.assertLessEqual(len(self.sampler._samples), CpuSampler.FORGET_FROM)
        self.assertEqual(len(listings), 10000 // CpuSampler.FORGET_FROM)

    def test_boundedSamples(self) -> None:
        """A client polling in a loop keeps a handful of samples, not all."""
        for _ in range(1000):
            self.clock.advance(0.001)
            self.sampler.percent("run", 900.0, 1.0)
        self.assertLessEqual(len(self.sampler._samples["run"]), 6)


class StatsCommandTests(SynchronousTestCase):
    """The C{stats} request over the memory backend."""

    def setUp(self) -> None:
        self.server = FakeServer()
        self.conn = self.server.connect()

    def test_runningSortedByName(self) -> None:
        """
        C{stats} lists the running containers sorted by name with every
        figure; the simulated CPU is deterministic on the clock.
        """
        self.conn.ok("run web memory burn 0.5")
        self.conn.ok("run --memory=64m db memory sleep infinity")
        self.conn.ok("create idle")
        self.server.clock.advance(10)
        rows = self.conn.ok("stats")
        self.assertEqual([row["name"] for row in rows], ["db", "web"])
        self.assertEqual(
            rows[0],
            {
                "name": "db", "state": "running", "cpu_percent": 0.0,
                "memory": 4 * MiB, "memory_limit": 64 * MiB, "pids": 1,
                "read_bytes": 0, "write_bytes": 0,
            },
        )  # fmt: skip
        self.assertEqual(rows[1]["cpu_percent"], 50.0)
        self.assertIsNone(rows[1]["memory_limit"])

    def test_lastInterval(self) -> None:
        """The second C{stats} measures from the first."""
        self.conn.ok("run web memory burn 2")
        self.server.clock.advance(5)
        self.assertEqual(self.conn.ok("stats web")[0]["cpu_percent"], 200.0)
        self.server.clock.advance(1)
        self.assertEqual(self.conn.ok("stats web")[0]["cpu_percent"], 200.0)

    def test_manyKeepTheirSamples(self) -> None:
        """
        With more running than the sampler holds before it forgets ended
        runs (L{CpuSampler.FORGET_FROM}), a C{stats} of all forgets none of
        theirs (the supervisor names its alive runs as the sampler keys
        them), and forgets a stopped one's once it forgets.
        """
        count = CpuSampler.FORGET_FROM + 6
        for i in range(count):
            self.conn.ok(f"run c{i:02d} memory burn 1")
        self.server.clock.advance(5)
        backend: Any = self.server.backend
        sampler = backend._cpu  # the sampler has no public view

        def aliveRuns() -> set[tuple[str, float]]:
            return {(r.id, r.started) for r in backend._records.values() if r.state == "running"}

        for _ in range(2):
            self.assertEqual(len(self.stats()), count)
            self.assertEqual(set(sampler._samples), aliveRuns())
        stopped = backend._records["c00"]
        stoppedRun = (stopped.id, stopped.started)
        self.conn.ok("stop c00")
        for _ in range(count):
            self.conn.ok("run xx memory burn 1")
            self.stats()
            self.conn.ok("rm --force xx")
        self.assertNotIn(stoppedRun, sampler._samples)
        self.assertLessEqual(aliveRuns(), set(sampler._samples))

    def stats(self) -> list[dict[str, object]]:
        """A whole C{stats}, read a slice a turn."""
        self.conn.send("stats\n")
        for _ in range(10):
            self.server.clock.advance(0)
        [(kind, rows)] = self.conn.replies()
        self.assertEqual(kind, "OK")
        return list(rows)

    def test_namedNotRunning(self) -> None:
        """A named container that is not running is listed with null figures."""
        self.conn.ok("create idle")
        self.conn.ok("run web")
        self.assertEqual(
            self.conn.ok("stats web idle"),
            [
                {
                    "name": "idle", "state": "created", "cpu_percent": None,
                    "memory": None, "memory_limit": None, "pids": None,
                    "read_bytes": None, "write_bytes": None,
                },
                self.conn.ok("stats web")[0] | {"cpu_percent": 0.0},
            ],
        )  # fmt: skip

    def test_unknownName(self) -> None:
        """An unknown name is not_found; a bad one invalid_name."""
        self.conn.ok("run web")
        self.assertEqual(self.conn.err("stats web nosuch"), "not_found")
        self.assertEqual(self.conn.err("stats 'bad name'"), "invalid_name")

    def test_noStream(self) -> None:
        """C{--no-stream} (docker stats' flag) is accepted: one answer."""
        self.conn.ok("run web")
        self.assertEqual(len(self.conn.ok("stats --no-stream")), 1)

    def test_info(self) -> None:
        """C{info} lists C{stats} among the commands and the figures known."""
        capabilities = self.conn.ok("info")["capabilities"]
        self.assertIn("stats", capabilities["commands"])
        self.assertEqual(
            capabilities["stats"],
            ["cpu_percent", "memory", "memory_limit", "pids", "read_bytes", "write_bytes"],
        )


def _write(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def _stat(pid: int, pgrp: int, utime: int, stime: int, threads: int, rss: int) -> str:
    """A /proc/PID/stat line with the fields the readers use."""
    fields = ["S", "1", str(pgrp), str(pgrp), "0", "-1", "0", "0", "0", "0", "0"]
    fields += [str(utime), str(stime), "0", "0", "20", "0", str(threads), "0", "12345"]
    fields += ["1000", str(rss)] + ["0"] * 20
    return f"{pid} (a (b) c) " + " ".join(fields) + "\n"


class ProcessStatsTests(SynchronousTestCase):
    """The process backend's readers, on fake cgroup and /proc trees."""

    def setUp(self) -> None:
        self.root = self.mktemp()
        self.proc = os.path.join(self.root, "proc")
        self.tick = os.sysconf("SC_CLK_TCK")
        self.page = os.sysconf("SC_PAGE_SIZE")

    def process(self, pid: int, pgrp: int, ticks: int, rss: int, io: bool = True) -> None:
        _write(f"{self.proc}/{pid}/stat", _stat(pid, pgrp, ticks, ticks, 2, rss))
        if io:
            _write(
                f"{self.proc}/{pid}/io",
                "rchar: 1\nwchar: 2\nread_bytes: 4096\nwrite_bytes: 8192\n",
            )

    def test_v2(self) -> None:
        """
        A v2 group: CPU from cpu.stat, memory less inactive page cache,
        its limit, pids, and I/O summed over devices.
        """
        group = os.path.join(self.root, "unified", "pycm", "web-1")
        _write(f"{group}/cpu.stat", "usage_usec 2500000\nuser_usec 2000000\n")
        _write(f"{group}/memory.current", str(10 * MiB))
        _write(f"{group}/memory.stat", f"anon 1\ninactive_file {2 * MiB}\n")
        _write(f"{group}/memory.max", str(64 * MiB))
        _write(f"{group}/pids.current", "3\n")
        _write(f"{group}/io.stat", "8:0 rbytes=100 wbytes=200 rios=1\n8:16 rbytes=1 wbytes=2\n")
        self.assertEqual(cgroupUsage([group]), Usage(2.5, 8 * MiB, 64 * MiB, 3, 101, 202))

    def test_v2NoLimit(self) -> None:
        """C{memory.max} saying C{max} is no limit."""
        group = os.path.join(self.root, "g")
        _write(f"{group}/memory.current", "100")
        _write(f"{group}/memory.max", "max\n")
        self.assertIsNone(cgroupUsage([group]).memoryLimit)

    def test_v1(self) -> None:
        """
        v1: cpuacct.usage in nanoseconds, memory.usage_in_bytes less
        total_inactive_file, a huge limit is none, from several hierarchies.
        """
        cpu = os.path.join(self.root, "cpuacct", "pycm", "g")
        memory = os.path.join(self.root, "memory", "pycm", "g")
        _write(f"{cpu}/cpuacct.usage", "1500000000\n")
        _write(f"{memory}/memory.usage_in_bytes", str(5 * MiB))
        _write(f"{memory}/memory.stat", f"cache 9\ntotal_inactive_file {MiB}\n")
        _write(f"{memory}/memory.limit_in_bytes", str(2**63 - 4096))
        usage = cgroupUsage([cpu, memory])
        self.assertEqual((usage.cpuSeconds, usage.memory, usage.memoryLimit), (1.5, 4 * MiB, None))
        self.assertIsNone(usage.pids)

    def test_absentFilesLearnt(self) -> None:
        """
        A file a group lacks is not looked for again under the same parent
        (a hierarchy without that controller), but only when the group was
        there: a group that vanished meanwhile teaches nothing.
        """
        parent = os.path.join(self.root, "unified", "pycm")
        _write(f"{parent}/web-1/cpu.stat", "usage_usec 1\n")
        files = CgroupFiles()
        cgroupUsage([f"{parent}/gone-1"], files)
        cgroupUsage([f"{parent}/web-1"], files)
        _write(f"{parent}/web-1/memory.current", "4096")
        _write(f"{parent}/db-1/memory.current", "4096")
        _write(f"{parent}/db-1/cpu.stat", "usage_usec 2\n")
        self.assertEqual(cgroupUsage([f"{parent}/db-1"], files), Usage(2e-6))
        self.assertEqual(cgroupUsage([f"{parent}/db-1"]).memory, 4096)

    def test_parseIOStat(self) -> None:
        """Devices without bytes, and junk, are skipped."""
        self.assertEqual(parseIOStat("8:0 rios=3\n253:0 rbytes=7 wbytes=x\n"), (7, 0))

    def test_processes(self) -> None:
        """/proc sums: CPU ticks, threads, resident pages, I/O bytes."""
        self.process(10, 10, self.tick, 100)
        self.process(11, 10, self.tick, 50)
        usage = processUsage([10, 11, 99], self.proc)
        self.assertEqual(usage, Usage(4.0, 150 * self.page, None, 4, 8192, 16384))

    def test_residentFromStatm(self) -> None:
        """
        A process whose stat says 0 resident pages (the kernel's estimate,
        before it first runs after its exec) has those of its statm; one
        without a readable statm counts none.
        """
        self.process(10, 10, 0, 0)
        _write(f"{self.proc}/10/statm", "2000 3 1 1 0 100 0\n")
        self.process(11, 10, 0, 0)
        self.process(12, 10, 0, 5)
        _write(f"{self.proc}/12/statm", "2000 900 1 1 0 100 0\n")
        self.assertEqual(processUsage([10, 11, 12], self.proc).memory, 8 * self.page)

    def test_processIOUnreadable(self) -> None:
        """A process whose io cannot be read makes the I/O unknown."""
        self.process(10, 10, 0, 1)
        self.process(11, 10, 0, 1, io=False)
        usage = processUsage([10, 11], self.proc)
        self.assertEqual((usage.readBytes, usage.writeBytes), (None, None))
        self.assertEqual(usage.pids, 4)

    def test_groupless(self) -> None:
        """
        Without a cgroup, a run's processes are its process group's (one
        scan of /proc), and the limit is the one it was started with.
        """
        self.process(10, 10, self.tick, 100)
        self.process(11, 10, self.tick, 100)
        self.process(12, 12, self.tick, 7)
        self.process(13, 77, self.tick, 1000)
        usage = UsageReader(Cgroups(None, {}, {}), self.proc).read(
            [(None, 10, 32 * MiB, None), (None, 12, None, None)]
        )
        self.assertEqual(usage[0], Usage(4.0, 200 * self.page, 32 * MiB, 4, 8192, 16384))
        self.assertEqual(usage[1].memory, 7 * self.page)

    def test_cgroupWithProcFallback(self) -> None:
        """
        A tracking group with no memory, pids or io files (v2 with no
        controller, as in "hybrid" mode) takes those from its processes.
        """
        tracking = os.path.join(self.root, "unified", "pycm")
        _write(f"{tracking}/web-1/cpu.stat", "usage_usec 1000000\n")
        _write(f"{tracking}/web-1/cgroup.procs", "10\n11\n")
        self.process(10, 10, self.tick, 100)
        self.process(11, 10, self.tick, 100)
        cgroups = Cgroups(2, {}, {}, tracking=tracking)
        [usage] = UsageReader(cgroups, self.proc).read([("web-1", 10, None, None)])
        self.assertEqual(usage, Usage(1.0, 200 * self.page, None, 4, 8192, 16384))


def engineStats(**overrides: Any) -> dict[str, Any]:
    """An engine's C{stats?stream=false} reply (cgroup v1 fields)."""
    data: dict[str, Any] = {
        "read": "2026-11-30T16:00:01Z",
        "cpu_stats": {
            "cpu_usage": {"total_usage": 3_000_000_000, "percpu_usage": [1, 2]},
            "system_cpu_usage": 20_000_000_000,
            "online_cpus": 2,
        },
        "precpu_stats": {
            "cpu_usage": {"total_usage": 2_500_000_000},
            "system_cpu_usage": 18_000_000_000,
        },
        "memory_stats": {
            "usage": 12 * MiB,
            "limit": 8 * 2**30,
            "stats": {"total_inactive_file": 2 * MiB},
        },
        "pids_stats": {"current": 5},
        "blkio_stats": {
            "io_service_bytes_recursive": [
                {"major": 8, "minor": 0, "op": "Read", "value": 4096},
                {"major": 8, "minor": 0, "op": "Write", "value": 100},
                {"major": 8, "minor": 0, "op": "Total", "value": 4196},
                {"major": 8, "minor": 16, "op": "read", "value": 4},
            ]
        },
    }
    data.update(overrides)
    return data


RUNNING_WEB = inspectData(
    State={
        "Status": "running", "Running": True, "Pid": 42, "ExitCode": 0,
        "StartedAt": "2026-11-29T13:00:01Z", "FinishedAt": "0001-01-01T00:00:00Z",
    }
)  # fmt: skip


class DockerStatsTests(SynchronousTestCase):
    """The Docker backend's C{stats} from the engine's stats API."""

    def test_usage(self) -> None:
        """
        Docker's own CPU percent between the engine's two samples, memory
        less inactive cache, the container's limit, pids, block I/O.
        """
        self.assertEqual(
            usageFromStats(engineStats(), 64 * MiB),
            Usage(3.0, 10 * MiB, 64 * MiB, 5, 4100, 100, cpuPercent=50.0),
        )

    def test_usageSparse(self) -> None:
        """
        An engine with no previous sample, v2 memory fields, no pids and
        no block I/O: those are unknown (the daemon samples the CPU).
        """
        data = engineStats(
            precpu_stats={},
            memory_stats={"usage": 3 * MiB, "stats": {"inactive_file": MiB}},
            pids_stats={},
            blkio_stats={"io_service_bytes_recursive": None},
        )
        self.assertEqual(usageFromStats(data, None), Usage(3.0, 2 * MiB, None, None))
        self.assertEqual(usageFromStats("junk", None), Usage())

    def backend(self, stats: dict[str, Any]) -> tuple[DockerBackend, list[str]]:
        """A backend on an engine that knows container C{web} (running)
        and C{old} (exited), answering stats from C{stats} by id."""
        clock = Clock()
        clock.advance(1000)
        asked: list[str] = []
        containers = {
            "web": RUNNING_WEB,
            "old": inspectData(
                Id="old1", Name="/old", State={"Status": "exited", "Running": False}
            ),
        }

        class Engine(StubEngine):
            def request(self, method: str, path: str, *args: Any, **kw: Any) -> Any:
                asked.append(path)
                parts = path.split("/")
                if path.endswith("/json") and parts[2] in containers:
                    return defer.succeed((200, containers[parts[2]]))
                if path.endswith("/stats") and parts[2] in stats:
                    return defer.succeed((200, stats[parts[2]]))
                return defer.fail(EngineError(404, "no such container"))

            def stream(self, *args: Any, **kw: Any) -> Any:
                return defer.Deferred()

        return DockerBackend(clock, Engine()), asked

    def test_namedContainers(self) -> None:
        """
        Named containers: the running one from the engine's stats, the
        exited one with null figures, never asked for stats.
        """
        web = RUNNING_WEB
        backend, asked = self.backend({web["Id"]: engineStats()})
        rows = self.successResultOf(backend.stats(["web", "old", "web"]))
        byName = {row.name: row for row in rows}
        self.assertEqual(byName["old"].toJSON()["memory"], None)
        self.assertEqual(byName["old"].state, "exited")
        self.assertEqual(byName["web"].cpuPercent, 50.0)
        self.assertEqual(byName["web"].pids, 5)
        self.assertEqual(
            [p for p in asked if p.endswith("/stats")], [f"/containers/{web['Id']}/stats"]
        )

    def test_unknown(self) -> None:
        """An unknown name is L{NotFound}."""
        backend, _ = self.backend({})
        self.failureResultOf(backend.stats(["nosuch"]), NotFound)

    def test_stoppedMeanwhile(self) -> None:
        """A container gone before its stats came has null figures."""
        backend, _ = self.backend({})
        [row] = self.successResultOf(backend.stats(["web"]))
        self.assertEqual((row.name, row.cpuPercent, row.memory), ("web", None, None))
