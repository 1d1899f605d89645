"""
One exception per protocol error code (L{PycmError} and its subclasses).
Everything below the protocol fails with one of these; they become
C{ERR <code> <message>} lines in exactly one place
(L{pycm.daemon.replies.encodeError}).  Any other exception reaching the
protocol is a bug, reported as C{internal}.
"""

from __future__ import annotations


class PycmError(Exception):
    """
    Base of every error that has a protocol error code.

    @cvar code: the protocol's error code, e.g. C{"not_found"}.
    """

    code = "internal"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message

    def __eq__(self, other: object) -> bool:
        return (
            type(other) is type(self)
            and self.message == other.message  # type: ignore[attr-defined]
        )

    def __hash__(self) -> int:
        return hash((type(self), self.message))


class BadRequest(PycmError):
    """Unknown command, wrong arguments or options, bad quoting, not UTF-8."""

    code = "bad_request"


class InvalidName(PycmError):
    """A container name breaks the naming rule."""

    code = "invalid_name"

    def __init__(self, name: str) -> None:
        super().__init__(
            f"invalid container name {name!r}: a name is 2 to 128 characters, "
            "a letter or digit then letters, digits, '_', '.' or '-' "
            "(it must match [a-zA-Z0-9][a-zA-Z0-9_.-]+)"
        )
        self.name = name


class NotFound(PycmError):
    """No container with that name."""

    code = "not_found"

    def __init__(self, name: str) -> None:
        super().__init__(f"no such container: {name}")
        self.name = name


class Conflict(PycmError):
    """The name is taken, or the container's state forbids the operation."""

    code = "conflict"


class NoImage(PycmError):
    """The backend has no such image."""

    code = "no_image"

    def __init__(self, image: str, detail: str = "") -> None:
        message = f"no such image: {image}"
        if detail:
            message += f" ({detail})"
        super().__init__(message)
        self.image = image


class Unauthorized(PycmError):
    """The daemon wants C{auth TOKEN} first, or the token is wrong."""

    code = "unauthorized"


class TooLong(PycmError):
    """The request line is over the limit."""

    code = "too_long"


class Unavailable(PycmError):
    """The backend cannot be reached (for example the Docker engine is down)."""

    code = "unavailable"


class BackendError(PycmError):
    """The backend refused or failed; the message says what it said."""

    code = "backend"


class InternalError(PycmError):
    """A bug.  The daemon logs the traceback and goes on serving."""

    code = "internal"


#: Every error code of the protocol, in the order the contract lists them.
ERROR_CODES = (
    "bad_request",
    "invalid_name",
    "not_found",
    "conflict",
    "no_image",
    "unauthorized",
    "too_long",
    "unavailable",
    "backend",
    "internal",
)
