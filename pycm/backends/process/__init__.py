"""
The process backend: containers as host processes, with their cgroups,
their log files, and what C{/proc} says about them.
"""
