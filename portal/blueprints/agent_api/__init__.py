"""The agent API under /agent/v1/: enrollment, heartbeats, work, download manifests, progress."""
from flask import Blueprint

bp = Blueprint("agent_api", __name__, url_prefix="/agent/v1")

from portal.blueprints.agent_api import routes  # noqa: E402,F401
