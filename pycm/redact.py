"""
What the daemon's log may say about a request: never a token, an option's
value or a command's arguments, whatever the log level
(L{describeRequest}); and messages it must log with every word that could
be secret taken out (L{scrub}).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

#: What stands in the log for a word that is not shown.
REDACTED = "<redacted>"

#: Secrets shorter than this are only taken out as whole words, so that a
#: value such as C{1} does not eat every digit of a message.
_SHORT = 4


#: What an image reference may look like (registry, path, tag, digest).
_IMAGE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/:@-]*\Z")


def isImageReference(word: str) -> bool:
    """Does C{word} look like an image (not C{KEY=VALUE}, not an option)?"""
    return len(word) <= 255 and _IMAGE.match(word) is not None


def describeRequest(
    command: str, options: Mapping[str, Any], args: Sequence[str], visible: int
) -> str:
    """
    A parsed request as the log shows it: its command word, the names of
    its options, the container's name and C{run}'s image; every other word
    (option values, the command run in the container, a token) is
    L{REDACTED}:

        run --env=<redacted> --memory=<redacted> web busybox <redacted> <redacted>
        auth <redacted>

    (A request's outcome is logged as its error code only, never the
    error's message: a backend's message may quote what the container was
    made with, which the request does not show.)

    @param visible: how many leading arguments may be shown (a container
        name and an image the caller has checked); the rest are redacted.
    """
    words = [command]
    for name, value in options.items():
        if value is True:
            words.append(f"--{name}")
        else:
            values = value if isinstance(value, list) else [value]
            words.extend(f"--{name}={REDACTED}" for _ in values)
    for index, arg in enumerate(args):
        words.append(arg if index < visible else REDACTED)
    return " ".join(words)


def containerSecrets(
    command: Iterable[object], env: Mapping[Any, object], labels: Mapping[Any, object],
    workdir: object,
) -> list[str]:
    """
    The words of a container's spec that could be secret (see L{scrub}),
    as strings whatever they are (a damaged record's may not be).
    """
    secrets = [*command, *env.values(), *labels.values()]
    if workdir:
        secrets.append(workdir)
    return [str(secret) for secret in secrets if secret is not None and secret != ""]


def scrub(text: object, secrets: Iterable[object]) -> str:
    """
    C{text} with every secret taken out (for the messages the daemon must
    log, such as the supervisor's warnings): as written, and as C{repr} or JSON
    would quote it (the forms error messages use).  Values that are not
    strings are taken out as their text: scrubbing never fails.
    """
    text = str(text)
    forms: set[str] = set()
    for value in secrets:
        secret = value if isinstance(value, str) else "" if value is None else str(value)
        if secret:
            forms.add(secret)
            forms.add(repr(secret)[1:-1])
            forms.add(json.dumps(secret, ensure_ascii=False)[1:-1])
            forms.add(json.dumps(secret)[1:-1])
    for form in sorted(forms, key=len, reverse=True):
        if len(form) >= _SHORT:
            text = text.replace(form, REDACTED)
        else:
            text = re.sub(rf"(?<![\w]){re.escape(form)}(?![\w])", REDACTED, text)
    return text
