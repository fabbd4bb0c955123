"""Depot's reference endpoint agent: enrolls with the central server, heartbeats, and carries out
deployments into a target folder (download with resume, verify, stage, apply).

Standard library only, and relative imports only: it is shipped to endpoints as a zipapp without
Flask (copied into a zip as `depot_agent/`, started by `from depot_agent import main; main()`).
"""
from .cli import main
from .version import __version__

__all__ = ["main", "__version__"]
