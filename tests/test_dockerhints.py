"""
Docker's options that pycm does not take are refused saying what to do
instead (L{pycm.daemon.requestline.DOCKER_HINTS}), as the README's
"Docker's habits" promises; other unknown options are refused plainly.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from pycm.testing.server import FakeServer


class HintTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.client = FakeServer().connect()

    def refusal(self, line: str) -> str:
        kind, (code, message) = self.client.request(line)
        self.assertEqual((kind, code), ("ERR", "bad_request"))
        return str(message)

    def test_runAndCreate(self) -> None:
        """Each of Docker's run options says what pycm does instead; nothing is made."""
        self.assertEqual(self.refusal("run --name foo web"),
                         "unknown option '--name': the name is the first word: "
                         "run NAME [IMAGE [COMMAND...]]")
        self.assertEqual(self.refusal("create --name=foo web"),
                         "unknown option '--name': the name is the first word: "
                         "create NAME [IMAGE [COMMAND...]]")
        self.assertEqual(self.refusal("run -m 64m web"), "unknown option '-m': write --memory")
        self.assertEqual(self.refusal("run -p 80:80 web"),
                         "unknown option '-p': pycm publishes no ports")
        self.assertEqual(self.refusal("run -v /a:/b web"),
                         "unknown option '-v': pycm mounts no volumes")
        self.assertEqual(self.refusal("run --rm web"),
                         "unknown option '--rm': pycm keeps a container until rm removes it")
        self.assertIn("attaches no terminal", self.refusal("run -it web"))
        self.assertIn("attaches no terminal", self.refusal("run -d -t web"))
        self.assertEqual(self.client.ok("list"), [])

    def test_inspectFormat(self) -> None:
        """C{inspect -f} says inspect shows the whole record."""
        self.assertIn("inspect shows the whole record", self.refusal("inspect -f x web"))

    def test_othersPlain(self) -> None:
        """
        An unknown option with no hint, or one whose letter means something
        else to Docker elsewhere (C{ps -v}), is refused plainly.
        """
        self.assertEqual(self.refusal("run --bogus web"), "unknown option '--bogus'")
        self.assertEqual(self.refusal("ps -v"), "unknown option '-v'")
        self.assertEqual(self.refusal("list --rm"), "unknown option '--rm'")
