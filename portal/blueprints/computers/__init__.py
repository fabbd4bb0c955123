"""Computer Management: devices, groups with their DPs, boundaries, moving devices."""
from flask import Blueprint

bp = Blueprint("computers", __name__, url_prefix="/computers")

from portal.blueprints.computers import routes  # noqa: E402,F401
