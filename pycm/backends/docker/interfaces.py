"""
L{IDockerEngine}: what the Docker backend (and the swarm backend to come)
asks of a Docker engine.  L{pycm.backends.docker.engine.EngineClient} is
the real one, over HTTP; L{pycm.testing.dockerengine.FakeDockerEngine}
keeps containers in memory on a clock.  The engine suite,
L{pycm.testing.enginesuite}, holds both to the same behaviour.
"""

from __future__ import annotations

from zope.interface import Attribute, Interface


class IDockerEngine(Interface):
    """
    One Docker engine, spoken to in the Engine API's own terms: a method, a
    path under the API version prefix (C{/containers/ID/json}), query
    parameters and a JSON body.

    Failures errback, never raise: with
    L{pycm.backends.docker.engine.EngineError} (its C{status} and
    C{message}) when the engine answered with an error status, with
    L{pycm.errors.Unavailable} when it did not answer (not there, died,
    too slow), with L{pycm.errors.BackendError} when it cannot be spoken
    to at all (an API version too old), and with
    L{twisted.internet.defer.CancelledError} when the caller cancelled.

    What the backend asks (any engine must do these as dockerd does):
      - C{GET /containers/json} (C{all}, C{filters} by C{label} and
        C{name}), C{POST /containers/create} (C{name}; 409 on a name in
        use, 404 on a missing image), C{GET /containers/ID/json},
        C{HEAD /containers/ID/archive} (C{path}: 200 or 404).
      - C{POST /containers/ID/start} (304: already running),
        C{/stop} and C{/restart} (C{t}: seconds between SIGTERM, or the
        container's stop signal, and SIGKILL; stop answers 304 when not
        running), C{/kill} (C{signal}; 409 when not running),
        C{DELETE /containers/ID} (C{force}, C{v}; 409 when running
        without C{force}), C{POST /containers/ID/wait} (C{condition}).
      - C{GET /containers/ID/logs} (C{stdout}, C{stderr}, C{timestamps},
        C{tail}, C{since}; C{follow} as a stream), in the multiplexed
        format of L{pycm.backends.docker.stream.Demultiplexer}.
      - C{GET /containers/ID/stats} (C{stream=false}).
      - C{GET /events} as a stream (C{filters}, C{since}): one JSON
        object a line, with C{Type}, C{Action} (C{create}, C{start},
        C{kill}, C{die}, C{stop}, C{restart}, C{destroy}, ...),
        C{Actor.ID}, C{Actor.Attributes} (C{name}, labels,
        C{exitCode}, C{signal}), C{time} and C{timeNano}.
      - C{POST /images/create} (C{fromImage}, C{tag}) as a stream of
        JSON progress lines, ending with an C{error} line if it failed.
    """

    timeout = Attribute(
        "Seconds an ordinary request may take (a C{float}); also the longest "
        "pause in a log read's body (L{pycm.backends.docker.logbody})."
    )
    isPodman = Attribute(
        "Is the engine Podman's Docker-compatible service (a C{bool}, known "
        "once the engine has answered a request)?"
    )

    def request(method, path, params=None, body=None, timeout=None, raw=False):
        """
        Send one request and read its whole answer.

        @param method: C{"GET"}, C{"POST"}, C{"HEAD"} or C{"DELETE"}.
        @param path: the path after the version prefix, already built
            (C{/containers/NAME/stop}).
        @param params: query parameters (C{None} values left out; C{bool}
            sent as 1/0; C{dict} and C{list} as JSON).
        @param body: a JSON-able request body, or None.
        @param timeout: seconds for it all (None: L{timeout}; 0: no limit,
            as for C{/wait}).
        @param raw: give the body as C{bytes} (logs), not decoded JSON.
        @return: a cancellable Deferred firing with C{(status, body)} for a
            2xx or 304 status (the body decoded JSON, text, or None if
            empty); see the interface for its failures.
        """

    def stream(method, path, params, onData, body=None, headerTimeout=None):
        """
        Send one request and give its answer's body to C{onData(bytes)},
        piece by piece, as it comes.

        @param headerTimeout: seconds the answer's status may take (None:
            L{timeout}; 0: no limit); the body may go on for ever.
        @return: a Deferred firing with a
            L{pycm.backends.docker.engine.Stream} once the engine answered
            with a 2xx status (its C{ended} fires when the body ends, however
            it ends; its C{cancel} ends it); see the interface for its
            failures.
        """

    def close():
        """
        Cancel the requests under way and end the streams being read.

        @return: a Deferred firing with None when no connection is left.
        """


__all__ = ["IDockerEngine"]
