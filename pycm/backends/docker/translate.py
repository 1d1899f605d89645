"""
Pure mappings between pycm's values and the Docker Engine API's JSON, with
no I/O (each is unit-tested without an engine).  The choices they make for
states, exit codes and stop timeouts are in docs/docker-backend.md.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from pycm.backends.docker.health import healthcheckBody, healthcheckFrom, healthFrom
from pycm.backends.docker.statsjson import usageFromStats as usageFromStats  # re-exported
from pycm.errors import (
    BackendError,
    BadRequest,
    Conflict,
    NoImage,
    NotFound,
    PycmError,
    Unavailable,
)
from pycm.model import (
    DEFAULT_STOP_SIGNAL,
    DEFAULT_STOP_TIMEOUT,
    Container,
    ContainerSpec,
    RestartPolicy,
    State,
    parseSignal,
    parseTime,
    signalName,
)
from pycm.services.config import CONFIG_LABEL, PROJECT_LABEL, SERVICE_LABEL

#: The label on every container pycm creates; C{list} shows only those.
MANAGED_LABEL = "io.pycm.managed"
#: The engine's filters for pycm's containers only (list and events).
LIST_FILTERS = {"label": [f"{MANAGED_LABEL}=true"]}
#: Labels under this prefix are pycm's own and are not shown to clients,
#: but for C{apply}'s (a client's as any other label).
PRIVATE_PREFIX = "io.pycm."
APPLY_LABELS = frozenset({PROJECT_LABEL, SERVICE_LABEL, CONFIG_LABEL})
ENV_KEYS_LABEL = "io.pycm.env-keys"
STOP_TIMEOUT_LABEL = "io.pycm.stop-timeout"
#: The restart policy's name, so a daemon that starts again knows it from
#: the engine's list (and tells policy restarts as such).
RESTART_POLICY_LABEL = "io.pycm.restart-policy"
#: The image as the client named it (Podman reports C{localhost/NAME} for
#: a local C{NAME}; Docker the name as given).
IMAGE_LABEL = "io.pycm.image"
#: Podman's init (catatonit), as its inspect shows it: C{Path} is this and
#: C{Args} are C{--} and then the command.
PODMAN_INIT = "/run/podman-init"

#: Engine actions that are contract events; the rest are ignored.
ACTIONS = frozenset({"create", "start", "die", "stop", "kill", "restart", "destroy"})
#: Engine actions that are other engines' names for contract events:
#: Podman's compatible event stream says C{remove} where Docker says
#: C{destroy} (Docker has no container C{remove} action).
ACTION_ALIASES = {"remove": "destroy"}

_ZERO_TIME = "0001-01-01T00:00:00Z"

_STATES = {
    "created": State.CREATED,
    "running": State.RUNNING,
    "paused": State.RUNNING,
    "restarting": State.RESTARTING,
    "removing": State.EXITED,
    "exited": State.EXITED,
    "dead": State.DEAD,
    # Podman's own states, which its compatible inspect may show between
    # Docker's: a container set up to start, one being stopped, one
    # stopped and not yet cleaned up.
    "configured": State.CREATED,
    "initialized": State.CREATED,
    "stopping": State.RUNNING,
    "stopped": State.EXITED,
}


def mapState(engineState: Mapping[str, Any]) -> str:
    """Turn the engine's C{State} object into a pycm state (see the module)."""
    status = str(engineState.get("Status", "")).lower()
    state = _STATES.get(status, State.DEAD)
    if state == State.CREATED and engineState.get("Error"):
        return State.DEAD
    return state


def mapExitCode(code: int | None, signalsSent: Iterable[int], oomKilled: bool) -> int | None:
    """Report 128+N as -N when signal N was sent (see the module)."""
    if code is None:
        return None
    if oomKilled and code == 137:
        return -9
    if code > 128 and (code - 128) in set(signalsSent):
        return -(code - 128)
    return code


def _time(text: str | None) -> float | None:
    if not text or text.startswith("0001-01-01"):
        return None
    return parseTime(text)


def userLabels(labels: Mapping[str, str] | None) -> dict[str, str]:
    """The labels a client set: everything but pycm's own."""
    return {k: v for k, v in (labels or {}).items() if not isPrivateLabel(k)}


