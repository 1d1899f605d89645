"""
A run's exit told before the look for its marker: the journal of run ids
(L{MarkJournal}), the later, batched looks of L{MarkSweep}, the run's end
(L{RunProtocol}) and the next daemon's sweep of what the journal names.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from pycm.backends.process import reclaim
from pycm.backends.process.cgroups import NO_CGROUPS
from pycm.backends.process.markjournal import JOURNAL_NAME, MarkJournal
from pycm.backends.process.output import OutputPacer
from pycm.backends.process.reclaim import (
    MARK_LATER_DELAY,
    MARK_LATER_DUTY,
    MARK_RETRY_MAX,
    MarkSweep,
)
from pycm.backends.process.run import RunProtocol
from pycm.backends.process.runtime import ProcessRuntime
from pycm.statedir import UnsafeStateDir
from tests.test_process import FakeProcessTransport, RecordingObserver, container, ended

RUN_1 = "1" * 32
RUN_2 = "2" * 32


def fullJournal(testCase: SynchronousTestCase) -> MarkJournal:
    """A journal whose writes fail as on a full disk (its file is C{/dev/full})."""
    os.mkdir(testCase.mktemp())
    journal = MarkJournal(os.path.join(os.path.dirname(testCase.mktemp()), JOURNAL_NAME))
    full = os.open("/dev/full", os.O_WRONLY | os.O_CLOEXEC)
    os.dup2(full, journal._fd)
    os.close(full)
    testCase.addCleanup(journal.close)
    return journal


def lines(path: str) -> list[str]:
    """The run ids in the journal at C{path} (each record has a newline before it)."""
    with open(path) as f:
        return [line for line in f.read().splitlines() if line]


class MarkJournalTests(SynchronousTestCase):
    """L{MarkJournal}: run ids written one a line, read back by the next daemon."""

    def setUp(self) -> None:
        os.mkdir(self.mktemp())
        self.path = os.path.join(os.path.dirname(self.mktemp()), JOURNAL_NAME)

    def open(self) -> MarkJournal:
        journal = MarkJournal(self.path)
        self.addCleanup(journal.close)
        return journal

    def test_writtenAtOnceReadBack(self) -> None:
        """
        An id is in the file as soon as C{add} returns (a kill -9 of the
        daemon right then leaves it); the next journal opened reads it.
        """
        journal = self.open()
        self.assertEqual(journal.left, [])
        self.assertTrue(journal.add(RUN_1))
        self.assertEqual(lines(self.path), [RUN_1])
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o600)
        self.assertEqual(MarkJournal(self.path).left, [RUN_1])

    def test_garbageAndRepeatsIgnored(self) -> None:
        """What is not a run id is ignored when read; a repeated id is read once."""
        with open(self.path, "w") as f:
            f.write(f"{RUN_1}\nnot-a-run\n{RUN_1}\n{RUN_2[:10]}")
        self.assertEqual(self.open().left, [RUN_1])

    def test_badIdRefused(self) -> None:
        """Only run ids are written."""
        journal = self.open()
        self.assertFalse(journal.add("run-1\nforged"))
        self.assertEqual(lines(self.path), [])

    def test_clearEmpties(self) -> None:
        """C{clear} empties the file, what the previous daemon left too."""
        with open(self.path, "w") as f:
            f.write(f"{RUN_1}\n")
        journal = self.open()
        journal.add(RUN_2)
        journal.clear()
        self.assertEqual(os.path.getsize(self.path), 0)
        self.assertEqual(journal.left, [])
        journal.add(RUN_1)
        self.assertEqual(lines(self.path), [RUN_1])

    def test_symlinkRefused(self) -> None:
        """The journal is never opened through a symbolic link."""
        victim = self.mktemp()
        with open(victim, "w") as f:
            f.write("victim\n")
        os.symlink(victim, self.path)
        self.assertRaises(UnsafeStateDir, MarkJournal, self.path)

    def test_notAFileRefused(self) -> None:
        """A FIFO or a device where the journal goes is refused (an OSError)."""
        os.mkfifo(self.path)
        self.assertRaises(OSError, MarkJournal, self.path)
        self.assertRaises(OSError, MarkJournal, "/dev/null")

    def test_fullDiskSaysNo(self) -> None:
        """A write that fails (ENOSPC) is reported, not raised."""
        journal = fullJournal(self)
        self.assertFalse(journal.add(RUN_1))


class LaterLookTests(SynchronousTestCase):
    """L{MarkSweep} with a journal: exits need not wait; looks come later, batched."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.looks: list[set[str]] = []
        self.cost = 0.0
        os.mkdir(self.mktemp())
        self.path = os.path.join(os.path.dirname(self.mktemp()), JOURNAL_NAME)
        self.journal = MarkJournal(self.path)
        self.addCleanup(self.journal.close)
        self.sweep = MarkSweep(self.clock, self.look, self.journal)

    def look(self, runIds: set[str], notBefore: int | None = None) -> dict[str, list[int]]:
        self.looks.append(set(runIds))
        self.clock.advance(self.cost)
        return {}

    def test_journaledRunLooksLater(self) -> None:
        """
        A run whose id is written and whose cgroup is gone is told it need
        not wait; the look comes L{MARK_LATER_DELAY} later, for every run
        that ended meanwhile; then the journal is emptied.
        """
        first = self.sweep.kill(RUN_1, 5, "a")
        self.assertEqual(lines(self.path), [RUN_1])
        self.assertTrue(self.sweep.settle(RUN_1, True))
        self.clock.advance(MARK_LATER_DELAY / 2)
        second = self.sweep.kill(RUN_2, 3, "b")
        self.assertTrue(self.sweep.settle(RUN_2, True))
        self.assertEqual(self.looks, [])
        self.assertNoResult(first)
        self.clock.advance(MARK_LATER_DELAY / 2)
        self.assertEqual(self.looks, [{RUN_1, RUN_2}])
        self.successResultOf(first)
        self.successResultOf(second)
        self.assertEqual(lines(self.path), [])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_cgroupNotEmptyHurries(self) -> None:
        """
        A run whose cgroup could not be removed waits for its look, which
        comes at the end of this turn (with every run pending).
        """
        self.sweep.kill(RUN_1, None, "a")
        self.assertTrue(self.sweep.settle(RUN_1, True))
        waiter = self.sweep.kill(RUN_2, None, "b")
        self.assertFalse(self.sweep.settle(RUN_2, False))
        self.clock.advance(0)
        self.assertEqual(self.looks, [{RUN_1, RUN_2}])
        self.successResultOf(waiter)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_unwrittenWaits(self) -> None:
        """
        A run whose id could not be written (a full disk) waits for its
        look at the end of this turn, as without a journal.
        """
        full = fullJournal(self)
        sweep = MarkSweep(self.clock, self.look, full)
        waiter = sweep.kill(RUN_1, None, "a")
        self.assertFalse(sweep.settle(RUN_1, True))
        self.clock.advance(0)
        self.assertEqual(self.looks, [{RUN_1}])
        self.successResultOf(waiter)

    def test_noJournalWaits(self) -> None:
        """Without a journal every exit waits for its look (as before)."""
        sweep = MarkSweep(self.clock, self.look)
        sweep.kill(RUN_1, None, "a")
        self.assertFalse(sweep.settle(RUN_1, True))
        self.clock.advance(0)
        self.assertEqual(self.looks, [{RUN_1}])

    def test_laterPacedByCost(self) -> None:
        """
        After a look that took T seconds, the next later look waits until
        T/L{MARK_LATER_DUTY} from its start (if that is more than
        L{MARK_LATER_DELAY}): at most that share of the daemon's time.
        """
        self.cost = 0.5
        self.sweep.kill(RUN_1, None, "a")
        self.clock.advance(MARK_LATER_DELAY)
        self.assertEqual(len(self.looks), 1)
        self.sweep.kill(RUN_2, None, "b")
        wait = 0.5 * (1 / MARK_LATER_DUTY - 1)
        self.assertGreater(wait, MARK_LATER_DELAY)
        self.clock.advance(wait - 0.01)
        self.assertEqual(len(self.looks), 1)
        self.clock.advance(0.02)
        self.assertEqual(self.looks[1], {RUN_2})

    def test_failedLookKeepsJournal(self) -> None:
        """A look that fails leaves the journal as it is; the exit is still told."""

        def failing(runIds: set[str], notBefore: int | None = None) -> dict[str, list[int]]:
            raise OSError("no /proc")

        sweep = MarkSweep(self.clock, failing, self.journal)
        waiter = sweep.kill(RUN_1, None, "a")
        self.clock.advance(MARK_LATER_DELAY)
        self.successResultOf(waiter)
        self.assertEqual(lines(self.path), [RUN_1])
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)

    def failingOnce(self, runIds: set[str], notBefore: int | None = None) -> dict[str, list[int]]:
        """A look that fails (too many open files) the first time only."""
        if not self.looks:
            self.looks.append(set())
            raise OSError(24, "Too many open files")
        return self.look(runIds, notBefore)

    def test_failedLookRetried(self) -> None:
        """
        The run ids of a look that failed stay in the journal and are
        looked for with the next runs that end: a good look for another
        run does not empty the journal without them.
        """
        sweep = MarkSweep(self.clock, self.failingOnce, self.journal)
        first = sweep.kill(RUN_1, None, "a")
        self.assertTrue(sweep.settle(RUN_1, True))
        self.clock.advance(MARK_LATER_DELAY)
        self.successResultOf(first)
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)
        self.assertEqual(lines(self.path), [RUN_1])
        sweep.kill(RUN_2, None, "b")
        self.assertFalse(sweep.settle(RUN_2, False))
        self.clock.advance(0)
        self.assertEqual(self.looks[1:], [{RUN_1, RUN_2}])
        self.assertEqual(lines(self.path), [])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_failedLookBacksOff(self) -> None:
        """
        Looks that keep failing are tried again, twice as long after each
        failure (from L{MARK_LATER_DELAY} up to L{MARK_RETRY_MAX}); the
        journal keeps the id until one works.
        """
        failures = 8

        def failing(runIds: set[str], notBefore: int | None = None) -> dict[str, list[int]]:
            self.looks.append(set(runIds))
            if len(self.looks) <= failures:
                raise OSError(24, "Too many open files")
            return {}

        sweep = MarkSweep(self.clock, failing, self.journal)
        sweep.kill(RUN_1, None, "a")
        self.clock.advance(MARK_LATER_DELAY)
        waits = []
        while len(self.looks) <= failures:
            (call,) = self.clock.getDelayedCalls()
            waits.append(call.getTime() - self.clock.seconds())
            self.assertEqual(lines(self.path), [RUN_1])
            self.clock.advance(waits[-1])
        expected = [min(MARK_LATER_DELAY * 2**n, MARK_RETRY_MAX) for n in range(failures)]
        self.assertEqual(waits, expected)
        self.assertEqual(self.looks, [{RUN_1}] * (failures + 1))
        self.assertEqual(len(self.flushLoggedErrors(OSError)), failures)
        self.assertEqual(lines(self.path), [])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_leftKeptUntilLookedFor(self) -> None:
        """
        What the previous daemon left is not emptied by a look for this
        daemon's runs, only once it was looked for (L{MarkSweep.leftLookedFor}).
        """
        self.journal.close()
        with open(self.path, "w") as f:
            f.write(f"{RUN_1}\n")
        journal = MarkJournal(self.path)
        self.addCleanup(journal.close)
        sweep = MarkSweep(self.clock, self.look, journal)
        sweep.kill(RUN_2, None, "b")
        self.clock.advance(MARK_LATER_DELAY)
        self.assertEqual(self.looks, [{RUN_2}])
        self.assertEqual(lines(self.path), [RUN_1, RUN_2])
        sweep.leftLookedFor()
        self.assertEqual(lines(self.path), [])

    def test_laterDelaySetting(self) -> None:
        """C{laterDelay} sets how long a later look waits (the mark-sweep-delay option)."""
        sweep = MarkSweep(self.clock, self.look, self.journal, laterDelay=30)
        sweep.kill(RUN_1, None, "a")
        self.assertTrue(sweep.settle(RUN_1, True))
        self.clock.advance(29.9)
        self.assertEqual(self.looks, [])
        self.clock.advance(0.1)
        self.assertEqual(self.looks, [{RUN_1}])

    def test_closeAfterFailureLeavesJournal(self) -> None:
        """
        The daemon's close after a failed look tries once more; if that
        fails too, no retry is left behind and the id stays for the next
        daemon.
        """

        def failing(runIds: set[str], notBefore: int | None = None) -> dict[str, list[int]]:
            raise OSError(24, "Too many open files")

        sweep = MarkSweep(self.clock, failing, self.journal)
        sweep.kill(RUN_1, None, "a")
        self.clock.advance(MARK_LATER_DELAY)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        sweep.close()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(lines(self.path), [RUN_1])
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 2)
        sweep.kill(RUN_2, None, "b")
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_closeLooksAndEmpties(self) -> None:
        """The daemon's close does the pending look at once and empties the journal."""
        runtime = ProcessRuntime(Clock(), launcher=None, native=False)
        runtime.markSweep = self.sweep
        waiter = self.sweep.kill(RUN_1, None, "a")
        runtime.close()
        self.successResultOf(waiter)
        self.assertEqual(self.looks, [{RUN_1}])
        self.assertEqual(os.path.getsize(self.path), 0)


