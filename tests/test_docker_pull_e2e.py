"""
End-to-end: a one-shot C{pycm run} of an image the engine does not have,
against the real C{twistd pycm --backend docker --pull missing} in front of
the test engine, pulling from the test registry: the pull's progress is
drawn on a terminal, and nothing of it shows when stderr is piped.

Needs C{PYCM_DOCKER_HOST} and C{PYCM_TEST_REGISTRY} (see
L{tests.test_docker_support}); skips without them, fails without them
under C{PYCM_REQUIRE_DOCKER=1}.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import uuid
from urllib.parse import urlencode

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from tests.e2e import DEADLINE, RealDaemon, Terminal, pycmCommand
from tests.test_docker_support import dockerCLIEnv, requireEngine, testImage, uniqueName

#: A layer's line as the client draws it: the engine's short id, a status.
LAYER_LINE = re.compile(rb"\r\x1b\[2K([0-9a-f]{12}): ([A-Za-z][^\r\n]*)\n")
#: Moving the cursor back up over the lines drawn before, to redraw them.
CURSOR_UP = re.compile(rb"\x1b\[[0-9]+A")
#: What the drawing is made of: a control sequence, or one character.
_PIECE = re.compile(r"\x1b\[([0-9]*)([A-Za-z])|(.)", re.DOTALL)
#: The terminal's size, as most are: lines longer than this wrap.
COLUMNS = 80


def screen(drawn: bytes, columns: int = COLUMNS) -> list[str]:
    """
    The rows a terminal C{columns} wide shows after C{drawn}, as an xterm
    draws what the client uses: carriage return, line feed, erase line
    (C{ESC [2K}), cursor up (C{ESC [NA}); a line longer than the terminal
    wraps onto the next row.
    """
    rows: list[list[str]] = [[]]
    row = column = 0
    for match in _PIECE.finditer(drawn.decode("utf-8", errors="replace")):
        count, command, char = match.groups()
        if command == "A":
            row = max(0, row - int(count or 1))
        elif command == "K":
            rows[row] = []
        elif command:
            raise AssertionError(f"unexpected control sequence {match.group()!r}")
        elif char == "\r":
            column = 0
        elif char == "\n":
            row += 1
        else:
            # The cursor stays in the last column until one more character.
            if column >= columns:
                row += 1
                column = 0
            while len(rows) <= row:
                rows.append([])
            line = rows[row]
            line.extend(" " * (column + 1 - len(line)))
            line[column] = char
            column += 1
        while len(rows) <= row:
            rows.append([])
    return ["".join(line).rstrip() for line in rows if "".join(line).strip()]


def requireRegistry() -> str:
    """
    The loopback registry of C{.ci/docker-setup.sh} (C{127.0.0.1:PORT}).

    @raise SkipTest: without one, unless C{PYCM_REQUIRE_DOCKER=1}.
    @raise AssertionError: without one under C{PYCM_REQUIRE_DOCKER=1}.
    """
    registry = os.environ.get("PYCM_TEST_REGISTRY", "")
    if not registry:
        if os.environ.get("PYCM_REQUIRE_DOCKER") == "1":
            raise AssertionError("PYCM_REQUIRE_DOCKER=1 but PYCM_TEST_REGISTRY is unset")
        raise SkipTest("PYCM_TEST_REGISTRY is not set (see .ci/docker-setup.sh)")
    return registry


class PullProgressE2ETests(SynchronousTestCase):
    """C{pycm run} of an image being pulled, on a terminal and piped."""

    def setUp(self) -> None:
        self.host = requireEngine()
        self.registry = requireRegistry()
        self.daemon = RealDaemon(
            self,
            backend="docker",
            args=[
                "--docker-host", self.host,
                "--default-image", testImage(),
                "--backend-option", "network=none",
                "--pull", "missing",
            ],
        ).start()

    def docker(self, *args: str) -> subprocess.CompletedProcess[bytes]:
        """Run the C{docker} CLI on the test engine; fail the test if it fails."""
        result = subprocess.run(
            ["docker", *args], env=dockerCLIEnv(self.host), capture_output=True,
            stdin=subprocess.DEVNULL, timeout=120,
        )
        self.assertEqual(result.returncode, 0, f"docker {args}: {result.stderr!r}")
        return result

    def imageOnlyInRegistry(self) -> str:
        """
        An image of a new name, with a layer of its own on top of the test
        image's, that the registry holds and the engine does not: its pull
        downloads a layer.
        """
        name = f"{self.registry}/pycm-test/progress-{uuid.uuid4().hex[:8]}:1"
        builder = uniqueName("layer")
        self.docker("run", "--name", builder, "--network", "none", testImage(),
                    "sh", "-c", f"echo {uuid.uuid4().hex} > /layer")
        self.commit(builder, name)
        self.docker("rm", builder)
        self.docker("push", name)
        self.docker("rmi", name)
        self.addCleanup(
            subprocess.run, ["docker", "rmi", "--force", name], env=dockerCLIEnv(self.host),
            capture_output=True, stdin=subprocess.DEVNULL, timeout=120,
        )
        self.assertFalse(self.hasImage(name))
        return name

    def commit(self, container: str, image: str) -> None:
        """
        Make the image C{image} of C{container} (C{POST /commit}): through
        the API, with a body, which Podman wants and C{docker commit} does
        not send it.
        """
        repository, _, tag = image.rpartition(":")
        query = urlencode({"container": container, "repo": repository, "tag": tag})
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(DEADLINE)
        self.addCleanup(sock.close)
        sock.connect(self.host[len("unix://"):])
        sock.sendall(
            f"POST /commit?{query} HTTP/1.0\r\nHost: docker\r\n"
            "Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}".encode()
        )
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        self.assertIn(b" 201 ", answer.split(b"\r\n", 1)[0], answer)

    def hasImage(self, name: str) -> bool:
        """Whether the engine has the image C{name}."""
        result = subprocess.run(
            ["docker", "image", "inspect", name], env=dockerCLIEnv(self.host),
            capture_output=True, stdin=subprocess.DEVNULL, timeout=60,
        )
        return result.returncode == 0

    def removeLater(self, name: str) -> None:
        """Remove the container C{name} at the end of the test."""
        self.addCleanup(self.daemon.pycm, "rm", "--force", name)

    def runOnTerminal(self, *args: str) -> tuple[int, bytes, bytes]:
        """
        Run the real C{pycm} with its stderr on a new pseudo-terminal,
        C{COLUMNS} wide, and its stdout on a pipe.

        @return: its exit code, what it wrote on stdout, and what on the
            terminal.
        """
        terminal = Terminal(self, [*pycmCommand(), *args], env=self.daemon.clientEnv(),
                            size=(24, COLUMNS), stdout=subprocess.PIPE)
        drawn = terminal.readToEnd(2 * DEADLINE)
        assert terminal.process.stdout is not None
        stdout = terminal.process.stdout.read()
        return terminal.process.wait(timeout=DEADLINE), stdout, drawn

    def test_progressOnTerminal(self) -> None:
        """
        With stderr on a terminal, C{pycm run} of an image being pulled
        draws the pull as it goes: a line per layer, redrawn in place (the
        cursor moved back up over them), the layer that was downloaded
        ending I{Pull complete}; stdout has the reply, as always.  The
        screen shows each line once in the end, on an 80-column terminal
        too, where the image's lines (its name, a digest) are wider.
        """
        image = self.imageOnlyInRegistry()
        name = uniqueName("pull")
        self.removeLater(name)
        code, stdout, terminal = self.runOnTerminal("run", name, image, "sleep", "100")
        self.assertEqual(code, 0, (stdout, terminal))
        self.assertIn(name.encode(), stdout)
        self.assertNotIn(b"\x1b", stdout)
        layers: dict[bytes, list[bytes]] = {}
        for layer, status in LAYER_LINE.findall(terminal.replace(b"\r\n", b"\n")):
            layers.setdefault(layer, []).append(status)
        self.assertTrue(layers, terminal)
        self.assertTrue(CURSOR_UP.search(terminal), terminal)
        # The layer only the registry had was fetched, whichever the
        # engine's id for it (the test image's was there already): Docker
        # ends it "Pull complete", Podman "Download complete".
        self.assertTrue(
            any(b"Pulling fs layer" in statuses
                and statuses[-1] in (b"Pull complete", b"Download complete")
                for statuses in layers.values()),
            terminal,
        )
        self.assertTrue(self.hasImage(image))
        # The screen in the end: the last drawing, each line once, each
        # layer at its last status, nothing left over from a wrapped line.
        last = CURSOR_UP.split(terminal)[-1].decode()
        drawing = [line.split("\x1b[2K")[-1] for line in last.split("\r\n") if line]
        self.assertEqual(screen(terminal), drawing)
        for layer, statuses in layers.items():
            self.assertIn(f"{layer.decode()}: {statuses[-1].decode()}", drawing)

    def test_nothingWhenPiped(self) -> None:
        """
        With stderr piped, C{pycm run} of an image being pulled prints no
        progress: stderr stays empty, stdout has the reply; the image was
        pulled all the same.
        """
        image = self.imageOnlyInRegistry()
        name = uniqueName("pull")
        self.removeLater(name)
        result = self.daemon.pycm("run", name, image, "sleep", "100")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stderr, b"")
        self.assertIn(name.encode(), result.stdout)
        self.assertNotIn(b"\x1b", result.stdout)
        self.assertTrue(self.hasImage(image))
        self.assertIn("pulling", self.daemon.log())
