"""
Tests for C{--user} on the process backend (L{pycm.backends.process.users}
and the runtime's use of it): looking users up, the login environment, and
real runs and health checks as another user (as root: this machine and CI
run as root; elsewhere those skip).
"""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
from collections.abc import Generator
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from pycm.backends.process import users
from pycm.backends.process.backend import makeBackend
from pycm.backends.process.cgroupdetect import detect
from pycm.backends.process.cgroups import NO_CGROUPS
from pycm.backends.process.runtime import ProcessRuntime
from pycm.backends.process.spawn import runEnvironment
from pycm.backends.process.users import RunUser, checkAllowed, resolveUser
from pycm.errors import BackendError, BadRequest
from pycm.health import HealthCheck
from pycm.model import Container, ContainerSpec, State
from pycm.services.applier import Applier
from pycm.services.definition import serviceSetFrom
from pycm.testing.conformance import RunRecorder

#: The command whose output says who a run is.
WHOAMI = 'id -u; id -g; id -G; echo "$HOME|${USER-unset}|${LOGNAME-unset}|${SHELL-unset}"'

NOBODY = pwd.getpwnam("nobody")


def container(
    user: str | None, command: tuple[str, ...] = ("sh", "-c", WHOAMI), **kw: Any
) -> Container:
    """A container value running C{command} (L{WHOAMI}) as C{user}."""
    return Container(
        name="who",
        id="0123456789abcdef0123456789abcdef",
        backend="process",
        image="host",
        command=command,
        state=State.CREATED,
        created=0.0,
        user=user,
        **kw,
    )


def nobodyLines() -> list[str]:
    """What L{WHOAMI} says as C{nobody}."""
    groups = sorted(set(os.getgrouplist("nobody", NOBODY.pw_gid)))
    return [
        str(NOBODY.pw_uid),
        str(NOBODY.pw_gid),
        " ".join(str(g) for g in groups),
        f"{NOBODY.pw_dir}|nobody|nobody|{NOBODY.pw_shell}",
    ]


class ResolveUserTests(SynchronousTestCase):
    """L{resolveUser}: USER[:GROUP] as Docker reads it."""

    def test_name(self) -> None:
        """A name: its uid, primary group, supplementary groups, passwd fields."""
        user = resolveUser("nobody")
        self.assertEqual((user.uid, user.gid, user.name), (NOBODY.pw_uid, NOBODY.pw_gid, "nobody"))
        self.assertIn(NOBODY.pw_gid, user.groups)
        self.assertEqual(
            user.loginEnvironment(),
            {
                "HOME": NOBODY.pw_dir,
                "USER": "nobody",
                "LOGNAME": "nobody",
                "SHELL": NOBODY.pw_shell,
            },
        )

    def test_numberWithEntry(self) -> None:
        """A uid with a passwd entry is that user."""
        self.assertEqual(resolveUser(str(NOBODY.pw_uid)), resolveUser("nobody"))

    def test_bareNumber(self) -> None:
        """A uid without an entry: group 0, only that group, HOME=/, no USER."""
        user = resolveUser("4321")
        self.assertEqual(user, RunUser(4321, 0, (0,), None, "/", None))
        self.assertEqual(user.loginEnvironment(), {"HOME": "/"})

    def test_group(self) -> None:
        """A group by name or number replaces the primary group."""
        self.assertEqual(resolveUser("4321:55").gid, 55)
        self.assertEqual(resolveUser("4321:55").groups, (55,))
        self.assertEqual(resolveUser("nobody:root").gid, 0)
        self.assertEqual(resolveUser("nobody:7").gid, 7)

    def test_unknown(self) -> None:
        """An unknown user or group is a BadRequest naming it and --user."""
        e = self.assertRaises(BadRequest, resolveUser, "pycm-no-such-user")
        self.assertIn("unknown user 'pycm-no-such-user'", e.message)
        self.assertIn("--user", e.message)
        e = self.assertRaises(BadRequest, resolveUser, "nobody:pycm-no-such-group")
        self.assertIn("unknown group 'pycm-no-such-group'", e.message)

    def test_setprivArgs(self) -> None:
        """The switch: real and effective ids, the groups (or none)."""
        self.assertEqual(
            RunUser(5, 6, (6, 7), "x", "/", None).setprivArgs("/usr/bin/setpriv"),
            ["/usr/bin/setpriv", "--reuid=5", "--regid=6", "--groups=6,7", "--"],
        )
        self.assertEqual(RunUser(5, 6, (), None, "/", None).setprivArgs("sp")[3], "--clear-groups")

    def test_notRoot(self) -> None:
        """A daemon that is not root may only run containers as itself."""
        self.patch(users.os, "geteuid", lambda: 1000)
        self.patch(users.os, "getegid", lambda: 1000)
        e = self.assertRaises(
            BadRequest, checkAllowed, "nobody", RunUser(65534, 65534, (), None, "/", None)
        )
        self.assertEqual(
            e.message,
            "the daemon must run as root to run containers as another user (--user nobody)",
        )
        checkAllowed("1000", RunUser(1000, 1000, (1000,), None, "/", None))

    def test_environmentOrder(self) -> None:
        """The login's variables come under the container's own --env."""
        c = container("nobody", env={"USER": "mine"})
        env = runEnvironment(
            {"HOME": "/root", "PATH": "/bin"},
            c,
            None,
            None,
            resolveUser("nobody").loginEnvironment(),
        )
        self.assertEqual(env["USER"], "mine")
        self.assertEqual(env["LOGNAME"], "nobody")
        self.assertEqual(env["HOME"], NOBODY.pw_dir)


