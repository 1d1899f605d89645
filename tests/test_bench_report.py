"""
The benchmarks' own bookkeeping (benchmarks/report.py, benchmarks/common.py,
benchmarks/fanout.py): how repeated runs are judged, how a long reply is
read, how an event stream is checked.  No figure is measured here.
"""

from __future__ import annotations

import io
import socket
from contextlib import redirect_stdout

from twisted.trial.unittest import SynchronousTestCase

from benchmarks.common import LineClient
from benchmarks.report import Report


def quietly(report: Report, *args: object, **kwargs: object) -> None:
    with redirect_stdout(io.StringIO()):
        report.add(*args, **kwargs)


class EveryRunTests(SynchronousTestCase):
    """L{Report.everyRun}: a target of a repeated section passes only if every run did."""

    def addRuns(self, report: Report, passes: list[bool]) -> None:
        for run, passed in enumerate(passes, 1):
            report.run = run
            quietly(report, "process", "start ratio", f"{run}.0x", target=">= 5x",
                    passed=passed)
            quietly(report, "process", "a figure", "1")
        report.run = 0

    def summary(self, report: Report, runs: int):
        with redirect_stdout(io.StringIO()):
            return report.everyRun("process", runs)

    def test_everyRunPasses(self) -> None:
        """Three passing runs give one passing row with each run's value."""
        report = Report()
        self.addRuns(report, [True, True, True])
        [row] = self.summary(report, 3)
        self.assertTrue(row.passed)
        self.assertEqual(row.value, "1.0x, 2.0x, 3.0x")
        self.assertEqual(row.name, "start ratio, every run")
        self.assertEqual(row.target, ">= 5x in all 3 runs")
        self.assertEqual(row.run, 0)

    def test_oneRunFails(self) -> None:
        """A single failing run fails the target, whatever the median."""
        report = Report()
        self.addRuns(report, [True, False, True])
        [row] = self.summary(report, 3)
        self.assertFalse(row.passed)
        self.assertEqual(row.note, "2 of 3 runs pass")

    def test_missingRunFails(self) -> None:
        """A run that never got to a target (it failed first) fails it."""
        report = Report()
        self.addRuns(report, [True, True])
        [row] = self.summary(report, 3)
        self.assertFalse(row.passed)

    def test_tableShowsRuns(self) -> None:
        """With repeated runs the table has a column saying which run."""
        report = Report()
        self.addRuns(report, [True])
        self.assertIn("run", report.table().splitlines()[0].split())
        self.assertNotIn("run", Report().table().splitlines()[0].split())


class ReadLineTests(SynchronousTestCase):
    """L{LineClient.readLine} on a reply that comes in many chunks."""

    def client(self) -> tuple[LineClient, socket.socket]:
        ours, theirs = socket.socketpair()
        self.addCleanup(ours.close)
        self.addCleanup(theirs.close)
        client = LineClient.__new__(LineClient)
        client.sock = ours
        client.buf = b""
        return client, theirs

    def test_chunks(self) -> None:
        """A line sent in pieces is read whole; what follows it is kept."""
        client, server = self.client()
        for piece in (b"OK [", b"1,", b"2]\nOK ", b"3\n"):
            server.sendall(piece)
        self.assertEqual(client.readLine(), b"OK [1,2]")
        self.assertEqual(client.readLine(), b"OK 3")

    def test_bufferedLines(self) -> None:
        """Lines already read together are handed out one at a time."""
        client, server = self.client()
        server.sendall(b"a\nb\nc")
        self.assertEqual(client.readLine(), b"a")
        self.assertEqual(client.readLine(), b"b")
        server.sendall(b"d\n")
        self.assertEqual(client.readLine(), b"cd")

    def test_closed(self) -> None:
        """A connection closed before the newline is an error."""
        client, server = self.client()
        server.sendall(b"partial")
        server.close()
        self.assertRaises(ConnectionError, client.readLine)


class EventCheckTests(SynchronousTestCase):
    """L{benchmarks.fanout.check}: what is wrong with one subscriber's events."""

    want = [(5, "a", "create"), (6, "a", "start"), (7, "a", "destroy")]

    def subscriber(self, events: list[tuple[int, str, str]], closed: bool = False) -> dict:
        return {"ids": [e[0] for e in events], "names": [e[1] for e in events],
                "actions": [e[2] for e in events], "closed": closed}

    def test_every(self) -> None:
        """Every event, in order: nothing wrong."""
        from benchmarks.fanout import check

        self.assertEqual(check(self.subscriber(self.want), self.want), "")

    def test_outOfOrder(self) -> None:
        """The same events in another order are out of order."""
        from benchmarks.fanout import check

        got = [self.want[1], self.want[0], self.want[2]]
        self.assertEqual(check(self.subscriber(got), self.want), "ids out of order")

    def test_missing(self) -> None:
        """An event skipped is counted missing."""
        from benchmarks.fanout import check

        got = [self.want[0], self.want[2]]
        self.assertEqual(check(self.subscriber(got), self.want), "1 of 3 events missing")

    def test_differ(self) -> None:
        """The right ids with another action are not the daemon's events."""
        from benchmarks.fanout import check

        got = [self.want[0], self.want[1], (7, "a", "die")]
        self.assertEqual(check(self.subscriber(got), self.want), "events differ")

    def test_disconnected(self) -> None:
        """A subscriber the daemon closed fails, whatever it got before."""
        from benchmarks.fanout import check

        self.assertEqual(check(self.subscriber(self.want[:1], closed=True), self.want),
                         "disconnected after 1 of 3 events")


