"""
End-to-end: the daemon on a TLS listener, the real client over C{tls:},
with a certificate the test makes for 127.0.0.1.
"""

from __future__ import annotations

import datetime
import io
import ipaddress
import json
import os
import signal
import socket
import subprocess
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from OpenSSL import crypto
from twisted.internet import reactor
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import Certificate, CertificateOptions, KeyPair
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.trial.unittest import SynchronousTestCase, TestCase

from pycm.client.arguments import parseArguments
from pycm.client.connecting import connectTo
from pycm.client.exits import CannotConnect, UsageError

from .e2e import RealDaemon, defaultSIGINT, pycmCommand


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


def listenerCertificate(home: str) -> tuple[KeyPair, Certificate]:
    """A fresh L{makeCertificate} in C{home}, loaded for a listener: its key and certificate."""
    keyPath, certPath = makeCertificate(home)
    with open(keyPath, "rb") as f:
        key = KeyPair.load(f.read(), crypto.FILETYPE_PEM)
    with open(certPath, "rb") as f:
        certificate = Certificate.loadPEM(f.read())
    return key, certificate


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


class _RawRecordingTLS(TLSMemoryBIOFactory):
    """A TLS listener's factory that keeps every byte it receives, before TLS reads it."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.raw = b""

    def buildProtocol(self, addr: Any) -> Any:
        protocol = super().buildProtocol(addr)
        readTLS = protocol.dataReceived

        def dataReceived(data: bytes) -> None:
            self.raw += data
            readTLS(data)

        protocol.dataReceived = dataReceived
        return protocol


class _Recorder(Protocol):
    """What the TLS listener read, each line answered C{OK}."""

    def dataReceived(self, data: bytes) -> None:
        self.factory.received += data  # type: ignore[attr-defined]
        self.transport.write(b"OK {}\n" * data.count(b"\n"))  # type: ignore[union-attr]


class FoundTokenOverTLSTests(TestCase):
    """
    The real client with a token found in the user's token file for the
    daemon's TLS listener (as its listeners file records it, kind C{ssl}),
    against a real TLS listener in this process that keeps the bytes it
    receives.
    """

    TOKEN = b"found-token-of-the-tls-daemon"
    #: The client's user (its state directory is not C{/var/lib/pycm}).
    USER = 4242

    def listen(self) -> tuple[int, str, _RawRecordingTLS]:
        """The TLS listener: its port, its trust directory, its factory."""
        home = os.path.abspath(self.mktemp())
        os.makedirs(home)
        key, certificate = listenerCertificate(home)
        recorder = Factory.forProtocol(_Recorder)
        recorder.received = b""  # type: ignore[attr-defined]
        factory = _RawRecordingTLS(
            CertificateOptions(privateKey=key.original, certificate=certificate.original),
            False, recorder)
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")  # type: ignore[attr-defined]
        self.addCleanup(port.stopListening)
        return port.getHost().port, os.path.join(home, "trust"), factory

    def stateFor(self, port: int) -> dict[str, str]:
        """
        A user whose daemon's listeners file records the TLS listener on
        C{port} wanting the token, its token file beside it.
        """
        home = os.path.abspath(self.mktemp())
        state = os.path.join(home, "pycm")
        os.makedirs(state)
        with open(os.path.join(state, "token"), "wb") as f:
            f.write(self.TOKEN + b"\n")
        listeners = os.path.join(state, "listeners")
        with open(listeners, "w") as f:
            json.dump([{"kind": "ssl", "host": "127.0.0.1", "port": port, "token": True}], f)
        os.chmod(listeners, 0o600)
        return {"HOME": home, "XDG_STATE_HOME": home}

    async def pycm(self, environ: dict[str, str], host: str) -> None:
        """
        The client as C{pycm --host HOST ping} runs it, in this process
        (as a user not root, whose state directory C{environ} gives): its
        command line read, connected and authenticated, then closed.

        @raise UsageError: as the command line is refused.
        """
        options = parseArguments(["--host", host, "ping"], environ, uid=self.USER)
        client = await connectTo(reactor, options, io.StringIO())
        client.transport.loseConnection()  # type: ignore[union-attr]
        await client.whenDisconnected()

    async def test_tcpToTheTLSListener(self) -> None:
        """
        C{tcp:} to the TLS listener's port: the token found for that
        listener is not sent in the clear (nothing is sent), and the error
        says the port speaks TLS and what to use instead.
        """
        port, _, factory = self.listen()
        try:
            await self.pycm(self.stateFor(port), f"tcp:127.0.0.1:{port}")
        except (UsageError, CannotConnect) as e:
            error = str(e)
        else:
            error = ""
        self.assertNotIn(self.TOKEN, factory.raw)
        self.assertEqual(factory.raw, b"")
        self.assertIn(f"that port speaks TLS: use --host tls:127.0.0.1:{port} ", error)

    async def test_tlsToTheTLSListener(self) -> None:
        """C{tls:} to the same listener: the token found goes, inside TLS only."""
        port, trust, factory = self.listen()
        await self.pycm(self.stateFor(port), f"tls:127.0.0.1:{port}:trustRoots={trust}")
        self.assertEqual(factory.wrappedFactory.received,  # type: ignore[attr-defined]
                         b"auth " + self.TOKEN + b"\n")
        self.assertNotIn(self.TOKEN, factory.raw)

    def test_tcpRecordNotForTLS(self) -> None:
        """A token found for a C{tcp} listener is not the one of a C{tls:} endpoint there."""
        environ = self.stateFor(8443)
        listeners = os.path.join(environ["XDG_STATE_HOME"], "pycm", "listeners")
        with open(listeners, "w") as f:
            json.dump([{"kind": "tcp", "host": "127.0.0.1", "port": 8443, "token": True}], f)
        options = parseArguments(["--host", "tls:127.0.0.1:8443", "ping"], environ,
                                 uid=self.USER)
        self.assertIsNone(options.token)
        options = parseArguments(["--host", "tcp:127.0.0.1:8443", "ping"], environ,
                                 uid=self.USER)
        self.assertEqual(options.token, self.TOKEN.decode())


class SilentPeerTests(SynchronousTestCase):
    """The real client over C{tls:} to a peer that accepts and never speaks."""

    def silentPeer(self) -> tuple[socket.socket, int, str, dict[str, str]]:
        """
        A listening socket nobody answers on, its port, a trust directory
        (of a certificate it never shows), and an environment with no
        C{PYCM_} variable.
        """
        silent = socket.socket()
        self.addCleanup(silent.close)
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        trust = os.path.abspath(self.mktemp())
        os.makedirs(trust)
        makeCertificate(trust)
        environ = {k: v for k, v in os.environ.items() if not k.startswith("PYCM_")}
        return silent, silent.getsockname()[1], trust, environ

    def test_handshakeTimesOut(self) -> None:
        """
        The handshake is bounded by C{timeout=} as the connection is: the
        unreachable status and one line saying so, not a wait forever.
        """
        silent, port, trust, environ = self.silentPeer()
        result = subprocess.run(
            [*pycmCommand(), "--host",
             f"tls:127.0.0.1:{port}:trustRoots={trust}/trust:timeout=1", "ps"],
            env=environ, capture_output=True, timeout=60)
        self.assertEqual(result.returncode, 3, result.stderr)
        self.assertEqual(result.stderr.decode().splitlines(), [
            f"Error: cannot reach the pycm daemon at tls:127.0.0.1:{port}:trustRoots="
            f"{trust}/trust:timeout=1: the TLS handshake did not finish within 1 s (is a "
            "TLS listener there?)"])

    def test_interruptedInHandshake(self) -> None:
        """
        Ctrl-C while the handshake waits: exit status 130, saying nothing
        was sent (not that the daemon may still carry out the request).
        """
        silent, port, trust, environ = self.silentPeer()
        silent.settimeout(30)
        client = subprocess.Popen(
            [*pycmCommand(), "--host", f"tls:127.0.0.1:{port}:trustRoots={trust}/trust",
             "stop", "web"],
            env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            preexec_fn=defaultSIGINT)
        self.addCleanup(client.kill)
        connection, _ = silent.accept()
        self.addCleanup(connection.close)
        connection.settimeout(30)
        self.assertTrue(connection.recv(1))  # the ClientHello: in the handshake
        client.send_signal(signal.SIGINT)
        _, err = client.communicate(timeout=60)
        self.assertEqual(client.returncode, 130, err)
        self.assertEqual(err.decode().splitlines(), [
            "pycm: interrupted before the request was sent (while connecting): nothing "
            "was sent: stop web"])
