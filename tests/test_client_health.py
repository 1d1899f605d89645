"""
Tests for L{pycm.client.health}: containers' health as C{pycm ls},
C{inspect}, C{--format}, C{events} and C{wait} show it.
"""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from pycm.client import format as fmt
from pycm.client.health import healthLines, healthSuffix, resultLine, stateText
from pycm.client.template import Template
from pycm.client.testing import FakeDaemon, ok
from tests.test_client_cli import NOW, WEB, FastHarness, options

RESULT = {"start": "2026-12-01T00:00:00.000Z", "end": "2026-12-01T00:00:00.250Z",
          "exit_code": 0, "output": "accepting\nconnections\n"}
HEALTHY = {"status": "healthy", "failing_streak": 0, "log": [RESULT]}


def container(state: str = "running", health: Any = None) -> dict[str, Any]:
    return dict(WEB, state=state, health=health)


class StateTextTests(SynchronousTestCase):
    """The state with its health, as C{docker ps} writes it."""

    def test_running(self) -> None:
        """A running container: C{(healthy)}, C{(unhealthy)}, C{(health: starting)}."""
        self.assertEqual(stateText(container(health=HEALTHY)), "running (healthy)")
        self.assertEqual(stateText(container(health=dict(HEALTHY, status="unhealthy"))),
                         "running (unhealthy)")
        self.assertEqual(stateText(container(health=dict(HEALTHY, status="starting"))),
                         "running (health: starting)")

    def test_noCheck(self) -> None:
        """No health check (C{null}, or an old daemon without the field): the bare state."""
        self.assertEqual(stateText(container()), "running")
        self.assertEqual(stateText({"state": "running"}), "running")
        self.assertEqual(healthSuffix(None), "")

    def test_notRunning(self) -> None:
        """A container that is not running shows no (stale) health."""
        self.assertEqual(stateText(container("exited", HEALTHY)), "exited")

    def test_replyString(self) -> None:
        """An apply or wait reply's C{health} is the status itself."""
        self.assertEqual(stateText({"state": "running", "health": "healthy"}),
                         "running (healthy)")


class DisplayTests(SynchronousTestCase):
    """Where the health shows."""

    def test_listTable(self) -> None:
        """C{pycm ls}'s STATE column has the health after the state."""
        lines = fmt.containerTable([container(health=HEALTHY),
                                    dict(container(), name="db")], NOW)
        self.assertTrue(lines[1].startswith("web    running (healthy)   host"), lines)
        self.assertTrue(lines[2].startswith("db     running             host"), lines)

    def test_containerLine(self) -> None:
        """The line for a container a command acted on has it too."""
        self.assertEqual(fmt.containerLine(container(health=HEALTHY)),
                         "web  running (healthy)  pid 4242")

    def test_inspect(self) -> None:
        """
        C{inspect} shows the status, the failing streak and the last
        results (when each ended, its exit code, its output on one line).
        """
        lines = fmt.containerDetail(container(health=dict(HEALTHY, log=[
            RESULT, dict(RESULT, exit_code=-1, output="timed out after 1s")])))
        start = lines.index("health:")
        self.assertEqual(lines[start:], [
            "health:",
            "  status:         healthy",
            "  failing_streak: 0",
            "  log:",
            '    2026-12-01T00:00:00.250Z  exit 0  "accepting connections"',
            '    2026-12-01T00:00:00.250Z  timed out  "timed out after 1s"',
        ])

    def test_inspectNoCheck(self) -> None:
        """Without a health check, C{health: -} stays among the fields."""
        self.assertIn("health:         -", fmt.containerDetail(container()))

    def test_longOutput(self) -> None:
        """A long output is cut on its line (C{--json} has it whole)."""
        line = resultLine(dict(RESULT, output="x" * 500))
        self.assertLess(len(line), 120)
        self.assertTrue(line.endswith('\N{HORIZONTAL ELLIPSIS}"'))

    def test_healthLinesEmptyLog(self) -> None:
        """A check that has not run yet has no log lines."""
        self.assertEqual(healthLines({"status": "starting", "failing_streak": 0, "log": []}),
                         ["health:", "  status:         starting", "  failing_streak: 0"])

    def test_template(self) -> None:
        """C{--format} knows C{{{.Health}}} (empty without a check) and C{{{.Status}}}."""
        template = Template.parse("{{.Name}} {{.Health}}|{{.Status}}")
        self.assertEqual(template.render(container(health=HEALTHY)),
                         "web healthy|running (healthy)")
        self.assertEqual(template.render(container()), "web |running")

    def test_event(self) -> None:
        """A C{health_status} event says the new status."""
        self.assertEqual(fmt.formatEvent({"type": "container", "id": 9, "time": "T",
                                          "name": "web", "action": "health_status",
                                          "status": "unhealthy"}),
                         "T  #9  web  health_status: unhealthy")

    def test_wait(self) -> None:
        """C{wait --for=healthy}'s reply says the health."""
        self.assertEqual(fmt.formatWait({"name": "web", "state": "running",
                                         "health": "healthy"}),
                         "web: running, healthy")
        self.assertEqual(fmt.formatWait({"name": "web", "state": "exited", "exit_code": 0,
                                         "health": None}),
                         "web: exited, exit code 0")

    def test_waitCommand(self) -> None:
        """C{pycm wait --for=healthy web} sends the condition and prints the reply."""
        h = FastHarness(FakeDaemon({"wait": ok({"name": "web", "state": "running",
                                                "exit_code": None, "health": "healthy"})}))
        self.assertEqual(self.successResultOf(h.run(options("wait", "--for=healthy",
                                                            "web"))), 0)
        self.assertEqual(h.daemon.received, ["wait --for=healthy web"])
        self.assertEqual(h.out.getvalue(), "web: running, healthy\n")
