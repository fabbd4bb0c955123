from flask import Blueprint

bp = Blueprint("status", __name__, url_prefix="/status")

from portal.blueprints.status import routes  # noqa: E402,F401
