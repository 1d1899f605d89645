"""
Tests for what the client does with containers that run as several tasks
(the swarm backend's): C{scale}, C{run --replicas/--constraint}, the
REPLICAS column, C{inspect}'s tasks, log lines and events tagged with a
task and a node (L{pycm.client.services}, L{pycm.client.format},
L{pycm.client.plan}), on the client's fakes; and, end to end, the real
client against the real daemon on the memory backend, which cannot scale.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from pycm.client import arguments, completion, services
from pycm.client import format as fmt
from pycm.client.exits import UsageError
from pycm.client.plan import SCALE_USAGE, Plan, planCommand
from pycm.client.template import Template
from pycm.client.testing import FakeDaemon, ok
from pycm.model import formatTime
from tests.e2e import RealDaemon
from tests.test_client_cli import NOW, FakeStdio, FastHarness, Harness, attach, options
from tests.test_client_shell import ShellHarness

TASK_A = "k3v9q2m1x8b7n6c5z4a3s2d1f"
TASK_B = "p0o9i8u7y6t5r4e3w2q1a2s3d"

#: An environment with no state directory to find a token in (whatever
#: daemons this machine runs, the client sends no auth).
NO_STATE = {"HOME": "/nonexistent-home"}

WEB: dict[str, Any] = {
    "name": "web", "id": "svc1", "backend": "swarm", "image": "nginx",
    "command": [], "state": "running", "pid": None, "exit_code": None,
    "created": formatTime(NOW - 300), "started": formatTime(NOW - 300),
    "finished": None, "restart_policy": "no", "restart_count": 0, "labels": {},
    "replicas": {"running": 2, "desired": 3},
}
DB = dict(WEB, name="db", id="svc2", state="exited", replicas={"running": 0, "desired": 0})
PLAIN = {k: v for k, v in WEB.items() if k != "replicas"}
WEB_DETAIL = dict(
    WEB,
    tasks=[
        {"id": TASK_A, "node": "manager-1", "state": "running", "exit_code": None,
         "error": None},
        {"id": TASK_B, "node": None, "state": "pending", "exit_code": None,
         "error": "no suitable node (scheduling constraints not satisfied)"},
    ],
    constraints=["node.role==worker", "node.labels.zone==a"],
)


def logLine(line: str, task: str | None = None, node: str | None = None,
            stream: str = "stdout", time: str = "2026-11-30T21:00:00.000Z") -> dict[str, Any]:
    entry: dict[str, Any] = {"time": time, "stream": stream, "line": line}
    if task is not None:
        entry["task"] = task
    if node is not None:
        entry["node"] = node
    return entry


class ServiceFormatTests(SynchronousTestCase):
    """The text of replicas, tasks, tags and event details."""

    def test_replicasText(self) -> None:
        """C{2/3} for running/desired; None without replica counts."""
        self.assertEqual(services.replicasText(WEB), "2/3")
        self.assertEqual(services.replicasText(DB), "0/0")
        self.assertIsNone(services.replicasText(PLAIN))
        self.assertTrue(services.anyReplicas([PLAIN, WEB]))
        self.assertFalse(services.anyReplicas([PLAIN, "junk"]))

    def test_taskTag(self) -> None:
        """
        C{NAME.TASK@NODE} with the task id cut to 12 characters, or what
        the entry carries of it; None for an untagged entry.
        """
        self.assertEqual(services.taskTag("web", {"task": TASK_A, "node": "n1"}),
                         "web.k3v9q2m1x8b7@n1")
        self.assertEqual(services.taskTag("web", {"task": TASK_A}), "web.k3v9q2m1x8b7")
        self.assertEqual(services.taskTag("web", {"node": "n1"}), "web@n1")
        self.assertEqual(services.taskTag("", {"task": TASK_A, "node": "n1"}),
                         "k3v9q2m1x8b7@n1")
        self.assertIsNone(services.taskTag("web", {"line": "x"}))
        self.assertIsNone(services.taskTag("web", "x"))

    def test_listReplicasColumn(self) -> None:
        """
        With any container that has replica counts, C{list} has a REPLICAS
        column after STATE (C{2/3}, as C{docker service ls}); a container
        without has C{-} there, and the columns line up.
        """
        lines = fmt.containerTable([DB, WEB, dict(PLAIN, name="x")], NOW)
        header = lines[0].split()
        self.assertEqual(header, ["NAME", "STATE", "REPLICAS", *fmt.TABLE_COLUMNS[2:]])
        start = lines[0].index("REPLICAS")
        self.assertEqual(lines[1][start:].split()[0], "0/0")
        self.assertEqual(lines[2][start:].split()[0], "2/3")
        self.assertEqual(lines[3][start:].split()[0], "-")
        image = lines[0].index("IMAGE")
        self.assertEqual(lines[2][image:image + 5], "nginx")

    def test_listUnchangedWithoutReplicas(self) -> None:
        """Without replica counts anywhere, the table is what it always was."""
        lines = fmt.containerTable([PLAIN], NOW)
        self.assertEqual(lines[0].split(), list(fmt.TABLE_COLUMNS))
        self.assertNotIn("REPLICAS", "\n".join(fmt.containerTable([], NOW)))

    def test_inspectShowsTasks(self) -> None:
        """
        C{inspect} shows the replica counts as C{2/3}, the constraints, and
        the tasks last as a table (whole ids, C{-} for what is unknown).
        """
        lines = fmt.formatReply("inspect", WEB_DETAIL, NOW)
        self.assertIn("replicas:       2/3", lines)
        self.assertIn("constraints:    node.role==worker node.labels.zone==a", lines)
        tasks = lines.index("tasks:")
        self.assertEqual(tasks, len(lines) - 4)
        self.assertEqual(lines[tasks + 1].split(), ["ID", "NODE", "STATE", "EXIT", "ERROR"])
        self.assertEqual(lines[tasks + 2].split(), [TASK_A, "manager-1", "running", "-", "-"])
        self.assertEqual(
            lines[tasks + 3].split()[:5],
            [TASK_B, "-", "pending", "-", "no"],
        )
        self.assertTrue(lines[tasks + 3].endswith("(scheduling constraints not satisfied)"))
        self.assertTrue(lines[tasks + 1].startswith("  ID"))

    def test_inspectWithoutTasks(self) -> None:
        """No tasks (scaled to 0): C{tasks: []}; a plain container is unchanged."""
        lines = fmt.formatReply("inspect", dict(DB, tasks=[], constraints=[]), NOW)
        self.assertIn("tasks:          []", lines)
        self.assertIn("replicas:       0/0", lines)
        self.assertEqual(fmt.formatReply("inspect", PLAIN, NOW), fmt.keyValues(PLAIN))

    def test_containerLine(self) -> None:
        """A command's reply (C{run}, C{scale}) says the replica counts."""
        self.assertEqual(fmt.containerLine(WEB), "web  running  replicas 2/3")
        self.assertEqual(fmt.formatReply("scale", DB, NOW), ["db  exited  replicas 0/0"])
        self.assertEqual(fmt.containerLine(dict(PLAIN, pid=7)), "web  running  pid 7")

    def test_templateReplicas(self) -> None:
        """C{--format '{{.Replicas}}'}: C{2/3}, or nothing without counts."""
        template = Template.parse("{{.Name}} {{.Replicas}}")
        self.assertEqual(template.render(WEB), "web 2/3")
        self.assertEqual(template.render(PLAIN), "web ")

    def test_events(self) -> None:
        """
        An event says its task and node after the action (the task id cut
        short), C{scale} its new count; an event without them is unchanged.
        """
        base = {"type": "container", "id": 9, "name": "web", "time": "T"}
        self.assertEqual(
            fmt.formatEvent(dict(base, action="die", exit_code=1, task=TASK_A, node="w1")),
            "T  #9  web  die (exit code 1)  task k3v9q2m1x8b7 on w1",
        )
        self.assertEqual(fmt.formatEvent(dict(base, action="scale", replicas=5)),
                         "T  #9  web  scale (5 replicas)")
        self.assertEqual(fmt.formatEvent(dict(base, action="scale", replicas=1)),
                         "T  #9  web  scale (1 replica)")
        self.assertEqual(fmt.formatEvent(dict(base, action="scale", replicas=0)),
                         "T  #9  web  scale (0 replicas)")
        self.assertEqual(fmt.formatEvent(dict(base, action="start", node="w1")),
                         "T  #9  web  start  on w1")
        self.assertEqual(fmt.formatEvent(dict(base, action="update")), "T  #9  web  update")

    def test_logEvent(self) -> None:
        """A followed log line tagged with its task and node is prefixed with both."""
        self.assertEqual(
            fmt.formatEvent({"type": "log", "name": "web", "line": "hi", "task": TASK_A,
                             "node": "w1"}),
            "web.k3v9q2m1x8b7@w1 | hi",
        )
        self.assertEqual(fmt.formatEvent({"type": "log", "name": "web", "line": "hi"}),
                         "web | hi")

    def test_logPrefixesWiden(self) -> None:
        """
        Tagged lines' prefixes are padded to the widest so far, so the bars
        line up; untagged lines of one container have none.
        """
        prefixes = fmt.LogPrefixes(())
        entries = [logLine("a", TASK_A, "n1"), logLine("b", TASK_B, "node-22")]
        prefixes.widen("web", entries)
        self.assertEqual(
            [fmt.formatLogEntry(e, "web", prefixes) for e in entries],
            ["web.k3v9q2m1x8b7@n1      | a", "web.p0o9i8u7y6t5@node-22 | b"],
        )
        self.assertEqual(fmt.formatLogEntry(logLine("c"), "web", prefixes), "c")
        self.assertEqual(fmt.formatReply("logs", entries[:1], NOW, ["logs", "web"]),
                         ["web.k3v9q2m1x8b7@n1 | a"])


