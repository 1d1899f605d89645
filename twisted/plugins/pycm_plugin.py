from twisted.application.service import ServiceMaker

pycm = ServiceMaker(
    "pycm",
    "pycm.tap",
    "The pycm container manager daemon (line protocol, pluggable backends).",
    "pycm",
)
