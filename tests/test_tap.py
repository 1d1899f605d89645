"""Tests for L{pycm.daemon.tap}: the daemon's options and listeners."""

from __future__ import annotations

import os
import shutil
import signal
import stat
import tempfile
from typing import Any

from twisted.application.service import Service
from twisted.internet.address import UNIXAddress
from twisted.internet.defer import Deferred, fail
from twisted.internet.error import CannotListenError
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python import usage
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from pycm.backends.memory import MemoryBackend
from pycm.daemon.auth import loadOrCreateToken, newToken, readToken, tokensMatch
from pycm.daemon.eventlog import EventLog
from pycm.daemon.listeners import (
    InsecureListener,
    ListenerService,
    checkBoundAddress,
    classifyListener,
)
from pycm.daemon.service import PycmService, _exitAtExit
from pycm.daemon.session import DaemonState
from pycm.daemon.startup import SEE_ABOVE, StartupReport, plainStartStatus, waitForStart
from pycm.daemon.tap import DEFAULT_LISTEN, Options, makeService
from pycm.endpoints import splitEndpoint
from pycm.errors import BackendError, BadRequest


class ClassifyListenerTests(SynchronousTestCase):
    def test_loopbackTCP(self) -> None:
        """Loopback TCP wants a token, unless --no-auth."""
        for description in (DEFAULT_LISTEN, "tcp6:9:interface=\\:\\:1",
                            "tcp:1:interface=localhost", "tcp:1:127.0.0.2"):
            self.assertTrue(classifyListener(description, False).requireAuth, description)
            self.assertFalse(classifyListener(description, True).requireAuth, description)

    def test_nonLoopbackTCPRefused(self) -> None:
        """TCP without TLS on any other address is refused."""
        for description in ("tcp:8080", "tcp:8080:interface=0.0.0.0",
                            "tcp:8080:interface=192.168.1.5", "tcp6:80:interface=\\:\\:"):
            self.assertRaises(usage.UsageError, classifyListener, description, False)

    def test_tlsElsewhere(self) -> None:
        """TLS on a public address is allowed, and always wants the token."""
        listener = classifyListener("ssl:8443:privateKey=k.pem", noAuth=True)
        self.assertTrue(listener.requireAuth)
        self.assertFalse(listener.loopback)

    def test_unixAndStdio(self) -> None:
        """UNIX sockets and stdio need no token."""
        self.assertFalse(classifyListener("unix:/tmp/x.sock", False).requireAuth)
        self.assertFalse(classifyListener("stdio:", False).requireAuth)

    def test_unknownKind(self) -> None:
        """An endpoint pycm cannot place always wants the token."""
        self.assertTrue(classifyListener("onion:8080", True).requireAuth)

    def test_splitLikeTwisted(self) -> None:
        """
        Endpoint strings split as Twisted splits them: a backslash escapes
        any character, and only the first = of a parameter counts.
        """
        from twisted.internet.endpoints import _parse

        for description in ("tcp:80:interface=127.0.0.1", "t\\cp:1:inter\\face=0.0.0.0",
                            "unix:/tmp/a\\:mode=1.sock", "ssl:1:k.pem:c.pem:SSLv23:0.0.0.0",
                            "tcp:1:interface=a=b", "unix:address=/x:mode=600:lockfile=0"):
            self.assertEqual(splitEndpoint(description), _parse(description), description)

    def test_escapesDoNotFoolTheCheck(self) -> None:
        """Escaped kinds and keywords are seen as Twisted sees them."""
        for description in ("t\\cp:8080:interface=0.0.0.0",
                            "tcp:8080:interface=127.0.0.1:inter\\face=0.0.0.0",
                            "tcp:8080:127.0.0.1:interface=0.0.0.0"):
            self.assertRaises(usage.UsageError, classifyListener, description, True)

    def test_sslPositionalInterface(self) -> None:
        """ssl's interface is its fifth positional parameter, not its second."""
        listener = classifyListener("ssl:8443:127.0.0.1", noAuth=True)
        self.assertFalse(listener.loopback)
        self.assertTrue(listener.requireAuth)
        listener = classifyListener("ssl:8443:k.pem:c.pem:SSLv23:127.0.0.1", noAuth=True)
        self.assertTrue(listener.loopback)
        self.assertFalse(listener.requireAuth)

    def test_unixMode(self) -> None:
        """
        UNIX sockets are 0600 (0660 with a group) unless a mode is given;
        one that others could use is refused, however the mode is spelled.
        """
        self.assertEqual(classifyListener("unix:/tmp/s", False).unixMode, 0o600)
        self.assertEqual(classifyListener("unix:/tmp/s", False, "root").unixMode, 0o660)
        self.assertEqual(classifyListener("unix:/tmp/s:mode=640", False).unixMode, 0o640)
        for description in ("unix:/tmp/s:mode=666", "unix:/tmp/s:666",
                            "unix:address=/tmp/x\\:mode=1.sock"):
            if description.endswith("1.sock"):
                self.assertEqual(classifyListener(description, False).unixMode, 0o600)
            else:
                self.assertRaises(usage.UsageError, classifyListener, description, False)

    def test_duplicateKeyword(self) -> None:
        """A keyword given twice is refused (Twisted would keep the last)."""
        self.assertRaises(usage.UsageError, classifyListener,
                          "tcp:1:interface=127.0.0.1:interface=127.0.0.1", False)

    def test_boundAddressChecked(self) -> None:
        """
        Once listening, plaintext or a supposedly loopback listener on a
        non-loopback address is refused.
        """
        from twisted.internet.address import IPv4Address

        public = IPv4Address("TCP", "10.1.2.3", 80)
        local = IPv4Address("TCP", "127.0.0.1", 80)
        unknown = classifyListener("onion:8080", False)
        self.assertRaises(InsecureListener, checkBoundAddress, unknown, public)
        checkBoundAddress(unknown, local)
        tls = classifyListener("ssl:443:privateKey=k.pem", False)
        checkBoundAddress(tls, public)
        tcp = classifyListener("tcp:80:interface=127.0.0.1", True)
        self.assertRaises(InsecureListener, checkBoundAddress, tcp, public)


