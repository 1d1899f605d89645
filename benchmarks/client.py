"""
The client benchmark (issue 11, item 1): the wall time of one-shot calls of
the real ``pycm`` command against ``supervisorctl status``, in the same run.

  - a supervisord with one program (``sleep 1000``, started), in a temp dir
    with its own UNIX socket, and ``supervisorctl -c CONF status``;
  - a pycm daemon (memory backend, a token required on TCP) listening on
    loopback TCP and on a UNIX socket; ``pycm list`` and ``pycm run NAME``
    over each (a new name each round, removed after the round, untimed), with
    ``PYCM_TOKEN`` set as a user's would be;
  - the interactive shell's start-up: from spawning ``pycm`` on a new
    pseudo-terminal until its ``pycm>`` prompt shows.

Every figure is the median of N interleaved rounds (each round runs each
command once, in turn), the wall time of the whole process as a script sees
it (fork, exec, imports, connecting, the request, exit).  The target: each
one-shot pycm call at most 0.5x ``supervisorctl status``.

``--client-baseline PATH`` adds an older ``pycm`` console script (say, of a
venv with main's previous version) to every round: its ``list`` over TCP and
its shell start-up, against which the shell's start-up must be no slower
(within 10%, the noise of one run here).

The ``pycm`` and ``supervisorctl`` console scripts next to this Python are
used (those of the venv tox made): the client measured is the installed
one, as a user runs it (under ``tox -e bench``, the wheel of this checkout),
while the daemon runs from the working tree (see L{benchmarks.daemon}).
With this checkout first on ``PYTHONPATH`` every import of the client would
look there first, which costs it (and only it) time.
"""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

from benchmarks.common import (
    Children,
    LineClient,
    Missing,
    expectOK,
    median,
    tail,
)
from benchmarks.daemon import startDaemon
from benchmarks.report import Report
from benchmarks.supervisord import launchSupervisord

SECTION = "client"
#: One-shot pycm calls must take at most this share of `supervisorctl status`.
TARGET_RATIO = 0.5
#: The shell may start at most this much slower than the baseline's.
SHELL_TOLERANCE = 1.10
TIMEOUT = 30.0

#: Set by run.py's --client-baseline: an older pycm console script.
BASELINE: str | None = None


def script(name: str) -> list[str]:
    """The console script C{name} next to this Python, or its module."""
    path = os.path.join(os.path.dirname(sys.executable), name)
    if os.path.exists(path):
        return [path]
    module = {"pycm": "pycm.client.cli", "supervisorctl": "supervisor.supervisorctl"}
    return [sys.executable, "-m", module[name]]


def clientSource(env: dict[str, str]) -> str:
    """Where the measured client's pycm package is."""
    r = subprocess.run([sys.executable, "-c", "import pycm; print(pycm.__file__)"],
                       env=env, capture_output=True, text=True, cwd="/")
    return os.path.dirname(r.stdout.strip()) or r.stderr.strip()[-200:]


def checkPrerequisites() -> None:
    try:
        import supervisor  # noqa: F401
    except ImportError:
        raise Missing("supervisorctl is the reference: `pip install supervisor` "
                      "(tox -e bench does)") from None


def startSupervisord(children: Children) -> list[str]:
    """supervisord with one started program; the C{supervisorctl} command."""
    base = children.tempdir("supctl")
    sock = os.path.join(base, "supervisor.sock")
    conf = [
        "[unix_http_server]", f"file={sock}",
        "[supervisorctl]", f"serverurl=unix://{sock}",
        "[supervisord]",
        f"logfile={base}/supervisord.log",
        f"pidfile={base}/supervisord.pid",
        f"childlogdir={base}",
        "nodaemon=true", "loglevel=warn",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "[program:web]", "command=sleep 1000", "startsecs=0", "autostart=true",
        "stopsignal=KILL",
    ]
    proc, path, logPath = launchSupervisord(children, base, conf)
    command = [*script("supervisorctl"), "-c", path, "status"]
    deadline = time.monotonic() + TIMEOUT
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"supervisord exited with {proc.returncode}" + tail(logPath))
        r = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT)
        if "RUNNING" in r.stdout:
            return command
        if time.monotonic() > deadline:
            raise RuntimeError(f"supervisord's program is not running: {r.stdout!r}"
                               + tail(logPath))
        time.sleep(0.1)


def timed(argv: Sequence[str], env: dict[str, str]) -> float:
    """The wall time of one run of C{argv}, which must exit 0."""
    t0 = time.perf_counter()
    r = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=TIMEOUT)
    elapsed = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {r.returncode}: {r.stderr[-500:]!r}")
    return elapsed