def isPrivateLabel(key: str) -> bool:
    """Is C{key} one of pycm's own labels, which a client may not set?"""
    return key.startswith(PRIVATE_PREFIX) and key not in APPLY_LABELS


def isManaged(labels: Mapping[str, str] | None) -> bool:
    """Did pycm create the container with these labels?"""
    return (labels or {}).get(MANAGED_LABEL) == "true"


def containerFromInspect(
    data: Mapping[str, Any],
    signalsSent: Iterable[int] = (),
    stopping: bool = False,
) -> Container:
    """
    Build a L{Container} from C{GET /containers/ID/json}.

    @param signalsSent: the signals sent since it last started.
    @param stopping: pycm is stopping it right now.
    """
    config = data.get("Config") or {}
    host = data.get("HostConfig") or {}
    engineState = data.get("State") or {}
    labels = config.get("Labels") or {}
    state = mapState(engineState)
    if stopping and state == State.RUNNING:
        state = State.STOPPING
    exitCode = None
    finished = None
    if state in (State.EXITED, State.DEAD) and (
        _time(engineState.get("FinishedAt")) or engineState.get("Error")
    ):
        exitCode = mapExitCode(
            engineState.get("ExitCode"), signalsSent, bool(engineState.get("OOMKilled"))
        )
        finished = _time(engineState.get("FinishedAt"))
    command = commandOf(data)
    policy = host.get("RestartPolicy") or {}
    policyName = policy.get("Name") or "no"
    retries = policy.get("MaximumRetryCount") or None
    restartPolicy = RestartPolicy(policyName, retries if policyName == "on-failure" else None)
    envKeys = None
    if ENV_KEYS_LABEL in labels:
        try:
            envKeys = set(json.loads(labels[ENV_KEYS_LABEL]))
        except ValueError:
            envKeys = None
    env = {}
    for item in config.get("Env") or ():
        key, _, value = item.partition("=")
        if envKeys is None or key in envKeys:
            env[key] = value
    stopTimeout: float = DEFAULT_STOP_TIMEOUT
    if STOP_TIMEOUT_LABEL in labels:
        try:
            stopTimeout = float(labels[STOP_TIMEOUT_LABEL])
        except ValueError:
            pass
    elif config.get("StopTimeout") is not None:
        stopTimeout = float(config["StopTimeout"])
    pid = engineState.get("Pid") or None
    nanoCpus = host.get("NanoCpus") or 0
    check = healthcheckFrom(config.get("Healthcheck"))
    return Container(
        name=str(data.get("Name", "")).lstrip("/"),
        id=str(data.get("Id", "")),
        backend="docker",
        image=str(labels.get(IMAGE_LABEL) or config.get("Image", "")),
        command=command,
        state=state,
        created=parseTime(data.get("Created")) or 0.0,
        pid=pid if state in State.ALIVE else None,
        exitCode=exitCode,
        started=_time(engineState.get("StartedAt")),
        finished=finished,
        restartPolicy=restartPolicy,
        restartCount=int(data.get("RestartCount") or 0),
        labels=userLabels(labels),
        env=env,
        stopTimeout=stopTimeout,
        stopSignal=_signalText(config.get("StopSignal")),
        memory=host.get("Memory") or None,
        cpus=nanoCpus / 1e9 if nanoCpus else None,
        workdir=config.get("WorkingDir") or None,
        error=engineState.get("Error") or None,
        oomKilled=exitCode is not None and engineState.get("OOMKilled") is True,
        health=healthFrom(engineState, check),
        healthcheck=check,
        user=config.get("User") or None,
    )


def commandOf(data: Mapping[str, Any]) -> tuple[str, ...]:
    """
    The command a container runs, from its inspect: C{Path} and C{Args}
    (without Podman's init in front: see L{PODMAN_INIT}), else C{Cmd}.
    """
    path = data.get("Path")
    args = list(data.get("Args") or ())
    if path == PODMAN_INIT and args[:1] == ["--"] and len(args) > 1:
        path, args = args[1], args[2:]
    if path:
        return (str(path), *(str(arg) for arg in args))
    return tuple(str(word) for word in (data.get("Config") or {}).get("Cmd") or ())