class ListenFormTests(SynchronousTestCase):
    """
    C{--listen} takes Twisted's server strings, port first
    (C{tcp:PORT:interface=HOST}); a client's C{--host}, and the address the
    daemon logs, are host first (C{tcp:HOST:PORT}).
    """

    def refusal(self, description: str) -> str:
        """The message C{--listen description} is refused with."""
        error = self.assertRaises(usage.UsageError, classifyListener, description, True)
        return str(error)

    def test_hostFirstRecognised(self) -> None:
        """
        C{tcp:127.0.0.1:18082} is refused with the string meant, not as a
        listener off loopback on "address" 18082; the string suggested is
        one C{--listen} takes, on loopback.
        """
        for description, meant in [
            ("tcp:127.0.0.1:18082", "tcp:18082:interface=127.0.0.1"),
            ("tcp:localhost:18082:backlog=5", "tcp:18082:interface=localhost:backlog=5"),
            ("tcp6:::1:18082", "tcp6:18082:interface=\\:\\:1"),
            ("tcp6:[::1]:18082", "tcp6:18082:interface=\\:\\:1"),
            ("ssl:127.0.0.1:8443:privateKey=/k\\:1.pem",
             "ssl:8443:interface=127.0.0.1:privateKey=/k\\:1.pem"),
        ]:
            message = self.refusal(description)
            self.assertIn(f"did you mean --listen {meant}?", message)
            self.assertIn("takes the port first", message)
            self.assertNotIn("in the clear", message)
            self.assertTrue(classifyListener(meant, True).loopback, meant)

    def test_badPort(self) -> None:
        """
        A port that is not a whole number from 0 to 65535 is refused
        naming it, before the address is checked (Twisted would fail later,
        with a traceback for 99999).
        """
        for description, port in [
            ("tcp:abc", "'abc'"),
            ("tcp:99999:interface=127.0.0.1", "'99999'"),
            ("tcp:", "''"),
            ("tcp:port=8o8o:interface=127.0.0.1", "'8o8o'"),
            ("tcp:localhost:http", "'localhost'"),
        ]:
            message = self.refusal(description)
            self.assertIn(f"the port {port} is not a whole number from 0 to 65535", message)
            self.assertIn("tcp:PORT:interface=HOST", message)

    def test_mappedLoopback(self) -> None:
        """
        An IPv4-mapped loopback address (C{::ffff:127.0.0.1}) is loopback:
        taken, the token not required with C{--no-auth}; a mapped address
        off loopback is refused as any other.
        """
        for description in ("tcp:0:interface=\\:\\:ffff\\:127.0.0.1",
                            "tcp6:0:interface=\\:\\:ffff\\:127.0.0.2"):
            listener = classifyListener(description, True)
            self.assertTrue(listener.loopback, description)
            self.assertFalse(listener.requireAuth, description)
        message = self.refusal("tcp:0:interface=\\:\\:ffff\\:192.0.2.1")
        self.assertIn("a TCP listener on ::ffff:192.0.2.1 without TLS", message)

    def test_unescapedInterface(self) -> None:
        """
        An IPv6 interface whose colons are not escaped is refused saying
        so, with the string meant, never as "a TCP listener on every
        address" (the colons cut it into an empty interface and more
        parameters).
        """
        for description, meant in [
            ("tcp:18182:interface=::ffff:127.0.0.1",
             "tcp:18182:interface=\\:\\:ffff\\:127.0.0.1"),
            ("tcp6:18182:interface=::1", "tcp6:18182:interface=\\:\\:1"),
        ]:
            message = self.refusal(description)
            self.assertNotIn("every address", message)
            self.assertIn("escape them with a backslash", message)
            self.assertIn(f"--listen {meant}", message)
            self.assertTrue(classifyListener(meant, True).loopback, meant)

    def test_portFirstUnchanged(self) -> None:
        """The port-first forms, positional or by keyword, are taken as before."""
        for description in ("tcp:0:interface=127.0.0.1", "tcp:8080:127.0.0.1",
                            "tcp:port=8080:interface=127.0.0.1"):
            self.assertTrue(classifyListener(description, True).loopback, description)

    def test_loggedForms(self) -> None:
        """
        The daemon's "listening on" line gives the address, then the string
        a client's --host takes and the one --listen takes, each named: the
        latter, given to --listen, listens on the same port and interface.
        """
        from twisted.internet.address import IPv4Address, IPv6Address
        from twisted.logger import formatEvent, globalLogPublisher

        from pycm.daemon.listeners import ListenerService, describeForms

        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)

        class Port:
            def __init__(self, address: Any) -> None:
                self.address = address

            def getHost(self) -> Any:
                return self.address

        reactor = MemoryReactorClock()
        listener = classifyListener("tcp:0:interface=127.0.0.1", True)
        ListenerService(reactor, listener, None, None)._listening(
            Port(IPv4Address("TCP", "127.0.0.1", 18080))
        )
        [line] = [formatEvent(e) for e in events if "listening on" in formatEvent(e)]
        self.assertEqual(line, (
            "pycm listening on tcp:127.0.0.1:18080 (token not required; a client's "
            "--host tcp:127.0.0.1:18080, --listen tcp:18080:interface=127.0.0.1)"
        ))
        pasted = line.rsplit("--listen ", 1)[1].rstrip(")")
        self.assertEqual(splitEndpoint(pasted), (["tcp", "18080"], {"interface": "127.0.0.1"}))
        self.assertTrue(classifyListener(pasted, True).loopback)

        events.clear()
        listener = classifyListener("tcp6:0:interface=\\:\\:1", True)
        ListenerService(reactor, listener, None, None)._listening(
            Port(IPv6Address("TCP", "::1", 18081))
        )
        [line] = [formatEvent(e) for e in events if "listening on" in formatEvent(e)]
        pasted = line.rsplit("--listen ", 1)[1].rstrip(")")
        self.assertEqual(splitEndpoint(pasted), (["tcp6", "18081"], {"interface": "::1"}))

        # TLS (its --listen needs the key: not repeated) and a UNIX socket.
        self.assertEqual(
            describeForms("ssl", IPv4Address("TCP", "127.0.0.1", 8443)),
            "; a client's --host tls:127.0.0.1:8443",
        )
        self.assertEqual(describeForms("unix", UNIXAddress("/run/pycm.sock")), "")


