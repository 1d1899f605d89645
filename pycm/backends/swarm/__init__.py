"""
The swarm backend: every pycm container is a replicated Docker Swarm
service, driven through a manager's Engine API (docs/swarm-backend.md).
"""
