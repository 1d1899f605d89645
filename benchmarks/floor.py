"""
The Twisted floor: the thinnest Twisted LineReceiver server that answers
each line with one line, on the same reactor twistd picks by default on
Linux (epoll).  No parsing, no dispatch, no JSON: what pycm's ``ping``
costs above this is pycm's own overhead.

    python benchmarks/floor.py PORT
"""

from __future__ import annotations

import sys

from twisted.internet import epollreactor

epollreactor.install()

from twisted.internet import reactor  # noqa: E402
from twisted.internet.protocol import Factory  # noqa: E402
from twisted.protocols.basic import LineReceiver  # noqa: E402


class Pong(LineReceiver):
    delimiter = b"\n"

    def lineReceived(self, line: bytes) -> None:
        self.sendLine(b'OK "pong"')


def main() -> None:
    port = int(sys.argv[1])
    factory = Factory.forProtocol(Pong)
    factory.noisy = False
    reactor.listenTCP(port, factory, backlog=1024, interface="127.0.0.1")
    reactor.run()


if __name__ == "__main__":
    main()
