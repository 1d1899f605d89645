"""
The swarm backend's options (C{--docker-host}, C{--swarm-node-host} and so
on on the daemon's command line): their defaults and help, and how their
values parse.  The values shared with the Docker backend parse as there.
"""

from __future__ import annotations

from pycm.backends.docker.engine import EngineAddress
from pycm.errors import BackendError, BadRequest

#: The backend options C{makeBackend} takes, with their defaults and help.
OPTIONS: dict[str, tuple[str, str]] = {
    "docker-host": (
        "",
        "the swarm manager's engine: unix:///PATH or tcp://HOST:PORT (default: "
        "$DOCKER_HOST, else unix:///var/run/docker.sock)",
    ),
    "swarm-node-host": (
        "",
        "NODE=ADDRESS[,NODE=ADDRESS...]: the engine of another node (its hostname "
        "or id), for kill and stats; the manager's own node needs none",
    ),
    "default-image": ("busybox:latest", "the image of a run/create that names none"),
    "default-command": (
        "",
        "the command of a run/create that gives none, as shell words (default: the image's own)",
    ),
    "request-timeout": (
        "10",
        "seconds an engine request may take (a log read: its status, and each pause in its body)",
    ),
    "init": ("yes", "yes: run docker-init as each task's PID 1 (signals behave as on a host)"),
    "network": ("", "the networks new services' tasks join, comma-separated (default: none)"),
    "restart-delay": (
        "0.1",
        "seconds Swarm waits before it restarts a task (its restart delay; Docker's first "
        "backoff is as long)",
    ),
    "poll-interval": ("0.1", "seconds between two looks at the swarm while something changes"),
    "idle-poll-interval": ("5", "seconds between two looks at the swarm when nothing changes"),
}


def parseNodeHosts(text: str) -> dict[str, EngineAddress]:
    """
    Parse C{NODE=ADDRESS,NODE=ADDRESS} (the values of every
    C{--swarm-node-host}, joined with commas) into node -> engine address.

    @raise BadRequest: for an item without C{=}, an empty node, a node given
        twice or an address that is not C{unix://} or C{tcp://}.
    """
    hosts: dict[str, EngineAddress] = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        node, sep, address = item.partition("=")
        node = node.strip()
        if not sep or not node:
            raise BadRequest(f"--swarm-node-host wants NODE=ADDRESS, not {item!r}")
        if node in hosts:
            raise BadRequest(f"--swarm-node-host names node {node!r} twice")
        try:
            hosts[node] = EngineAddress.parse(address.strip())
        except BackendError as e:
            raise BadRequest(f"--swarm-node-host {node}: {e}") from None
    return hosts


def parseNetworks(text: str) -> tuple[str, ...]:
    """The networks of C{network}: comma-separated names, blanks dropped."""
    return tuple(part.strip() for part in text.split(",") if part.strip())


__all__ = ["OPTIONS", "parseNetworks", "parseNodeHosts"]
