"""
End-to-end tests of the client: the real daemon (C{python -m twisted pycm}
on the memory backend, on a free loopback port and a UNIX socket) driven by
the real C{pycm} command, one-shot, piped, and as the interactive shell on
a pseudo-terminal.  The one-shot tests run on both of the client's paths:
the fast one (a blocking socket, no reactor) and the reactor's
(C{$PYCM_CLIENT=twisted}).

These use real processes, sockets and time; they are skipped where the
daemon's plugin is not available.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

from twisted.trial.unittest import SkipTest, TestCase

from tests.e2e import Terminal, defaultSIGINT, waitFor

TIMEOUT = 20.0


def freePort() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def shortTempDir(test: TestCase) -> str:
    """
    A new directory under C{/tmp}, removed after C{test}: a UNIX socket
    path must stay under 108 bytes wherever the clone (and so trial's
    temporary directory) lives, and whatever C{$TMPDIR} says.
    """
    path = tempfile.mkdtemp(prefix="pycm-c.", dir="/tmp")
    test.addCleanup(shutil.rmtree, path, ignore_errors=True)
    return path


class Daemon:
    """A real pycm daemon in a subprocess."""

    def __init__(self, stateDir: str, auth: bool = False,
                 socketDir: str | None = None) -> None:
        self.port = freePort()
        self.stateDir = stateDir
        self.endpoint = f"tcp:127.0.0.1:{self.port}"
        args = [sys.executable, "-m", "twisted", "pycm",
                "--listen", f"tcp:{self.port}:interface=127.0.0.1",
                "--backend", "memory", "--state-dir", stateDir]
        #: The UNIX socket endpoint, when C{socketDir} is given.
        self.unixEndpoint: str | None = None
        if socketDir is not None:
            self.unixEndpoint = f"unix:{socketDir}/pycm.sock"
            args += ["--listen", self.unixEndpoint]
        if not auth:
            args.append("--no-auth")
        self.log = open(os.path.join(stateDir, "..", "daemon.log"), "wb")
        self.process = subprocess.Popen(args, stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SkipTest(f"the daemon did not start ({self.process.returncode})")
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                if self.unixEndpoint is None or os.path.exists(
                        self.unixEndpoint[len("unix:"):]):
                    return
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("the daemon did not start listening")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


#: The client's two paths for one request, as the environment picks them.
FAST = {"PYCM_CLIENT": ""}
REACTOR = {"PYCM_CLIENT": "twisted"}


class ClientE2ETestsMixin:
    """
    The real C{pycm} against the real daemon, on the path C{clientEnv}
    picks (run by L{ClientE2EFastTests} and L{ClientE2EReactorTests}).
    """

    clientEnv: dict[str, str] = {}

    def setUp(self) -> None:
        base = os.path.abspath(self.mktemp())
        os.makedirs(os.path.join(base, "state"))
        self.base = base
        self.daemon = Daemon(os.path.join(base, "state"),
                             socketDir=shortTempDir(self))
        self.addCleanup(self.daemon.stop)
        self.env = dict(os.environ, PYCM_HOST=self.daemon.endpoint,
                        HOME=base, XDG_STATE_HOME=base, TERM="xterm",
                        **self.clientEnv)
        self.env.pop("PYCM_TOKEN", None)

    def pycm(self, *args: str, input: str | None = None,
             **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pycm.client.cli", *args],
            input=input if input is not None else "",
            capture_output=True, text=True, timeout=TIMEOUT,
            env=dict(self.env, **env),
        )

    def test_oneShot(self) -> None:
        """
        One-shot commands: human output and exit status 0 on OK, 1 and
        C{Error: code: message} on ERR, raw JSON with --json, a list table.
        """
        self.oneShot()

    def test_readerGone(self) -> None:
        """
        A reader that closed standard output (C{pycm ls | head -0}) ends the
        client quietly with status 141, as git and docker end then, not
        with a traceback: for a request, and for a command of the client's.
        """
        self.assertEqual(self.pycm("run", "web", "host", "echo", "hello").returncode, 0)
        for args in (["ls"], ["logs", "web"], ["completion", "bash"]):
            reader, writer = os.pipe()
            os.close(reader)
            try:
                result = subprocess.run(
                    [sys.executable, "-m", "pycm.client.cli", *args],
                    stdin=subprocess.DEVNULL, stdout=writer, stderr=subprocess.PIPE,
                    text=True, timeout=TIMEOUT, env=self.env,
                )
            finally:
                os.close(writer)
            self.assertEqual((result.returncode, result.stderr), (141, ""), args)

    def test_oneShotUnix(self) -> None:
        """The same over the daemon's UNIX socket."""
        assert self.daemon.unixEndpoint is not None
        self.env["PYCM_HOST"] = self.daemon.unixEndpoint
        self.oneShot()

    def oneShot(self) -> None:
        r = self.pycm("ping")
        self.assertEqual((r.returncode, r.stdout), (0, "pong\n"))
        r = self.pycm("run", "web", "host", "sh", "-c", "echo hi; sleep 5")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, r"^web  running  pid \d+\n$")
        r = self.pycm("run", "web")
        self.assertEqual(r.returncode, 1)
        self.assertTrue(r.stderr.startswith("Error: conflict: "), r.stderr)
        r = self.pycm("--json", "inspect", "web")
        self.assertEqual(r.returncode, 0)
        detail = json.loads(r.stdout)
        self.assertEqual(detail["command"], ["sh", "-c", "echo hi; sleep 5"])
        r = self.pycm("ls")
        lines = r.stdout.splitlines()
        self.assertEqual(lines[0].split()[:3], ["NAME", "STATE", "IMAGE"])
        self.assertTrue(lines[1].startswith("web "))
        r = self.pycm("inspect", "nope")
        self.assertEqual(r.returncode, 1)
        self.assertIn("not_found", r.stderr)

    def test_exitCodes(self) -> None:
        """
        A usage error exits 2; an unreachable daemon exits 3, saying why
        in words: no UNIX socket at the path, as a refused TCP port, on
        the fast path and the reactor's.
        """
        r = self.pycm("--no-such-option")
        self.assertEqual(r.returncode, 2)
        port = freePort()
        r = self.pycm("--host", f"tcp:127.0.0.1:{port}", "ping")
        self.assertEqual(r.returncode, 3)
        self.assertIn(f"tcp:127.0.0.1:{port}", r.stderr)
        host = f"unix:{shortTempDir(self)}/no.sock"
        for env in ({}, {"PYCM_CLIENT": "twisted"}):
            r = self.pycm("--host", host, "ping", **env)
            self.assertEqual(r.returncode, 3)
            self.assertEqual(r.stderr, f"Error: cannot reach the pycm daemon at {host}: no "
                             "such socket (is the daemon running? is this its --listen "
                             "path?)\n")

    def test_socketPathTooLong(self) -> None:
        """
        A UNIX socket path too long to connect to (as under a deep clone's
        temporary directory) is a usage error said on stderr, exit status
        2, at once: with one request and with piped requests, never a hang
        or a traceback.
        """
        path = os.path.join(shortTempDir(self), "d" * 120, "pycm.sock")
        for args, input in [(("ping",), None), ((), "ping\n")]:
            r = self.pycm("--host", f"unix:{path}", *args, input=input)
            self.assertEqual(r.returncode, 2, r.stderr)
            self.assertIn(f"bad endpoint 'unix:{path}': the socket path is", r.stderr)
            self.assertNotIn("Traceback", r.stderr)
            self.assertEqual(r.stdout, "")

    def test_piped(self) -> None:
        """
        Piped requests: every reply printed in order; the exit status the
        worst of the lines': 1 for an ERR, 2 for a malformed request.
        """
        r = self.pycm(input="ping\n# comment\nversion\ninspect nope\nping")
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("not_found", r.stderr)
        r = self.pycm(input="ping\n# comment\nversion\nbogus\nping")
        self.assertEqual(r.returncode, 2)
        lines = r.stdout.splitlines()
        self.assertEqual(lines[0], "pong")
        self.assertEqual(lines[-1], "pong")
        self.assertIn("server:   pycm", lines)
        self.assertIn("bad_request", r.stderr)
        r = self.pycm("--json", input="ping\nping\n")
        self.assertEqual((r.returncode, r.stdout), (0, 'OK "pong"\nOK "pong"\n'))

    def test_consoleScript(self) -> None:
        """The installed C{pycm} console script works too."""
        script = shutil.which("pycm")
        if script is None:
            raise SkipTest("the pycm console script is not installed")
        r = subprocess.run([script, "ping"], capture_output=True, text=True,
                           timeout=TIMEOUT, env=self.env, stdin=subprocess.DEVNULL)
        self.assertEqual((r.returncode, r.stdout), (0, "pong\n"), r.stderr)


    def test_eventsInterrupted(self) -> None:
        """
        C{pycm events} prints its banner on stderr and each event on
        stdout as it comes; Ctrl-C (SIGINT) ends it with status 0.
        """
        process = subprocess.Popen(
            [sys.executable, "-m", "pycm.client.cli", "events"], env=self.env,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            preexec_fn=defaultSIGINT)
        self.addCleanup(_reap, process)
        assert process.stderr is not None and process.stdout is not None
        self.assertIn("Watching events", readLine(process.stderr))
        self.assertEqual(self.pycm("create", "evented").returncode, 0)
        self.assertRegex(readLine(process.stdout), r"#\d+  evented  create$")
        process.send_signal(signal.SIGINT)
        self.assertEqual(process.wait(TIMEOUT), 0)
        self.assertEqual(process.stderr.read(), b"")

    def test_interruptedBeforeReply(self) -> None:
        """
        Ctrl-C (SIGINT) while waiting for the reply: status 130, stderr
        says the daemon may still carry the request out, and the daemon,
        told by a reset, lets the connection and its wait go.
        """
        self.assertEqual(self.pycm("run", "slow", "host", "sleep", "600").returncode, 0)
        process = subprocess.Popen(
            [sys.executable, "-m", "pycm.client.cli", "wait", "slow"], env=self.env,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            preexec_fn=defaultSIGINT)
        self.addCleanup(_reap, process)
        # The wait is under way once the daemon counts its connection
        # (and the one asking).
        deadline = time.monotonic() + TIMEOUT
        while json.loads(self.pycm("--json", "info").stdout)["connections"] < 2:
            self.assertLess(time.monotonic(), deadline, "the wait never connected")
            self.assertIsNone(process.poll())
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        self.assertEqual(process.wait(TIMEOUT), 130)
        assert process.stderr is not None
        self.assertEqual(process.stderr.read().decode(),
                         "pycm: interrupted before the reply (a wait changes "
                         "nothing): wait slow\n")
        # The connection was reset, not closed (a close is a half-close the
        # daemon answers): the daemon gives the wait up at once.
        waitFor(lambda: json.loads(self.pycm("--json", "info").stdout)["connections"] == 1,
                "the daemon to give the interrupted wait up")


