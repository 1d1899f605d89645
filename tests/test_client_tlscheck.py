"""
Tests for the client's C{tls:} check of the daemon's certificate
(L{pycm.client.tlsverify}): the endpoint string read as Twisted reads it,
the check against a real TLS listener in this process, the real client
against the real daemon; and the refusal of C{ssl:} client endpoints.
"""

from __future__ import annotations

import datetime
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from OpenSSL import crypto
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import CertificateOptions
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from pycm.client.arguments import CommandLine
from pycm.client.connecting import connectTo, endpointFor
from pycm.client.exits import CannotConnect, UsageError
from pycm.client.tlsverify import (
    CertificateCheck,
    CheckedTLSEndpoint,
    TLSEndpointString,
    UnverifiedCertificate,
    handshake,
    parseTLSEndpoint,
)
from tests.e2e import RealDaemon
from tests.test_tls_e2e import listenerCertificate, makeCertificate, writeKeyAndCertificate


def certificateWithoutNames(directory: str) -> tuple[str, str]:
    """
    A self-signed CA certificate for C{127.0.0.1} by its common name only
    (no C{subjectAltName}): its key's path, and its own in C{trust/}.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return writeKeyAndCertificate(directory, key, cert)


def loaded(path: str) -> crypto.X509:
    """The certificate at C{path}, as OpenSSL's callbacks give it."""
    with open(path, "rb") as f:
        return crypto.load_certificate(crypto.FILETYPE_PEM, f.read())


class CertificateCheckTests(SynchronousTestCase):
    """L{CertificateCheck}'s verify callback, given what OpenSSL would give it."""

    def test_untrustedChain(self) -> None:
        """A chain OpenSSL refused is refused, in words, with how to trust it."""
        check = CertificateCheck("127.0.0.1", Clock())
        self.assertFalse(check.verify(None, None, 18, 0, 0))
        self.assertEqual(
            check.failure,
            "self-signed certificate (not signed by a root this system trusts: for a "
            "certificate of your own, add :trustRoots=DIR, the directory of its CA's "
            "certificate)")
        check = CertificateCheck("127.0.0.1", Clock())
        self.assertFalse(check.verify(None, None, 10, 0, 0))
        self.assertEqual(check.failure, "the certificate has expired")

    def test_names(self) -> None:
        """The leaf must name the host: by IP address here."""
        directory = self.mktemp()
        os.makedirs(directory)
        _, certPath = makeCertificate(directory)
        certificate = loaded(certPath)
        self.assertTrue(CertificateCheck("127.0.0.1", Clock()).verify(
            None, certificate, 0, 0, 1))
        check = CertificateCheck("localhost", Clock())
        self.assertFalse(check.verify(None, certificate, 0, 0, 1))
        self.assertEqual(check.failure, "the certificate is for 127.0.0.1, not localhost")

    def test_noSubjectAltName(self) -> None:
        """
        A leaf with no C{subjectAltName} is refused, where Twisted's own
        check logs a traceback and lets the connection go on.
        """
        directory = self.mktemp()
        os.makedirs(directory)
        _, certPath = certificateWithoutNames(directory)
        check = CertificateCheck("127.0.0.1", Clock())
        self.assertFalse(check.verify(None, loaded(certPath), 0, 0, 1))
        self.assertIn("subjectAltName", check.failure or "")

    def test_handshakeDone(self) -> None:
        """The end of the handshake is told in a later turn, not in OpenSSL's callback."""
        from OpenSSL import SSL

        clock = Clock()
        check = CertificateCheck("127.0.0.1", clock)
        check.info(None, SSL.SSL_CB_HANDSHAKE_DONE, 1)
        self.assertFalse(check.handshakeDone.called)
        clock.advance(0)
        self.assertTrue(check.handshakeDone.called)


