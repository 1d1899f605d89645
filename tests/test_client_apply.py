"""
Tests for C{pycm apply} (L{pycm.client.applying}, with the planning in
L{pycm.client.plan} and the sending in L{pycm.client.command}) and for
C{run}/C{create --env-file}: the request sent, on both one-shot paths and
in the shell, against a L{FakeDaemon} (the daemon's own apply is tested
elsewhere; here its replies are scripted).
"""

from __future__ import annotations

import io
import json
import os
import shlex
import sys
from typing import Any

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from pycm.client import applying, cli, completion
from pycm.client import format as fmt
from pycm.client.arguments import parseArguments
from pycm.client.commandtable import BY_WORD, COMMAND_NOTES, COMMANDS
from pycm.client.exits import UsageError
from pycm.client.plan import Plan, PlanError, planCommand
from pycm.client.testing import FakeDaemon, ok
from pycm.grammar import CommandSyntax, Option
from pycm.services import envfile
from tests.envreads import countReads
from tests.test_client_cli import FastHarness, Harness, options
from tests.test_client_shell import ShellHarness

SERVICES = """\
[services.db]
command = ["sh", "-c", "echo 'it''s up'; exec sleep 100"]
env = { GREETING = "it's \\"quoted\\" $HOME" }
[services.db.healthcheck]
cmd = "exit 0"
interval = "1s"

[services.web]
command = ["sleep", "100"]
depends_on = { db = "healthy" }
"""

#: The daemon's reply to an apply of L{SERVICES}.
OUTCOME = {
    "project": "shop", "dry_run": False,
    "services": [
        {"name": "db", "action": "create", "changes": [], "state": "running",
         "health": "healthy"},
        {"name": "web", "action": "recreate", "changes": ["command", "env"],
         "state": "running", "health": None},
        {"name": "old", "action": "remove", "changes": [], "state": None, "health": None},
    ],
}

#: The contract's row for apply (the daemon's table gets it from the apply
#: work; completion is checked with it whether or not it is there yet).
APPLY_ROW = CommandSyntax(
    "apply", "make the containers match a services document",
    options=(Option("dry-run", takesValue=False), Option("prune", takesValue=False),
             Option("project", metavar="NAME")),
)


class FilesMixin:
    """A project directory C{shop} to write files in."""

    def makeDirectory(self: Any) -> str:
        directory = os.path.join(self.mktemp(), "shop")
        os.makedirs(directory)
        return directory

    def write(self: Any, directory: str, name: str, text: str) -> str:
        path = os.path.join(directory, name)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path


