"""
Tests for the client's C{tls:} check of the daemon's certificate
(L{pycm.client.tlsverify}) and its refusal of C{ssl:} client endpoints.
"""

from __future__ import annotations

import datetime
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from OpenSSL import crypto
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from pycm.client.connecting import endpointFor
from pycm.client.exits import UsageError
from pycm.client.tlsverify import CertificateCheck
from tests.e2e import RealDaemon
from tests.test_tls_e2e import makeCertificate, writeKeyAndCertificate


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