class CommandHelpNotesTests(SynchronousTestCase):
    """
    A command's C{help} (C{pycm run --help}) says what the swarm options and
    C{scale}'s forms mean, where the daemon's usage line only names them.
    """

    def help(self, name: str) -> str:
        return "\n".join(fmt.formatHelp({"name": name, "usage": f"{name} NAME", "summary": "s"}))

    def test_runAndCreateTellReplicasAndConstraint(self) -> None:
        """
        C{run} and C{create} tell C{--replicas} (its default, 1) and
        C{--constraint} (Swarm's placement syntax, repeatable), as the swarm
        backend's alone.
        """
        for name in ("run", "create"):
            text = self.help(name)
            usage = f"usage: {name} [--env-file=FILE]... NAME\n  s\n"
            self.assertTrue(text.startswith(usage), text)
            self.assertIn("swarm backend only", text)
            self.assertIn("--replicas=N", text)
            self.assertIn("[default: 1]", text)
            self.assertIn("--constraint=EXPR", text)
            self.assertIn("node.role==worker", text)
            self.assertIn("repeatable", text)

    def test_scaleTellsItsFormsZeroAndWhenItReplies(self) -> None:
        """
        C{scale} tells the C{NAME=N} form, that 0 stops every copy but keeps
        the container, and that the reply comes once that many run.
        """
        text = self.help("scale")
        self.assertIn("swarm backend only", text)
        self.assertIn("scale NAME=N...", text)
        self.assertIn("N may be 0: every copy stops", text)
        self.assertIn("is kept", text)
        self.assertIn("The reply comes once N copies run", text)

    def test_otherCommandsUnchanged(self) -> None:
        """A command with nothing to add shows the daemon's usage alone."""
        self.assertEqual(self.help("inspect"), "usage: inspect NAME\n  s")


