"""
A Hypothesis state machine over the whole daemon side: bytes in, through
the protocol and the command table, to the memory backend, and replies out,
checked against a model dict of containers.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from twisted.trial.unittest import SynchronousTestCase

from pycm.testing.server import FakeServer

NAMES = st.sampled_from(["web", "db", "cache", "w-1", "x.y"])
BAD_NAMES = st.sampled_from(["-x", "a", "_bad", "x" * 129, "sp ace"])


class ProtocolMachine(RuleBasedStateMachine):
    """Random request sequences must keep the daemon and the model agreeing."""

    def __init__(self) -> None:
        super().__init__()
        self.server = FakeServer()
        self.conn = self.server.connect()
        #: name -> state, as the contract says it must be.
        self.model: dict[str, str] = {}

    def expect(self, line: str, code: str | None) -> object:
        kind, value = self.conn.request(line)
        if code is None:
            assert kind == "OK", (line, value)
            return value
        assert (kind, value[0]) == ("ERR", code), (line, kind, value)
        return None

    @rule(name=NAMES, start=st.booleans())
    def create(self, name: str, start: bool) -> None:
        command = "run" if start else "create"
        if name in self.model:
            self.expect(f"{command} {name}", "conflict")
            return
        container = self.expect(f"{command} {name}", None)
        self.model[name] = "running" if start else "created"
        assert container["state"] == self.model[name]  # type: ignore[index]

    @rule(name=NAMES)
    def start(self, name: str) -> None:
        if name not in self.model:
            self.expect(f"start {name}", "not_found")
            return
        self.expect(f"start {name}", None)
        self.model[name] = "running"

    @rule(name=NAMES)
    def stop(self, name: str) -> None:
        if name not in self.model:
            self.expect(f"stop {name}", "not_found")
            return
        container = self.expect(f"stop {name}", None)
        if self.model[name] == "running":
            self.model[name] = "exited"
            assert container["exit_code"] == -15  # type: ignore[index]

    @rule(name=NAMES)
    def kill(self, name: str) -> None:
        if name not in self.model:
            self.expect(f"kill {name}", "not_found")
        elif self.model[name] != "running":
            self.expect(f"kill {name}", "conflict")
        else:
            self.expect(f"kill {name}", None)
            self.expect(f"wait {name}", None)
            self.model[name] = "exited"

    @rule(name=NAMES, force=st.booleans())
    def rm(self, name: str, force: bool) -> None:
        line = f"rm {'--force ' if force else ''}{name}"
        if name not in self.model:
            self.expect(line, "not_found")
        elif self.model[name] == "running" and not force:
            self.expect(line, "conflict")
        else:
            assert self.expect(line, None) == {"name": name, "removed": True}
            del self.model[name]

    @rule(name=BAD_NAMES, command=st.sampled_from(["run", "stop", "inspect", "rm"]))
    def badName(self, name: str, command: str) -> None:
        self.expect(f"{command} -- '{name}'", "invalid_name")

    @rule(data=st.binary(max_size=40))
    def garbage(self, data: bytes) -> None:
        """Any bytes without a newline or a guard word: one reply at most."""
        line = data.replace(b"\n", b" ")
        stripped = line.replace(b"\r", b"").strip()
        if line.upper().lstrip().startswith((b"GET", b"POST", b"PUT", b"HEAD", b"OPTIONS",
                                              b"DELETE", b"PATCH", b"CONNECT", b"TRACE",
                                              b"HOST:", b"EXIT", b"QUIT")):
            return
        if not stripped or stripped.startswith(b"#"):
            return
        words = stripped.split()
        if words and words[0].lower() in (b"run", b"create", b"start", b"stop", b"kill",
                                          b"rm", b"restart", b"auth", b"events",
                                          b"logs", b"wait"):
            return
        self.conn.send(line + b"\n")
        self.server.clock.advance(0)
        replies = self.conn.replies()
        assert len(replies) <= 1, replies
        assert not self.conn.closed

    @invariant()
    def listMatchesModel(self) -> None:
        listed = self.conn.ok("list")
        assert [c["name"] for c in listed] == sorted(self.model), (listed, self.model)
        assert {c["name"]: c["state"] for c in listed} == self.model


class ProtocolStateMachineTests(SynchronousTestCase):
    def test_machine(self) -> None:
        """The daemon agrees with the model over random request sequences."""
        machine = ProtocolMachine.TestCase
        machine.settings = settings(
            max_examples=60, stateful_step_count=30, deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        )
        machine().runTest()
