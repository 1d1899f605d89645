"""
The commands' handlers, one module a kind: C{containers} (run, create,
start, stop, restart, kill, rm, list, inspect), C{applying} (apply),
C{observing} (logs, unfollow, wait, stats, events) and C{connection}
(ping, version, auth, exit).  The table that names them is L{pycm.daemon.commands}.
"""