def readLine(stream: Any) -> str:
    """The next line of a child's pipe, within L{TIMEOUT}."""
    ready, _, _ = select.select([stream], [], [], TIMEOUT)
    if not ready:
        raise AssertionError("no line within the timeout")
    return str(stream.readline().decode())


def _reap(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()
    process.wait()
    for stream in (process.stdout, process.stderr):
        if stream is not None:
            stream.close()


class ClientE2EFastTests(ClientE2ETestsMixin, TestCase):
    """L{ClientE2ETestsMixin} on the fast path (no reactor)."""

    clientEnv = FAST


class ClientE2EReactorTests(ClientE2ETestsMixin, TestCase):
    """L{ClientE2ETestsMixin} in the reactor."""

    clientEnv = REACTOR


class PathsE2ETests(TestCase):
    """Both paths side by side against one daemon."""

    def setUp(self) -> None:
        base = os.path.abspath(self.mktemp())
        os.makedirs(os.path.join(base, "state"))
        self.daemon = Daemon(os.path.join(base, "state"), socketDir=shortTempDir(self))
        self.addCleanup(self.daemon.stop)
        self.env = dict(os.environ, HOME=base, XDG_STATE_HOME=base)
        self.env.pop("PYCM_TOKEN", None)

    def pycm(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pycm.client.cli", *args], input="",
            capture_output=True, text=True, timeout=TIMEOUT, env=dict(self.env, **env))

    def test_sameOutput(self) -> None:
        """
        The same requests give the same stdout, stderr and exit status on
        both paths, over TCP and the UNIX socket: replies, errors, logs,
        an unreachable daemon, a socket path too long, a bad endpoint, with
        and without C{--json}; Docker's habits (C{ps -q}, C{--format},
        several names, C{logs -t}).
        """
        assert self.daemon.unixEndpoint is not None
        socketDir = os.path.dirname(self.daemon.unixEndpoint[len("unix:"):])
        self.assertEqual(self.pycm("-H", self.daemon.endpoint, "run", "web", "host",
                                   "sh", "-c", "echo hi").returncode, 0)
        long = os.path.join(socketDir, "d" * 120, "pycm.sock")
        cases: list[tuple[str, ...]] = []
        for host in (self.daemon.endpoint, self.daemon.unixEndpoint):
            cases += [
                ("-H", host, "ping"), ("-H", host, "--json", "inspect", "web"),
                ("-H", host, "inspect", "nope"), ("-H", host, "logs", "web"),
                ("-H", host, "help", "run"), ("-H", host, "run", "--bogus", "x"),
                ("-H", host, "wait", "--for=removed", "--timeout=0.01", "web"),
            ]
        cases += [
            ("-H", f"tcp:127.0.0.1:{freePort()}", "ping"),
            ("--json", "-H", f"tcp:127.0.0.1:{freePort()}", "ping"),
            ("--json", "-H", f"unix:{long}", "ping"),
            ("-H", self.daemon.endpoint, "ps", "-q"),
            ("-H", self.daemon.unixEndpoint, "ps", "--format", "{{.Name}} {{.State}}"),
            ("-H", self.daemon.endpoint, "stop", "nope", "gone"),
            ("-H", self.daemon.endpoint, "--json", "inspect", "nope"),
            ("-H", self.daemon.endpoint, "logs", "-t", "web"),
            ("-H", f"unix:{socketDir}/nothing.sock", "ping"),
            ("-H", f"unix:{long}", "ping"),
            ("-H", "127.0.0.1:1", "ping"),
            ("-H", "tcp:127.0.0.1", "ping"),
        ]
        for args in cases:
            fast = self.pycm(*args, **FAST)
            slow = self.pycm(*args, **REACTOR)
            self.assertEqual(
                (fast.returncode, fast.stdout, fast.stderr),
                (slow.returncode, slow.stdout, slow.stderr), args)

    def test_fastPathImports(self) -> None:
        """
        A one-shot C{list} over TCP and over the UNIX socket imports
        neither Twisted nor attrs (C{python -X importtime}); with
        C{$PYCM_CLIENT=twisted} it does.
        """
        assert self.daemon.unixEndpoint is not None
        for host in (self.daemon.endpoint, self.daemon.unixEndpoint):
            for env, expected in ((FAST, []), (REACTOR, ["attrs", "twisted"])):
                r = subprocess.run(
                    [sys.executable, "-X", "importtime", "-m", "pycm.client.cli",
                     "-H", host, "list"], capture_output=True, text=True,
                    timeout=TIMEOUT, env=dict(self.env, **env), stdin=subprocess.DEVNULL)
                self.assertEqual(r.returncode, 0, r.stderr)
                imported = {line.rsplit("|", 1)[-1].strip().split(".")[0]
                            for line in r.stderr.splitlines()
                            if line.startswith("import time:")}
                self.assertEqual(sorted(imported & {"twisted", "attrs"}), expected)


class AuthE2ETests(TestCase):
    """Tokens, against a daemon that requires one."""

    def test_token(self) -> None:
        """
        Without a token the daemon refuses; with C{PYCM_TOKEN} or
        C{--token} (the daemon's token file's content) it accepts; a wrong
        token is reported as the daemon's refusal of it; on both of the
        client's paths.
        """
        base = os.path.abspath(self.mktemp())
        # The default state directory of a user whose XDG_STATE_HOME is base.
        state = os.path.join(base, "pycm")
        os.makedirs(state)
        daemon = Daemon(state, auth=True)
        self.addCleanup(daemon.stop)
        with open(os.path.join(state, "token")) as f:
            token = f.read().strip()
        env = dict(os.environ, PYCM_HOST=daemon.endpoint, HOME=base,
                   XDG_STATE_HOME=os.path.join(base, "elsewhere"))
        env.pop("PYCM_TOKEN", None)

        for path in (FAST, REACTOR):
            self.tokenCases(dict(env, **path), base, token)

    def tokenCases(self, env: dict[str, str], base: str, token: str) -> None:
        def pycm(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "pycm.client.cli", *args], input="",
                capture_output=True, text=True, timeout=TIMEOUT,
                env=dict(env, **extra))

        if os.getuid() != 0:
            r = pycm("ls")
            self.assertEqual(r.returncode, 1)
            self.assertIn("unauthorized", r.stderr)
        self.assertEqual(pycm("ls", PYCM_TOKEN=token).returncode, 0)
        self.assertEqual(pycm("--token", token, "ls").returncode, 0)
        r = pycm("--token", "wrong", "ls")
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stderr, "Error: unauthorized: wrong token (from --token)\n")
        # As the daemon's user, the default state directory's token is found.
        r = pycm("ls", XDG_STATE_HOME=base)
        if os.getuid() != 0:
            self.assertEqual(r.returncode, 0, r.stderr)


