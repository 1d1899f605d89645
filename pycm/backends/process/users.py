"""
C{--user=USER[:GROUP]} for host processes: who a run (and its health
check) runs as (L{resolveUser}), the environment a login gives
(L{RunUser.loginEnvironment}), and the C{setpriv} command line that
switches to it (L{RunUser.setprivArgs}, L{findSetpriv}).
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import subprocess

import attrs

from pycm.errors import BadRequest
from pycm.model import DEFAULT_PATH

#: The largest uid or gid (2**32 - 2: -1 means "unchanged" to the kernel).
MAX_ID = 2**32 - 2

ROOT_NEEDED = "the daemon must run as root to run containers as another user (--user {user})"


def hasAcl(path: str) -> bool:
    """Whether C{path} has a POSIX access ACL (which mode bits do not show)."""
    try:
        os.getxattr(path, "system.posix_acl_access")
    except OSError:
        return False
    return True


@attrs.frozen
class RunUser:
    """
    Who a run runs as.

    @ivar uid: its user id; C{gid}: its group id; C{groups}: its
        supplementary groups (C{initgroups} for a user with a passwd
        entry; only C{gid} for a bare uid without one).
    @ivar name: the passwd name, or None for a bare uid without an entry.
    @ivar home: its home directory (C{/} without a passwd entry).
    @ivar shell: its login shell, or None without a passwd entry.
    """

    uid: int
    gid: int
    groups: tuple[int, ...]
    name: str | None
    home: str
    shell: str | None

    def loginEnvironment(self) -> dict[str, str]:
        """C{HOME}, C{USER}, C{LOGNAME} and C{SHELL}, as a login sets them."""
        env = {"HOME": self.home}
        if self.name is not None:
            env["USER"] = env["LOGNAME"] = self.name
        if self.shell:
            env["SHELL"] = self.shell
        return env

    def cannotEnter(self, directory: str) -> str | None:
        """
        The first directory on the way to C{directory} (absolute) that this
        user may not search, as the kernel's mode bits decide it, or None
        when it may enter (root may enter anything, and so may a user
        through a directory with an ACL, which this does not read).
        """
        if self.uid == 0:
            return None
        path = "/"
        # The real path: a symbolic link's target is what is walked.
        for part in [p for p in os.path.realpath(directory).split("/") if p] + [None]:
            try:
                info = os.stat(path)
            except OSError:
                return None  # gone or unreadable: the spawn says why
            if hasAcl(path):
                return None
            if info.st_uid == self.uid:
                allowed = info.st_mode & 0o100
            elif info.st_gid == self.gid or info.st_gid in self.groups:
                allowed = info.st_mode & 0o010
            else:
                allowed = info.st_mode & 0o001
            if not allowed:
                return path
            if part is not None:
                path = os.path.join(path, part)
        return None

    def isCurrent(self) -> bool:
        """Is this the daemon's own user and group (nothing to switch)?"""
        return self.uid == os.geteuid() and self.gid == os.getegid()

    def setprivArgs(self, setpriv: str) -> list[str]:
        """C{setpriv} switching to this user, ready for the command after it."""
        groups = (
            "--groups=" + ",".join(str(g) for g in self.groups) if self.groups else "--clear-groups"
        )
        return [setpriv, f"--reuid={self.uid}", f"--regid={self.gid}", groups, "--"]


def _number(text: str) -> int | None:
    if text.isdigit():
        value = int(text)
        if value <= MAX_ID:
            return value
    return None


def resolveUser(user: str) -> RunUser:
    """
    Look C{USER[:GROUP]} up (names or numbers) as Docker does.

    @raise BadRequest: naming an unknown user or group.
    """
    userPart, _, groupPart = user.partition(":")
    entry: pwd.struct_passwd | None
    uid = _number(userPart)
    if uid is not None:
        try:
            entry = pwd.getpwuid(uid)
        except KeyError:
            entry = None
    else:
        try:
            entry = pwd.getpwnam(userPart)
        except KeyError:
            raise BadRequest(f"unknown user {userPart!r} (--user {user}): no such user") from None
        uid = entry.pw_uid
    gid: int | None = None
    if groupPart:
        gid = _number(groupPart)
        if gid is None:
            try:
                gid = grp.getgrnam(groupPart).gr_gid
            except KeyError:
                raise BadRequest(
                    f"unknown group {groupPart!r} (--user {user}): no such group"
                ) from None
    if entry is None:
        # Docker's rule for a uid without a passwd entry: group 0, HOME=/.
        gid = 0 if gid is None else gid
        return RunUser(uid, gid, (gid,), None, "/", None)
    if gid is None:
        gid = entry.pw_gid
    try:
        groups = tuple(sorted(set(os.getgrouplist(entry.pw_name, gid))))
    except OSError:
        groups = (gid,)
    return RunUser(uid, gid, groups, entry.pw_name, entry.pw_dir or "/", entry.pw_shell or None)


def checkAllowed(user: str, runUser: RunUser) -> None:
    """
    A daemon that is not root can only run containers as itself.

    @raise BadRequest: saying that the daemon must run as root.
    """
    if os.geteuid() != 0 and not runUser.isCurrent():
        raise BadRequest(ROOT_NEEDED.format(user=user))


_setpriv: list[str | None] = []


def findSetpriv() -> str | None:
    """
    This machine's C{setpriv} (util-linux), or None if it is missing or
    cannot switch (checked once, by switching to the daemon's own ids).
    """
    if not _setpriv:
        found = shutil.which("setpriv", path=DEFAULT_PATH)
        if found is not None:
            me = RunUser(os.geteuid(), os.getegid(), (), None, "/", None)
            args = me.setprivArgs(found)
            if os.geteuid() != 0:
                args[3] = "--keep-groups"
            try:
                result = subprocess.run(
                    [*args, "true"], stdin=subprocess.DEVNULL, capture_output=True, timeout=10
                )
                if result.returncode != 0:
                    found = None
            except (OSError, subprocess.SubprocessError):
                found = None
        _setpriv.append(found)
    return _setpriv[0]