class PlanApplyTests(FilesMixin, SynchronousTestCase):
    """C{apply}'s words become one request carrying the file's document."""

    def setUp(self) -> None:
        self.directory = self.makeDirectory()
        self.path = self.write(self.directory, "services.toml", SERVICES)

    def test_request(self) -> None:
        """
        C{apply FILE} is one request: C{apply} and the document as one
        compact JSON word; the project is the directory's name.
        """
        plan = planCommand(["apply", self.path])
        self.assertEqual(plan.command, "apply")
        (request,) = plan.requests
        self.assertEqual(request[0], "apply")
        self.assertEqual(len(request), 3)
        self.assertRegex(request[1], "^--progress-id=[0-9a-f]{16}$")
        document = json.loads(request[2])
        self.assertEqual(document["project"], "shop")
        self.assertEqual(list(document["services"]), ["db", "web"])
        self.assertEqual(request[2], json.dumps(document, ensure_ascii=False,
                                                separators=(",", ":")))
        # Each apply its own id: two clients' progress never mixes.
        (again,) = planCommand(["apply", self.path]).requests
        self.assertNotEqual(again[1], request[1])
        for words in (["--progress-id", "mine"], ["--progress-id=mine"]):
            (given,) = planCommand(["apply", *words, self.path]).requests
            self.assertEqual(given[1], "--progress-id=mine")

    def test_options(self) -> None:
        """
        C{--dry-run}, C{--prune} and C{--project NAME} (or C{=NAME}) go
        before the document, the project in it too.
        """
        for words in (["--dry-run", "--prune", "--project", "other", self.path],
                      ["--prune", "--dry-run", self.path, "--project=other"]):
            (request,) = planCommand(["apply", *words]).requests
            self.assertEqual(sorted(request[1:3]), ["--dry-run", "--prune"])
            self.assertEqual(request[3], "--project=other")
            self.assertTrue(request[4].startswith("--progress-id="))
            self.assertEqual(json.loads(request[5])["project"], "other")

    def test_quoting(self) -> None:
        """
        The line sent is the request's words shell-quoted: the daemon's
        split gives back the document exactly, quotes and all.
        """
        (request,) = planCommand(["apply", self.path]).requests
        words = shlex.split(shlex.join(request))
        document = json.loads(words[-1])
        self.assertEqual(document["services"]["db"]["env"],
                         {"GREETING": 'it\'s "quoted" $HOME'})
        self.assertEqual(document["services"]["db"]["command"][2],
                         "echo 'it''s up'; exec sleep 100")

    def test_tooBig(self) -> None:
        """A document over the daemon's request line limit is refused, saying so."""
        self.write(self.directory, "big.env", "".join(
            f"VARIABLE_{n}={'x' * 100}\n" for n in range(700)))
        path = self.write(self.directory, "big.toml",
                          '[services.web]\nenv_file = "big.env"\n')
        error = self.assertRaises(PlanError, planCommand, ["apply", path])
        self.assertIn(f"{path}: too big to apply in one request", str(error))
        self.assertIn("65,536", str(error))
        self.assertFalse(error.hint)

    def test_justFits(self) -> None:
        """The limit counts the whole quoted line: a document under it is sent."""
        path = self.write(self.directory, "fits.toml",
                          f'[services.web]\nenv = {{ A = "{"x" * 60000}" }}\n')
        (request,) = planCommand(["apply", path]).requests
        self.assertLessEqual(len(shlex.join(request).encode()), applying.MAX_REQUEST_LINE)

    def test_fileMistakes(self) -> None:
        """A mistake in the file is a usage error saying FILE:LINE, with no --help hint."""
        path = self.write(self.directory, "bad.toml", '[services.web]\nimage = 3\n')
        error = self.assertRaises(PlanError, planCommand, ["apply", path])
        self.assertEqual(str(error),
                         f'{path}:2: "image" in [services.web] must be a string, not an integer')
        self.assertFalse(error.hint)
        error = self.assertRaises(UsageError, parseArguments, ["apply", path], {})
        self.assertFalse(error.hint)
        error = self.assertRaises(PlanError, planCommand,
                                  ["apply", os.path.join(self.directory, "missing.toml")])
        self.assertIn("cannot read the services file", str(error))

    def test_missingInRoot(self) -> None:
        """
        C{apply /nonexistent.toml}: the file is said to be missing, not the
        root directory to make no project name.
        """
        error = self.assertRaises(PlanError, planCommand,
                                  ["apply", "/nonexistent-pycm-services.toml"])
        self.assertIn("/nonexistent-pycm-services.toml: cannot read the services file",
                      str(error))
        self.assertNotIn("project", str(error))

    def test_wordMistakes(self) -> None:
        """No FILE, two, an unknown option, --project without NAME: usage errors."""
        for words in ([], [self.path, self.path], ["--force", self.path],
                      [self.path, "--project"], ["--project="], [self.path, "--progress-id"]):
            error = self.assertRaises(PlanError, planCommand, ["apply", *words])
            self.assertIn("usage: apply [--dry-run] [--prune] [--project=NAME] "
                          "[--progress-id=ID] FILE",
                          str(error))
            self.assertTrue(error.hint)

    def test_badProject(self) -> None:
        """A --project that breaks the naming rule is refused before sending."""
        error = self.assertRaises(PlanError, planCommand,
                                  ["apply", "--project", "no way", self.path])
        self.assertIn("invalid project name 'no way'", str(error))

    def test_help(self) -> None:
        """C{apply --help} is C{help apply}, whose notes say the file's format in short."""
        self.assertEqual(planCommand(["apply", "--help"]), Plan("help", (("help", "apply"),)))
        notes = "\n".join(COMMAND_NOTES["apply"])
        for word in ("--dry-run", "--prune", "--project", "depends_on", "healthcheck",
                     "env_file", "README"):
            self.assertIn(word, notes)

    def test_helpUsage(self) -> None:
        """The daemon's usage of apply names FILE, which the client reads, not DOCUMENT."""
        lines = fmt.formatHelp({"name": "apply", "summary": "make the containers match",
                                "usage": "apply [--dry-run] [--prune] [--project=NAME] "
                                         "[--progress-id=ID] DOCUMENT"})
        self.assertEqual(lines[0], "usage: apply [--dry-run] [--prune] [--project=NAME] "
                                   "[--progress-id=ID] FILE")
        self.assertEqual(lines[2:], list(COMMAND_NOTES["apply"]))

    def test_cliFileError(self) -> None:
        """
        C{pycm apply BAD} exits 2 before connecting, with the mistake and no
        C{Try 'pycm --help'}.
        """
        path = self.write(self.directory, "bad.toml", "[services.web]\nimag = 'x'\n")
        err = io.StringIO()
        self.patch(sys, "stderr", err)
        exit = self.assertRaises(SystemExit, cli.main, ["--host", "tcp:127.0.0.1:1",
                                                        "apply", path])
        self.assertEqual(exit.code, 2)
        self.assertTrue(err.getvalue().startswith(
            f'pycm: {path}:2: unknown key "imag" in [services.web]'))
        self.assertNotIn("Try", err.getvalue())