class PlanTests(SynchronousTestCase):
    """What C{scale}, C{--replicas} and C{--constraint} send."""

    def test_scale(self) -> None:
        """C{scale NAME N} is sent as it is."""
        self.assertEqual(planCommand(["scale", "web", "3"]),
                         Plan("scale", (("scale", "web", "3"),)))
        # The daemon judges the count, and says why it will not do.
        self.assertEqual(planCommand(["scale", "web", "-1"]).requests,
                         (("scale", "web", "-1"),))

    def test_scaleDockerForm(self) -> None:
        """C{scale NAME=N...}, as C{docker service scale}: one request a name."""
        self.assertEqual(planCommand(["scale", "web=3", "db=0"]).requests,
                         (("scale", "web", "3"), ("scale", "db", "0")))

    def test_scaleUsage(self) -> None:
        """
        A C{scale} without its NAME and N is a usage error of the client's
        (exit status 2), saying what scale takes; C{scale --help} asks the
        daemon for its usage.
        """
        for words in (["scale"], ["scale", "web"], ["scale", "web", "3", "4"],
                      ["scale", "web=3", "db"], ["scale", "=3"]):
            with self.assertRaises(UsageError) as raised:
                arguments.parseArguments(words, environ=NO_STATE, uid=1000)
            self.assertEqual(str(raised.exception), SCALE_USAGE, words)
        self.assertEqual(planCommand(["scale", "--help"]).requests, (("help", "scale"),))

    def test_runReplicasConstraint(self) -> None:
        """
        C{--replicas} and C{--constraint} take the next word as their value
        (from the client's own copy of the daemon's options), so the
        container's name is the word after them.
        """
        words = ["run", "--replicas", "3", "--constraint", "node.role==worker",
                 "--constraint=node.labels.zone==a", "-d", "web", "nginx"]
        plan = planCommand(words)
        self.assertEqual(plan.names, ("web",))
        self.assertEqual(plan.requests, (tuple(w for w in words if w != "-d"),))
        self.assertEqual(planCommand(["create", "--constraint", "x==y", "db"]).names, ("db",))

    def test_helpAndCompletion(self) -> None:
        """
        C{pycm --help} shows C{scale} and the swarm options; the completion
        scripts offer C{scale} (with names) and C{--replicas}, C{--constraint}
        (taking values) on C{run} and C{create}.
        """
        epilog = arguments.EPILOG
        self.assertIn("scale NAME N", epilog)
        self.assertIn("--replicas=N, --constraint=EXPR", epilog)
        byName = {c.name: c for c in completion.commandTable()}
        self.assertTrue(byName["scale"].names)
        for command in ("run", "create"):
            for option in ("--replicas", "--constraint"):
                self.assertIn(option, byName[command].valueOptions)
        self.assertIn("scale)", completion.completionScript("bash"))
        self.assertIn("-a scale", completion.completionScript("fish"))


