"""
Tests for Docker's habits in the one-shot client (L{pycm.client.plan} and
the formatting it asks of L{pycm.client.format}), on a fake daemon.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.testing import MemoryReactorClock
from twisted.test.iosim import ConnectionCompleter
from twisted.trial.unittest import SynchronousTestCase

from pycm.client import cli
from pycm.client import format as fmt
from pycm.client.plan import PlanError, planCommand
from pycm.client.template import Template
from pycm.client.testing import FakeDaemon, event, ok

from .test_client_cli import DB, WEB, FastHarness, Harness, options


def planned(*words: str, **kw: Any) -> cli.CommandLine:
    """Options for C{words}, planned as L{cli.parseArguments} plans them."""
    return options(*words, plan=planCommand(words), **kw)


class PlanTests(SynchronousTestCase):
    """How command words become requests."""

    def test_unchanged(self) -> None:
        """A command with nothing of Docker's is sent as it is."""
        plan = planCommand(["run", "web", "host", "sh", "-c", "echo -d --help"])
        self.assertEqual(plan.requests, (("run", "web", "host", "sh", "-c", "echo -d --help"),))
        self.assertEqual(planCommand(["inspect", "web"]).requests, (("inspect", "web"),))

    def test_detach(self) -> None:
        """C{run -d}/C{--detach} is dropped: pycm always detaches."""
        for flag in ("-d", "--detach"):
            plan = planCommand(["run", flag, "-e", "A=1", "web", "host", "top", "-d"])
            self.assertEqual(plan.requests, (("run", "-e", "A=1", "web", "host", "top", "-d"),))

    def test_help(self) -> None:
        """C{COMMAND --help} (or C{-h}) is C{help COMMAND}."""
        for words in (["stop", "--help"], ["stop", "-t", "5", "-h"], ["STOP", "--help", "web"]):
            self.assertEqual(planCommand(words).requests, (("help", "stop"),))
        self.assertEqual(planCommand(["ps", "--help"]).requests, (("help", "ps"),))

    def test_listFlags(self) -> None:
        """C{ps -a}, C{--all} are dropped; C{-q}, C{-aq} ask for names only."""
        self.assertEqual(planCommand(["ps", "-a"]).requests, (("ps",),))
        self.assertFalse(planCommand(["ps", "--all"]).quiet)
        for words in (["ps", "-q"], ["ls", "--quiet"], ["ps", "-aq"], ["ps", "-qa"]):
            plan = planCommand(words)
            self.assertTrue(plan.quiet, words)
            self.assertEqual(plan.requests, ((words[0],),))
        plan = planCommand(["ps", "-a", "-f", "state=running", "-q"])
        self.assertEqual(plan.requests, (("ps", "-f", "state=running"),))

    def test_format(self) -> None:
        """C{--format json} and C{--format TEMPLATE}, in either spelling."""
        self.assertTrue(planCommand(["ps", "--format", "json"]).jsonLines)
        self.assertTrue(planCommand(["ps", "--format=JSON"]).jsonLines)
        plan = planCommand(["ps", "--format={{.Name}}\\t{{ .State }}"])
        assert plan.template is not None
        self.assertEqual(plan.template.render(WEB), "web\trunning")
        self.assertEqual(plan.requests, (("ps",),))

    def test_formatErrors(self) -> None:
        """
        An unknown field, anything but a field in C{{{ }}}, or no value is
        a usage error naming the fields.
        """
        for bad in ("{{.Nope}}", "{{json .}}", "{{range .}}", "{{.Name", "{{.Name}"):
            with self.assertRaises(PlanError) as caught:
                planCommand(["ps", "--format", bad])
            self.assertIn("Name", str(caught.exception))
        self.assertRaises(PlanError, planCommand, ["ps", "--format"])
        with self.assertRaises(cli.UsageError):
            cli.parseArguments(["ps", "--format", "{{.Nope}}"], environ={})

    def test_severalNames(self) -> None:
        """
        stop, start, restart, kill and rm take several names: one request
        each, in order, with the options given to each.
        """
        plan = planCommand(["stop", "-t", "3", "a", "b", "c"])
        self.assertEqual(plan.requests, (("stop", "-t", "3", "a"), ("stop", "-t", "3", "b"),
                                         ("stop", "-t", "3", "c")))
        self.assertEqual(planCommand(["rm", "-f", "a", "b"]).requests,
                         (("rm", "-f", "a"), ("rm", "-f", "b")))
        self.assertEqual(planCommand(["kill", "--signal=TERM", "a", "b"]).requests,
                         (("kill", "--signal=TERM", "a"), ("kill", "--signal=TERM", "b")))
        self.assertEqual(planCommand(["start", "a", "b"]).names, ("a", "b"))
        self.assertEqual(planCommand(["restart", "a"]).requests, (("restart", "a"),))
        # docker wait a b: each in turn.
        self.assertEqual(planCommand(["wait", "--for=removed", "a", "b"]).requests,
                         (("wait", "--for=removed", "a"), ("wait", "--for=removed", "b")))
        # An option after the names is the daemon's to refuse, in one request.
        self.assertEqual(planCommand(["stop", "a", "-t", "3"]).requests,
                         (("stop", "a", "-t", "3"),))

    def test_logs(self) -> None:
        """C{logs -t} is the client's; several names are a request each."""
        plan = planCommand(["logs", "-t", "--since=10m", "-n", "5", "a", "b"])
        self.assertTrue(plan.timestamps)
        self.assertEqual(plan.requests, (("logs", "--since=10m", "-n", "5", "a"),
                                         ("logs", "--since=10m", "-n", "5", "b")))
        self.assertFalse(plan.follow)
        self.assertTrue(planCommand(["logs", "--timestamps", "-f", "a"]).follow)


