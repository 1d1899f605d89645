"""
A C{tls:} endpoint that checks the daemon's certificate, strictly and
saying why, built on Twisted's public TLS API.

Twisted's C{tls:} client checks the certificate chain and the host name,
but a certificate with no C{subjectAltName} makes its host name check
raise an error it does not expect (on some versions: it logs a traceback
and lets the connection go on when the chain is trusted), and a failed
check only drops the connection, with nothing to say why.  So pycm reads
the C{tls:} string itself (L{parseTLSEndpoint}: the parameters Twisted's
takes) and connects with C{wrapClientTLS} and a connection creator of its
own (L{CheckingConnectionCreator}, on C{optionsForClientTLS}), whose
connections are checked by L{CertificateCheck}: it refuses such a
certificate too and keeps why it refused, for C{cannot verify the daemon's
certificate at HOST:PORT: REASON} (L{UnverifiedCertificate}); and it tells
when the handshake is done (L{handshake}), so that nothing is sent before.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Sequence
from typing import Any, NamedTuple

from OpenSSL import SSL, crypto
from service_identity import CertificateError, VerificationError
from service_identity.hazmat import DNS_ID, IPAddress_ID, verify_service_identity
from service_identity.pyopenssl import extract_patterns
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator, IStreamClientEndpoint
from zope.interface import implementer

from pycm.client.exits import CannotConnect, UsageError

#: OpenSSL's chain errors a person meets, in words
#: (C{X509_V_ERR_*}); any other is told by its number.
_CHAIN_ERRORS = {
    2: "unable to get the issuer's certificate",
    9: "the certificate is not valid yet",
    10: "the certificate has expired",
    18: "self-signed certificate",
    19: "self-signed certificate in the chain",
    20: "unable to get the local issuer's certificate",
    21: "unable to verify the first certificate",
}
#: The chain errors of a certificate that no trusted root signed.
_UNTRUSTED = frozenset({2, 18, 19, 20, 21})


def _names(patterns: Sequence[Any]) -> str:
    """The names a certificate's C{subjectAltName}s give, as a person reads them."""
    names = []
    for pattern in patterns:
        value = getattr(pattern, "pattern", pattern)
        names.append(value.decode("ascii", "replace") if isinstance(value, bytes)
                     else str(value))
    return ", ".join(names) or "no name"


class UnverifiedCertificate(CannotConnect):
    """The daemon's certificate failed the check (exit status 3)."""

    def __init__(self, endpoint: str, address: str, why: str) -> None:
        super().__init__(endpoint, Exception(why))
        self.address = address
        self.why = why

    def __str__(self) -> str:
        return f"cannot verify the daemon's certificate at {self.address}: {self.why}"


class CertificateCheck:
    """
    The check of one C{tls:} connection's certificate: the chain as
    OpenSSL checks it, then the leaf's names against C{host}.

    @ivar failure: why the certificate was refused, once it was.
    @ivar handshakeDone: fires when the TLS handshake is done, in a later
        turn of C{reactor} (not inside OpenSSL's callback).
    """

    def __init__(self, host: str, reactor: Any) -> None:
        self._reactor = reactor
        self._host = host
        try:
            ipaddress.ip_address(host)
        except ValueError:
            self._serviceID: Any = DNS_ID(host)
        else:
            self._serviceID = IPAddress_ID(host)
        self.failure: str | None = None
        self.handshakeDone: Deferred[None] = Deferred()

    def verify(self, connection: Any, certificate: Any, error: int, depth: int,
               ok: int) -> bool:
        """OpenSSL's verify callback: whether the certificate at C{depth} passes."""
        try:
            if not ok:
                reason = _CHAIN_ERRORS.get(error, f"OpenSSL verify error {error}")
                if error in _UNTRUSTED:
                    reason += (" (not signed by a root this system trusts: for a "
                               "certificate of your own, add :trustRoots=DIR, the "
                               "directory of its CA's certificate)")
                self.failure = self.failure or reason
                return False
            if depth == 0:
                patterns = extract_patterns(certificate)
                try:
                    verify_service_identity(patterns, [self._serviceID], [])
                except VerificationError:
                    self.failure = self.failure or (
                        f"the certificate is for {_names(patterns)}, not {self._host}")
                    return False
            return True
        except CertificateError as e:
            self.failure = self.failure or str(e)
        except Exception as e:
            # Raised out of an OpenSSL callback, it would be lost.
            self.failure = self.failure or f"{type(e).__name__}: {e}"
        return False

    def info(self, connection: Any, where: int, ret: int) -> None:
        """OpenSSL's info callback: fires L{handshakeDone} soon after."""
        if where & SSL.SSL_CB_HANDSHAKE_DONE and self.failure is None:
            self._reactor.callLater(0, self._done)

    def _done(self) -> None:
        if not self.handshakeDone.called:
            self.handshakeDone.callback(None)


