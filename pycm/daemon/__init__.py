"""
The daemon: the line protocol, the session and its command table, listeners,
authentication, the event log, and C{twistd pycm} itself.
"""