class SSLEndpointTests(SynchronousTestCase):
    """C{ssl:} is refused as a client endpoint."""

    def test_refused(self) -> None:
        """It checks no certificate: refused, pointing to C{tls:}."""
        with self.assertRaises(UsageError) as caught:
            endpointFor(Clock(), "ssl:127.0.0.1:8443")
        self.assertIn("an ssl: client endpoint does not check the daemon's certificate",
                      str(caught.exception))
        self.assertIn("use tls:127.0.0.1:8443", str(caught.exception))


class _SilentPeer:
    """
    A connected client whose peer never answers the handshake: stands in
    for the protocol and its transport (no real peer is needed to count
    the seconds of a fake clock).
    """

    def __init__(self) -> None:
        self.transport = self
        self.aborted = False

    def whenDisconnected(self) -> Deferred[None]:
        return Deferred()

    def abortConnection(self) -> None:
        self.aborted = True


class HandshakeTimeoutTests(SynchronousTestCase):
    """L{handshake} waits for the TLS handshake at most the endpoint's C{timeout=}."""

    def test_silentPeer(self) -> None:
        """
        A peer that never answers is given up on after C{timeout} seconds
        of the clock: the connection aborted, a L{CannotConnect} saying the
        handshake did not finish in time.
        """
        clock = Clock()
        peer = _SilentPeer()
        check = CertificateCheck("127.0.0.1", clock)
        d = Deferred.fromCoroutine(
            handshake(clock, peer, check, "tls:127.0.0.1:8443", "127.0.0.1:8443", 30))
        clock.advance(29.9)
        self.assertNoResult(d)
        self.assertFalse(peer.aborted)
        clock.advance(0.1)
        error = self.failureResultOf(d, CannotConnect).value
        self.assertTrue(peer.aborted)
        self.assertEqual(str(error), "cannot reach the pycm daemon at tls:127.0.0.1:8443: "
                         "the TLS handshake did not finish within 30 s (is a TLS "
                         "listener there?)")
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_doneInTime(self) -> None:
        """A handshake done in time leaves no timer behind and aborts nothing."""
        clock = Clock()
        peer = _SilentPeer()
        check = CertificateCheck("127.0.0.1", clock)
        d = Deferred.fromCoroutine(
            handshake(clock, peer, check, "tls:127.0.0.1:8443", "127.0.0.1:8443", 30))
        check.handshakeDone.callback(None)
        self.assertIsNone(self.successResultOf(d))
        self.assertFalse(peer.aborted)
        self.assertEqual(clock.getDelayedCalls(), [])


class TLSE2ETests(SynchronousTestCase):
    """The real client over C{tls:} and C{ssl:} to the real daemon's TLS listener."""

    def daemonWith(self, make: object) -> tuple[RealDaemon, str, str]:
        """A daemon wanting a token on an C{ssl:} listener with the certificate C{make} makes."""
        home = os.path.abspath(self.mktemp())
        os.makedirs(home)
        keyPath, certPath = make(home)  # type: ignore[operator]
        daemon = RealDaemon(self, auth=True, args=[
            "--listen", f"ssl:0:interface=127.0.0.1:privateKey={keyPath}:certKey={certPath}",
        ]).start()
        port = daemon.log().split("pycm listening on tcp:127.0.0.1:")[-1].split()[0]
        return daemon, f"127.0.0.1:{port}", os.path.join(home, "trust")

    def pycm(self, daemon: RealDaemon, host: str) -> tuple[int, str]:
        """C{pycm -H HOST ping} with the daemon's token given: status, stderr."""
        with open(os.path.join(daemon.stateDir, "token")) as f:
            token = f.read().strip()
        env = dict(os.environ, PYCM_HOST=host, PYCM_TOKEN=token)
        result = daemon.pycm("ping", env=env)
        return result.returncode, result.stderr.decode()

    def test_untrusted(self) -> None:
        """
        A certificate the system does not trust: one line saying so, the
        unreachable status, no traceback.
        """
        daemon, address, _ = self.daemonWith(makeCertificate)
        status, err = self.pycm(daemon, f"tls:{address}")
        self.assertEqual(status, 3)
        self.assertEqual(err.splitlines(), [
            f"Error: cannot verify the daemon's certificate at {address}: self-signed "
            "certificate (not signed by a root this system trusts: for a certificate "
            "of your own, add :trustRoots=DIR, the directory of its CA's certificate)"])

    def test_noSubjectAltName(self) -> None:
        """A trusted certificate that names no host is refused too, in one line."""
        daemon, address, trust = self.daemonWith(certificateWithoutNames)
        status, err = self.pycm(daemon, f"tls:{address}:trustRoots={trust}")
        self.assertEqual(status, 3)
        self.assertEqual(len(err.splitlines()), 1, err)
        self.assertIn(f"cannot verify the daemon's certificate at {address}: ", err)
        self.assertIn("subjectAltName", err)

    def test_sslRefused(self) -> None:
        """C{ssl:} is a usage error, before anything is sent."""
        daemon, address, _ = self.daemonWith(makeCertificate)
        status, err = self.pycm(daemon, f"ssl:{address}")
        self.assertEqual(status, 2)
        self.assertIn(f"use tls:{address}, which does", err)


