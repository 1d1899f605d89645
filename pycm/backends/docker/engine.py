"""
L{EngineClient}, the real L{IDockerEngine}: an asynchronous client of the
Docker Engine API on treq, over a UNIX socket (or TCP).  It knows HTTP and
the engine's conventions (version prefix, JSON bodies, C{{"message": ...}}
errors as L{EngineError}) but nothing of pycm's containers; it reads the
bodies with L{pycm.backends.docker.bodies}.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import attrs
from treq.client import HTTPClient
from twisted.internet import defer
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.endpoints import HostnameEndpoint, UNIXClientEndpoint
from twisted.internet.error import ConnectError, TimeoutError
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.python.failure import Failure
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgentEndpointFactory
from zope.interface import implementer

from pycm.backends.docker.bodies import BodyStreamer, readBody
from pycm.backends.docker.interfaces import IDockerEngine
from pycm.errors import BackendError, Unavailable

DEFAULT_HOST = "unix:///var/run/docker.sock"
#: The newest API version this client speaks; older engines are asked for
#: their own version (never below L{MIN_API_VERSION}).
MAX_API_VERSION = (1, 43)
#: Wait conditions and NanoCpus need 1.30 at least.
MIN_API_VERSION = (1, 30)


class EngineError(Exception):
    """
    The engine answered with an error status.

    @ivar status: the HTTP status code.
    @ivar message: the engine's own message.
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


def defaultHost(environ: Mapping[str, str] | None = None) -> str:
    """The engine address: C{DOCKER_HOST}, else the standard UNIX socket."""
    source: Mapping[str, str] = os.environ if environ is None else environ
    return source.get("DOCKER_HOST") or DEFAULT_HOST


@attrs.frozen
class EngineAddress:
    """A parsed C{unix:///path} or C{tcp://host:port} engine address."""

    scheme: str
    path: str = ""
    host: str = ""
    port: int = 0

    @classmethod
    def parse(cls, text: str) -> EngineAddress:
        """
        Parse a Docker host string.

        @raise BackendError: for anything but C{unix://} and C{tcp://}.
        """
        parts = urlsplit(text)
        if parts.scheme == "unix" and (parts.path or parts.netloc):
            return cls("unix", path=parts.netloc + parts.path)
        if parts.scheme in ("tcp", "http") and parts.hostname:
            return cls("tcp", host=parts.hostname, port=parts.port or 2375)
        raise BackendError(f"bad docker host {text!r}: expected unix:///PATH or tcp://HOST:PORT")

    def __str__(self) -> str:
        if self.scheme == "unix":
            return f"unix://{self.path}"
        return f"tcp://{self.host}:{self.port}"


@implementer(IAgentEndpointFactory)
@attrs.frozen
class _EngineEndpoints:
    """Every request goes to the engine's endpoint, whatever its URL."""

    reactor: Any
    address: EngineAddress
    connectTimeout: float

    def endpointForURI(self, uri: Any) -> IStreamClientEndpoint:
        if self.address.scheme == "unix":
            return UNIXClientEndpoint(self.reactor, self.address.path, timeout=self.connectTimeout)
        return HostnameEndpoint(
            self.reactor,
            self.address.host,
            self.address.port,
            timeout=self.connectTimeout,
        )


@attrs.define(eq=False)
class Stream:
    """
    A streamed response being read.

    @ivar ended: fires with None when the body ends, whether the engine
        closed it, the connection was lost, or L{cancel} was called.
    @ivar failure: once ended, None if the body came whole, else why not
        (the connection was lost, or cancelled).
    """

    ended: Deferred[None]
    _transport: Any = None
    failure: Failure | None = None

    def cancel(self) -> None:
        """Stop reading: close the connection."""
        if self._transport is not None and not self.ended.called:
            self._transport.stopProducing()

    def pause(self) -> None:
        """Read no more for now (the engine waits, its socket full): L{resume} goes on."""
        if self._transport is not None and not self.ended.called:
            self._transport.pauseProducing()

    def resume(self) -> None:
        """Read again after L{pause}."""
        if self._transport is not None and not self.ended.called:
            self._transport.resumeProducing()


