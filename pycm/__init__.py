"""pycm: a container manager daemon and client on Twisted."""

__version__ = "0.1.0"

#: The wire protocol version this package speaks (see docs/protocol.md).
PROTOCOL_VERSION = 1
