"""
Starting the daemon under test: ``twistd -n --pidfile= pycm ...`` in its own
process group, on a free loopback port, with ``--no-auth`` unless asked.

When this checkout has a ``pycm/`` package next to ``benchmarks/``, that
working tree is what runs (it goes first on PYTHONPATH, and twistd finds its
``twisted/plugins/pycm_plugin.py`` there); otherwise the installed pycm.
"""

from __future__ import annotations

import os
import subprocess
import sys

from benchmarks.common import REPO, SERVER_CPU, Children, freePort, waitForPort

TWISTD = "import sys; sys.argv[0] = 'twistd'; from twisted.scripts.twistd import run; run()"


def pycmSource() -> str:
    """Where the pycm under test comes from."""
    if os.path.isdir(os.path.join(REPO, "pycm")):
        return f"working tree {REPO}"
    import pycm

    return f"installed {os.path.dirname(pycm.__file__)}"


def daemonEnv() -> dict[str, str]:
    env = dict(os.environ)
    if os.path.isdir(os.path.join(REPO, "pycm")):
        env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    return env


class Daemon:
    def __init__(self, proc: subprocess.Popen, port: int, stateDir: str, logPath: str):
        self.proc = proc
        self.port = port
        self.stateDir = stateDir
        self.logPath = logPath

    @property
    def pid(self) -> int:
        return self.proc.pid


def startDaemon(children: Children, backend: str, extra: list[str] | None = None,
                timeout: float = 30.0, auth: bool = False,
                twistdOptions: list[str] | None = None) -> Daemon:
    """
    Start the daemon; with C{auth}, its TCP listener wants the token.

    @param twistdOptions: twistd's own options (before C{pycm}), such as
        C{--profile=FILE --savestats}.
    """
    base = children.tempdir(f"pycm-{backend}")
    stateDir = os.path.join(base, "state")
    os.mkdir(stateDir)
    logPath = os.path.join(base, "twistd.log")
    port = freePort()
    argv = [
        sys.executable, "-c", TWISTD, "-n", "--pidfile=", *(twistdOptions or []), "pycm",
        "--backend", backend, "--state-dir", stateDir,
        "--listen", f"tcp:{port}:interface=127.0.0.1", *([] if auth else ["--no-auth"]),
        *(extra or []),
    ]
    proc = children.start(argv, cpu=SERVER_CPU, logPath=logPath, env=daemonEnv(), cwd=base)
    waitForPort(port, proc, timeout, logPath)
    return Daemon(proc, port, stateDir, logPath)
