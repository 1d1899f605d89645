"""
Starting the daemon under test: ``twistd -n --pidfile= pycm ...`` in its own
process group, on a free loopback port, with ``--no-auth`` unless asked.

When this checkout has a ``pycm/`` package next to ``benchmarks/``, that
working tree is what runs (it goes first on PYTHONPATH, and twistd finds its
``twisted/plugins/pycm_plugin.py`` there); otherwise the installed pycm.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

from benchmarks.common import REPO, SERVER_CPU, Children, freePort, waitForPort

TWISTD = "import sys; sys.argv[0] = 'twistd'; from twisted.scripts.twistd import run; run()"


def pycmSource() -> str:
    """Where the pycm under test comes from."""
    if os.path.isdir(os.path.join(REPO, "pycm")):
        return f"working tree {REPO}"
    import pycm

    return f"installed {os.path.dirname(pycm.__file__)}"


def daemonEnv(tree: str = REPO) -> dict[str, str]:
    """The daemon's environment: C{tree}'s C{pycm/} first on its path, if it has one."""
    env = dict(os.environ)
    if os.path.isdir(os.path.join(tree, "pycm")):
        env["PYTHONPATH"] = tree + os.pathsep + env.get("PYTHONPATH", "")
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
                twistdOptions: list[str] | None = None, tree: str = REPO,
                launcher: str = TWISTD) -> Daemon:
    """
    Start the daemon; with C{auth}, its TCP listener wants the token.

    @param twistdOptions: twistd's own options (before C{pycm}), such as
        C{--profile=FILE --savestats}.
    @param tree: the checkout whose C{pycm/} runs (this one by default).
    @param launcher: the Python code that runs twistd (L{TWISTD}).
    """
    base = children.tempdir(f"pycm-{backend}")
    stateDir = os.path.join(base, "state")
    os.mkdir(stateDir)
    logPath = os.path.join(base, "twistd.log")
    port = freePort()
    argv = [
        sys.executable, "-c", launcher, "-n", "--pidfile=", *(twistdOptions or []), "pycm",
        "--backend", backend, "--state-dir", stateDir,
        "--listen", f"tcp:{port}:interface=127.0.0.1", *([] if auth else ["--no-auth"]),
        *(extra or []),
    ]
    proc = children.start(argv, cpu=SERVER_CPU, logPath=logPath, env=daemonEnv(tree), cwd=base)
    waitForPort(port, proc, timeout, logPath)
    return Daemon(proc, port, stateDir, logPath)


def removeCgroupParent(parent: str) -> int:
    """
    Kill what is left in a benchmark daemon's cgroup parent (its containers
    outlive it: a stopped daemon leaves them running, as kill -9 would), then
    remove its groups, deepest first.  Returns how many processes it killed.
    """
    root = "/sys/fs/cgroup"
    if not os.path.isdir(root):
        return 0
    tops = [os.path.join(root, parent.lstrip("/"))]
    tops += [os.path.join(root, h, parent.lstrip("/")) for h in sorted(os.listdir(root))]
    tops = [top for top in tops if os.path.isdir(top)]
    killed: set[int] = set()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        pids = set()
        for top in tops:
            for path, _, files in os.walk(top):
                if "cgroup.procs" in files:
                    try:
                        with open(os.path.join(path, "cgroup.procs")) as f:
                            pids.update(int(p) for p in f.read().split())
                    except OSError:
                        pass
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            except OSError:
                pass
        time.sleep(0.05)
    for top in tops:
        for path, _, _ in sorted(os.walk(top), key=lambda w: -len(w[0])):
            try:
                os.rmdir(path)
            except OSError:
                pass
    return len(killed)


def startProcessDaemon(children: Children, label: str,
                       extra: list[str] | None = None, **kwargs: Any) -> Daemon:
    """
    A process-backend daemon whose containers' cgroups live below a parent
    of its own (C{/pycm-bench-LABEL-PID}), not a real daemon's C{/pycm} nor
    another benchmark daemon's, removed once the section's processes stopped.
    """
    parent = f"/pycm-bench-{label}-{os.getpid()}"
    children.atEnd.append(lambda: removeCgroupParent(parent))
    return startDaemon(children, "process",
                       ["--backend-option", f"cgroup-parent={parent}", *(extra or [])], **kwargs)
