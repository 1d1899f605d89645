"""
End-to-end tests of Docker's habits, completion and the shell's Tab: the
installed C{pycm} console script against the real daemon (memory backend,
a free loopback port and a UNIX socket), the bash completion script run
in a real C{bash}, the shell on a real pseudo-terminal.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time

from twisted.trial.unittest import SkipTest, TestCase

from pycm.daemon import commands

from .e2e import DEADLINE, RealDaemon, Terminal, pycmCommand

TIMEOUT = DEADLINE
STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


class Client:
    """
    The real daemon (memory backend) and the installed C{pycm} console
    script pointed at it over TCP (the one-shot path a user takes).
    """

    def setUp(self) -> None:
        self.daemon = RealDaemon(self).start()  # type: ignore[arg-type]
        home = self.daemon.home
        self.env = dict(os.environ, PYCM_HOST=f"tcp:127.0.0.1:{self.daemon.port}",
                        HOME=home, XDG_STATE_HOME=home, TERM="xterm")
        self.env.pop("PYCM_TOKEN", None)
        self.env.pop("NO_COLOR", None)

    def pycm(self, *args: str, input: str | None = None,
             **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*pycmCommand(), *args], input=input if input is not None else "",
            capture_output=True, text=True, timeout=TIMEOUT, env=dict(self.env, **env),
        )


class HabitsE2ETests(Client, TestCase):
    """Docker's habits, one-shot."""

    def ok(self, *args: str) -> subprocess.CompletedProcess[str]:
        r = self.pycm(*args)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r

    def waitForLogs(self, name: str, count: int) -> None:
        deadline = time.monotonic() + TIMEOUT
        while len(self.ok("--json", "logs", name).stdout and
                  json.loads(self.ok("--json", "logs", name).stdout)) < count:
            if time.monotonic() > deadline:
                self.fail(f"{name} did not write {count} lines")
            time.sleep(0.05)

    def test_severalNames(self) -> None:
        """
        C{stop aa nope bb}: a request each, in order; the error printed,
        the others done, exit status 1; C{rm -f aa bb} removes both.
        """
        self.ok("run", "-d", "aa")
        self.ok("run", "--detach", "bb")
        # Over the UNIX socket too.
        r = self.pycm("stop", "-t", "1", "aa", "nope", "bb",
                      PYCM_HOST=f"unix:{self.daemon.socketPath}")
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stdout, "aa\nbb\n")
        self.assertEqual(r.stderr, "Error: not_found: no such container: nope\n")
        self.ok("start", "aa", "bb")
        r = self.ok("rm", "-f", "aa", "bb")
        self.assertEqual(r.stdout, "aa\nbb\n")
        self.assertEqual(self.ok("ps", "-aq").stdout, "")

    def test_psQuietAndFormat(self) -> None:
        """C{ps -q}, C{ps --format json}, C{ps --format TEMPLATE}; a bad field exits 2."""
        self.ok("run", "-l", "tier=web", "web")
        self.ok("create", "db")
        self.assertEqual(self.ok("ps", "-a", "-q").stdout, "db\nweb\n")
        lines = self.ok("ps", "--format", "json").stdout.splitlines()
        self.assertEqual([json.loads(line)["name"] for line in lines], ["db", "web"])
        r = self.ok("ps", "--format", "{{.Name}}\\t{{.State}}\\t{{.Labels}}")
        self.assertEqual(r.stdout, "db\tcreated\t\nweb\trunning\ttier=web\n")
        r = self.ok("ls", "-f", "state=running", "--format={{.Name}}")
        self.assertEqual(r.stdout, "web\n")
        r = self.pycm("ps", "--format", "{{.Nope}}")
        self.assertEqual(r.returncode, 2)
        self.assertIn("no field 'Nope'", r.stderr)

    def test_logs(self) -> None:
        """
        C{logs -t} puts each line's time first; C{--since} filters in the
        daemon; several names get C{NAME |} prefixes (no colours in a
        pipe), merged by time; C{logs -f a b} follows both to their end.
        """
        self.ok("run", "one", "memory", "echo", "hello")
        self.ok("run", "two", "memory", "echo", "world")
        self.waitForLogs("one", 1)
        self.waitForLogs("two", 1)
        r = self.ok("logs", "-t", "one")
        self.assertRegex(r.stdout, f"^{STAMP} hello\n$")
        self.assertEqual(self.ok("logs", "--since=1h", "one").stdout, "hello\n")
        self.assertEqual(self.ok("logs", "--since=2099-01-01T00:00:00Z", "one").stdout, "")
        r = self.ok("logs", "--since", "10m", "one", "two")
        self.assertEqual(r.stdout, "one | hello\ntwo | world\n")
        r = self.ok("logs", "--timestamps", "one", "two")
        self.assertRegex(r.stdout, f"^one \\| {STAMP} hello\ntwo \\| {STAMP} world\n$")
        r = self.pycm("logs", "--since=yesterday", "one")
        self.assertEqual(r.returncode, 2)
        self.assertIn("bad --since", r.stderr)

        self.ok("run", "late1", "memory", "delay", "1", "echo", "first")
        self.ok("run", "late2", "memory", "delay", "1", "echo", "second")
        r = self.ok("logs", "-f", "late1", "late2")
        self.assertEqual(sorted(r.stdout.splitlines()),
                         ["late1 | first", "late2 | second"])

    def test_commandHelp(self) -> None:
        """C{pycm COMMAND --help} is C{pycm help COMMAND}."""
        r = self.ok("stop", "--help")
        self.assertEqual(r.stdout, self.ok("help", "stop").stdout)
        self.assertTrue(r.stdout.startswith("usage: stop "), r.stdout)
        self.assertTrue(self.ok("ps", "-h").stdout.startswith("usage: list "))

    def test_badRequestExitsTwo(self) -> None:
        """
        The daemon's usage errors (C{bad_request}: an unknown option, a
        missing argument) exit 2, like the client's own.
        """
        for args in (("stop", "--bogus", "web"), ("stop",), ("inspect", "a", "b")):
            r = self.pycm(*args)
            self.assertEqual(r.returncode, 2, args)
            self.assertTrue(r.stderr.startswith("Error: bad_request: "), r.stderr)
        self.assertEqual(self.pycm("inspect", "nope").returncode, 1)

    def test_malformedExitsTwoEverywhere(self) -> None:
        """
        A request the daemon refuses as malformed (C{bad_request},
        C{invalid_name}) exits 2 on every path: one-shot, fast and through
        the reactor; streaming C{stats}; piped lines.
        """
        for env in ({}, {"PYCM_CLIENT": "twisted"}):
            for args in (("run", "bad name!"), ("run", "a")):
                r = self.pycm(*args, **env)
                self.assertEqual(r.returncode, 2, (args, env, r.stderr))
                self.assertTrue(r.stderr.startswith("Error: invalid_name: "), r.stderr)
        for args in (("stats", "--bogus"), ("stats", "--no-stream", "--bogus")):
            r = self.pycm(*args)
            self.assertEqual(r.returncode, 2, (args, r.stderr))
            self.assertEqual(r.stderr, "Error: bad_request: unknown option '--bogus'\n")
        r = self.pycm(input="foo\n")
        self.assertEqual(r.returncode, 2, r.stderr)
        r = self.pycm(input="run a\ninspect nope\nping\n")
        self.assertEqual((r.returncode, r.stdout), (2, "pong\n"), r.stderr)

    def test_actedOnPrintsName(self) -> None:
        """
        C{kill}, C{stop}, C{start}, C{restart} and C{rm} print the
        container's name, as docker does (C{kill}'s reply was its state
        before the signal took effect: still running).
        """
        self.ok("run", "ticker", "memory", "sleep", "1000")
        for command in ("kill", "start", "restart", "stop"):
            self.assertEqual(self.ok(command, "ticker").stdout, "ticker\n", command)
        self.assertEqual(self.ok("rm", "ticker").stdout, "ticker\n")

    def test_json(self) -> None:
        """
        With C{--json}, errors are JSON on stderr, and replies (one-shot
        and piped) are the daemon's JSON exactly as it sent them.
        """
        r = self.pycm("--json", "inspect", "nope")
        self.assertEqual(r.returncode, 1)
        self.assertEqual(json.loads(r.stderr),
                         {"error": "not_found", "message": "no such container: nope"})
        r = self.pycm("--json", "stop", "--bogus", "x")
        self.assertEqual((r.returncode, json.loads(r.stderr)["error"]), (2, "bad_request"))
        self.ok("run", "web", "memory", "echo", "caf\u00e9")
        with socket.create_connection(("127.0.0.1", self.daemon.port), TIMEOUT) as s:
            s.sendall(b"inspect web\n")
            raw = b""
            while not raw.endswith(b"\n"):
                raw += s.recv(65536)
        self.assertEqual(self.ok("--json", "inspect", "web").stdout.encode(), raw[3:])
        r = self.pycm("--json", input="inspect web\n")
        self.assertEqual(r.stdout.encode(), raw)
        r = self.pycm("--json", "--host", "tcp:127.0.0.1:1", "ping")
        self.assertEqual((r.returncode, json.loads(r.stderr)["error"]), (3, "unreachable"))