def sleepingChildren() -> list[str]:
    """The C{sleep} children of this process (any state, zombies too)."""
    import os

    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except (OSError, ValueError):
            continue
        name, rest = stat.split("(", 1)[1].rsplit(")", 1)
        if name == "sleep" and int(rest.split()[1]) == os.getpid():
            found.append(entry)
    return found


class ProcessFloorTests(SynchronousTestCase):
    """The process floor (benchmarks/processfloor.py) and how it is reported."""

    def test_rawFloorReapsEverything(self) -> None:
        """
        The raw floor starts and stops real C{sleep}s, giving both rates,
        and leaves none of them behind, running or unreaped.
        """
        from benchmarks.processfloor import raw

        rates = raw(3)
        self.assertEqual(sorted(rates), ["start", "stop"])
        self.assertTrue(all(rate > 0 for rate in rates.values()), rates)
        self.assertEqual(sleepingChildren(), [])

    def test_targetAgainstFloors(self) -> None:
        """
        Each floor's row gives its median rate and says where pycm and the
        target stand against it: a target above a floor shows over 100%.
        """
        from benchmarks.process import floorFigures

        report = Report()
        floors = {"raw": [{"start": 1000.0}, {"start": 3000.0}, {"start": 2000.0}],
                  "twisted": [{"start": 700.0}, {"start": 600.0}, {"start": 800.0}]}
        with redirect_stdout(io.StringIO()):
            floorFigures(report, 200, "start", 800.0, 500.0, floors)
        raw, twisted = report.rows
        self.assertEqual((raw.name, raw.value),
                         ("floor: posix_spawn x 200, nothing else (per s)", "2,000.0"))
        self.assertIn("pycm 25% of it; the start target (800/s) 40% of it", raw.note)
        self.assertEqual(twisted.value, "700.0")
        self.assertIn("pycm 71% of it; the start target (800/s) 114% of it", twisted.note)


class RequestCostTests(SynchronousTestCase):
    """benchmarks/requestcost.py: the counts come from the daemon, per request."""

    def test_syscallTotal(self) -> None:
        """The total of C{strace -c}'s summary is read; a summary without one gives None."""
        from benchmarks.requestcost import syscallTotal

        summary = (
            "% time     seconds  usecs/call     calls    errors syscall\n"
            "------ ----------- ----------- --------- --------- ----------------\n"
            " 58.88    0.034895         116       300           wait4\n"
            " 41.12    0.024367           1     15680       900 fcntl\n"
            "------ ----------- ----------- --------- --------- ----------------\n"
            "100.00    0.059262           3     15980       900 total\n"
        )
        self.assertEqual(syscallTotal(summary), 15980)
        self.assertIsNone(syscallTotal("strace: attach: ptrace(PTRACE_SEIZE, 1): denied\n"))

    def test_countsPerRequest(self) -> None:
        """
        A real daemon (memory backend, a few requests): every verb is
        counted, and C{rm}, which spawns and saves less, counts fewer calls
        than C{run}.
        """
        from benchmarks.common import REPO
        from benchmarks.requestcost import measure

        with redirect_stdout(io.StringIO()):
            counts = measure(REPO, "memory", 5, None, "test")
        self.assertEqual(sorted(counts), ["rm", "run", "stop"])
        runCalls, runSyscalls = counts["run"]
        rmCalls, _ = counts["rm"]
        self.assertGreater(rmCalls, 0)
        self.assertLess(rmCalls, runCalls)
        if runSyscalls is not None:
            self.assertGreater(runSyscalls, 0)


class SettleTests(SynchronousTestCase):
    """benchmarks.common.settle: how busy the machine was, from /proc/stat."""

    def test_busyShare(self) -> None:
        """Idle and I/O wait are not busy; everything else up to steal is."""
        from benchmarks.common import busyShare, cpuTimes

        before = cpuTimes("cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 ...\n")
        after = cpuTimes("cpu  130 0 60 860 50 0 0 0 0 0\n")
        self.assertEqual(before, (150, 1000))
        self.assertAlmostEqual(busyShare(before, after), 40 / 100)
        self.assertEqual(busyShare(after, after), 0.0)

    def test_settleReturnsOnAQuietMachine(self) -> None:
        """With any share allowed, one window is enough."""
        from benchmarks.common import settle

        waited, share = settle(quiet=1.0, window=0.01)
        self.assertLess(waited, 5.0)
        self.assertGreaterEqual(share, 0.0)
