"""
Small file helpers shared by the daemon and the client: a file replaced
whole, atomically, readable by its owner only (L{replacePrivately}).
"""

from __future__ import annotations

import os


def replacePrivately(path: str, data: bytes, sync: bool = False) -> None:
    """
    Replace C{path} with C{data} atomically: written to a temporary file
    beside it (mode 0600, never through a symlink), optionally fsynced,
    then renamed over it.  Readers see the old content or the new, never
    a part.

    @raise OSError: if it could not be done (the temporary file is gone).
    """
    temporary = f"{path}.{os.getpid()}.tmp"
    try:
        # A leftover of a crash (or anything planted there, a hard link
        # included) is removed, never written through: O_EXCL.
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        fd = os.open(
            temporary,
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
            0o600,
        )
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if sync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(temporary, path)
    except OSError:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
