"""
Piped requests take Docker's habits as the shell does
(L{pycm.client.piped}, L{pycm.client.plan}): a line is read as it would be
typed.
"""

from __future__ import annotations

import json
import os
import shlex
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from pycm.client.testing import FakeDaemon, ok
from tests.test_client_cli import Harness, pipeInto

WEB = {"name": "web", "state": "running", "image": "host", "command": ["sleep", "1"]}
#: A token as the daemon makes them (L{pycm.daemon.auth.newToken}).
TOKEN = "aHYWNXq3s0d9Vb2LkJ7cRtZ1mPxE4uGf8oWiYhNeS5A"
DB = {"name": "db", "state": "exited", "image": "host", "command": ["true"]}


class PipedHabitsTests(SynchronousTestCase):
    def piped(self, daemon: FakeDaemon, data: bytes, **kw: Any) -> tuple[Harness, str, int]:
        """Pipe C{data} in; what was printed, and the exit status."""
        return pipeInto(self, daemon, data, **kw)

    def servicesFile(self) -> str:
        """A services file of one service, in a directory named C{shop}."""
        directory = os.path.join(self.mktemp(), "shop")
        os.makedirs(directory)
        path = os.path.join(directory, "services.toml")
        with open(path, "w") as f:
            f.write('[services.web]\ncommand = ["sleep", "1"]\n')
        return path

    def test_listFormats(self) -> None:
        """C{ps -q} prints the names, C{ps --format} its template, C{ps -a} is dropped."""
        daemon = FakeDaemon({"ps": ok([WEB, DB])})
        _, out, status = self.piped(daemon, b"ps -q\nps -a --format '{{.Name}}={{.State}}'\n")
        self.assertEqual((out, status), ("web\ndb\nweb=running\ndb=exited\n", 0))
        self.assertEqual(daemon.received, ["ps", "ps"])

    def test_envFromHere(self) -> None:
        """C{run -e KEY} sends this process's KEY, and C{--env-file} the file's variables."""
        self.patch(os, "environ", {"KEY": "from here"})
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("A=1\n")
        daemon = FakeDaemon({"run": ok(WEB)})
        _, _, status = self.piped(daemon, f"run -e KEY web\nrun --env-file {path} web\n".encode())
        self.assertEqual(status, 0)
        self.assertEqual(daemon.received, ["run -e 'KEY=from here' web", "run -e A=1 web"])

    def test_severalNames(self) -> None:
        """C{stop web db} is a request a name, each reply printed, in order."""
        daemon = FakeDaemon({"stop": lambda words: ok(dict(WEB, name=words[-1],
                                                                state="exited"))})
        _, out, status = self.piped(daemon, b"stop -t 1 web db\nping\n")
        self.assertEqual(daemon.received, ["stop -t 1 web", "stop -t 1 db", "ping"])
        self.assertEqual([line.split()[0] for line in out.splitlines()], ["web", "db", "pong"])
        self.assertEqual(status, 0)

    def test_apply(self) -> None:
        """C{apply FILE} reads the services file here and sends its document."""
        path = self.servicesFile()
        daemon = FakeDaemon({"apply": ok({"project": "shop", "dry_run": False, "services": []})})
        _, out, status = self.piped(daemon, f"apply {path}\n".encode())
        self.assertEqual(status, 0)
        (sent,) = daemon.received
        document = json.loads(shlex.split(sent)[-1])
        self.assertEqual((document["project"], list(document["services"])), ("shop", ["web"]))
        self.assertIn("project shop", out)

    def test_usageErrorSaysWhichLine(self) -> None:
        """
        A usage error the client finds (a bad C{--format}, a file that
        cannot be read) is said with its line, that line is not sent, the
        others are, and the exit status is 2.
        """
        daemon = FakeDaemon({"ps": ok([WEB])})
        h, out, status = self.piped(
            daemon, b"ping\nps --format '{{.Nope}}'\nrun --env-file /nonexistent web\nps -q\n"
        )
        self.assertEqual((out, status), ("pong\nweb\n", 2))
        self.assertEqual(daemon.received, ["ping", "ps"])
        err = h.err.getvalue().splitlines()
        self.assertTrue(err[0].startswith("line 2 (ps): Error: bad --format: no field 'Nope'"),
                        err)
        self.assertTrue(err[1].startswith("line 3 (run): Error: /nonexistent: cannot read"), err)

    def test_asWrittenOtherwise(self) -> None:
        """
        A line the client does nothing to is sent exactly as written (its
        spacing and quoting too); one it cannot split is the daemon's to
        refuse.
        """
        daemon = FakeDaemon({"inspect": ok(WEB), "run": "ERR bad_request unbalanced quote"})
        _, _, status = self.piped(daemon, b"inspect   'web'\nrun 'web\n")
        self.assertEqual(daemon.received, ["inspect   'web'", "run 'web"])
        self.assertEqual(status, 2)

    def test_json(self) -> None:
        """
        With C{--json}, every line is sent as it is and the daemon's lines
        are printed as they came: one reply a line, a usage error the
        daemon's to say.
        """
        self.patch(os, "environ", {"KEY": "from here"})
        daemon = FakeDaemon({"ps": ok([WEB]), "run": "ERR bad_request bad --env 'KEY'"})
        _, out, status = self.piped(
            daemon, b"ps -q\nps --format '{{.Nope}}'\nrun -e KEY web\n", json=True
        )
        self.assertEqual(daemon.received, ["ps -q", "ps --format '{{.Nope}}'", "run -e KEY web"])
        self.assertEqual(out.splitlines(), ["OK " + json.dumps([WEB])] * 2
                         + ["ERR bad_request bad --env 'KEY'"])
        self.assertEqual(status, 2)

    def test_nothingAfterExit(self) -> None:
        """The lines after C{exit} are neither planned nor sent: no error for them."""
        daemon = FakeDaemon({})
        h, _, status = self.piped(daemon, b"ping\nexit\nps --format '{{.Nope}}'\nping\n")
        self.assertEqual((daemon.received, status, h.err.getvalue()), (["ping", "exit"], 0, ""))

    def test_applyWithoutOwnProgressId(self) -> None:
        """
        A piped C{apply} shows no progress, so it sends no C{--progress-id}
        of the client's own (which a daemon older than it refuses); one the
        user gave is kept.
        """
        path = self.servicesFile()
        daemon = FakeDaemon({"apply": ok({"project": "shop", "dry_run": False, "services": []})})
        self.piped(daemon, f"apply {path}\napply --progress-id=mine {path}\n".encode())
        first, second = daemon.received
        self.assertNotIn("--progress-id", first)
        self.assertIn("--progress-id=mine", second)


