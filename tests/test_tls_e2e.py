"""
End-to-end: the daemon on a TLS listener, the real client over C{tls:},
with a certificate the test makes for 127.0.0.1.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.trial.unittest import SynchronousTestCase

from .e2e import RealDaemon


def makeCertificate(directory: str) -> tuple[str, str]:
    """
    A self-signed certificate for 127.0.0.1; the paths of its key and of
    the certificate, alone in a directory C{trust} (for C{trustRoots=}).
    """
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return writeKeyAndCertificate(directory, key, cert)


def writeKeyAndCertificate(directory: str, key: Any, cert: Any) -> tuple[str, str]:
    """
    Write C{key} to C{directory}/key.pem and C{cert} alone in a directory
    C{trust} (for C{trustRoots=}); return both paths.
    """
    keyPath = os.path.join(directory, "key.pem")
    os.makedirs(os.path.join(directory, "trust"))
    certPath = os.path.join(directory, "trust", "cert.pem")
    with open(keyPath, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.TraditionalOpenSSL,
                                  serialization.NoEncryption()))
    with open(certPath, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    return keyPath, certPath


class TLSTests(SynchronousTestCase):
    def test_clientOverTLS(self) -> None:
        """
        An ssl: listener serves the real client over tls:, which checks the
        daemon's certificate and sends the token it is given.
        """
        home = os.path.abspath(self.mktemp())
        os.makedirs(home)
        keyPath, certPath = makeCertificate(home)
        daemon = RealDaemon(
            self, auth=True,
            args=["--listen", f"ssl:0:interface=127.0.0.1:privateKey={keyPath}:certKey={certPath}"],
        ).start()
        port = int(daemon.log().split("pycm listening on tcp:127.0.0.1:")[-1].split()[0])
        token = open(os.path.join(daemon.stateDir, "token")).read().strip()
        env = dict(os.environ, PYCM_HOST=f"tls:127.0.0.1:{port}:trustRoots={home}/trust",
                   PYCM_TOKEN=token)
        result = daemon.pycm("--json", "run", "web", "host", "sleep", "100", env=env)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn(b'"state":"running"', result.stdout.replace(b" ", b""))
        wrong = dict(env, PYCM_TOKEN="nope")
        self.assertEqual(daemon.pycm("list", env=wrong).returncode, 1)