class OptionsTests(SynchronousTestCase):
    def parse(self, *args: str) -> Options:
        options = Options()
        options.parseOptions(list(args))
        return options

    def test_defaults(self) -> None:
        """The defaults are the contract's: process backend, 127.0.0.1:8080."""
        options = self.parse("--state-dir", self.mktemp())
        self.assertEqual(options["backend"], "process")
        self.assertEqual(options["listen"], [DEFAULT_LISTEN])

    def test_repeatableListen(self) -> None:
        """--listen may be given many times."""
        options = self.parse("--listen", "unix:/tmp/a", "--listen", "stdio:")
        self.assertEqual(options["listen"], ["unix:/tmp/a", "stdio:"])

    def test_unknownBackend(self) -> None:
        """An unknown backend is a usage error naming the available ones."""
        error = self.assertRaises(usage.UsageError, self.parse, "--backend", "zz")
        self.assertIn("memory", str(error))
        self.assertIn("process", str(error))

    def test_backendOptions(self) -> None:
        """Backend options are passed through by name."""
        options = self.parse("--backend", "docker", "--docker-host", "unix:///x.sock",
                             "--backend-option", "network=none")
        self.assertEqual(options["backend-options"],
                         {"docker-host": "unix:///x.sock", "network": "none"})
        self.assertRaises(usage.UsageError, self.parse, "--backend-option", "novalue")

    def test_badValues(self) -> None:
        """Nonsense limits and levels are refused."""
        self.assertRaises(usage.UsageError, self.parse, "--max-line-length", "10")
        self.assertRaises(usage.UsageError, self.parse, "--log-level", "loud")
        self.assertRaises(usage.UsageError, self.parse, "--socket-group", "no-such-group-x")
        self.assertRaises(usage.UsageError, self.parse, "--auth-timeout", "0")
        self.assertRaises(usage.UsageError, self.parse, "--auth-timeout", "soon")
        self.assertRaises(usage.UsageError, self.parse, "--max-connections", "0")

    def test_connectionBoundsReachEveryListener(self) -> None:
        """
        --auth-timeout and --max-connections reach the factory of every
        listener, which share one cap; without --max-connections the cap
        comes from the open-file limit.
        """
        import resource

        from twisted.internet.testing import MemoryReactorClock

        from pycm.daemon.tap import defaultMaxConnections, makeService

        def factories(*args: str) -> list[Any]:
            options = self.parse("--backend", "memory", "--state-dir", self.mktemp(),
                                 "--listen", "tcp:0:interface=127.0.0.1",
                                 "--listen", "unix:" + self.mktemp(), *args)
            service = makeService(options, MemoryReactorClock())
            self.addCleanup(service._runClosers, None)
            return [child.factory for child in service]

        tcp, unix = factories("--auth-timeout", "2.5", "--max-connections", "7")
        self.assertEqual((tcp.authTimeout, unix.authTimeout), (2.5, 2.5))
        self.assertIs(tcp.connectionLimit, unix.connectionLimit)
        self.assertEqual(tcp.connectionLimit.maximum, 7)
        self.assertEqual((tcp.capped, unix.capped), (True, False))
        tcp, _ = factories("--no-auth")
        self.assertEqual((tcp.requireAuth, tcp.capped), (False, True))
        tcp, _ = factories()
        self.assertEqual(tcp.authTimeout, 30)
        fileLimit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        self.assertEqual(tcp.connectionLimit.maximum, defaultMaxConnections(fileLimit))

    def test_legacyFramingReachesEveryListener(self) -> None:
        """
        --legacy-framing turns pause framing on for the factory of every
        listener; it is off without it, and it changes no token rule.
        """
        from twisted.internet.testing import MemoryReactorClock

        from pycm.daemon.tap import makeService

        def factories(*args: str) -> list[Any]:
            options = self.parse("--backend", "memory", "--state-dir", self.mktemp(),
                                 "--listen", "tcp:0:interface=127.0.0.1",
                                 "--listen", "unix:" + self.mktemp(), *args)
            service = makeService(options, MemoryReactorClock())
            self.addCleanup(service._runClosers, None)
            return [child.factory for child in service]

        tcp, unix = factories("--legacy-framing")
        self.assertEqual((tcp.legacyFraming, unix.legacyFraming), (True, True))
        self.assertEqual((tcp.requireAuth, unix.requireAuth), (True, False))
        tcp, unix = factories()
        self.assertEqual((tcp.legacyFraming, unix.legacyFraming), (False, False))

    def test_whenReadyHook(self) -> None:
        """
        makeService hands its C{whenReady} hook (twistd's: freeze what
        start-up made, L{pycm.daemon.startup.freezeStartupObjects}) to the service,
        which runs it once ready; given a reactor and no hook, it freezes
        nothing.
        """
        import gc

        from twisted.internet.testing import MemoryReactorClock

        from pycm.daemon.tap import makeService

        calls: list[str] = []
        for whenReady in (lambda: calls.append("ready"), None):
            options = self.parse("--backend", "memory", "--state-dir", self.mktemp(),
                                 "--listen", "unix:" + self.mktemp())
            service = makeService(options, MemoryReactorClock(), whenReady=whenReady)
            self.addCleanup(service._runClosers, None)  # type: ignore[attr-defined]
            before = gc.get_freeze_count()
            service.privilegedStartService()
            service.startService()
            self.successResultOf(service.ready)  # type: ignore[attr-defined]
            self.assertEqual(calls, ["ready"])
            self.assertEqual(gc.get_freeze_count(), before)

    def test_listenersFile(self) -> None:
        """
        Once listening, the daemon writes C{STATE_DIR/listeners}, privately:
        each TCP listener's bound host and real port (a port of the kernel's
        choosing for C{tcp:0}) and whether it wants the token; no UNIX
        socket.  It is removed on stop.
        """
        import json

        from twisted.internet.address import IPv4Address
        from twisted.internet.testing import _FakePort

        class ChosenPortReactor(MemoryReactorClock):
            """Binds as the kernel would: the interface asked, port 0 chosen."""

            def listenTCP(self, port: int, factory: Any, backlog: int = 50,
                          interface: str = "") -> _FakePort:
                super().listenTCP(port, factory, backlog, interface)
                return _FakePort(IPv4Address("TCP", interface, port or 43210))

        state = self.mktemp()
        options = self.parse("--backend", "memory", "--state-dir", state,
                             "--listen", "tcp:0:interface=127.0.0.1",
                             "--listen", "tcp:8081:interface=127.0.0.2",
                             "--listen", "unix:" + self.mktemp(), "--no-auth")
        options2 = self.parse("--backend", "memory", "--state-dir", self.mktemp(),
                              "--listen", "tcp:0:interface=127.0.0.1")
        for parsed, expected in (
            (options, [
                {"kind": "tcp", "host": "127.0.0.1", "port": 43210, "token": False},
                {"kind": "tcp", "host": "127.0.0.2", "port": 8081, "token": False},
            ]),
            (options2, [
                {"kind": "tcp", "host": "127.0.0.1", "port": 43210, "token": True,
                 "token_file": os.path.join(options2["state-dir"].path, "token")},
            ]),
        ):
            service = makeService(parsed, ChosenPortReactor(), whenReady=lambda: None)
            self.addCleanup(service._runClosers, None)  # type: ignore[attr-defined]
            path = os.path.join(parsed["state-dir"].path, "listeners")
            service.privilegedStartService()
            service.startService()
            with open(path) as f:
                self.assertEqual(json.load(f), expected)
            self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
            service.stopService()
            self.assertFalse(os.path.exists(path))

    def test_listenersFileCopy(self) -> None:
        """
        Run by twistd on a state directory other than its user's default,
        the daemon copies its listeners file to the default one's
        C{listeners.d} (L{pycm.statepaths.otherDaemonEntry}; here a
        directory of the test's), privately, naming its token file (given
        with C{--auth-token-file} here), after removing any other copy that
        lists its port (a killed daemon's); the copy is removed on stop.
        A daemon whose listeners want no token leaves no copy.
        """
        import json

        from twisted.internet.address import IPv4Address
        from twisted.internet.testing import _FakePort

        from pycm.daemon import tap

        class BindingReactor(MemoryReactorClock):
            """Binds as the kernel would, on the interface and port asked."""

            def listenTCP(self, port: int, factory: Any, backlog: int = 50,
                          interface: str = "") -> _FakePort:
                super().listenTCP(port, factory, backlog, interface)
                return _FakePort(IPv4Address("TCP", interface, port))

        tokenFile = os.path.abspath(self.mktemp())
        with open(tokenFile, "w") as f:
            f.write("a-token-of-sixteen-bytes-or-more\n")
        os.chmod(tokenFile, 0o600)
        copy = os.path.join(os.path.abspath(self.mktemp()), "listeners.d", "x.json")
        asked: list[str] = []
        self.patch(tap, "otherDaemonEntry", lambda path: asked.append(path) or copy)
        state = self.mktemp()
        options = self.parse("--backend", "memory", "--state-dir", state,
                             "--listen", "tcp:8081:interface=127.0.0.1",
                             "--auth-token-file", tokenFile)
        options.parent = {"logfile": "-"}  # as twistd parses it
        service = makeService(options, BindingReactor(), whenReady=lambda: None)
        self.addCleanup(service._runClosers, None)  # type: ignore[attr-defined]
        os.makedirs(os.path.dirname(copy))
        stale = os.path.join(os.path.dirname(copy), "stale.json")
        other = os.path.join(os.path.dirname(copy), "other.json")
        for path, port in ((stale, 8081), (other, 9999)):
            with open(path, "w") as f:
                json.dump([{"kind": "tcp", "host": "127.0.0.1", "port": port,
                            "token": True, "token_file": "/x/token"}], f)
        service.privilegedStartService()
        service.startService()
        self.assertEqual(asked, [options["state-dir"].path])
        # A killed daemon's copy listing this daemon's port is stale.
        self.assertEqual(sorted(os.listdir(os.path.dirname(copy))), ["other.json", "x.json"])
        with open(copy) as f:
            (record,) = json.load(f)
        self.assertEqual(record["token_file"], tokenFile)
        self.assertTrue(record["token"])
        self.assertEqual(stat.S_IMODE(os.stat(copy).st_mode), 0o600)
        with open(os.path.join(options["state-dir"].path, "listeners")) as f:
            self.assertEqual(json.load(f), [record])
        service.stopService()
        self.assertFalse(os.path.exists(copy))

        copy = os.path.join(os.path.abspath(self.mktemp()), "listeners.d", "x.json")
        options = self.parse("--backend", "memory", "--state-dir", self.mktemp(),
                             "--listen", "tcp:8082:interface=127.0.0.1", "--no-auth")
        options.parent = {"logfile": "-"}
        service = makeService(options, BindingReactor(), whenReady=lambda: None)
        self.addCleanup(service._runClosers, None)  # type: ignore[attr-defined]
        service.privilegedStartService()
        service.startService()
        self.assertFalse(os.path.exists(os.path.dirname(copy)))
        service.stopService()

    def test_defaultMaxConnections(self) -> None:
        """
        The default cap leaves 256 descriptors to the daemon and half the
        rest to containers, within sane bounds.
        """
        import resource

        from pycm.daemon.tap import defaultMaxConnections

        self.assertEqual(defaultMaxConnections(1024), 384)
        self.assertEqual(defaultMaxConnections(8192), 3968)
        self.assertEqual(defaultMaxConnections(256), 8)
        self.assertEqual(defaultMaxConnections(1 << 20), 10_000)
        self.assertEqual(defaultMaxConnections(resource.RLIM_INFINITY), 10_000)


