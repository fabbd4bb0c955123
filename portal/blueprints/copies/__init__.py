from flask import Blueprint

bp = Blueprint("copies", __name__, url_prefix="/copies")

from portal.blueprints.copies import routes  # noqa: E402,F401
