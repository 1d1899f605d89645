"""
The commands that watch containers without changing them: C{logs} (and
C{unfollow}), C{wait}, C{stats} and C{events}.  Streams (followed logs,
events) are handed to the session, which sends them after the reply.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from twisted.internet.defer import Deferred, TimeoutError

from pycm.daemon.filters import EVENT_FILTERS, parseFilters
from pycm.daemon.heldreplies import ReplyArray
from pycm.daemon.requestline import parseCount, parseSeconds, parseSince
from pycm.daemon.session import Session
from pycm.errors import BackendError, BadRequest
from pycm.logreply import REPLY_BYTES, overReply
from pycm.model import Container, LogFollow, LogLine, WaitCondition, validateName
from pycm.slicedwork import Job, runAtOnce
from pycm.stats import ContainerStats
from pycm.wirejson import encodeJSONBytes

#: How many log lines C{logs} returns when no C{--tail} is given.
DEFAULT_TAIL = 100

#: The most bytes of log lines one C{logs} reply may carry
#: (L{pycm.logreply.REPLY_BYTES}).
MAX_LOGS_REPLY = REPLY_BYTES

#: Log lines encoded in one slice of L{encodeLogLines} (a few milliseconds).
LINES_PER_SLICE = 1000
#: Containers' stats encoded in one slice of L{encodeStats} (a few milliseconds).
STATS_PER_SLICE = 250


def _tail(options: Mapping[str, Any]) -> int | None:
    value = options.get("tail")
    if value is None:
        return DEFAULT_TAIL
    if value == "all":
        return None
    return parseCount(value, "tail")


def logs(session: Session, options: Mapping[str, Any], args: Sequence[str]) -> Any:
    """
    The lines, read (by the backend) and encoded (here) a slice at a time
    between other connections' requests: megabytes of log hold up no one.
    """
    name = validateName(args[0])
    state = session.state
    backend = state.backend
    since = None
    if "since" in options:
        since = parseSince(options["since"], state.clock.seconds())
    # With --since, every line since then, unless --tail says otherwise.
    tail = _tail(options) if since is None or "tail" in options else None
    if not options.get("follow"):
        d = backend.logs(name, tail, since).addCallback(
            lambda lines: state.slices.run(encodeLogLines(lines))
        )
        return _abandonedWithClient(session, d)
    if name in session.followedNames:
        raise BadRequest(f"already following {name}; send 'unfollow {name}' first")
    session.followedNames.add(name)
    # Lines written while the backlog is encoded wait for its reply.
    during: list[LogLine] | None = []

    def observe(line: LogLine) -> None:
        if during is None:
            session.sendLogLine(name, line)
        else:
            during.append(line)

    def sendDuring() -> None:
        nonlocal during
        newer, during = during or [], None
        for line in newer:
            session.sendLogLine(name, line)

    def following(follow: LogFollow) -> Any:
        def encoded(backlog: ReplyArray) -> ReplyArray:
            # Before startFollowing's: a follow over at once ends after them.
            session.callAfterReply(sendDuring)
            session.startFollowing(name, follow)
            return backlog

        def notEncoded(failure: Any) -> Any:
            follow.cancel()
            session.followedNames.discard(name)
            return failure

        return state.slices.run(encodeLogLines(follow.backlog)).addCallbacks(encoded, notEncoded)

    def failed(failure: Any) -> Any:
        session.followedNames.discard(name)
        return failure

    d = backend.follow(name, tail, observe, since)
    return d.addCallbacks(following, failed)


def _abandonedWithClient(session: Session, d: Deferred[Any]) -> Deferred[Any]:
    """C{d}, cancelled (its work stopped) if the client goes before it fires."""
    session.pending.add(d)

    def settled(passthrough: Any) -> Any:
        session.pending.discard(d)
        return passthrough

    return d.addBoth(settled)


def logLinesReply(lines: Sequence[LogLine]) -> ReplyArray:
    """L{encodeLogLines} at once."""
    return runAtOnce(encodeLogLines(lines))


def encodeLogLines(lines: Sequence[LogLine]) -> Job[ReplyArray]:
    """
    The JSON of C{logs}' reply, each line encoded once, newest first, as a
    L{pycm.slicedwork.Job} (L{LINES_PER_SLICE} lines a slice): a reply of
    megabytes is written a piece at a time as the client reads it, and
    counted against the daemon's budget for replies held for clients that
    do not read (L{pycm.daemon.heldreplies}).

    @raise BadRequest: if it would be over L{MAX_LOGS_REPLY} bytes, saying
        how many of the newest lines would fit (as soon as it is known: the
        older lines are not encoded).
    """
    result: list[bytes] = []
    size = 0
    for line in reversed(lines):
        if result and len(result) % LINES_PER_SLICE == 0:
            yield None
        item = encodeJSONBytes(line.toJSON())
        size += len(item) + 1
        if size > MAX_LOGS_REPLY:
            raise overReply(len(lines), len(result), MAX_LOGS_REPLY)
        result.append(item)
    result.reverse()
    return ReplyArray(result)


def unfollow(session: Session, options: Mapping[str, Any], args: Sequence[str]) -> Any:
    name = validateName(args[0])
    if name not in session.followHandles:
        raise BadRequest(f"not following the logs of {name}")
    session.endFollowing(name)
    return {"name": name, "following": False}


def wait(session: Session, options: Mapping[str, Any], args: Sequence[str]) -> Any:
    name = validateName(args[0])
    condition = options.get("for", WaitCondition.NOT_RUNNING)
    if condition not in WaitCondition.ALL:
        raise BadRequest(
            f"bad --for {condition!r}: expected one of " + ", ".join(WaitCondition.ALL)
        )
    timeout = parseSeconds(options["timeout"], "timeout") if "timeout" in options else None
    d = session.state.backend.wait(name, condition)
    if timeout is not None:
        d.addTimeout(timeout, session.state.clock)
    session.pending.add(d)

    def settled(passthrough: Any) -> Any:
        session.pending.discard(d)
        return passthrough

    d.addBoth(settled)

    def timedOut(failure: Any) -> None:
        failure.trap(TimeoutError)
        raise BackendError(
            f"timed out after {timeout:g} s waiting for {name} ({condition})"
        )

    def result(container: Container) -> dict[str, Any]:
        state = "removed" if condition == WaitCondition.REMOVED else container.state
        reply = {"name": name, "state": state, "exit_code": container.exitCode}
        if condition in WaitCondition.HEALTH and container.health is not None:
            reply["health"] = container.health.status
        return reply

    return d.addCallbacks(result, timedOut)


def stats(session: Session, options: Mapping[str, Any], args: Sequence[str]) -> Any:
    """
    The usage of every running container, or of each named one, sorted by
    name.  C{--no-stream} is accepted for C{docker stats}' sake: the
    daemon always answers once.
    """
    names = [validateName(arg) for arg in args]
    state = session.state
    d = state.backend.stats(names).addCallback(
        lambda rows: state.slices.run(encodeStats(rows))
    )
    return _abandonedWithClient(session, d)


def encodeStats(rows: list[ContainerStats]) -> Job[ReplyArray]:
    """
    The JSON of C{stats}' reply, sorted by name, as a L{pycm.slicedwork.Job}
    (L{STATS_PER_SLICE} rows a slice): thousands of containers are encoded
    between other requests, and written a piece at a time, as logs.
    """
    result: list[bytes] = []
    for row in sorted(rows, key=lambda row: row.name):
        if result and len(result) % STATS_PER_SLICE == 0:
            yield None
        result.append(encodeJSONBytes(row.toJSON()))
    return ReplyArray(result)


def events(session: Session, options: Mapping[str, Any], args: Sequence[str]) -> Any:
    log = session.state.events
    if options.get("off"):
        if set(options) - {"off"}:
            raise BadRequest("--off takes no other option")
        session.unsubscribe()
        return {"events": False, "last_id": log.lastId}
    filters = parseFilters(options.get("filter", []), EVENT_FILTERS)
    since = parseCount(
        options["since"], "since", "an event id (a whole number: the id of the last event seen, "
        "as --json shows it; 0 for every retained event)") if "since" in options else None
    # With --since, the retained events after it follow the OK reply, a
    # slice a turn, up to last_id; then the live ones, in order.

    def subscribe(_: object = None) -> dict[str, Any]:
        lastId = session.subscribe(filters, since)
        return {"events": True, "last_id": lastId}

    if session.replaying:
        # Asked again while a replay is being sent: this reply comes after
        # its last event, at the pace the client reads them.
        return session.whenReplayed().addCallback(subscribe)
    return subscribe()
