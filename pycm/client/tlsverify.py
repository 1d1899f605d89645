"""
A C{tls:} endpoint's check of the daemon's certificate, strict and told
plainly.

Twisted's C{tls:} client checks the certificate chain and the host name,
but a certificate with no C{subjectAltName} makes its host name check
raise an error it does not expect: it logs a traceback and lets the
connection go on when the chain is trusted.  And a failed check only
drops the connection, with nothing to say why.  Here the same checks are
made by L{CertificateCheck}, which refuses such a certificate too and keeps
why it refused, for C{cannot verify the daemon's certificate at HOST:PORT:
REASON} (L{UnverifiedCertificate}); and it tells when the handshake is
done, so that nothing is sent before.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any

from OpenSSL import SSL
from service_identity import CertificateError, VerificationError
from service_identity.hazmat import DNS_ID, IPAddress_ID, verify_service_identity
from service_identity.pyopenssl import extract_patterns
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
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


def _layout(factory: Any) -> str | None:
    """
    How this Twisted's TLS factory makes a client's OpenSSL connection:
    C{"callable"} (C{_creatorCallable}, newer Twisted), C{"creator"} (an
    C{IOpenSSLClientConnectionCreator} in C{_connectionCreator}, Twisted
    24.3), or None when neither.
    """
    if hasattr(factory, "_creatorCallable"):
        return "callable"
    if getattr(factory, "_creatorInterface", None) is IOpenSSLClientConnectionCreator:
        return "creator"
    return None


@implementer(IOpenSSLClientConnectionCreator)
class _CheckedCreator:
    """Twisted's connection creator, with pycm's check set on each connection."""

    def __init__(self, creator: Any, checked: Any) -> None:
        self._creator = creator
        self._checked = checked

    def clientConnectionForTLS(self, tlsProtocol: Any) -> Any:
        return self._checked(self._creator.clientConnectionForTLS(tlsProtocol))


def checkedTLS(endpoint: Any, description: str, host: str, reactor: Any) -> CertificateCheck:
    """
    Make the C{tls:} endpoint Twisted parsed from C{description} check the
    certificate by a new L{CertificateCheck} for C{host} (in place of its
    own check: the callbacks are set on each OpenSSL connection it makes),
    and return it.

    Twisted offers no public way to change the checks of the endpoint it
    parsed; rather than parse C{tls:}'s options again, this reaches into
    the endpoint and its TLS factory, and fails closed when they are not as
    this Twisted makes them.

    @raise UsageError: when they are not.
    """
    from twisted.internet.protocol import Factory

    wrapperFactory = getattr(endpoint, "_wrapperFactory", None)
    if wrapperFactory is None or _layout(wrapperFactory(Factory())) is None:
        raise UsageError(f"bad endpoint {description!r}: this Twisted's tls: endpoint "
                         "cannot be checked by pycm")
    check = CertificateCheck(host, reactor)

    def checkedConnection(connection: Any) -> Any:
        connection.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, check.verify)
        connection.set_info_callback(check.info)
        return connection

    def checked(protocolFactory: Any) -> Any:
        factory = wrapperFactory(protocolFactory)
        if _layout(factory) == "callable":
            create = factory._creatorCallable
            factory._creatorCallable = lambda tlsProtocol: checkedConnection(create(tlsProtocol))
        else:
            factory._connectionCreator = _CheckedCreator(factory._connectionCreator,
                                                         checkedConnection)
        return factory

    endpoint._wrapperFactory = checked
    return check


async def handshake(client: Any, check: CertificateCheck, description: str,
                    address: str) -> None:
    """
    Wait until the TLS handshake of C{client}'s connection is done.

    @raise UnverifiedCertificate: when the certificate failed the check.
    @raise CannotConnect: when the connection was lost before.
    """
    from twisted.internet.defer import race

    index, lost = await race([check.handshakeDone, client.whenDisconnected()])
    if check.failure is not None:
        raise UnverifiedCertificate(description, address, check.failure)
    if index == 1:
        raise CannotConnect(description, lost or Exception("the connection was lost"))
