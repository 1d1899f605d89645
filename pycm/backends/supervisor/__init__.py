"""
The engine shared by the in-process backends (memory and process): the
container records, their lifecycle (one transition table), their runs and
restart policies, and recovery after a restart.  docs/supervisor.md says
which module holds what, and the rules the engine keeps.
"""