class CompletionE2ETests(Client, TestCase):
    """The bash completion script, run in C{bash} against a real daemon."""

    def complete(self, *words: str, env: dict[str, str] | None = None) -> list[str]:
        """What C{_pycm} offers for C{words} (the last one being typed)."""
        bash = shutil.which("bash")
        script = shutil.which("pycm", path=os.path.dirname(sys.executable))
        if bash is None or script is None:
            raise SkipTest("needs bash and the installed pycm console script")
        quoted = " ".join(f"'{w}'" for w in (script, *words))
        program = (
            f"source <('{script}' completion bash) && COMP_WORDS=({quoted}) && "
            f"COMP_CWORD={len(words)} && _pycm && echo \"${{COMPREPLY[@]}}\""
        )
        r = subprocess.run([bash, "--norc", "-c", program], capture_output=True, text=True,
                           timeout=TIMEOUT, env=env if env is not None else self.env,
                           stdin=subprocess.DEVNULL)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout.split()

    def test_bash(self) -> None:
        """
        Commands, each command's options (from the daemon's table), and
        container names asked of the daemon; C{--host} on the command line
        is used for the names; an unreachable daemon gives no names and
        no error.
        """
        for name in ("web", "web2", "db"):
            self.assertEqual(self.pycm("run", name).returncode, 0)
        # Whatever the daemon's table has (start, stats, stop...).
        self.assertEqual(self.complete("st"),
                         sorted(word for word in commands.BY_WORD if word.startswith("st")))
        self.assertIn("stop", self.complete("st"))
        self.assertEqual(self.complete("to"), ["top"])
        self.assertEqual(self.complete("stats", "w"), ["web", "web2"])
        self.assertEqual(self.complete("stop", "w"), ["web", "web2"])
        self.assertEqual(self.complete("rm", "-f", "d"), ["db"])
        self.assertEqual(self.complete("stop", "web", ""), ["db", "web", "web2"])
        self.assertEqual(self.complete("logs", "--s"), ["--since"])
        self.assertEqual(self.complete("ps", "--f"), ["--filter", "--format"])
        self.assertEqual(self.complete("stop", "-t", ""), [])
        # Short options written together: a value letter last takes the next word.
        self.assertEqual(self.complete("logs", "-fn", ""), [])
        self.assertEqual(self.complete("logs", "-fn5", "w"), ["web", "web2"])
        self.assertEqual(self.complete("logs", "-tf", "w"), ["web", "web2"])
        self.assertEqual(self.complete("run", "w"), [])
        self.assertEqual(self.complete("help", "lo"), ["logs"])
        self.assertEqual(sorted(self.complete("completion", "")), ["bash", "fish", "zsh"])
        env = dict(self.env)
        del env["PYCM_HOST"]
        self.assertEqual(
            self.complete("--host", f"unix:{self.daemon.socketPath}", "kill", "d", env=env), ["db"]
        )
        started = time.monotonic()
        self.assertEqual(
            self.complete("--host", "tcp:127.0.0.1:1", "stop", "", env=env), []
        )
        self.assertLess(time.monotonic() - started, TIMEOUT)


    def runShell(self, shell: str, program: str) -> list[str]:
        """Run C{program} in C{shell} (installed in CI), its output's lines."""
        found = shutil.which(shell)
        script = shutil.which("pycm", path=os.path.dirname(sys.executable))
        if found is None or script is None:
            raise SkipTest(f"needs {shell} and the installed pycm console script")
        r = subprocess.run([found, "-c", program.replace("PYCM", script)],
                           capture_output=True, text=True, timeout=TIMEOUT, env=self.env,
                           stdin=subprocess.DEVNULL)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout.splitlines()

    def test_fish(self) -> None:
        """
        The fish script, loaded in a real C{fish}: commands with their
        summaries, and container names asked of the daemon.
        """
        for name in ("web", "web2", "db"):
            self.assertEqual(self.pycm("run", name).returncode, 0)
        offered = self.runShell(
            "fish", "PYCM completion fish | source; complete -C 'PYCM sto'"
        )
        self.assertEqual([line.split("\t")[0] for line in offered], ["stop"])
        names = self.runShell(
            "fish", "PYCM completion fish | source; complete -C 'PYCM stop w'"
        )
        self.assertEqual(sorted(line.split("\t")[0] for line in names), ["web", "web2"])
        # An option's value is not a name, nor a file, even with short
        # options written together (the value letter last); after it, names.
        for typed, offered in (("logs -fn ", []), ("logs -n ", []), ("logs --tail ", []),
                               ("logs -tf w", ["web", "web2"]),
                               ("logs -fn5 w", ["web", "web2"]),
                               ("logs -n 5 w", ["web", "web2"])):
            names = self.runShell(
                "fish", f"PYCM completion fish | source; complete -C 'PYCM {typed}'"
            )
            self.assertEqual(sorted(line.split("\t")[0] for line in names), offered, typed)

    def test_zsh(self) -> None:
        """
        The zsh script, loaded in a real C{zsh -f}: it sets up bash
        completion emulation and runs C{_pycm} as zsh's C{compgen -F} does
        (options of C{emulate sh}: arrays from 0); zsh itself then keeps the
        candidates that match what is typed.
        """
        for name in ("web", "web2", "db"):
            self.assertEqual(self.pycm("run", name).returncode, 0)
        program = (
            "source <(PYCM completion zsh) || exit 3; "
            "(( ${+functions[_pycm]} )) || exit 4; "
            "setopt ksharrays kshglob noshglob braceexpand; "
            "COMP_WORDS=(PYCM stop w); COMP_CWORD=2; _pycm; print -l -- \"${COMPREPLY[@]}\""
        )
        # The container names (zsh, not compgen, then keeps those with "w").
        self.assertEqual(sorted(self.runShell("zsh", f"emulate zsh; {program}")),
                         ["db", "web", "web2"])


