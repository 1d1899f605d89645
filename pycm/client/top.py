"""
C{pycm top}: a full-screen live view of the containers, on a terminal.
L{TopView} is the whole logic, an insults L{TerminalProtocol} tested on a
fake terminal; L{runTop} alone touches the real one (raw mode, the
alternate screen, the cursor hidden; all restored when the view ends).
"""

from __future__ import annotations

import collections
import os
import shlex
import sys
import termios
import tty
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from twisted.conch.insults import insults
from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.python.failure import Failure

from pycm.client.protocol import ClientProtocol
from pycm.client.stats import binarySize, memoryPercent
from pycm.errors import PycmError

#: Seconds between two refreshes; the sparklines hold L{HISTORY} of them.
REFRESH = 1.0
HISTORY = 60
SPARK_WIDTH = 10
BAR_WIDTH = 6
EVENT_LINES = 5
#: After a container event, refresh this soon (events come in bursts).
EVENT_REFRESH = 0.1

SPARKS = {True: "▁▂▃▄▅▆▇█", False: "_.-:=+*#"}
BAR = {True: ("█", "░"), False: ("#", ".")}
SORTS = {b"c": "cpu", b"m": "mem", b"n": "name"}
ACTIONS = {
    b"s": ("stop", "stop {name}"),
    b"r": ("restart", "restart {name}"),
    b"d": ("remove", "rm --force {name}"),
}
CTRL_C, CTRL_U, BACKSPACE, DELETE = b"\x03", b"\x15", b"\x08", b"\x7f"
ALTERNATE_SCREEN = 1049
# The function keys, as insults hands them to keystrokeReceived.
UP_ARROW = vars(insults.ServerProtocol)["UP_ARROW"]
DOWN_ARROW = vars(insults.ServerProtocol)["DOWN_ARROW"]
BACKSPACE_KEY = vars(insults.ServerProtocol)["BACKSPACE"]


