"""
Endpoint strings split as Twisted splits them: a backslash escapes any
character, C{:} separates parameters, and the first C{=} of a parameter
makes it a keyword.  The daemon checks its C{--listen} strings with this,
and the client finds a C{unix:} string's socket path, so that what pycm
reads is what Twisted opens.
"""

from __future__ import annotations

from twisted.python import usage


def splitEndpoint(description: str) -> tuple[list[str], dict[str, str]]:
    """
    Split an endpoint string into positional and keyword parameters, as
    Twisted's C{serverFromString} does.

    @raise usage.UsageError: if a keyword is given twice.
    """
    args: list[str] = []
    kwargs: dict[str, str] = {}
    part: list[str] = []
    current = ""
    separators = ":="
    characters = iter(description)

    def finish() -> None:
        if len(part) == 1:
            args.append(part[0])
            return
        key, value = part[0], part[1]
        if key in kwargs:
            raise usage.UsageError(f"--listen {description}: {key}= is given twice")
        kwargs[key] = value

    for character in characters:
        if character in separators:
            part.append(current)
            current = ""
            if character == ":":
                finish()
                part = []
                separators = ":="
            else:
                separators = ":"
        elif character == "\\":
            current += next(characters, "")
        else:
            current += character
    part.append(current)
    finish()
    return args, kwargs
