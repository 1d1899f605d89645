"""
The engine shared by the in-process backends (memory and process): the
container records, their lifecycle, and recovery after a restart.
"""