class CheckUserTests(SynchronousTestCase):
    """What the runtime and the backend refuse, before anything is saved."""

    def test_noSetpriv(self) -> None:
        """As root without setpriv, another user is refused, saying why."""
        if os.geteuid() != 0:
            self.skipTest("only root switches users")
        runtime = ProcessRuntime(Clock(), cgroups=NO_CGROUPS, setpriv=None)
        e = self.assertRaises(BadRequest, runtime.checkUser, "nobody")
        self.assertIn("setpriv", e.message)

    def test_createRefuses(self) -> None:
        """
        The backend's create refuses an unknown user, and another user when
        the daemon is not root (patched here), with nothing saved.
        """
        backend = makeBackend(Clock(), self.mktemp(), {"cgroups": "off"})
        self.addCleanup(backend.store.close)
        self.successResultOf(backend.open())
        f = self.failureResultOf(
            backend.create(ContainerSpec("a", command=("true",), user="pycm-no-such-user")),
            BadRequest,
        )
        self.assertIn("pycm-no-such-user", f.value.message)
        self.patch(users.os, "geteuid", lambda: 1000)
        f = self.failureResultOf(
            backend.create(ContainerSpec("b", command=("true",), user="nobody")), BadRequest
        )
        self.assertIn("must run as root", f.value.message)
        self.assertEqual(self.successResultOf(backend.list()), [])
        self.assertEqual(backend.store.load(), [])


    def test_applyRefusesBeforeAnything(self) -> None:
        """
        An apply whose services this machine refuses (a user it does not
        have, an image it lacks) creates none of them, the good one
        neither, and says which service and key, as the file spells it
        (C{tests.test_services_e2e} has more CPUs than the machine).
        """
        backend = makeBackend(Clock(), self.mktemp(), {"cgroups": "off"})
        self.addCleanup(backend.store.close)
        self.successResultOf(backend.open())
        wanted = serviceSetFrom({"project": "shop", "services": {
            "good": {"command": ["sleep", "100"]},
            "bad": {"user": "pycm-no-such-user"},
            "odd": {"image": "nosuch"},
        }})  # fmt: skip
        applier = Applier(backend, Clock().seconds)
        for dryRun in (True, False):
            f = self.failureResultOf(applier.apply(wanted, dryRun=dryRun), BadRequest)
            self.assertEqual(
                f.value.message,
                "service bad, key user: unknown user 'pycm-no-such-user': no such user; "
                "service odd, key image: no such image: nosuch; nothing was changed")
        self.assertEqual(self.successResultOf(backend.list()), [])
        self.assertEqual(backend.store.load(), [])

    def test_refusals(self) -> None:
        """
        The backend's refusals: each option this machine refuses of a
        spec, none for one it takes; nothing is created.
        """
        backend = makeBackend(Clock(), self.mktemp(), {"cgroups": "off"})
        self.addCleanup(backend.store.close)
        self.successResultOf(backend.open())
        self.assertEqual(backend.refusals(ContainerSpec("a", command=("true",))), {})
        refused = backend.refusals(ContainerSpec(
            "a", image="nosuch", user="pycm-no-such-user", cpus=1.0, stopTimeout=7200.0))
        self.assertEqual(sorted(refused), ["cpus", "image", "stop-timeout", "user"])
        self.assertIn("no such image: nosuch", refused["image"])
        self.assertEqual(self.successResultOf(backend.list()), [])