SCALED = dict(WEB, replicas={"running": 5, "desired": 5})
REFUSED = ("ERR bad_request the memory backend cannot scale "
           "(scale needs a backend such as swarm)")


class OneShotSwarmTestsMixin:
    """The one-shot command line, on either path (the subclasses say which)."""

    harness: Any

    def test_scale(self: Any) -> None:
        """C{pycm scale web 5} sends it and says the new counts."""
        h = self.harness(FakeDaemon({"scale": ok(SCALED)}))
        d = h.run(arguments.parseArguments(["scale", "web", "5"], environ=NO_STATE, uid=1000))
        self.assertEqual(self.successResultOf(d), 0)
        self.assertEqual(h.daemon.received, ["scale web 5"])
        self.assertEqual(h.out.getvalue(), "web  running  replicas 5/5\n")

    def test_scaleSeveral(self: Any) -> None:
        """C{pycm scale web=5 db=0}: one request each, in order."""
        h = self.harness(FakeDaemon({"scale": lambda words: ok(
            SCALED if words[1] == "web" else DB)}))
        d = h.run(arguments.parseArguments(["scale", "web=5", "db=0"], environ=NO_STATE, uid=1000))
        self.assertEqual(self.successResultOf(d), 0)
        self.assertEqual(h.daemon.received, ["scale web 5", "scale db 0"])
        self.assertEqual(h.out.getvalue().splitlines(),
                         ["web  running  replicas 5/5", "db  exited  replicas 0/0"])

    def test_scaleRefused(self: Any) -> None:
        """A backend that cannot scale: the daemon's reason, exit status 2."""
        h = self.harness(FakeDaemon({"scale": REFUSED}))
        d = h.run(arguments.parseArguments(["scale", "web", "5"], environ=NO_STATE, uid=1000))
        self.assertEqual(self.successResultOf(d), 2)
        self.assertEqual(h.out.getvalue(), "")
        self.assertIn("Error: bad_request: the memory backend cannot scale "
                      "(scale needs a backend such as swarm)", h.err.getvalue())

    def test_listReplicas(self: Any) -> None:
        """C{pycm ls} shows REPLICAS when the daemon's containers have them."""
        h = self.harness(FakeDaemon({"ps": ok([DB, WEB])}))
        self.successResultOf(h.run(options("ps")))
        lines = h.out.getvalue().splitlines()
        self.assertEqual(lines[0].split()[:4], ["NAME", "STATE", "REPLICAS", "IMAGE"])
        self.assertEqual(lines[2].split()[:3], ["web", "running", "2/3"])

    def test_inspectTasks(self: Any) -> None:
        """C{pycm inspect} lists the tasks; C{--json} gives the daemon's JSON."""
        h = self.harness(FakeDaemon({"inspect": ok(WEB_DETAIL)}))
        self.successResultOf(h.run(options("inspect", "web")))
        self.assertIn(f"  {TASK_A}   manager-1   running", h.out.getvalue())
        h = self.harness(FakeDaemon({"inspect": ok(WEB_DETAIL)}))
        self.successResultOf(h.run(options("inspect", "web", json=True)))
        self.assertEqual(json.loads(h.out.getvalue()), WEB_DETAIL)

    def test_logsTagged(self: Any) -> None:
        """
        C{pycm logs web}: each tagged line prefixed C{web.TASK@NODE | },
        padded alike, stderr's lines on stderr; untagged lines bare.
        """
        lines = [logLine("one", TASK_A, "n1"), logLine("two", TASK_B, "node-22", "stderr"),
                 logLine("three")]
        h = self.harness(FakeDaemon({"logs": ok(lines)}))
        self.assertEqual(self.successResultOf(h.run(options("logs", "web"))), 0)
        self.assertEqual(h.out.getvalue(), "web.k3v9q2m1x8b7@n1      | one\nthree\n")
        self.assertEqual(h.err.getvalue(), "web.p0o9i8u7y6t5@node-22 | two\n")

    def test_logsTaggedTimestamps(self: Any) -> None:
        """C{logs -t}: the time after the prefix, as C{docker service logs -t}."""
        h = self.harness(FakeDaemon({"logs": ok([logLine("one", TASK_A, "n1")])}))
        self.successResultOf(h.run(arguments.parseArguments(["logs", "-t", "web"],
                                                            environ=NO_STATE, uid=1000)))
        self.assertEqual(h.out.getvalue(),
                         "web.k3v9q2m1x8b7@n1 | 2026-11-30T21:00:00.000Z one\n")

    def test_logsSeveralTagged(self: Any) -> None:
        """Several containers: tagged lines by their tag, others by name."""
        daemon = FakeDaemon({"logs": lambda words: ok(
            [logLine("w", TASK_A, "n1", time="2026-11-30T21:00:01.000Z")]
            if words[-1] == "web" else [logLine("d")])})
        h = self.harness(daemon)
        self.successResultOf(h.run(arguments.parseArguments(["logs", "web", "db"],
                                                            environ=NO_STATE, uid=1000)))
        self.assertEqual(h.out.getvalue(), "db                  | d\n"
                                           "web.k3v9q2m1x8b7@n1 | w\n")

    def test_logsFollowTagged(self: Any) -> None:
        """C{logs --follow}: the backlog and each new line with its tag."""
        held: Deferred[Any] = Deferred()
        h = self.harness(FakeDaemon({"logs": lambda words: held}))
        d = h.run(options("logs", "--follow", "web"))
        held.callback([ok([logLine("old", TASK_A, "n1")])])
        h.flush()
        h.daemon.sendEvent(dict(logLine("new", TASK_B, "node-22"), type="log", name="web"))
        h.daemon.sendEvent({"type": "log_end", "name": "web"})
        h.flush()
        self.assertEqual(self.successResultOf(d), 0)
        self.assertEqual(h.out.getvalue().splitlines(), [
            "web.k3v9q2m1x8b7@n1 | old",
            "web.p0o9i8u7y6t5@node-22 | new",
        ])

    def test_events(self: Any) -> None:
        """C{pycm events} prints each event's task, node and replica count."""
        h = self.harness(FakeDaemon({"events": ok({"events": True, "last_id": 4})}))
        d = h.run(options("events"))
        h.daemon.sendEvent({"type": "container", "id": 5, "action": "die", "name": "web",
                            "time": "T", "exit_code": 1, "task": TASK_A, "node": "w1"})
        h.daemon.sendEvent({"type": "container", "id": 6, "action": "scale",
                            "name": "web", "time": "T", "replicas": 5})
        h.flush()
        self.assertEqual(h.out.getvalue().splitlines(), [
            "T  #5  web  die (exit code 1)  task k3v9q2m1x8b7 on w1",
            "T  #6  web  scale (5 replicas)",
        ])
        h.daemon.disconnect()
        h.flush()
        self.assertEqual(self.successResultOf(d), 3)