class TemplateTests(SynchronousTestCase):
    """C{--format TEMPLATE}: fields only."""

    def test_fields(self) -> None:
        """Every documented field shows its part of a container."""
        container = dict(WEB, labels={"tier": "web", "a": "1"})
        template = Template.parse(
            "{{.Name}}|{{.ID}}|{{.State}}|{{.Image}}|{{.Command}}|{{.Pid}}|{{.ExitCode}}|"
            "{{.Restarts}}|{{.Labels}}|{{.RestartPolicy}}|{{.Backend}}"
        )
        self.assertEqual(
            template.render(container),
            "web|abc|running|host|sleep 100|4242||0|a=1,tier=web|no|memory",
        )
        self.assertEqual(Template.parse("{{.Created}}").render(WEB), WEB["created"])
        self.assertEqual(Template.parse("{{.ExitCode}}").render(DB), "-15")

    def test_noExecution(self) -> None:
        """Text that looks like code is only text outside C{{{ }}}."""
        template = Template.parse("{.Name} $(id) {{.Name}}")
        self.assertEqual(template.render(WEB), "{.Name} $(id) web")

    def test_tableTemplate(self) -> None:
        """
        Docker's C{table TEMPLATE}: a header of the fields' names in
        capitals, then the rows, the tab-separated columns aligned; the
        word C{table} is never printed as text.
        """
        from pycm.client.template import formatContainers

        template = Template.parse("table {{.Name}}\\t{{.State}}")
        self.assertTrue(template.table)
        self.assertEqual(formatContainers([DB, WEB], template=template),
                         ["NAME   STATE", "db     exited", "web    running"])
        self.assertFalse(Template.parse("tables {{.Name}}").table)
        self.assertEqual(Template.parse("table\t{{.Name}}").render(WEB), "web")




