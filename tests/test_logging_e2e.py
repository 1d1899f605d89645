"""
End-to-end tests of the daemon's log file: the real C{twistd pycm}, real
sockets, the memory backend.  Thrown-away input and refusals leave a line
in it; no token or option value reaches it, even at C{--log-level debug}.
"""

from __future__ import annotations

import os

from twisted.trial.unittest import SynchronousTestCase

from .e2e import RealDaemon, waitFor

WRONG = "wr0ng-t0ken-tried"


class LogContentE2ETests(SynchronousTestCase):
    def test_thrownAwayInputLogged(self) -> None:
        """
        A client that sends no line end, one refused for want of a token and
        a wrong token each leave a line at info, with the peer; never the
        bytes sent or the token tried.
        """
        daemon = RealDaemon(self, auth=True).start()
        silent = daemon.connect()
        silent.send("run web")
        silent.close()
        refused = daemon.connect()
        self.assertEqual(refused.err("list"), "unauthorized")
        self.assertEqual(refused.err(f"auth {WRONG}"), "unauthorized")
        waitFor(lambda: "wrong token" in daemon.log(), "the failed auth in the log")
        waitFor(lambda: "unfinished line" in daemon.log(), "the thrown-away line in the log")
        log = daemon.log()
        self.assertIn("; 7 bytes of an unfinished line (no line end) discarded", log)
        self.assertIn("'list' refused: not authenticated", log)
        self.assertIn("wrong token (failed auth attempt 1 of 3)", log)
        self.assertNotIn(WRONG, log)
        self.assertNotIn("run web", log)

    def test_debugLogRedacted(self) -> None:
        """
        At C{--log-level debug} the log shows each request's command, option
        names and container, and never the token, a wrong token or an
        option's value.
        """
        daemon = RealDaemon(self, auth=True, args=["--log-level", "debug"]).start()
        with open(os.path.join(daemon.stateDir, "token")) as tokenFile:
            token = tokenFile.read().strip()
        client = daemon.connect()
        self.assertEqual(client.ok(f"auth {token}"), "authenticated")
        client.ok("run -e PASSWORD=hunter2 db host sleep 1000")
        self.assertEqual(client.err("run --cpus=hunter2 db2"), "bad_request")
        other = daemon.connect()
        self.assertEqual(other.err(f"auth {WRONG}"), "unauthorized")
        other.send(f"{token}\n")
        self.assertEqual(other.reply()[1][0], "bad_request")
        daemon.stop()
        log = daemon.log()
        self.assertIn("request: auth <redacted>", log)
        self.assertIn("request: run --env=<redacted> db host <redacted> <redacted>", log)
        self.assertIn("request: <unknown command,", log)
        for secret in (token, "hunter2", WRONG, "PASSWORD"):
            self.assertNotIn(secret, log)