class PipedNameQuestionTests(SynchronousTestCase):
    """
    A bare C{run} or C{stop} takes the next line as its name, as the shell
    asks for it and as a script for the teaching client that pycm grew
    out of answers its "Enter container name:".
    """

    def test_nextLineIsTheName(self) -> None:
        daemon = FakeDaemon({"run": ok(WEB), "stop": ok(dict(WEB, state="exited")),
                             "list": ok([WEB])})
        h, _, status = pipeInto(self, daemon, b"run\nweb\nlist\nstop\nweb\nrun -e A=1\n db \n")
        self.assertEqual(daemon.received, ["run web", "list", "stop web", "run -e A=1 db"])
        self.assertEqual((status, h.err.getvalue()), (0, ""))

    def test_nameRequired(self) -> None:
        """An empty answer, or none before the input ends: refused here, the rest sent."""
        daemon = FakeDaemon({"list": ok([WEB])})
        h, _, status = pipeInto(self, daemon, b"run\n\nlist\nstop")
        self.assertEqual(daemon.received, ["list"])
        self.assertEqual(h.err.getvalue().splitlines(), [
            "line 2 (run): Container name required",
            "line 4 (stop): Container name required",
        ])
        self.assertEqual(status, 2)

    def test_authLineAsName(self) -> None:
        """
        An C{auth} line as a bare C{stop}'s name line is not sent as a name
        (the daemon's error would show it): refused here, without it, as
        a usage error; the rest is sent.
        """
        daemon = FakeDaemon({"stop": "ERR invalid_name invalid container name",
                             "list": ok([WEB])})
        h, out, status = pipeInto(self, daemon, f"stop\nauth {TOKEN}\nlist\n".encode())
        self.assertEqual(daemon.received, ["list"])
        self.assertEqual(h.err.getvalue().splitlines(), [
            "line 2 (stop): Error: that looks like an auth line, not a container name: "
            "not sent"])
        self.assertNotIn(TOKEN, out)
        self.assertEqual(status, 2)

    def test_knownTokenAsName(self) -> None:
        """The client's own token as a bare C{stop}'s name line is refused the same way."""
        daemon = FakeDaemon({"stop": ok({"name": "x"}), "list": ok([WEB])})
        h, out, status = pipeInto(self, daemon, f"stop\n{TOKEN}\nlist\n".encode(),
                                  token=TOKEN)
        self.assertEqual([line for line in daemon.received if not line.startswith("auth ")],
                         ["list"])
        self.assertIn("not a container name: not sent", h.err.getvalue())
        self.assertNotIn(TOKEN, out + h.err.getvalue())
        self.assertEqual(status, 2)

    def test_notAsked(self) -> None:
        """With a name, C{--help}, or C{--json} (lines as written), nothing is asked."""
        daemon = FakeDaemon({"run": "ERR bad_request run needs NAME", "help": ok({})})
        pipeInto(self, daemon, b"run --help\nstop -t 5 web\n")
        self.assertEqual(daemon.received, ["help run", "stop -t 5 web"])
        daemon = FakeDaemon({"run": "ERR bad_request run needs NAME", "help": ok({})})
        pipeInto(self, daemon, b"run\nweb\n", json=True)
        self.assertEqual(daemon.received, ["run", "web"])