#: The parameters of a C{tls:} client endpoint string, in the order they
#: may be given by position: those of Twisted's own C{tls:} parser.
TLS_PARAMETERS = ("host", "port", "timeout", "bindAddress", "certificate",
                  "privateKey", "trustRoots", "endpoint")


class TLSEndpointString(NamedTuple):
    """
    A C{tls:HOST:PORT[:KEYWORD=VALUE...]} client endpoint string, read:
    the parameters Twisted's C{tls:} takes, with the same meanings.

    @ivar host: the name the certificate must give (and, without
        C{endpoint}, where to connect).
    @ivar timeout: how long each connection attempt may take, in seconds.
    @ivar bindAddress: the local address to connect from.
    @ivar certificate: the path of the client's own certificate (PEM), with
        its private key unless C{privateKey} names another file.
    @ivar trustRoots: the directory of the CA certificates (C{*.pem}) to
        trust rather than the system's.
    @ivar endpoint: another client endpoint string to connect through
        (TLS over it, C{host} then only checked in the certificate).
    """

    description: str
    host: str
    port: int
    timeout: int = 30
    bindAddress: str | None = None
    certificate: str | None = None
    privateKey: str | None = None
    trustRoots: str | None = None
    endpoint: str | None = None

    @property
    def address(self) -> str:
        """C{HOST:PORT} (C{[HOST]:PORT} for an IPv6 address), as messages give it."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parseTLSEndpoint(description: str) -> TLSEndpointString:
    """
    Read a C{tls:} client endpoint string as Twisted's C{clientFromString}
    reads it (a backslash escapes a character, C{:} separates parameters,
    the first C{=} makes one a keyword; by position, L{TLS_PARAMETERS} in
    order).

    @raise UsageError: naming what is wrong: a parameter unknown, missing,
        given twice or not a number where one is needed.
    """
    from twisted.python import usage

    from pycm.endpoints import splitEndpoint

    def bad(why: str) -> UsageError:
        return UsageError(f"bad endpoint {description!r}: {why}")

    try:
        positional, keywords = splitEndpoint(description)
    except usage.UsageError as e:
        raise bad(str(e).rpartition(": ")[2]) from None
    given: dict[str, str] = {}
    positional = positional[1:]
    if len(positional) > len(TLS_PARAMETERS):
        raise bad(f"tls: takes at most {len(TLS_PARAMETERS)} parameters by position "
                  f"({', '.join(TLS_PARAMETERS)})")
    given.update(zip(TLS_PARAMETERS, positional, strict=False))
    for key, value in keywords.items():
        if key not in TLS_PARAMETERS:
            raise bad(f"tls: has no {key}= (it takes {', '.join(TLS_PARAMETERS)})")
        if key in given:
            raise bad(f"{key} is given twice, by position and as {key}=")
        given[key] = value
    for needed in ("host", "port"):
        if not given.get(needed):
            raise bad(f"tls: needs a {needed} (tls:HOST:PORT)")
    numbers: dict[str, int] = {}
    for key, low, high in (("port", 1, 65535), ("timeout", 1, None)):
        if key not in given:
            continue
        text = given.pop(key)
        number = int(text) if text.isascii() and text.isdigit() else -1
        if number < low or (high is not None and number > high):
            limit = f"{low} to {high}" if high is not None else f"{low} or more"
            raise bad(f"the {key} must be a whole number, {limit}, not {text!r}")
        numbers[key] = number
    if "privateKey" in given and "certificate" not in given:
        raise bad("privateKey= is the key of the client's certificate= and needs it")
    return TLSEndpointString(description=description, **given, **numbers)  # type: ignore[arg-type]


#: The largest file a C{tls:} option names that is read (a certificate,
#: a key, a CA certificate in C{trustRoots=}), in bytes.
MAX_PEM_FILE_SIZE = 1024 * 1024


def readPEMFile(description: str, named: str, path: str) -> bytes:
    """
    The content of the file C{path} an option names: a regular file (never
    waited on, as a FIFO would be) of at most L{MAX_PEM_FILE_SIZE} bytes.

    @param named: the file as the error names it (C{certificate=PATH}).
    @raise UsageError: naming the file when it is not a regular file or is
        larger.
    @raise OSError: when it cannot be opened or read.
    """
    from pycm.tokenfile import NotRegularFile, readRegularFile

    def bad(why: str) -> UsageError:
        return UsageError(f"bad endpoint {description!r}: {named} {why} "
                          "(it should be a PEM file)")

    try:
        data = readRegularFile(path, MAX_PEM_FILE_SIZE)
    except NotRegularFile:
        raise bad("is not a regular file") from None
    if len(data) > MAX_PEM_FILE_SIZE:
        raise bad(f"is larger than {MAX_PEM_FILE_SIZE // 1024 // 1024} MiB")
    return data


def _readable(description: str, option: str, path: str) -> bytes:
    """The content of the file an option names, or a usage error naming both."""
    try:
        return readPEMFile(description, f"{option}={path}", path)
    except OSError as e:
        raise UsageError(f"bad endpoint {description!r}: cannot read {option}={path}: "
                         f"{e.strerror or e}") from None


def trustRootIn(description: str, directory: str) -> Any:
    """
    The trust root of the CA certificates in C{directory} (each C{*.pem}
    file holding one; others, and files not read, are passed over, as
    Twisted's C{trustRoots=} passes them over), read by L{readPEMFile}.

    @raise UsageError: when C{directory} cannot be listed or holds none, or
        a C{*.pem} in it is not a regular file or is too large.
    """
    from twisted.internet.ssl import Certificate, trustRootFromCertificates

    try:
        names = sorted(os.listdir(directory))
    except OSError as e:
        raise UsageError(
            f"bad endpoint {description!r}: trustRoots= takes a directory of CA "
            f"certificates (*.pem): cannot list {directory}: {e.strerror or e}") from None
    certificates: dict[bytes, Any] = {}
    for name in names:
        if name.rpartition(".")[2].lower() != "pem":
            continue
        try:
            path = os.path.join(directory, name)
            data = readPEMFile(description, f"{path} (in trustRoots={directory})", path)
            certificate = Certificate.loadPEM(data)
        except (OSError, SSL.Error, ValueError):
            continue
        certificates[certificate.digest()] = certificate
    if not certificates:
        raise UsageError(
            f"bad endpoint {description!r}: trustRoots={directory} holds no CA "
            "certificate (a PEM file whose name ends in .pem)")
    return trustRootFromCertificates(list(certificates.values()))


def clientCertificateOf(parsed: TLSEndpointString) -> Any:
    """
    The client's own certificate and key C{certificate=} and
    C{privateKey=} name, or None without C{certificate=}.

    @raise UsageError: when a file cannot be read or is not what it should be.
    """
    if parsed.certificate is None:
        return None
    from twisted.internet.ssl import Certificate, KeyPair, PrivateCertificate

    description = parsed.description
    certificate = _readable(description, "certificate", parsed.certificate)
    try:
        if parsed.privateKey is None:
            return PrivateCertificate.loadPEM(certificate)
        key = _readable(description, "privateKey", parsed.privateKey)
        return PrivateCertificate.fromCertificateAndKeyPair(
            Certificate.loadPEM(certificate), KeyPair.load(key, crypto.FILETYPE_PEM))
    except (SSL.Error, crypto.Error, ValueError) as e:
        where = ("certificate=" if parsed.privateKey is None
                 else "certificate= and privateKey=")
        raise UsageError(f"bad endpoint {description!r}: {where} must name a PEM "
                         f"certificate and its private key ({e})") from None


@implementer(IOpenSSLClientConnectionCreator)
class CheckingConnectionCreator:
    """
    The connections of a C{tls:} endpoint: those of Twisted's
    C{optionsForClientTLS} (the trust root, the client's certificate),
    each checked by L{CertificateCheck} in place of Twisted's own check,
    and sending the host name (SNI) when it is not an IP address.
    """

    def __init__(self, host: str, check: CertificateCheck, trustRoot: Any = None,
                 clientCertificate: Any = None) -> None:
        from twisted.internet.ssl import optionsForClientTLS

        self._creator = optionsForClientTLS(host, trustRoot=trustRoot,
                                            clientCertificate=clientCertificate)
        self._check = check
        self._serverName = None if _isAddress(host) else host.encode("idna")

    def clientConnectionForTLS(self, tlsProtocol: Any) -> Any:
        """A client connection of Twisted's, with the check set on it."""
        connection = self._creator.clientConnectionForTLS(tlsProtocol)
        if self._serverName is not None:
            connection.set_tlsext_host_name(self._serverName)
        connection.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT,
                              self._check.verify)
        connection.set_info_callback(self._check.info)
        return connection


def _isAddress(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


@implementer(IStreamClientEndpoint)
class CheckedTLSEndpoint:
    """
    A C{tls:} client endpoint whose connections check the daemon's
    certificate (L{CertificateCheck}): TLS over C{wrapped}, or over a
    C{HostnameEndpoint} to the host and port.

    @ivar parsed: the endpoint string, read.
    @ivar check: the check of the latest connection.
    """

    def __init__(self, reactor: Any, parsed: TLSEndpointString,
                 wrapped: IStreamClientEndpoint | None = None) -> None:
        from twisted.internet.endpoints import HostnameEndpoint

        self._reactor = reactor
        self.parsed = parsed
        self._trustRoot = (None if parsed.trustRoots is None
                           else trustRootIn(parsed.description, parsed.trustRoots))
        self._clientCertificate = clientCertificateOf(parsed)
        if wrapped is None:
            bind = None if parsed.bindAddress is None else (parsed.bindAddress, 0)
            wrapped = HostnameEndpoint(reactor, parsed.host, parsed.port,
                                       parsed.timeout, bind)
        self._wrapped = wrapped
        self.check = CertificateCheck(parsed.host, reactor)

    def connect(self, protocolFactory: Any) -> Deferred[Any]:
        """Connect over TLS, checked by a new L{check}."""
        from twisted.internet.endpoints import wrapClientTLS

        self.check = CertificateCheck(self.parsed.host, self._reactor)
        creator = CheckingConnectionCreator(self.parsed.host, self.check, self._trustRoot,
                                            self._clientCertificate)
        return wrapClientTLS(creator, self._wrapped).connect(protocolFactory)


class HandshakeTimedOut(Exception):
    """The TLS handshake did not finish in time: the peer may speak no TLS at all."""

    def __init__(self, timeout: float) -> None:
        super().__init__(timeout)
        self.timeout = timeout

    def __str__(self) -> str:
        return (f"the TLS handshake did not finish within {self.timeout:g} s (is a "
                "TLS listener there?)")


async def handshake(clock: Any, client: Any, check: CertificateCheck, description: str,
                    address: str, timeout: float) -> None:
    """
    Wait until the TLS handshake of C{client}'s connection is done, at most
    C{timeout} seconds of C{clock} (the endpoint's C{timeout=}, which
    bounds the TCP connection before): a peer that accepts and never
    answers is given up on, its connection aborted.

    @raise UnverifiedCertificate: when the certificate failed the check.
    @raise CannotConnect: when the connection was lost before, or the
        handshake did not finish in time (L{HandshakeTimedOut}).
    """
    from twisted.internet.defer import race
    from twisted.internet.task import deferLater

    timer: Deferred[None] = deferLater(clock, timeout, lambda: None)
    try:
        index, lost = await race([check.handshakeDone, client.whenDisconnected(), timer])
    finally:
        timer.cancel()
    if check.failure is not None:
        raise UnverifiedCertificate(description, address, check.failure)
    if index == 2:
        client.transport.abortConnection()
        raise CannotConnect(description, HandshakeTimedOut(timeout))
    if index == 1:
        raise CannotConnect(description, lost or Exception("the connection was lost"))