class ParseTests(SynchronousTestCase):
    """L{parseTLSEndpoint}: the parameters of Twisted's C{tls:}, read as Twisted reads them."""

    def test_positionalAndKeywords(self) -> None:
        """Host and port by position or as keywords; the rest by position or keyword."""
        for description in ("tls:example.com:8443", "tls:host=example.com:port=8443",
                            "tls:example.com:port=8443", "TLS:example.com:8443"):
            parsed = parseTLSEndpoint(description)
            self.assertEqual((parsed.host, parsed.port, parsed.timeout, parsed.trustRoots),
                             ("example.com", 8443, 30, None), description)
        self.assertEqual(
            parseTLSEndpoint(r"tls:example.com:8443:5:10.0.0.1:c.pem:k.pem:/ca\:x:"
                             r"tcp\:127.0.0.1\:1"),
            TLSEndpointString(
                r"tls:example.com:8443:5:10.0.0.1:c.pem:k.pem:/ca\:x:tcp\:127.0.0.1\:1",
                "example.com", 8443, 5, "10.0.0.1", "c.pem", "k.pem", "/ca:x",
                "tcp:127.0.0.1:1"))
        self.assertEqual(parseTLSEndpoint(r"tls:\:\:1:8443").address, "[::1]:8443")

    def test_refused(self) -> None:
        """
        What Twisted's C{tls:} refuses is refused, naming what is wrong: an
        unknown keyword, one given twice, a missing host or port, a port or
        timeout that is not a number in range, too many positions; and a
        C{privateKey=} without the C{certificate=} it is the key of.
        """
        for description, expected in [
            ("tls:h:1:trustroots=/x", "tls: has no trustroots= (it takes host, port,"),
            ("tls:h:1:timeout=3:timeout=4", "timeout= is given twice"),
            ("tls:h:1:host=g", "host is given twice, by position and as host="),
            ("tls:h", "tls: needs a port (tls:HOST:PORT)"),
            ("tls:port=1", "tls: needs a host (tls:HOST:PORT)"),
            ("tls:h:https", "the port must be a whole number, 1 to 65535, not 'https'"),
            ("tls:h:70000", "the port must be a whole number, 1 to 65535, not '70000'"),
            ("tls:h:\u00b2", "the port must be a whole number, 1 to 65535, not '\u00b2'"),
            ("tls:h:1:timeout=0", "the timeout must be a whole number, 1 or more, not '0'"),
            ("tls:h:1:" + ":".join("x" * 7), "tls: takes at most 8 parameters by position"),
            ("tls:h:1:privateKey=k.pem", "privateKey= is the key of the client's certificate="),
        ]:
            with self.assertRaises(UsageError) as caught:
                parseTLSEndpoint(description)
            self.assertIn(f"bad endpoint {description!r}: {expected}", str(caught.exception))

    def test_trustRootsRefused(self) -> None:
        """
        A C{trustRoots=} that cannot be listed, or holds no C{.pem}
        certificate, is a usage error naming it (not a connection that no
        certificate can pass).
        """
        empty = self.mktemp()
        os.makedirs(empty)
        with open(os.path.join(empty, "ca.crt"), "w") as f:
            f.write("not this one\n")
        for directory, expected in [
            (os.path.join(empty, "nothing"), "trustRoots= takes a directory of CA "
             "certificates (*.pem): cannot list"),
            (empty, f"trustRoots={empty} holds no CA certificate"),
        ]:
            with self.assertRaises(UsageError) as caught:
                endpointFor(Clock(), f"tls:127.0.0.1:8443:trustRoots={directory}")
            self.assertIn(expected, str(caught.exception))

    def test_clientCertificateRefused(self) -> None:
        """A C{certificate=} that cannot be read or is no certificate with its key is refused."""
        directory = self.mktemp()
        os.makedirs(directory)
        keyPath, certPath = makeCertificate(directory)
        for description, expected in [
            (f"tls:h:1:certificate={directory}/none.pem", "cannot read certificate="),
            (f"tls:h:1:certificate={certPath}", "certificate= must name a PEM certificate"),
            (f"tls:h:1:certificate={certPath}:privateKey={certPath}",
             "certificate= and privateKey= must name"),
        ]:
            with self.assertRaises(UsageError) as caught:
                endpointFor(Clock(), description)
            self.assertIn(expected, str(caught.exception))
        self.assertIsInstance(
            endpointFor(Clock(), f"tls:h:1:certificate={certPath}:privateKey={keyPath}"),
            CheckedTLSEndpoint)

    def test_filesNotRegularOrTooLarge(self) -> None:
        """
        A C{certificate=}, C{privateKey=} or C{trustRoots=} C{*.pem} that is
        a device (read forever), a FIFO (waited on forever) or larger than
        1 MiB is a usage error naming the file, found at once.
        """
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        keyPath, certPath = makeCertificate(directory)
        fifo = os.path.join(directory, "fifo.pem")
        os.mkfifo(fifo)
        large = os.path.join(directory, "large.pem")
        with open(large, "wb") as f:
            f.truncate(1024 * 1024 + 1)
        trust = os.path.join(directory, "trust")
        os.mkfifo(os.path.join(trust, "ff.pem"))
        for description, expected in [
            ("tls:h:1:certificate=/dev/zero",
             "certificate=/dev/zero is not a regular file (it should be a PEM file)"),
            (f"tls:h:1:certificate={fifo}", f"certificate={fifo} is not a regular file"),
            (f"tls:h:1:certificate={certPath}:privateKey={fifo}",
             f"privateKey={fifo} is not a regular file"),
            (f"tls:h:1:certificate={large}", f"certificate={large} is larger than 1 MiB"),
            (f"tls:h:1:trustRoots={trust}",
             f"{trust}/ff.pem (in trustRoots={trust}) is not a regular file"),
        ]:
            with self.assertRaises(UsageError) as caught:
                endpointFor(Clock(), description)
            self.assertIn(f"bad endpoint {description!r}: {expected}", str(caught.exception))

    def test_sslAnyCase(self) -> None:
        """
        C{SSL:} is Twisted's C{ssl:} too (it matches types in any case):
        refused as well, not an endpoint that checks nothing.
        """
        with self.assertRaises(UsageError) as caught:
            endpointFor(Clock(), "SSL:127.0.0.1:8443")
        self.assertIn("does not check the daemon's certificate", str(caught.exception))