class OneShotSwarmReactorTests(OneShotSwarmTestsMixin, SynchronousTestCase):
    """L{OneShotSwarmTestsMixin} in the reactor."""

    harness = Harness


class OneShotSwarmFastTests(OneShotSwarmTestsMixin, SynchronousTestCase):
    """L{OneShotSwarmTestsMixin} on the fast path (no reactor)."""

    harness = FastHarness


class PipedSwarmTests(SynchronousTestCase):
    """Piped requests: the same output as one-shot commands."""

    def test_scaleAndLogs(self) -> None:
        """
        Piped C{scale} prints the counts; piped C{logs web} prefixes tagged
        lines with the container's name too.
        """
        daemon = FakeDaemon({"scale": ok(SCALED), "logs": ok([logLine("hi", TASK_A, "n1")])})
        h = Harness(daemon)
        stdio = FakeStdio()
        d = h.run(options(), attachStdio=attach(stdio))
        stdio.protocol.dataReceived(b"scale web 5\nlogs 'web'\n")
        stdio.protocol.readConnectionLost()
        h.flush()
        self.assertEqual(self.successResultOf(d), 0)
        self.assertEqual(stdio.value().decode().splitlines(),
                         ["web  running  replicas 5/5", "web.k3v9q2m1x8b7@n1 | hi"])