def shellStartup(argv: Sequence[str], env: dict[str, str]) -> float:
    """Seconds from spawning the shell on a new pty to its prompt; then Ctrl-D."""
    master, slave = pty.openpty()
    t0 = time.perf_counter()
    proc = subprocess.Popen(list(argv), stdin=slave, stdout=slave, stderr=slave, env=env,
                            start_new_session=True)
    seen = b""
    try:
        deadline = t0 + TIMEOUT
        while b"pycm> " not in seen:
            left = deadline - time.perf_counter()
            if left <= 0:
                raise RuntimeError(f"no prompt from the shell: {seen[-300:]!r}")
            ready, _, _ = select.select([master], [], [], left)
            if ready:
                seen += os.read(master, 65536)
        elapsed = time.perf_counter() - t0
        os.write(master, b"\x04")
        proc.wait(TIMEOUT)
        return elapsed
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
        os.close(slave)


def run(report: Report, quick: bool, children: Children) -> None:
    checkPrerequisites()
    rounds = 5 if quick else 20
    supervisorctl = startSupervisord(children)
    sockDir = children.tempdir("client")
    unix = f"unix:{sockDir}/pycm.sock"
    daemon = startDaemon(children, "memory", extra=["--listen", unix], auth=True)
    with open(os.path.join(daemon.stateDir, "token")) as f:
        token = f.read().strip()
    tcp = f"tcp:127.0.0.1:{daemon.port}"
    while not os.path.exists(unix[5:]):
        time.sleep(0.05)
    admin = LineClient(daemon.port)
    expectOK(admin.request(f"auth {token}"), "auth")

    env = dict(os.environ, PYCM_TOKEN=token, PYCM_HISTORY="", TERM="xterm")
    for name in ("PYCM_HOST", "PYCM_CLIENT", "PYTHONPATH"):
        env.pop(name, None)
    pycm = script("pycm")
    print(f"  {rounds} interleaved rounds; pycm: {' '.join(pycm)} "
          f"({clientSource(env)}); baseline: {BASELINE or 'none'}", flush=True)

    figures: dict[str, list[float]] = {}
    runs: list[tuple[str, Callable[[int], float]]] = [
        ("supervisorctl status", lambda i: timed(supervisorctl, env)),
        ("pycm list (tcp)", lambda i: timed([*pycm, "-H", tcp, "list"], env)),
        ("pycm list (unix)", lambda i: timed([*pycm, "-H", unix, "list"], env)),
        ("pycm run NAME (tcp)",
         lambda i: timed([*pycm, "-H", tcp, "run", f"t{i}", "host", "sleep", "1000"], env)),
        ("pycm run NAME (unix)",
         lambda i: timed([*pycm, "-H", unix, "run", f"u{i}", "host", "sleep", "1000"], env)),
        ("shell start-up (to the prompt)",
         lambda i: shellStartup([*pycm, "-H", tcp], env)),
    ]
    if BASELINE:
        baseline = BASELINE
        runs += [
            ("baseline pycm list (tcp)",
             lambda i: timed([baseline, "-H", tcp, "list"], env)),
            ("baseline shell start-up",
             lambda i: shellStartup([baseline, "-H", tcp], env)),
        ]
    for name, _ in runs:
        figures[name] = []
    # One warm-up round, untimed: the page cache, the daemon's first calls.
    for i in range(-1, rounds):
        for name, call in runs:
            elapsed = call(i)
            if i >= 0:
                figures[name].append(elapsed)
        for prefix in ("t", "u"):
            expectOK(admin.request(f"rm --force {prefix}{i}"), "rm")
    admin.close()

    reference = median(figures["supervisorctl status"])
    report.add(SECTION, "supervisorctl status, 1 program (median ms)",
               f"{reference * 1000:.1f}")
    for name in ("pycm list (tcp)", "pycm list (unix)", "pycm run NAME (tcp)",
                 "pycm run NAME (unix)"):
        value = median(figures[name])
        ratio = value / reference
        report.add(SECTION, f"{name} (median ms)", f"{value * 1000:.1f}",
                   f"<= {TARGET_RATIO}x supervisorctl", ratio <= TARGET_RATIO,
                   f"{ratio:.2f}x supervisorctl status")
    shell = median(figures["shell start-up (to the prompt)"])
    if BASELINE:
        before = median(figures["baseline shell start-up"])
        ratio = shell / before
        report.add(SECTION, "shell start-up to the prompt (median ms)", f"{shell * 1000:.1f}",
                   f"<= {SHELL_TOLERANCE:.2f}x baseline", ratio <= SHELL_TOLERANCE,
                   f"baseline {before * 1000:.1f} ms: {ratio:.2f}x")
        old = median(figures["baseline pycm list (tcp)"])
        report.add(SECTION, "baseline pycm list (tcp) (median ms)", f"{old * 1000:.1f}",
                   note=f"{old / reference:.2f}x supervisorctl status")
    else:
        report.add(SECTION, "shell start-up to the prompt (median ms)", f"{shell * 1000:.1f}",
                   note="no --client-baseline to compare with")