class RunEndTests(SynchronousTestCase):
    """L{RunProtocol}: the exit is told before the look only when contained."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.settled: list[tuple[str, bool]] = []
        self.mayGo = True
        self.sweeps: list[Deferred[None]] = []
        self.releases: list[str] = []
        self.gone = True

    def settle(self, runId: str, contained: bool) -> bool:
        self.settled.append((runId, contained))
        return contained and self.mayGo

    def release(self, group: str) -> bool:
        self.releases.append(group)
        return self.gone

    def protocol(self, observer: RecordingObserver, group: str | None = "web-1") -> RunProtocol:
        def sweepMarked(runId: str, notBefore: int | None, name: str) -> Deferred[None]:
            self.sweeps.append(Deferred())
            return self.sweeps[-1]

        protocol = RunProtocol(
            observer,
            clock=self.clock,
            pacer=OutputPacer(self.clock),
            sweepMarked=sweepMarked,
            killCgroup=lambda group: None,
            releaseCgroup=self.release,
            settleMarked=self.settle,
            proc=os.path.abspath(self.mktemp()),
            group=group,
            runId=RUN_1,
            name="web",
        )
        protocol.makeConnection(FakeProcessTransport(99999999))
        return protocol

    def end(self, protocol: RunProtocol) -> None:
        from pycm.backends.process import procfs

        self.patch(procfs, "signalGroup", lambda pgid, sig: True)
        protocol.childConnectionLost(3)
        protocol.processExited(ended(0))
        protocol.processEnded(ended(0))

    def test_emptyCgroupToldAtOnce(self) -> None:
        """
        The cgroup removed at the main's exit (the kernel's word that it
        was empty): the exit is told before the look, and the group is not
        touched again.
        """
        observer = RecordingObserver()
        self.end(self.protocol(observer))
        self.assertEqual(self.settled, [(RUN_1, True)])
        self.assertEqual(self.releases, ["web-1"])
        self.assertEqual(observer.exits, [0])

    def test_busyCgroupWaits(self) -> None:
        """A cgroup that could not be removed: the exit waits for the look."""
        self.gone = False
        observer = RecordingObserver()
        self.end(self.protocol(observer))
        self.assertEqual(self.settled, [(RUN_1, False)])
        self.assertEqual(self.releases, ["web-1", "web-1"])
        self.assertEqual(observer.exits, [])
        self.sweeps[0].callback(None)
        self.assertEqual(observer.exits, [0])

    def test_noCgroupWaits(self) -> None:
        """A run without a cgroup: the exit waits for the look."""
        observer = RecordingObserver()
        self.end(self.protocol(observer, group=None))
        self.assertEqual(self.settled, [(RUN_1, False)])
        self.assertEqual(observer.exits, [])
        self.sweeps[0].callback(None)
        self.assertEqual(observer.exits, [0])

    def test_notJournaledWaits(self) -> None:
        """Contained, but the sweep says no (its id is not written): it waits."""
        self.mayGo = False
        observer = RecordingObserver()
        self.end(self.protocol(observer))
        self.assertEqual(observer.exits, [])
        self.sweeps[0].callback(None)
        self.assertEqual(observer.exits, [0])


class NextDaemonTests(SynchronousTestCase):
    """L{ProcessRuntime.sweep} looks for what the previous daemon's journal names."""

    def test_journalLookedForThenEmptied(self) -> None:
        """
        The run ids of the journal are looked for at start with the
        records' (whether their records are gone or name newer runs); then
        the journal is emptied.
        """
        os.mkdir(self.mktemp())
        path = os.path.join(os.path.dirname(self.mktemp()), JOURNAL_NAME)
        with open(path, "w") as f:
            f.write(f"{RUN_1}\n")
        looked: list[set[str]] = []

        def killMarked(runIds: set[str], notBefore: int | None, proc: str) -> dict:
            looked.append(set(runIds))
            return {RUN_1: [4242], RUN_2: [4343]}

        self.patch(reclaim, "killMarked", killMarked)
        runtime = ProcessRuntime(Clock(), launcher=None, native=False, cgroups=NO_CGROUPS)
        runtime.useJournal(path)
        self.addCleanup(runtime.close)
        web = container()
        found = self.successResultOf(runtime.sweep({RUN_2: web}))
        self.assertEqual(looked, [{RUN_1, RUN_2}])
        # Only the records' runs are reported as found (the supervisor acts on those).
        self.assertEqual(found, [RUN_2])
        self.assertEqual(os.path.getsize(path), 0)
        self.assertEqual(runtime.markSweep.journal.left, [])  # type: ignore[union-attr]

    def test_unopenableJournalWaits(self) -> None:
        """A journal that cannot be opened: none is used, every exit waits."""
        runtime = ProcessRuntime(Clock(), launcher=None, native=False)
        runtime.useJournal(os.path.join(self.mktemp(), "missing", JOURNAL_NAME))
        self.assertIsNone(runtime.markSweep.journal)