@implementer(IDockerEngine)
class EngineClient:
    """
    Talk to one Docker engine: the real L{IDockerEngine}.

    @ivar timeout: seconds every ordinary request may take, body included.
    """

    def __init__(
        self,
        reactor: Any,
        address: EngineAddress,
        timeout: float = 10.0,
        persistent: bool = True,
    ) -> None:
        self.reactor = reactor
        self.address = address
        self.timeout = timeout
        pool = HTTPConnectionPool(reactor, persistent=persistent)
        pool.maxPersistentPerHost = 8
        pool.retryAutomatically = True
        self._pool = pool
        agent = Agent.usingEndpointFactory(
            reactor, _EngineEndpoints(reactor, address, timeout), pool=pool
        )
        self._http = HTTPClient(agent)
        self._base = (
            "http://docker" if address.scheme == "unix" else f"http://{address.host}:{address.port}"
        )
        self._prefix: str | None = None
        self.apiVersion: str | None = None
        self.engineVersion: dict[str, Any] = {}
        #: Requests under way and streams being read, cancelled by L{close}.
        self._calls: set[Deferred[Any]] = set()
        self._streams: set[Stream] = set()

    def close(self) -> Deferred[None]:
        """
        Cancel the requests under way and the streams being read (their
        connections close) and close the pooled ones: none is left open, nor
        put back in the pool later.
        """
        for call in list(self._calls):
            call.cancel()
        for stream in list(self._streams):
            stream.cancel()
        return self._pool.closeCachedConnections()

    @property
    def isPodman(self) -> bool:
        """
        Is the engine Podman's Docker-compatible service (as its
        C{GET /version} said at the last negotiation)?
        """
        components = self.engineVersion.get("Components") or ()
        return any(
            isinstance(c, dict) and "podman" in str(c.get("Name", "")).lower()
            for c in components
        )

    def forgetVersion(self) -> None:
        """Negotiate again on the next request (the engine may have changed)."""
        self._prefix = None

    @defer.inlineCallbacks
    def negotiate(self) -> Any:
        """
        Ask the engine its version (C{GET /version}) and pick the API
        version to speak: its own, at most L{MAX_API_VERSION}.

        @return: Deferred firing with the chosen version string.
        """
        status, body = yield self._call("GET", "/version", None, None, self.timeout)
        self._check(status, body, "GET", "/version")
        self.engineVersion = body if isinstance(body, dict) else {}
        text = str(self.engineVersion.get("ApiVersion", "1.24"))
        try:
            major, minor = (int(part) for part in text.split(".")[:2])
        except ValueError:
            raise BackendError(f"docker engine sent a bad ApiVersion {text!r}") from None
        version = min((major, minor), MAX_API_VERSION)
        if version < MIN_API_VERSION:
            raise BackendError(
                f"docker engine API {text} is too old: pycm needs "
                f"{MIN_API_VERSION[0]}.{MIN_API_VERSION[1]} or later"
            )
        self.apiVersion = f"{version[0]}.{version[1]}"
        self._prefix = f"/v{self.apiVersion}"
        return self.apiVersion

    @defer.inlineCallbacks
    def request(
        self,
        method: str,
        path: str,
        params: dict[str, Any] | None = None,
        body: Any = None,
        timeout: float | None = None,
        raw: bool = False,
    ) -> Any:
        """
        Send one request and read its whole body.

        @param timeout: seconds for it all (None: L{timeout}; 0: no limit,
            for C{/wait}); the Deferred is cancellable.
        @param raw: give the body as C{bytes}, not decoded JSON.
        @return: Deferred firing with C{(status, decoded JSON or None)} for
            a 2xx or 304 status; L{EngineError} for others;
            L{Unavailable} when the engine does not answer in time.
        """
        if self._prefix is None:
            yield self.negotiate()
        fullPath = self._prefix + path  # type: ignore[operator]
        status, decoded = yield self._call(
            method,
            fullPath,
            params,
            body,
            self.timeout if timeout is None else timeout,
            raw,
        )
        self._check(status, decoded, method, path)
        return (status, decoded)

    @defer.inlineCallbacks
    def stream(
        self,
        method: str,
        path: str,
        params: dict[str, Any] | None,
        onData: Callable[[bytes], None],
        body: Any = None,
        headerTimeout: float | None = None,
    ) -> Any:
        """
        Send one request and stream its body to C{onData}.

        The answer's headers must come within C{headerTimeout} (None:
        L{timeout}; 0: no limit, for an engine that sends them only with
        the first data, as Podman does for a log follow); the body may go
        on for ever.

        @return: Deferred firing with a L{Stream} once the engine answered
            with a 2xx status; L{EngineError}, L{Unavailable} as for
            L{request}.
        """
        if self._prefix is None:
            yield self.negotiate()
        url = self._url(self._prefix + path, params)  # type: ignore[operator]
        kwargs = self._bodyArgs(body)
        response = yield self._inTime(
            self._http.request(method, url, unbuffered=True, **kwargs),
            method,
            path,
            self.timeout if headerTimeout is None else headerTimeout,
        )
        if response.code >= 300:
            # The error's body must come in time too (and a timeout closes
            # the connection).
            content = yield self._inTime(readBody(response), method, path, self.timeout)
            self._check(response.code, _decode(content), method, path)
        ended: Deferred[None] = Deferred()
        protocol = BodyStreamer(onData, ended)
        response.deliverBody(protocol)
        stream = Stream(ended, protocol.transport)
        self._streams.add(stream)

        def forget(result: object) -> object:
            self._streams.discard(stream)
            stream.failure = protocol.failure
            return result

        ended.addBoth(forget)
        return stream

    def _inTime(
        self, d: Deferred[Any], method: str, path: str, timeout: float
    ) -> Deferred[Any]:
        """
        C{d}, given C{timeout} seconds (0: no limit), then cancelled: a
        cancel from elsewhere stays a L{CancelledError}; any other failure,
        the timeout included, is L{Unavailable}.  (The agent may wrap the
        timeout's own cancel, so a flag, not the error, tells them apart.)
        """
        timedOut: list[bool] = []

        def expire() -> None:
            timedOut.append(True)
            d.cancel()

        def failed(failure: Failure) -> Failure:
            if not timedOut and _cancelled(failure.value):
                raise CancelledError()
            raise self._unavailable(failure.value, method, path, timeout if timedOut else None)

        if timeout > 0:
            d.addBoth(_cancelCall, self.reactor.callLater(timeout, expire))
        return d.addErrback(failed)

    def _url(self, path: str, params: dict[str, Any] | None) -> str:
        url = self._base + quote(path)
        if params:
            items = [(k, _param(v)) for k, v in params.items() if v is not None]
            url += "?" + urlencode(items)
        return url

    def _bodyArgs(self, body: Any) -> dict[str, Any]:
        if body is None:
            return {}
        return {
            "data": json.dumps(body).encode("utf-8"),
            "headers": Headers({b"Content-Type": [b"application/json"]}),
        }

    def _call(
        self,
        method: str,
        path: str,
        params: dict[str, Any] | None,
        body: Any,
        timeout: float,
        raw: bool = False,
    ) -> Deferred[tuple[int, Any]]:
        url = self._url(path, params)
        # Unbuffered, read with readBody: a timeout or a cancel during the
        # body then closes the connection.
        d: Deferred[Any] = self._http.request(method, url, unbuffered=True, **self._bodyArgs(body))

        def read(response: Any) -> Deferred[tuple[int, Any]]:
            def decode(content: bytes) -> tuple[int, Any]:
                if raw and 200 <= response.code < 300:
                    return (response.code, content)
                return (response.code, _decode(content))

            return readBody(response).addCallback(decode)

        d = self._inTime(d.addCallback(read), method, path, timeout)
        self._calls.add(d)

        def done(result: Any) -> Any:
            self._calls.discard(d)
            return result

        return d.addBoth(done)

    def _unavailable(
        self, error: BaseException, method: str, path: str, timeout: float | None = None
    ) -> Exception:
        if isinstance(error, EngineError | BackendError | Unavailable):
            return error
        self.forgetVersion()
        if timeout is not None:
            what = f"did not answer {method} {path} within {timeout:g} s"
        elif isinstance(error, CancelledError | TimeoutError):
            what = f"did not answer {method} {path} in time"
        else:
            what = f"failed during {method} {path}: {_describe(error)}"
        return Unavailable(f"docker engine at {self.address} {what}")

    def _check(self, status: int, body: Any, method: str, path: str) -> None:
        if 200 <= status < 300 or status == 304:
            return
        message = ""
        if isinstance(body, dict):
            message = str(body.get("message", ""))
        elif isinstance(body, str):
            message = body
        raise EngineError(status, message.strip() or f"{method} {path} failed")


def _cancelCall(result: Any, call: Any) -> Any:
    if call.active():
        call.cancel()
    return result


def _cancelled(error: BaseException) -> bool:
    """Was C{error} caused by cancelling (perhaps wrapped by the agent)?"""
    if isinstance(error, CancelledError):
        return True
    return any(_cancelled(r.value) for r in getattr(error, "reasons", None) or ())


def _describe(error: BaseException) -> str:
    reasons = getattr(error, "reasons", None)
    if reasons:
        return "; ".join(_describe(r.value) for r in reasons)
    if isinstance(error, ConnectError):
        code = error.osError
        if isinstance(code, int):
            return f"cannot connect: {os.strerror(code)}"
        return f"cannot connect: {error.args[0] if error.args else code}"
    text = str(error).strip()
    return text or type(error).__name__


def _decode(content: bytes) -> Any:
    if not content:
        return None
    try:
        return json.loads(content)
    except ValueError:
        return content.decode("utf-8", "replace")


def _param(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


__all__ = [
    "DEFAULT_HOST",
    "EngineAddress",
    "EngineClient",
    "EngineError",
    "Stream",
    "defaultHost",
]
