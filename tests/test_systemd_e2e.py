"""
End-to-end: the shipped systemd units (contrib/systemd) run for real.
The daemon is started by the ExecStart line of C{pycm.service} (its paths
put in a temporary directory) under Debian's C{systemd-socket-activate},
which listens on the UNIX socket C{pycm.socket} names and execs the daemon
at the first connection, as systemd does; the test binds its own notify
socket (C{NOTIFY_SOCKET}) and reads C{READY=1}, C{WATCHDOG=1} and
C{STOPPING=1} from it.

What cannot run here: systemd as PID 1 (this machine has none), so
C{Delegate=}, C{KillMode=}, C{StateDirectory=} and the watchdog's restart
are systemd's to honour, checked only by C{systemd-analyze verify}.
Without C{systemd-socket-activate} (Debian's C{systemd} package) the test
is skipped, and fails under CI, which installs it.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tarfile
import tempfile
import time

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from pycm.backends.process import procfs
from tests.e2e import DEADLINE, LineClient, pycmCommand, twistdCommand, waitFor

#: The units, beside the tests in the checkout.
UNITS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                     "contrib", "systemd")

#: The paths the shipped units name, replaced by the test's own.
INSTALLED_TWISTD = "/opt/pycm/bin/twistd"
STATE_DIR = "/var/lib/pycm"


def unitSettings(name: str) -> dict[str, list[str]]:
    """Every C{Key=value} of a unit file (comments left out), by key."""
    settings: dict[str, list[str]] = {}
    with open(os.path.join(UNITS, name)) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith(("#", ";", "[")):
                continue
            key, _, value = line.partition("=")
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def tool(name: str) -> str:
    """A systemd tool's path; skip without it (fail under CI)."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            raise AssertionError(f"{name} is missing: .ci/run installs Debian's systemd package")
        raise SkipTest(f"{name} is not installed (Debian's systemd package)")
    return path


class NotifySocket:
    """The test's own NOTIFY_SOCKET: a UNIX datagram socket in a temp dir."""

    def __init__(self, testCase: SynchronousTestCase, directory: str) -> None:
        self.path = os.path.join(directory, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        testCase.addCleanup(self.sock.close)
        self.messages: list[dict[str, str]] = []

    def waitFor(self, key: str, count: int = 1, deadline: float = DEADLINE) -> dict[str, str]:
        """The C{count}th message (read so far or next) that has C{key}."""
        end = time.monotonic() + deadline
        while True:
            having = [message for message in self.messages if key in message]
            if len(having) >= count:
                return having[count - 1]
            remaining = end - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {key} on the notify socket: {self.messages}")
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            self.messages.append(
                dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            )


class UnitFileTests(SynchronousTestCase):
    def test_serviceSettings(self) -> None:
        """The service unit says what the daemon does: notify, delegation, mixed kill."""
        service = unitSettings("pycm.service")
        for key, value in (("Type", "notify"), ("NotifyAccess", "main"), ("Delegate", "yes"),
                           ("KillMode", "mixed"), ("Restart", "on-failure"),
                           ("StateDirectory", "pycm")):
            self.assertEqual(service[key], [value], key)
        self.assertIn("WatchdogSec", service)
        argv = shlex.split(service["ExecStart"][0])
        self.assertEqual(argv[0], INSTALLED_TWISTD)
        self.assertIn("--nodaemon", argv)
        self.assertIn("systemd:domain=UNIX:index=0", argv)
        socketUnit = unitSettings("pycm.socket")
        self.assertEqual(socketUnit["ListenStream"], ["/run/pycm/pycm.sock"])
        self.assertEqual(socketUnit["SocketMode"], ["0660"])

    def test_inSourceDistribution(self) -> None:
        """
        The units ship in the source distribution (MANIFEST.in), not in the
        wheel: they are not Python package data, and what installs pycm as a
        service takes them from the sdist or the repository.  The sdist is
        built from a copy of the checkout, with the setuptools installed.
        """
        checkout = os.path.dirname(UNITS.rstrip(os.sep).rsplit(os.sep, 1)[0])
        directory = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, directory)
        source = os.path.join(directory, "src")
        ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "_trial_temp*")
        for name in ("pycm", "twisted", "contrib", "tests"):
            shutil.copytree(os.path.join(checkout, name), os.path.join(source, name),
                            ignore=ignore)
        for name in ("pyproject.toml", "README.md", "MANIFEST.in"):
            if os.path.exists(os.path.join(checkout, name)):
                shutil.copy(os.path.join(checkout, name), source)
        build = subprocess.run(
            [sys.executable, "-c",
             "import sys; from setuptools import build_meta; "
             "print(build_meta.build_sdist(sys.argv[1]))", os.path.join(directory, "dist")],
            cwd=source, capture_output=True, text=True, timeout=120,
        )
        self.assertEqual(build.returncode, 0, build.stderr)
        name = build.stdout.strip().splitlines()[-1]
        with tarfile.open(os.path.join(directory, "dist", name)) as sdist:
            members = {m.split("/", 1)[1] for m in sdist.getnames() if "/" in m}
        self.assertTrue({"contrib/systemd/pycm.service", "contrib/systemd/pycm.socket"}
                        <= members, sorted(members))

    def test_systemdAnalyzeVerify(self) -> None:
        """
        C{systemd-analyze verify} finds nothing wrong with the units (their
        twistd path made this one, as an install would).
        """
        analyze = tool("systemd-analyze")
        directory = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, directory)
        for name in ("pycm.service", "pycm.socket"):
            with open(os.path.join(UNITS, name)) as f:
                text = f.read().replace(INSTALLED_TWISTD, twistdCommand()[0])
            with open(os.path.join(directory, name), "w") as f:
                f.write(text)
        result = subprocess.run(
            [analyze, "verify", os.path.join(directory, "pycm.socket"),
             os.path.join(directory, "pycm.service")],
            capture_output=True, text=True, timeout=DEADLINE,
        )
        self.assertEqual((result.returncode, result.stderr.strip()), (0, ""))