class _Recorder(Protocol):
    """A listener's connection that keeps the bytes it receives, each line answered C{OK}."""

    def dataReceived(self, data: bytes) -> None:
        self.factory.received += data  # type: ignore[attr-defined]
        self.transport.write(b"OK {}\n" * data.count(b"\n"))  # type: ignore[union-attr]


class ListenerTests(TestCase):
    """
    The client's C{tls:} endpoint against a real TLS listener in this
    process, which keeps what it receives: a certificate that fails the
    check ends the connection before any byte of the request is written.
    """

    def listen(self, requireClientCertificate: bool = False) -> tuple[int, str, Factory]:
        """A TLS listener with a certificate for 127.0.0.1: its port, its trust directory."""
        home = os.path.abspath(self.mktemp())
        os.makedirs(home)
        key, certificate = listenerCertificate(home)
        extra: dict[str, object] = {}
        if requireClientCertificate:
            extra = dict(verify=True, requireCertificate=True,
                         caCerts=[certificate.original])
        options = CertificateOptions(privateKey=key.original,
                                     certificate=certificate.original, **extra)
        factory = Factory.forProtocol(_Recorder)
        factory.received = b""  # type: ignore[attr-defined]
        # The host name (SNI) each client sends; set before the context
        # (made once, kept by the options) makes its first connection.
        factory.serverNames = serverNames = []  # type: ignore[attr-defined]
        options.getContext().set_tlsext_servername_callback(
            lambda connection: serverNames.append(connection.get_servername()))
        port = reactor.listenSSL(0, factory, options,  # type: ignore[attr-defined]
                                 interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        return port.getHost().port, os.path.join(home, "trust"), factory

    async def connect(self, host: str) -> object:
        """Connect as C{pycm --host HOST --token ...} does, then close again."""
        options = CommandLine(host=host, token="a-token-of-some-length",
                              json=False, command=("ping",))
        client = await connectTo(reactor, options)
        client.transport.loseConnection()  # type: ignore[union-attr]
        await client.whenDisconnected()
        return client

    async def refused(self, host: str) -> UnverifiedCertificate:
        """Connect to C{host}, which must fail the check; the error."""
        try:
            await self.connect(host)
        except UnverifiedCertificate as e:
            return e
        self.fail(f"{host} passed the check")

    async def test_untrusted(self) -> None:
        """A chain no trusted root signed: refused, and nothing was sent."""
        port, _, factory = self.listen()
        error = await self.refused(f"tls:127.0.0.1:{port}")
        self.assertIn("self-signed certificate", str(error))
        self.assertEqual(str(error).split(": ")[0],
                         f"cannot verify the daemon's certificate at 127.0.0.1:{port}")
        self.assertEqual(factory.received, b"")  # type: ignore[attr-defined]

    async def test_wrongName(self) -> None:
        """
        A trusted certificate for another name: refused, nothing sent; the
        name asked for went as SNI (on every Twisted, 24.3 too).
        """
        port, trust, factory = self.listen()
        error = await self.refused(f"tls:localhost:{port}:trustRoots={trust}")
        self.assertIn("the certificate is for 127.0.0.1, not localhost", str(error))
        self.assertEqual(factory.received, b"")  # type: ignore[attr-defined]
        self.assertEqual(factory.serverNames,  # type: ignore[attr-defined]
                         [b"localhost"])

    async def test_trusted(self) -> None:
        """
        A certificate that passes: connected, and the token is sent after
        the handshake; an IP address goes as no SNI.  (C{TLS:} is C{tls:}.)
        """
        port, trust, factory = self.listen()
        await self.connect(f"TLS:127.0.0.1:{port}:trustRoots={trust}:timeout=5")
        self.assertEqual(factory.received,  # type: ignore[attr-defined]
                         b"auth a-token-of-some-length\n")
        self.assertEqual(factory.serverNames, [None])  # type: ignore[attr-defined]

    async def test_clientCertificate(self) -> None:
        """
        C{certificate=} and C{privateKey=} give the client's certificate to
        a listener that wants one; without them, it refuses the client.
        """
        port, trust, factory = self.listen(requireClientCertificate=True)
        home = os.path.dirname(trust)
        await self.connect(f"tls:127.0.0.1:{port}:trustRoots={trust}:"
                           f"certificate={trust}/cert.pem:privateKey={home}/key.pem")
        self.assertEqual(factory.received,  # type: ignore[attr-defined]
                         b"auth a-token-of-some-length\n")
        with self.assertRaises(CannotConnect):
            await self.connect(f"tls:127.0.0.1:{port}:trustRoots={trust}")
