"""
The C{pycm} command line: pycm's own options (C{--host}, C{--token},
C{--json}) before the COMMAND, whose words are the daemon's, and what they
make together: a L{CommandLine}, with the token to send and the L{Plan} of
requests.  Plain spellings are read without argparse, which costs a
one-shot call a tenth of its time to import.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, NamedTuple, NoReturn

from pycm.client.config import (
    chosenToken,
    daemonToken,
    defaultEndpoint,
    findToken,
    refuseClearToTLS,
)
from pycm.client.exits import UsageError
from pycm.client.plan import Plan, PlanError, planCommand
from pycm.statepaths import defaultTokenPath

if TYPE_CHECKING:
    import argparse

DESCRIPTION = """\
Talk to the pycm container manager daemon.

With a COMMAND, send that one request and print the reply.  Without one,
read requests from standard input (one per line) when it is a pipe or a
file, or start the interactive shell when it is a terminal."""

EPILOG = """\
commands (run by the daemon; `pycm help COMMAND` shows one command's usage):
  ping | version | info | help [COMMAND]
  run    [OPTIONS] NAME [IMAGE [COMMAND [ARG...]]]   create and start
  create [OPTIONS] NAME [IMAGE [COMMAND [ARG...]]]   create only
         options: -e/--env K=V, --env-file=FILE, -l/--label K=V,
                  --restart=POLICY, --stop-timeout=S, --stop-signal=SIG,
                  --memory=SIZE, --cpus=N, -w/--workdir=DIR,
                  -u/--user=USER[:GROUP], --health-cmd=CMD,
                  --health-interval=DUR ... (`pycm run --help`),
                  --replicas=N, --constraint=EXPR (swarm backend)
  start NAME... | stop [--time=S] NAME... | restart [--time=S] NAME...
  kill [--signal=SIG] NAME... | rm [--force] NAME...   (one request a name)
  scale NAME N | scale NAME=N...                 run N copies (swarm backend)
  apply [--dry-run] [--prune] [--project=NAME] [--progress-id=ID] FILE
                                                 make the containers match a
                                                 services file (`apply --help`)
  list (ls, ps) [--filter=KEY=VALUE]...          a table of containers
         filters: status=STATE (or state=), name=NAME, label=K[=V]
         client options: -q/--quiet (names), --format json|TEMPLATE
                         ({{.Name}} {{.Status}} {{.Health}} {{.Image}} ...)
  inspect NAME                                   every detail
  logs [--tail=N] [--since=10m|TIME] [--follow] [-t] NAME...
                                                 output (--follow: until it stops)
  wait [--for=COND] [--timeout=S] NAME           until it stops (or COND:
                                                 running, healthy, unhealthy...)
  events [--since=ID] [--filter=KEY=VALUE]...    stream events until Ctrl-C
  stats [--no-stream] [NAME...]                  CPU, memory, pids, block I/O
                                                 (refreshed every second)
  top                                            a live full-screen view (q quits)
  completion bash|zsh|fish                       a shell completion script
  COMMAND --help                                 the same as help COMMAND

examples:
  pycm run web host sleep 1000
  pycm ls
  pycm logs --follow web
  pycm run --replicas=3 --constraint node.role==worker web nginx
  pycm scale web 5
  pycm apply --dry-run services.toml
  pycm --json inspect web
  pycm --host unix:/run/pycm.sock ps
  printf 'ping\\nlist\\n' | pycm
  pycm                       (the interactive shell)

environment:
  PYCM_HOST    the daemon's endpoint (default tcp:127.0.0.1:8080)
  PYCM_TOKEN   the token (default: read from the daemon's token file, and
               sent only to the endpoints that daemon listens on)
  PYCM_HISTORY the shell's history file (default:
               ~/.local/state/pycm/history; empty: keep none)

