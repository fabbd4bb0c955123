"""Routes of /agent/v1/."""
from portal.blueprints.agent_api import bp  # noqa: F401