class ApplyCallMixin(FilesMixin):
    """C{pycm apply} against a daemon, on either one-shot path."""

    harness: Any

    def setUp(self: Any) -> None:
        self.directory = self.makeDirectory()
        self.path = self.write(self.directory, "services.toml", SERVICES)

    def daemon(self, reply: Any) -> FakeDaemon:
        return FakeDaemon({"events": ok({"events": True, "last_id": 7}),
                           "apply": reply})

    def test_progressThenTable(self: Any) -> None:
        """
        The client subscribes to apply progress first, prints each
        progress event on stderr as it comes (before the reply), then the
        outcome as a table on stdout; exit status 0.
        """
        held: Deferred[str] = Deferred()
        h = self.harness(self.daemon(lambda words: held))
        d = h.run(options("apply", self.path))
        self.assertNoResult(d)
        self.assertEqual(h.daemon.received[0], "events --filter action=apply")
        ours = applying.progressIdOf(shlex.split(h.daemon.received[1]))
        self.assertTrue(h.daemon.received[1].startswith(
            f"apply --progress-id={ours} '{{\"project\":\"shop\""))
        h.daemon.sendEvent({"type": "progress", "action": "apply", "name": "db",
                            "detail": "creating", "time": "T", "apply": ours})
        # Another client's apply of the project (before or after this one):
        # its progress is not this client's to show.
        h.daemon.sendEvent({"type": "progress", "action": "apply", "name": "db",
                            "detail": "kept", "time": "T", "apply": "0123456789abcdef"})
        h.daemon.sendEvent({"type": "progress", "action": "apply", "name": "db",
                            "detail": "starting", "time": "T"})
        h.daemon.sendEvent({"type": "progress", "action": "apply", "name": "web",
                            "detail": "waiting for db to be healthy", "time": "T",
                            "apply": ours})
        h.flush()
        self.assertEqual(h.err.getvalue(),
                         "db: creating\nweb: waiting for db to be healthy\n")
        self.assertEqual(h.out.getvalue(), "")
        held.callback(ok(OUTCOME))
        h.flush()
        self.assertEqual(self.successResultOf(d), 0)
        self.assertEqual(h.out.getvalue().splitlines(), [
            "project shop",
            "SERVICE   ACTION     CHANGES        STATE",
            "db        create     -              running (healthy)",
            "web       recreate   command, env   running",
            "old       remove     -              -",
        ])

    def test_dryRun(self: Any) -> None:
        """C{--dry-run} is sent, and the plan is printed under a line saying nothing changed."""
        plan = dict(OUTCOME, dry_run=True, services=[
            {"name": "db", "action": "keep", "changes": [], "state": "running",
             "health": "starting"},
            {"name": "web", "action": "recreate", "changes": ["env"], "state": "running",
             "health": None},
        ])
        h = self.harness(self.daemon(ok(plan)))
        self.assertEqual(self.successResultOf(h.run(options("apply", "--dry-run",
                                                            self.path))), 0)
        self.assertTrue(h.daemon.received[1].startswith("apply --dry-run --progress-id="))
        self.assertEqual(h.out.getvalue().splitlines(), [
            "project shop: the plan (dry run: nothing was changed)",
            "SERVICE   ACTION     CHANGES   STATE",
            "db        keep       -         running (health: starting)",
            "web       recreate   env       running",
        ])

    def test_failure(self: Any) -> None:
        """An ERR reply (a service that failed) is printed on stderr; exit status 1."""
        message = "apply of shop failed: db turned unhealthy; not started: web"
        h = self.harness(self.daemon(f"ERR backend {message}"))
        self.assertEqual(self.successResultOf(h.run(options("apply", self.path))), 1)
        self.assertEqual(h.err.getvalue(), f"Error: backend: {message}\n")

    def test_badRequest(self: Any) -> None:
        """A document the daemon refuses (a cycle): exit status 2, as every bad_request."""
        h = self.harness(self.daemon("ERR bad_request dependency cycle: db -> web -> db"))
        self.assertEqual(self.successResultOf(h.run(options("apply", self.path))), 2)

    def test_json(self: Any) -> None:
        """
        With C{--json}: the reply's JSON on stdout, each progress event's
        JSON on stderr.
        """
        held: Deferred[str] = Deferred()
        h = self.harness(self.daemon(lambda words: held))
        d = h.run(options("apply", self.path, json=True))
        progress = {"type": "progress", "action": "apply", "name": "db",
                    "detail": "created", "time": "T",
                    "apply": applying.progressIdOf(shlex.split(h.daemon.received[1]))}
        h.daemon.sendEvent(progress)
        h.daemon.sendEvent(dict(progress, apply="another"))
        h.flush()
        held.callback(ok(OUTCOME))
        h.flush()
        self.assertEqual(self.successResultOf(d), 0)
        self.assertEqual(json.loads(h.err.getvalue()), progress)
        self.assertEqual(json.loads(h.out.getvalue()), OUTCOME)

    def test_interruptedNamesTheFile(self: Any) -> None:
        """
        Ctrl-C before an apply's reply names the request as the user typed
        it (C{apply FILE}), never the document: its env values may be
        secrets the user did not type.
        """
        h = self.harness(self.daemon(lambda words: Deferred()))
        d = h.run(options("apply", self.path))
        h.interrupt()
        self.assertEqual(self.successResultOf(d), 130)
        self.assertEqual(h.err.getvalue(), "pycm: interrupted before the reply (the daemon "
                         "abandons the apply where it is (what it made stays)): "
                         f"apply {shlex.quote(self.path)}\n")

    def test_interruptedEnvFile(self: Any) -> None:
        """
        The same for C{run --env-file}: the user's words, not the file's
        variables the client put in the request.
        """
        env = self.write(self.directory, "web.env", "PASSWORD=hunter2secret\n")
        h = self.harness(FakeDaemon({"run": lambda words: Deferred()}))
        d = h.run(options("run", "--env-file", env, "web"))
        h.interrupt()
        self.assertEqual(self.successResultOf(d), 130)
        self.assertIn(f"carry it out): run --env-file {shlex.quote(env)} web\n", h.err.getvalue())
        self.assertNotIn("hunter2secret", h.err.getvalue())

    def test_interruptedEnvKey(self: Any) -> None:
        """The same for C{run -e KEY}: the user's words, not this shell's value of KEY."""
        self.patch(os, "environ", dict(os.environ, SECRET="hunter2secret"))
        h = self.harness(FakeDaemon({"run": lambda words: Deferred()}))
        d = h.run(options("run", "-e", "SECRET", "web"))
        h.interrupt()
        self.assertEqual(self.successResultOf(d), 130)
        self.assertIn("carry it out): run -e SECRET web\n", h.err.getvalue())
        self.assertNotIn("hunter2secret", h.err.getvalue())

    def test_noEventsStillApplies(self: Any) -> None:
        """A daemon that refuses the events subscription still gets the apply."""
        h = self.harness(FakeDaemon({"events": "ERR unauthorized no",
                                     "apply": ok(OUTCOME)}))
        self.assertEqual(self.successResultOf(h.run(options("apply", self.path))), 0)
        self.assertIn("db        create", h.out.getvalue())


