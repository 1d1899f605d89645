from twisted.application.service import ServiceMaker

pycm = ServiceMaker(
    "pycm",
    "pycm.daemon.tap",
    "The pycm container manager daemon (line protocol, pluggable backends).",
    "pycm",
)
