"""
The Docker backend: pycm in front of a Docker (or Podman) engine, through
its Engine API.
"""