class SocketActivationTests(SynchronousTestCase):
    def test_socketActivated(self) -> None:
        """
        Started by C{pycm.service}'s ExecStart under
        C{systemd-socket-activate}: the first connection starts the daemon;
        READY=1 comes (its MAINPID the daemon's pid) once it listens; the
        passed socket serves without a token, to a raw socket and the real
        C{pycm} client, and keeps the unit's C{SocketMode} (and its path,
        after the daemon stops); the watchdog pings; SIGTERM gives STOPPING=1, the
        container stopped by pycm itself, and a clean exit (by SIGTERM,
        which systemd counts as clean).
        """
        activate = tool("systemd-socket-activate")
        home = tempfile.mkdtemp(prefix="pycm-sd-", dir="/tmp")
        self.addCleanup(shutil.rmtree, home, ignore_errors=True)
        notify = NotifySocket(self, home)
        socketUnit = unitSettings("pycm.socket")
        socketPath = os.path.join(home, "pycm.sock")
        stateDir = os.path.join(home, "state")
        execStart = unitSettings("pycm.service")["ExecStart"][0]
        argv = [
            twistdCommand()[0] if word == INSTALLED_TWISTD else word.replace(STATE_DIR, stateDir)
            for word in shlex.split(execStart)
        ]
        # Real host processes, no cgroups: the other process-backend tests'
        # cgroups are left alone.
        argv += ["--backend-option", "cgroups=off"]
        logPath = os.path.join(home, "output")
        output = open(logPath, "wb")
        self.addCleanup(output.close)
        process = subprocess.Popen(
            # --fdname: systemd always sets LISTEN_FDNAMES (the socket
            # unit's name by default), and Twisted wants it.
            [activate, "--listen", socketPath, "--fdname=pycm.socket",
             f"--setenv=NOTIFY_SOCKET={notify.path}", "--setenv=WATCHDOG_USEC=400000",
             *argv],
            cwd=home, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
            start_new_session=True,
        )

        def stop() -> None:
            if process.poll() is None:
                process.kill()
                process.wait()

        self.addCleanup(stop)

        def log() -> str:
            with open(logPath, encoding="utf-8", errors="replace") as f:
                return f.read()

        waitFor(lambda: os.path.exists(socketPath), "systemd-socket-activate to listen")
        os.chmod(socketPath, int(socketUnit["SocketMode"][0], 8))
        raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        raw.connect(socketPath)
        client = LineClient(raw)
        self.addCleanup(client.close)
        try:
            ready = notify.waitFor("READY")
        except AssertionError:
            raise AssertionError(log()) from None
        self.assertEqual(ready["MAINPID"], str(process.pid))
        self.assertIn(f"unix:{socketPath}", ready["STATUS"])
        self.assertEqual(client.ok("ping"), "pong")
        # Its mode is still the unit's: the guard of a socket with no token.
        socketMode = int(socketUnit["SocketMode"][0], 8)
        self.assertEqual(stat.S_IMODE(os.stat(socketPath).st_mode), socketMode)

        env = dict(os.environ, PYCM_HOST=f"unix:{socketPath}")
        env.pop("PYCM_TOKEN", None)
        run = subprocess.run([*pycmCommand(), "run", "web"], capture_output=True, env=env,
                             timeout=DEADLINE)
        self.assertEqual(run.returncode, 0, run.stderr)
        web = client.ok("inspect web")
        self.assertEqual(web["state"], "running")
        environ = procfs.environ(web["pid"]) or b""
        self.assertNotIn(b"NOTIFY_SOCKET=", environ)

        # Every 0.2 s (half of WATCHDOG_USEC): more than the first one.
        notify.waitFor("WATCHDOG", count=3)
        process.send_signal(signal.SIGTERM)
        notify.waitFor("STOPPING")
        # twistd ends by the signal that stopped it, once shut down; systemd
        # counts SIGTERM as a clean exit (SuccessExitStatus), as 0.
        self.assertIn(process.wait(timeout=DEADLINE), (0, -signal.SIGTERM), log())
        self.assertIn("Server Shut Down", log())
        # The path is systemd's: still there, as it was, for the next start.
        self.assertEqual(stat.S_IMODE(os.stat(socketPath).st_mode), socketMode)
        waitFor(lambda: procfs.environ(web["pid"]) is None, "the container to be stopped")
        self.assertIn("pycm listening on unix:", log())
        self.assertIn("token not required", log())