class OptionsHelpTests(SynchronousTestCase):
    """What C{twistd pycm --help} says of the options."""

    def helpText(self) -> str:
        return " ".join(str(Options()).split())

    def test_authTimeoutRunsFromConnect(self) -> None:
        """
        C{--auth-timeout} is told as a deadline from connect, whatever the
        client sends meanwhile (not as an idle time).
        """
        full = self.helpText()
        text = full[full.index("--auth-timeout=") : full.index("--auth-token-file=")]
        self.assertIn("Seconds from connect within which a connection must authenticate", text)
        self.assertIn("whatever else it sends meanwhile", text)
        self.assertNotIn("idle", text)

    def test_backendOptionNamesEachBackendsOptions(self) -> None:
        """
        C{--backend-option} names the options it is the only way to set:
        the process backend's and the docker backend's (every option of
        its table with no flag of its own), and where each is documented.
        """
        from pycm.backends.docker.options import OPTIONS
        from pycm.daemon.tap import BACKEND_OPTIONS

        text = self.helpText()
        start = text.index("--backend-option=")
        help = text[start : text.index(" -d, --state-dir")].replace("- ", "-")
        self.assertNotIn("for third-party backends", help)
        for key in ("default-workdir", "cgroup-parent", "cgroups", "state-sync"):
            self.assertIn(key, help)
        dockerOnly = sorted(set(OPTIONS) - set(BACKEND_OPTIONS))
        self.assertEqual(
            dockerOnly, ["init", "network", "pull-timeout", "request-timeout", "stop-on-close"]
        )
        for key in dockerOnly:
            self.assertIn(key, help)
        self.assertIn("docs/process-backend.md", help)
        self.assertIn("docs/docker-backend.md", help)

    def test_backendOptionNamesSwarmOptions(self) -> None:
        """
        C{--backend-option} names the swarm backend's options with no flag
        of their own (every option of its table but the flags), and
        docs/swarm-backend.md where they are told.
        """
        from pycm.backends.swarm.options import OPTIONS

        text = self.helpText()
        start = text.index("--backend-option=")
        help = text[start : text.index(" -d, --state-dir")].replace("- ", "-")
        flags = {"docker-host", "swarm-node-host", "default-image", "default-command"}
        swarmOnly = sorted(set(OPTIONS) - flags)
        self.assertEqual(
            swarmOnly,
            [
                "idle-poll-interval",
                "init",
                "network",
                "poll-interval",
                "request-timeout",
                "restart-delay",
            ],
        )
        swarmPart = help[help.index("swarm backend:") :]
        for key in swarmOnly:
            self.assertIn(key, swarmPart)
        self.assertIn("docs/swarm-backend.md", swarmPart)

    def test_swarmNodeHostIsForKillAndStats(self) -> None:
        """
        C{--swarm-node-host} says both commands that use a node's engine,
        C{kill} and C{stats}, and that it is repeatable or comma-separated.
        """
        text = self.helpText()
        start = text.index("--swarm-node-host=")
        help = text[start : text.index(" --version")].replace("- ", "-")
        self.assertIn("kill", help)
        self.assertIn("stats", help)
        self.assertIn("repeatable, or comma-separated", help)

    def test_dockerOptionErrorsNameBackendOptions(self) -> None:
        """
        A bad value of a docker backend option with no flag of its own is
        refused as a backend option, not as a C{--flag} that does not exist.
        """
        from twisted.internet.task import Clock

        from pycm.backends.docker.backend import makeBackend

        for key, value, expected in [
            ("init", "maybe", "backend option init must be yes or no, not 'maybe'"),
            ("stop-on-close", "x", "backend option stop-on-close must be yes or no"),
            ("request-timeout", "-1", "backend option request-timeout must be a positive"),
            ("pull-timeout", "0", "backend option pull-timeout must be a positive"),
        ]:
            options = {"docker-host": "unix:///nowhere.sock", key: value}
            error = self.assertRaises(BadRequest, makeBackend, Clock(), None, options)
            self.assertIn(expected, str(error))
            self.assertNotIn("--", str(error))