def _signalText(value: Any) -> str:
    """The stop signal by name: Podman reports a number (C{15})."""
    if value is None or value == "":
        return DEFAULT_STOP_SIGNAL
    text = str(value)
    if text.isdigit():
        return signalName(int(text))
    return text


def environment(spec: ContainerSpec) -> list[str]:
    """
    C{spec}'s environment as an engine takes it (C{KEY=VALUE} strings).

    @raise BadRequest: for a name that is empty or holds C{=}.
    """
    for key in spec.env:
        if not key or "=" in key:
            raise BadRequest(f"bad --env name {key!r}")
    return [f"{k}={v}" for k, v in spec.env.items()]


def checkedWorkdir(spec: ContainerSpec) -> str:
    """
    C{spec}'s working directory (given).

    @raise BadRequest: if it is not an absolute path.
    """
    workdir = spec.workdir or ""
    if not workdir.startswith("/"):
        raise BadRequest(f"--workdir {workdir!r} must be an absolute path")
    return workdir


def createBody(
    spec: ContainerSpec,
    image: str,
    networkMode: str | None = None,
    init: bool = True,
) -> dict[str, Any]:
    """
    The JSON body of C{POST /containers/create} for C{spec}.

    @raise BadRequest: for values the engine cannot take.
    """
    labels = dict(spec.labels)
    for key in labels:
        if isPrivateLabel(key):
            raise BadRequest(f"label {key!r}: the {PRIVATE_PREFIX} prefix is pycm's own")
    labels[MANAGED_LABEL] = "true"
    labels[IMAGE_LABEL] = image
    hostConfig: dict[str, Any] = {"Init": init}
    body: dict[str, Any] = {"Image": image, "Labels": labels, "HostConfig": hostConfig}
    if spec.command is not None:
        body["Cmd"] = list(spec.command)
    if spec.env:
        body["Env"] = environment(spec)
    # Only these are the client's: the engine adds the image's (PATH...).
    labels[ENV_KEYS_LABEL] = json.dumps(sorted(spec.env))
    if spec.workdir is not None:
        body["WorkingDir"] = checkedWorkdir(spec)
    if spec.user is not None:
        body["User"] = spec.user
    if spec.healthcheck is not None:
        body["Healthcheck"] = healthcheckBody(spec.healthcheck)
    # Always sent: an engine (20.10) with no StopSignal takes a kill with any
    # signal as a client stop that ends the restart policy; with one, only
    # the stop signal and SIGKILL do (what the contract says).
    body["StopSignal"] = signalName(parseSignal(spec.stopSignal or DEFAULT_STOP_SIGNAL))
    if spec.stopTimeout is not None:
        if spec.stopTimeout < 0:
            raise BadRequest("--stop-timeout must not be negative")
        body["StopTimeout"] = math.ceil(spec.stopTimeout)
        labels[STOP_TIMEOUT_LABEL] = repr(float(spec.stopTimeout))
    else:
        # Always sent: Podman takes none as 0 (a stop is a SIGKILL at
        # once); Docker as its default, which this is.
        body["StopTimeout"] = math.ceil(DEFAULT_STOP_TIMEOUT)
    if spec.memory is not None:
        if spec.memory <= 0:
            raise BadRequest("--memory must be positive")
        hostConfig["Memory"] = spec.memory
    if spec.cpus is not None:
        if not spec.cpus > 0:
            raise BadRequest("--cpus must be positive")
        hostConfig["NanoCpus"] = round(spec.cpus * 1e9)
    policy = spec.restartPolicy
    labels[RESTART_POLICY_LABEL] = policy.name
    if policy.name != "no":
        hostConfig["RestartPolicy"] = {
            "Name": policy.name,
            "MaximumRetryCount": policy.maxRetries or 0,
        }
    if networkMode:
        hostConfig["NetworkMode"] = networkMode
    return body


