"""Computer Management and enrollment: devices, groups, boundaries, enrollment tokens."""
from portal.blueprints.api import bp  # noqa: F401