class TokenTests(SynchronousTestCase):
    def test_createdPrivateAndReused(self) -> None:
        """The token file is made 0600 in a 0700 directory, then reused."""
        path = FilePath(self.mktemp()).child("state").child("token")
        token = loadOrCreateToken(path)
        self.assertGreaterEqual(len(token), 32)
        self.assertEqual(stat.S_IMODE(os.stat(path.path).st_mode), 0o600)
        self.assertEqual(stat.S_IMODE(os.stat(path.parent().path).st_mode), 0o700)
        self.assertEqual(loadOrCreateToken(path), token)

    def test_newTokensNeverStartWithDash(self) -> None:
        """
        No new token starts with C{-} (where a command line would read it as
        an option); one in 64 random ones would.
        """
        tokens = [newToken() for _ in range(2000)]
        self.assertFalse([t for t in tokens if t.startswith("-")])
        self.assertEqual(len(set(tokens)), len(tokens))

    def test_emptyTokenFile(self) -> None:
        """An empty token file is an error, not an empty token."""
        path = FilePath(self.mktemp())
        path.setContent(b"\n")
        self.assertRaises(BadRequest, readToken, path)

    def test_untrustedTokenFile(self) -> None:
        """
        A token file that others can read, or a link, is refused: the
        daemon never trusts a token someone else could know or plant.
        """
        path = FilePath(self.mktemp())
        path.setContent(b"abcdefghijklmnop\n")
        os.chmod(path.path, 0o644)
        self.assertRaises(BadRequest, readToken, path)
        os.chmod(path.path, 0o600)
        self.assertEqual(readToken(path), "abcdefghijklmnop")
        link = FilePath(self.mktemp())
        os.symlink(path.path, link.path)
        self.assertRaises(OSError, readToken, link)

    def test_compare(self) -> None:
        """Tokens compare equal only when identical."""
        self.assertTrue(tokensMatch("abc", "abc"))
        self.assertFalse(tokensMatch("abc", "abd"))
        self.assertFalse(tokensMatch("abc", ""))