class ApplyReactorTests(ApplyCallMixin, SynchronousTestCase):
    """L{ApplyCallMixin} in the reactor."""

    harness = Harness


class ApplyFastTests(ApplyCallMixin, SynchronousTestCase):
    """L{ApplyCallMixin} on the fast path."""

    harness = FastHarness


class ShellApplyTests(FilesMixin, SynchronousTestCase):
    """C{apply} and C{--env-file} typed in the shell."""

    def test_apply(self) -> None:
        """The shell reads the file and sends the document; the outcome is a table."""
        directory = self.makeDirectory()
        path = self.write(directory, "services.toml", SERVICES)
        h = ShellHarness(FakeDaemon({"apply": ok(OUTCOME)}))
        h.screen()
        h.type(f"apply --prune {path}\r".encode())
        (line,) = h.daemon.received
        self.assertTrue(line.startswith("apply --prune --progress-id="))
        self.assertIn(" '{\"project\":\"shop\"", line)
        self.assertIn(b"web       recreate   command, env   running", h.screen())

    def test_progress(self) -> None:
        """
        The shell, subscribed to every event, shows the apply's progress as
        it comes, before the outcome.
        """
        directory = self.makeDirectory()
        path = self.write(directory, "services.toml", SERVICES)
        held: Deferred[str] = Deferred()
        h = ShellHarness(FakeDaemon({"apply": lambda words: held}))
        h.screen()
        h.type(f"apply {path}\r".encode())
        h.daemon.sendEvent({"type": "progress", "action": "apply", "name": "web",
                            "detail": "waiting for db to be healthy", "time": "T"})
        h.pump.flush()
        self.assertIn(b"web: apply waiting for db to be healthy", h.screen())
        held.callback(ok(OUTCOME))
        h.pump.flush()
        self.assertIn(b"db        create     -              running (healthy)", h.screen())

    def test_applyMistake(self) -> None:
        """A mistake in the file is shown and nothing is sent."""
        directory = self.makeDirectory()
        path = self.write(directory, "services.toml", "[services.web]\nx = 1\n")
        h = ShellHarness()
        h.screen()
        h.type(f"apply {path}\r".encode())
        self.assertEqual(h.daemon.received, [])
        self.assertIn(f'Error: {path}:2: unknown key "x"'.encode(), h.screen())

    def test_envFile(self) -> None:
        """C{run --env-file} in the shell sends the variables, not the path."""
        path = self.write(self.makeDirectory(), "web.env", "A=1\n")
        h = ShellHarness(FakeDaemon({"run": ok({"name": "web", "state": "running",
                                                "image": "host"})}))
        h.type(f"run --env-file {path} web\r".encode())
        self.assertEqual(h.daemon.received, ["run -e A=1 web"])