def clientCommand(base: str, *args: str) -> list[str]:
    """
    The real C{pycm} with C{args}, for a user whose default state directory
    is C{base}/pycm: as root (whose default is /var/lib/pycm, which a test
    must not touch), run in a mount namespace of its own where C{base} is
    mounted on /var/lib; otherwise C{XDG_STATE_HOME} must be C{base}.
    """
    command = [sys.executable, "-m", "pycm.client.cli", *args]
    if os.getuid() != 0:
        return command
    mount = 'mount --make-rprivate / && mount --bind "$0" /var/lib && exec "$@"'
    return ["unshare", "--mount", "sh", "-c", mount, base, *command]


class TokenScopeE2ETests(TestCase):
    """
    The token the client finds in the default state directory's token file
    goes only to the endpoints that file's daemon listens on with a token
    required (the real C{pycm} and the real daemon; see L{clientCommand}).
    """

    def setUp(self) -> None:
        self.base = os.path.abspath(self.mktemp())
        self.state = os.path.join(self.base, "pycm")
        os.makedirs(self.state, 0o700)
        os.chmod(self.base, 0o755)
        self.env = dict(os.environ, HOME=self.base, XDG_STATE_HOME=self.base)
        for name in ("PYCM_TOKEN", "PYCM_HOST"):
            self.env.pop(name, None)

    def pycm(self, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            clientCommand(self.base, *args), input="",
            capture_output=True, text=True, timeout=TIMEOUT,
            env=dict(self.env, **extra))

    def test_notSentToAStranger(self) -> None:
        """
        A listener that is not the daemon's (a plain socket on a free port)
        receives no C{auth} line, on both of the client's paths and from
        completion's container names; the client says why it sent none.
        """
        with open(os.path.join(self.state, "token"), "w") as f:
            f.write("the-real-token-of-the-daemon\n")
        stranger = socket.socket()
        self.addCleanup(stranger.close)
        stranger.bind(("127.0.0.1", 0))
        stranger.listen(5)
        endpoint = f"tcp:127.0.0.1:{stranger.getsockname()[1]}"
        for args, path, last in (
            (["ping"], FAST, b"ping\n"),
            (["ping"], REACTOR, b"ping\n"),
            (["__names"], FAST, b"list\n"),
        ):
            client = subprocess.Popen(
                clientCommand(self.base, "--host", endpoint, *args),
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, env=dict(self.env, **path))
            self.addCleanup(client.wait)
            self.addCleanup(client.kill)
            received = self.receive(stranger, last)
            self.assertNotIn(b"auth", received, args)
            self.assertNotIn(b"the-real-token-of-the-daemon", received, args)
            self.assertEqual(received, last)
            out, err = client.communicate(timeout=TIMEOUT)
            if args == ["ping"]:
                self.assertIn(b"was not sent: " + endpoint.encode(), err)

    def receive(self, listening: socket.socket, last: bytes) -> bytes:
        """
        The first line a client sends (or what came before the deadline),
        answered with C{unauthorized} when it is C{last}; then close.
        """
        deadline = time.monotonic() + TIMEOUT
        listening.settimeout(TIMEOUT)
        connection, _ = listening.accept()
        received = b""
        with connection:
            while b"\n" not in received:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                connection.settimeout(left)
                try:
                    chunk = connection.recv(4096)
                except TimeoutError:
                    break
                if not chunk:
                    break
                received += chunk
            if received == b"ping\n":
                connection.sendall(b"ERR unauthorized authenticate first\n")
        return received

    def test_reachesItsDaemon(self) -> None:
        """
        The daemon with a token required on a port of its choosing
        (C{tcp:0}) is sent the token found in its token file, on both
        paths; a plain socket on another port is told why it was not.
        """
        daemon = Daemon(self.state, auth=True)
        self.addCleanup(daemon.stop)
        for path in (FAST, REACTOR):
            r = self.pycm("ls", PYCM_HOST=daemon.endpoint, **path)
            self.assertEqual((r.returncode, r.stderr), (0, ""), path)
            r = self.pycm("ls", PYCM_HOST="tcp:localhost:" + str(daemon.port), **path)
            self.assertEqual((r.returncode, r.stderr), (0, ""), path)

    def test_otherStateDirectory(self) -> None:
        """
        A daemon on a state directory of its own (C{--state-dir}) copies
        its listeners file into the default state directory's
        C{listeners.d}, naming its token file: the real C{pycm}, with no
        C{PYCM_TOKEN}, sends that daemon its token, on both paths; the
        copy is gone once the daemon stopped.  (As root the daemon runs in
        a mount namespace as the client does: see L{clientCommand}.)
        """
        custom = os.path.join(self.base, "custom")
        os.makedirs(custom, 0o700)
        port = freePort()
        command = [sys.executable, "-m", "twisted", "pycm", "--backend", "memory",
                   "--listen", f"tcp:{port}:interface=127.0.0.1", "--state-dir", custom]
        if os.getuid() == 0:
            mount = 'mount --make-rprivate / && mount --bind "$0" /var/lib && exec "$@"'
            command = ["unshare", "--mount", "sh", "-c", mount, self.base, *command]
        with open(os.path.join(self.base, "daemon.log"), "wb") as log:
            daemon = subprocess.Popen(command, stdout=log, stderr=log, env=self.env)
        self.addCleanup(_reap, daemon)
        copies = os.path.join(self.state, "listeners.d")
        waitFor(lambda: os.path.isdir(copies) and os.listdir(copies),
                "the copy of the listeners file")
        for path in (FAST, REACTOR):
            r = self.pycm("ls", PYCM_HOST=f"tcp:127.0.0.1:{port}", **path)
            self.assertEqual((r.returncode, r.stderr), (0, ""), path)
        daemon.terminate()
        daemon.wait(TIMEOUT)
        self.assertEqual(os.listdir(copies), [])

    def test_noAuthDaemonNotSentToken(self) -> None:
        """
        Against a C{--no-auth} daemon, a plain C{pycm list} does not send
        the token of the default state directory's token file (another
        daemon's), which the daemon would refuse and log as a wrong token.
        """
        with open(os.path.join(self.state, "token"), "w") as f:
            f.write("another-daemons-token\n")
        os.makedirs(os.path.join(self.base, "no-auth", "state"))
        daemon = Daemon(os.path.join(self.base, "no-auth", "state"), auth=False)
        self.addCleanup(daemon.stop)
        for path in (FAST, REACTOR):
            r = self.pycm("list", PYCM_HOST=daemon.endpoint, **path)
            self.assertEqual((r.returncode, r.stderr), (0, ""), path)
        daemon.stop()
        with open(os.path.join(self.base, "no-auth", "daemon.log"), "rb") as f:
            log = f.read()
        self.assertIn(b"connection from", log)
        self.assertNotIn(b"wrong token", log)