class OneShotHabitsTestsMixin:
    """
    The one-shot client carrying out a plan against a fake daemon, on
    either path (the subclasses say which harness runs it).
    """

    harness: Callable[..., Any]

    def test_quiet(self: Any) -> None:
        """C{ps -q} prints the names alone, one a line."""
        h = self.harness(FakeDaemon({"ps": ok([DB, WEB])}))
        self.assertEqual(self.successResultOf(h.run(planned("ps", "-aq"))), 0)
        self.assertEqual(h.out.getvalue(), "db\nweb\n")
        self.assertEqual(h.daemon.received, ["ps"])

    def test_formatJSON(self: Any) -> None:
        """C{ps --format json}: one JSON object per line, each a container."""
        h = self.harness(FakeDaemon({"ps": ok([DB, WEB])}))
        self.successResultOf(h.run(planned("ps", "--format", "json")))
        lines = h.out.getvalue().splitlines()
        self.assertEqual([json.loads(line) for line in lines], [DB, WEB])

    def test_formatTemplate(self: Any) -> None:
        """C{ps --format TEMPLATE}: the template for each container."""
        h = self.harness(FakeDaemon({"list": ok([DB, WEB])}))
        self.successResultOf(h.run(planned("list", "--format", "{{.Name}}={{.State}}")))
        self.assertEqual(h.out.getvalue(), "db=exited\nweb=running\n")

    def test_formatTable(self: Any) -> None:
        """C{ps --format table}: Docker's word for the default table."""
        plain = self.harness(FakeDaemon({"ps": ok([DB, WEB])}))
        self.successResultOf(plain.run(planned("ps")))
        h = self.harness(FakeDaemon({"ps": ok([DB, WEB])}))
        self.successResultOf(h.run(planned("ps", "--format", "table")))
        self.assertEqual(h.out.getvalue(), plain.out.getvalue())
        self.assertNotIn("table", h.out.getvalue())

    def test_severalNames(self: Any) -> None:
        """
        Several names: a request each, in order; each error printed, and
        exit status 1 when one failed, the others still done; each one done
        is printed by its name alone, as C{docker stop} prints it.
        """
        def stop(words: list[str]) -> str:
            if words[-1] == "nope":
                return "ERR not_found no such container: nope"
            return ok(dict(WEB, name=words[-1], state="exited", pid=None, exit_code=-15))

        h = self.harness(FakeDaemon({"stop": stop}))
        d = h.run(planned("stop", "-t", "1", "a", "nope", "b"))
        h.flush()
        self.assertEqual(self.successResultOf(d), 1)
        self.assertEqual(h.daemon.received, ["stop -t 1 a", "stop -t 1 nope", "stop -t 1 b"])
        self.assertEqual(h.out.getvalue(), "a\nb\n")
        self.assertEqual(h.err.getvalue(), "Error: not_found: no such container: nope\n")

    def test_badRequestExitsTwo(self: Any) -> None:
        """A C{bad_request} from the daemon is a usage error: exit status 2."""
        h = self.harness(FakeDaemon({"stop": "ERR bad_request unknown option '--bogus'"}))
        self.assertEqual(self.successResultOf(h.run(planned("stop", "--bogus", "a"))), 2)
        self.assertEqual(h.err.getvalue(), "Error: bad_request: unknown option '--bogus'\n")

    def test_ownOptionAfterTheCommand(self: Any) -> None:
        """
        pycm's own option after the command (C{pycm ls --json}), which the
        daemon refuses as unknown: the error says where it goes.
        """
        h = self.harness(FakeDaemon({"ls": "ERR bad_request unknown option '--json'"}))
        self.assertEqual(self.successResultOf(h.run(planned("ls", "--json"))), 2)
        self.assertEqual(
            h.err.getvalue(),
            "Error: bad_request: unknown option '--json' (pycm's own --json goes before the "
            "command: pycm --json ls ...)\n")

    def test_commandTakenForTheImage(self: Any) -> None:
        """
        C{pycm run ubuntu echo hi} (docker's order, no name): the daemon
        finds no image C{echo}; the error says which word is which.
        """
        h = self.harness(FakeDaemon({"run": "ERR no_image no such image: echo"}))
        self.assertEqual(self.successResultOf(h.run(planned("run", "ubuntu", "echo", "hi"))), 1)
        self.assertIn("no such image: echo (usage: pycm run [OPTIONS] NAME [IMAGE "
                      "[COMMAND...]]: the first word after the options is the container's "
                      "name", h.err.getvalue())

    def test_invalidNameExitsTwo(self: Any) -> None:
        """
        An C{invalid_name} (C{run a}) is a request the daemon refuses as
        malformed, as C{bad_request} is: exit status 2, not 1.
        """
        h = self.harness(FakeDaemon({"run": "ERR invalid_name invalid container name 'a'"}))
        self.assertEqual(self.successResultOf(h.run(planned("run", "a"))), 2)
        self.assertEqual(h.err.getvalue(), "Error: invalid_name: invalid container name 'a'\n")

    def test_actedOnPrintsName(self: Any) -> None:
        """
        C{start}, C{stop}, C{restart}, C{kill} and C{rm} print the name
        alone, as docker does: C{kill}'s reply holds the state before the
        signal took effect (still running), which would mislead; a change
        the daemon could not save yet still says so; C{--json} prints the
        reply as it came.
        """
        def reply(words: list[str]) -> str:
            return ok(dict(WEB, name=words[-1], state="running", pid=4242))

        for command in ("start", "stop", "restart", "kill"):
            h = self.harness(FakeDaemon({command: reply}))
            self.assertEqual(self.successResultOf(h.run(planned(command, "web", "db"))), 0)
            self.assertEqual(h.out.getvalue(), "web\ndb\n", command)
        h = self.harness(FakeDaemon({"rm": ok({"name": "web", "removed": True,
                                               "saved": False})}))
        self.assertEqual(self.successResultOf(h.run(planned("rm", "web"))), 0)
        self.assertEqual(h.out.getvalue(), "web" + fmt.NOT_SAVED + "\n")
        h = self.harness(FakeDaemon({"kill": reply}))
        self.assertEqual(self.successResultOf(h.run(planned("kill", "web", json=True))), 0)
        self.assertEqual(json.loads(h.out.getvalue())["state"], "running")

    def test_jsonErrors(self: Any) -> None:
        """With C{--json} an error is a JSON object on stderr."""
        h = self.harness(FakeDaemon({"inspect": "ERR not_found no such container: x"}))
        self.assertEqual(self.successResultOf(h.run(planned("inspect", "x", json=True))), 1)
        self.assertEqual(json.loads(h.err.getvalue()),
                         {"error": "not_found", "message": "no such container: x"})
        self.assertEqual(h.out.getvalue(), "")

    def test_jsonUnchanged(self: Any) -> None:
        """With C{--json} the reply is printed exactly as the daemon sent it."""
        raw = '{"name":"web","state":"running","image":"host","x":"caf\\u00e9"}'
        h = self.harness(FakeDaemon({"inspect": "OK " + raw}))
        self.successResultOf(h.run(planned("inspect", "web", json=True)))
        self.assertEqual(h.out.getvalue(), raw + "\n")

    def test_logsTimestamps(self: Any) -> None:
        """C{logs -t} prints each line's time before it."""
        lines = [{"time": "2026-11-30T10:00:00.000Z", "stream": "stdout", "line": "one"}]
        h = self.harness(FakeDaemon({"logs": ok(lines)}))
        self.successResultOf(h.run(planned("logs", "-t", "web")))
        self.assertEqual(h.out.getvalue(), "2026-11-30T10:00:00.000Z one\n")
        self.assertEqual(h.daemon.received, ["logs web"])

    def test_logsSeveral(self: Any) -> None:
        """
        C{logs a b}: each container's lines with a C{NAME |} prefix, merged
        by time; no colours when the output is not a terminal.
        """
        replies = {
            "a": [{"time": "2026-11-30T10:00:00.000Z", "stream": "stdout", "line": "a1"},
                  {"time": "2026-11-30T10:00:02.000Z", "stream": "stdout", "line": "a2"}],
            "bb": [{"time": "2026-11-30T10:00:01.000Z", "stream": "stdout", "line": "b1"}],
        }
        h = self.harness(FakeDaemon({"logs": lambda words: ok(replies[words[-1]])}))
        d = h.run(planned("logs", "--since=1h", "a", "bb"))
        h.flush()
        self.assertEqual(self.successResultOf(d), 0)
        self.assertEqual(h.out.getvalue(), "a  | a1\nbb | b1\na  | a2\n")
        self.assertEqual(h.daemon.received, ["logs --since=1h a", "logs --since=1h bb"])

    def test_logsSeveralColours(self: Any) -> None:
        """On a terminal each name has its colour, unless NO_COLOR is set."""
        prefixes = fmt.LogPrefixes(("a", "b"), fmt.useColour(True, {}))
        self.assertEqual(prefixes.prefix("a"), "\x1b[36ma | \x1b[0m")
        self.assertEqual(prefixes.prefix("b"), "\x1b[33mb | \x1b[0m")
        self.assertFalse(fmt.useColour(True, {"NO_COLOR": "1"}))
        self.assertFalse(fmt.useColour(False, {}))

        h = self.harness(FakeDaemon({"logs": lambda words: ok(
            [{"time": "t", "stream": "stdout", "line": words[-1]}])}))
        h.out = Terminal()
        d = h.run(planned("logs", "a", "b"))
        h.flush()
        self.successResultOf(d)
        self.assertIn("\x1b[36ma | \x1b[0ma\n", h.out.getvalue())

    def test_logsSeveralFollow(self: Any) -> None:
        """
        C{logs -f a b}: both followed on one connection, lines prefixed
        as they come, done once both have ended.
        """
        held: Deferred[Any] = Deferred()
        h = self.harness(FakeDaemon({"logs": lambda words: held if words[-1] == "b" else ok([])}))
        d = h.run(planned("logs", "-f", "a", "b"))
        h.flush()
        held.callback([ok([]), event({"type": "log", "name": "a", "line": "early"})])
        h.flush()
        self.assertEqual(h.out.getvalue(), "a | early\n")
        h.daemon.sendEvent({"type": "log", "name": "b", "line": "hi"})
        h.daemon.sendEvent({"type": "log_end", "name": "a"})
        h.flush()
        self.assertNoResult(d)
        h.daemon.sendEvent({"type": "log_end", "name": "b"})
        h.flush()
        self.assertEqual(self.successResultOf(d), 0)
        self.assertEqual(h.out.getvalue(), "a | early\nb | hi\n")

    def test_commandHelp(self: Any) -> None:
        """
        C{pycm stop --help} sends C{help stop}; the usage says C{NAME...},
        as the client takes several names.
        """
        h = self.harness(FakeDaemon({"help": ok({"name": "stop", "usage": "stop NAME",
                                            "summary": "stop it", "aliases": []})}))
        self.assertEqual(self.successResultOf(h.run(planned("stop", "--help"))), 0)
        self.assertEqual(h.daemon.received, ["help stop"])
        self.assertEqual(h.out.getvalue().splitlines()[:2], ["usage: stop NAME...", "  stop it"])