class EnvFileTests(FilesMixin, SynchronousTestCase):
    """C{run}/C{create --env-file=FILE}: read by the client, sent as C{-e K=V}."""

    def setUp(self) -> None:
        directory = self.makeDirectory()
        self.first = self.write(directory, "first.env", "# c\nA=1\nB=from first\nC=3\n")
        self.second = self.write(directory, "second.env", "B=from second\nD=it's\n")

    def request(self, *words: str) -> tuple[str, ...]:
        (request,) = planCommand(list(words)).requests
        return request

    def test_variables(self) -> None:
        """Each variable becomes C{-e K=V}, before the other options; the path is not sent."""
        self.assertEqual(self.request("run", "-d", "--env-file", self.first, "--restart",
                                      "always", "web", "host", "sleep", "1"),
                         ("run", "-e", "A=1", "-e", "B=from first", "-e", "C=3",
                          "--restart", "always", "web", "host", "sleep", "1"))
        self.assertEqual(self.request("create", f"--env-file={self.first}", "web"),
                         ("create", "-e", "A=1", "-e", "B=from first", "-e", "C=3", "web"))

    def test_precedence(self) -> None:
        """A later file wins over an earlier one; C{-e}/C{--env} win over both."""
        request = self.request("run", "--env-file", self.first, "-e", "C=cli",
                               "--env-file", self.second, "--env=A=cli", "web")
        self.assertEqual(request, ("run", "-e", "B=from second", "-e", "D=it's",
                                   "-e", "C=cli", "--env=A=cli", "web"))

    def test_quotedOnTheWire(self) -> None:
        """The values are quoted on the request line like any argument."""
        h = Harness(FakeDaemon({"run": ok({"name": "web", "state": "running",
                                           "image": "host"})}))
        self.successResultOf(h.run(options("run", "--env-file", self.second, "web")))
        self.assertEqual(h.daemon.received,
                         ["run -e 'B=from second' -e 'D=it'\"'\"'s' web"])

    def test_keysAsEnvOption(self) -> None:
        """
        A key C{-e} takes (C{-e 1A=b}) is taken from the file too, as
        Docker's C{--env-file} takes it.
        """
        names = self.write(os.path.dirname(self.first), "names.env", "1A=b\na-b=c\n")
        self.assertEqual(self.request("run", "--env-file", names, "web"),
                         ("run", "-e", "1A=b", "-e", "a-b=c", "web"))
        self.assertEqual(self.request("run", "-e", "1A=b", "web"), ("run", "-e", "1A=b", "web"))

    def test_errors(self) -> None:
        """A wrong or missing env file is a usage error naming it; no value is a usage error."""
        bad = self.write(os.path.dirname(self.first), "bad.env", "A=1\nnot ok\n")
        error = self.assertRaises(PlanError, planCommand, ["run", "--env-file", bad, "web"])
        self.assertEqual(str(error), f"{bad}:2: not a KEY=VALUE line, nor a KEY alone (a KEY "
                         "holds no blank)")
        self.assertFalse(error.hint)
        error = self.assertRaises(PlanError, planCommand, ["run", "--env-file=", "web"])
        self.assertEqual(str(error), "option --env-file needs a FILE")

    def test_namedOften(self) -> None:
        """
        A file named again is not read again; the files of one C{run} come
        to 1 MiB at most, each counted every time it is named.
        """
        reads = countReads(self)
        self.assertEqual(self.request("run", *["--env-file", self.second] * 1000, "web"),
                         ("run", "-e", "B=from second", "-e", "D=it's", "web"))
        self.assertEqual(reads, [self.second])
        big = self.write(os.path.dirname(self.first), "big.env",
                         "#" * (envfile.MAX_ENV_FILES // 2) + "\nB=2\n")
        error = self.assertRaises(PlanError, planCommand,
                                  ["run", "--env-file", big, f"--env-file={big}", "web"])
        self.assertTrue(str(error).startswith(f"{big}: too much to read: "), str(error))

    def test_notesAndEpilog(self) -> None:
        """C{run --help} and C{create --help} explain --user, --env-file and --health-*."""
        for command in ("run", "create"):
            notes = "\n".join(COMMAND_NOTES[command])
            for option in ("--user", "--env-file", "--health-cmd", "--health-interval",
                           "--health-timeout", "--health-retries", "--health-start-period",
                           "--health-on-failure", "--no-healthcheck"):
                self.assertIn(option, notes)

    def test_usageNamesEnvFile(self) -> None:
        """
        C{run --help} and C{create --help}'s usage line names --env-file (the
        client's own option, which the daemon's usage lacks) before NAME.
        """
        for command in ("run", "create"):
            lines = fmt.formatHelp({"name": command, "summary": "s",
                                    "usage": f"{command} [-e|--env=K=V]... NAME [IMAGE]"})
            self.assertEqual(
                lines[0], f"usage: {command} [-e|--env=K=V]... [--env-file=FILE]... NAME [IMAGE]")


class CompletionTests(SynchronousTestCase):
    """Completion knows apply (its options, FILE a path) and --env-file's FILE."""

    def setUp(self) -> None:
        if "apply" not in BY_WORD:
            self.patch(completion, "COMMANDS", (*COMMANDS, APPLY_ROW))

    def test_table(self) -> None:
        """apply's row completes a file; run and create's --env-file takes a file."""
        table = {row.name: row for row in completion.commandTable()}
        apply = table["apply"]
        self.assertTrue(apply.files)
        self.assertFalse(apply.names)
        self.assertEqual(set(apply.options) - {"--help"}, {"--dry-run", "--prune",
                                                           "--project", "--progress-id"})
        self.assertIn("--project", apply.valueOptions)
        for name in ("run", "create"):
            self.assertIn("--env-file", table[name].options)
            self.assertIn("--env-file", table[name].valueOptions)
            self.assertEqual(table[name].fileOptions, ("--env-file",))

    def test_bash(self) -> None:
        """The bash (and zsh) script completes paths for apply and after --env-file."""
        script = completion.bashScript()
        self.assertIn('        apply)\n            options="--dry-run --prune --project '
                      '--progress-id --help"\n            values="--project --progress-id"\n'
                      '            files=""\n'
                      '            names="files" ;;', script)
        self.assertIn('files="--env-file"', script)
        self.assertIn('compgen -f -- "$cur"', script)
        self.assertIn("apply", completion.zshScript())

    def test_fish(self) -> None:
        """The fish script completes files for apply and --env-file."""
        script = completion.fishScript()
        self.assertIn("complete -c pycm -n '__fish_seen_subcommand_from apply' -F", script)
        self.assertIn("complete -c pycm -n '__fish_seen_subcommand_from run' "
                      "-l env-file -r -F", script)