class OpenFailureTests(SynchronousTestCase):
    """
    A backend that cannot open never leaves a daemon that listens but
    cannot answer (on a memory reactor and fake transports).
    """

    def test_backendOpenFailure(self) -> None:
        """
        When the backend's open fails, the listeners stop, a connection made
        while it was opening is closed (never left waiting), the reactor is
        stopped once it runs (even if the open failed before it ran), and
        the process is set to exit with status 1.
        """
        reactor = MemoryReactorClock()
        home = os.path.abspath(self.mktemp())
        options = Options()
        options.parseOptions([
            "--backend", "memory", "--state-dir", os.path.join(home, "state"),
            "--listen", f"unix:{os.path.join(home, 's')}",
        ])
        service = makeService(options, reactor)
        self.addCleanup(service._runClosers, None)  # type: ignore[attr-defined]
        opening: Deferred[None] = Deferred()
        service.backend.open = lambda: opening  # type: ignore[attr-defined]
        service.privilegedStartService()
        service.startService()
        [listener] = list(service)  # type: ignore[call-overload]
        stopped: list[bool] = []
        listener.port.stopListening = lambda: stopped.append(True)
        protocol = listener.factory.buildProtocol(UNIXAddress(None))
        transport = StringTransport()
        protocol.makeConnection(transport)
        protocol.dataReceived(b"ping\n")
        opening.errback(BackendError("the engine is not there"))
        self.assertEqual(len(self.flushLoggedErrors(BackendError)), 1)
        self.assertTrue(transport.disconnected)
        self.assertEqual(transport.value(), b"")
        self.assertEqual(stopped, [True])
        self.assertTrue(service.failed)  # type: ignore[attr-defined]
        self.assertIn((_exitAtExit, (1,), {}), reactor.triggers["after"]["shutdown"])
        # Stopped once the reactor runs.  (MemoryReactor's hasStopped is no
        # guide at the dependency floor: Twisted 24.3's starts out True.)
        self.assertIn((reactor.stop, (), {}), reactor.whenRunningHooks)


class UnixLockTests(SynchronousTestCase):
    """
    The C{PATH.lock} Twisted makes beside a C{unix:} socket, when the
    listen fails (real sockets on the real reactor, in a temporary
    directory: the lock and the bind are the operating system's).
    """

    def listenOn(self, path: str) -> CannotListenError:
        """Start a listener on C{path}, which must fail; the error."""
        from twisted.internet import reactor
        from twisted.internet.protocol import Factory

        service = ListenerService(reactor, classifyListener(f"unix:{path}", False),
                                  Factory(), None)
        return self.assertRaises(CannotListenError, service.privilegedStartService)

    def takenPath(self) -> str:
        """A socket path another process (here, a bare socket) listens on."""
        import socket

        # Under /tmp, not the clone: a socket's path must stay under 108 bytes.
        directory = tempfile.mkdtemp(prefix="pycm-lock-", dir="/tmp")
        self.addCleanup(shutil.rmtree, directory, True)
        path = os.path.join(directory, "s")
        other = socket.socket(socket.AF_UNIX)
        self.addCleanup(other.close)
        other.bind(path)
        other.listen(1)
        return path

    def test_failedBindRemovesItsLock(self) -> None:
        """
        A listen that took the lock and then found the path taken (another
        daemon's socket, without a lock) removes the lock it took: no
        C{PATH.lock -> PID} of a daemon that never started is left.
        """
        path = self.takenPath()
        self.listenOn(path)
        self.assertFalse(os.path.lexists(path + ".lock"))
        self.assertTrue(stat.S_ISSOCK(os.stat(path).st_mode))

    def test_anotherDaemonsLockKept(self) -> None:
        """
        A listen refused because another live process holds the lock
        leaves that lock as it is.
        """
        path = self.takenPath()
        os.symlink(str(os.getppid()), path + ".lock")
        self.listenOn(path)
        self.assertEqual(os.readlink(path + ".lock"), str(os.getppid()))

    def test_lockPath(self) -> None:
        """Only a C{unix:} listener with a lock file has a lock path."""
        self.assertEqual(classifyListener("unix:/run/p.sock", False).lockPath(),
                         "/run/p.sock.lock")
        self.assertIsNone(classifyListener("unix:/run/p.sock:lockfile=0", False).lockPath())
        self.assertIsNone(classifyListener("tcp:0:interface=127.0.0.1", False).lockPath())


class WaitForStartTests(SynchronousTestCase):
    """
    twistd's waiting parent, as pycm makes it: the daemon's start-up status
    printed as text, not as Twisted's bytes repr (C{b'...'}); real pipes.
    """

    def status(self, data: bytes) -> tuple[int, str]:
        """The exit status and what is printed for C{data} on the status pipe."""
        import io

        read, write = os.pipe()
        self.addCleanup(os.close, read)
        os.write(write, data)
        os.close(write)
        stderr = io.StringIO()
        return waitForStart(read, stderr), stderr.getvalue()

    def test_ready(self) -> None:
        """C{0}: exit 0, nothing printed."""
        self.assertEqual(self.status(b"0"), (0, ""))

    def test_reasonAbove(self) -> None:
        """
        pycm's own failure, its reason already on the terminal: exit 1 and
        nothing more (before: C{An error has occurred: b'pycm did not
        start (the reason is above)'}).
        """
        self.assertEqual(self.status(b"1 " + SEE_ABOVE.encode()), (1, ""))

    def test_reasonAsText(self) -> None:
        """
        A reason sent on the pipe (Twisted's own, or pycm's when the
        terminal could not be written) is printed as text, UTF-8 decoded.
        """
        code, printed = self.status("1 RuntimeError: caf\xe9 closed".encode())
        self.assertEqual(code, 1)
        self.assertEqual(printed, (
            "An error has occurred: RuntimeError: caf\xe9 closed\n"
            "Please look at log file for more information.\n"
        ))
        code, printed = self.status(b"1 bad \xff")
        self.assertIn("An error has occurred: bad \\xff\n", printed)
        code, printed = self.status(b"")
        self.assertEqual(code, 1)
        self.assertIn("the daemon exited without a reason", printed)
        self.assertNotIn("b'", printed)

    def test_installed(self) -> None:
        """
        L{plainStartStatus} makes a runner's C{_waitForStart} L{waitForStart};
        a runner without one (another Twisted) is left alone.
        """

        class Runner:
            def _waitForStart(self, readPipe: int) -> int:
                raise AssertionError("Twisted's own")

        class Other:
            pass

        plainStartStatus(Runner)
        plainStartStatus(Other)
        self.assertFalse(hasattr(Other, "_waitForStart"))
        read, write = os.pipe()
        self.addCleanup(os.close, read)
        os.write(write, b"0")
        os.close(write)
        self.assertEqual(Runner()._waitForStart(read), 0)

    def test_twistdHasIt(self) -> None:
        """Twisted's runner has the method pycm replaces, called as pycm calls it."""
        import inspect

        from twisted.scripts._twistd_unix import UnixApplicationRunner

        self.assertIn("self._waitForStart(", inspect.getsource(UnixApplicationRunner.daemonize))