class ShellSwarmTests(SynchronousTestCase):
    """The interactive shell."""

    def test_scale(self) -> None:
        """C{scale web 5} and C{scale web=5 db=0} are sent and their replies shown."""
        h = ShellHarness(FakeDaemon({"scale": lambda words: ok(
            SCALED if words[1] == "web" else DB)}))
        h.type(b"scale web 5\r")
        self.assertIn(b"web  running  replicas 5/5\r\n", h.screen())
        h.type(b"scale web=5 db=0\r")
        self.assertIn(b"web  running  replicas 5/5\r\ndb  exited  replicas 0/0\r\n",
                      h.screen())
        self.assertEqual(h.daemon.received, ["scale web 5", "scale web 5", "scale db 0"])

    def test_scaleUsage(self) -> None:
        """C{scale web} says what scale takes, and sends nothing."""
        h = ShellHarness()
        h.screen()
        h.type(b"scale web\r")
        self.assertIn(f"Error: {SCALE_USAGE}".encode(), h.screen())
        self.assertEqual(h.daemon.received, [])

    def test_tab(self) -> None:
        """
        Tab completes C{scale} and a container name after it, and offers
        C{--replicas} and C{--constraint} on C{run}.
        """
        h = ShellHarness(FakeDaemon({"list": ok([{"name": "web"}, {"name": "db"}])}))
        h.type(b"sc\t")
        self.assertEqual(h.typed(), b"scale ")
        h.type(b"w\t")
        self.assertEqual(h.typed(), b"scale web ")
        h.type(b"\x15run --rep\t--con\t")
        self.assertEqual(h.typed(), b"run --replicas --constraint ")

    def test_logsAndEvents(self) -> None:
        """Tagged log lines and events show their task and node."""
        h = ShellHarness(FakeDaemon({"logs": ok([logLine("hi", TASK_A, "n1")])}))
        h.screen()
        h.type(b"logs web\r")
        self.assertIn(b"web.k3v9q2m1x8b7@n1 | hi\r\n", h.screen())
        h.daemon.sendEvent({"type": "container", "id": 6, "action": "scale",
                            "name": "web", "time": "T", "replicas": 5})
        h.pump.flush()
        self.assertIn(b"T  #6  web  scale (5 replicas)\r\n", h.screen())