exit status: 0 OK, 1 the daemon answered ERR, 2 usage error (the
             client's, or a request the daemon refused as malformed:
             bad_request, invalid_name), 3 the daemon cannot be reached,
             130 interrupted before the reply came (Ctrl-C ends `events`
             and `logs -f` with 0); the worst of these for several names
             or piped lines"""



class CommandLine(NamedTuple):
    """
    What the command line asked for (a NamedTuple: attrs would cost a
    one-shot call a tenth of its time to import).

    @ivar tokenSource: where the token came from, for error messages.
    @ivar tokenWithheld: the token file's token, found but not sent: the
        endpoint is not one the daemon owning that file listens on with a
        token required.
    """

    host: str
    token: str | None
    json: bool
    command: tuple[str, ...]
    tokenSource: str | None = None
    #: What C{command} asks of the daemon (see L{pycm.client.plan}).
    plan: Plan | None = None
    tokenWithheld: str | None = None

    @property
    def knownTokens(self) -> tuple[str, ...]:
        """The tokens this client holds, sent or not: never shown nor kept."""
        return tuple(token for token in (self.token, self.tokenWithheld) if token)


def makeParser() -> argparse.ArgumentParser:
    """The parser of pycm's own options (those before COMMAND)."""
    import argparse

    class _Parser(argparse.ArgumentParser):
        def error(self, message: str) -> NoReturn:
            raise UsageError(message)

    parser = _Parser(
        prog="pycm",
        usage="pycm [--host ENDPOINT] [--token TOKEN] [--json] [COMMAND [ARG...]]",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--host", "-H", metavar="ENDPOINT",
        help="a Twisted client endpoint: tcp:HOST:PORT, unix:PATH, "
        "tls:HOST:PORT (default: $PYCM_HOST, else tcp:127.0.0.1:8080); ssl: is "
        "refused, since it does not check the daemon's certificate: use tls:",
    )
    parser.add_argument(
        "--token", metavar="TOKEN",
        help="authenticate with TOKEN (default: $PYCM_TOKEN, else the "
        "daemon's token file when readable, sent only to that daemon's own "
        "listeners)",
    )
    parser.add_argument(
        "--json", action="store_true",
        help="print replies as raw JSON (with piped input: the raw "
        "OK/ERR/EVENT lines)",
    )
    parser.add_argument("--version", action="version",
                        version=f"pycm client {_version()}")
    return parser


def _version() -> str:
    from pycm import __version__
    return __version__


_VALUE_OPTIONS = frozenset({"--host", "-H", "--token"})


def _plainOptions(own: Sequence[str]) -> tuple[str | None, str | None, bool] | None:
    """
    pycm's own options (host, token, json) when they are spelled plainly
    (C{--host X}, C{--host=X}, C{-H X}, C{--token X}, C{--token=X},
    C{--json}), as argparse reads them; None for anything else (help, an
    abbreviation, a value that looks like an option, a mistake), which
    argparse then reads.  Importing argparse and building the parser cost
    a one-shot call a tenth of its time.
    """
    values: dict[str, str | None] = {"host": None, "token": None}
    json = False
    words = iter(own)
    for word in words:
        if word == "--json":
            json = True
            continue
        option, equals, value = word.partition("=")
        name = {"--host": "host", "-H": "host", "--token": "token"}.get(option)
        if name is None or (equals and option == "-H"):
            return None
        if not equals:
            value = next(words, "-")
        if value.startswith("-"):
            return None
        values[name] = value
    return values["host"], values["token"], json


def parseArguments(
    argv: Sequence[str],
    environ: Mapping[str, str] | None = None,
    uid: int | None = None,
) -> CommandLine:
    """
    Parse pycm's options; the first word that is not one of them starts
    the COMMAND, whose words are left alone (so C{pycm logs --follow web}
    passes C{--follow} to the daemon).

    @raise UsageError: for a bad command line.
    """
    if environ is None:
        environ = os.environ
    argv = list(argv)
    split = 0
    while split < len(argv):
        word = argv[split]
        if word == "--":
            break
        if not word.startswith("-") or word == "-":
            break
        split += 2 if word in _VALUE_OPTIONS else 1
    own, command = argv[:split], argv[split:]
    if command and command[0] == "--":
        command = command[1:]
    plain = _plainOptions(own)
    if plain is None:
        parsed = makeParser().parse_args(own)
        plain = parsed.host, parsed.token, parsed.json
    host, explicitToken, asJSON = plain
    host = host or defaultEndpoint(environ)
    refuseClearToTLS(host, environ, uid)
    token = findToken(explicitToken, environ, uid)
    source: str | None = None
    withheld = None
    if token and (explicitToken or environ.get("PYCM_TOKEN")):
        # Chosen: sent wherever the user says, if a request can carry it.
        source = "--token" if explicitToken else "$PYCM_TOKEN"
        token = chosenToken(token, source)
    else:
        # Found, not chosen: only the token of the daemon that listens there.
        found = daemonToken(host, environ, uid)
        if found is not None:
            token, source = found
        elif token:
            token, withheld = None, defaultTokenPath(environ, uid)
    for word in command:
        if "\n" in word or "\r" in word:
            raise UsageError("an argument cannot contain a line break")
    plan = None
    if command:
        try:
            plan = planCommand(command)
        except PlanError as e:
            raise UsageError(str(e), e.hint) from None
    return CommandLine(
        host=host,
        token=token,
        json=asJSON,
        command=tuple(command),
        tokenSource=source,
        plan=plan,
        tokenWithheld=withheld,
    )