class RealUserTests(TestCase):
    """Real runs and health checks as another user, every way a run starts."""

    timeout = 60

    def setUp(self) -> None:
        if os.geteuid() != 0:
            self.skipTest("only root runs containers as another user")

    def runtime(self, **kw: Any) -> ProcessRuntime:
        runtime = ProcessRuntime(reactor, **kw)
        self.addCleanup(runtime.close)
        return runtime

    @inlineCallbacks
    def whoami(
        self, runtime: ProcessRuntime, c: Container
    ) -> Generator[Deferred[Any], Any, list[str]]:
        recorder = RunRecorder()
        yield runtime.spawn(c, recorder, "run-user-1")
        code = yield recorder.ended
        self.assertEqual(code, 0, recorder.lines("stderr"))
        return [line.decode() for line in recorder.lines("stdout")]

    @inlineCallbacks
    def test_native(self) -> Generator[Deferred[Any], Any, None]:
        """A run started with posix_spawn runs as nobody, with its login environment."""
        lines = yield self.whoami(
            self.runtime(cgroups=detect("/pycm-user-tests")), container("nobody")
        )
        self.assertEqual(lines, nobodyLines())

    @inlineCallbacks
    def test_launcher(self) -> Generator[Deferred[Any], Any, None]:
        """A run started through env and setsid runs as nobody."""
        runtime = self.runtime(cgroups=NO_CGROUPS, native=False)
        if runtime.launcher is None:
            self.skipTest("no setsid launcher on this machine")
        lines = yield self.whoami(runtime, container("nobody"))
        self.assertEqual(lines, nobodyLines())

    @inlineCallbacks
    def test_helper(self) -> Generator[Deferred[Any], Any, None]:
        """A run started by the exec helper (as runs with limits are) runs as nobody."""
        runtime = self.runtime(cgroups=NO_CGROUPS, native=False, launcher=None)
        lines = yield self.whoami(runtime, container("nobody"))
        self.assertEqual(lines, nobodyLines())

    @inlineCallbacks
    def test_bareUid(self) -> Generator[Deferred[Any], Any, None]:
        """A uid without a passwd entry: group 0 (or the one given), HOME=/, no USER."""
        runtime = self.runtime(cgroups=NO_CGROUPS)
        lines = yield self.whoami(runtime, container("4321"))
        self.assertEqual(lines, ["4321", "0", "0", "/|unset|unset|unset"])
        lines = yield self.whoami(runtime, container("4321:55", env={"USER": "given"}))
        self.assertEqual(lines, ["4321", "55", "55", "/|given|unset|unset"])

    @inlineCallbacks
    def test_unknownAtStart(self) -> Generator[Deferred[Any], Any, None]:
        """A user gone since create: the start fails saying so."""
        runtime = self.runtime(cgroups=NO_CGROUPS)
        d = runtime.spawn(container("pycm-no-such-user"), RunRecorder())
        f = yield self.assertFailure(d, BackendError)
        self.assertIn("unknown user 'pycm-no-such-user'", f.message)

    @inlineCallbacks
    def test_healthCheckAsTheUser(self) -> Generator[Deferred[Any], Any, None]:
        """A health check runs as the container's user, with its login environment."""
        runtime = self.runtime(cgroups=detect("/pycm-user-tests"))
        longRun = container("nobody", ("sleep", "1000"), healthcheck=HealthCheck(WHOAMI))
        recorder = RunRecorder()
        run = yield runtime.spawn(longRun, recorder, "run-user-2")
        try:
            result = yield runtime.probe(longRun, run, 10)
        finally:
            run.signal(9)
            yield recorder.ended
        self.assertEqual((result.exitCode, result.output.splitlines()), (0, nobodyLines()))