class OneShotHabitsReactorTests(OneShotHabitsTestsMixin, SynchronousTestCase):
    """L{OneShotHabitsTestsMixin} in the reactor."""

    harness = Harness


class OneShotHabitsFastTests(OneShotHabitsTestsMixin, SynchronousTestCase):
    """L{OneShotHabitsTestsMixin} on the fast path (no reactor)."""

    harness = FastHarness


class UnreachableJSONTests(SynchronousTestCase):
    """Errors before any request, as JSON."""

    def test_jsonUnreachable(self) -> None:
        """With C{--json}, an unreachable daemon is a JSON error too."""
        reactor = MemoryReactorClock()
        out, err = io.StringIO(), io.StringIO()
        d = ensureDeferred(cli.run(reactor, planned("ping", json=True), out, err))
        ConnectionCompleter(reactor).failOnce()
        self.assertEqual(self.successResultOf(d), 3)
        self.assertEqual(json.loads(err.getvalue())["error"], "unreachable")


class PipedJSONTests(SynchronousTestCase):
    """Piped requests with C{--json} pass the daemon's lines through."""

    def test_unchanged(self) -> None:
        """OK and EVENT lines are written exactly as the daemon sent them."""
        from .test_client_cli import FakeStdio

        raw = '{"a":1,  "b":"caf\\u00e9"}'
        daemon = FakeDaemon({"inspect": ["EVENT " + raw, "OK " + raw]})
        h = Harness(daemon)
        stdio = FakeStdio()

        def attach(protocol: cli.PipedRequests) -> None:
            stdio.protocol = protocol
            protocol.makeConnection(stdio)

        d = h.run(options(json=True), attachStdio=attach)
        stdio.protocol.dataReceived(b"inspect web\n")
        h.flush()
        stdio.protocol.readConnectionLost()
        h.flush()
        self.assertEqual(self.successResultOf(d), 0)
        self.assertEqual(stdio.value().decode(), f"EVENT {raw}\nOK {raw}\n")


class Terminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def pull(layer: str, status: str, image: str = "busybox:latest") -> str:
    detail = " ".join(part for part in (image, layer, status) if part)
    return event({"type": "progress", "action": "pull", "name": "web", "detail": detail,
                  "time": "t", "image": image, "layer": layer, "status": status})


class PullProgressTestsMixin:
    """
    A one-shot C{run} shows an image pull's progress on a terminal, on
    either path.
    """

    harness: Callable[..., Any]

    def daemon(self: Any) -> FakeDaemon:
        """A daemon that pulls for C{run}: progress to a subscriber only."""
        subscribed: list[bool] = []

        def events(words: list[str]) -> str:
            subscribed.append(True)
            return ok({"events": True, "last_id": 3})

        def run(words: list[str]) -> list[str]:
            progress = [
                pull("", "Pulling from library/busybox"),
                pull("9ad63333ebc9", "Pulling fs layer"),
                pull("9ad63333ebc9", "Downloading"),
                pull("0123456789ab", "Pulling fs layer"),
                pull("9ad63333ebc9", "Pull complete"),
            ]
            return [*(progress if subscribed else []), ok(WEB)]

        return FakeDaemon({"events": events, "run": run})

    def test_terminal(self: Any) -> None:
        """
        On a terminal: the client asks for this container's pull events,
        draws one line per layer and redraws them in place (cursor up,
        erase line) as each changes; the reply follows on stdout.
        """
        h = self.harness(self.daemon())
        h.err = Terminal()
        d = h.run(planned("run", "-d", "web", "busybox"))
        h.flush()
        self.assertEqual(self.successResultOf(d), 0)
        self.assertEqual(h.daemon.received[0],
                         "events --filter action=pull --filter name=web")
        self.assertEqual(h.daemon.received[1], "run web busybox")
        self.assertEqual(h.out.getvalue(), "web  running  pid 4242\n")
        screen = h.err.getvalue()
        self.assertIn("\x1b[3A", screen)
        # What the terminal shows in the end: the last drawing.
        last = screen.rsplit("\x1b[3A", 1)[1]
        self.assertEqual(
            [line.split("\x1b[2K")[-1] for line in last.split("\n")[:-1]],
            ["busybox:latest: Pulling from library/busybox",
             "9ad63333ebc9: Pull complete", "0123456789ab: Pulling fs layer"],
        )

    def test_piped(self: Any) -> None:
        """Not on a terminal: no events asked for, nothing but the reply."""
        h = self.harness(self.daemon())
        d = h.run(planned("run", "web", "busybox"))
        h.flush()
        self.assertEqual(self.successResultOf(d), 0)
        self.assertEqual(h.daemon.received, ["run web busybox"])
        self.assertEqual(h.err.getvalue(), "")
        self.assertEqual(h.out.getvalue(), "web  running  pid 4242\n")

    def test_onlyDetail(self: Any) -> None:
        """A progress event with only a detail still draws, a line of its own."""
        progress = fmt.PullProgress()
        self.assertEqual(progress.update({"detail": "busybox a Downloading"}),
                         "\r\x1b[2Kbusybox a Downloading\n")

    def test_cutToTheTerminal(self: Any) -> None:
        """
        A line wider than the terminal is cut to leave its last column
        free: wrapped onto two rows, it would throw out the count of rows
        the next redraw moves up.
        """
        progress = fmt.PullProgress(columns=20)
        progress.update({"image": "registry.example:5000/busybox:latest", "layer": "",
                         "status": "Digest: sha256:0123456789abcdef"})
        self.assertEqual(
            progress.update({"image": "busybox", "layer": "9ad63333ebc9",
                             "status": "Pull complete"}),
            "\x1b[1A\r\x1b[2Kregistry.example:50\n\r\x1b[2K9ad63333ebc9: Pull \n",
        )


class PullProgressReactorTests(PullProgressTestsMixin, SynchronousTestCase):
    """L{PullProgressTestsMixin} in the reactor."""

    harness = Harness


class PullProgressFastTests(PullProgressTestsMixin, SynchronousTestCase):
    """L{PullProgressTestsMixin} on the fast path (no reactor)."""

    harness = FastHarness