class StartupReportTests(SynchronousTestCase):
    """
    L{StartupReport} on real pipes standing for the terminal's stderr and
    twistd's status pipe.
    """

    def setUp(self) -> None:
        self.stderrRead, stderr = os.pipe()
        self.statusRead, status = os.pipe()
        self.addCleanup(os.close, self.stderrRead)
        self.addCleanup(os.close, self.statusRead)
        self.pidfile = self.mktemp()
        with open(self.pidfile, "w") as f:
            f.write(str(os.getpid()))
        self.config: dict[str, object] = {"statusPipe": status, "pidfile": self.pidfile}
        self.atExit: list[object] = []
        self.kills: list[tuple[int, int]] = []
        self.report = StartupReport(stderr, self.config, self.atExit.append,
                                    kill=lambda pid, signum: self.kills.append((pid, signum)))
        for signum in (signal.SIGTERM, signal.SIGINT):
            self.addCleanup(signal.signal, signum, signal.getsignal(signum))

    def read(self, fd: int) -> bytes:
        """Everything written to a pipe whose every writer is closed."""
        chunks = []
        while chunk := os.read(fd, 4096):
            chunks.append(chunk)
        return b"".join(chunks)

    def test_signalBeforeTheReactor(self) -> None:
        """
        SIGTERM after the fork but before the reactor runs (and takes the
        signals over) is told as a stop before ready, the pidfile removed;
        then the daemon dies of that signal.  Before, it died at once and
        twistd's parent waited for ever.
        """
        self.report.daemonized()
        handler = signal.getsignal(signal.SIGTERM)
        self.assertTrue(callable(handler))
        handler(signal.SIGTERM, None)  # type: ignore[operator]
        self.assertEqual(self.report.outcome, "failed")
        self.assertEqual(self.read(self.statusRead)[:2], b"1 ")
        self.assertIn(b"stopped before it was ready", self.read(self.stderrRead))
        self.assertFalse(os.path.exists(self.pidfile))
        self.assertEqual(self.kills, [(os.getpid(), signal.SIGTERM)])
        self.assertIs(signal.getsignal(signal.SIGTERM), signal.SIG_DFL)

    def test_takesTheStatusPipe(self) -> None:
        """Once daemonized, twistd no longer has a status pipe to answer."""
        self.report.daemonized()
        self.assertNotIn("statusPipe", self.config)

    def test_exitBeforeReady(self) -> None:
        """
        A daemon that exits before it is ready (an error that reaches
        twistd) still answers the waiting parent: a failure.
        """
        self.report.daemonized()
        [exiting] = self.atExit
        exiting()  # type: ignore[operator]
        self.assertTrue(self.read(self.statusRead).startswith(b"1 "))
        self.assertIn(b"exited before it was ready", self.read(self.stderrRead))
        self.assertEqual(self.report.outcome, "failed")

    def test_ready(self) -> None:
        """Ready: the parent reads b"0", stderr is released, the pidfile kept."""
        self.report.daemonized()
        self.report.ready()
        self.assertEqual(self.read(self.statusRead), b"0")
        self.assertEqual(self.read(self.stderrRead), b"")
        self.assertTrue(os.path.exists(self.pidfile))
        self.assertEqual(self.report.outcome, "ready")

    def test_failed(self) -> None:
        """
        Failed: the whole reason on stderr, a status the parent reports as
        an error (within twistd's 100 bytes), the pidfile removed and
        forgotten.
        """
        reason = "cannot listen on unix:/" + "x" * 200
        self.report.daemonized()
        self.report.failed(reason)
        self.assertEqual(self.read(self.stderrRead), f"twistd pycm: {reason}\n".encode())
        status = self.read(self.statusRead)
        self.assertTrue(status.startswith(b"1 "))
        self.assertLessEqual(len(status), 100)
        self.assertFalse(os.path.exists(self.pidfile))
        self.assertEqual(self.config["pidfile"], "")

    def test_onlyTheFirstOutcome(self) -> None:
        """A start-up ends once: a later failure changes nothing."""
        self.report.daemonized()
        self.report.ready()
        self.report.failed("late")
        self.assertEqual(self.read(self.statusRead), b"0")
        self.assertTrue(os.path.exists(self.pidfile))

    def test_othersPidfileKept(self) -> None:
        """A pidfile naming another process is not removed."""
        with open(self.pidfile, "w") as f:
            f.write("1")
        self.report.failed("no")
        self.assertTrue(os.path.exists(self.pidfile))
        self.read(self.stderrRead)
        os.close(self.config.pop("statusPipe"))  # type: ignore[arg-type]

    def test_foreground(self) -> None:
        """
        In the foreground (no status pipe) the reason still reaches stderr
        and the status pipe is never looked for again.
        """
        os.close(self.config.pop("statusPipe"))  # type: ignore[arg-type]
        self.report.daemonized()
        self.report.failed("port in use")
        self.assertEqual(self.read(self.stderrRead), b"twistd pycm: port in use\n")