def sparkline(values: Sequence[float | None], top: float, unicode: bool = True) -> str:
    """
    L{SPARK_WIDTH} characters for the last minute of C{values} (oldest
    first), each the highest of its share of the samples, scaled to C{top}.
    """
    chars = SPARKS[unicode]
    per = max(1, HISTORY // SPARK_WIDTH)
    recent = list(values)[-HISTORY:]
    buckets = [recent[max(0, len(recent) - (i + 1) * per) : len(recent) - i * per]
               for i in range(SPARK_WIDTH)]  # fmt: skip
    out = []
    for bucket in reversed(buckets):
        known = [v for v in bucket if v is not None]
        if not known:
            out.append(" ")
            continue
        level = max(known) / top if top > 0 else 0.0
        out.append(chars[min(len(chars) - 1, max(0, round(level * (len(chars) - 1))))])
    return "".join(out)


def bar(fraction: float | None, unicode: bool = True) -> str:
    """A bar of L{BAR_WIDTH} characters filled to C{fraction}."""
    full, empty = BAR[unicode]
    if fraction is None:
        return " " * BAR_WIDTH
    filled = min(BAR_WIDTH, max(0, round(fraction * BAR_WIDTH)))
    return full * filled + empty * (BAR_WIDTH - filled)


def healthOf(container: dict[str, Any]) -> str:
    """The health the daemon reports (a word or an object), else empty."""
    health = container.get("health")
    if isinstance(health, dict):
        health = health.get("status")
    return "" if health is None else str(health)


def eventLine(event: dict[str, Any]) -> str:
    """C{12:00:01 web die (exit code 1)}: an event at the bottom of the screen."""
    stamp = str(event.get("time") or "")
    clock = stamp[11:19] if len(stamp) >= 19 else stamp
    text = f"{clock} {event.get('name')} {event.get('action')}"
    if event.get("exit_code") is not None:
        text += f" (exit code {event['exit_code']})"
    return text


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"[:width]


class TopView(insults.TerminalProtocol):
    """
    The live view.  One row per container: its state, its health when the
    daemon reports one, its restarts, CPU and memory now with a small bar
    and a sparkline of the last minute; the latest container events at the
    bottom.  It asks C{list} and C{stats} every second and listens to
    C{events} (which also trigger a refresh at once), all over the one
    connection the command opened.

    Keys: Up/Down (or k/j) select a container; c, m, n sort by CPU, memory,
    name; / filters by name (Enter applies it, an empty filter shows all);
    s, r, d stop, restart or remove (C{rm --force}) the selected container
    after a y/n confirmation; q or Ctrl-C quits.

    @ivar done: fires with the exit status once the terminal is let go.
    @ivar message: the status line (a result, an error, a prompt).
    """

    def __init__(
        self,
        client: ClientProtocol,
        clock: IReactorTime,
        done: Deferred[int] | None = None,
        size: Callable[[], tuple[int, int]] | None = None,
        unicode: bool = True,
        title: str = "pycm top",
    ) -> None:
        self.client = client
        self.clock = clock
        self.done: Deferred[int] = done if done is not None else Deferred()
        self.size = size if size is not None else (lambda: (80, 24))
        self.unicode = unicode
        self.title = title
        self.containers: dict[str, dict[str, Any]] = {}
        self.stats: dict[str, dict[str, Any]] = {}
        self.cpuHistory: dict[str, collections.deque[float | None]] = {}
        self.memHistory: dict[str, collections.deque[int | None]] = {}
        self.events: collections.deque[str] = collections.deque(maxlen=EVENT_LINES)
        self.sortKey = "name"
        self.filter = ""
        self.selected: str | None = None
        self.mode = "normal"
        self.typed = ""
        self.confirming: tuple[str, str, str] | None = None
        self.message = ""
        self.exitCode = 0
        self.leaving = False
        self._refreshing = False
        self._next: IDelayedCall | None = None

    # -- life -----------------------------------------------------------------

    def connectionMade(self) -> None:
        self.terminal.setPrivateModes([ALTERNATE_SCREEN])
        self.terminal.resetPrivateModes([insults.privateModes.CURSOR_MODE])
        self.terminal.eraseDisplay()
        self.client.addEventListener(self.eventReceived)
        self.client.whenDisconnected().addCallback(self._daemonLost)
        self.client.request("events").addErrback(self._failed)
        self.refresh()

    def refresh(self) -> None:
        """Ask C{list} and C{stats} (pipelined), then draw."""
        if self._next is not None and self._next.active():
            self._next.cancel()
        self._next = None
        if self.leaving or self._refreshing:
            return
        self._refreshing = True
        d = gatherResults(
            [self.client.request("list"), self.client.request("stats")], consumeErrors=True
        )

        def got(replies: list[Any]) -> None:
            self.update(replies[0], replies[1])

        def settled(_: object) -> None:
            self._refreshing = False
            if not self.leaving:
                self.draw()
                self._schedule(REFRESH)

        d.addCallbacks(got, lambda f: self._failed(f.value.subFailure))
        d.addBoth(settled)

    def _schedule(self, delay: float) -> None:
        if self._next is None or not self._next.active():
            self._next = self.clock.callLater(delay, self.refresh)
        elif self._next.getTime() > self.clock.seconds() + delay:
            self._next.reset(delay)

    def _failed(self, failure: Failure) -> None:
        if isinstance(failure.value, PycmError):
            self.message = f"Error: {failure.value.code}: {failure.value.message}"
        elif not self.leaving:
            self.message = f"Error: {failure.getErrorMessage()}"

    def eventReceived(self, event: Any) -> None:
        """A container event: shown at the bottom; the rows refreshed soon."""
        if self.leaving or not isinstance(event, dict) or event.get("type") != "container":
            return
        self.events.append(eventLine(event))
        self._schedule(EVENT_REFRESH)
        self.draw()

    def update(self, containers: list[dict[str, Any]], stats: list[dict[str, Any]]) -> None:
        """Take a C{list} and a C{stats} reply; each running row gets a sample."""
        self.containers = {c["name"]: c for c in containers if isinstance(c, dict)}
        self.stats = {s["name"]: s for s in stats if isinstance(s, dict)}
        for name in list(self.cpuHistory):
            if name not in self.containers:
                del self.cpuHistory[name], self.memHistory[name]
        for name in self.containers:
            row = self.stats.get(name, {})
            self.cpuHistory.setdefault(name, collections.deque(maxlen=HISTORY)).append(
                row.get("cpu_percent")
            )
            self.memHistory.setdefault(name, collections.deque(maxlen=HISTORY)).append(
                row.get("memory")
            )
        shown = self.visible()
        if self.selected not in shown:
            self.selected = shown[0] if shown else None

    # -- what is shown --------------------------------------------------------

    def visible(self) -> list[str]:
        """The names shown, filtered and sorted."""
        names = [n for n in self.containers if self.filter in n]
        if self.sortKey == "name":
            return sorted(names)

        def figure(name: str) -> tuple[float, str]:
            key = "cpu_percent" if self.sortKey == "cpu" else "memory"
            value = self.stats.get(name, {}).get(key)
            return (-(value if isinstance(value, (int, float)) else -1.0), name)

        return sorted(names, key=figure)

    def render(self, width: int, height: int) -> list[str]:
        """The screen's lines (each at most C{width} characters)."""
        names = self.visible()
        withHealth = any(healthOf(c) for c in self.containers.values())
        nameWidth = max([4, *(len(n) for n in names)])
        nameWidth = min(nameWidth, 24)
        header = f"  {'NAME':<{nameWidth}} {'STATE':<10} "
        if withHealth:
            header += f"{'HEALTH':<9} "
        header += f"{'RST':>3} {'CPU %':>7} {'':<{BAR_WIDTH}} {'last min':<{SPARK_WIDTH}} "
        header += f"{'MEM':>9} {'':<{BAR_WIDTH}} {'last min':<{SPARK_WIDTH}}"
        running = sum(1 for c in self.containers.values() if c.get("state") == "running")
        top = (
            f"{self.title}  {len(self.containers)} containers, {running} running"
            f"  sort: {self.sortKey}" + (f"  filter: {self.filter}" if self.filter else "")
        )
        keys = "c/m/n sort  / filter  s stop  r restart  d remove  q quit"
        lines = [top, keys, "", header.rstrip()]
        peak = 1
        for history in self.memHistory.values():
            peak = max([peak, *(v for v in history if isinstance(v, int))])
        for name in names:
            lines.append(self._row(name, nameWidth, withHealth, peak))
        if not names:
            lines.append("  (no containers" + (" match the filter)" if self.filter else ")"))
        bottom = [self._statusLine(), "Events:", *self.events]
        room = max(0, height - len(bottom))
        lines = lines[:room] + [""] * (room - len(lines)) + bottom
        return [_fit(line, width) for line in lines[:height]]

    def _row(self, name: str, nameWidth: int, withHealth: bool, peak: int) -> str:
        container = self.containers[name]
        row = self.stats.get(name, {})
        cpu = row.get("cpu_percent")
        memory = row.get("memory")
        limit = row.get("memory_limit")
        marker = "> " if name == self.selected else "  "
        text = f"{marker}{_fit(name, nameWidth):<{nameWidth}} {container.get('state', ''):<10} "
        if withHealth:
            text += f"{_fit(healthOf(container), 9):<9} "
        text += f"{container.get('restart_count', 0) or 0:>3} "
        text += f"{'--' if cpu is None else f'{cpu:.1f}':>7} "
        text += bar(None if cpu is None else cpu / 100.0, self.unicode) + " "
        cpuTop = max([100.0, *(v for v in self.cpuHistory.get(name, ()) if v is not None)])
        text += sparkline(self.cpuHistory.get(name, ()), cpuTop, self.unicode) + " "
        text += f"{binarySize(memory) if memory is not None else '--':>9} "
        fraction = memoryPercent(row)
        if fraction is not None:
            fraction /= 100.0
        elif isinstance(memory, int):
            fraction = memory / peak
        text += bar(fraction, self.unicode) + " "
        memTop = limit if isinstance(limit, int) else peak
        text += sparkline(self.memHistory.get(name, ()), memTop, self.unicode)
        return text.rstrip()

    def _statusLine(self) -> str:
        if self.mode == "filter":
            return f"Filter by name: {self.typed}"
        if self.confirming is not None:
            verb, name, _ = self.confirming
            return f"{verb.capitalize()} {name}? (y/n)"
        return self.message

    def draw(self) -> None:
        """Redraw the whole screen in place."""
        if self.leaving:
            return
        width, height = self.size()
        for index, line in enumerate(self.render(width, height)):
            self.terminal.cursorPosition(0, index)
            selected = line.startswith("> ")
            if selected:
                self.terminal.selectGraphicRendition(str(insults.REVERSE_VIDEO))
            self.terminal.write(line.encode("utf-8", "replace"))
            if selected:
                self.terminal.selectGraphicRendition()
            self.terminal.eraseToLineEnd()
        self.terminal.eraseToDisplayEnd()

    # -- keys -----------------------------------------------------------------

    def keystrokeReceived(self, keyID: Any, modifier: Any) -> None:
        if self.leaving:
            return
        if keyID == CTRL_C:
            self.leave(0)
            return
        if self.mode == "filter":
            self._filterKey(keyID)
        elif self.confirming is not None:
            self._confirmKey(keyID)
        else:
            self._normalKey(keyID)
        self.draw()

    def _normalKey(self, key: Any) -> None:
        if key == b"q":
            self.leave(0)
        elif key in SORTS:
            self.sortKey = SORTS[key]
        elif key == b"/":
            self.mode, self.typed = "filter", self.filter
        elif key in (UP_ARROW, b"k"):
            self._move(-1)
        elif key in (DOWN_ARROW, b"j"):
            self._move(1)
        elif key in ACTIONS and self.selected is not None:
            verb, template = ACTIONS[key]
            name = self.selected
            self.confirming = (verb, name, template.format(name=shlex.quote(name)))

    def _move(self, step: int) -> None:
        names = self.visible()
        if not names:
            return
        index = names.index(self.selected) if self.selected in names else 0
        self.selected = names[max(0, min(len(names) - 1, index + step))]

    def _filterKey(self, key: Any) -> None:
        if key in (b"\r", b"\n"):
            self.filter, self.mode = self.typed, "normal"
            shown = self.visible()
            if self.selected not in shown:
                self.selected = shown[0] if shown else None
        elif key in (BACKSPACE, DELETE, BACKSPACE_KEY):
            self.typed = self.typed[:-1]
        elif key == CTRL_U:
            self.typed = ""
        elif isinstance(key, bytes) and len(key) == 1 and key.isascii() and key >= b" ":
            self.typed += key.decode("ascii")

    def _confirmKey(self, key: Any) -> None:
        assert self.confirming is not None
        verb, name, line = self.confirming
        self.confirming = None
        if key not in (b"y", b"Y"):
            self.message = f"{verb} {name}: cancelled"
            return
        self.message = f"{verb} {name}..."

        def done(_: object) -> None:
            self.message = f"{verb} {name}: done"
            self.refresh()

        def failed(failure: Failure) -> None:
            self._failed(failure)
            self.draw()

        self.client.request(line).addCallbacks(done, failed)

    # -- leaving --------------------------------------------------------------

    def leave(self, code: int) -> None:
        """Let go of the daemon and give the terminal back as it was."""
        if self.leaving:
            return
        self.leaving = True
        self.exitCode = code
        if self._next is not None and self._next.active():
            self._next.cancel()
        self.client.removeEventListener(self.eventReceived)
        self.client.disconnect()
        self.terminal.eraseDisplay()
        self.terminal.cursorHome()
        self.terminal.setPrivateModes([insults.privateModes.CURSOR_MODE])
        self.terminal.resetPrivateModes([ALTERNATE_SCREEN])
        transport = getattr(self.terminal, "transport", None)
        if transport is not None:
            transport.loseConnection()
        self._finish()

    def _daemonLost(self, reason: BaseException) -> None:
        if not self.leaving:
            self.leave(3)

    def connectionLost(self, reason: Failure | None = None) -> None:
        if not self.leaving:
            self.leaving = True
            self.client.disconnect()
        if self._next is not None and self._next.active():
            self._next.cancel()
        self._finish()

    def _finish(self) -> None:
        if not self.done.called:
            self.done.callback(self.exitCode)


def runTop(reactor: Any, client: ClientProtocol, options: Any, err: TextIO) -> Deferred[int]:
    """
    Run L{TopView} on the terminal until it ends; fires with the exit
    status (2 when standard input and output are not a terminal).
    """
    from twisted.internet import stdio

    stdin, stdout = sys.stdin.fileno(), sys.stdout.fileno()
    if not (os.isatty(stdin) and os.isatty(stdout)):
        client.disconnect()
        err.write("pycm: top needs a terminal; try `pycm stats --no-stream`\n")
        return succeed(2)

    def size() -> tuple[int, int]:
        try:
            columns, lines = os.get_terminal_size(stdout)
        except OSError:
            return 80, 24
        return columns or 80, lines or 24

    encoding = (getattr(sys.stdout, "encoding", "") or "").lower().replace("-", "")
    done: Deferred[int] = Deferred()
    saved = termios.tcgetattr(stdin)
    flags = [(fd, _getfl(fd)) for fd in sorted({stdin, stdout})]

    def restore(result: Any) -> Any:
        termios.tcsetattr(stdin, termios.TCSADRAIN, saved)
        for fd, flag in flags:
            _setfl(fd, flag)
        # Should the view not have: the cursor back, the normal screen.
        os.write(stdout, b"\x1b[?25h\x1b[?1049l")
        return result

    def report(code: int) -> int:
        if code == 3:
            err.write(f"Error: lost the connection to the pycm daemon at {options.host}\n")
        return code

    try:
        tty.setraw(stdin)
        makeStdio: Callable[..., object] = stdio.StandardIO
        makeStdio(
            insults.ServerProtocol(
                TopView, client, reactor, done, size, encoding == "utf8",
                f"pycm top  {options.host}",
            ),
            stdin=stdin, stdout=stdout, reactor=reactor,
        )  # fmt: skip
    except BaseException:
        restore(None)
        raise
    done.addBoth(restore)
    return done.addCallback(report)


def _getfl(fd: int) -> int:
    import fcntl

    return fcntl.fcntl(fd, fcntl.F_GETFL)


def _setfl(fd: int, flag: int) -> None:
    import fcntl

    fcntl.fcntl(fd, fcntl.F_SETFL, flag)