class UnownedTests(SynchronousTestCase):
    """L{reclaim.killUnowned}: the runs of this state directory no record owns."""

    def spawn(self, state: str, runId: str, name: str) -> subprocess.Popen[bytes]:
        """A real process carrying the markers of a run of C{name}."""
        env = dict(os.environ, PYCM_STATE=state, PYCM_RUN_ID=runId, PYCM_CONTAINER=name)
        process = subprocess.Popen(["sleep", "100"], env=env)
        self.addCleanup(process.wait)
        self.addCleanup(process.kill)
        return process

    def test_onlyUnownedOfThisStateKilled(self) -> None:
        """
        A process of this state directory whose run id no record owns is
        killed (by container name); one whose run id is owned, and one of
        another state directory, are left alone.
        """
        state = os.path.realpath(self.mktemp())
        lost = self.spawn(state, RUN_1, "lost")
        owned = self.spawn(state, RUN_2, "kept")
        other = self.spawn(state + "-other", RUN_1, "lost")
        killed = reclaim.killUnowned(state, {RUN_2}, "/proc")
        self.assertEqual(killed, {"lost": [lost.pid]})
        self.assertEqual(lost.wait(), -signal.SIGKILL)
        self.assertIsNone(owned.poll())
        self.assertIsNone(other.poll())

    def test_noMarker(self) -> None:
        """A runtime with no state marker kills nothing."""
        self.assertEqual(reclaim.killUnowned(None, set(), "/proc"), {})

    def test_sweepWarnsPerContainer(self) -> None:
        """
        The sweep at start kills what no record owns and warns once per
        container: one without a record (records lost), one whose record
        names another run (an older copy of the database); the warnings
        name the database, never a value of the environment.
        """
        state = os.path.realpath(self.mktemp())
        lost = self.spawn(state, RUN_1, "lost")
        older = self.spawn(state, RUN_2, "web")
        logged: list[dict] = []
        globalLogPublisher.addObserver(logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, logged.append)
        runtime = ProcessRuntime(Clock(), launcher=None, native=False, cgroups=NO_CGROUPS)
        runtime.stateMarker = state
        self.addCleanup(runtime.close)
        self.successResultOf(runtime.sweep({"3" * 32: container("web")}))
        self.assertEqual((lost.wait(), older.wait()), (-signal.SIGKILL, -signal.SIGKILL))
        warnings = sorted(
            formatEvent(e) for e in logged if e.get("log_namespace") == reclaim.__name__
        )
        database = os.path.join(state, "state.db")
        self.assertEqual(
            warnings,
            [
                f"killed 1 processes of a run of container web that its record in {database}"
                " does not name (an older copy of it?)",
                f"killed 1 processes of container lost, which has no record in {database}"
                " (lost records?)",
            ],
        )
