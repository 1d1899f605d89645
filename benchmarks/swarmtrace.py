"""
A tracing relay between the daemon under test and the swarm manager's
socket, for the swarm section's C{--trace}: where pycm's time goes.

L{EngineTrace} listens on a UNIX socket of its own (the daemon is given it
as C{--docker-host}) and copies bytes both ways to the manager's socket,
noting when each HTTP request went out (its request line) and when the
first bytes of each answer came back.  L{EngineTrace.timeline} then gives
what the daemon asked of the manager during one timed operation.  The
relay costs each request a thread hop or two (well under a millisecond):
traced figures are for finding the time, not for quoting.
"""

from __future__ import annotations

import os
import socket
import threading
import time

METHODS = (b"GET ", b"POST ", b"PUT ", b"DELETE ", b"HEAD ")


class EngineTrace:
    """A relay to C{target} (a UNIX socket path) that notes the requests."""

    def __init__(self, target: str, directory: str) -> None:
        self.target = target
        self.path = os.path.join(directory, "engine-trace.sock")
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.path)
        self.listener.listen(64)
        self.lock = threading.Lock()
        #: (perf_counter, connection number, what): "> GET /tasks..." for a
        #: request going out, "< HTTP/1.1 200 OK" for the first bytes back.
        self.notes: list[tuple[float, int, str]] = []
        self.closed = False
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def address(self) -> str:
        return f"unix://{self.path}"

    def _note(self, number: int, what: str) -> None:
        with self.lock:
            self.notes.append((time.perf_counter(), number, what))

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                server.connect(self.target)
            except OSError:
                client.close()
                continue
            self.connections += 1
            number = self.connections
            for source, sink, outgoing in ((client, server, True), (server, client, False)):
                threading.Thread(
                    target=self._copy, args=(source, sink, number, outgoing), daemon=True
                ).start()

    def _copy(self, source: socket.socket, sink: socket.socket, number: int, out: bool) -> None:
        try:
            while True:
                data = source.recv(1 << 16)
                if not data:
                    break
                if out and data.startswith(METHODS):
                    self._note(number, "> " + data.split(b"\r\n", 1)[0].decode("latin-1"))
                elif not out and data.startswith(b"HTTP/"):
                    self._note(number, "< " + data.split(b"\r\n", 1)[0].decode("latin-1"))
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def timeline(self, started: float, ended: float) -> list[str]:
        """What went to and from the manager between two perf_counter times."""
        with self.lock:
            notes = [n for n in self.notes if started <= n[0] <= ended]
        return [
            f"+{(t - started) * 1000:7.1f} ms  #{number:<3} {what}" for t, number, what in notes
        ]

    def close(self) -> None:
        self.closed = True
        try:
            self.listener.close()
        except OSError:
            pass