class CannotEnterTests(SynchronousTestCase):
    """L{RunUser.cannotEnter}: whether a user may reach a workdir, by mode bits."""

    def setUp(self) -> None:
        # In the system's temporary directory, which anyone may search
        # (the clone's own directories may not be).
        self.top = os.path.realpath(tempfile.mkdtemp(dir="/tmp"))
        self.addCleanup(shutil.rmtree, self.top)
        os.makedirs(os.path.join(self.top, "inner"))
        os.chmod(self.top, 0o755)
        self.user = RunUser(uid=54321, gid=54321, groups=(54321,), name=None, home="/",
                            shell=None)

    def test_searchable(self) -> None:
        """A path every directory of which others may search: enterable."""
        self.assertIsNone(self.user.cannotEnter(os.path.join(self.top, "inner")))

    def test_closedOnTheWay(self) -> None:
        """A directory on the way that others may not search is named."""
        os.chmod(self.top, 0o750)
        self.addCleanup(os.chmod, self.top, 0o755)
        self.assertEqual(self.user.cannotEnter(os.path.join(self.top, "inner")), self.top)

    def test_closedAtTheEnd(self) -> None:
        """The workdir itself not searchable: named too."""
        inner = os.path.join(self.top, "inner")
        os.chmod(inner, 0o700)
        self.assertEqual(self.user.cannotEnter(inner), inner)

    def test_classDecides(self) -> None:
        """
        As the kernel decides: the owner's bits for the owner, the group's
        for a member of the group (even when others may search), else the
        others' bits.
        """
        inner = os.path.join(self.top, "inner")
        st = os.stat(inner)
        os.chmod(inner, 0o105)
        owner = RunUser(uid=st.st_uid or 54322, gid=54321, groups=(), name=None, home="/",
                        shell=None)
        if st.st_uid:
            self.assertIsNone(owner.cannotEnter(inner))
        member = RunUser(uid=54321, gid=54320, groups=(st.st_gid,), name=None, home="/",
                         shell=None)
        self.assertEqual(member.cannotEnter(inner), inner)
        self.assertIsNone(self.user.cannotEnter(inner))
        os.chmod(inner, 0o050)
        self.assertIsNone(member.cannotEnter(inner))
        self.assertEqual(self.user.cannotEnter(inner), inner)

    def test_throughALink(self) -> None:
        """A path through a symbolic link is walked as its target's."""
        closed = os.path.join(self.top, "closed")
        os.makedirs(os.path.join(closed, "work"))
        os.chmod(closed, 0o700)
        link = os.path.join(self.top, "inner", "link")
        os.symlink(os.path.join(closed, "work"), link)
        self.assertEqual(self.user.cannotEnter(link), closed)

    def test_root(self) -> None:
        """Root may enter anything."""
        os.chmod(self.top, 0o700)
        self.addCleanup(os.chmod, self.top, 0o755)
        root = RunUser(uid=0, gid=0, groups=(), name="root", home="/root", shell=None)
        self.assertIsNone(root.cannotEnter(os.path.join(self.top, "inner")))


class WorkdirAsTheUserTests(TestCase):
    """A run as another user whose workdir that user cannot reach."""

    timeout = 60

    def setUp(self) -> None:
        if os.geteuid() != 0:
            self.skipTest("only root runs containers as another user")

    @inlineCallbacks
    def test_refused(self) -> Generator[Deferred[Any], Any, None]:
        """
        As Docker refuses it: the start fails naming the user, the workdir
        and the directory it may not search; nothing runs in it.
        """
        top = os.path.realpath(tempfile.mkdtemp(dir="/tmp"))
        self.addCleanup(shutil.rmtree, top)
        os.makedirs(os.path.join(top, "work"))
        os.chmod(top, 0o700)
        runtime = ProcessRuntime(reactor, cgroups=NO_CGROUPS)
        self.addCleanup(runtime.close)
        c = container("nobody", ("pwd",), workdir=os.path.join(top, "work"))
        f = yield self.assertFailure(runtime.spawn(c, RunRecorder()), BackendError)
        self.assertIn(f"user nobody cannot enter workdir {os.path.join(top, 'work')!r}",
                      f.message)
        self.assertIn(f"no search permission on {top}", f.message)
