"""
End-to-end: the real C{twistd pycm} on the process backend, and the real
C{pycm stats} and C{pycm top} (the installed console script), the latter
on a pseudo-terminal driven by the test as a person would.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time

from twisted.trial.unittest import SynchronousTestCase

from tests.e2e import DEADLINE, RealDaemon, Terminal, defaultSIGINT, pycmCommand, waitFor


class StatsE2ETests(SynchronousTestCase):
    """C{pycm stats} against the real daemon with real processes."""

    def setUp(self) -> None:
        self.daemon = RealDaemon(self, backend="process").start()
        for name, command in (
            ("busy", ["sh", "-c", "while :; do :; done"]),
            ("idle", ["sleep", "1000"]),
        ):
            result = self.daemon.pycm("run", name, "host", *command)
            self.assertEqual(result.returncode, 0, result.stderr)

    def test_noStream(self) -> None:
        """
        C{stats --no-stream} prints docker's table once, sorted by name;
        C{--json} gives the reply with every figure.
        """
        result = self.daemon.pycm("stats", "--no-stream")
        self.assertEqual(result.returncode, 0, result.stderr)
        lines = result.stdout.decode().splitlines()
        self.assertEqual(
            lines[0].split(),
            ["NAME", "CPU", "%", "MEM", "USAGE", "/", "LIMIT", "MEM", "%", "PIDS", "BLOCK", "I/O"],
        )
        self.assertEqual([line.split()[0] for line in lines[1:]], ["busy", "idle"])
        rows = json.loads(self.daemon.pycm("--json", "stats", "--no-stream", "idle").stdout)
        self.assertEqual(
            sorted(rows[0]),
            sorted(["name", "state", "cpu_percent", "memory", "memory_limit", "pids",
                    "read_bytes", "write_bytes"]),
        )  # fmt: skip
        self.assertGreater(rows[0]["memory"], 0)
        self.assertEqual(rows[0]["pids"], 1)

    def test_busyOverTheLastInterval(self) -> None:
        """A busy loop shows most of a CPU over the last second."""
        self.daemon.pycm("stats", "--no-stream")

        def busy() -> bool:
            rows = json.loads(self.daemon.pycm("--json", "stats", "--no-stream", "busy").stdout)
            return rows[0]["cpu_percent"] > 30.0

        waitFor(busy, "the busy container to show CPU")

    def test_streamsUntilInterrupted(self) -> None:
        """
        Piped, C{pycm stats} prints a table every second until Ctrl-C
        (SIGINT), which ends it with status 0.
        """
        process = subprocess.Popen(
            [*pycmCommand(), "stats"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=self.daemon.clientEnv(), stdin=subprocess.DEVNULL,
            preexec_fn=defaultSIGINT,
        )  # fmt: skip
        self.addCleanup(lambda: process.poll() is None and process.kill())
        assert process.stdout is not None
        headers = 0
        deadline = time.monotonic() + DEADLINE
        while headers < 2 and time.monotonic() < deadline:
            line = process.stdout.readline()
            headers += line.startswith(b"NAME")
        self.assertEqual(headers, 2)
        process.send_signal(signal.SIGINT)
        self.assertEqual(process.wait(timeout=DEADLINE), 0)


class TopE2ETests(SynchronousTestCase):
    """C{pycm top} on a pseudo-terminal, against the real daemon."""

    def setUp(self) -> None:
        self.daemon = RealDaemon(self, backend="process").start()
        for name in ("alpha", "beta"):
            result = self.daemon.pycm("run", name, "host", "sleep", "1000")
            self.assertEqual(result.returncode, 0, result.stderr)
        env = dict(self.daemon.clientEnv(), TERM="xterm", LANG="C.UTF-8")
        self.terminal = Terminal(self, [*pycmCommand(), "top"], env, size=(30, 120))

    def press(self, keys: bytes) -> None:
        self.terminal.mark()
        self.terminal.type(keys)

    def state(self, name: str) -> str:
        result = self.daemon.pycm("--json", "ls")
        for container in json.loads(result.stdout):
            if container["name"] == name:
                return str(container["state"])
        return "removed"

    def test_session(self) -> None:
        """
        The screen (the alternate one) shows both containers running;
        keys sort, filter, stop (after y) and remove (after y) through the
        daemon, and show the events; q leaves with status 0, the normal
        screen and the terminal's settings restored.
        """
        self.terminal.readUntil(b"\x1b[?1049h")
        self.terminal.readUntil(b"alpha")
        self.terminal.readUntil(b"beta")
        self.assertIn(b"running", self.terminal.output)
        self.press(b"c")
        self.terminal.readUntil(b"sort: cpu")
        self.press(b"/bet\r")
        self.terminal.readUntil(b"filter: bet")
        # beta is the only row, so selected: stop it.
        self.press(b"s")
        self.terminal.readUntil(b"Stop beta? (y/n)")
        self.press(b"y")
        waitFor(lambda: self.state("beta") == "exited", "beta to stop")
        self.terminal.readUntil(b"beta stop")
        self.assertEqual(self.state("alpha"), "running")
        self.press(b"/\x15\r")
        self.terminal.readUntil(b"alpha")
        # Up to alpha (sorted by CPU, the running one comes first).
        self.press(b"\x1b[A")
        self.terminal.readUntil(b"> alpha")
        self.press(b"d")
        self.terminal.readUntil(b"Remove alpha? (y/n)")
        self.press(b"n")
        self.terminal.readUntil(b"cancelled")
        self.assertEqual(self.state("alpha"), "running")
        self.press(b"d")
        self.terminal.readUntil(b"Remove alpha? (y/n)")
        self.press(b"y")
        waitFor(lambda: self.state("alpha") == "removed", "alpha to be removed")
        self.terminal.readUntil(b"alpha destroy")
        self.press(b"q")
        self.assertEqual(self.terminal.process.wait(timeout=DEADLINE), 0)
        self.terminal.readUntil(b"\x1b[?1049l")
        self.assertEqual(self.terminal.settings(), self.terminal.settingsBefore)
