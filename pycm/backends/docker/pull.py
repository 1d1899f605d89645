"""
Pulling an image (C{POST /images/create}): its progress goes to the log and,
for a container, to the observers as L{ProgressEvent}s (L{ImagePuller}).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger

from pycm.backends.docker.engine import EngineError, Stream
from pycm.backends.docker.interfaces import IDockerEngine
from pycm.backends.docker.stream import JSONLines
from pycm.backends.docker.translate import mapPullError, splitImage
from pycm.errors import Unavailable
from pycm.model import ProgressEvent


class ImagePuller:
    """
    Pulls images on one engine, within C{timeout} seconds each, telling
    C{emit} a L{ProgressEvent} each time a layer's status changes.
    """

    log = Logger()

    def __init__(
        self,
        clock: Any,
        engine: IDockerEngine,
        timeout: float,
        emit: Callable[[ProgressEvent], None],
    ) -> None:
        self.clock = clock
        self.engine = engine
        self.timeout = timeout
        self.emit = emit

    @defer.inlineCallbacks
    def pull(self, image: str, name: str | None = None) -> Any:
        """
        Pull C{image}, for the container C{name} (None: no progress events).

        @return: Deferred firing with None once pulled; L{NoImage} if the
            registry has no such image, L{Unavailable} if it cannot be
            reached or the pull took too long, L{BackendError} for other
            failures (see L{mapPullError}).
        """
        fromImage, tag = splitImage(image)
        errors: list[str] = []
        lastStatus: dict[str, str] = {}

        def progress(item: Any) -> None:
            if not isinstance(item, dict):
                return
            if item.get("error"):
                errors.append(str(item["error"]))
                return
            status = str(item.get("status", ""))
            key = str(item.get("id", ""))
            if lastStatus.get(key) != status:
                lastStatus[key] = status
                self.log.info("pulling {image}: {id} {status}", image=image, id=key, status=status)
                if name is not None:
                    detail = " ".join(part for part in (image, key, status) if part)
                    self.emit(
                        ProgressEvent(
                            name,
                            "pull",
                            detail,
                            self.clock.seconds(),
                            image=image,
                            layer=key,
                            status=status,
                        )
                    )

        parser = JSONLines(progress)
        self.log.info("pulling {image}", image=image)
        try:
            stream: Stream = yield self.engine.stream(
                "POST", "/images/create", {"fromImage": fromImage, "tag": tag}, parser.feed
            )
        except EngineError as e:
            raise mapPullError(image, e.status, e.message) from None
        timedOut = [False]

        def timeout() -> None:
            timedOut[0] = True
            stream.cancel()

        call = self.clock.callLater(self.timeout, timeout)
        yield stream.ended
        if call.active():
            call.cancel()
        parser.flush()
        if timedOut[0]:
            raise Unavailable(f"pulling {image} took longer than {self.timeout:g} s")
        if errors:
            raise mapPullError(image, None, errors[-1])
        self.log.info("pulled {image}", image=image)