def splitImage(reference: str) -> tuple[str, str]:
    """
    Split an image reference into C{fromImage} and C{tag} for a pull:
    C{busybox} -> C{("busybox", "latest")}, C{host:5000/a/b:1} ->
    C{("host:5000/a/b", "1")}, C{a@sha256:...} -> C{("a", "sha256:...")}.
    """
    if "@" in reference:
        name, _, digest = reference.partition("@")
        return name, digest
    slash = reference.rfind("/")
    colon = reference.rfind(":")
    if colon > slash:
        return reference[:colon], reference[colon + 1 :]
    return reference, "latest"


def sinceParam(timestamp: str) -> str:
    """
    Turn the engine's RFC 3339 timestamp (nanoseconds) into the
    C{seconds.nanoseconds} form of its C{since} parameters, exactly.
    """
    text = timestamp.rstrip("Z")
    head, _, fraction = text.partition(".")
    whole = datetime.fromisoformat(head + "+00:00").timestamp()
    digits = (fraction + "000000000")[:9]
    return f"{int(whole)}.{digits}"


#: What the engine (and registries through it) say when an image is not
#: there: at create (C{No such image}), at a pull (C{manifest unknown},
#: C{repository does not exist}); never a bare "not found", which a
#: missing network says too.
_MISSING_IMAGE = (
    "no such image",
    "manifest unknown",
    "repository does not exist",
    "name unknown",
)
#: What the engine says when a registry could not be reached.
_REGISTRY_UNREACHABLE = (
    "connection refused",
    "no such host",
    "i/o timeout",
    "timeout exceeded",
    "network is unreachable",
    "connection reset",
    "temporary failure in name resolution",
    "tls handshake timeout",
    "server misbehaving",
)


def isMissingImage(message: str) -> bool:
    """Does the engine's C{message} say that an image does not exist?"""
    lowered = message.lower()
    if any(phrase in lowered for phrase in _REGISTRY_UNREACHABLE):
        return False
    return any(phrase in lowered for phrase in _MISSING_IMAGE)


def mapPullError(image: str, status: int | None, message: str) -> PycmError:
    """
    Turn a failed pull of C{image} into a pycm error: L{NoImage} only when
    the registry says there is no such image (or refuses it: 401, 403);
    L{Unavailable} when the registry cannot be reached; L{BackendError}
    for anything else (disk full, a registry's 500).

    @param status: the engine's HTTP status, or None for an error in the
        pull's progress stream.
    """
    lowered = message.lower()
    if any(phrase in lowered for phrase in _REGISTRY_UNREACHABLE):
        return Unavailable(f"cannot pull {image}: registry unreachable: {message}")
    if status in (401, 403, 404) or isMissingImage(message) or "access denied" in lowered:
        return NoImage(image, message)
    return BackendError(f"cannot pull {image}: {message}")


def isStateConflict(status: int, message: str) -> bool:
    """
    Does the engine refuse because of the container's state (a kill of
    one not running, a remove of one running)?  Docker says so with 409;
    Podman with 500 and C{container state improper}.
    """
    return status == 409 or "container state improper" in message.lower()


def isNameConflict(status: int, message: str) -> bool:
    """
    Is the engine's create error a name already in use?  Docker says so
    with 409; Podman with 500 (C{... that name is already in use}).
    """
    return status in (409, 500) and "already in use" in message.lower()


def mapEngineError(
    status: int,
    message: str,
    name: str | None = None,
    image: str | None = None,
    badRequest: bool = True,
) -> PycmError:
    """
    Turn an engine error into a pycm error: 404 -> L{NotFound} (with
    C{image}, that is a create: L{NoImage} when the image is missing,
    L{BackendError} for anything else missing, such as a network), 409
    (or Podman's 500 saying the same: L{isNameConflict},
    L{isStateConflict}) -> L{Conflict}, 400 -> L{BadRequest} (unless
    C{badRequest} is false), others -> L{BackendError} with the engine's
    message.
    """
    if status == 404:
        if image is not None:
            if isMissingImage(message):
                return NoImage(image, message)
            return BackendError(f"docker engine: {message}")
        if name is not None:
            return NotFound(name)
        return BackendError(f"docker engine: {message}")
    if name is not None and isNameConflict(status, message):
        return Conflict(f'container name "{name}" is already in use')
    if isStateConflict(status, message):
        return Conflict(message)
    if status == 400 and badRequest:
        return BadRequest(message)
    return BackendError(f"docker engine: {message}")