class ShellHabitsE2ETests(Client, TestCase):
    """The shell's Tab and Ctrl-D at the name prompt, on a real pty."""

    def startShell(self) -> None:
        """Start C{pycm} (the shell) on a new pseudo-terminal."""
        self.env.pop("PYCM_HISTORY", None)
        self.terminal = Terminal(self, pycmCommand(), self.env)

    def test_tabAndCtrlD(self) -> None:
        """
        Tab completes a container name asked of the daemon, and an option;
        Ctrl-D at "Enter container name:" cancels the question and the
        shell goes on; Ctrl-D at the prompt then leaves with status 0.
        """
        for name in ("alpha", "beta"):
            self.assertEqual(self.pycm("run", name).returncode, 0)
        self.startShell()
        self.terminal.readUntil(b"pycm> ")
        self.terminal.mark()
        self.terminal.type(b"inspect al\t")
        self.terminal.readUntil(b"alpha ")
        self.terminal.type(b"\r")
        self.terminal.readUntil(b"state:")
        self.terminal.readUntil(b"pycm> ")

        self.terminal.mark()
        self.terminal.type(b"logs --f\t")
        self.terminal.readUntil(b"--follow ")
        self.terminal.type(b"\x15")

        self.terminal.mark()
        self.terminal.type(b"stop\r")
        self.terminal.readUntil(b"Enter container name: ")
        self.terminal.type(b"b\t")
        self.terminal.readUntil(b"beta ")
        self.terminal.type(b"\x15\x04")
        self.terminal.readUntil(b"pycm> ")
        self.assertIsNone(self.terminal.process.poll())
        self.terminal.mark()
        self.terminal.type(b"ping\r")
        self.terminal.readUntil(b"pong")
        self.terminal.readUntil(b"pycm> ")
        self.assertEqual(
            re.findall(r"(\w+)\s+running", self.pycm("ps").stdout), ["alpha", "beta"]
        )
        self.terminal.type(b"\x04")
        self.assertEqual(self.terminal.process.wait(TIMEOUT), 0)