class ScaleE2ETests(SynchronousTestCase):
    """
    The real C{pycm} against the real daemon on the memory backend, which
    cannot scale nor place replicas: refused, saying why, exit status 2.
    """

    def setUp(self) -> None:
        self.daemon = RealDaemon(self, backend="memory").start()

    def test_scaleRefused(self) -> None:
        """
        C{pycm scale} is refused by a backend that cannot scale; C{run
        --replicas} and C{--constraint} are refused naming the option;
        C{pycm scale web} is the client's usage error; C{ls} has no REPLICAS.
        """
        self.assertEqual(self.daemon.pycm("run", "web").returncode, 0)
        result = self.daemon.pycm("scale", "web", "3")
        self.assertEqual(result.returncode, 2, result.stderr)
        self.assertIn(b"Error: bad_request: the memory backend cannot scale "
                      b"(scale needs a backend such as swarm)", result.stderr)
        for option in ("--replicas=3", "--constraint=node.role==worker"):
            result = self.daemon.pycm("run", option, "db")
            self.assertEqual(result.returncode, 2, result.stderr)
            self.assertIn(f"cannot honour {option.partition('=')[0]}".encode(),
                          result.stderr)
        result = self.daemon.pycm("scale", "web")
        self.assertEqual(result.returncode, 2)
        self.assertIn(SCALE_USAGE.encode(), result.stderr)
        result = self.daemon.pycm("ls")
        self.assertNotIn(b"REPLICAS", result.stdout)
        self.assertEqual(result.stdout.split()[:3], [b"NAME", b"STATE", b"IMAGE"])

    def test_help(self) -> None:
        """
        C{pycm scale --help} shows the daemon's usage of scale and what its
        forms mean; C{pycm run --help} what C{--replicas} means.
        """
        result = self.daemon.pycm("scale", "--help")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn(b"usage: scale NAME N", result.stdout)
        self.assertIn(b"scale NAME=N...", result.stdout)
        result = self.daemon.pycm("run", "--help")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn(b"[--replicas=N]", result.stdout)
        self.assertIn(b"how many copies (tasks) of it run", result.stdout)

