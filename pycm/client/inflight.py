"""
The shell's request in flight: the note shown while it is awaited
(L{progressMessage}), and Ctrl-C giving it up (L{abandonedLines} say so).
Giving it up resets the connection (the daemon abandons a C{wait} or an
C{apply}: see L{pycm.client.protocol.ClientProtocol.abandon}), and
L{Reconnection} connects anew and asks again for what the shell had asked
of the old connection (L{Subscriptions}: a token typed with C{auth}, the
events it was printing, the logs it was following).
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet.defer import Deferred, inlineCallbacks

from pycm.client.commandtable import BY_WORD
from pycm.client.exits import fateOf
from pycm.client.masking import shown
from pycm.client.protocol import ClientProtocol
from pycm.errors import PycmError
from pycm.grammar import splitOptions

#: Makes a new connection to the daemon, authenticated as the first was.
Connect = Callable[[], "Deferred[ClientProtocol]"]

_SINCE = "--since"


def progressMessage(words: Sequence[str]) -> str:
    """What to show when a request takes more than a second."""
    command = words[0].lower() if words else ""
    name = next((w for w in reversed(words[1:]) if not w.startswith("-")), "")
    if command in ("stop", "restart") and name:
        return f"waiting for {name} to {command}\N{HORIZONTAL ELLIPSIS}"
    if command == "wait" and name:
        return f"waiting for {name}\N{HORIZONTAL ELLIPSIS}"
    if command in ("run", "create"):
        return ("waiting for the daemon (it may be pulling the image)"
                "\N{HORIZONTAL ELLIPSIS}")
    return f"waiting for the reply to {command}\N{HORIZONTAL ELLIPSIS}"


def abandonedLines(line: str, dropped: int, reset: bool = True) -> list[str]:
    """
    What Ctrl-C says when it gives up the request C{line} (as typed, an
    C{auth}'s token hidden), its connection C{reset} or only closed
    (L{fateOf}), and C{dropped} lines typed while waiting.
    """
    typed = shown([bytes([c]) for c in line.encode("utf-8")]).decode("utf-8", "replace")
    words = typed.split(None, 1)
    command = words[0].lower() if words else ""
    lines = [f"Interrupted before the reply ({fateOf(command, reset)}): {typed}"]
    if dropped:
        lines.append(f"Not sent: the {dropped} line{'s' if dropped > 1 else ''} "
                     "typed while waiting (Up recalls them).")
    return lines


def _withoutSince(words: Sequence[str]) -> list[str]:
    """C{words} less their C{--since=ID} (or C{--since ID})."""
    kept: list[str] = []
    skip = False
    for word in words:
        if skip:
            skip = False
        elif word == _SINCE:
            skip = True
        elif not word.startswith(_SINCE + "="):
            kept.append(word)
    return kept


class Subscriptions:
    """
    What the shell asked of its connection that a new connection must be
    asked again, kept from the replies as they come.

    @ivar token: the token of the last C{auth} typed in the shell that the
        daemon took (the command line's is sent by the connecting itself).
    @ivar events: the words of the C{events} request that turned events on
        (without C{--since}), or None while they are off.
    @ivar lastEventId: the newest event id the shell has seen (from a
        subscription's reply or an event), to replay from.
    @ivar follows: the containers whose logs are followed.
    """

    def __init__(self, events: Sequence[str] | None = None,
                 lastEventId: int | None = None) -> None:
        self.token: str | None = None
        self.events = None if events is None else list(events)
        self.lastEventId = lastEventId
        self.follows: set[str] = set()

    def replied(self, words: Sequence[str], value: Any) -> None:
        """Note what the C{OK} reply C{value} to the request C{words} turned on or off."""
        command = words[0].lower() if words else ""
        if command == "auth" and len(words) == 2:
            self.token = words[1]
        elif command == "events" and isinstance(value, dict):
            if value.get("events") is True:
                self.events = _withoutSince(words)
                self._seen(value.get("last_id"))
            elif value.get("events") is False:
                self.events = None
        elif command == "logs":
            options, names = splitOptions(words[1:], BY_WORD["logs"].valueSpellings())
            if names and {"--follow", "-f"} & set(options):
                self.follows.add(names[-1])
        elif command == "unfollow" and len(words) == 2:
            self.follows.discard(words[1])

    def noted(self, value: Any, words: Sequence[str]) -> Any:
        """L{replied}, as a request's callback: passes C{value} on."""
        self.replied(words, value)
        return value

    def eventSeen(self, event: Any) -> None:
        """Note an event's id, or the end of a followed log."""
        if not isinstance(event, dict):
            return
        if event.get("type") == "log_end":
            self.follows.discard(str(event.get("name")))
        elif event.get("type") == "container":
            self._seen(event.get("id"))

    def _seen(self, eventId: Any) -> None:
        if isinstance(eventId, int) and not isinstance(eventId, bool) and (
                self.lastEventId is None or eventId > self.lastEventId):
            self.lastEventId = eventId

    def requests(self) -> list[list[str]]:
        """
        The requests that ask a new connection for the same: C{auth}, then
        C{events} from the last id seen (the events of the gap replayed),
        then each follow from now on (C{--tail=0}).
        """
        asked: list[list[str]] = []
        if self.token is not None:
            asked.append(["auth", self.token])
        if self.events is not None:
            since = [] if self.lastEventId is None else [f"--since={self.lastEventId}"]
            asked.append([*self.events[:1], *since, *self.events[1:]])
        for name in sorted(self.follows):
            asked.append(["logs", "--follow", "--tail=0", name])
        return asked


class Reconnection:
    """
    Connects anew (L{Connect}) and asks the new connection again for the
    L{Subscriptions}; what it could not have back is said in notices.
    """

    def __init__(self, connect: Connect, subscriptions: Subscriptions) -> None:
        self.connect = connect
        self.subscriptions = subscriptions

    @inlineCallbacks
    def reconnect(self, listener: Callable[[Any], None]) -> Any:
        """
        A new connection, with C{listener} given its events from the start
        (a replay comes right after the C{events} reply): fires with
        C{(client, notices)}, or fails as L{Connect} does.
        """
        client: ClientProtocol = yield self.connect()
        client.addEventListener(listener)
        notices: list[str] = []
        for words in self.subscriptions.requests():
            try:
                value = yield client.request(shlex.join(words))
            except PycmError as e:
                what = "the token typed with auth" if words[0] == "auth" else words[0]
                if words[0] == "events":
                    self.subscriptions.events = None
                elif words[0] == "logs":
                    self.subscriptions.follows.discard(words[-1])
                notices.append(f"Could not ask the new connection for {what} again: "
                               f"{e.code}: {e}")
            else:
                if words[0] == "events":
                    self.subscriptions.replied(words, value)
        return client, notices