class ShellE2ETests(TestCase):
    """The interactive shell on a pseudo-terminal."""

    def setUp(self) -> None:
        base = os.path.abspath(self.mktemp())
        os.makedirs(os.path.join(base, "state"))
        self.daemon = Daemon(os.path.join(base, "state"))
        self.addCleanup(self.daemon.stop)
        self.base = base
        self.env = dict(os.environ, PYCM_HOST=self.daemon.endpoint, HOME=base,
                        XDG_STATE_HOME=base, TERM="xterm")
        self.env.pop("PYCM_HISTORY", None)
        self.startShell()

    def startShell(self) -> None:
        """Start C{pycm} (the shell) on a new pseudo-terminal."""
        self.terminal = Terminal(self, [sys.executable, "-m", "pycm.client.cli"], self.env)

    def pycm(self, *args: str) -> Any:
        return subprocess.run([sys.executable, "-m", "pycm.client.cli", *args],
                              capture_output=True, text=True, timeout=TIMEOUT,
                              env=self.env, stdin=subprocess.DEVNULL)

    def test_session(self) -> None:
        """
        A whole session: the greeting names 127.0.0.1:PORT; a request and
        its reply; the name guardrail; events are on from the start, and an
        event arriving while a line is typed is printed and the typed text
        redrawn; history; Ctrl-D leaves with status 0 and the terminal
        settings restored.
        """
        self.terminal.readUntil(
            b"Connected to the pycm daemon at 127.0.0.1:%d" % self.daemon.port)
        self.terminal.readUntil(b"Container events are shown as they happen")
        self.terminal.readUntil(b"pycm> ")
        self.terminal.mark()
        self.terminal.type(b"ping\r")
        self.terminal.readUntil(b"pong\r\n")
        self.terminal.readUntil(b"pycm> ")

        self.terminal.mark()
        self.terminal.type(b"stop\r")
        self.terminal.readUntil(b"Enter container name: ")
        self.terminal.type(b"\r")
        self.terminal.readUntil(b"Container name required")
        self.terminal.readUntil(b"pycm> ")

        self.terminal.mark()
        self.terminal.type(b"insp")
        self.terminal.readUntil(b"insp")
        self.assertEqual(self.pycm("run", "web", "host", "sleep", "100")
                         .returncode, 0)
        self.terminal.readUntil(b"web  start")
        screen = self.terminal.readUntil(b"pycm> insp")
        self.assertLess(screen.index(b"web  create"), screen.rindex(b"pycm> insp"))
        self.terminal.mark()
        self.terminal.type(b"ect web\r")
        self.terminal.readUntil(b"state:")
        self.terminal.readUntil(b"running")
        self.terminal.readUntil(b"pycm> ")

        self.terminal.mark()
        self.terminal.type(b"\x1b[A")
        self.terminal.readUntil(b"inspect web")
        self.terminal.type(b"\x03")
        self.terminal.readUntil(b"^C")

        self.terminal.type(b"\x04")
        self.assertEqual(self.terminal.process.wait(TIMEOUT), 0)
        after = self.terminal.settings()
        self.assertEqual(after, self.terminal.settingsBefore)

    def test_exit(self) -> None:
        """C{exit} leaves cleanly."""
        self.terminal.readUntil(b"pycm> ")
        self.terminal.type(b"exit\r")
        self.assertEqual(self.terminal.process.wait(TIMEOUT), 0)
        self.assertEqual(self.terminal.settings(), self.terminal.settingsBefore)

    def test_historyAcrossSessions(self) -> None:
        """
        Lines typed in one session come back with Up in the next; the
        history file is private and never holds an C{auth} line's token.
        """
        self.terminal.readUntil(b"pycm> ")
        self.terminal.mark()
        self.terminal.type(b"auth not-the-token\r")
        # A wrong token is refused even on a connection that needs none.
        self.terminal.readUntil(b"unauthorized")
        self.terminal.readUntil(b"pycm> ")
        self.terminal.mark()
        self.terminal.type(b"ping\r")
        self.terminal.readUntil(b"pong\r\n")
        self.terminal.readUntil(b"pycm> ")
        self.terminal.type(b"exit\r")
        self.assertEqual(self.terminal.process.wait(TIMEOUT), 0)

        path = os.path.join(self.base, "pycm", "history")
        with open(path, "rb") as f:
            self.assertEqual(f.read(), b"ping\nexit\n")
        self.assertEqual(os.stat(path).st_mode & 0o777, 0o600)

        self.startShell()
        self.terminal.readUntil(b"pycm> ")
        self.terminal.mark()
        self.terminal.type(b"\x1b[A\x1b[A")
        self.terminal.readUntil(b"ping")
        self.terminal.type(b"\r")
        self.terminal.readUntil(b"pong\r\n")
        self.terminal.type(b"\x04")
        self.assertEqual(self.terminal.process.wait(TIMEOUT), 0)
