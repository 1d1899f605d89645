"""
The Docker backend's options (C{--docker-host} and so on on the daemon's
command line): their defaults and help, and how their values parse.
"""

from __future__ import annotations

import math

from pycm.errors import BadRequest

#: The backend options C{makeBackend} takes (C{--docker-host} and so on on
#: the daemon's command line), with their defaults and help.
OPTIONS: dict[str, tuple[str, str]] = {
    "docker-host": (
        "",
        "the engine: unix:///PATH or tcp://HOST:PORT (default: $DOCKER_HOST, "
        "else unix:///var/run/docker.sock)",
    ),
    "default-image": ("busybox:latest", "the image of a run/create that names none"),
    "pull": ("never", "never: a missing image is ERR no_image; missing: pull it"),
    "request-timeout": (
        "10",
        "seconds an engine request may take (a log read: its status, and each pause in its body)",
    ),
    "pull-timeout": ("300", "seconds a pull may take"),
    "default-command": (
        "",
        "the command of a run/create that gives none, as shell words (default: the image's own)",
    ),
    "network": ("", "HostConfig.NetworkMode of new containers (e.g. none)"),
    "init": ("yes", "yes: run docker-init as PID 1 (signals behave as on a host)"),
    "stop-on-close": (
        "no",
        "yes: stop pycm's running containers when the daemon stops",
    ),
}


def parseYesNo(option: str, text: str) -> bool:
    """The value of a yes/no option; L{BadRequest} for anything else."""
    value = text.strip().lower()
    if value in ("yes", "true", "1", "on"):
        return True
    if value in ("no", "false", "0", "off"):
        return False
    raise BadRequest(f"backend option {option} must be yes or no, not {text!r}")


def parseSeconds(option: str, text: str) -> float:
    """The value of an option in seconds; L{BadRequest} unless positive and finite."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0 or math.isinf(value):
        raise BadRequest(
            f"backend option {option} must be a positive number of seconds, not {text!r}"
        )
    return value