class _FailingListener(Service):
    """A listener whose port is taken."""

    def privilegedStartService(self) -> None:
        raise CannotListenError("127.0.0.1", 8080, OSError(98, "Address already in use"))


class _RecordingReport(StartupReport):
    """A start-up report that tells nobody and remembers what it was told."""

    def __init__(self) -> None:
        super().__init__()
        self.reported: list[str] = []

    def ready(self) -> None:
        self.reported.append("ready")
        super().ready()

    def failed(self, reason: str) -> None:
        if self.outcome is None:
            self.reported.append(reason)
        super().failed(reason)


class PycmServiceStartTests(SynchronousTestCase):
    """How L{PycmService} ends a start-up, on a fake reactor."""

    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.backend = MemoryBackend(self.reactor)
        report = _RecordingReport()
        self.reported = report.reported
        self.closed: list[str] = []
        state = DaemonState(
            clock=self.reactor, backend=self.backend, events=EventLog(), ready=False
        )
        self.service = PycmService(self.reactor, state, [lambda: self.closed.append("x")], report)

    def test_listenFailure(self) -> None:
        """A port in use: reported, closers run, twistd exits 1."""
        _FailingListener().setServiceParent(self.service)
        error = self.assertRaises(SystemExit, self.service.privilegedStartService)
        self.assertEqual(error.code, 1)
        [reason] = self.reported
        self.assertIn("cannot listen on", reason)
        self.assertIn("Address already in use", reason)
        self.assertEqual(self.closed, ["x"])

    def test_ready(self) -> None:
        """The backend open and the listeners started: reported ready."""
        self.service.startService()
        self.assertEqual(self.reported, ["ready"])

    def test_stoppedBeforeReady(self) -> None:
        """Stopped while the backend opens: reported as a failed start."""
        self.backend.open = Deferred  # type: ignore[method-assign]
        self.service.startService()
        self.service.stopService()
        self.assertEqual(self.reported, ["pycm was stopped before it was ready"])

    def test_backendFailsToOpen(self) -> None:
        """
        The backend cannot open: reported with the reason (the exit status
        is L{OpenFailureTests}'s), and only once, not again on the way out.
        """
        self.backend.open = lambda: fail(BackendError("no engine"))  # type: ignore[method-assign]
        self.service.startService()
        self.service.stopService()
        self.assertEqual(self.reported, ["the memory backend could not start: no engine"])
        self.assertEqual(len(self.flushLoggedErrors(BackendError)), 1)


class FreezeTests(SynchronousTestCase):
    """The collector's freeze belongs to twistd's path, never to library code."""

    def test_readyFreezesNothing(self) -> None:
        """
        A L{PycmService} built by a test (or any library user) becoming
        ready leaves the collector alone: nothing is frozen.
        """
        import gc

        reactor = MemoryReactorClock()
        state = DaemonState(clock=reactor, backend=MemoryBackend(reactor), events=EventLog(),
                             ready=False)
        service = PycmService(reactor, state, [])
        before = gc.get_freeze_count()
        service.startService()
        self.assertTrue(state.ready)
        self.assertEqual(gc.get_freeze_count(), before)

    def test_whenReadyCalledOnceReady(self) -> None:
        """The C{whenReady} hook runs once, when the daemon is ready; never on a failed open."""
        reactor = MemoryReactorClock()
        calls: list[bool] = []
        backend = MemoryBackend(reactor)
        state = DaemonState(clock=reactor, backend=backend, events=EventLog(), ready=False)
        service = PycmService(reactor, state, [], whenReady=lambda: calls.append(state.ready))
        service.startService()
        self.assertEqual(calls, [True])
        failing = MemoryBackend(reactor)
        failing.open = lambda: fail(BackendError("no engine"))  # type: ignore[method-assign]
        state = DaemonState(clock=reactor, backend=failing, events=EventLog(), ready=False)
        PycmService(reactor, state, [], whenReady=lambda: calls.append(False)).startService()
        self.assertEqual(calls, [True])
        self.flushLoggedErrors(BackendError)

    def test_freezeStartupObjects(self) -> None:
        """
        twistd's hook collects before it freezes (start-up's garbage is not
        kept for ever), and does so once per process.
        """
        from pycm.daemon import startup

        calls: list[str] = []

        class RecordingGC:
            def collect(self) -> None:
                calls.append("collect")

            def freeze(self) -> None:
                calls.append("freeze")

        self.patch(startup, "gc", RecordingGC())
        self.patch(startup, "_frozen", False)
        startup.freezeStartupObjects()
        startup.freezeStartupObjects()
        self.assertEqual(calls, ["collect", "freeze"])


class TwistdOptionsTests(SynchronousTestCase):
    def test_refusedUnderTwistd(self) -> None:
        """
        Under twistd (a parent Options), a refused option exits 1 with its
        reason (twistd 24.3 printed it on stdout and exited 0).
        """
        options = Options()
        options.parent = usage.Options()
        error = self.assertRaises(SystemExit, options.parseOptions, ["--backend", "zz"])
        self.assertIn("twistd pycm: unknown backend 'zz'", str(error.code))
        self.assertIn("process", str(error.code))


class StateDirLockTests(SynchronousTestCase):
    def test_recordHolder(self) -> None:
        """
        The lock file names the process that records itself (twistd's
        daemon, after the fork), not the one that took the lock.
        """
        from pycm.statelock import StateDirLock

        lock = StateDirLock(self.mktemp())
        lock.acquire()
        self.addCleanup(lock.release)
        with open(lock.path, "w") as f:
            f.write("999999\n")  # as if taken before a fork
        lock.recordHolder()
        with open(lock.path) as f:
            self.assertEqual(f.read(), f"{os.getpid()}\n")
