"""
What README.md says that the code decides: kept equal by these tests, so a
change to one shows up as a failure until the other follows.
"""

from __future__ import annotations

import re
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

README = Path(__file__).resolve().parent.parent / "README.md"


def readme() -> str:
    """The README, its lines joined by single spaces."""
    return " ".join(README.read_text(encoding="utf-8").split())


class ReadmeTests(SynchronousTestCase):
    """README.md against the command table and C{twistd pycm --help}."""

    def test_logsListEveryRequestThatChangesAContainer(self) -> None:
        """
        The Logs section names exactly the commands logged to
        C{pycm.requests}: those of the command table marked C{changes}
        (C{scale} among them).
        """
        from pycm.daemon.commands import COMMANDS

        match = re.search(r"each request that changes a container \(([^)]*)\)", readme())
        assert match is not None
        listed = set(re.findall(r"`([a-z]+)`", match.group(1)))
        self.assertEqual(listed, {command.name for command in COMMANDS if command.changes})
        self.assertIn("scale", listed)

    def test_swarmNodeHostRepeatableOrCommaSeparated(self) -> None:
        """
        The README and C{twistd pycm --help} both say C{--swarm-node-host}
        is repeatable, or comma-separated.
        """
        from pycm.daemon.tap import Options

        text = readme()
        start = text.index("`--swarm-node-host NODE=ADDRESS`")
        self.assertIn("repeatable, or comma-separated", text[start : start + 200])
        help = " ".join(str(Options()).split())
        start = help.index("--swarm-node-host=")
        self.assertIn("repeatable, or comma-separated", help[start:])

    def test_oneDaemonPerEngineAndPerSwarm(self) -> None:
        """
        The docker and swarm sections each say to run one pycm daemon per
        engine (swarm), and what a second one would do.
        """
        text = readme()
        self.assertIn("Run one pycm daemon per engine", text)
        self.assertIn("Run one pycm daemon per swarm", text)
        self.assertIn("each list the other's containers", text)
        self.assertIn("each list the other's services", text)

    def test_swarmStartDoesNotCollideWithTheQuickStart(self) -> None:
        """
        The swarm section's start command has its own pidfile, log file,
        listener and state directory, none of the quick start's.
        """
        text = README.read_text(encoding="utf-8")
        section = text[text.index("## Running pycm in front of a Docker Swarm") :]
        command = section[section.index(".venv/bin/twistd") :]
        command = command[: command.index("```")]
        for flag in ("--pidfile pycm-swarm.pid", "--logfile pycm-swarm.log",
                     "--listen unix:", "--state-dir "):
            self.assertIn(flag, command)
        self.assertNotIn("pycm.pid", command.replace("pycm-swarm.pid", ""))
